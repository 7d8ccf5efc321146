//! Agent phones: their SIP credentials (`sip_agents`, HA1 only, keyed by org and username)
//! and their registrations (`sip_registrations`, one row per contact, shared by every node).
//!
//! Which org's agent a REGISTER names is `voice::ua::pick_agent`'s rule; here the org's
//! domain label is its slug. Registrations are written straight to the pool (not through the
//! committer): a REGISTER's 200 follows its own statement's commit, and the rows are no
//! one's acknowledged data but the agent's, which re-registers every few minutes anyway.

use super::StoreError;
use sqlx::{AnyPool, Row};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use voice::ua::{AgentCredentials, Binding};

/// Creates (or resets) an agent phone's SIP credentials in `org_id`, its HA1 made in
/// `realm` (the org's slug for agents made by the CLI).
pub async fn upsert(
    pool: &AnyPool,
    org_id: &str,
    username: &str,
    realm: &str,
    password: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sip_agents (username, org_id, realm, ha1, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (org_id, username) DO UPDATE SET realm = excluded.realm, ha1 = excluded.ha1, \
         updated_at = excluded.updated_at",
    )
    .bind(username)
    .bind(org_id)
    .bind(realm)
    .bind(voice::sip::digest::ha1(username, realm, password))
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether `org_id` has an agent called `username`.
pub async fn exists(pool: &AnyPool, org_id: &str, username: &str) -> Result<bool, StoreError> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sip_agents WHERE org_id = $1 AND username = $2")
            .bind(org_id)
            .bind(username)
            .fetch_one(pool)
            .await?;
    Ok(n > 0)
}

/// Every org's agent called `username`, each with its org's domain label (the slug).
pub async fn candidates(
    pool: &AnyPool,
    username: &str,
) -> Result<Vec<(String, AgentCredentials)>, StoreError> {
    let rows = sqlx::query(
        "SELECT o.slug, a.org_id, a.realm, a.ha1 FROM sip_agents a JOIN orgs o ON o.id = a.org_id \
         WHERE a.username = $1 ORDER BY o.slug",
    )
    .bind(username)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                AgentCredentials {
                    org: r.try_get(1)?,
                    realm: r.try_get(2)?,
                    ha1: r.try_get(3)?,
                },
            ))
        })
        .collect()
}

/// One agent of an org as `voice agent list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    pub username: String,
    pub realm: String,
    /// Its live registrations' contacts.
    pub contacts: Vec<String>,
}

/// An org's agents with their live contacts.
pub async fn list(pool: &AnyPool, org_id: &str, now: i64) -> Result<Vec<AgentRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT a.username, a.realm, r.contact FROM sip_agents a \
         LEFT JOIN sip_registrations r ON r.org_id = a.org_id AND r.username = a.username \
         AND r.expires_at > $2 WHERE a.org_id = $1 ORDER BY a.username, r.contact",
    )
    .bind(org_id)
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut out: Vec<AgentRow> = Vec::new();
    for r in &rows {
        let username: String = r.try_get(0)?;
        let contact: Option<String> = r.try_get(2)?;
        if out.last().is_none_or(|a| a.username != username) {
            out.push(AgentRow {
                username,
                realm: r.try_get(1)?,
                contacts: Vec::new(),
            });
        }
        if let (Some(c), Some(last)) = (contact, out.last_mut()) {
            last.contacts.push(c);
        }
    }
    Ok(out)
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Adds or refreshes a binding (an expired one removes its contact), sweeping the agent's
/// expired rows.
pub async fn bind(pool: &AnyPool, b: &Binding) -> Result<(), StoreError> {
    let now = ms(SystemTime::now());
    let expires = ms(b.expires_at);
    let mut tx = pool.begin().await?;
    sqlx::query(
        "DELETE FROM sip_registrations WHERE org_id = $1 AND username = $2 \
         AND (expires_at <= $3 OR contact = $4)",
    )
    .bind(&b.org)
    .bind(&b.user)
    .bind(now)
    .bind(&b.contact)
    .execute(&mut *tx)
    .await?;
    if expires > now {
        sqlx::query(
            "INSERT INTO sip_registrations (org_id, username, contact, source, expires_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&b.org)
        .bind(&b.user)
        .bind(&b.contact)
        .bind(b.source.to_string())
        .bind(expires)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Removes every binding of an agent.
pub async fn unbind_all(pool: &AnyPool, org_id: &str, username: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sip_registrations WHERE org_id = $1 AND username = $2")
        .bind(org_id)
        .bind(username)
        .execute(pool)
        .await?;
    Ok(())
}

/// An agent's bindings that have not expired.
pub async fn bindings(
    pool: &AnyPool,
    org_id: &str,
    username: &str,
) -> Result<Vec<Binding>, StoreError> {
    let rows = sqlx::query(
        "SELECT contact, source, expires_at FROM sip_registrations \
         WHERE org_id = $1 AND username = $2 AND expires_at > $3 ORDER BY contact",
    )
    .bind(org_id)
    .bind(username)
    .bind(ms(SystemTime::now()))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let source: String = r.try_get(1)?;
            let expires: i64 = r.try_get(2)?;
            Ok(Binding {
                org: org_id.to_owned(),
                user: username.to_owned(),
                contact: r.try_get(0)?,
                source: source.parse().map_err(|_| StoreError::Corrupt {
                    what: "sip_registrations.source",
                    detail: source.clone(),
                })?,
                expires_at: UNIX_EPOCH + Duration::from_millis(u64::try_from(expires).unwrap_or(0)),
            })
        })
        .collect()
}
