//! `GET /api/v1/ws`: the agent's socket. Protocol version 1, JSON text frames.
//!
//! ```text
//!  client                                   server
//!  {"type":"hello","token":T,"last_seq":N} ─▶
//!                                         ◀─ {"type":"welcome","v":1,"agent":{…},"org_id":…}
//!                                         ◀─ {"type":"event","seq":N+1,"event":{CloudEvent}} …
//!                                         ◀─ {"type":"caught_up","seq":S}   (replay done)
//!                                         ◀─ {"type":"event",…} (live)
//!  {"type":"reply","id":C,…}               ─▶
//!                                         ◀─ {"type":"ack","id":C,…} | {"type":"error","id":C,…}
//!  {"type":"ping"}                         ─▶ ◀─ {"type":"pong"}
//! ```
//!
//! A `last_seq` older than what retention kept in the outbox is answered
//! `{"type":"error","code":"gone"}` and close 4410: the client reloads its snapshot.
//! A bad token (forged, expired, revoked) is answered `{"type":"error","code":"unauthorized"}`
//! and the socket is closed with 4401; nothing of any org is sent first. The session is looked
//! up again at every ping (`ws_ping_secs`): one revoked or expired meanwhile ends the socket
//! the same way.
//!
//! Backpressure: frames go to the socket through a queue of `ws_queue_frames`, written by a
//! task of its own (so commands are read while a write is slow). When the queue stays full
//! for `ws_slow_ms` the client cannot keep up: the queued frames are dropped, it gets
//! `{"type":"resync","seq":S}` (S: the last event that reached the socket) and is closed — the client reconnects with
//! its last seq and replays from the outbox. Memory per socket is bounded by the queue (plus
//! the frame being written); the hub's buffer is shared by all subscribers.

use super::commands;
use crate::api::State;
use crate::db::agents::{self, Agent};
use crate::db::outbox;
use crate::events::envelope;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State as AxState;
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

/// The protocol version this server speaks.
pub const VERSION: i64 = 1;
/// Events read from the outbox per query while catching up.
const PAGE: i64 = 500;
/// Largest frame a client may send.
const MAX_CLIENT_FRAME: usize = 64 * 1024;
/// The socket's read buffer, bytes.
const READ_BUFFER: usize = 4 * 1024;

/// `GET /api/v1/ws`: upgrades, then speaks the protocol above.
pub async fn upgrade(ws: WebSocketUpgrade, AxState(state): AxState<State>) -> Response {
    // Agents send small frames: a small read buffer keeps an idle socket cheap (the default
    // is 128 KiB).
    ws.max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| async move {
            state.inbox.connections.fetch_add(1, Ordering::Relaxed);
            metrics::gauge!("ws_connections").increment(1.0);
            connection(state.clone(), socket).await;
            state.inbox.connections.fetch_sub(1, Ordering::Relaxed);
            metrics::gauge!("ws_connections").decrement(1.0);
        })
}

#[derive(Deserialize)]
struct Hello {
    #[serde(rename = "type")]
    kind: String,
    token: String,
    #[serde(default)]
    last_seq: i64,
    #[serde(default = "version_one")]
    v: i64,
}

fn version_one() -> i64 {
    VERSION
}

/// Why a socket ended.
enum End {
    /// The client closed or the socket failed.
    Gone,
    /// The client is too slow: resync it.
    Slow,
    /// The idle timeout passed.
    Idle,
    /// The gateway stops.
    Shutdown,
    /// Reading the outbox failed.
    Store,
    /// The session token was revoked or expired while connected.
    Revoked,
    /// The events after the client's seq are no longer in the outbox.
    Pruned,
}

