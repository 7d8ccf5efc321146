//! Inbound path inside the group-commit transaction: deduplicate on the provider's message id,
//! upsert contact and conversation, insert the message, record STOP/START, append events.
//! Status callbacks land here too: they move the delivery machine of the message they name.

use super::conversations::touch;
use super::messages::{apply_delivery, Applied};
use super::outbox::{self, NewEvent};
use super::{new_id, StoreError};
use channels::sms::keywords::{self, Keyword};
use channels::{InboundMessage, StatusUpdate};
use serde_json::json;
use sqlx::{AnyConnection, Row};
use state_machines::{Channel, ConversationEvent, DeliveryEvent, DeliveryState};

/// What storing an inbound message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// Our id of the message (the existing one for a duplicate).
    pub message_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// True when the provider sent this message before: nothing was changed.
    pub duplicate: bool,
    /// The keyword it carried, if any.
    pub keyword: Option<Keyword>,
}

/// Stores one inbound message (idempotent on the provider's id).
pub async fn message(
    conn: &mut AnyConnection,
    org_id: &str,
    msg: &InboundMessage,
    now: i64,
) -> Result<Ingested, StoreError> {
    let existing = sqlx::query(
        "SELECT id, conversation_id FROM messages WHERE org_id = $1 AND channel = $2 AND provider_message_id = $3",
    )
    .bind(org_id)
    .bind(msg.channel.as_str())
    .bind(&msg.provider_message_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = existing {
        return Ok(Ingested {
            message_id: row.try_get(0)?,
            conversation_id: row.try_get(1)?,
            duplicate: true,
            keyword: None,
        });
    }
    let thread = touch(
        conn,
        org_id,
        msg.channel,
        &msg.from,
        ConversationEvent::Inbound,
        now,
    )
    .await?;
    let id = new_id();
    let media = json!(msg
        .media
        .iter()
        .map(|(url, kind)| json!({"url": url, "content_type": kind}))
        .collect::<Vec<_>>());
    sqlx::query(
        "INSERT INTO messages (id, org_id, conversation_id, contact_id, channel, direction, \
         provider_message_id, from_addr, to_addr, body, media, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'inbound', $6, $7, $8, $9, $10, 'received', $11, $11)",
    )
    .bind(&id)
    .bind(org_id)
    .bind(&thread.conversation_id)
    .bind(&thread.contact_id)
    .bind(msg.channel.as_str())
    .bind(&msg.provider_message_id)
    .bind(&msg.from)
    .bind(&msg.to)
    .bind(&msg.body)
    .bind(media.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let keyword = if msg.channel == Channel::Sms {
        keywords::classify(&msg.body)
    } else {
        None
    };
    outbox::append(
        conn,
        NewEvent {
            org_id,
            partition_key: &thread.conversation_id,
            event_type: "dartwing.message.received.v1",
            subject: format!("messages/{id}"),
            data: json!({
                "message_id": id,
                "conversation_id": thread.conversation_id,
                "contact_id": thread.contact_id,
                "channel": msg.channel.as_str(),
                "direction": "inbound",
                "provider_message_id": msg.provider_message_id,
                "from": msg.from,
                "to": msg.to,
                "body": msg.body,
                "media": media,
                "keyword": keyword.map(Keyword::as_str),
            }),
        },
        now,
    )
    .await?;
    if let Some(kw @ (Keyword::OptOut | Keyword::OptIn)) = keyword {
        record_consent(conn, org_id, msg, &thread.conversation_id, kw, now).await?;
    }
    Ok(Ingested {
        message_id: id,
        conversation_id: thread.conversation_id,
        duplicate: false,
        keyword,
    })
}

async fn record_consent(
    conn: &mut AnyConnection,
    org_id: &str,
    msg: &InboundMessage,
    conversation_id: &str,
    kw: Keyword,
    now: i64,
) -> Result<(), StoreError> {
    let (sql, event_type) = if kw == Keyword::OptOut {
        (
            "INSERT INTO opt_outs (org_id, channel, address, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (org_id, channel, address) DO NOTHING",
            "dartwing.contact.opted_out.v1",
        )
    } else {
        (
            "DELETE FROM opt_outs WHERE org_id = $1 AND channel = $2 AND address = $3",
            "dartwing.contact.opted_in.v1",
        )
    };
    let mut query = sqlx::query(sql)
        .bind(org_id)
        .bind(msg.channel.as_str())
        .bind(&msg.from);
    if kw == Keyword::OptOut {
        query = query.bind(now);
    }
    let changed = query.execute(&mut *conn).await?.rows_affected();
    if changed > 0 {
        outbox::append(
            conn,
            NewEvent {
                org_id,
                partition_key: conversation_id,
                event_type,
                subject: format!("conversations/{conversation_id}"),
                data: json!({"channel": msg.channel.as_str(), "address": msg.from, "conversation_id": conversation_id}),
            },
            now,
        )
        .await?;
    }
    Ok(())
}

/// What a status callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusOutcome {
    /// It named a message of ours; `applied` tells whether the state moved.
    Recorded {
        /// What the delivery machine did.
        applied: Applied,
        /// When the message was created, Unix ms (for the delivery-time metric).
        created_at: i64,
    },
    /// No message of this org has that provider id.
    UnknownMessage,
}

/// Applies one provider status callback to the message it names.
pub async fn status(
    conn: &mut AnyConnection,
    org_id: &str,
    channel: Channel,
    update: &StatusUpdate,
    now: i64,
) -> Result<StatusOutcome, StoreError> {
    let row = sqlx::query(
        "SELECT id, status, created_at FROM messages WHERE org_id = $1 AND channel = $2 AND provider_message_id = $3 \
         AND direction = 'outbound'",
    )
    .bind(org_id)
    .bind(channel.as_str())
    .bind(&update.provider_message_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(StatusOutcome::UnknownMessage);
    };
    let id: String = row.try_get(0)?;
    let status: String = row.try_get(1)?;
    let state = DeliveryState::parse(&status).ok_or_else(|| StoreError::Corrupt {
        what: "messages.status",
        detail: status.clone(),
    })?;
    let applied = apply_delivery(
        conn,
        org_id,
        &id,
        state,
        DeliveryEvent::Report(update.state),
        "provider_callback",
        Some(&update.provider_status),
        update.error_code.as_deref(),
        now,
    )
    .await?;
    Ok(StatusOutcome::Recorded {
        applied,
        created_at: row.try_get(2)?,
    })
}
