//! Broadcast alerts at run time: the gateway's implementation of the `broadcast` engine's
//! [`broadcast::Store`] port over the committer (every expansion and dispatch round is one
//! group-committed transaction) and the org plugins (who sends on each channel), and the
//! task that runs the engine.

use crate::commit::{Committer, WriteOp, WriteResult};
use crate::db::broadcast_run::{DispatchRequest, Sender};
use crate::db::broadcasts::{BroadcastOp, BroadcastResult};
use crate::db::{now_ms, Db};
use crate::plugins::Plugins;
use broadcast::{EngineSettings, Tick};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use state_machines::Channel;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// Settings of the engine (`[broadcast]` in the file, `DARTWING_BROADCAST_*`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BroadcastConfig {
    /// Recipients per transaction.
    pub batch: usize,
    /// Broadcast messages allowed to wait in the send queue before the engine pauses.
    pub max_backlog: usize,
    /// Longest sleep between rounds without a wake-up, ms.
    pub poll_ms: u64,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        let e = EngineSettings::default();
        BroadcastConfig {
            batch: e.batch,
            max_backlog: e.max_backlog,
            poll_ms: e.poll.as_millis() as u64,
        }
    }
}

impl BroadcastConfig {
    /// What is wrong with these settings.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.batch == 0 || self.batch > 5_000 {
            out.push("broadcast.batch must be 1 to 5000".into());
        }
        if self.max_backlog == 0 {
            out.push("broadcast.max_backlog must be at least 1".into());
        }
        if self.poll_ms == 0 {
            out.push("broadcast.poll_ms must be at least 1".into());
        }
        out
    }

    /// As the engine takes them.
    pub fn engine(&self) -> EngineSettings {
        EngineSettings {
            batch: self.batch,
            max_backlog: self.max_backlog,
            poll: std::time::Duration::from_millis(self.poll_ms),
        }
    }
}

/// The port, on this node's database, committer and plugins.
#[derive(Clone)]
pub struct GatewayStore {
    /// Reads.
    pub db: Db,
    /// Writes.
    pub committer: Committer,
    /// Who sends on each channel.
    pub plugins: Arc<Plugins>,
    /// Base of confirm links.
    pub public_url: String,
    /// Woken when rungs were queued.
    pub send_wake: Arc<Notify>,
}

impl GatewayStore {
    async fn submit(&self, op: BroadcastOp) -> Result<BroadcastResult, String> {
        match self.committer.submit_wait(WriteOp::Broadcast(op)).await {
            Ok(WriteResult::Broadcast(r)) => Ok(r),
            Ok(other) => Err(format!("unexpected write result {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Who sends on each channel for the orgs with running broadcasts.
    async fn senders(&self) -> Result<HashMap<(String, Channel), Sender>, String> {
        let orgs: Vec<String> =
            sqlx::query("SELECT DISTINCT org_id FROM broadcasts WHERE state = 'running'")
                .fetch_all(&self.db.pool)
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .filter_map(|r| r.try_get(0).ok())
                .collect();
        let mut out = HashMap::new();
        for org in orgs {
            for channel in [
                Channel::Sms,
                Channel::Whatsapp,
                Channel::Email,
                Channel::Voice,
            ] {
                if let Some((_, plugin)) = self.plugins.for_channel(&org, channel).await {
                    let window_for_text = plugin
                        .check_outbound("text", None)
                        .map(|r| r.needs_service_window)
                        .unwrap_or(false);
                    let from = plugin.sender_address();
                    out.insert(
                        (org.clone(), channel),
                        Sender {
                            from,
                            window_for_text,
                        },
                    );
                }
            }
        }
        Ok(out)
    }
}

impl broadcast::Store for GatewayStore {
    async fn expand(&self, _limit: usize) -> Result<usize, String> {
        // A read first: an idle engine costs no write transactions.
        let waiting = sqlx::query(
            "SELECT 1 FROM broadcasts WHERE chunks_expanded < chunks AND state = 'running' LIMIT 1",
        )
        .fetch_optional(&self.db.pool)
        .await
        .map_err(|e| e.to_string())?;
        if waiting.is_none() {
            return Ok(0);
        }
        match self.submit(BroadcastOp::Expand).await? {
            BroadcastResult::Expanded(n) => Ok(n),
            other => Err(format!("unexpected result {other:?}")),
        }
    }

    async fn backlog(&self) -> Result<usize, String> {
        crate::db::broadcast_run::backlog(&self.db.pool)
            .await
            .map(|n| n.max(0) as usize)
            .map_err(|e| e.to_string())
    }

    async fn dispatch(&self, limit: usize) -> Result<Tick, String> {
        let next_due: Option<i64> =
            sqlx::query("SELECT MIN(next_at) FROM broadcast_recipients WHERE next_at IS NOT NULL")
                .fetch_one(&self.db.pool)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(|e| e.to_string())?;
        if next_due.is_none_or(|t| t > now_ms()) {
            return Ok(Tick {
                handled: 0,
                next_due,
            });
        }
        let req = DispatchRequest {
            limit: limit as i64,
            senders: self.senders().await?,
            public_url: self.public_url.clone(),
        };
        match self.submit(BroadcastOp::Dispatch(req)).await? {
            BroadcastResult::Dispatched(tick) => {
                if tick.handled > 0 {
                    self.send_wake.notify_one();
                }
                Ok(tick)
            }
            other => Err(format!("unexpected result {other:?}")),
        }
    }

    fn now(&self) -> i64 {
        now_ms()
    }
}

/// Runs the engine until shutdown: `loops` of it side by side. On PostgreSQL a round's
/// time is mostly round trips, and rounds take disjoint recipients (`SKIP LOCKED`), so
/// several at once (one per bulk writer of the committer) multiply the rate; SQLite has one
/// writer and runs one.
pub async fn run(
    store: GatewayStore,
    wake: Arc<Notify>,
    settings: BroadcastConfig,
    loops: usize,
    shutdown: watch::Receiver<bool>,
) {
    let mut running = Vec::new();
    for _ in 0..loops.max(1) {
        running.push(tokio::spawn(broadcast::engine::run(
            store.clone(),
            settings.engine(),
            wake.clone(),
            shutdown.clone(),
        )));
    }
    for engine in running {
        let _ = engine.await;
    }
}
