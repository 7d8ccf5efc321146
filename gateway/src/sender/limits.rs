//! Token-bucket rate limits (per sender, keyed by [`channels::ChannelPlugin::sender_key`];
//! also the API's per key and per org, and the webhooks' per source) and per-account circuit
//! breakers (keyed by `account_key`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token buckets, one per key. Reserving a token may drive a bucket negative: the caller
/// waits the returned time, so concurrent senders queue fairly instead of spinning.
///
/// A limiter keyed by request input (a source address) is [`RateLimiter::bounded`]: when it
/// holds `capacity` keys, buckets idle long enough to have refilled (the same as absent) are
/// dropped, and if every bucket is still busy a new key is refused — memory stays bounded
/// however many keys a flood brings.
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    capacity: usize,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::bounded(usize::MAX)
    }
}

impl RateLimiter {
    /// A limiter holding at most `capacity` keys.
    pub fn bounded(capacity: usize) -> RateLimiter {
        RateLimiter {
            buckets: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Reserves one send for `key` at `per_second` (burst of one second's worth) and returns how
    /// long to wait before sending.
    pub fn reserve(&self, key: &str, per_second: f64) -> Duration {
        self.reserve_within(key, per_second, Duration::MAX)
            .expect("any wait is within Duration::MAX")
    }

    /// How long until `key` has a token at `per_second`, if it has none now; takes nothing.
    pub fn exhausted(&self, key: &str, per_second: f64) -> Option<Duration> {
        let buckets = self.buckets.lock().expect("not poisoned");
        let (tokens, last) = buckets.get(key)?;
        let now = Instant::now();
        let burst = per_second.max(1.0);
        let tokens = (tokens + now.duration_since(*last).as_secs_f64() * per_second).min(burst);
        (tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - tokens) / per_second))
    }

    /// Like [`RateLimiter::reserve`], but only when the wait would be at most `max_wait`;
    /// otherwise nothing is reserved and `Err` says in how long a send would be due. A
    /// claimed message must not wait out its lease (another worker would claim and send it
    /// again): it is put back for later instead.
    pub fn reserve_within(
        &self,
        key: &str,
        per_second: f64,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        let now = Instant::now();
        let burst = per_second.max(1.0);
        let mut buckets = self.buckets.lock().expect("not poisoned");
        if buckets.len() >= self.capacity && !buckets.contains_key(key) {
            let refill = Duration::from_secs_f64(burst / per_second);
            buckets.retain(|_, (_, last)| now.duration_since(*last) < refill);
            if buckets.len() >= self.capacity {
                return Err(Duration::from_secs(1));
            }
        }
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_second).min(burst);
        *last = now;
        let after = *tokens - 1.0;
        let wait = if after >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-after / per_second)
        };
        if wait > max_wait {
            return Err(wait);
        }
        *tokens = after;
        Ok(wait)
    }
}

#[derive(Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// Circuit breakers, one per provider account: after `threshold` consecutive transient
/// failures the circuit opens for `cooldown`; then one probe is let through (half-open), and
/// its result closes or reopens it.
pub struct Breakers {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<HashMap<String, Breaker>>,
}

