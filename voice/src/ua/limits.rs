//! Admission of new calls: a cap on concurrent calls and a token bucket per source IP.
//! Pure: the caller passes the time, so the rules are tested without a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Admission limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionConfig {
    /// Calls in progress at most; more get 503.
    pub max_calls: usize,
    /// New calls per second from one source IP (0 turns the limit off).
    pub per_source_rate: f64,
    /// How many new calls one source may start at once before the rate applies.
    pub per_source_burst: f64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_calls: 4096,
            per_source_rate: 0.0,
            per_source_burst: 50.0,
        }
    }
}

/// Why a new call was refused; both are answered 503 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{limit} calls in progress")]
    TooManyCalls { limit: usize },
    #[error("source over its call rate")]
    SourceRate { retry_after_secs: u64 },
}

impl Refused {
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Self::TooManyCalls { .. } => 5,
            Self::SourceRate { retry_after_secs } => *retry_after_secs,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Calls in progress and per-source buckets.
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    active: usize,
    buckets: HashMap<IpAddr, Bucket>,
}

impl Admission {
    pub fn new(config: AdmissionConfig) -> Self {
        Self {
            config,
            active: 0,
            buckets: HashMap::new(),
        }
    }

    pub fn active(&self) -> usize {
        self.active
    }

    /// Admits a new call from `source` at `now`, or says why not.
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> Result<(), Refused> {
        if self.active >= self.config.max_calls {
            return Err(Refused::TooManyCalls {
                limit: self.config.max_calls,
            });
        }
        let rate = self.config.per_source_rate;
        if rate > 0.0 {
            let burst = self.config.per_source_burst.max(1.0);
            let bucket = self.buckets.entry(source).or_insert(Bucket {
                tokens: burst,
                at: now,
            });
            let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
            bucket.at = now;
            if bucket.tokens < 1.0 {
                let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0);
                return Err(Refused::SourceRate {
                    retry_after_secs: wait as u64,
                });
            }
            bucket.tokens -= 1.0;
        }
        self.active += 1;
        Ok(())
    }

    /// A call admitted earlier has ended.
    pub fn release(&mut self) {
        self.active = self.active.saturating_sub(1);
    }

    /// Forgets buckets that have been full for a while (bounded memory under many sources).
    pub fn prune(&mut self, now: Instant) {
        let rate = self.config.per_source_rate;
        let burst = self.config.per_source_burst;
        self.buckets.retain(|_, b| {
            let refill = now.saturating_duration_since(b.at).as_secs_f64() * rate;
            b.tokens + refill < burst
                || now.saturating_duration_since(b.at) < Duration::from_secs(60)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn concurrent_cap_refuses_until_a_call_ends() {
        let mut a = Admission::new(AdmissionConfig {
            max_calls: 2,
            ..AdmissionConfig::default()
        });
        let now = Instant::now();
        assert_eq!(a.admit(A, now), Ok(()));
        assert_eq!(a.admit(B, now), Ok(()));
        assert_eq!(a.admit(A, now), Err(Refused::TooManyCalls { limit: 2 }));
        a.release();
        assert_eq!(a.admit(A, now), Ok(()));
    }

    #[test]
    fn per_source_bucket_refills_at_the_rate_and_is_per_source() {
        let mut a = Admission::new(AdmissionConfig {
            max_calls: 100,
            per_source_rate: 2.0,
            per_source_burst: 3.0,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(a.admit(A, t0), Ok(()));
        }
        let refused = a.admit(A, t0).unwrap_err();
        assert_eq!(
            refused,
            Refused::SourceRate {
                retry_after_secs: 1
            }
        );
        assert_eq!(a.admit(B, t0), Ok(()), "another source has its own bucket");
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(a.admit(A, t1), Ok(()), "one token back after 1/rate");
        assert!(a.admit(A, t1).is_err());
    }
}
