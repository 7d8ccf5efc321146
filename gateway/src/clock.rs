//! Wall-clock jumps. Every due time in the database — a message's next attempt (and the lease
//! of one being sent), a broadcast recipient's next step, an outbound webhook endpoint's retry
//! and lease — is written in this node's wall-clock milliseconds, so a clock set back by an
//! hour would hold all of them back an hour, and a clock set forward would expire the leases
//! of work in flight.
//!
//! [`watch`] compares the wall clock with the monotonic one every second. A jump of more
//! than [`JUMP_MS`] is counted (`clock_jumps_total{direction}`) and logged. Set back, on
//! SQLite (one node, whose clock wrote every due time), every due time still ahead is moved
//! back by the jump, so schedules keep their distance from now. On PostgreSQL the due times
//! are shared with other nodes, whose clocks did not move: nothing is shifted, and the
//! warning says that this node's clock disagrees with the others'. Set forward, nothing needs
//! moving: work becomes due early, and the send worker never sends a message it already has
//! in flight again ([`crate::sender`]).

use crate::db::{now_ms, Backend, Db};
use sqlx::AssertSqlSafe;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Drift between the wall clock and the monotonic clock, ms, that counts as a jump.
pub const JUMP_MS: i64 = 2_000;

/// Every due-time column written from the wall clock, as (table, column).
const DUE_TIMES: [(&str, &str); 4] = [
    ("messages", "next_attempt_at"),
    ("broadcast_recipients", "next_at"),
    ("webhook_endpoints", "retry_at"),
    ("webhook_endpoints", "lease_until"),
];

/// Watches for jumps until shutdown.
pub async fn watch(db: Db, mut shutdown: watch::Receiver<bool>) {
    let (mut wall, mut mono) = (now_ms(), Instant::now());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        let (w, m) = (now_ms(), Instant::now());
        let drift = (w - wall) - m.duration_since(mono).as_millis() as i64;
        (wall, mono) = (w, m);
        if drift.abs() <= JUMP_MS {
            continue;
        }
        let direction = if drift < 0 { "back" } else { "forward" };
        metrics::counter!("clock_jumps_total", "direction" => direction).increment(1);
        if drift > 0 {
            tracing::warn!(
                jump_ms = drift,
                "the wall clock jumped forward; due work runs early"
            );
        } else if db.backend == Backend::Sqlite {
            match shift(&db, drift, w).await {
                Ok(rows) => tracing::warn!(
                    jump_ms = drift,
                    rows,
                    "the wall clock jumped back; due times still ahead moved back with it"
                ),
                Err(e) => tracing::error!(jump_ms = drift, error = %e,
                    "the wall clock jumped back and due times could not be moved; work waits"),
            }
        } else {
            tracing::error!(
                jump_ms = drift,
                "the wall clock jumped back; this node's clock now disagrees with the database's \
                 due times (shared with other nodes, so not moved): its work waits until the \
                 clock catches up. Keep nodes' clocks synchronised (NTP slews, never steps)"
            );
        }
    }
}

/// Moves every due time after `now` by `by_ms`; the rows moved.
async fn shift(db: &Db, by_ms: i64, now: i64) -> Result<u64, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let mut rows = 0;
    for (table, column) in DUE_TIMES {
        rows += sqlx::query(AssertSqlSafe(format!(
            "UPDATE {table} SET {column} = {column} + $1 WHERE {column} > $2"
        )))
        .bind(by_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(rows)
}
