//! The Universal Inbox, the agent side of the gateway: agent login ([`auth`], [`api`]), the
//! WebSocket agents live on ([`ws`], commands in [`commands`]), round-robin assignment
//! ([`assign`]) and the inbox page itself ([`page`], assets embedded in the binary).
//!
//! The stream an agent sees is the org's outbox, in the per-org sequence the relay assigns:
//!
//! ```text
//!  hello{token,last_seq=N} ─▶ subscribe to the hub ─▶ replay seq > N from the outbox (pages)
//!       ─▶ live from the hub: seq ≤ sent → skip (the seam), seq = sent+1 → send,
//!          seq > sent+1 or hub lagged → read the gap from the outbox again
//! ```
//!
//! Subscribing before the replay is what makes the seam safe: an event relayed while the
//! replay reads is either in the replay or in the hub's buffer (or both — then skipped).
//! Storage for all of it lives in [`crate::db::agents`], [`crate::db::inbox`] and
//! [`crate::db::inbox_views`]; writes go through the committer like every other write.

pub mod api;
pub mod assign;
pub mod auth;
pub mod commands;
pub mod page;
pub mod ws;

use crate::relay::PublishedEvent;
use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, Notify};

/// Live event frames kept for sockets that are a little behind the others.
const FRAME_CACHE: usize = 256;

/// Settings of the inbox (`[inbox]` in the file, `DARTWING_INBOX_*` in the environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxConfig {
    /// How long a login session lasts, seconds.
    pub session_secs: u64,
    /// Failed logins per email within `login_window_secs` before it is refused with 429.
    pub login_max_failures: u32,
    /// The failed-login window, seconds.
    pub login_window_secs: u64,
    /// Frames waiting for one socket at most; the memory bound per connection.
    pub ws_queue_frames: usize,
    /// A socket whose queue stays full this long gets `resync` and is closed, ms.
    pub ws_slow_ms: u64,
    /// A socket that sends nothing (not even a pong) this long is closed, seconds.
    pub ws_idle_secs: u64,
    /// How often the server pings, seconds (and refreshes the agent's presence).
    pub ws_ping_secs: u64,
    /// How long the first frame (`hello`) may take, ms.
    pub ws_hello_ms: u64,
    /// Open conversations a new agent takes from the queue at most.
    pub default_capacity: i64,
    /// How often the assigner looks at the queue without a signal, ms.
    pub assign_poll_ms: u64,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            session_secs: 12 * 3600,
            login_max_failures: 5,
            login_window_secs: 300,
            ws_queue_frames: 1024,
            ws_slow_ms: 5000,
            ws_idle_secs: 60,
            ws_ping_secs: 20,
            ws_hello_ms: 10_000,
            default_capacity: 5,
            assign_poll_ms: 2000,
        }
    }
}

impl InboxConfig {
    /// Every problem with the values, for [`crate::config::Config`]'s report.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in [
            ("inbox.session_secs", self.session_secs),
            ("inbox.login_max_failures", self.login_max_failures as u64),
            ("inbox.login_window_secs", self.login_window_secs),
            ("inbox.ws_queue_frames", self.ws_queue_frames as u64),
            ("inbox.ws_slow_ms", self.ws_slow_ms),
            ("inbox.ws_idle_secs", self.ws_idle_secs),
            ("inbox.ws_ping_secs", self.ws_ping_secs),
            ("inbox.ws_hello_ms", self.ws_hello_ms),
            ("inbox.assign_poll_ms", self.assign_poll_ms),
        ] {
            if v == 0 {
                out.push(format!("{k} must be positive"));
            }
        }
        if self.default_capacity < 1 {
            out.push("inbox.default_capacity must be at least 1".into());
        }
        if self.ws_ping_secs >= self.ws_idle_secs {
            out.push("inbox.ws_ping_secs must be shorter than inbox.ws_idle_secs".into());
        }
        out
    }
}

/// A `typing` notice: node-local and not sequenced (it is not worth a row in the outbox).
#[derive(Debug, Clone)]
pub struct Typing {
    /// The org.
    pub org_id: String,
    /// Who types.
    pub agent_id: String,
    /// Where.
    pub conversation_id: String,
}

/// The inbox's shared, in-memory state on this node.
pub struct Inbox {
    /// Settings.
    pub config: InboxConfig,
    /// Failed logins.
    pub throttle: auth::LoginThrottle,
    /// Typing notices between this node's sockets.
    pub typing: broadcast::Sender<Typing>,
    /// Open sockets per agent on this node (presence).
    pub sockets: Mutex<HashMap<String, usize>>,
    /// Open sockets on this node (`ws_connections`).
    pub connections: AtomicI64,
    /// Wakes the assigner (an agent came online).
    pub assign_wake: Arc<Notify>,
    /// Turns true at shutdown; sockets close with 1001.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The latest live events as frames: serialised once, shared by every socket.
    frames: Mutex<VecDeque<(Arc<PublishedEvent>, Utf8Bytes)>>,
}

impl Inbox {
    /// The inbox state for `config`.
    pub fn new(config: InboxConfig, shutdown: tokio::sync::watch::Receiver<bool>) -> Inbox {
        Inbox {
            throttle: auth::LoginThrottle::new(
                config.login_max_failures,
                Duration::from_secs(config.login_window_secs),
            ),
            config,
            typing: broadcast::channel(1024).0,
            sockets: Mutex::default(),
            connections: AtomicI64::new(0),
            assign_wake: Arc::new(Notify::new()),
            shutdown,
            frames: Mutex::default(),
        }
    }

    /// The event frame `{"type":"event","seq":N,"event":{…}}` of a live event, serialised
    /// once for all of this node's sockets (they take the same events in the same order).
    pub fn live_frame(&self, ev: &Arc<PublishedEvent>, seq: i64) -> Utf8Bytes {
        let mut frames = self.frames.lock().expect("not poisoned");
        if let Some((_, f)) = frames.iter().find(|(e, _)| Arc::ptr_eq(e, ev)) {
            return f.clone();
        }
        let frame: Utf8Bytes =
            serde_json::json!({"type": "event", "seq": seq, "event": ev.envelope})
                .to_string()
                .into();
        if frames.len() >= FRAME_CACHE {
            frames.pop_front();
        }
        frames.push_back((ev.clone(), frame.clone()));
        frame
    }

    /// How long an agent counts as online after its socket's last ping, ms.
    pub fn presence_ttl_ms(&self) -> i64 {
        (self.config.ws_ping_secs * 3 * 1000) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zeroes_are_reported() {
        assert!(InboxConfig::default().problems().is_empty());
        let bad = InboxConfig {
            ws_queue_frames: 0,
            default_capacity: 0,
            ..InboxConfig::default()
        };
        assert_eq!(bad.problems().len(), 2);
    }
}
