//! Group commit: every write that answers a provider, a client or a worker is handed to a
//! writer task, which commits many of them in one transaction; each caller waits for its own
//! batch's commit before it answers. One fsync then serves a whole batch.
//!
//! ```text
//!  request ─┐                       ┌─ reply (after COMMIT)
//!  request ─┼─▶ bounded queue ─▶ writer: BEGIN; op; op; op; …; COMMIT ─┼─ reply
//!  request ─┘   (full → 503)         (batch = whatever is queued, ≤ max)  └─ reply
//! ```
//!
//! The batch adapts to load: a writer takes whatever is queued when it becomes free, so a
//! request alone is committed at once (no timer), and under load batches grow to `max_batch`.
//! Jobs run without savepoints first; if any job fails, the batch is rolled back and run again
//! with a savepoint around each job, so one bad job never fails its neighbours.
//! SQLite gets one writer (it has one write lock anyway); PostgreSQL gets several.

use crate::db::dead_letters::{self, Replay};
use crate::db::ingest::{self, Ingested, StatusOutcome};
use crate::db::messages::{self, Applied, Claimed, Created, NewOutbound};
use crate::db::outbox;
use crate::db::{now_ms, Db, StoreError};
use channels::{InboundMessage, StatusUpdate};
use sqlx::AnyConnection;
use state_machines::Channel;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, Notify};

mod batch;
mod lag;
use batch::run_batch;
use lag::WriterLag;

/// One write, as a caller hands it over.
#[derive(Debug)]
pub enum WriteOp {
    /// A verified inbound message.
    Inbound {
        /// The org.
        org_id: String,
        /// The provider that received it (its plugin downloads the attachments).
        provider: &'static str,
        /// The message.
        msg: InboundMessage,
    },
    /// A verified provider status callback.
    Status {
        /// The org.
        org_id: String,
        /// The channel it came on.
        channel: Channel,
        /// The update.
        update: StatusUpdate,
    },
    /// A send request from the API.
    CreateOutbound {
        /// The org.
        org_id: String,
        /// The request.
        req: NewOutbound,
    },
    /// A worker claims due messages.
    Claim {
        /// How many at most.
        limit: i64,
        /// How many of them may be broadcast messages.
        bulk_limit: i64,
        /// How long the claim holds, ms.
        lease_ms: i64,
    },
    /// The provider accepted a message.
    Accepted {
        /// The org.
        org_id: String,
        /// Our message id.
        id: String,
        /// The provider's id.
        provider_message_id: String,
        /// The provider's status word.
        provider_status: String,
    },
    /// A transient failure, retry later.
    Retry {
        /// The org.
        org_id: String,
        /// Our message id.
        id: String,
        /// The error.
        error: String,
        /// The provider's code.
        error_code: Option<String>,
        /// When to retry, Unix ms.
        retry_at: i64,
    },
    /// Put back without counting an attempt.
    Defer {
        /// Our message id.
        id: String,
        /// When it is due again, Unix ms.
        until: i64,
    },
    /// Failed for good.
    Failure {
        /// The org.
        org_id: String,
        /// Our message id.
        id: String,
        /// Its channel.
        channel: Channel,
        /// The error.
        error: String,
        /// The provider's code.
        error_code: Option<String>,
        /// Attempts made.
        attempts: i64,
    },
    /// An agent moves a conversation (pending, resolved, reopened).
    ConversationStatus {
        /// The org.
        org_id: String,
        /// The conversation.
        id: String,
        /// The conversation-machine event.
        event: state_machines::ConversationEvent,
    },
    /// The relay numbers committed events (see [`crate::db::outbox`]).
    Sequence {
        /// How many at most.
        limit: i64,
    },
    /// The relay's sinks took these outbox rows.
    MarkPublished {
        /// Outbox row ids.
        ids: Vec<i64>,
    },
    /// A call moved (the voice side's report; see [`crate::db::calls`]).
    CallTransition(crate::db::calls::CallTransition),
    /// The retention job deletes published outbox rows.
    PruneOutbox {
        /// Rows published before this Unix ms go.
        published_before: i64,
        /// How many at most in this transaction.
        limit: i64,
    },
    /// The media worker claims due downloads.
    MediaClaim {
        /// How many at most.
        limit: i64,
        /// How long the claim holds, ms.
        lease_ms: i64,
    },
    /// A download ended.
    MediaDone {
        /// The attachment.
        id: String,
        /// How.
        outcome: crate::db::media::MediaOutcome,
    },
    /// An inbox write: an agent's command, an assignment round, a contact merge.
    Inbox(crate::db::inbox::InboxOp),
    /// A receptionist call's transcript turn (a `voice` message and its event).
    Transcript(crate::db::receptionist::TranscriptWrite),
    /// A caller's voicemail (a `voice` message with its audio, and its event).
    Voicemail(crate::db::receptionist::VoicemailWrite),
    /// A booking the receptionist took (or a caller's appointment moved).
    Book(crate::db::appointments::BookWrite),
    /// A caller's appointment cancelled.
    CancelAppointment(crate::db::appointments::CancelWrite),
    /// A broadcast write: create, cancel, expand, dispatch, confirm.
    Broadcast(crate::db::broadcasts::BroadcastOp),
    /// A contact saved through the API, or its tags replaced.
    Contact(crate::db::contacts::ContactOp),
    /// Replay a dead letter.
    Replay {
        /// The org.
        org_id: String,
        /// The dead letter.
        id: String,
    },
}

