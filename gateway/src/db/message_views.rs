//! The reads the API serves about messages: a message with its full delivery history.

use super::StoreError;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

/// A message with its delivery history, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// Its id.
    pub id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Its channel.
    pub channel: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Sender address.
    pub from: String,
    /// Recipient address.
    pub to: String,
    /// The text (for non-text messages, a readable rendering).
    pub body: String,
    /// Email: the subject (also in `content`, with the threading ids and the thread).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `text`, `image`, `location`, `reaction`, `template`, …
    pub kind: String,
    /// The structured part of non-text messages.
    pub content: Option<serde_json::Value>,
    /// Our id of the message this one replies or reacts to, when we have it.
    pub reply_to_message_id: Option<String>,
    /// Attachments.
    pub media: serde_json::Value,
    /// `received` for inbound; the delivery state for outbound.
    pub status: String,
    /// The provider's id.
    pub provider_message_id: Option<String>,
    /// The provider's last error code.
    pub error_code: Option<String>,
    /// The last error we saw.
    pub error_message: Option<String>,
    /// Send attempts so far.
    pub attempts: i64,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Every delivery event, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// One row of delivery history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// `create`, `dispatch`, `accepted`, `report`, `retry_scheduled`, `fail`.
    pub event: String,
    /// For a provider report, the state it reported.
    pub reported: Option<String>,
    /// The message's state after it.
    pub state: String,
    /// Whether it moved the state.
    pub applied: bool,
    /// The provider's own status word.
    pub provider_status: Option<String>,
    /// The provider's error code.
    pub error_code: Option<String>,
    /// The provider's error text.
    pub error_message: Option<String>,
    /// What else the provider reported (pricing, conversation).
    pub details: Option<serde_json::Value>,
    /// `api`, `worker` or `provider_callback`.
    pub source: String,
    /// When, Unix ms.
    pub at: i64,
}

const MESSAGE_COLUMNS: &str =
    "id, conversation_id, channel, direction, from_addr, to_addr, body, media, \
     status, provider_message_id, error_code, error_message, attempts, created_at, \
     kind, content, reply_to_message_id";

/// A conversation's messages with their histories, oldest first.
pub async fn for_conversation(
    pool: &AnyPool,
    org_id: &str,
    conversation_id: &str,
    limit: i64,
) -> Result<Vec<MessageView>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE org_id = $1 AND conversation_id = $2 \
         ORDER BY created_at, id LIMIT $3"
    )))
    .bind(org_id)
    .bind(conversation_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut view = view_from_row(&r)?;
        view.history = history(pool, org_id, &view.id).await?;
        out.push(view);
    }
    Ok(out)
}

/// One message by id, with its history.
pub async fn get(
    pool: &AnyPool,
    org_id: &str,
    id: &str,
) -> Result<Option<MessageView>, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE org_id = $1 AND id = $2"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let mut view = view_from_row(&r)?;
    view.history = history(pool, org_id, &view.id).await?;
    Ok(Some(view))
}

fn json_column(what: &'static str, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn view_from_row(r: &AnyRow) -> Result<MessageView, StoreError> {
    let media: String = r.try_get(7)?;
    let content: Option<String> = r.try_get(15)?;
    let content = content
        .map(|c| json_column("messages.content", &c))
        .transpose()?;
    let subject = content
        .as_ref()
        .filter(|c| c.get("type").and_then(|t| t.as_str()) == Some("email"))
        .and_then(|c| c.get("subject"))
        .and_then(|s| s.as_str())
        .map(str::to_string);
    Ok(MessageView {
        id: r.try_get(0)?,
        conversation_id: r.try_get(1)?,
        channel: r.try_get(2)?,
        direction: r.try_get(3)?,
        from: r.try_get(4)?,
        to: r.try_get(5)?,
        body: r.try_get(6)?,
        kind: r.try_get(14)?,
        subject,
        content,
        reply_to_message_id: r.try_get(16)?,
        media: json_column("messages.media", &media)?,
        status: r.try_get(8)?,
        provider_message_id: r.try_get(9)?,
        error_code: r.try_get(10)?,
        error_message: r.try_get(11)?,
        attempts: r.try_get(12)?,
        created_at: r.try_get(13)?,
        history: Vec::new(),
    })
}

async fn history(pool: &AnyPool, org_id: &str, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT event, reported, state, applied, provider_status, error_code, source, at, \
         error_message, details \
         FROM message_history WHERE org_id = $1 AND message_id = $2 ORDER BY id",
    )
    .bind(org_id)
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|h| {
            let details: Option<String> = h.try_get(9)?;
            Ok(HistoryEntry {
                event: h.try_get(0)?,
                reported: h.try_get(1)?,
                state: h.try_get(2)?,
                applied: h.try_get::<i64, _>(3)? != 0,
                provider_status: h.try_get(4)?,
                error_code: h.try_get(5)?,
                error_message: h.try_get(8)?,
                details: details
                    .map(|d| json_column("message_history.details", &d))
                    .transpose()?,
                source: h.try_get(6)?,
                at: h.try_get(7)?,
            })
        })
        .collect()
}
