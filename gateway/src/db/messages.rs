//! Messages: the outbound lifecycle (create → claim → accepted / retry / failed) and the
//! delivery history every transition writes. The reads the API serves are in `message_views`.

use super::conversations::touch;
use super::outbox::{self, NewEvent};
use super::{new_id, StoreError};
use serde_json::json;
use sqlx::{AnyConnection, Row};
use state_machines::delivery::{self, DeliveryEffect};
use state_machines::{Channel, ConversationEvent, DeliveryEvent, DeliveryState};

/// The result of one delivery-machine step as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The state before.
    pub from: DeliveryState,
    /// The state after (equal to `from` when the event only went to history).
    pub to: DeliveryState,
}

impl Applied {
    /// Whether the state moved.
    pub fn changed(&self) -> bool {
        self.from != self.to
    }
}

/// What a provider (or the worker) said along with a delivery event, kept in history.
#[derive(Debug, Clone, Copy, Default)]
pub struct Said<'a> {
    /// The provider's own status word.
    pub provider_status: Option<&'a str>,
    /// The provider's error code.
    pub error_code: Option<&'a str>,
    /// The provider's error text.
    pub error_message: Option<&'a str>,
    /// Anything else worth keeping (pricing, conversation), as JSON.
    pub details: Option<&'a str>,
}

/// Runs the delivery machine for one event: history row always; state, error and a
/// `status_changed` event when it moved. An event the table refuses is recorded as refused.
#[allow(clippy::too_many_arguments)]
pub async fn apply_delivery(
    conn: &mut AnyConnection,
    org_id: &str,
    message_id: &str,
    state: DeliveryState,
    event: DeliveryEvent,
    source: &str,
    said: Said<'_>,
    now: i64,
) -> Result<Applied, StoreError> {
    let Said {
        provider_status,
        error_code,
        error_message,
        details,
    } = said;
    let (next, effects) = delivery::step(state, event).unwrap_or((state, Vec::new()));
    let changed = effects
        .iter()
        .any(|e| matches!(e, DeliveryEffect::Changed { .. }));
    let reported = match event {
        DeliveryEvent::Report(s) => Some(s.as_str()),
        _ => None,
    };
    sqlx::query(
        "INSERT INTO message_history (org_id, message_id, event, reported, state, applied, \
         provider_status, error_code, error_message, details, source, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(org_id)
    .bind(message_id)
    .bind(event.name())
    .bind(reported)
    .bind(next.as_str())
    .bind(changed as i64)
    .bind(provider_status)
    .bind(error_code)
    .bind(error_message)
    .bind(details)
    .bind(source)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if changed && next == DeliveryState::Failed {
        super::broadcast_run::on_message_failed(conn, message_id, now).await?;
    }
    if changed {
        let row = sqlx::query(
            "UPDATE messages SET status = $1, error_code = COALESCE($2, error_code), \
             error_message = COALESCE($6, error_message), updated_at = $3 \
             WHERE id = $4 AND org_id = $5 RETURNING conversation_id, channel, created_at",
        )
        .bind(next.as_str())
        .bind(error_code)
        .bind(now)
        .bind(message_id)
        .bind(org_id)
        .bind(error_message)
        .fetch_one(&mut *conn)
        .await?;
        let conversation_id: String = row.try_get(0)?;
        let channel: String = row.try_get(1)?;
        let event = StatusChanged {
            org_id,
            message_id,
            conversation_id: &conversation_id,
            channel: &channel,
            from: state,
            to: next,
            provider_status,
            error_code,
            error_message,
            source,
        };
        outbox::append(conn, event.event(), now).await?;
    }
    Ok(Applied {
        from: state,
        to: next,
    })
}

/// A message's delivery step that moved its state: the one shape of
/// `dartwing.message.status_changed.v1`, whichever writer publishes it (one message at a
/// time here, in bulk in `db::sends`).
pub struct StatusChanged<'a> {
    pub org_id: &'a str,
    pub message_id: &'a str,
    pub conversation_id: &'a str,
    pub channel: &'a str,
    pub from: DeliveryState,
    pub to: DeliveryState,
    pub provider_status: Option<&'a str>,
    pub error_code: Option<&'a str>,
    pub error_message: Option<&'a str>,
    /// `worker`, `webhook`, `api`…
    pub source: &'a str,
}

