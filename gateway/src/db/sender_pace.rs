//! The per-sender send rate kept in the database, so that every node sharing it paces one
//! sender together: the generic cell rate algorithm (GCRA) in one statement. Each sender key
//! has a theoretical arrival time (`tat`); a send reserves the slot at `max(tat, now - burst
//! window + interval)` and moves `tat` one emission interval on. A slot in the past or now is sent at
//! once (the burst: one second's worth, as the in-memory bucket allows); a later slot is
//! waited for; a slot later than the caller may wait is not reserved at all.
//!
//! This is the one table not scoped by org: the limit belongs to the provider's number (see
//! `sql/*/0013_sender_pace.sql`). Only PostgreSQL uses it (see [`crate::sender`]): a SQLite
//! file serves one node, whose in-memory buckets already see every send.

use super::StoreError;
use sqlx::AnyPool;
use std::time::Duration;

/// Reserves one send for `key` at `per_second` (a burst of one second's worth, at least one):
/// `Ok(wait)` before sending, or `Err(due_in)` when the slot would be more than `max_wait`
/// away (nothing is then reserved). The wait is measured from when the statement returned,
/// not from when it was sent: under contention for the sender's row a statement can wait
/// tens of milliseconds, and a wait counted from before it would send each message that
/// much after its slot, unevenly (measured: 5 % over a 50/s limit).
pub async fn reserve(
    pool: &AnyPool,
    key: &str,
    per_second: f64,
    max_wait: Duration,
) -> Result<Result<Duration, Duration>, StoreError> {
    let now_us = super::now_us();
    let interval_us = (1_000_000.0 / per_second.max(1e-6)).round().max(1.0) as i64;
    let window_us = (per_second.max(1.0) * interval_us as f64).round() as i64;
    // The burst: slots from `floor` up to now are sent at once (`window / interval` of them).
    let floor = now_us - (window_us - interval_us);
    let latest_start = now_us.saturating_add(max_wait.as_micros().min(i64::MAX as u128) as i64);
    let tat: Option<i64> = sqlx::query_scalar(
        "INSERT INTO sender_pace (sender_key, tat_us) VALUES ($1, $2 + $3) \
         ON CONFLICT (sender_key) DO UPDATE SET tat_us = \
         (CASE WHEN sender_pace.tat_us > $2 THEN sender_pace.tat_us ELSE $2 END) + $3 \
         WHERE (CASE WHEN sender_pace.tat_us > $2 THEN sender_pace.tat_us ELSE $2 END) <= $4 \
         RETURNING tat_us",
    )
    .bind(key)
    .bind(floor)
    .bind(interval_us)
    .bind(latest_start)
    .fetch_optional(pool)
    .await?;
    if let Some(tat) = tat {
        let start = tat - interval_us;
        return Ok(Ok(Duration::from_micros(
            (start - super::now_us()).max(0) as u64
        )));
    }
    let tat: i64 = sqlx::query_scalar("SELECT tat_us FROM sender_pace WHERE sender_key = $1")
        .bind(key)
        .fetch_one(pool)
        .await?;
    Ok(Err(Duration::from_micros((tat - now_us).max(1) as u64)))
}
