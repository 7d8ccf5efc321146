//! Attachments the provider keeps only for a while (WhatsApp media ids expire): a row per
//! attachment written with its message, downloaded later by the media worker
//! ([`crate::media`]), kept with its SHA-256, size and type, served by `GET /api/v1/media/{id}`.
//!
//! ```text
//!  pending ──claim (lease)──▶ download ──▶ stored (data, sha256, size)
//!     ▲                          ├─ transient error ─▶ pending again at now + backoff
//!     └──── lease runs out ──────┤  (after MAX_ATTEMPTS: failed)
//!                                └─ too large / refused ─▶ too_large / failed
//! ```

use super::StoreError;
use channels::InboundMedia;
use sqlx::{AnyConnection, AnyPool, Row};

/// Download attempts before an attachment is marked failed.
pub const MAX_ATTEMPTS: i64 = 6;

/// Records attachment `id` of a stored message, to download.
pub async fn insert(
    conn: &mut AnyConnection,
    (org_id, message_id, id): (&str, &str, &str),
    (channel, provider): (&str, &str),
    media: &InboundMedia,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO media (id, org_id, message_id, channel, provider, reference, content_type, \
         filename, caption, provider_sha256, status, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11, $11, $11)",
    )
    .bind(id)
    .bind(org_id)
    .bind(message_id)
    .bind(channel)
    .bind(provider)
    .bind(&media.reference)
    .bind(&media.content_type)
    .bind(&media.filename)
    .bind(&media.caption)
    .bind(&media.provider_sha256)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An attachment the gateway made itself (a voicemail's recording): stored as it is written.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    /// Its MIME type.
    pub content_type: &'a str,
    /// Its file name.
    pub filename: &'a str,
    /// Where it came from (a call id).
    pub reference: &'a str,
    /// The bytes.
    pub data: &'a [u8],
}

/// Records attachment `id` of a stored message with its bytes (status `stored`: nothing to
/// download).
pub async fn insert_stored(
    conn: &mut AnyConnection,
    (org_id, message_id, id): (&str, &str, &str),
    (channel, provider): (&str, &str),
    media: &Stored<'_>,
    now: i64,
) -> Result<(), StoreError> {
    use sha2::Digest;
    let sha256 = hex::encode(sha2::Sha256::digest(media.data));
    sqlx::query(
        "INSERT INTO media (id, org_id, message_id, channel, provider, reference, content_type, \
         filename, status, sha256, size, data, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'stored', $9, $10, $11, $12, $12)",
    )
    .bind(id)
    .bind(org_id)
    .bind(message_id)
    .bind(channel)
    .bind(provider)
    .bind(media.reference)
    .bind(media.content_type)
    .bind(media.filename)
    .bind(sha256)
    .bind(media.data.len() as i64)
    .bind(media.data)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The reference an outbound message's `i`-th attachment is stored under: its order.
pub fn outbound_reference(i: usize) -> String {
    format!("attachment:{i:03}")
}

/// The files to send with outbound message `message_id`, in the order they were given.
pub async fn outbound_attachments(
    conn: &mut AnyConnection,
    org_id: &str,
    message_id: &str,
) -> Result<Vec<channels::OutboundAttachment>, StoreError> {
    let rows = sqlx::query(
        "SELECT filename, content_type, data FROM media WHERE org_id = $1 AND message_id = $2 \
         AND status = 'stored' AND reference LIKE 'attachment:%' ORDER BY reference",
    )
    .bind(org_id)
    .bind(message_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(channels::OutboundAttachment {
                filename: r.try_get::<Option<String>, _>(0)?.unwrap_or_default(),
                content_type: r.try_get(1)?,
                data: r.try_get(2)?,
            })
        })
        .collect()
}

