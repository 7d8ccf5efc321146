//! The outbox relay: numbers committed events per organization and hands them, in order, to
//! every sink — the in-process [`Hub`] always, an external log (Kafka) when configured —
//! marking them published only after every sink took them. At-least-once: a crash between a
//! sink's acknowledgement and the mark re-delivers the same `event_id` after restart.
//!
//! ```text
//!   loop:
//!     batch = numbered-but-unpublished rows (a crash or failed publish left them)
//!          or else number the next committed rows (outbox::sequence)
//!     empty? wait for the committer's signal (or the poll interval)
//!     every sink.publish(batch) — on error: keep them, back off, report degraded
//!     mark_published(batch)
//! ```
//!
//! Only one relay works per database at a time: with several gateway nodes on PostgreSQL,
//! [`crate::db::leader`] elects it (an advisory lock held by its session); the others stand by
//! and take over when its session ends.

use crate::commit::{CommitError, Committer, WriteOp, WriteResult};
use crate::db::leader::Leadership;
use crate::db::outbox::{self, StoredEvent};
use crate::db::{now_ms, Db, StoreError};
use crate::events::envelope;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// An event as sinks and subscribers get it.
#[derive(Debug, Clone)]
pub struct PublishedEvent {
    /// The stored row (with its sequence number).
    pub stored: StoredEvent,
    /// Its CloudEvents JSON envelope.
    pub envelope: Value,
}

/// Why a sink did not take a batch.
#[derive(Debug, thiserror::Error)]
#[error("sink `{sink}` failed: {reason}")]
pub struct SinkError {
    /// The sink.
    pub sink: &'static str,
    /// What happened.
    pub reason: String,
}

/// The future a sink returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// Somewhere events go. `publish` returns only when the sink holds the whole batch durably
/// (for Kafka: acknowledged by the broker).
pub trait EventSink: Send + Sync {
    /// For logs and `/health`.
    fn name(&self) -> &'static str;
    /// Takes a batch, in order.
    fn publish<'a>(&'a self, events: &'a [Arc<PublishedEvent>]) -> SinkFuture<'a>;
}

/// In-process fan-out to subscribers (the agent stream, tests). A subscriber that falls more
/// than the channel's capacity behind is told it lagged and catches up from the database.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<PublishedEvent>>,
}

impl Hub {
    /// A hub that buffers `capacity` events per slow subscriber.
    pub fn new(capacity: usize) -> Hub {
        Hub {
            tx: broadcast::channel(capacity.max(16)).0,
        }
    }

    /// A new subscriber, receiving events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PublishedEvent>> {
        self.tx.subscribe()
    }
}

impl EventSink for Hub {
    fn name(&self) -> &'static str {
        "in-process"
    }

    fn publish<'a>(&'a self, events: &'a [Arc<PublishedEvent>]) -> SinkFuture<'a> {
        for ev in events {
            // No subscriber is not an error: the events stay readable from the database.
            let _ = self.tx.send(ev.clone());
        }
        Box::pin(async { Ok(()) })
    }
}

/// What `/health` reports about the relay.
#[derive(Default)]
pub struct RelayStatus {
    /// When the relay last completed a round without error, Unix ms.
    pub last_ok_ms: AtomicI64,
    /// Events not yet published at the last look.
    pub backlog: AtomicI64,
    /// The last error, cleared by a good round.
    pub last_error: Mutex<Option<String>>,
    /// Whether this node's relay is the one relaying (always on SQLite).
    pub leader: AtomicBool,
    /// Whether events go to Kafka (else the outbox is the log and the hub is fed directly).
    pub kafka: AtomicBool,
    /// With Kafka: whether this node's reader of the event topics is positioned (its hub is
    /// fed from Kafka).
    pub kafka_reader_ready: Arc<AtomicBool>,
}

