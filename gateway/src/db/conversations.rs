//! Contacts (with one identity per channel address) and their one conversation, plus the
//! conversation listing the API serves.

use super::outbox::{self, NewEvent};
use super::{new_id, StoreError};
use serde_json::json;
use sqlx::{AnyConnection, AnyPool, Row};
use state_machines::conversation::{self, ConversationEffect};
use state_machines::{Channel, ConversationEvent, ConversationState};

/// The contact and conversation a message belongs to.
#[derive(Debug, Clone)]
pub struct Thread {
    /// The contact.
    pub contact_id: String,
    /// The conversation.
    pub conversation_id: String,
}

/// Finds or creates the contact behind `(channel, address)` and its conversation, then
/// applies `event` to the conversation machine (appending its events). Runs in the caller's
/// transaction.
pub async fn touch(
    conn: &mut AnyConnection,
    org_id: &str,
    channel: Channel,
    address: &str,
    event: ConversationEvent,
    now: i64,
) -> Result<Thread, StoreError> {
    let contact_id = contact_for(conn, org_id, channel, address, now).await?;
    let existing =
        sqlx::query("SELECT id, status FROM conversations WHERE org_id = $1 AND contact_id = $2")
            .bind(org_id)
            .bind(&contact_id)
            .fetch_optional(&mut *conn)
            .await?;
    let (conversation_id, state) = match existing {
        Some(row) => {
            let status: String = row.try_get(1)?;
            let state = ConversationState::parse(&status).ok_or_else(|| StoreError::Corrupt {
                what: "conversations.status",
                detail: status.clone(),
            })?;
            (row.try_get::<String, _>(0)?, state)
        }
        None => {
            let id = new_id();
            sqlx::query(
                "INSERT INTO conversations (id, org_id, contact_id, status, created_at, updated_at, last_message_at) \
                 VALUES ($1, $2, $3, 'open', $4, $4, $4)",
            )
            .bind(&id)
            .bind(org_id)
            .bind(&contact_id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            outbox::append(conn, created_event(org_id, &id, &contact_id), now).await?;
            (id, ConversationState::Open)
        }
    };
    // The conversation machine refuses nothing that inbound or outbound messages do.
    let (next, effects) = conversation::step(state, event).unwrap_or((state, Vec::new()));
    sqlx::query("UPDATE conversations SET status = $1, updated_at = $2, last_message_at = $2 WHERE id = $3 AND org_id = $4")
        .bind(next.as_str())
        .bind(now)
        .bind(&conversation_id)
        .bind(org_id)
        .execute(&mut *conn)
        .await?;
    for effect in effects {
        if let ConversationEffect::Changed { from, to } = effect {
            status_changed(conn, org_id, &conversation_id, from, to, event, now).await?;
        }
    }
    Ok(Thread {
        contact_id,
        conversation_id,
    })
}

/// `dartwing.conversation.created.v1` of a new, open conversation: the one place it is
/// shaped (`threads_bulk::create` appends the same).
pub(super) fn created_event<'a>(
    org_id: &'a str,
    conversation_id: &'a str,
    contact_id: &str,
) -> NewEvent<'a> {
    NewEvent {
        org_id,
        partition_key: conversation_id,
        event_type: "dartwing.conversation.created.v1",
        subject: format!("conversations/{conversation_id}"),
        data: json!({"conversation_id": conversation_id, "contact_id": contact_id, "status": "open"}),
    }
}

/// Appends `dartwing.conversation.status_changed.v1`: the one place that event is shaped.
async fn status_changed(
    conn: &mut AnyConnection,
    org_id: &str,
    conversation_id: &str,
    from: ConversationState,
    to: ConversationState,
    cause: ConversationEvent,
    now: i64,
) -> Result<(), StoreError> {
    outbox::append(
        conn,
        NewEvent {
            org_id,
            partition_key: conversation_id,
            event_type: "dartwing.conversation.status_changed.v1",
            subject: format!("conversations/{conversation_id}"),
            data: json!({"conversation_id": conversation_id, "from": from.as_str(), "to": to.as_str(), "cause": cause.name()}),
        },
        now,
    )
    .await
}

