//! Inbound path inside the group-commit transaction: deduplicate on the provider's message id,
//! upsert contact and conversation, insert the message (with the message it replies to, its
//! attachments to download, the customer-service window it opens), record STOP/START as the
//! plugin classified them, append events. Status callbacks land here too: they move the
//! delivery machine of the message they name, or wait in `pending_statuses` for it.

use super::conversations::{touch, Thread};
use super::messages::{apply_delivery, Applied, Said};
use super::outbox::{self, NewEvent};
use super::{new_id, StoreError};
use channels::sms::keywords::Keyword;
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
    /// Whether it has attachments waiting for the media worker.
    pub media_pending: bool,
}

/// Stores one inbound message (idempotent on the provider's id) that `provider` received.
pub async fn message(
    conn: &mut AnyConnection,
    org_id: &str,
    provider: &str,
    msg: &InboundMessage,
    now: i64,
) -> Result<Ingested, StoreError> {
    let existing = sqlx::query(
        "SELECT id, conversation_id FROM messages WHERE org_id = $1 AND channel = $2 AND provider_message_id = $3 \
         AND direction = 'inbound'",
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
            media_pending: false,
        });
    }
    // An automatic message (out-of-office, bulk mail) is kept but reopens nothing.
    let event = if msg.kind == channels::AUTO_REPLY_KIND {
        ConversationEvent::AutoReply
    } else {
        ConversationEvent::Inbound
    };
    let thread = touch(conn, org_id, msg.channel, &msg.from, event, now).await?;
    let id = new_id();
    // Attachments to download get their ids now (the message lists them); their rows go in
    // after the message's.
    let mut media = Vec::with_capacity(msg.media.len());
    let mut to_fetch = Vec::new();
    for m in &msg.media {
        let mut shown = json!({"content_type": m.content_type, "caption": m.caption,
                               "filename": m.filename});
        if m.fetch {
            let media_id = new_id();
            shown["url"] = json!(format!("/api/v1/media/{media_id}"));
            shown["media_id"] = json!(media_id);
            to_fetch.push((media_id, m));
        } else {
            shown["url"] = json!(m.reference);
        }
        media.push(shown);
    }
    let media_pending = !to_fetch.is_empty();
    let media = serde_json::Value::Array(media);
    let reply_to_message_id = match &msg.reply_to {
        Some(pid) => sqlx::query(
            "SELECT id FROM messages WHERE org_id = $1 AND channel = $2 AND provider_message_id = $3 \
             ORDER BY direction LIMIT 1",
        )
        .bind(org_id)
        .bind(msg.channel.as_str())
        .bind(pid)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get::<String, _>(0))
        .transpose()?,
        None => None,
    };
    // Email threads live inside the contact's conversation: the thread is chosen here, in
    // the same transaction, once the conversation is known.
    let content = if msg.channel == Channel::Email {
        super::email_threads::assign_inbound(
            conn,
            org_id,
            &thread.conversation_id,
            &msg.provider_message_id,
            msg.content.as_ref(),
            now,
        )
        .await?
    } else {
        msg.content.clone()
    };
    let content_json = content.as_ref().map(|c| c.to_string());
    sqlx::query(
        "INSERT INTO messages (id, org_id, conversation_id, contact_id, channel, direction, \
         provider_message_id, from_addr, to_addr, body, media, status, created_at, updated_at, \
         kind, content, reply_to_provider_id, reply_to_message_id) \
         VALUES ($1, $2, $3, $4, $5, 'inbound', $6, $7, $8, $9, $10, 'received', $11, $11, \
         $12, $13, $14, $15)",
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
    .bind(&msg.kind)
    .bind(&content_json)
    .bind(&msg.reply_to)
    .bind(&reply_to_message_id)
    .execute(&mut *conn)
    .await?;
    for (media_id, m) in &to_fetch {
        let ids = (org_id, id.as_str(), media_id.as_str());
        super::media::insert(conn, ids, (msg.channel.as_str(), provider), m, now).await?;
    }
    let keyword = msg.keyword;
    if let Some(window) = msg.opens_window {
        let closes_at = now + window.as_millis() as i64;
        super::windows::open(conn, org_id, msg.channel, &msg.from, closes_at).await?;
    }
    let received = Received {
        id: &id,
        thread: &thread,
        media: &media,
        content: content.as_ref(),
        reply_to_message_id: reply_to_message_id.as_deref(),
    };
    outbox::append(conn, received.event(org_id, msg), now).await?;
    if let Some(kw @ (Keyword::OptOut | Keyword::OptIn)) = keyword {
        record_consent(conn, org_id, msg, &thread.conversation_id, kw, now).await?;
    }
    if matches!(msg.channel, Channel::Sms | Channel::Whatsapp) {
        let reply = super::broadcast_replies::InboundReply {
            channel: msg.channel,
            phone: &msg.from,
            body: &msg.body,
            content: msg.content.as_ref(),
            reply_to: reply_to_message_id.as_deref(),
            stop: keyword == Some(Keyword::OptOut),
        };
        super::broadcast_replies::on_inbound(conn, org_id, reply, now).await?;
    }
    Ok(Ingested {
        message_id: id,
        conversation_id: thread.conversation_id,
        duplicate: false,
        keyword,
        media_pending,
    })
}

