//! Request rate limits on the API: token buckets per API key and per org (a burst of one
//! second's worth), refused with 429 and `Retry-After` in whole seconds. Limits are per node:
//! behind a load balancer spreading requests over N nodes, a key gets up to N times the rate.
//!
//! Settings (`[api]` in the file): `rate_per_key` (`DARTWING_API_RATE_PER_KEY`) and
//! `rate_per_org` (`DARTWING_API_RATE_PER_ORG`), requests per second; 0 turns a limit off.

use super::ApiError;
use crate::db::orgs::KeyOwner;
use crate::sender::limits::RateLimiter;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// API rate settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiLimits {
    /// Requests per second per API key (0: no limit).
    pub rate_per_key: f64,
    /// Requests per second per org, all its keys together (0: no limit).
    pub rate_per_org: f64,
}

impl ApiLimits {
    /// Every invalid setting, named.
    pub fn problems(&self) -> Vec<String> {
        [
            ("api.rate_per_key", self.rate_per_key),
            ("api.rate_per_org", self.rate_per_org),
        ]
        .into_iter()
        .filter(|(_, v)| !(v.is_finite() && *v >= 0.0))
        .map(|(k, _)| format!("{k} must be 0 (off) or a positive number"))
        .collect()
    }
}

/// The buckets of one node.
pub struct ApiRateLimits {
    limits: ApiLimits,
    per_key: RateLimiter,
    per_org: RateLimiter,
}

impl ApiRateLimits {
    /// Buckets for these settings.
    pub fn new(limits: ApiLimits) -> ApiRateLimits {
        ApiRateLimits {
            limits,
            per_key: RateLimiter::default(),
            per_org: RateLimiter::default(),
        }
    }

    /// Takes one request for `owner` from its key's and its org's buckets, or refuses with
    /// 429. A request refused by its key's bucket takes nothing from either.
    pub fn check(&self, owner: &KeyOwner) -> Result<(), ApiError> {
        let take = |limiter: &RateLimiter, key: &str, rate: f64| -> Result<(), Duration> {
            if rate <= 0.0 {
                return Ok(());
            }
            limiter
                .reserve_within(key, rate, Duration::ZERO)
                .map(|_| ())
        };
        let refused = take(&self.per_key, &owner.key_id, self.limits.rate_per_key)
            .map_err(|wait| ("API key", self.limits.rate_per_key, wait))
            .and_then(|()| {
                take(&self.per_org, &owner.org_id, self.limits.rate_per_org)
                    .map_err(|wait| ("organization", self.limits.rate_per_org, wait))
            });
        let Err((what, rate, wait)) = refused else {
            return Ok(());
        };
        metrics::counter!("api_requests_throttled_total").increment(1);
        Err(ApiError::rate_limited(
            wait,
            format!("more than {rate} requests per second for this {what}"),
        ))
    }
}