/// What a write did.
#[derive(Debug)]
pub enum WriteResult {
    /// For [`WriteOp::Inbound`].
    Inbound(Ingested),
    /// For [`WriteOp::Status`].
    Status(StatusOutcome),
    /// For [`WriteOp::CreateOutbound`].
    Created(Created),
    /// For [`WriteOp::Claim`].
    Claimed(Vec<Claimed>),
    /// For [`WriteOp::Accepted`].
    Applied(Applied),
    /// For [`WriteOp::Failure`]: the dead letter's id.
    DeadLettered(String),
    /// For [`WriteOp::Replay`].
    Replay(Replay),
    /// For [`WriteOp::ConversationStatus`].
    Conversation(crate::db::conversations::StatusChange),
    /// For [`WriteOp::Sequence`].
    Sequenced(Vec<crate::db::outbox::StoredEvent>),
    /// For [`WriteOp::CallTransition`].
    Call(crate::db::calls::CallRecorded),
    /// For [`WriteOp::MediaClaim`].
    MediaClaimed(Vec<crate::db::media::MediaJob>),
    /// For [`WriteOp::Inbox`].
    Inbox(crate::db::inbox::InboxResult),
    /// For [`WriteOp::Transcript`] and [`WriteOp::Voicemail`]: the message's id (`None`:
    /// the call is unknown).
    Transcript(Option<String>),
    /// For [`WriteOp::Book`].
    Booked(crate::db::appointments::BookResult),
    /// For [`WriteOp::CancelAppointment`]: whether it was the caller's and booked.
    Cancelled(bool),
    /// For [`WriteOp::Broadcast`].
    Broadcast(crate::db::broadcasts::BroadcastResult),
    /// For [`WriteOp::Contact`].
    Contact(crate::db::contacts::ContactResult),
    /// For [`WriteOp::PruneOutbox`]: how many rows went.
    Pruned(u64),
    /// For [`WriteOp::Retry`], [`WriteOp::Defer`], [`WriteOp::MarkPublished`] and
    /// [`WriteOp::MediaDone`].
    Done,
}