/// A stored inbound message as its `dartwing.message.received.v1` event tells it; the one
/// place that event is shaped (the bulk path in `ingest_bulk` appends the same).
pub(super) struct Received<'a> {
    /// Our id of the message.
    pub id: &'a str,
    /// Its contact and conversation.
    pub thread: &'a Thread,
    /// The attachments as the message lists them.
    pub media: &'a serde_json::Value,
    /// The structured content as stored.
    pub content: Option<&'a serde_json::Value>,
    /// Our id of the message it replies to.
    pub reply_to_message_id: Option<&'a str>,
}

impl<'a> Received<'a> {
    /// The event.
    pub fn event(&self, org_id: &'a str, msg: &InboundMessage) -> NewEvent<'a> {
        let (id, thread) = (self.id, self.thread);
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
                "media": self.media,
                "kind": msg.kind,
                "content": self.content,
                "reply_to_message_id": self.reply_to_message_id,
                "reply_to_provider_id": msg.reply_to,
                "keyword": msg.keyword.map(Keyword::as_str),
            }),
        }
    }
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
    /// No message of this org has that provider id (yet): the report is kept and applied
    /// when a send is recorded as accepted under that id.
    Pending,
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
        super::pending::keep(conn, org_id, channel, update, now).await?;
        return Ok(StatusOutcome::Pending);
    };
    let id: String = row.try_get(0)?;
    let status: String = row.try_get(1)?;
    let state = DeliveryState::parse(&status).ok_or_else(|| StoreError::Corrupt {
        what: "messages.status",
        detail: status.clone(),
    })?;
    let applied = apply_report(conn, org_id, &id, state, update, now).await?;
    Ok(StatusOutcome::Recorded {
        applied,
        created_at: row.try_get(2)?,
    })
}

/// Runs one provider report through the delivery machine of message `id`.
pub async fn apply_report(
    conn: &mut AnyConnection,
    org_id: &str,
    id: &str,
    state: DeliveryState,
    update: &StatusUpdate,
    now: i64,
) -> Result<Applied, StoreError> {
    let details = update.details.as_ref().map(|d| d.to_string());
    apply_delivery(
        conn,
        org_id,
        id,
        state,
        DeliveryEvent::Report(update.state),
        "provider_callback",
        Said {
            provider_status: Some(&update.provider_status),
            error_code: update.error_code.as_deref(),
            error_message: update.error_message.as_deref(),
            details: details.as_deref(),
        },
        now,
    )
    .await
}
