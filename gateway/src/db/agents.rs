//! Agents (the people on the inbox) and their sessions.
//!
//! An agent belongs to one org; its email is unique across the gateway because `POST
//! /api/v1/login` names no org. The password is kept only as an argon2 PHC string (hashed by
//! [`crate::inbox::auth`], off the async threads). A session token is 32 random bytes shown
//! once (`dwa_` + hex) and stored as its SHA-256 — like API keys, a 256-bit secret needs no
//! slow hash — with an expiry and a revocation time. Presence (`online_until`) is what the
//! round-robin assigner reads.

use super::{new_id, now_ms, StoreError};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

/// What an agent may do: an `admin` also manages agents and merges contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Answers conversations.
    Agent,
    /// Also manages agents and contacts.
    Admin,
}

impl Role {
    /// Parses `agent` / `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "agent" => Some(Role::Agent),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }
}

/// An agent as the rest of the gateway sees it (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Agent {
    /// Its id.
    pub id: String,
    /// Its org.
    pub org_id: String,
    /// Its login.
    pub email: String,
    /// What it may do.
    pub role: Role,
    /// Open conversations it takes from the queue at most.
    pub capacity: i64,
}

fn agent_from(r: &AnyRow) -> Result<Agent, StoreError> {
    let role: String = r.try_get("role")?;
    Ok(Agent {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        email: r.try_get("email")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt {
            what: "agents.role",
            detail: role.clone(),
        })?,
        capacity: r.try_get("capacity")?,
    })
}

/// Emails are compared without case and surrounding space.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Creates an agent with an already-hashed password; `None` if the email is taken.
pub async fn create(
    pool: &AnyPool,
    org_id: &str,
    email: &str,
    password_hash: &str,
    role: Role,
    capacity: i64,
) -> Result<Option<Agent>, StoreError> {
    let agent = Agent {
        id: new_id(),
        org_id: org_id.to_string(),
        email: normalize_email(email),
        role,
        capacity,
    };
    let res = sqlx::query(
        "INSERT INTO agents (id, org_id, email, password_hash, role, capacity, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (email) DO NOTHING",
    )
    .bind(&agent.id)
    .bind(org_id)
    .bind(&agent.email)
    .bind(password_hash)
    .bind(role.as_str())
    .bind(capacity)
    .bind(now_ms())
    .execute(pool)
    .await?;
    Ok((res.rows_affected() == 1).then_some(agent))
}

/// The agent with this email and its password hash (for login).
pub async fn by_email(pool: &AnyPool, email: &str) -> Result<Option<(Agent, String)>, StoreError> {
    let row = sqlx::query(
        "SELECT id, org_id, email, role, capacity, password_hash FROM agents WHERE email = $1",
    )
    .bind(normalize_email(email))
    .fetch_optional(pool)
    .await?;
    row.map(|r| Ok((agent_from(&r)?, r.try_get("password_hash")?)))
        .transpose()
}

/// An org's agents, by email.
pub async fn list(pool: &AnyPool, org_id: &str) -> Result<Vec<Agent>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, org_id, email, role, capacity FROM agents WHERE org_id = $1 ORDER BY email",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(agent_from).collect()
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Opens a session for `agent` lasting `ttl_ms`; returns the token (shown once).
pub async fn create_session(
    pool: &AnyPool,
    agent: &Agent,
    ttl_ms: i64,
) -> Result<String, StoreError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).expect("the operating system's random source works");
    let token = format!("dwa_{}", hex::encode(raw));
    let now = now_ms();
    sqlx::query(
        "INSERT INTO agent_sessions (token_hash, agent_id, org_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash_token(&token))
    .bind(&agent.id)
    .bind(&agent.org_id)
    .bind(now)
    .bind(now.saturating_add(ttl_ms))
    .execute(pool)
    .await?;
    Ok(token)
}

/// The agent behind a live (unexpired, unrevoked) session token.
pub async fn by_token(pool: &AnyPool, token: &str) -> Result<Option<Agent>, StoreError> {
    let row = sqlx::query(
        "SELECT a.id, a.org_id, a.email, a.role, a.capacity FROM agent_sessions s \
         JOIN agents a ON a.id = s.agent_id AND a.org_id = s.org_id \
         WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2",
    )
    .bind(hash_token(token))
    .bind(now_ms())
    .fetch_optional(pool)
    .await?;
    row.map(|r| agent_from(&r)).transpose()
}

/// Revokes one session; true if it was live.
pub async fn revoke_session(pool: &AnyPool, token: &str) -> Result<bool, StoreError> {
    let res = sqlx::query(
        "UPDATE agent_sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(hash_token(token))
    .execute(pool)
    .await?;
    Ok(res.rows_affected() > 0)
}

/// Revokes every session of an agent of `org_id`; how many.
pub async fn revoke_all(pool: &AnyPool, org_id: &str, agent_id: &str) -> Result<u64, StoreError> {
    let res = sqlx::query(
        "UPDATE agent_sessions SET revoked_at = $1 \
         WHERE org_id = $2 AND agent_id = $3 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(org_id)
    .bind(agent_id)
    .execute(pool)
    .await?;
    Ok(res.rows_affected())
}

/// Marks an agent online until `until` (Unix ms; `0` or the past: offline).
pub async fn set_online_until(
    pool: &AnyPool,
    org_id: &str,
    agent_id: &str,
    until: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE agents SET online_until = $1 WHERE org_id = $2 AND id = $3")
        .bind(until)
        .bind(org_id)
        .bind(agent_id)
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for r in [Role::Agent, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn emails_normalize() {
        assert_eq!(normalize_email("  Ann@Example.COM "), "ann@example.com");
    }

    #[test]
    fn token_hash_is_not_the_token() {
        let h = hash_token("dwa_x");
        assert_eq!(h.len(), 64);
        assert_ne!(h, "dwa_x");
    }
}
