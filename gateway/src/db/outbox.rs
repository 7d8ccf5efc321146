//! The transactional outbox: every state change appends its event in the same transaction,
//! and the relay numbers committed rows per organization, in commit order.
//!
//! Why the relay numbers them and not the insert: an autoincrement or sequence value taken by
//! concurrent transactions commits out of order, so a reader could see 11 before 10 and skip
//! 10 forever. Rows are inserted with `seq NULL`; the relay (alone) takes committed unnumbered
//! rows and gives each org's the next numbers from `orgs.next_seq` in one transaction. A row
//! that commits late simply gets a later number: the sequence is gap-free and a reader that
//! has seen N has seen everything up to N.

use super::{new_id, StoreError};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Outbox row id (storage order, not commit order).
    pub row_id: i64,
    /// The stable event id (CloudEvents `id`).
    pub event_id: String,
    /// The organization.
    pub org_id: String,
    /// The per-org sequence number, once the relay numbered it.
    pub seq: Option<i64>,
    /// The key that keeps one conversation's events in order (a conversation id).
    pub partition_key: String,
    /// The CloudEvents `type`.
    pub event_type: String,
    /// The CloudEvents `subject`.
    pub subject: String,
    /// When it happened, Unix ms.
    pub time: i64,
    /// The event's data.
    pub data: Value,
}

const COLUMNS: &str = "id, event_id, org_id, seq, partition_key, type, subject, time, data";

fn from_row(row: &AnyRow) -> Result<StoredEvent, StoreError> {
    let data: String = row.try_get("data")?;
    Ok(StoredEvent {
        row_id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        org_id: row.try_get("org_id")?,
        seq: row.try_get("seq")?,
        partition_key: row.try_get("partition_key")?,
        event_type: row.try_get("type")?,
        subject: row.try_get("subject")?,
        time: row.try_get("time")?,
        data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
            what: "outbox.data",
            detail: e.to_string(),
        })?,
    })
}

/// An event about to be appended.
pub struct NewEvent<'a> {
    /// The organization.
    pub org_id: &'a str,
    /// The ordering key (conversation id).
    pub partition_key: &'a str,
    /// The CloudEvents `type`, e.g. `dartwing.message.received.v1`.
    pub event_type: &'static str,
    /// The CloudEvents `subject`, e.g. `messages/{id}`.
    pub subject: String,
    /// The data.
    pub data: Value,
}

/// Appends an event inside the caller's transaction.
pub async fn append(
    conn: &mut AnyConnection,
    ev: NewEvent<'_>,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox (event_id, org_id, partition_key, type, subject, time, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id())
    .bind(ev.org_id)
    .bind(ev.partition_key)
    .bind(ev.event_type)
    .bind(ev.subject)
    .bind(now)
    .bind(ev.data.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends several events inside the caller's transaction, in their order, with one
/// statement per hundred (what a batch of claims or acceptances publishes).
pub async fn append_many(
    conn: &mut AnyConnection,
    events: Vec<NewEvent<'_>>,
    now: i64,
) -> Result<(), StoreError> {
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let chunk: Vec<NewEvent<'_>> = events.by_ref().take(100).collect();
        let sql = format!(
            "INSERT INTO outbox (event_id, org_id, partition_key, type, subject, time, data) \
             VALUES {}",
            super::sql::numbered_rows("(?, ?, ?, ?, ?, $1, ?)", chunk.len(), 2)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for ev in chunk {
            q = q
                .bind(new_id())
                .bind(ev.org_id)
                .bind(ev.partition_key)
                .bind(ev.event_type)
                .bind(ev.subject)
                .bind(ev.data.to_string());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Numbers up to `limit` committed, unnumbered rows (inside the committer's transaction) and
/// returns them in their new order. Only one relay may run this at a time per database.
pub async fn sequence(tx: &mut AnyConnection, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
    if super::is_postgres(tx) {
        // Several nodes share PostgreSQL: numbering is serialised across them (see
        // `db::leader`); the lock is released at COMMIT, and the SELECT below, run after it is
        // taken, sees the previous holder's numbers.
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS l")
            .bind(super::leader::SEQUENCE_KEY)
            .execute(&mut *tx)
            .await?;
    }
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outbox WHERE seq IS NULL ORDER BY id LIMIT $1"
    )))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let mut events = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    if events.is_empty() {
        return Ok(events);
    }
    let mut orgs: Vec<&str> = events.iter().map(|e| e.org_id.as_str()).collect();
    orgs.sort_unstable();
    orgs.dedup();
    let mut next: Vec<(String, i64)> = Vec::with_capacity(orgs.len());
    for org in orgs {
        let count = events.iter().filter(|e| e.org_id == org).count() as i64;
        let row = sqlx::query(
            "UPDATE orgs SET next_seq = next_seq + $1 WHERE id = $2 RETURNING next_seq",
        )
        .bind(count)
        .bind(org)
        .fetch_one(&mut *tx)
        .await?;
        let after: i64 = row.try_get(0)?;
        next.push((org.to_string(), after - count));
    }
    for ev in events.iter_mut() {
        let slot = next
            .iter_mut()
            .find(|(o, _)| *o == ev.org_id)
            .expect("every org was counted");
        ev.seq = Some(slot.1);
        slot.1 += 1;
    }
    // One statement per chunk instead of one per row: `CASE id WHEN … THEN … END`.
    for chunk in events.chunks(400) {
        let (when, ids) = super::sql::numbered_case(chunk.len());
        let sql = format!("UPDATE outbox SET seq = CASE id{when} END WHERE id IN ({ids})");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for ev in chunk {
            q = q.bind(ev.row_id).bind(ev.seq);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(events)
}

/// Numbered rows not yet handed to the sinks (after a crash or a failed publish), oldest
/// first per org.
pub async fn unpublished(pool: &AnyPool, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outbox WHERE published_at IS NULL AND seq IS NOT NULL \
         ORDER BY org_id, seq LIMIT $1"
    )))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Marks rows as handed to every sink.
pub async fn mark_published(
    conn: &mut AnyConnection,
    row_ids: &[i64],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in row_ids.chunks(500) {
        let sql = format!(
            "UPDATE outbox SET published_at = $1 WHERE id IN ({})",
            super::sql::numbered_list(2, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// An org's numbered events after `after_seq`, in order (catch-up for a reconnecting client).
pub async fn after_seq(
    pool: &AnyPool,
    org_id: &str,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outbox WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    )))
    .bind(org_id)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// One numbered event by its id (`None` when unknown, unnumbered, or pruned).
pub async fn by_event_id(
    pool: &AnyPool,
    org_id: &str,
    event_id: &str,
) -> Result<Option<StoredEvent>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outbox WHERE org_id = $1 AND event_id = $2 AND seq IS NOT NULL"
    )))
    .bind(org_id)
    .bind(event_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Deletes up to `limit` rows published before `published_before` (Unix ms), oldest first;
/// returns how many went. Unpublished rows are never touched. The catch-up feed
/// (`/api/v1/events?after_seq=`) then starts at the oldest row kept; per-org numbering lives
/// in `orgs.next_seq`, so pruning never reuses a sequence number.
pub async fn prune(
    conn: &mut AnyConnection,
    published_before: i64,
    limit: i64,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox \
         WHERE published_at IS NOT NULL AND published_at < $1 ORDER BY id LIMIT $2)",
    )
    .bind(published_before)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// How many events are not yet published (the relay's backlog).
pub async fn backlog(pool: &AnyPool) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(pool)
        .await?;
    Ok(row.try_get(0)?)
}
