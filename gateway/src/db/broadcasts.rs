//! Broadcasts in storage: created (with the audience in chunks), cancelled, and confirmed by
//! a recipient (replies that confirm are read in [`super::broadcast_replies`]); the engine's
//! expansion is in [`super::broadcast_expand`], its dispatch in
//! [`super::broadcast_run`], the reads the API serves in [`super::broadcast_views`].
//!
//! A recipient moves only through the `recipient` machine of `state-machines`, and every
//! move shifts the broadcast's counts (`n_<state>`) in the same transaction, so the counts
//! the API shows are exact, not sampled.

use super::outbox::{self, NewEvent};
use super::{is_postgres, new_id, StoreError};
use broadcast::{Recipient, Spec};
use serde_json::json;
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use state_machines::recipient::{self, RecipientEffect, RecipientEvent, RecipientState};
use std::collections::{BTreeMap, HashMap};

/// Recipients per stored audience chunk (and per expansion transaction).
pub const CHUNK: usize = 500;

/// A broadcast write, run inside the committer's transaction.
#[derive(Debug)]
pub enum BroadcastOp {
    /// A new broadcast from the API.
    Create(NewBroadcast),
    /// Stop sending.
    Cancel {
        /// The org.
        org_id: String,
        /// The broadcast.
        id: String,
    },
    /// Expand one chunk of a waiting audience.
    Expand,
    /// Act on due recipients.
    Dispatch(super::broadcast_run::DispatchRequest),
    /// An acknowledgement by confirm link (the SMS and WhatsApp replies confirm inside the
    /// inbound message's own write, see [`confirm_by_phone`]).
    ConfirmLink {
        /// The recipient.
        recipient_id: String,
    },
    /// An acknowledgement by key press on a voice rung's call: the recipient whose current
    /// rung is this message.
    ConfirmCall {
        /// The rung's message (the call's).
        message_id: String,
    },
}

/// What a broadcast write did.
#[derive(Debug)]
pub enum BroadcastResult {
    /// Created (or found by its idempotency key).
    Created {
        /// The broadcast.
        id: String,
        /// `true` when the key was used before with the same request.
        replayed: bool,
    },
    /// The idempotency key was used with another request.
    KeyReused,
    /// The org's daily broadcast cap is reached.
    DailyCapReached {
        /// The cap.
        cap: i64,
    },
    /// Cancel: the state after (`cancelled`, or `done` when it had finished).
    Cancelled(String),
    /// No such broadcast in the org.
    NotFound,
    /// Recipients added by an expansion.
    Expanded(usize),
    /// A dispatch round.
    Dispatched(broadcast::Tick),
    /// A confirmation's outcome.
    Confirmed(Confirmation),
}

/// A broadcast as the API created it.
#[derive(Debug)]
pub struct NewBroadcast {
    /// The org.
    pub org_id: String,
    /// Its name.
    pub name: String,
    /// The checked rules.
    pub spec: Spec,
    /// The recipients.
    pub recipients: Vec<Recipient>,
    /// The client's key.
    pub idempotency_key: Option<String>,
    /// A digest of the request, to tell a retry from a reused key.
    pub request_hash: String,
    /// The org's daily cap.
    pub per_day: Option<i64>,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// The recipient is confirmed now.
    Confirmed {
        /// Its broadcast.
        broadcast_id: String,
    },
    /// It had been given up on: counted as a late confirmation.
    Late,
    /// It was confirmed before.
    Already,
    /// Nothing to confirm (no recipient, or one the machine refuses: opted out, not sent).
    Nothing,
}

