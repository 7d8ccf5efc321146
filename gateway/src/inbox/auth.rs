//! Agent authentication: argon2 password hashes (computed on the blocking pool: a hash costs
//! tens of milliseconds of CPU by design), failed-login throttling, and [`AgentAuth`], the
//! extractor for `Authorization: Bearer dwa_…` session tokens.
//!
//! Throttling is per email, in this node's memory: after `login_max_failures` failures within
//! `login_window_secs` the email is refused with 429 and `Retry-After` until the window ends,
//! whatever the password — so guessing costs the attacker the window, not one hash. A success
//! clears the count.

use crate::api::{ApiError, State};
use crate::db::agents::{self, Agent};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Hashes a password (argon2id, default parameters, random salt) into a PHC string.
pub async fn hash_password(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Failed logins per email.
pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginThrottle {
    /// Allows `max_failures` failures per `window`.
    pub fn new(max_failures: u32, window: Duration) -> LoginThrottle {
        LoginThrottle {
            max_failures: max_failures.max(1),
            window,
            failures: Mutex::default(),
        }
    }

    /// `Err(seconds to wait)` while the email is locked out.
    pub fn check(&self, email: &str) -> Result<(), u64> {
        let map = self.failures.lock().expect("not poisoned");
        match map.get(email) {
            Some((start, n)) if *n >= self.max_failures && start.elapsed() < self.window => {
                Err((self.window - start.elapsed()).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failure.
    pub fn failed(&self, email: &str) {
        let mut map = self.failures.lock().expect("not poisoned");
        // Forget windows that ended, so the map cannot grow without bound from old entries.
        if map.len() > 10_000 {
            let window = self.window;
            map.retain(|_, (start, _)| start.elapsed() < window);
        }
        let entry = map.entry(email.to_string()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    /// Clears the count after a success.
    pub fn succeeded(&self, email: &str) {
        self.failures.lock().expect("not poisoned").remove(email);
    }
}

/// The token of `Authorization: Bearer TOKEN`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// The agent a request acts as, from its session token.
pub struct AgentAuth(pub Agent);

impl FromRequestParts<State> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer TOKEN`"))?;
        agents::by_token(&state.db.pool, token)
            .await?
            .map(AgentAuth)
            .ok_or_else(|| ApiError::unauthorized("unknown, expired or revoked session token"))
    }
}

/// The org a request acts for: an agent session token, or else an API key.
pub struct AgentOrKey {
    /// The org.
    pub org_id: String,
    /// The agent, when a session token was presented.
    pub agent: Option<Agent>,
}

impl FromRequestParts<State> for AgentOrKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        if bearer(&parts.headers).is_some_and(|t| t.starts_with("dwa_")) {
            let AgentAuth(agent) = AgentAuth::from_request_parts(parts, state).await?;
            return Ok(AgentOrKey {
                org_id: agent.org_id.clone(),
                agent: Some(agent),
            });
        }
        let crate::api::OrgAuth(org_id) =
            crate::api::OrgAuth::from_request_parts(parts, state).await?;
        Ok(AgentOrKey {
            org_id,
            agent: None,
        })
    }
}

impl AgentOrKey {
    /// API keys act for the org's administrators; an agent must have the `admin` role.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match &self.agent {
            Some(a) if a.role != agents::Role::Admin => Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                "this needs an admin agent or an API key",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let a = hash_password("s3cret-pass".into()).await.unwrap();
        let b = hash_password("s3cret-pass".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salted");
        assert!(verify_password("s3cret-pass".into(), a.clone()).await);
        assert!(!verify_password("wrong".into(), a).await);
        assert!(!verify_password("x".into(), "not a hash".into()).await);
    }

    #[test]
    fn throttle_locks_after_max_failures_and_clears_on_success() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(t.check("a").is_ok());
            t.failed("a");
        }
        assert!(t.check("a").is_err());
        assert!(t.check("b").is_ok(), "per email");
        t.succeeded("a");
        assert!(t.check("a").is_ok());
    }

    #[test]
    fn throttle_window_ends() {
        let t = LoginThrottle::new(1, Duration::from_millis(0));
        t.failed("a");
        assert!(t.check("a").is_ok());
    }
}