impl<'a> StatusChanged<'a> {
    /// The event, keyed by the conversation.
    pub fn event(self) -> NewEvent<'a> {
        NewEvent {
            org_id: self.org_id,
            partition_key: self.conversation_id,
            event_type: "dartwing.message.status_changed.v1",
            subject: format!("messages/{}", self.message_id),
            data: json!({
                "message_id": self.message_id,
                "conversation_id": self.conversation_id,
                "channel": self.channel,
                "from": self.from.as_str(),
                "to": self.to.as_str(),
                "provider_status": self.provider_status,
                "error_code": self.error_code,
                "error_message": self.error_message,
                "source": self.source,
            }),
        }
    }
}

/// A send request as the API validated it.
#[derive(Debug, Clone)]
pub struct NewOutbound {
    /// The channel.
    pub channel: Channel,
    /// Our sending address (the account's number).
    pub from: String,
    /// The recipient.
    pub to: String,
    /// The text.
    pub body: String,
    /// The structured content (JSON) the plugin accepted, for channels that have it.
    pub content: Option<String>,
    /// Whether the provider accepts it only inside the recipient's customer-service window.
    pub needs_service_window: bool,
    /// The client's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// A broadcast's message: the send worker takes it after every message a person waits
    /// on, and leaves part of its capacity to those (see [`claim_due`]).
    pub bulk: bool,
    /// The org's `messages_per_day`, when this message counts against it (sends through the
    /// API and the inbox): creation takes one of the day's messages, or is refused.
    pub daily_cap: Option<i64>,
    /// Files to send with it (email), stored as its media in the same transaction.
    pub attachments: Vec<channels::OutboundAttachment>,
}

/// What creating an outbound message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Stored as `queued`.
    Queued {
        /// Its id.
        id: String,
        /// Its conversation.
        conversation_id: String,
    },
    /// The same idempotency key was used before with the same request: that message's id.
    Existing {
        /// Its id.
        id: String,
        /// Its conversation.
        conversation_id: String,
    },
    /// The same idempotency key was used before with a different request.
    KeyReused,
    /// The recipient opted out of this channel.
    OptedOut,
    /// A free-form message to a recipient whose customer-service window is closed.
    OutsideWindow {
        /// When the window closed, Unix ms; `None` if the recipient never wrote.
        closed_at: Option<i64>,
    },
    /// The org's `messages_per_day` is used up for today.
    DayLimitReached {
        /// The cap.
        cap: i64,
    },
}

/// Stores a new outbound message as `queued`, due now.
pub async fn create_outbound(
    conn: &mut AnyConnection,
    org_id: &str,
    req: &NewOutbound,
    now: i64,
) -> Result<Created, StoreError> {
    create_outbound_in(conn, org_id, req, now, None).await
}

