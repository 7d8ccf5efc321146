//! Admission of new calls: trusted source networks, a cap on concurrent calls (overall and
//! per source IP) and a token bucket per source IP. Pure: the caller passes the time, so
//! the rules are tested without a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// An IP network (`203.0.113.0/24`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `IP` or `IP/PREFIX`.
    pub fn parse(text: &str) -> Option<Cidr> {
        let text = text.trim();
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let addr: IpAddr = ip.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Parses a comma-separated list (empty: none); the first bad entry is the error.
    pub fn parse_list(text: &str) -> Result<Vec<Cidr>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| Cidr::parse(t).ok_or_else(|| t.to_owned()))
            .collect()
    }

    /// Whether `ip` is inside (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Admission limits.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    /// Calls in progress at most; more get 503.
    pub max_calls: usize,
    /// New calls per second from one source IP (0 turns the limit off).
    pub per_source_rate: f64,
    /// How many new calls one source may start at once before the rate applies.
    pub per_source_burst: f64,
    /// Calls in progress from one source IP at most (0: no cap); more get 503.
    pub max_calls_per_source: usize,
    /// Networks INVITEs are taken from; others get 403. Empty: everywhere.
    pub trusted: Vec<Cidr>,
    /// New calls get 503 while the call store is further behind than this (see
    /// [`super::CallStore::lag`]); zero turns the check off. Shedding here, before a call
    /// holds media and a task, keeps memory bounded under overload: a call admitted into a
    /// store that is behind lives longer (each of its steps waits), so calls in progress —
    /// and their buffers — pile up while the store is the bottleneck.
    pub max_store_lag: Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_calls: 4096,
            per_source_rate: 0.0,
            per_source_burst: 50.0,
            max_calls_per_source: 0,
            trusted: Vec::new(),
            max_store_lag: Duration::from_millis(500),
        }
    }
}

/// Why a new call was refused: 403 for an untrusted source, 503 with `Retry-After` for
/// the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("source outside the trusted networks")]
    Untrusted,
    #[error("{limit} calls in progress")]
    TooManyCalls { limit: usize },
    #[error("{limit} calls in progress from this source")]
    SourceCalls { limit: usize },
    #[error("source over its call rate")]
    SourceRate { retry_after_secs: u64 },
    #[error("the call store is {lag_ms} ms behind")]
    StoreBehind { lag_ms: u64 },
}

impl Refused {
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Self::Untrusted => 0,
            Self::TooManyCalls { .. } | Self::SourceCalls { .. } => 5,
            Self::SourceRate { retry_after_secs } => *retry_after_secs,
            Self::StoreBehind { .. } => 1,
        }
    }

    /// The SIP status and reason the INVITE gets.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::Untrusted => (403, "Forbidden"),
            _ => (503, "Service Unavailable"),
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
    /// Calls in progress per source (only sources with at least one).
    per_source: HashMap<IpAddr, usize>,
    buckets: HashMap<IpAddr, Bucket>,
}

impl Admission {
    pub fn new(config: AdmissionConfig) -> Self {
        Self {
            config,
            active: 0,
            per_source: HashMap::new(),
            buckets: HashMap::new(),
        }
    }

    pub fn active(&self) -> usize {
        self.active
    }

    /// [`Admission::admit_behind`] with the store caught up (the rules' tests).
    #[cfg(test)]
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> Result<(), Refused> {
        self.admit_behind(source, now, Duration::ZERO)
    }

    /// Admits a new call from `source` at `now` while the call store is `store_lag`
    /// behind, or says why not (an untrusted source is refused whatever the load).
    pub fn admit_behind(
        &mut self,
        source: IpAddr,
        now: Instant,
        store_lag: Duration,
    ) -> Result<(), Refused> {
        let trusted = &self.config.trusted;
        if !trusted.is_empty() && !trusted.iter().any(|net| net.contains(source)) {
            return Err(Refused::Untrusted);
        }
        let max_lag = self.config.max_store_lag;
        if !max_lag.is_zero() && store_lag > max_lag {
            return Err(Refused::StoreBehind {
                lag_ms: u64::try_from(store_lag.as_millis()).unwrap_or(u64::MAX),
            });
        }
        let cap = self.config.max_calls_per_source;
        if cap > 0 && self.per_source.get(&source).copied().unwrap_or(0) >= cap {
            return Err(Refused::SourceCalls { limit: cap });
        }
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
        *self.per_source.entry(source).or_default() += 1;
        Ok(())
    }

