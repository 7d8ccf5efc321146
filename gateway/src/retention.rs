//! The outbox retention job: published events older than `relay.retention_hours` are deleted,
//! in chunks through the committer (so on SQLite it never fights the writers for the lock),
//! once shortly after start and then hourly. Unpublished rows are never deleted: a broker
//! outage longer than the retention window loses nothing.
//!
//! Every node may run it (deleting already-deleted rows is a no-op); sequence numbers live in
//! `orgs.next_seq`, so pruning never makes a number be handed out twice.

use crate::commit::{CommitError, Committer, WriteOp, WriteResult};
use crate::db::now_ms;
use std::time::Duration;
use tokio::sync::watch;

/// Rows deleted per transaction: small enough that webhooks behind it wait little.
const CHUNK: i64 = 2_000;

/// Deletes every row published more than `keep` ago; returns how many went.
pub async fn prune_published(committer: &Committer, keep: Duration) -> Result<u64, CommitError> {
    let published_before = now_ms() - keep.as_millis() as i64;
    let mut total = 0;
    loop {
        let op = WriteOp::PruneOutbox {
            published_before,
            limit: CHUNK,
        };
        let WriteResult::Pruned(n) = committer.submit_wait(op).await? else {
            unreachable!("PruneOutbox answers Pruned");
        };
        total += n;
        if n < CHUNK as u64 {
            return Ok(total);
        }
    }
}

/// Runs the job every `every` (first after one minute) until `shutdown`; `keep` of zero turns
/// it off.
pub async fn run(
    committer: Committer,
    keep: Duration,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if keep.is_zero() {
        return;
    }
    let mut wait = Duration::from_secs(60).min(every);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        wait = every;
        match prune_published(&committer, keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned published outbox rows"),
            Err(e) => tracing::warn!(error = %e, "outbox retention job failed; will try again"),
        }
    }
}
