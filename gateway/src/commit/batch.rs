//! Running one batch of the committer: in one transaction, in lock order, retried whole on
//! transient failures, then job by job behind savepoints; and what each job is told when the
//! whole batch fails.

use super::{execute, CommitError, Job, WriteOp, WriteResult};
use crate::db::{Db, StoreError};
use sqlx::{AnyConnection, Connection};

/// Runs a batch in one transaction; a result per job, in order.
///
/// Jobs run sorted by the contact they lock (stable, so one contact's jobs keep their order):
/// every writer — of this node and of other nodes on the same PostgreSQL — then takes row
/// locks in one global order, which keeps deadlocks rare. Those that still happen (and
/// serialization failures) are transient: the whole batch runs again after a short random
/// pause, a few times, before the savepoint fallback isolates a job that fails on its own.
pub(super) async fn run_batch(db: &Db, batch: &[Job]) -> Vec<Result<WriteResult, CommitError>> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| batch[i].op.contact_key());
    let ordered: Vec<&Job> = order.iter().map(|&i| &batch[i]).collect();
    let mut results = None;
    for round in 0..TRANSIENT_RETRIES {
        let transient = match attempt(db, &ordered, false).await {
            Ok(r) if r.iter().all(Result::is_ok) => {
                results = Some(r);
                break;
            }
            Ok(r) => r
                .iter()
                .any(|x| matches!(x, Err(CommitError::Store(e)) if e.is_transient())),
            Err(e) => e.is_transient(),
        };
        if !transient {
            break;
        }
        let pause = fastrand::u64(1..=10 * (round + 1));
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
    }
    let results = match results {
        Some(r) => r,
        None => match attempt(db, &ordered, true).await {
            Ok(results) => results,
            Err(e) => {
                tracing::error!(error = %e, size = batch.len(), "batch commit failed");
                // Every job gets the batch's error, classified as it was (a full disk or a
                // lost connection is 503 to a provider, not 500).
                let failed = StoreError::BatchFailed {
                    message: e.to_string(),
                    transient: e.is_transient(),
                    out_of_space: e.is_out_of_space(),
                };
                batch
                    .iter()
                    .map(|_| Err(CommitError::Store(failed.clone_batch())))
                    .collect()
            }
        },
    };
    // Back to submission order.
    let mut slots: Vec<Option<Result<WriteResult, CommitError>>> =
        (0..batch.len()).map(|_| None).collect();
    for (i, r) in order.into_iter().zip(results) {
        slots[i] = Some(r);
    }
    slots
        .into_iter()
        .map(|r| r.expect("one result per job"))
        .collect()
}

/// Records a run of acceptances in one bulk write; `None` when it must go one at a time.
async fn accept_run(
    conn: &mut AnyConnection,
    run: &[&Job],
) -> Result<Option<Vec<WriteResult>>, StoreError> {
    let items: Vec<crate::db::sends::Acceptance<'_>> = run
        .iter()
        .filter_map(|job| match &job.op {
            WriteOp::Accepted {
                org_id,
                id,
                provider_message_id,
                provider_status,
            } => Some((
                org_id.as_str(),
                id.as_str(),
                provider_message_id.as_str(),
                provider_status.as_str(),
            )),
            _ => None,
        })
        .collect();
    let done = crate::db::sends::accept_many(conn, &items, crate::db::now_ms()).await?;
    Ok(done.map(|applied| applied.into_iter().map(WriteResult::Applied).collect()))
}

/// Whole-batch tries on deadlocks and serialization failures before the savepoint fallback.
const TRANSIENT_RETRIES: u64 = 4;

/// One try at a batch. Without savepoints, the first failing job aborts the try (the caller
/// retries with savepoints); with them, each job's failure is its own.
///
/// A connection whose transaction failed to begin, roll back or commit is closed rather than
/// returned to the pool: SQLite leaves a transaction open when its COMMIT fails (a full
/// disk), and the pooled connection would refuse every later batch ("non-zero transaction
/// depth") long after space returned.
async fn attempt(
    db: &Db,
    batch: &[&Job],
    savepoints: bool,
) -> Result<Vec<Result<WriteResult, CommitError>>, StoreError> {
    let mut conn = db.pool.acquire().await?;
    let tried = attempt_on(&mut conn, batch, savepoints).await;
    if tried.is_err() {
        conn.close_on_drop();
    }
    tried
}

async fn attempt_on(
    conn: &mut AnyConnection,
    batch: &[&Job],
    savepoints: bool,
) -> Result<Vec<Result<WriteResult, CommitError>>, StoreError> {
    // On SQLite the write lock is taken up front (see `begin_write`).
    let mut tx = crate::db::begin_write(&mut *conn).await?;
    let mut results = Vec::with_capacity(batch.len());
    // Consecutive acceptances go in one bulk write on the first try (`db::sends`); one that
    // is not plain is recorded one at a time from `one_by_one` on.
    let mut one_by_one = 0;
    for (i, job) in batch.iter().enumerate() {
        if results.len() > i {
            continue;
        }
        if !savepoints && i >= one_by_one {
            let run = batch[i..]
                .iter()
                .take_while(|j| matches!(j.op, WriteOp::Accepted { .. }))
                .take(crate::db::sends::MAX_ACCEPTS)
                .count();
            if run >= 2 {
                match accept_run(&mut tx, &batch[i..i + run]).await {
                    Ok(Some(done)) => {
                        results.extend(done.into_iter().map(Ok));
                        continue;
                    }
                    Ok(None) => one_by_one = i + run,
                    Err(e) => {
                        tx.rollback().await?;
                        results.push(Err(CommitError::Store(e)));
                        return Ok(results);
                    }
                }
            }
        }
        if !savepoints {
            match execute(&mut tx, &job.op).await {
                Ok(r) => results.push(Ok(r)),
                Err(e) => {
                    tx.rollback().await?;
                    results.push(Err(CommitError::Store(e)));
                    return Ok(results);
                }
            }
            continue;
        }
        let mut tries = 0;
        loop {
            tries += 1;
            let mut sp = tx.begin().await?;
            match execute(&mut sp, &job.op).await {
                Ok(r) => {
                    sp.commit().await?;
                    results.push(Ok(r));
                    break;
                }
                Err(e) => {
                    sp.rollback().await?;
                    // A unique violation means a concurrent writer just stored the same
                    // contact or message: run again and find it.
                    if (e.is_transient() || e.is_unique_violation()) && tries < 3 {
                        continue;
                    }
                    results.push(Err(CommitError::Store(e)));
                    break;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(results)
}