impl Breakers {
    /// Breakers with these settings.
    pub fn new(threshold: u32, cooldown: Duration) -> Breakers {
        Breakers {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` to send now, or `Err(wait)` while the circuit is open.
    pub fn allow(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.state.lock().expect("not poisoned");
        let b = state.entry(key.to_string()).or_default();
        match b.open_until {
            None => Ok(()),
            Some(until) if until > now => Err(until - now),
            Some(_) if b.probing => Err(self.cooldown / 4),
            Some(_) => {
                b.probing = true;
                Ok(())
            }
        }
    }

    /// The provider answered (even with a permanent error): the account is reachable.
    pub fn success(&self, key: &str) {
        let mut state = self.state.lock().expect("not poisoned");
        state.insert(key.to_string(), Breaker::default());
    }

    /// A transient failure.
    pub fn failure(&self, key: &str) {
        let mut state = self.state.lock().expect("not poisoned");
        let b = state.entry(key.to_string()).or_default();
        b.consecutive_failures += 1;
        if b.probing || b.consecutive_failures >= self.threshold {
            b.open_until = Some(Instant::now() + self.cooldown);
            b.probing = false;
            metrics::counter!("circuit_opened_total").increment(1);
        }
    }
}

/// Exponential backoff with full jitter: a random delay in `[base·2ⁿ/2, base·2ⁿ]`, capped.
pub fn backoff(attempt: i64, base: Duration, cap: Duration) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.clamp(0, 20) as u32)
        .min(cap);
    let half = exp / 2;
    half + Duration::from_secs_f64(half.as_secs_f64() * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_past_the_bound_reserves_nothing() {
        let rl = RateLimiter::default();
        let bound = Duration::from_secs(2);
        // 1/s: the first send is free, the second waits ~1 s, the third ~2 s, the fourth
        // would wait ~3 s and is refused without taking a slot.
        assert_eq!(rl.reserve_within("a", 1.0, bound), Ok(Duration::ZERO));
        assert!(rl.reserve_within("a", 1.0, bound).unwrap() > Duration::from_millis(900));
        assert!(rl.reserve_within("a", 1.0, bound).unwrap() > Duration::from_millis(1900));
        let refused = rl.reserve_within("a", 1.0, bound).unwrap_err();
        assert!(refused > Duration::from_millis(2900), "{refused:?}");
        // Refusing took nothing: asking again gives the same answer, not a later one.
        let again = rl.reserve_within("a", 1.0, bound).unwrap_err();
        assert!(again <= refused, "{again:?} > {refused:?}");
    }

    #[test]
    fn a_bounded_limiter_drops_idle_buckets_and_refuses_when_all_are_busy() {
        let rl = RateLimiter::bounded(2);
        assert_eq!(
            rl.reserve_within("a", 1.0, Duration::ZERO),
            Ok(Duration::ZERO)
        );
        assert_eq!(
            rl.reserve_within("b", 1.0, Duration::ZERO),
            Ok(Duration::ZERO)
        );
        assert!(rl.exhausted("a", 1.0).is_some(), "a's one token is taken");
        assert!(
            rl.exhausted("c", 1.0).is_none(),
            "an unseen key has its burst"
        );
        // Full of busy buckets: a third key is refused, and nothing is stored for it.
        assert!(rl.reserve_within("c", 1.0, Duration::from_secs(5)).is_err());
        assert_eq!(rl.buckets.lock().unwrap().len(), 2);
        // A bucket idle for a second has refilled: idle ones make room.
        let fast = RateLimiter::bounded(2);
        fast.reserve("a", 100.0);
        std::thread::sleep(Duration::from_millis(1_050));
        fast.reserve("b", 100.0);
        assert_eq!(
            fast.reserve_within("c", 100.0, Duration::ZERO),
            Ok(Duration::ZERO)
        );
        let kept: Vec<String> = fast.buckets.lock().unwrap().keys().cloned().collect();
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(
            !kept.contains(&"a".to_string()),
            "a was idle and dropped: {kept:?}"
        );
    }

    #[test]
    fn bucket_allows_a_burst_then_paces() {
        let rl = RateLimiter::default();
        assert_eq!(rl.reserve("a", 2.0), Duration::ZERO);
        assert_eq!(rl.reserve("a", 2.0), Duration::ZERO);
        let wait = rl.reserve("a", 2.0);
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        let wait = rl.reserve("a", 2.0);
        assert!(wait > Duration::from_millis(900), "{wait:?}");
        assert_eq!(rl.reserve("b", 2.0), Duration::ZERO, "keys are independent");
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let b = Breakers::new(3, Duration::from_millis(30));
        for _ in 0..3 {
            assert!(b.allow("acct").is_ok());
            b.failure("acct");
        }
        assert!(b.allow("acct").is_err(), "open after 3 failures");
        assert!(b.allow("other").is_ok());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow("acct").is_ok(), "one probe when the cooldown ends");
        assert!(b.allow("acct").is_err(), "only one probe at a time");
        b.failure("acct");
        assert!(b.allow("acct").is_err(), "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow("acct").is_ok());
        b.success("acct");
        assert!(b.allow("acct").is_ok());
        assert!(b.allow("acct").is_ok(), "closed again");
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        for attempt in 0..10 {
            let d = backoff(attempt, base, cap);
            let exp = (base * (1 << attempt)).min(cap);
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
    }
}