impl WriteOp {
    /// The (org, contact address or provider id) whose rows this op locks, for sharding and
    /// for the lock order inside a batch.
    fn contact_key(&self) -> Option<(&str, &str)> {
        match self {
            WriteOp::Inbound { org_id, msg, .. } => Some((org_id, &msg.from)),
            WriteOp::CreateOutbound { org_id, req } => Some((org_id, &req.to)),
            WriteOp::Status { org_id, update, .. } => Some((org_id, &update.provider_message_id)),
            _ => None,
        }
    }

    /// Whether committing this op may leave new outbox rows for the relay. The relay's own
    /// ops and claims do not, so they do not wake it (which would make it spin).
    fn appends_events(&self) -> bool {
        !matches!(
            self,
            WriteOp::Sequence { .. }
                | WriteOp::MarkPublished { .. }
                | WriteOp::PruneOutbox { .. }
                | WriteOp::Claim { .. }
                | WriteOp::Defer { .. }
                | WriteOp::MediaClaim { .. }
                | WriteOp::MediaDone { .. }
                | WriteOp::Broadcast(crate::db::broadcasts::BroadcastOp::Expand)
        )
    }
}

/// Why a write was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The queue is full: the caller should answer 503 with `Retry-After`.
    #[error("write queue is full")]
    Overloaded,
    /// The gateway is shutting down.
    #[error("shutting down")]
    Closed,
    /// The database refused the write or the commit.
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteResult, CommitError>>,
    queued_at: Instant,
}

/// Tuning of the committer.
#[derive(Debug, Clone, Copy)]
pub struct CommitSettings {
    /// Jobs that may wait; more are refused with [`CommitError::Overloaded`].
    pub queue_capacity: usize,
    /// Most jobs in one transaction.
    pub max_batch: usize,
    /// Writer tasks (1 for SQLite).
    pub writers: usize,
}

/// Writers kept for the broadcast engine's rounds on PostgreSQL (and as many rounds at once).
pub const BULK_WRITERS: usize = 2;

/// The handle callers submit writes through.
#[derive(Clone)]
pub struct Committer {
    txs: Vec<mpsc::Sender<Job>>,
    /// How far behind the first writer is (see [`Committer::lag`]).
    lag: Arc<WriterLag>,
    /// Writers of the broadcast engine's rounds alone (PostgreSQL).
    bulk: Vec<mpsc::Sender<Job>>,
    /// Turns of the broadcast engine's dispatch rounds over the writers.
    rounds: Arc<std::sync::atomic::AtomicUsize>,
    /// Woken after every commit; the relay and the send worker wait on it.
    pub committed: Arc<Notify>,
}

impl Committer {
    /// Starts the writer tasks: `writers` for every write (one on SQLite) and, on
    /// PostgreSQL, [`BULK_WRITERS`] more for the broadcast engine's rounds alone.
    pub fn start(db: Db, settings: CommitSettings) -> Committer {
        let committed = Arc::new(Notify::new());
        let (writers, bulk) = if db.backend == crate::db::Backend::Sqlite {
            (1, 0)
        } else {
            (settings.writers.max(1), BULK_WRITERS)
        };
        let spawn = || {
            let (tx, rx) = mpsc::channel((settings.queue_capacity / writers).max(1));
            let lag = WriterLag::new();
            tokio::spawn(writer(
                db.clone(),
                rx,
                settings.max_batch.max(1),
                committed.clone(),
                lag.clone(),
            ));
            (tx, lag)
        };
        let (txs, lags): (Vec<_>, Vec<_>) = (0..writers).map(|_| spawn()).unzip();
        let bulk = (0..bulk).map(|_| spawn().0).collect();
        Committer {
            txs,
            lag: lags[0].clone(),
            bulk,
            committed,
            rounds: Default::default(),
        }
    }

    /// How many dispatch rounds can commit side by side without sharing a writer with
    /// conversation writes: the bulk writers (PostgreSQL), else one.
    pub fn round_lanes(&self) -> usize {
        self.bulk.len().max(1)
    }