async fn contact_for(
    conn: &mut AnyConnection,
    org_id: &str,
    channel: Channel,
    address: &str,
    now: i64,
) -> Result<String, StoreError> {
    let find = "SELECT contact_id FROM contact_identities WHERE org_id = $1 AND channel = $2 AND address = $3";
    if let Some(row) = sqlx::query(find)
        .bind(org_id)
        .bind(channel.as_str())
        .bind(address)
        .fetch_optional(&mut *conn)
        .await?
    {
        return Ok(row.try_get(0)?);
    }
    let id = new_id();
    sqlx::query("INSERT INTO contacts (id, org_id, created_at) VALUES ($1, $2, $3)")
        .bind(&id)
        .bind(org_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO contact_identities (org_id, channel, address, contact_id, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(org_id)
    .bind(channel.as_str())
    .bind(address)
    .bind(&id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

/// A conversation as the API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConversationView {
    /// Its id.
    pub id: String,
    /// The contact.
    pub contact_id: String,
    /// `open`, `pending` or `resolved`.
    pub status: String,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Last message, Unix ms.
    pub last_message_at: i64,
    /// The contact's channel identities.
    pub identities: Vec<Identity>,
}

/// One way to reach a contact.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Identity {
    /// The channel.
    pub channel: String,
    /// The address on it.
    pub address: String,
    /// When the provider's customer-service window to this address closes (or closed),
    /// Unix ms; absent on channels without one (WhatsApp has one: 24 h after the
    /// customer's last message; free-form replies need it open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_window_closes_at: Option<i64>,
}

/// An org's conversations, most recent first.
pub async fn list(
    pool: &AnyPool,
    org_id: &str,
    limit: i64,
) -> Result<Vec<ConversationView>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, contact_id, status, created_at, last_message_at FROM conversations \
         WHERE org_id = $1 ORDER BY last_message_at DESC, id DESC LIMIT $2",
    )
    .bind(org_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let contact_id: String = r.try_get(1)?;
        out.push(ConversationView {
            id: r.try_get(0)?,
            identities: identities(pool, org_id, &contact_id).await?,
            contact_id,
            status: r.try_get(2)?,
            created_at: r.try_get(3)?,
            last_message_at: r.try_get(4)?,
        });
    }
    Ok(out)
}

/// A contact's identities, by channel and address.
pub async fn identities(
    pool: &AnyPool,
    org_id: &str,
    contact_id: &str,
) -> Result<Vec<Identity>, StoreError> {
    let rows = sqlx::query(
        "SELECT i.channel, i.address, w.closes_at FROM contact_identities i \
         LEFT JOIN service_windows w ON w.org_id = i.org_id AND w.channel = i.channel \
         AND w.address = i.address \
         WHERE i.org_id = $1 AND i.contact_id = $2 ORDER BY i.channel, i.address",
    )
    .bind(org_id)
    .bind(contact_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|i| {
            Ok(Identity {
                channel: i.try_get(0)?,
                address: i.try_get(1)?,
                service_window_closes_at: i.try_get(2)?,
            })
        })
        .collect()
}

/// Whether a conversation exists in this org.
pub async fn exists(pool: &AnyPool, org_id: &str, id: &str) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT 1 FROM conversations WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some())
}

/// What an agent's status change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    /// Applied: the new state.
    Changed(ConversationState),
    /// The conversation machine refuses this event in the current state.
    Refused(state_machines::InvalidTransition),
    /// No such conversation in this org.
    NotFound,
}

/// Applies an agent's event (`MarkPending`, `Resolve`, `Reopen`) to a conversation.
pub async fn change_status(
    conn: &mut AnyConnection,
    org_id: &str,
    id: &str,
    event: ConversationEvent,
    now: i64,
) -> Result<StatusChange, StoreError> {
    let row = sqlx::query("SELECT status FROM conversations WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(StatusChange::NotFound);
    };
    let status: String = row.try_get(0)?;
    let state = ConversationState::parse(&status).ok_or_else(|| StoreError::Corrupt {
        what: "conversations.status",
        detail: status.clone(),
    })?;
    let next = match conversation::step(state, event) {
        Ok((next, _)) => next,
        Err(e) => return Ok(StatusChange::Refused(e)),
    };
    sqlx::query(
        "UPDATE conversations SET status = $1, updated_at = $2 WHERE id = $3 AND org_id = $4",
    )
    .bind(next.as_str())
    .bind(now)
    .bind(id)
    .bind(org_id)
    .execute(&mut *conn)
    .await?;
    status_changed(conn, org_id, id, state, next, event, now).await?;
    Ok(StatusChange::Changed(next))
}