async fn connection(state: State, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let hello_wait = Duration::from_millis(state.inbox.config.ws_hello_ms);
    let first = tokio::time::timeout(hello_wait, stream.next()).await;
    let hello = match first {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Hello>(&t).ok(),
        _ => None,
    };
    let Some(hello) = hello.filter(|h| h.kind == "hello") else {
        refuse(
            &mut sink,
            "malformed",
            "the first frame must be {\"type\":\"hello\",\"token\":…,\"last_seq\":N}",
        )
        .await;
        return;
    };
    if hello.v != VERSION {
        refuse(
            &mut sink,
            "unsupported_version",
            "this server speaks protocol version 1",
        )
        .await;
        return;
    }
    if hello.last_seq < 0 {
        refuse(&mut sink, "malformed", "last_seq must be 0 or more").await;
        return;
    }
    let agent = match agents::by_token(&state.db.pool, &hello.token).await {
        Ok(Some(agent)) => agent,
        Ok(None) => {
            refuse(
                &mut sink,
                "unauthorized",
                "unknown, expired or revoked session token",
            )
            .await;
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "socket login failed");
            refuse(&mut sink, "internal", "try again").await;
            return;
        }
    };
    let cfg = state.inbox.config.clone();
    let (out, out_rx) = mpsc::channel::<Out>(cfg.ws_queue_frames);
    let (resync_tx, resync_rx) = oneshot::channel::<()>();
    let writer = tokio::spawn(write_loop(sink, out_rx, resync_rx, hello.last_seq));
    presence(&state, &agent, true).await;
    let mut session = Session {
        state: state.clone(),
        agent,
        token: hello.token,
        out,
        sent: hello.last_seq,
        slow: Duration::from_millis(cfg.ws_slow_ms),
    };
    let end = session.run(&mut stream).await;
    presence(&state, &session.agent, false).await;
    match end {
        End::Slow => {
            metrics::counter!("ws_resyncs_total").increment(1);
            let _ = resync_tx.send(());
        }
        End::Idle => close(&session.out, 4408, "idle timeout").await,
        End::Shutdown => close(&session.out, 1001, "gateway stopping").await,
        End::Store => close(&session.out, 1011, "try again").await,
        End::Pruned => {
            let frame = json!({"type": "error", "code": "gone",
                "message": "events after your last_seq were pruned; load a fresh snapshot"});
            let _ = session.push_json(&frame).await;
            close(&session.out, 4410, "history pruned").await
        }
        End::Revoked => {
            let frame = json!({"type": "error", "code": "unauthorized", "message": "session revoked or expired"});
            let _ = session.push_json(&frame).await;
            close(&session.out, 4401, "session ended").await
        }
        End::Gone => {}
    }
    drop(session);
    // A peer that vanished without closing can hold a write for long: not forever.
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(35), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
}

async fn close(out: &mpsc::Sender<Out>, code: u16, reason: &'static str) {
    let frame = Out {
        msg: Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })),
        seq: None,
    };
    let _ = out.send_timeout(frame, Duration::from_secs(5)).await;
}

/// Answers a refused hello and closes (4401 for a bad token, 4400 otherwise).
async fn refuse(sink: &mut SplitSink<WebSocket, Message>, code: &str, message: &str) {
    let frame = json!({"type": "error", "code": code, "message": message}).to_string();
    let close_code = if code == "unauthorized" { 4401 } else { 4400 };
    let _ = sink.send(Message::Text(frame.into())).await;
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: close_code,
            reason: "refused".into(),
        })))
        .await;
}

/// A frame on its way to the socket, with the seq of the event it carries.
struct Out {
    msg: Message,
    seq: Option<i64>,
}

