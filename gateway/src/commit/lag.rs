//! How far behind a writer is: the time its queued jobs wait before their transaction
//! starts. The SIP side sheds new calls on it ([`crate::voice::DbCallStore`]'s `lag`), so an
//! overload is refused at the door while the writer is the bottleneck, instead of admitted
//! calls piling up (each holding media and a task) behind it.
//!
//! Each writer notes, per batch, how long the batch's oldest job waited (jobs are taken in
//! order, so that is the first), and when the batch started; while a batch runs, a job
//! submitted now waits for it, and how long it has run so far is the estimate of how long
//! (a batch stuck on a lock reads as lag even with nothing queued yet). The lag is the
//! larger of the two. A wait older than [`FORGET_AFTER`] is forgotten, so a writer that went
//! quiet (perhaps because new work was being shed) reads as caught up again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A noted wait counts for this long after its batch started.
pub const FORGET_AFTER: Duration = Duration::from_secs(1);

/// One writer's gauge; shared between the writer task and every `Committer` clone.
#[derive(Debug)]
pub struct WriterLag {
    /// The clock's zero; times below are microseconds since it (0: never).
    base: Instant,
    /// How long the last batch's oldest job waited, µs.
    waited_us: AtomicU64,
    /// When the last batch started (µs since `base`, plus one so that 0 means never).
    started_at: AtomicU64,
    /// While a batch runs: when it started (as `started_at`); 0 when idle.
    running_since: AtomicU64,
}

impl WriterLag {
    /// A gauge that reads zero.
    pub fn new() -> Arc<WriterLag> {
        Arc::new(WriterLag {
            base: Instant::now(),
            waited_us: AtomicU64::new(0),
            started_at: AtomicU64::new(0),
            running_since: AtomicU64::new(0),
        })
    }

    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX - 1)
            + 1
    }

    /// A batch starts at `now`; its oldest job was queued at `oldest`.
    pub fn batch_started(&self, oldest: Instant, now: Instant) {
        let waited =
            u64::try_from(now.saturating_duration_since(oldest).as_micros()).unwrap_or(u64::MAX);
        let at = self.stamp(now);
        self.waited_us.store(waited, Ordering::Relaxed);
        self.started_at.store(at, Ordering::Relaxed);
        self.running_since.store(at, Ordering::Relaxed);
    }

    /// The batch that started last has committed (or failed).
    pub fn batch_done(&self) {
        self.running_since.store(0, Ordering::Relaxed);
    }

    /// The lag at `now`.
    pub fn at(&self, now: Instant) -> Duration {
        let now_us = self.stamp(now);
        let since = |stamp: u64| Duration::from_micros(now_us.saturating_sub(stamp));
        let started = self.started_at.load(Ordering::Relaxed);
        let noted = if started != 0 && since(started) < FORGET_AFTER {
            Duration::from_micros(self.waited_us.load(Ordering::Relaxed))
        } else {
            Duration::ZERO
        };
        let running = self.running_since.load(Ordering::Relaxed);
        let blocked = if running != 0 {
            since(running)
        } else {
            Duration::ZERO
        };
        noted.max(blocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_is_the_last_wait_or_the_running_batch_and_fades_when_quiet() {
        let g = WriterLag::new();
        let t0 = Instant::now();
        assert_eq!(g.at(t0), Duration::ZERO, "never ran: no lag");

        let ms = Duration::from_millis;
        g.batch_started(t0, t0 + ms(300));
        assert_eq!(g.at(t0 + ms(300)), ms(300), "the oldest job waited 300 ms");
        // The batch runs long: a job submitted now waits at least as long as it has run.
        assert_eq!(g.at(t0 + ms(1000)), ms(700));
        g.batch_done();
        assert_eq!(g.at(t0 + ms(1000)), ms(300), "done: the noted wait is left");
        assert_eq!(
            g.at(t0 + ms(300) + FORGET_AFTER),
            Duration::ZERO,
            "a wait noted a second ago is forgotten"
        );
    }
}
