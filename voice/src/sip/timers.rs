//! RFC 3261 §17 timer values as pure functions, so that retransmission schedules can be
//! tested without a clock and the runtime only sleeps for what these return.

use std::time::Duration;

/// T1 (round-trip estimate), T2 (longest retransmit interval), T4 (network lifetime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// Timer G / Timer E: the interval before retransmission number `n` (0-based): T1
    /// doubling each time, capped at T2.
    pub fn retransmit_interval(&self, n: u32) -> Duration {
        let doubled = self
            .t1
            .saturating_mul(1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX));
        doubled.min(self.t2)
    }

    /// Timer H (INVITE server: wait for ACK), Timer F (non-INVITE client: give up),
    /// Timer B: 64·T1.
    pub fn give_up(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer J (non-INVITE server, UDP): how long a final response is kept to answer
    /// retransmissions. Also used for how long an INVITE transaction stays after its final
    /// response (RFC 6026 Timer L), so that a late INVITE retransmission never starts a
    /// second call.
    pub fn keep_completed(&self) -> Duration {
        self.t1 * 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmissions_double_from_t1_to_t2() {
        let t = Timers::default();
        let ms: Vec<u128> = (0..7)
            .map(|n| t.retransmit_interval(n).as_millis())
            .collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 4000, 4000, 4000]);
        assert_eq!(t.retransmit_interval(u32::MAX), t.t2);
        assert_eq!(t.give_up(), Duration::from_secs(32));
        assert_eq!(t.keep_completed(), Duration::from_secs(32));
    }
}
