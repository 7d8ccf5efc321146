//! The per-sender send rate kept in the database, so that every node sharing it paces one
//! sender together: the generic cell rate algorithm (GCRA) in one statement. Each sender key
//! has a theoretical arrival time (`tat`); a send reserves the slot at `max(tat, now - burst
//! window + interval)` and moves `tat` one emission interval on. A slot in the past or now is sent at
//! once (the burst: one second's worth, as the in-memory bucket allows); a later slot is
//! waited for; a slot later than the caller may wait is not reserved at all.
//!
//! A fast sender would make that one row the bottleneck: every send of every node updates
//! it, one at a time under its row lock (measured 2.6 ms a statement at ~200 sends/s on this
//! machine, the largest share of the database's time in a broadcast). So a node takes up to
//! 20 ms worth of slots at once (at most 32; one for senders under 100/s, whose pacing is
//! then exactly as before) and hands them out itself ([`PaceSlots`]); the rate across nodes
//! holds because the row moved on by every slot taken. A slot not used within 100 ms of its
//! reservation is dropped, so held slots never add up to a second burst after a pause.
//!
//! This is the one table not scoped by org: the limit belongs to the provider's number (see
//! `sql/*/0013_sender_pace.sql`). Only PostgreSQL uses it (see [`crate::sender`]): a SQLite
//! file serves one node, whose in-memory buckets already see every send.

use super::StoreError;
use sqlx::AnyPool;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// Slots reserved by this node and not used yet, by sender key: (slot, usable until), µs
/// since the epoch.
#[derive(Default)]
pub struct PaceSlots {
    slots: Mutex<HashMap<String, VecDeque<(i64, i64)>>>,
    /// One reservation at a time: sends that find no slot wait for the block being
    /// reserved rather than each reserving their own (which would take slots nobody uses).
    reserving: tokio::sync::Mutex<()>,
}

/// How long a held slot stays usable after its reservation, µs.
const HOLD_US: i64 = 100_000;

/// How many slots one statement takes for a sender at `per_second`: 20 ms worth, 1 to 32.
pub fn block_size(per_second: f64) -> u32 {
    (per_second * 0.02).floor().clamp(1.0, 32.0) as u32
}

impl PaceSlots {
    /// One send's slot for `key` at `per_second`: `Ok(wait)` before sending, or
    /// `Err(due_in)` when the next slot would be more than `max_wait` away (nothing is then
    /// reserved). A slot this node holds is used first; else a block is reserved.
    pub async fn reserve(
        &self,
        pool: &AnyPool,
        key: &str,
        per_second: f64,
        max_wait: Duration,
    ) -> Result<Result<Duration, Duration>, StoreError> {
        if let Some(slot) = self.take(key, super::now_us()) {
            return Ok(Ok(wait_for(slot)));
        }
        let count = block_size(per_second);
        let _one = match count {
            1 => None,
            _ => {
                let guard = self.reserving.lock().await;
                if let Some(slot) = self.take(key, super::now_us()) {
                    return Ok(Ok(wait_for(slot)));
                }
                Some(guard)
            }
        };
        let first = match reserve(pool, key, per_second, max_wait, count).await? {
            Ok(first) => first,
            Err(due_in) => return Ok(Err(due_in)),
        };
        if count > 1 {
            let (interval_us, _) = pace(per_second);
            let until = super::now_us() + HOLD_US;
            let mut slots = self.slots.lock().expect("not poisoned");
            let kept = slots.entry(key.to_owned()).or_default();
            kept.extend((1..count as i64).map(|i| (first + i * interval_us, until)));
        }
        Ok(Ok(wait_for(first)))
    }

    /// The earliest slot held for `key` still usable at `now`; expired ones are dropped.
    fn take(&self, key: &str, now: i64) -> Option<i64> {
        let mut slots = self.slots.lock().expect("not poisoned");
        let kept = slots.get_mut(key)?;
        while let Some((slot, until)) = kept.pop_front() {
            if now <= until {
                return Some(slot);
            }
        }
        None
    }
}

/// How long until `slot` (µs since the epoch), from now.
fn wait_for(slot: i64) -> Duration {
    Duration::from_micros((slot - super::now_us()).max(0) as u64)
}

/// The emission interval and the burst window at `per_second`, µs.
fn pace(per_second: f64) -> (i64, i64) {
    let interval_us = (1_000_000.0 / per_second.max(1e-6)).round().max(1.0) as i64;
    let window_us = (per_second.max(1.0) * interval_us as f64).round() as i64;
    (interval_us, window_us)
}

/// Reserves `count` consecutive sends for `key` at `per_second` (a burst of one second's
/// worth, at least one): `Ok(first slot)`, µs since the epoch, the others one interval
/// apart; or `Err(due_in)` when the first would be more than `max_wait` away (nothing is
/// then reserved). The caller measures its wait from when the statement returned, not from
/// when it was sent: under contention for the sender's row a statement can wait tens of
/// milliseconds, and a wait counted from before it would send each message that much after
/// its slot, unevenly (measured: 5 % over a 50/s limit).
pub async fn reserve(
    pool: &AnyPool,
    key: &str,
    per_second: f64,
    max_wait: Duration,
    count: u32,
) -> Result<Result<i64, Duration>, StoreError> {
    let now_us = super::now_us();
    let (interval_us, window_us) = pace(per_second);
    // The burst: slots from `floor` up to now are sent at once (`window / interval` of them).
    let floor = now_us - (window_us - interval_us);
    let latest_start = now_us.saturating_add(max_wait.as_micros().min(i64::MAX as u128) as i64);
    let step = interval_us * i64::from(count.max(1));
    let tat: Option<i64> = sqlx::query_scalar(
        "INSERT INTO sender_pace (sender_key, tat_us) VALUES ($1, $2 + $3) \
         ON CONFLICT (sender_key) DO UPDATE SET tat_us = \
         (CASE WHEN sender_pace.tat_us > $2 THEN sender_pace.tat_us ELSE $2 END) + $3 \
         WHERE (CASE WHEN sender_pace.tat_us > $2 THEN sender_pace.tat_us ELSE $2 END) <= $4 \
         RETURNING tat_us",
    )
    .bind(key)
    .bind(floor)
    .bind(step)
    .bind(latest_start)
    .fetch_optional(pool)
    .await?;
    if let Some(tat) = tat {
        return Ok(Ok(tat - step));
    }
    let tat: i64 = sqlx::query_scalar("SELECT tat_us FROM sender_pace WHERE sender_key = $1")
        .bind(key)
        .fetch_one(pool)
        .await?;
    Ok(Err(Duration::from_micros((tat - now_us).max(1) as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_20_ms_worth_and_single_under_100_per_second() {
        assert_eq!(block_size(1.0), 1);
        assert_eq!(block_size(50.0), 1);
        assert_eq!(block_size(99.9), 1);
        assert_eq!(block_size(100.0), 2);
        assert_eq!(block_size(1_000.0), 20);
        assert_eq!(block_size(1e9), 32);
    }

    #[test]
    fn held_slots_are_used_in_order_and_expired_ones_dropped() {
        let p = PaceSlots::default();
        p.slots.lock().unwrap().insert(
            "k".into(),
            VecDeque::from([(10, 100), (20, 200), (30, 200)]),
        );
        assert_eq!(p.take("k", 150), Some(20), "the first expired at 100");
        assert_eq!(p.take("k", 200), Some(30));
        assert_eq!(p.take("k", 0), None);
        assert_eq!(p.take("other", 0), None);
    }
}