    /// The writer an op goes to. Writes about one contact always meet the same writer, so
    /// one node's writers never lock one contact's rows in opposite orders. Of the rest, a
    /// provider's acceptance (it locks only its message) goes by its message, the broadcast
    /// engine's expansions and dispatch rounds go to the bulk writers in turn (PostgreSQL;
    /// SQLite's one writer takes everything), and its other writes (a broadcast created,
    /// cancelled, confirmed) to the last writer: none of them then queues behind the send
    /// worker's claims and the relay on the first, where every other op without a contact
    /// goes, and no conversation write queues behind a 50-person round. (Measured: with them
    /// all on the first writer, that one writer was what a broadcast's rate on PostgreSQL
    /// was made of; with rounds on the general writers, an agent's send waited behind them,
    /// BENCHMARKS.md.)
    fn lane(&self, op: &WriteOp) -> &mpsc::Sender<Job> {
        use crate::db::broadcasts::BroadcastOp;
        let n = self.txs.len();
        let spread = |key: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key(&mut h);
            (std::hash::Hasher::finish(&h) % n as u64) as usize
        };
        let i = match (op.contact_key(), op) {
            (Some((a, b)), _) => spread(&|h| std::hash::Hash::hash(&(a, b), h)),
            (None, WriteOp::Accepted { id, .. }) => spread(&|h| std::hash::Hash::hash(id, h)),
            (None, WriteOp::Broadcast(BroadcastOp::Dispatch(_) | BroadcastOp::Expand)) => {
                let turn = self
                    .rounds
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !self.bulk.is_empty() {
                    return &self.bulk[turn % self.bulk.len()];
                }
                turn % n
            }
            (None, WriteOp::Broadcast(_)) => n - 1,
            (None, _) => 0,
        };
        &self.txs[i]
    }

    /// About how long a write without a contact — a call's step, a claim, the relay's
    /// bookkeeping — submitted now would wait before its transaction starts: the lag of
    /// the first writer, which takes them all ([`lane`](Self::lane)). See [`lag`](self::lag).
    pub fn lag(&self) -> std::time::Duration {
        self.lag.at(Instant::now())
    }

    /// Submits a write and waits for its commit; refuses at once when the queue is full.
    pub async fn submit(&self, op: WriteOp) -> Result<WriteResult, CommitError> {
        let (reply, rx) = oneshot::channel();
        self.lane(&op)
            .clone()
            .try_send(Job {
                op,
                reply,
                queued_at: Instant::now(),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => CommitError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => CommitError::Closed,
            })?;
        rx.await.map_err(|_| CommitError::Closed)?
    }

    /// Submits a write, waiting for room in the queue (for internal workers).
    pub async fn submit_wait(&self, op: WriteOp) -> Result<WriteResult, CommitError> {
        let (reply, rx) = oneshot::channel();
        self.lane(&op)
            .clone()
            .send(Job {
                op,
                reply,
                queued_at: Instant::now(),
            })
            .await
            .map_err(|_| CommitError::Closed)?;
        rx.await.map_err(|_| CommitError::Closed)?
    }
}

async fn writer(
    db: Db,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    committed: Arc<Notify>,
    lag: Arc<WriterLag>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    loop {
        let Some(first) = rx.recv().await else { return };
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        lag.batch_started(batch[0].queued_at, started);
        let results = run_batch(&db, &batch).await;
        lag.batch_done();
        crate::telemetry::BatchCommitted {
            size: batch.len(),
            elapsed: started.elapsed(),
        }
        .emit();
        if batch.iter().any(|j| j.op.appends_events()) {
            committed.notify_waiters();
        }
        for (job, result) in batch.drain(..).zip(results) {
            let _ = job.reply.send(result);
        }
    }
}

