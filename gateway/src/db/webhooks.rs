//! Outbound webhook endpoints and their dead letters (see [`crate::outhooks`]).
//!
//! These rows are the delivery worker's own bookkeeping, written directly (not through the
//! committer): they acknowledge nothing to anyone, and a write lost in a crash only means an
//! event is delivered again (receivers deduplicate on `webhook-id`, as the spec asks).

use super::{new_id, StoreError};
use sqlx::{AnyPool, Row};

/// An endpoint as the worker and the CLI see it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Its id.
    pub id: String,
    /// Its organization.
    pub org_id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The signing secret (`whsec_…`).
    pub secret: String,
    /// The secret it replaced, still signing until `previous_until`.
    pub previous_secret: Option<String>,
    /// Until when the previous secret signs, Unix ms.
    pub previous_until: Option<i64>,
    /// The last event (org sequence number) delivered or dead-lettered.
    pub cursor_seq: i64,
    /// Failed attempts at the event after the cursor.
    pub attempts: i64,
    /// When to try it again, Unix ms.
    pub retry_at: Option<i64>,
    /// The last failure, for `webhook list`.
    pub last_error: Option<String>,
}

const COLUMNS: &str = "id, org_id, url, secret, previous_secret, previous_until, cursor_seq, \
                       attempts, retry_at, last_error";

fn endpoint(r: &sqlx::any::AnyRow) -> Result<Endpoint, StoreError> {
    Ok(Endpoint {
        id: r.try_get(0)?,
        org_id: r.try_get(1)?,
        url: r.try_get(2)?,
        secret: r.try_get(3)?,
        previous_secret: r.try_get(4)?,
        previous_until: r.try_get(5)?,
        cursor_seq: r.try_get(6)?,
        attempts: r.try_get(7)?,
        retry_at: r.try_get(8)?,
        last_error: r.try_get(9)?,
    })
}

/// Adds an endpoint that receives the org's events from now on (its cursor starts at the
/// org's latest numbered event). Returns its id.
pub async fn add(
    pool: &AnyPool,
    org_id: &str,
    url: &str,
    secret: &str,
    now: i64,
) -> Result<String, StoreError> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, org_id, url, secret, cursor_seq, created_at) \
         VALUES ($1, $2, $3, $4, (SELECT COALESCE(MAX(seq), 0) FROM outbox WHERE org_id = $2), $5)",
    )
    .bind(&id)
    .bind(org_id)
    .bind(url)
    .bind(secret)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(id)
}

/// An org's live endpoints.
pub async fn of_org(pool: &AnyPool, org_id: &str) -> Result<Vec<Endpoint>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE org_id = $1 AND removed_at IS NULL \
         ORDER BY created_at, id"
    )))
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(endpoint).collect()
}

/// Takes the delivery lease of every live endpoint that is free (or whose lease ran out)
/// for `node` until `until`; returns them. Several nodes never deliver to one endpoint at once.
pub async fn lease(
    pool: &AnyPool,
    node: &str,
    now: i64,
    until: i64,
) -> Result<Vec<Endpoint>, StoreError> {
    // A read first: with no endpoints (the common case) the worker writes nothing.
    let live: i64 = sqlx::query("SELECT COUNT(*) FROM webhook_endpoints WHERE removed_at IS NULL")
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    if live == 0 {
        return Ok(Vec::new());
    }
    sqlx::query(
        "UPDATE webhook_endpoints SET lease_node = $1, lease_until = $2 \
         WHERE removed_at IS NULL AND (lease_node IS NULL OR lease_node = $1 OR lease_until < $3)",
    )
    .bind(node)
    .bind(until)
    .bind(now)
    .execute(pool)
    .await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE removed_at IS NULL AND lease_node = $1 \
         ORDER BY id"
    )))
    .bind(node)
    .fetch_all(pool)
    .await?;
    rows.iter().map(endpoint).collect()
}

/// Gives up `node`'s leases (at shutdown), so another node takes over at once.
pub async fn release(pool: &AnyPool, node: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_endpoints SET lease_node = NULL, lease_until = NULL WHERE lease_node = $1",
    )
    .bind(node)
    .execute(pool)
    .await?;
    Ok(())
}

