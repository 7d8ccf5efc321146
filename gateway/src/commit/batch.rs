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

/// How many jobs from the first on satisfy `fits` (at most `max`).
fn run_of(jobs: &[&Job], fits: fn(&WriteOp) -> bool, max: usize) -> usize {
    jobs.iter().take_while(|j| fits(&j.op)).take(max).count()
}

/// The results of a bulk run: each job's answer, or (`None`) the job executed one at a time
/// now, in order.
async fn settle(
    tx: &mut AnyConnection,
    run: &[&Job],
    answers: impl Iterator<Item = Option<WriteResult>>,
    results: &mut Vec<Result<WriteResult, CommitError>>,
) -> Result<(), StoreError> {
    for (job, answer) in run.iter().zip(answers) {
        let done = match answer {
            Some(done) => done,
            None => execute(tx, &job.op).await?,
        };
        results.push(Ok(done));
    }
    Ok(())
}

/// Whether a job is a provider's acceptance (`db::sends` takes runs of them).
fn is_accepted(op: &WriteOp) -> bool {
    matches!(op, WriteOp::Accepted { .. })
}

/// Steps a run of call transitions in bulk: per job, its result, or `None` when it must be
/// recorded one at a time (after the bulk write, in order).
async fn call_run(
    conn: &mut AnyConnection,
    run: &[&Job],
) -> Result<Vec<Option<crate::db::calls::CallRecorded>>, StoreError> {
    let transitions: Vec<&crate::db::calls::CallTransition> = run
        .iter()
        .filter_map(|job| match &job.op {
            WriteOp::CallTransition(t) => Some(t),
            _ => None,
        })
        .collect();
    crate::db::calls_bulk::record_many(conn, &transitions, crate::db::now_ms()).await
}

/// Whether a job is a call transition (`db::calls_bulk` takes runs of them).
fn is_call(op: &WriteOp) -> bool {
    matches!(op, WriteOp::CallTransition(_))
}

/// Whether a job is an inbound message the bulk path may store (`db::ingest_bulk`).
fn plain_inbound(op: &WriteOp) -> bool {
    matches!(op, WriteOp::Inbound { msg, .. } if crate::db::ingest_bulk::is_plain(msg))
}

/// Stores a run of plain inbound messages in bulk: per job, its result, or `None` when it
/// must be stored one at a time (after the bulk write, in order).
async fn inbound_run(
    conn: &mut AnyConnection,
    run: &[&Job],
) -> Result<Vec<Option<crate::db::ingest::Ingested>>, StoreError> {
    let items: Vec<crate::db::ingest_bulk::Plain<'_>> = run
        .iter()
        .filter_map(|job| match &job.op {
            WriteOp::Inbound { org_id, msg, .. } => Some((org_id.as_str(), msg)),
            _ => None,
        })
        .collect();
    crate::db::ingest_bulk::messages(conn, &items, crate::db::now_ms()).await
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
    if savepoints {
        for job in batch {
            results.push(isolated(&mut tx, &job.op).await?);
        }
    } else if let Err(e) = all_or_nothing(&mut tx, batch, &mut results).await {
        tx.rollback().await?;
        results.push(Err(CommitError::Store(e)));
        return Ok(results);
    }
    tx.commit().await?;
    Ok(results)
}

/// The first try: every job's result into `results` until one fails (its error is
/// returned). Runs of plain inbound messages and of acceptances go in bulk writes.
async fn all_or_nothing(
    tx: &mut AnyConnection,
    batch: &[&Job],
    results: &mut Vec<Result<WriteResult, CommitError>>,
) -> Result<(), StoreError> {
    // A run of acceptances that is not plain is recorded one at a time from `one_by_one` on.
    let mut one_by_one = 0;
    for (i, job) in batch.iter().enumerate() {
        if results.len() > i {
            continue;
        }
        let run = run_of(&batch[i..], plain_inbound, crate::db::ingest_bulk::MAX_BULK);
        if run >= 2 {
            let answers = inbound_run(tx, &batch[i..i + run]).await?;
            let answers = answers.into_iter().map(|a| a.map(WriteResult::Inbound));
            settle(tx, &batch[i..i + run], answers, results).await?;
            continue;
        }
        let run = run_of(&batch[i..], is_call, crate::db::calls_bulk::MAX_BULK);
        if run >= 2 {
            let answers = call_run(tx, &batch[i..i + run]).await?;
            let answers = answers.into_iter().map(|a| a.map(WriteResult::Call));
            settle(tx, &batch[i..i + run], answers, results).await?;
            continue;
        }
        if i >= one_by_one {
            let run = run_of(&batch[i..], is_accepted, crate::db::sends::MAX_ACCEPTS);
            if run >= 2 {
                match accept_run(tx, &batch[i..i + run]).await? {
                    Some(done) => {
                        results.extend(done.into_iter().map(Ok));
                        continue;
                    }
                    None => one_by_one = i + run,
                }
            }
        }
        results.push(Ok(execute(tx, &job.op).await?));
    }
    Ok(())
}

/// The fallback: one job behind its own savepoint, so its failure is its own.
async fn isolated(
    tx: &mut AnyConnection,
    op: &WriteOp,
) -> Result<Result<WriteResult, CommitError>, StoreError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut sp = tx.begin().await?;
        match execute(&mut sp, op).await {
            Ok(r) => {
                sp.commit().await?;
                return Ok(Ok(r));
            }
            Err(e) => {
                sp.rollback().await?;
                // A unique violation means a concurrent writer just stored the same
                // contact or message: run again and find it.
                if (e.is_transient() || e.is_unique_violation()) && tries < 3 {
                    continue;
                }
                return Ok(Err(CommitError::Store(e)));
            }
        }
    }
}