/// Runs one op inside the batch's transaction.
async fn execute(conn: &mut AnyConnection, op: &WriteOp) -> Result<WriteResult, StoreError> {
    let now = now_ms();
    Ok(match op {
        WriteOp::Inbound {
            org_id,
            provider,
            msg,
        } => WriteResult::Inbound(ingest::message(conn, org_id, provider, msg, now).await?),
        WriteOp::Status {
            org_id,
            channel,
            update,
        } => WriteResult::Status(ingest::status(conn, org_id, *channel, update, now).await?),
        WriteOp::CreateOutbound { org_id, req } => {
            WriteResult::Created(messages::create_outbound(conn, org_id, req, now).await?)
        }
        WriteOp::Claim {
            limit,
            bulk_limit,
            lease_ms,
        } => WriteResult::Claimed(
            crate::db::sends::claim_due(conn, now, *limit, *bulk_limit, *lease_ms).await?,
        ),
        WriteOp::Accepted {
            org_id,
            id,
            provider_message_id,
            provider_status,
        } => WriteResult::Applied(
            messages::record_accepted(conn, org_id, id, provider_message_id, provider_status, now)
                .await?,
        ),
        WriteOp::Retry {
            org_id,
            id,
            error,
            error_code,
            retry_at,
        } => {
            messages::record_retry(
                conn,
                org_id,
                id,
                error,
                error_code.as_deref(),
                *retry_at,
                now,
            )
            .await?;
            WriteResult::Done
        }
        WriteOp::Defer { id, until } => {
            messages::defer(conn, id, *until).await?;
            WriteResult::Done
        }
        WriteOp::Failure {
            org_id,
            id,
            channel,
            error,
            error_code,
            attempts,
        } => WriteResult::DeadLettered(
            messages::record_failure(
                conn,
                org_id,
                id,
                *channel,
                error,
                error_code.as_deref(),
                *attempts,
                now,
            )
            .await?,
        ),
        WriteOp::ConversationStatus { org_id, id, event } => WriteResult::Conversation(
            crate::db::conversations::change_status(conn, org_id, id, *event, now).await?,
        ),
        WriteOp::Sequence { limit } => {
            WriteResult::Sequenced(outbox::sequence(conn, *limit).await?)
        }
        WriteOp::MarkPublished { ids } => {
            outbox::mark_published(conn, ids, now).await?;
            WriteResult::Done
        }
        WriteOp::CallTransition(t) => {
            WriteResult::Call(crate::db::calls::record(conn, t, now).await?)
        }
        WriteOp::PruneOutbox {
            published_before,
            limit,
        } => WriteResult::Pruned(outbox::prune(conn, *published_before, *limit).await?),
        WriteOp::MediaClaim { limit, lease_ms } => WriteResult::MediaClaimed(
            crate::db::media::claim_due(conn, now, *limit, *lease_ms).await?,
        ),
        WriteOp::MediaDone { id, outcome } => {
            crate::db::media::finish(conn, id, outcome, now).await?;
            WriteResult::Done
        }
        WriteOp::Replay { org_id, id } => {
            WriteResult::Replay(dead_letters::replay(conn, org_id, id, now).await?)
        }
        WriteOp::Inbox(op) => WriteResult::Inbox(crate::db::inbox::execute(conn, op, now).await?),
        WriteOp::Transcript(w) => {
            WriteResult::Transcript(crate::db::receptionist::append_turn(conn, w, now).await?)
        }
        WriteOp::Voicemail(w) => {
            WriteResult::Transcript(crate::db::receptionist::append_voicemail(conn, w, now).await?)
        }
        WriteOp::Book(w) => WriteResult::Booked(crate::db::appointments::book(conn, w, now).await?),
        WriteOp::CancelAppointment(w) => {
            WriteResult::Cancelled(crate::db::appointments::cancel(conn, w, now).await?)
        }
        WriteOp::Broadcast(op) => {
            WriteResult::Broadcast(crate::db::broadcasts::execute(conn, op, now).await?)
        }
        WriteOp::Contact(op) => {
            WriteResult::Contact(crate::db::contacts::execute(conn, op, now).await?)
        }
    })
}
