//! An adaptive, bounded jitter buffer for one RTP stream, and its RFC 3550 receive statistics.
//!
//! Pure: the caller passes each packet's arrival time and pops one packet per playout tick.
//!
//! ```text
//!  push(seq, ts, arrival) ──▶ [ slots indexed by seq % capacity ] ──pop() per tick──▶ Packet | Lost | Waiting
//!     late / duplicate ─▶ dropped (counted)      depth > target ─▶ playing; empty ─▶ re-buffer
//! ```
//!
//! Invariants: at most `capacity` packets are held; the playout pointer only moves forward
//! (except before the first pop after a (re)start, when an earlier packet may still lower it);
//! a packet behind the pointer is late and dropped; a packet `capacity` or more ahead means the
//! sender jumped (restart, new stream) and the buffer restarts at it. The target depth adapts
//! to the measured interarrival jitter: `1 + ceil(3 J / 20 ms)` packets, within
//! `[min_frames, max_frames]`; while the depth stays two past the target (a burst after a
//! network stall), one packet is shed every 0.5 s to bring the delay back down; a depth past
//! half the capacity is cut at once. Shedding slowly matters: when the *consumer* was late
//! (a starved task running its missed ticks back to back), the excess drains by itself.

use std::time::Duration;

/// Consecutive too-deep ticks before one packet is shed (0.5 s at 20 ms).
const SHRINK_AFTER: u32 = 25;

/// Jitter buffer bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// The smallest target depth, in packets held after a pop (2 = 20–40 ms of cushion).
    pub min_frames: usize,
    /// The largest target depth, in packets.
    pub max_frames: usize,
    /// How many packets it can hold at all (a window of sequence numbers).
    pub capacity: usize,
}

impl Default for JitterConfig {
    fn default() -> JitterConfig {
        JitterConfig {
            min_frames: 2,
            max_frames: 10,
            capacity: 64,
        }
    }
}

/// What a playout tick gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The next packet's payload (hand it back with [`JitterBuffer::recycle`]).
    Packet(Vec<u8>),
    /// The next packet never arrived in time: conceal one packet's worth of audio.
    Lost,
    /// Nothing to play yet (start, or re-buffering after the stream paused).
    Waiting,
}

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored for playout.
    Stored,
    /// Behind the playout pointer; dropped.
    Late,
    /// Already held; dropped.
    Duplicate,
    /// The buffer restarted at this packet (new SSRC or a jump in sequence numbers).
    Restarted,
}

/// Receive and playout counters of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Packets pushed (including late and duplicate ones).
    pub received: u64,
    /// Packets expected from the sequence numbers seen (RFC 3550 A.3).
    pub expected: u64,
    /// `expected - received` as RFC 3550 counts it (duplicates can make it negative).
    pub lost: i64,
    /// Arrived behind the playout pointer.
    pub late: u64,
    /// Arrived twice.
    pub duplicates: u64,
    /// Arrived after a higher sequence number.
    pub reordered: u64,
    /// Playout ticks that had to conceal a missing packet.
    pub concealed: u64,
    /// Times the buffer ran dry while playing.
    pub underruns: u64,
    /// Packets discarded to shrink the delay, or dropped by a restart.
    pub discarded: u64,
    /// Restarts (new SSRC, sequence jump).
    pub restarts: u64,
    /// RFC 3550 interarrival jitter, in milliseconds.
    pub jitter_ms: f64,
    /// The current target depth in packets.
    pub target_frames: usize,
    /// The stream's SSRC, once a packet arrived.
    pub ssrc: Option<u32>,
    /// Extended highest sequence number received (RFC 3550 A.1: cycles in the high 16 bits).
    pub highest_seq: u32,
}

#[derive(Debug)]
struct Slot {
    seq: u16,
    payload: Vec<u8>,
}