/// The event after the cursor was delivered (or dead-lettered): move past it.
pub async fn advance(pool: &AnyPool, id: &str, seq: i64) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_endpoints SET cursor_seq = $1, attempts = 0, retry_at = NULL, \
         last_error = NULL WHERE id = $2 AND cursor_seq < $1",
    )
    .bind(seq)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// A failed attempt at the head event: try again at `retry_at`.
pub async fn failed(
    pool: &AnyPool,
    id: &str,
    attempts: i64,
    retry_at: i64,
    error: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_endpoints SET attempts = $1, retry_at = $2, last_error = $3 WHERE id = $4",
    )
    .bind(attempts)
    .bind(retry_at)
    .bind(error)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Replaces the secret; the old one keeps signing until `previous_until`.
pub async fn rotate(
    pool: &AnyPool,
    org_id: &str,
    id: &str,
    secret: &str,
    previous_until: i64,
) -> Result<bool, StoreError> {
    let res = sqlx::query(
        "UPDATE webhook_endpoints SET previous_secret = secret, previous_until = $1, secret = $2 \
         WHERE id = $3 AND org_id = $4 AND removed_at IS NULL",
    )
    .bind(previous_until)
    .bind(secret)
    .bind(id)
    .bind(org_id)
    .execute(pool)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Stops deliveries to an endpoint.
pub async fn remove(pool: &AnyPool, org_id: &str, id: &str, now: i64) -> Result<bool, StoreError> {
    let res = sqlx::query(
        "UPDATE webhook_endpoints SET removed_at = $1 WHERE id = $2 AND org_id = $3 \
         AND removed_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .bind(org_id)
    .execute(pool)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// A dead letter: an event an endpoint kept refusing.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its id.
    pub id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The event.
    pub event_id: String,
    /// The event's org sequence number.
    pub seq: i64,
    /// Attempts made.
    pub attempts: i64,
    /// The last failure.
    pub error: String,
    /// When it was replayed, if it was.
    pub replayed_at: Option<i64>,
}

/// Records that `endpoint` gave up on the event `seq` after `attempts`.
pub async fn dead_letter(
    pool: &AnyPool,
    ep: &Endpoint,
    event_id: &str,
    seq: i64,
    error: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_dead_letters (id, endpoint_id, org_id, event_id, seq, attempts, error, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id())
    .bind(&ep.id)
    .bind(&ep.org_id)
    .bind(event_id)
    .bind(seq)
    .bind(ep.attempts + 1)
    .bind(error)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// An org's webhook dead letters, newest first.
pub async fn dead_letters(pool: &AnyPool, org_id: &str) -> Result<Vec<DeadLetter>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, endpoint_id, event_id, seq, attempts, error, replayed_at \
         FROM webhook_dead_letters WHERE org_id = $1 ORDER BY created_at DESC, id",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DeadLetter {
                id: r.try_get(0)?,
                endpoint_id: r.try_get(1)?,
                event_id: r.try_get(2)?,
                seq: r.try_get(3)?,
                attempts: r.try_get(4)?,
                error: r.try_get(5)?,
                replayed_at: r.try_get(6)?,
            })
        })
        .collect()
}

/// Asks for a dead letter to be delivered again (by whichever node holds its endpoint).
pub async fn request_replay(
    pool: &AnyPool,
    org_id: &str,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let res = sqlx::query(
        "UPDATE webhook_dead_letters SET replay_requested_at = $1 WHERE id = $2 AND org_id = $3 \
         AND replayed_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .bind(org_id)
    .execute(pool)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Replays asked for on an endpoint: (dead letter id, event id).
pub async fn replays_due(
    pool: &AnyPool,
    endpoint_id: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, event_id FROM webhook_dead_letters WHERE endpoint_id = $1 \
         AND replay_requested_at IS NOT NULL AND replayed_at IS NULL ORDER BY seq",
    )
    .bind(endpoint_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// A replay went through.
pub async fn replayed(pool: &AnyPool, id: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE webhook_dead_letters SET replayed_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
