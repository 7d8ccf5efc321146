//! Dead letters: sends that failed for good, with their last error, listable and replayable.
//!
//! A replay does not resurrect the failed message (`failed` is terminal and its history stays
//! true); it queues a new message with the same recipient and body in the same conversation
//! and links the two.

use super::messages::{create_outbound, Created, NewOutbound};
use super::outbox::{self, NewEvent};
use super::{new_id, StoreError};
use serde::Serialize;
use serde_json::json;
use sqlx::{AnyConnection, AnyPool, Row};
use state_machines::Channel;

/// Records a dead letter (inside the failing send's transaction) and returns its id.
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    conn: &mut AnyConnection,
    org_id: &str,
    message_id: &str,
    channel: Channel,
    error: &str,
    error_code: Option<&str>,
    attempts: i64,
    now: i64,
) -> Result<String, StoreError> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO dead_letters (id, org_id, message_id, channel, error, error_code, attempts, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(org_id)
    .bind(message_id)
    .bind(channel.as_str())
    .bind(error)
    .bind(error_code)
    .bind(attempts)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query("SELECT conversation_id FROM messages WHERE id = $1 AND org_id = $2")
        .bind(message_id)
        .bind(org_id)
        .fetch_one(&mut *conn)
        .await?;
    let conversation_id: String = row.try_get(0)?;
    outbox::append(
        conn,
        NewEvent {
            org_id,
            partition_key: &conversation_id,
            event_type: "dartwing.message.dead_lettered.v1",
            subject: format!("messages/{message_id}"),
            data: json!({"dead_letter_id": id, "message_id": message_id, "conversation_id": conversation_id,
                         "channel": channel.as_str(), "error": error, "error_code": error_code, "attempts": attempts}),
        },
        now,
    )
    .await?;
    Ok(id)
}

/// A dead letter as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Its id.
    pub id: String,
    /// The failed message.
    pub message_id: String,
    /// Its channel.
    pub channel: String,
    /// The last error.
    pub error: String,
    /// The provider's error code.
    pub error_code: Option<String>,
    /// Attempts made.
    pub attempts: i64,
    /// When, Unix ms.
    pub created_at: i64,
    /// When it was replayed, if it was.
    pub replayed_at: Option<i64>,
    /// The message the replay queued.
    pub replay_message_id: Option<String>,
}

/// An org's dead letters, newest first.
pub async fn list(pool: &AnyPool, org_id: &str, limit: i64) -> Result<Vec<DeadLetter>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, message_id, channel, error, error_code, attempts, created_at, replayed_at, replay_message_id \
         FROM dead_letters WHERE org_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(org_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DeadLetter {
                id: r.try_get(0)?,
                message_id: r.try_get(1)?,
                channel: r.try_get(2)?,
                error: r.try_get(3)?,
                error_code: r.try_get(4)?,
                attempts: r.try_get(5)?,
                created_at: r.try_get(6)?,
                replayed_at: r.try_get(7)?,
                replay_message_id: r.try_get(8)?,
            })
        })
        .collect()
}

/// Unreplayed dead letters per channel, for the `dead_letter_queue_depth` gauge.
pub async fn depth_by_channel(pool: &AnyPool) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT channel, COUNT(*) FROM dead_letters WHERE replayed_at IS NULL GROUP BY channel",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// A new message was queued.
    Queued {
        /// The new message.
        message_id: String,
    },
    /// It was replayed before (the message it queued).
    AlreadyReplayed {
        /// The message the earlier replay queued.
        message_id: String,
    },
    /// No such dead letter in this org.
    NotFound,
    /// The recipient has opted out since.
    OptedOut,
}

/// Replays a dead letter: queues a copy of the failed message.
pub async fn replay(
    conn: &mut AnyConnection,
    org_id: &str,
    id: &str,
    now: i64,
) -> Result<Replay, StoreError> {
    let row = sqlx::query(
        "SELECT d.replay_message_id, m.channel, m.from_addr, m.to_addr, m.body, m.content, m.id FROM dead_letters d \
         JOIN messages m ON m.id = d.message_id AND m.org_id = d.org_id WHERE d.org_id = $1 AND d.id = $2",
    )
    .bind(org_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else {
        return Ok(Replay::NotFound);
    };
    if let Some(message_id) = r.try_get::<Option<String>, _>(0)? {
        return Ok(Replay::AlreadyReplayed { message_id });
    }
    let channel: String = r.try_get(1)?;
    // The copy carries the original's files.
    let original: String = r.try_get(6)?;
    let attachments = super::media::outbound_attachments(conn, org_id, &original).await?;
    let req = NewOutbound {
        channel: Channel::parse(&channel).ok_or(StoreError::Corrupt {
            what: "messages.channel",
            detail: channel.clone(),
        })?,
        from: r.try_get(2)?,
        to: r.try_get(3)?,
        body: r.try_get(4)?,
        content: r.try_get(5)?,
        // The operator asked for this copy; a provider that still refuses it (a closed
        // WhatsApp window) fails it again, permanently, into a new dead letter.
        needs_service_window: false,
        idempotency_key: None,
        bulk: false,
        daily_cap: None,
        attachments,
    };
    let message_id = match create_outbound(conn, org_id, &req, now).await? {
        Created::Queued { id, .. } => id,
        Created::OptedOut => return Ok(Replay::OptedOut),
        Created::Existing { id, .. } => id,
        Created::KeyReused | Created::OutsideWindow { .. } | Created::DayLimitReached { .. } => {
            unreachable!("a replay carries no idempotency key, skips the window and has no cap")
        }
    };
    sqlx::query("UPDATE dead_letters SET replayed_at = $1, replay_message_id = $2 WHERE id = $3 AND org_id = $4")
        .bind(now)
        .bind(&message_id)
        .bind(id)
        .bind(org_id)
        .execute(&mut *conn)
        .await?;
    Ok(Replay::Queued { message_id })
}