/// [`create_outbound`], with its history row and `message.queued` event left to `deferred`
/// when given: a broadcast's dispatch round writes those for all its rungs at its end, in
/// multi-row statements ([`super::sends::Deferred`]), in the same transaction.
pub async fn create_outbound_in(
    conn: &mut AnyConnection,
    org_id: &str,
    req: &NewOutbound,
    now: i64,
    deferred: Option<&mut super::sends::Deferred>,
) -> Result<Created, StoreError> {
    if let Some(key) = &req.idempotency_key {
        let row = sqlx::query(
            "SELECT id, conversation_id, channel, to_addr, body FROM messages WHERE org_id = $1 AND idempotency_key = $2",
        )
        .bind(org_id)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(r) = row {
            let same = r.try_get::<String, _>(2)? == req.channel.as_str()
                && r.try_get::<String, _>(3)? == req.to
                && r.try_get::<String, _>(4)? == req.body;
            return Ok(if same {
                Created::Existing {
                    id: r.try_get(0)?,
                    conversation_id: r.try_get(1)?,
                }
            } else {
                Created::KeyReused
            });
        }
    }
    let opted_out =
        sqlx::query("SELECT 1 FROM opt_outs WHERE org_id = $1 AND channel = $2 AND address = $3")
            .bind(org_id)
            .bind(req.channel.as_str())
            .bind(&req.to)
            .fetch_optional(&mut *conn)
            .await?
            .is_some();
    if opted_out {
        return Ok(Created::OptedOut);
    }
    if req.needs_service_window {
        let closes_at = super::windows::closes_at(conn, org_id, req.channel, &req.to).await?;
        if closes_at.is_none_or(|t| t <= now) {
            return Ok(Created::OutsideWindow {
                closed_at: closes_at,
            });
        }
    }
    if let Some(cap) = req.daily_cap {
        if !super::org_settings::take_message(conn, org_id, cap, now).await? {
            return Ok(Created::DayLimitReached { cap });
        }
    }
    let thread = touch(
        conn,
        org_id,
        req.channel,
        &req.to,
        ConversationEvent::Outbound,
        now,
    )
    .await?;
    let id = new_id();
    let sql = format!(
        "INSERT INTO messages ({NEW_OUTBOUND_COLUMNS}) VALUES {}",
        super::sql::numbered_rows(NEW_OUTBOUND_ROW, 1, 2)
    );
    let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
    bind_new_outbound(q, org_id, &id, &thread, req)
        .execute(&mut *conn)
        .await?;
    for (i, a) in req.attachments.iter().enumerate() {
        let reference = super::media::outbound_reference(i);
        let stored = super::media::Stored {
            content_type: &a.content_type,
            filename: &a.filename,
            reference: &reference,
            data: &a.data,
        };
        let keys = (org_id, id.as_str(), new_id());
        let at = (keys.0, keys.1, keys.2.as_str());
        super::media::insert_stored(conn, at, (req.channel.as_str(), "api"), &stored, now).await?;
    }
    let event = queued_event(org_id, &id, &thread, req);
    match deferred {
        Some(later) => later.created(org_id, &id, event),
        None => {
            sqlx::query(
                "INSERT INTO message_history (org_id, message_id, event, state, applied, source, at) \
                 VALUES ($1, $2, 'create', 'queued', 1, 'api', $3)",
            )
            .bind(org_id)
            .bind(&id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            outbox::append(conn, event, now).await?;
        }
    }
    Ok(Created::Queued {
        id,
        conversation_id: thread.conversation_id,
    })
}

/// The columns of a new outbound message, for [`NEW_OUTBOUND_ROW`] (one-at-a-time here, many at
/// once in [`super::outbound_bulk`]).
pub(super) const NEW_OUTBOUND_COLUMNS: &str = "id, org_id, conversation_id, contact_id, channel, \
     direction, from_addr, to_addr, body, media, status, next_attempt_at, idempotency_key, \
     created_at, updated_at, kind, content, priority";

/// One row of [`NEW_OUTBOUND_COLUMNS`] for `numbered_rows`, `$1` the time; its `?`s are bound by
/// [`bind_new_outbound`].
pub(super) const NEW_OUTBOUND_ROW: &str =
    "(?, ?, ?, ?, ?, 'outbound', ?, ?, ?, '[]', 'queued', $1, ?, $1, $1, ?, ?, ?)";

/// Binds one row of [`NEW_OUTBOUND_ROW`]: a queued message `id` of `req` in `thread`.
pub(super) fn bind_new_outbound<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    org_id: &'q str,
    id: &'q str,
    thread: &'q super::conversations::Thread,
    req: &'q NewOutbound,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    q.bind(id)
        .bind(org_id)
        .bind(&thread.conversation_id)
        .bind(&thread.contact_id)
        .bind(req.channel.as_str())
        .bind(&req.from)
        .bind(&req.to)
        .bind(&req.body)
        .bind(&req.idempotency_key)
        .bind(outbound_kind(req.content.as_deref()))
        .bind(&req.content)
        .bind(req.bulk as i64)
}

/// `dartwing.message.queued.v1` of a new outbound message: the one place it is shaped.
pub(super) fn queued_event<'a>(
    org_id: &'a str,
    id: &str,
    thread: &'a super::conversations::Thread,
    req: &NewOutbound,
) -> NewEvent<'a> {
    NewEvent {
        org_id,
        partition_key: &thread.conversation_id,
        event_type: "dartwing.message.queued.v1",
        subject: format!("messages/{id}"),
        data: json!({
            "message_id": id,
            "conversation_id": thread.conversation_id,
            "contact_id": thread.contact_id,
            "channel": req.channel.as_str(),
            "direction": "outbound",
            "from": req.from,
            "to": req.to,
            "body": req.body,
            "kind": outbound_kind(req.content.as_deref()),
        }),
    }
}

/// The kind of an outbound message: its content's `type`, or `text`.
fn outbound_kind(content: Option<&str>) -> String {
    content
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_else(|| "text".into())
}