/// Settings of the relay.
#[derive(Debug, Clone, Copy)]
pub struct RelaySettings {
    /// Events per round.
    pub batch: i64,
    /// How often to look without a signal (other writers, timers), ms.
    pub poll_ms: u64,
}

/// The smallest batch the relay shrinks to after failures.
const MIN_BATCH: i64 = 25;

/// Runs the relay until `shutdown` turns true.
pub async fn run(
    db: Db,
    committer: Committer,
    sinks: Vec<Arc<dyn EventSink>>,
    status: Arc<RelayStatus>,
    settings: RelaySettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut leadership = Leadership::new(db.clone());
    // The batch shrinks when a sink fails (a slow or recovering broker may not acknowledge a
    // big batch within its timeout, and a failed batch is sent again whole) and grows back
    // with every good round.
    let mut limit = settings.batch;
    loop {
        if *shutdown.borrow() {
            return;
        }
        match leadership.ensure().await {
            Ok(true) => status.leader.store(true, Ordering::Relaxed),
            standby => {
                status.leader.store(false, Ordering::Relaxed);
                if let Err(e) = standby {
                    tracing::warn!(error = %e, "cannot ask for relay leadership");
                } else {
                    // A standby is healthy: the leader relays.
                    status.last_ok_ms.store(now_ms(), Ordering::Relaxed);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(settings.poll_ms.max(200))) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        }
        let notified = committer.committed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match round(&db, &committer, &sinks, limit).await {
            Ok(0) => {
                status.last_ok_ms.store(now_ms(), Ordering::Relaxed);
                *status.last_error.lock().expect("not poisoned") = None;
                backoff = Duration::from_millis(50);
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(settings.poll_ms)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Ok(n) => {
                status.last_ok_ms.store(now_ms(), Ordering::Relaxed);
                *status.last_error.lock().expect("not poisoned") = None;
                backoff = Duration::from_millis(50);
                let full = n as i64 >= limit;
                limit = (limit * 2).min(settings.batch);
                if full {
                    continue;
                }
                if let Ok(b) = outbox::backlog(&db.pool).await {
                    status.backlog.store(b, Ordering::Relaxed);
                }
            }
            Err(e) => {
                limit = (limit / 4).max(MIN_BATCH.min(settings.batch));
                tracing::warn!(error = %e, next_batch = limit, "relay round failed; events stay in the outbox");
                *status.last_error.lock().expect("not poisoned") = Some(e.to_string());
                if let Ok(b) = outbox::backlog(&db.pool).await {
                    status.backlog.store(b, Ordering::Relaxed);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading or numbering the outbox failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sink refused the batch.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Numbering or marking could not be committed.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// One round; returns how many events were published.
async fn round(
    db: &Db,
    committer: &Committer,
    sinks: &[Arc<dyn EventSink>],
    limit: i64,
) -> Result<usize, RelayError> {
    let mut rows = outbox::unpublished(&db.pool, limit).await?;
    if rows.is_empty() {
        if let WriteResult::Sequenced(numbered) =
            committer.submit_wait(WriteOp::Sequence { limit }).await?
        {
            rows = numbered;
        }
    }
    if rows.is_empty() {
        return Ok(0);
    }
    let oldest = rows.iter().map(|r| r.time).min().unwrap_or_else(now_ms);
    let events: Vec<Arc<PublishedEvent>> = rows
        .into_iter()
        .map(|stored| {
            Arc::new(PublishedEvent {
                envelope: envelope(&stored),
                stored,
            })
        })
        .collect();
    for sink in sinks {
        sink.publish(&events).await?;
    }
    let ids: Vec<i64> = events.iter().map(|e| e.stored.row_id).collect();
    committer
        .submit_wait(WriteOp::MarkPublished { ids })
        .await?;
    let now = now_ms();
    crate::telemetry::EventsPublished {
        count: events.len(),
        lag: Duration::from_millis((now - oldest).max(0) as u64),
    }
    .emit();
    Ok(events.len())
}