/// The first stored attachment of `message_id` whose type starts with `prefix` (a
/// voicemail's audio): its type and bytes; another org's message finds nothing.
pub async fn of_message_typed(
    pool: &AnyPool,
    org_id: &str,
    message_id: &str,
    prefix: &str,
) -> Result<Option<(String, Vec<u8>)>, StoreError> {
    let row = sqlx::query(
        "SELECT content_type, data FROM media WHERE org_id = $1 AND message_id = $2 \
         AND status = 'stored' AND content_type LIKE $3 ORDER BY created_at, id LIMIT 1",
    )
    .bind(org_id)
    .bind(message_id)
    .bind(format!("{prefix}%"))
    .fetch_optional(pool)
    .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// An attachment a worker claimed for download.
#[derive(Debug, Clone)]
pub struct MediaJob {
    /// Its id.
    pub id: String,
    /// The org.
    pub org_id: String,
    /// The provider whose plugin downloads it.
    pub provider: String,
    /// The provider's reference (media id or URL).
    pub reference: String,
    /// Attempts before this one.
    pub attempts: i64,
}

/// Claims due downloads, each with a lease (a worker that dies leaves it due again).
pub async fn claim_due(
    conn: &mut AnyConnection,
    now: i64,
    limit: i64,
    lease_ms: i64,
) -> Result<Vec<MediaJob>, StoreError> {
    let lock = if super::is_postgres(conn) {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, org_id, provider, reference, attempts FROM media \
         WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at LIMIT $2{lock}"
    )))
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let job = MediaJob {
            id: r.try_get(0)?,
            org_id: r.try_get(1)?,
            provider: r.try_get(2)?,
            reference: r.try_get(3)?,
            attempts: r.try_get(4)?,
        };
        sqlx::query("UPDATE media SET next_attempt_at = $1, attempts = attempts + 1 WHERE id = $2")
            .bind(now + lease_ms)
            .bind(&job.id)
            .execute(&mut *conn)
            .await?;
        out.push(job);
    }
    Ok(out)
}

/// How a download ended.
#[derive(Debug, Clone)]
pub enum MediaOutcome {
    /// Downloaded.
    Stored {
        /// Type as served.
        content_type: String,
        /// The bytes.
        data: Vec<u8>,
        /// Their SHA-256, hex.
        sha256: String,
    },
    /// Try again at this time (Unix ms).
    Retry {
        /// Why.
        error: String,
        /// When.
        at: i64,
    },
    /// Given up: `too_large` or `failed`.
    GaveUp {
        /// The status to keep.
        status: &'static str,
        /// Why.
        error: String,
    },
}

/// Records how a download ended.
pub async fn finish(
    conn: &mut AnyConnection,
    id: &str,
    outcome: &MediaOutcome,
    now: i64,
) -> Result<(), StoreError> {
    match outcome {
        MediaOutcome::Stored {
            content_type,
            data,
            sha256,
        } => {
            sqlx::query(
                "UPDATE media SET status = 'stored', content_type = $1, data = $2, sha256 = $3, \
                 size = $4, error = NULL, next_attempt_at = NULL, updated_at = $5 WHERE id = $6",
            )
            .bind(content_type)
            .bind(data.as_slice())
            .bind(sha256)
            .bind(data.len() as i64)
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        MediaOutcome::Retry { error, at } => {
            sqlx::query(
                "UPDATE media SET error = $1, next_attempt_at = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(error)
            .bind(at)
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        MediaOutcome::GaveUp { status, error } => {
            sqlx::query(
                "UPDATE media SET status = $1, error = $2, next_attempt_at = NULL, updated_at = $3 \
                 WHERE id = $4",
            )
            .bind(*status)
            .bind(error)
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// A stored attachment's bytes and type (another org's id finds nothing).
pub async fn content(
    pool: &AnyPool,
    org_id: &str,
    id: &str,
) -> Result<Option<(String, Option<Vec<u8>>, String)>, StoreError> {
    let row =
        sqlx::query("SELECT content_type, data, status FROM media WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .transpose()
}

/// A message's attachments as the API shows them.
pub async fn of_message(
    pool: &AnyPool,
    org_id: &str,
    message_id: &str,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, status, content_type, filename, caption, sha256, size, error FROM media \
         WHERE org_id = $1 AND message_id = $2 ORDER BY created_at, id",
    )
    .bind(org_id)
    .bind(message_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get(0)?;
            Ok(serde_json::json!({
                "id": id,
                "status": r.try_get::<String, _>(1)?,
                "content_type": r.try_get::<String, _>(2)?,
                "filename": r.try_get::<Option<String>, _>(3)?,
                "caption": r.try_get::<Option<String>, _>(4)?,
                "sha256": r.try_get::<Option<String>, _>(5)?,
                "size": r.try_get::<Option<i64>, _>(6)?,
                "error": r.try_get::<Option<String>, _>(7)?,
                "url": format!("/api/v1/media/{id}"),
            }))
        })
        .collect()
}