/// Runs one op.
pub async fn execute(
    conn: &mut AnyConnection,
    op: &BroadcastOp,
    now: i64,
) -> Result<BroadcastResult, StoreError> {
    match op {
        BroadcastOp::Create(b) => create(conn, b, now).await,
        BroadcastOp::Cancel { org_id, id } => cancel(conn, org_id, id, now).await,
        BroadcastOp::Expand => Ok(BroadcastResult::Expanded(
            super::broadcast_expand::expand(conn, now).await?,
        )),
        BroadcastOp::Dispatch(req) => Ok(BroadcastResult::Dispatched(
            super::broadcast_run::dispatch(conn, req, now).await?,
        )),
        BroadcastOp::ConfirmLink { recipient_id } => {
            let row = sqlx::query("SELECT org_id FROM broadcast_recipients WHERE id = $1")
                .bind(recipient_id)
                .fetch_optional(&mut *conn)
                .await?;
            let Some(r) = row else {
                return Ok(BroadcastResult::Confirmed(Confirmation::Nothing));
            };
            let org_id: String = r.try_get(0)?;
            Ok(BroadcastResult::Confirmed(
                confirm(conn, &org_id, recipient_id, "email", now).await?,
            ))
        }
        BroadcastOp::ConfirmCall { message_id } => {
            let row =
                sqlx::query("SELECT id, org_id FROM broadcast_recipients WHERE message_id = $1")
                    .bind(message_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let Some(r) = row else {
                return Ok(BroadcastResult::Confirmed(Confirmation::Nothing));
            };
            let (id, org_id): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            Ok(BroadcastResult::Confirmed(
                confirm(conn, &org_id, &id, "voice", now).await?,
            ))
        }
    }
}

async fn create(
    conn: &mut AnyConnection,
    b: &NewBroadcast,
    now: i64,
) -> Result<BroadcastResult, StoreError> {
    if let Some(key) = &b.idempotency_key {
        let row = sqlx::query(
            "SELECT id, request_hash FROM broadcasts WHERE org_id = $1 AND idempotency_key = $2",
        )
        .bind(&b.org_id)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(r) = row {
            let hash: String = r.try_get(1)?;
            return Ok(if hash == b.request_hash {
                BroadcastResult::Created {
                    id: r.try_get(0)?,
                    replayed: true,
                }
            } else {
                BroadcastResult::KeyReused
            });
        }
    }
    if let Some(cap) = b.per_day {
        let day_start = now - now.rem_euclid(86_400_000);
        let made: i64 =
            sqlx::query("SELECT COUNT(*) FROM broadcasts WHERE org_id = $1 AND created_at >= $2")
                .bind(&b.org_id)
                .bind(day_start)
                .fetch_one(&mut *conn)
                .await?
                .try_get(0)?;
        if made >= cap {
            return Ok(BroadcastResult::DailyCapReached { cap });
        }
    }
    let id = new_id();
    let chunks: Vec<&[Recipient]> = b.recipients.chunks(CHUNK).collect();
    let link_key = channels::registry::random_hex(32);
    sqlx::query(
        "INSERT INTO broadcasts (id, org_id, name, state, spec, idempotency_key, request_hash, \
         link_key, chunks, recipients, n_pending, created_at, updated_at) \
         VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $8, $9, $9, $10, $10)",
    )
    .bind(&id)
    .bind(&b.org_id)
    .bind(&b.name)
    .bind(serde_json::to_string(&b.spec).expect("a spec serializes"))
    .bind(&b.idempotency_key)
    .bind(&b.request_hash)
    .bind(&link_key)
    .bind(chunks.len() as i64)
    .bind(b.recipients.len() as i64)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    for (i, chunk) in chunks.iter().enumerate() {
        sqlx::query("INSERT INTO broadcast_chunks (broadcast_id, idx, data) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(i as i64)
            .bind(serde_json::to_string(chunk).expect("recipients serialize"))
            .execute(&mut *conn)
            .await?;
    }
    outbox::append(
        conn,
        NewEvent {
            org_id: &b.org_id,
            partition_key: &id,
            event_type: "dartwing.broadcast.created.v1",
            subject: format!("broadcasts/{id}"),
            data: json!({
                "broadcast_id": id,
                "name": b.name,
                "recipients": b.recipients.len(),
                "steps": b.spec.steps.iter().map(|s| json!({
                    "channel": s.channel.as_str(), "after_secs": s.after_secs,
                })).collect::<Vec<_>>(),
                "require_ack": b.spec.require_ack,
                "critical": b.spec.critical,
            }),
        },
        now,
    )
    .await?;
    Ok(BroadcastResult::Created {
        id,
        replayed: false,
    })
}

async fn cancel(
    conn: &mut AnyConnection,
    org_id: &str,
    id: &str,
    now: i64,
) -> Result<BroadcastResult, StoreError> {
    let lock = if is_postgres(conn) { " FOR UPDATE" } else { "" };
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT state FROM broadcasts WHERE id = $1 AND org_id = $2{lock}"
    )))
    .bind(id)
    .bind(org_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else {
        return Ok(BroadcastResult::NotFound);
    };
    let state: String = r.try_get(0)?;
    if state != "running" {
        return Ok(BroadcastResult::Cancelled(state));
    }
    sqlx::query(
        "UPDATE broadcasts SET state = 'cancelled', updated_at = $1, finished_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE broadcast_recipients SET next_at = NULL WHERE broadcast_id = $1 AND next_at IS NOT NULL",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    // Rungs still waiting in the send queue do not go out either.
    let queued: Vec<String> = sqlx::query(
        "SELECT m.id FROM broadcast_sends s JOIN messages m ON m.id = s.message_id \
         WHERE s.broadcast_id = $1 AND m.status = 'queued' AND m.next_attempt_at IS NOT NULL",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    for message_id in &queued {
        sqlx::query("UPDATE messages SET next_attempt_at = NULL WHERE id = $1")
            .bind(message_id)
            .execute(&mut *conn)
            .await?;
        super::messages::apply_delivery(
            conn,
            org_id,
            message_id,
            state_machines::DeliveryState::Queued,
            state_machines::DeliveryEvent::Fail,
            "broadcast",
            super::messages::Said {
                error_message: Some("the broadcast was cancelled before this was sent"),
                ..Default::default()
            },
            now,
        )
        .await?;
    }
    outbox::append(
        conn,
        NewEvent {
            org_id,
            partition_key: id,
            event_type: "dartwing.broadcast.cancelled.v1",
            subject: format!("broadcasts/{id}"),
            data: json!({"broadcast_id": id, "unsent_messages_failed": queued.len()}),
        },
        now,
    )
    .await?;
    Ok(BroadcastResult::Cancelled("cancelled".into()))
}

/// Moves count columns by the recipient machine's changes, per broadcast (applied in id
/// order, so concurrent rounds lock broadcast rows in one order).
#[derive(Debug, Default)]
pub struct Counts(BTreeMap<String, HashMap<&'static str, i64>>);

impl Counts {
    /// Records the effects of one step.
    pub fn record(&mut self, broadcast_id: &str, effects: &[RecipientEffect]) {
        let c = self.0.entry(broadcast_id.to_string()).or_default();
        for e in effects {
            match e {
                RecipientEffect::Changed { from, to } => {
                    *c.entry(from.as_str()).or_default() -= 1;
                    *c.entry(to.as_str()).or_default() += 1;
                }
                RecipientEffect::LateConfirmation => *c.entry("late_confirmed").or_default() += 1,
                RecipientEffect::StepSent(_) | RecipientEffect::HistoryOnly => {}
            }
        }
    }

    /// Whether a broadcast's counts moved.
    pub fn moved(&self, broadcast_id: &str) -> bool {
        self.0
            .get(broadcast_id)
            .is_some_and(|d| d.values().any(|v| *v != 0))
    }

    /// Writes the deltas.
    pub async fn apply(&self, conn: &mut AnyConnection, now: i64) -> Result<(), StoreError> {
        for (id, deltas) in &self.0 {
            let sets: Vec<String> = deltas
                .iter()
                .filter(|(_, d)| **d != 0)
                .map(|(col, d)| format!("n_{col} = n_{col} + ({d})"))
                .collect();
            if sets.is_empty() {
                continue;
            }
            // Column names come from the machine's fixed state names, never from input.
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE broadcasts SET {}, updated_at = $1 WHERE id = $2",
                sets.join(", ")
            )))
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// A broadcast's counts by state, for progress events and the API.
pub async fn counts(conn: &mut AnyConnection, id: &str) -> Result<serde_json::Value, StoreError> {
    let r = sqlx::query(
        "SELECT n_pending, n_sent, n_confirmed, n_not_confirmed, n_unreachable, n_opted_out, \
         n_late_confirmed FROM broadcasts WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(json!({
        "pending": r.try_get::<i64, _>(0)?,
        "sent": r.try_get::<i64, _>(1)?,
        "confirmed": r.try_get::<i64, _>(2)?,
        "not_confirmed": r.try_get::<i64, _>(3)?,
        "unreachable": r.try_get::<i64, _>(4)?,
        "opted_out": r.try_get::<i64, _>(5)?,
        "late_confirmed": r.try_get::<i64, _>(6)?,
    }))
}

/// Confirms one recipient through its machine; the event says how long it took.
pub async fn confirm(
    conn: &mut AnyConnection,
    org_id: &str,
    recipient_id: &str,
    via: &str,
    now: i64,
) -> Result<Confirmation, StoreError> {
    let lock = if is_postgres(conn) { " FOR UPDATE" } else { "" };
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT broadcast_id, state, last_step, first_sent_at FROM broadcast_recipients \
         WHERE id = $1 AND org_id = $2{lock}"
    )))
    .bind(recipient_id)
    .bind(org_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else {
        return Ok(Confirmation::Nothing);
    };
    let broadcast_id: String = r.try_get(0)?;
    let state = parse_state(&r.try_get::<String, _>(1)?)?;
    let last_step: Option<i64> = r.try_get(2)?;
    let first_sent_at: Option<i64> = r.try_get(3)?;
    let Ok((next, effects)) = recipient::step(state, RecipientEvent::Confirm) else {
        return Ok(Confirmation::Nothing);
    };
    let late = effects.contains(&RecipientEffect::LateConfirmation);
    let outcome = if late {
        sqlx::query(
            "UPDATE broadcast_recipients SET late_confirmed_at = COALESCE(late_confirmed_at, $1), \
             confirmed_via = $2, updated_at = $1 WHERE id = $3",
        )
        .bind(now)
        .bind(via)
        .bind(recipient_id)
        .execute(&mut *conn)
        .await?;
        Confirmation::Late
    } else if next == RecipientState::Confirmed && state != next {
        sqlx::query(
            "UPDATE broadcast_recipients SET state = $1, confirmed_at = $2, confirmed_via = $3, \
             confirmed_step = last_step, next_at = NULL, updated_at = $2 WHERE id = $4",
        )
        .bind(next.as_str())
        .bind(now)
        .bind(via)
        .bind(recipient_id)
        .execute(&mut *conn)
        .await?;
        Confirmation::Confirmed {
            broadcast_id: broadcast_id.clone(),
        }
    } else {
        return Ok(Confirmation::Already);
    };
    let mut moved = Counts::default();
    moved.record(&broadcast_id, &effects);
    moved.apply(conn, now).await?;
    let counts = counts(conn, &broadcast_id).await?;
    outbox::append(
        conn,
        NewEvent {
            org_id,
            partition_key: &broadcast_id,
            event_type: "dartwing.broadcast.confirmed.v1",
            subject: format!("broadcasts/{broadcast_id}/recipients/{recipient_id}"),
            data: json!({
                "broadcast_id": broadcast_id,
                "recipient_id": recipient_id,
                "via": via,
                "step": last_step,
                "late": late,
                "ms_to_confirm": first_sent_at.map(|t| now - t),
                "counts": counts,
            }),
        },
        now,
    )
    .await?;
    super::broadcast_run::finish_if_done(conn, &broadcast_id, false, now).await?;
    Ok(outcome)
}

/// A stored recipient state.
pub fn parse_state(s: &str) -> Result<RecipientState, StoreError> {
    RecipientState::parse(s).ok_or_else(|| StoreError::Corrupt {
        what: "broadcast_recipients.state",
        detail: s.to_string(),
    })
}
