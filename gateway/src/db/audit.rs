//! The audit log: who did what, when, from where — every admin action (CLI and operator API)
//! and every agent action (inbox commands, contact merges, agent management). Append-only:
//! nothing in the gateway updates or deletes a row, and database triggers refuse it.
//! `GET /api/v1/audit` lists an org's entries, newest first.
//!
//! Actors are written as `cli:USER@HOST`, `operator` (the ops token), `apikey:KEY_ID` and
//! `agent:EMAIL`; the source is the client's address for HTTP, absent for the CLI.

use super::{new_id, now_ms, StoreError};
use serde::Serialize;
use serde_json::Value;
use sqlx::{AnyPool, Row};

/// One action to record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The org it concerns (none for gateway-wide actions such as key rotation).
    pub org_id: Option<&'a str>,
    /// Who.
    pub actor: &'a str,
    /// What, e.g. `apikey.revoke`.
    pub action: &'a str,
    /// On what (an id), if anything.
    pub target: Option<&'a str>,
    /// Details (never secrets).
    pub detail: Value,
    /// From where (the client's address).
    pub source: Option<String>,
}

/// Records an action.
pub async fn record(pool: &AnyPool, e: Entry<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (id, org_id, at, actor, action, target, detail, source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id())
    .bind(e.org_id)
    .bind(now_ms())
    .bind(e.actor)
    .bind(e.action)
    .bind(e.target)
    .bind(e.detail.to_string())
    .bind(e.source)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records an action off the caller's path (an agent's command must not wait for it); a
/// failure is logged.
pub fn record_later(pool: &AnyPool, e: Entry<'_>) {
    let pool = pool.clone();
    let (org, actor, action, target) = (
        e.org_id.map(str::to_string),
        e.actor.to_string(),
        e.action.to_string(),
        e.target.map(str::to_string),
    );
    let (detail, source) = (e.detail, e.source);
    tokio::spawn(async move {
        let entry = Entry {
            org_id: org.as_deref(),
            actor: &actor,
            action: &action,
            target: target.as_deref(),
            detail,
            source,
        };
        if let Err(err) = record(&pool, entry).await {
            tracing::error!(error = %err, %action, "writing the audit log failed");
        }
    });
}

/// The actor name of the CLI: `cli:USER@HOST`.
pub fn cli_actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("cli:{user}@{}", host.trim())
}

/// A recorded action, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    /// Its id.
    pub id: String,
    /// When, Unix ms.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// Details.
    pub detail: Value,
    /// From where.
    pub source: Option<String>,
}

/// An org's entries, newest first, before `before` (Unix ms) if given.
pub async fn list(
    pool: &AnyPool,
    org_id: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Recorded>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, at, actor, action, target, detail, source FROM audit_log \
         WHERE org_id = $1 AND at < $2 ORDER BY at DESC, id DESC LIMIT $3",
    )
    .bind(org_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let detail: String = r.try_get(5)?;
            Ok(Recorded {
                id: r.try_get(0)?,
                at: r.try_get(1)?,
                actor: r.try_get(2)?,
                action: r.try_get(3)?,
                target: r.try_get(4)?,
                detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
                source: r.try_get(6)?,
            })
        })
        .collect()
}