/// Writes queued frames. On a resync it drops what is queued, writes
/// `{"type":"resync","seq":S}` — S the last event handed to the socket, which goes out first —
/// and a close, and ends.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Out>,
    resync: oneshot::Receiver<()>,
    mut written: i64,
) {
    let mut resync = Some(resync);
    loop {
        let next = match &mut resync {
            Some(r) => tokio::select! {
                biased;
                f = r => Err(f),
                m = rx.recv() => Ok(m),
            },
            None => Ok(rx.recv().await),
        };
        let out = match next {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(Ok(())) => return goodbye(sink, rx, written).await,
            Err(Err(_)) => {
                // The session ended without a resync: write what is left.
                resync = None;
                continue;
            }
        };
        let closing = matches!(out.msg, Message::Close(_));
        // `feed` hands the frame to the socket's buffer (whole); `flush` writes it out. A
        // resync while feeding means this frame never reached the buffer; while flushing, it
        // did, and it leaves before the resync frame.
        let fed = match &mut resync {
            Some(r) => tokio::select! {
                biased;
                _ = r => None,
                f = sink.feed(out.msg) => Some(f),
            },
            None => Some(sink.feed(out.msg).await),
        };
        match fed {
            None => return goodbye(sink, rx, written).await,
            Some(Err(_)) => return,
            Some(Ok(())) => {}
        }
        if let Some(seq) = out.seq {
            written = seq;
        }
        let flushed = match &mut resync {
            Some(r) => tokio::select! {
                biased;
                _ = r => None,
                f = sink.flush() => Some(f),
            },
            None => Some(sink.flush().await),
        };
        match flushed {
            None => return goodbye(sink, rx, written).await,
            Some(Err(_)) => return,
            Some(Ok(())) if closing => return,
            Some(Ok(())) => {}
        }
    }
}

/// Drops the queue, writes the resync frame and a close (4409); gives up after 30 s, as the
/// client may never read again.
async fn goodbye(mut sink: SplitSink<WebSocket, Message>, mut rx: mpsc::Receiver<Out>, seq: i64) {
    rx.close();
    while rx.try_recv().is_ok() {}
    let frame = json!({"type": "resync", "seq": seq}).to_string();
    let bye = async {
        sink.send(Message::Text(frame.into())).await?;
        sink.send(Message::Close(Some(CloseFrame {
            code: 4409,
            reason: "resync".into(),
        })))
        .await
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), bye).await;
}

/// Keeps the agent's presence: online while it has a socket on some node.
async fn presence(state: &State, agent: &Agent, connected: bool) {
    if *state.inbox.shutdown.borrow() {
        // The node is stopping (its pool closes); presence lapses by itself within its TTL.
        return;
    }
    let now_online = {
        let mut sockets = state.inbox.sockets.lock().expect("not poisoned");
        let n = sockets.entry(agent.id.clone()).or_insert(0);
        if connected {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
        }
        let online = *n > 0;
        if !online {
            sockets.remove(&agent.id);
        }
        online
    };
    let until = if now_online {
        crate::db::now_ms() + state.inbox.presence_ttl_ms()
    } else {
        0
    };
    if let Err(e) = agents::set_online_until(&state.db.pool, &agent.org_id, &agent.id, until).await
    {
        tracing::warn!(error = %e, "cannot record agent presence");
    }
    if now_online {
        state.inbox.assign_wake.notify_one();
    }
}

struct Session {
    state: State,
    agent: Agent,
    /// Checked again at every ping: a revoked or expired session ends the socket.
    token: String,
    out: mpsc::Sender<Out>,
    /// The last seq queued for the client.
    sent: i64,
    slow: Duration,
}