/// A message a worker claimed for sending.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Its id.
    pub id: String,
    /// The organization.
    pub org_id: String,
    /// The channel.
    pub channel: Channel,
    /// The recipient.
    pub to: String,
    /// The text.
    pub body: String,
    /// The structured content, JSON.
    pub content: Option<String>,
    /// Attempts made before this one.
    pub attempts: i64,
    /// When it was created, Unix ms.
    pub created_at: i64,
    /// A broadcast's message.
    pub bulk: bool,
    /// The recipient opted out of the channel after the message was queued (read at the
    /// claim, which comes just before the send).
    pub opted_out: bool,
}

async fn current_state(
    conn: &mut AnyConnection,
    org_id: &str,
    id: &str,
) -> Result<DeliveryState, StoreError> {
    let row = sqlx::query("SELECT status FROM messages WHERE id = $1 AND org_id = $2")
        .bind(id)
        .bind(org_id)
        .fetch_one(&mut *conn)
        .await?;
    let s: String = row.try_get(0)?;
    DeliveryState::parse(&s).ok_or(StoreError::Corrupt {
        what: "messages.status",
        detail: s,
    })
}

/// The provider accepted the message.
pub async fn record_accepted(
    conn: &mut AnyConnection,
    org_id: &str,
    id: &str,
    provider_message_id: &str,
    provider_status: &str,
    now: i64,
) -> Result<Applied, StoreError> {
    sqlx::query("UPDATE messages SET provider_message_id = $1, next_attempt_at = NULL, error_message = NULL WHERE id = $2 AND org_id = $3")
        .bind(provider_message_id)
        .bind(id)
        .bind(org_id)
        .execute(&mut *conn)
        .await?;
    let state = current_state(conn, org_id, id).await?;
    let applied = apply_delivery(
        conn,
        org_id,
        id,
        state,
        DeliveryEvent::Accepted,
        "worker",
        Said {
            provider_status: Some(provider_status),
            ..Said::default()
        },
        now,
    )
    .await?;
    // Reports that beat this acceptance to the database were kept: apply them now, in the
    // order they arrived.
    let mut to = applied.to;
    for update in super::pending::take(conn, org_id, id, provider_message_id).await? {
        to = super::ingest::apply_report(conn, org_id, id, to, &update, now)
            .await?
            .to;
    }
    Ok(Applied {
        from: applied.from,
        to,
    })
}

/// A transient failure: try again at `retry_at` (history keeps the error).
pub async fn record_retry(
    conn: &mut AnyConnection,
    org_id: &str,
    id: &str,
    error: &str,
    error_code: Option<&str>,
    retry_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE messages SET next_attempt_at = $1, error_message = $2, updated_at = $3 WHERE id = $4 AND org_id = $5")
        .bind(retry_at)
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(org_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO message_history (org_id, message_id, event, state, applied, error_code, source, at) \
         VALUES ($1, $2, 'retry_scheduled', 'sending', 0, $3, 'worker', $4)",
    )
    .bind(org_id)
    .bind(id)
    .bind(error_code)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Puts a claimed message back without counting an attempt (circuit open).
pub async fn defer(conn: &mut AnyConnection, id: &str, until: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE messages SET next_attempt_at = $1, attempts = attempts - 1 WHERE id = $2")
        .bind(until)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A permanent failure or exhausted retries: `failed`, and a dead letter to replay from.
#[allow(clippy::too_many_arguments)]
pub async fn record_failure(
    conn: &mut AnyConnection,
    org_id: &str,
    id: &str,
    channel: Channel,
    error: &str,
    error_code: Option<&str>,
    attempts: i64,
    now: i64,
) -> Result<String, StoreError> {
    sqlx::query("UPDATE messages SET next_attempt_at = NULL, error_message = $1 WHERE id = $2 AND org_id = $3")
        .bind(error)
        .bind(id)
        .bind(org_id)
        .execute(&mut *conn)
        .await?;
    let state = current_state(conn, org_id, id).await?;
    apply_delivery(
        conn,
        org_id,
        id,
        state,
        DeliveryEvent::Fail,
        "worker",
        Said {
            error_code,
            error_message: Some(error),
            ..Said::default()
        },
        now,
    )
    .await?;
    super::dead_letters::insert(conn, org_id, id, channel, error, error_code, attempts, now).await
}
