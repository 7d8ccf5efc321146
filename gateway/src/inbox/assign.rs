//! The assigner: moves the queue (open, unassigned conversations in which the contact wrote at
//! least once) to online agents with room, round robin ([`crate::db::inbox::assign_queued`] has the rule). It runs on every node; on
//! PostgreSQL an advisory lock per org makes rounds take turns. A conversation the business
//! started and nobody answered (an API send, a broadcast rung to 100,000 people) needs no
//! agent; the contact's first reply puts it in the queue.
//!
//! ```text
//!  wake: an event that may change the queue or the room (message received, conversation
//!        created / status changed / assigned), an agent came online, or the poll interval
//!   └─▶ orgs with a queue and an online agent ─▶ WriteOp::Inbox(AssignQueued) per org
//! ```

use crate::commit::{Committer, WriteOp};
use crate::db::inbox::InboxOp;
use crate::db::{now_ms, Db, StoreError};
use crate::relay::Hub;
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};

/// Event types after which the queue may move.
fn moves_queue(event_type: &str) -> bool {
    matches!(
        event_type,
        "dartwing.message.received.v1"
            | "dartwing.conversation.created.v1"
            | "dartwing.conversation.status_changed.v1"
            | "dartwing.conversation.assigned.v1"
    )
}

/// Runs until `shutdown` turns true.
pub async fn run(
    db: Db,
    committer: Committer,
    hub: Hub,
    wake: Arc<Notify>,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = hub.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) if !moves_queue(&ev.stored.event_type) => continue,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => continue,
        }
        // One round serves a burst of events.
        while events.try_recv().is_ok() {}
        if let Err(e) = round(&db, &committer).await {
            tracing::warn!(error = %e, "assignment round failed; the queue waits");
        }
    }
}

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// Reading the queue failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The assignment could not be committed.
    #[error(transparent)]
    Commit(#[from] crate::commit::CommitError),
}

async fn round(db: &Db, committer: &Committer) -> Result<(), AssignError> {
    let orgs = sqlx::query(
        "SELECT DISTINCT c.org_id FROM conversations c WHERE c.assignee_id IS NULL \
         AND c.status = 'open' AND EXISTS (SELECT 1 FROM messages m WHERE m.org_id = c.org_id \
         AND m.conversation_id = c.id AND m.direction = 'inbound') \
         AND EXISTS (SELECT 1 FROM agents a WHERE a.org_id = c.org_id \
         AND a.online_until > $1)",
    )
    .bind(now_ms())
    .fetch_all(&db.pool)
    .await
    .map_err(StoreError::from)?;
    for row in orgs {
        let org_id: String = row.try_get(0).map_err(StoreError::from)?;
        committer
            .submit_wait(WriteOp::Inbox(InboxOp::AssignQueued { org_id }))
            .await?;
    }
    Ok(())
}