    /// A call admitted earlier from `source` has ended (or was refused: its slot is free
    /// once its final response is sent).
    pub fn release(&mut self, source: IpAddr) {
        self.active = self.active.saturating_sub(1);
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
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
        a.release(A);
        assert_eq!(a.admit(A, now), Ok(()));
    }

    #[test]
    fn per_source_cap_counts_each_source_apart() {
        let mut a = Admission::new(AdmissionConfig {
            max_calls_per_source: 2,
            ..AdmissionConfig::default()
        });
        let now = Instant::now();
        assert_eq!(a.admit(A, now), Ok(()));
        assert_eq!(a.admit(A, now), Ok(()));
        assert_eq!(a.admit(A, now), Err(Refused::SourceCalls { limit: 2 }));
        assert_eq!(a.admit(B, now), Ok(()), "another source has its own cap");
        a.release(A);
        assert_eq!(a.admit(A, now), Ok(()));
        assert_eq!(a.active(), 3);
    }

    #[test]
    fn only_trusted_networks_may_call() {
        let trusted = Cidr::parse_list("127.0.0.0/31, ::1").unwrap();
        let mut a = Admission::new(AdmissionConfig {
            trusted,
            ..AdmissionConfig::default()
        });
        let now = Instant::now();
        assert_eq!(a.admit(A, now), Ok(()));
        assert_eq!(a.admit(B, now), Err(Refused::Untrusted));
        assert_eq!(a.admit("::1".parse().unwrap(), now), Ok(()));
        assert_eq!(a.admit("::ffff:127.0.0.1".parse().unwrap(), now), Ok(()));
        assert_eq!(
            Cidr::parse_list("10.0.0.0/33"),
            Err("10.0.0.0/33".to_owned())
        );
        assert_eq!(
            Cidr::parse_list("nonsense, 10.0.0.1"),
            Err("nonsense".to_owned())
        );
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(B));
        assert_eq!(Cidr::parse_list(""), Ok(vec![]));
    }

    #[test]
    fn per_source_bucket_refills_at_the_rate_and_is_per_source() {
        let mut a = Admission::new(AdmissionConfig {
            max_calls: 100,
            per_source_rate: 2.0,
            per_source_burst: 3.0,
            ..AdmissionConfig::default()
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

    #[test]
    fn a_store_behind_sheds_new_calls_but_untrusted_sources_still_get_403() {
        let mut a = Admission::new(AdmissionConfig {
            max_store_lag: Duration::from_millis(500),
            trusted: vec![Cidr::parse("127.0.0.1").unwrap()],
            ..AdmissionConfig::default()
        });
        let now = Instant::now();
        let behind = Duration::from_millis(501);
        assert_eq!(
            a.admit_behind(A, now, behind),
            Err(Refused::StoreBehind { lag_ms: 501 })
        );
        assert_eq!(a.active(), 0, "a shed call holds no slot");
        let shed = Refused::StoreBehind { lag_ms: 501 };
        assert_eq!((shed.status().0, shed.retry_after_secs()), (503, 1));
        assert_eq!(a.admit_behind(B, now, behind), Err(Refused::Untrusted));
        assert_eq!(a.admit_behind(A, now, Duration::from_millis(500)), Ok(()));
        let mut off = Admission::new(AdmissionConfig {
            max_store_lag: Duration::ZERO,
            ..AdmissionConfig::default()
        });
        assert_eq!(
            off.admit_behind(A, now, Duration::from_secs(60)),
            Ok(()),
            "zero turns the check off"
        );
    }
}