/// See the module docs.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    slots: Vec<Option<Slot>>,
    spare: Vec<Vec<u8>>,
    held: usize,
    next_seq: u16,
    started: bool,
    popped_since_start: bool,
    playing: bool,
    excess_pops: u32,
    ssrc: Option<u32>,
    // RFC 3550 A.1/A.8 state.
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    last_transit: Option<i64>,
    jitter: f64,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(config: JitterConfig) -> JitterBuffer {
        let capacity = config.capacity.clamp(4, 1024);
        let min = config.min_frames.clamp(1, capacity / 2);
        let config = JitterConfig {
            min_frames: min,
            max_frames: config.max_frames.clamp(min, capacity / 2),
            capacity,
        };
        JitterBuffer {
            config,
            slots: (0..capacity).map(|_| None).collect(),
            spare: Vec::new(),
            held: 0,
            next_seq: 0,
            started: false,
            popped_since_start: false,
            playing: false,
            excess_pops: 0,
            ssrc: None,
            base_seq: 0,
            max_seq: 0,
            cycles: 0,
            last_transit: None,
            jitter: 0.0,
            stats: JitterStats {
                target_frames: min,
                ..JitterStats::default()
            },
        }
    }

    /// Packets currently held.
    pub fn depth(&self) -> usize {
        self.held
    }

    /// The counters so far.
    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats;
        if self.ssrc.is_some() {
            let extended = u64::from(self.cycles) + u64::from(self.max_seq);
            s.expected = extended + 1 - u64::from(self.base_seq);
            s.highest_seq = extended as u32;
        }
        s.ssrc = self.ssrc;
        s.lost = s.expected as i64 - s.received as i64;
        s.jitter_ms = self.jitter / 8.0;
        s
    }

    fn index(&self, seq: u16) -> usize {
        usize::from(seq) % self.config.capacity
    }

    fn clear(&mut self) {
        for slot in &mut self.slots {
            if let Some(s) = slot.take() {
                self.spare.push(s.payload);
            }
        }
        self.held = 0;
        self.playing = false;
        self.popped_since_start = false;
    }

    fn restart(&mut self, seq: u16, ssrc: u32) {
        self.stats.discarded += self.held as u64;
        self.clear();
        self.started = true;
        self.next_seq = seq;
        if self.ssrc != Some(ssrc) {
            self.ssrc = Some(ssrc);
            self.base_seq = u32::from(seq);
            self.max_seq = seq;
            self.cycles = 0;
            self.last_transit = None;
        }
    }

    /// Offers one packet that arrived at `arrival` (any monotonic clock).
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        ssrc: u32,
        payload: &[u8],
        arrival: Duration,
    ) -> PushOutcome {
        let mut outcome = PushOutcome::Stored;
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.stats.restarts += 1;
                outcome = PushOutcome::Restarted;
            }
            self.restart(seq, ssrc);
        }
        self.stats.received += 1;
        self.update_sequence_stats(seq);
        self.update_jitter(timestamp, arrival);

        let ahead = seq.wrapping_sub(self.next_seq) as i16;
        if ahead < 0 {
            if !self.popped_since_start && (-ahead as usize) < self.config.capacity / 2 {
                // Before playout begins, an earlier packet may still become the first one,
                // as long as the window still covers everything held.
                let newest_ahead = self.newest_ahead();
                if newest_ahead + (-ahead as usize) < self.config.capacity {
                    self.next_seq = seq;
                } else {
                    self.stats.late += 1;
                    return PushOutcome::Late;
                }
            } else {
                self.stats.late += 1;
                return PushOutcome::Late;
            }
        } else if ahead as usize >= self.config.capacity {
            self.stats.restarts += 1;
            self.restart(seq, ssrc);
            outcome = PushOutcome::Restarted;
        }
        let index = self.index(seq);
        if let Some(slot) = &self.slots[index] {
            debug_assert_eq!(slot.seq, seq);
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(payload);
        self.slots[index] = Some(Slot { seq, payload: buf });
        self.held += 1;
        outcome
    }

    fn newest_ahead(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .map(|s| s.seq.wrapping_sub(self.next_seq) as usize)
            .max()
            .unwrap_or(0)
    }

    fn update_sequence_stats(&mut self, seq: u16) {
        let delta = seq.wrapping_sub(self.max_seq);
        if delta == 0 {
            return;
        }
        if delta < 0x8000 {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
        } else {
            self.stats.reordered += 1;
        }
    }

    fn update_jitter(&mut self, timestamp: u32, arrival: Duration) {
        // Arrival in timestamp units (8 kHz), as RFC 3550 A.8 computes transit time.
        let arrival_units = (arrival.as_micros() / 125) as i64;
        let transit = arrival_units - i64::from(timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            // Timestamps wrap and senders jump; a difference of more than 10 s is not jitter.
            if d < 80_000.0 {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
        let j_ms = self.jitter / 8.0;
        let target = 1 + (3.0 * j_ms / 20.0).ceil() as usize;
        self.stats.target_frames = target.clamp(self.config.min_frames, self.config.max_frames);
    }

    /// Takes what the next 20 ms playout tick should play.
    pub fn pop(&mut self) -> Playout {
        if self.held == 0 {
            if self.playing {
                self.playing = false;
                self.stats.underruns += 1;
            }
            return Playout::Waiting;
        }
        let target = self.stats.target_frames;
        if !self.playing {
            // Start with `target` packets still held after this pop: that is the cushion.
            if self.held <= target {
                return Playout::Waiting;
            }
            self.playing = true;
        }
        // Too deep: shed one packet per SHRINK_AFTER ticks while the excess lasts, so a late
        // consumer (a starved task catching up on its ticks) does not turn into loss; only a
        // runaway depth is cut at once.
        self.excess_pops = if self.held > target + 2 {
            self.excess_pops + 1
        } else {
            0
        };
        let runaway = self.held > self.config.capacity / 2;
        if self.excess_pops >= SHRINK_AFTER || runaway {
            self.excess_pops = 0;
            while self.held > target + 2 {
                if let Some(slot) = self.take_next() {
                    self.spare.push(slot.payload);
                    self.stats.discarded += 1;
                }
                if !runaway {
                    break;
                }
            }
        }
        self.popped_since_start = true;
        match self.take_next() {
            Some(slot) => Playout::Packet(slot.payload),
            None => {
                self.stats.concealed += 1;
                Playout::Lost
            }
        }
    }

    fn take_next(&mut self) -> Option<Slot> {
        let index = self.index(self.next_seq);
        self.next_seq = self.next_seq.wrapping_add(1);
        let slot = self.slots[index].take();
        if slot.is_some() {
            self.held -= 1;
        }
        slot
    }

    /// Returns a payload buffer from [`Playout::Packet`] for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < self.config.capacity {
            self.spare.push(buf);
        }
    }
}

#[cfg(test)]
mod tests;