impl Session {
    async fn run(&mut self, stream: &mut SplitStream<WebSocket>) -> End {
        // Subscribe before reading the outbox: the seam is then covered twice, never missed.
        let mut hub = self.state.hub.subscribe();
        let mut typing = self.state.inbox.typing.subscribe();
        let mut shutdown = self.state.inbox.shutdown.clone();
        let welcome = json!({
            "type": "welcome", "v": VERSION, "org_id": self.agent.org_id,
            "agent": {"id": self.agent.id, "email": self.agent.email, "role": self.agent.role},
        });
        if let Err(end) = self.push_json(&welcome).await {
            return end;
        }
        if let Err(end) = self.catch_up().await {
            return end;
        }
        if let Err(end) = self
            .push_json(&json!({"type": "caught_up", "seq": self.sent}))
            .await
        {
            return end;
        }
        let cfg = &self.state.inbox.config;
        let idle = Duration::from_secs(cfg.ws_idle_secs);
        let mut idle_at = Instant::now() + idle;
        let mut ping = tokio::time::interval(Duration::from_secs(cfg.ws_ping_secs));
        ping.tick().await;
        loop {
            let step = tokio::select! {
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(t))) => {
                        idle_at = Instant::now() + idle;
                        let answer = commands::handle(&self.state, &self.agent, &t).await;
                        match answer {
                            Some(a) => self.push_json(&a).await,
                            None => Ok(()),
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Err(End::Gone),
                    Some(Ok(_)) => {
                        // Pings (answered by the socket itself), pongs, binary: signs of life.
                        idle_at = Instant::now() + idle;
                        Ok(())
                    }
                },
                ev = hub.recv() => match ev {
                    Ok(ev) if ev.stored.org_id != self.agent.org_id => Ok(()),
                    Ok(ev) => match ev.stored.seq {
                        Some(seq) if seq <= self.sent => Ok(()),
                        Some(seq) if seq == self.sent + 1 => {
                            let frame = self.state.inbox.live_frame(&ev, seq);
                            self.push_frame(seq, frame).await
                        }
                        _ => self.catch_up().await,
                    },
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up().await,
                    Err(broadcast::error::RecvError::Closed) => Err(End::Shutdown),
                },
                t = typing.recv() => match t {
                    Ok(t) if t.org_id == self.agent.org_id && t.agent_id != self.agent.id => {
                        self.push_json(&json!({
                            "type": "typing", "agent_id": t.agent_id, "conversation_id": t.conversation_id,
                        })).await
                    }
                    _ => Ok(()),
                },
                _ = ping.tick() => {
                    // The session may have been revoked or have expired since the hello.
                    match agents::by_token(&self.state.db.pool, &self.token).await {
                        Ok(None) => Err(End::Revoked),
                        _ => {
                            presence_refresh(&self.state, &self.agent).await;
                            self.push(Message::Ping(Vec::new().into()), None).await
                        }
                    }
                }
                _ = tokio::time::sleep_until(idle_at) => Err(End::Idle),
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => Err(End::Shutdown),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Sends every numbered event of the org after `self.sent`, from the outbox, in order.
    async fn catch_up(&mut self) -> Result<(), End> {
        loop {
            let page = outbox::after_seq(&self.state.db.pool, &self.agent.org_id, self.sent, PAGE)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "socket catch-up failed");
                    End::Store
                })?;
            let n = page.len() as i64;
            for ev in page {
                let Some(seq) = ev.seq else { continue };
                if seq != self.sent + 1 {
                    // Retention pruned the outbox past the client's position: replaying cannot
                    // fill the gap, the client must load a fresh snapshot.
                    return Err(End::Pruned);
                }
                self.push_event(seq, &envelope(&ev)).await?;
            }
            if n < PAGE {
                return Ok(());
            }
        }
    }

    async fn push_event(&mut self, seq: i64, event: &Value) -> Result<(), End> {
        let frame = json!({"type": "event", "seq": seq, "event": event});
        self.push_frame(seq, frame.to_string().into()).await
    }

    async fn push_frame(&mut self, seq: i64, frame: Utf8Bytes) -> Result<(), End> {
        self.push(Message::Text(frame), Some(seq)).await?;
        self.sent = seq;
        Ok(())
    }

    async fn push_json(&self, v: &Value) -> Result<(), End> {
        self.push(Message::Text(v.to_string().into()), None).await
    }

    /// Queues a frame; a queue that stays full for `slow` means the client cannot keep up.
    async fn push(&self, msg: Message, seq: Option<i64>) -> Result<(), End> {
        match self.out.send_timeout(Out { msg, seq }, self.slow).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(End::Slow),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(End::Gone),
        }
    }
}

async fn presence_refresh(state: &State, agent: &Agent) {
    let until = crate::db::now_ms() + state.inbox.presence_ttl_ms();
    if let Err(e) = agents::set_online_until(&state.db.pool, &agent.org_id, &agent.id, until).await
    {
        tracing::warn!(error = %e, "cannot refresh agent presence");
    }
}
