//! The worker loop: one 20 ms timer drives every leg it holds.
//!
//! The worker wakes every 5 ms and serves one of four phases of legs, so each leg still ticks
//! every 20 ms but the work (and the packets sent) is spread over the period instead of one
//! burst. For each leg of the phase, in a stable order: apply its pending commands, then
//! [`Leg::tick`]. A leg whose handle stopped it (or was dropped) leaves the set and reports
//! its counters. Legs keep their phase and position, so each leg's packets leave at the same
//! offset every time: no jitter from the batching itself.

use super::leg::Leg;
use super::session::{Command, Entry};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::time::{Instant, MissedTickBehavior};

/// The packetization interval.
const PTIME: Duration = Duration::from_millis(20);
/// Phases per interval of a shared worker.
pub(crate) const PHASES: usize = 4;
/// Ticks between unconditional reads of a leg's command channel (1 s).
const CHECK_EVERY: u32 = 50;
/// A tick this late counts as late in the legs' stats.
const LATE: Duration = Duration::from_millis(5);

/// Runs until the intake is closed (or absent) and no leg is left.
///
/// `phases` is [`PHASES`] for a shared worker, 1 for a worker of a single leg (no point in
/// waking four times per period for one leg).
pub(crate) async fn run(
    mut intake: Option<mpsc::Receiver<Entry>>,
    first: Vec<Entry>,
    phase_count: usize,
) {
    let phase_count = phase_count.clamp(1, PHASES);
    let mut phases: Vec<Vec<Entry>> = (0..phase_count).map(|_| Vec::new()).collect();
    let now = Instant::now();
    for (i, mut e) in first.into_iter().enumerate() {
        start(&mut e, now);
        phases[i % phase_count].push(e);
    }
    let period = PTIME / phase_count as u32;
    let mut ticker = tokio::time::interval_at(now + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut phase = 0usize;
    let mut buf = [0u8; 1500];
    loop {
        tokio::select! {
            biased;
            entry = async { intake.as_mut()?.recv().await }, if intake.is_some() => match entry {
                Some(mut e) => {
                    start(&mut e, Instant::now());
                    // The least loaded phase keeps the four bursts even.
                    let p = (0..phase_count).min_by_key(|&p| phases[p].len()).unwrap_or(0);
                    phases[p].push(e);
                }
                None => intake = None,
            },
            due = ticker.tick() => {
                let now = Instant::now();
                let late = now.duration_since(due) > LATE;
                let legs = &mut phases[phase];
                phase = (phase + 1) % phase_count;
                let mut i = 0;
                while i < legs.len() {
                    if step(&mut legs[i], now, late, &mut buf) {
                        i += 1;
                    } else {
                        // `remove`, not `swap_remove`: the others keep their send order.
                        let e = legs.remove(i);
                        let _ = e.done.send(Leg::finish(e.leg));
                    }
                }
            }
        }
        if intake.is_none() && phases.iter().all(Vec::is_empty) {
            return;
        }
    }
}

fn start(e: &mut Entry, now: Instant) {
    if let Some(ctx) = e.ctx.take() {
        e.leg.start(&ctx, now);
    }
}

/// One leg's tick; `false` when the leg is over.
fn step(e: &mut Entry, now: Instant, late: bool, buf: &mut [u8]) -> bool {
    // Reading an empty channel every tick for every leg is measurable at thousands of legs:
    // read it when the handle flagged a command, and once a second to notice a dropped one.
    e.until_check = e.until_check.saturating_sub(1);
    if !e.pending.swap(false, Ordering::Acquire) && e.until_check > 0 {
        e.leg.tick(now, late, buf);
        return true;
    }
    e.until_check = CHECK_EVERY;
    loop {
        match e.commands.try_recv() {
            Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return false,
            Ok(c) => e.leg.on_command(c),
            Err(TryRecvError::Empty) => break,
        }
    }
    e.leg.tick(now, late, buf);
    true
}
