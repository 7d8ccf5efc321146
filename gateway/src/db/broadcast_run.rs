//! The engine's writes: acting on due recipients (send a rung as an outbound message,
//! hold, finish), each batch in one committer transaction (expanding an audience chunk into
//! recipients is [`super::broadcast_expand`]). A rung's message, the recipient's move and the broadcast's counts
//! commit together, and each rung's message carries the idempotency key
//! `broadcast:{recipient}:{step}`: a node killed mid-broadcast resumes from the recipients'
//! `next_at` with no rung skipped and none queued twice.

use super::broadcast_rungs::{self as rungs, Planned};
use super::broadcasts::{parse_state, Counts};
use super::outbox::{self, NewEvent};
use super::sends::{BroadcastSend, Deferred};
use super::{is_postgres, StoreError};
use broadcast::{plan, Action, Progress, Spec};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use state_machines::recipient::{self, RecipientEffect, RecipientEvent};
use state_machines::Channel;
use std::collections::{BTreeSet, HashMap};

/// How long an email step's confirm link works.
pub const LINK_VALID_MS: i64 = 7 * 24 * 3600 * 1000;

/// An org's sending account on one channel, as the engine needs it.
#[derive(Debug, Clone)]
pub struct Sender {
    /// Our address on the channel.
    pub from: String,
    /// Free-form text reaches a recipient only inside its service window (WhatsApp).
    pub window_for_text: bool,
}

/// One dispatch round's inputs from outside the database.
#[derive(Debug, Default)]
pub struct DispatchRequest {
    /// Recipients at most.
    pub limit: i64,
    /// Configured senders by org and channel.
    pub senders: HashMap<(String, Channel), Sender>,
    /// Base of confirm links (`{public_url}/b/{token}`).
    pub public_url: String,
}

/// A due recipient as read.
pub(super) struct Due {
    pub(super) id: String,
    pub(super) broadcast_id: String,
    pub(super) org_id: String,
    pub(super) phone: Option<String>,
    pub(super) email: Option<String>,
    pub(super) name: Option<String>,
    pub(super) tz: Option<String>,
    pub(super) vars: Option<String>,
    pub(super) progress: Progress,
    pub(super) message_id: Option<String>,
    pub(super) running: bool,
}

fn due_from_row(r: &AnyRow) -> Result<Due, StoreError> {
    let state = parse_state(&r.try_get::<String, _>(8)?)?;
    Ok(Due {
        id: r.try_get(0)?,
        broadcast_id: r.try_get(1)?,
        org_id: r.try_get(2)?,
        phone: r.try_get(3)?,
        email: r.try_get(4)?,
        name: r.try_get(5)?,
        tz: r.try_get(6)?,
        vars: r.try_get(7)?,
        progress: Progress {
            state,
            last_step: r.try_get::<Option<i64>, _>(9)?.map(|s| s as u32),
            last_sent_at: r.try_get(10)?,
            delivered_any: r.try_get::<i64, _>(12)? != 0,
            last_failed: false,
        },
        message_id: r.try_get(11)?,
        running: r.try_get::<String, _>(13)? == "running",
    })
}

/// A broadcast's rules and link key, read once per round.
pub(super) struct Rules {
    pub(super) spec: Spec,
    pub(super) name: String,
    pub(super) link_key: String,
}

/// Acts on up to `req.limit` due recipients.
pub async fn dispatch(
    conn: &mut AnyConnection,
    req: &DispatchRequest,
    now: i64,
) -> Result<broadcast::Tick, StoreError> {
    let lock = if is_postgres(conn) {
        " FOR UPDATE OF r SKIP LOCKED"
    } else {
        ""
    };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT r.id, r.broadcast_id, r.org_id, r.phone, r.email, r.name, r.tz, r.vars, r.state, \
         r.last_step, r.last_sent_at, r.message_id, r.delivered_any, b.state \
         FROM broadcast_recipients r JOIN broadcasts b ON b.id = r.broadcast_id \
         WHERE r.next_at IS NOT NULL AND r.next_at <= $1 ORDER BY r.next_at LIMIT $2{lock}"
    )))
    .bind(now)
    .bind(req.limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut rules: HashMap<String, Rules> = HashMap::new();
    let mut counts = Counts::default();
    // Broadcast rows are locked in id order (counts, then progress): two nodes' rounds over
    // the same broadcasts never wait on each other in a cycle.
    let mut touched = BTreeSet::new();
    let handled = rows.len();
    let mut later = Deferred::default();
    let mut planned: Vec<Planned> = Vec::new();
    for row in &rows {
        let mut due = due_from_row(row)?;
        touched.insert(due.broadcast_id.clone());
        if !due.running {
            set_next(conn, &due.id, None, now).await?;
            continue;
        }
        if !rules.contains_key(&due.broadcast_id) {
            let r = sqlx::query("SELECT spec, name, link_key FROM broadcasts WHERE id = $1")
                .bind(&due.broadcast_id)
                .fetch_one(&mut *conn)
                .await?;
            let spec: String = r.try_get(0)?;
            let spec = serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt {
                what: "broadcasts.spec",
                detail: e.to_string(),
            })?;
            rules.insert(
                due.broadcast_id.clone(),
                Rules {
                    spec,
                    name: r.try_get(1)?,
                    link_key: r.try_get(2)?,
                },
            );
        }
        let rules = &rules[&due.broadcast_id];
        if let Some(m) = &due.message_id {
            let status: Option<String> = sqlx::query("SELECT status FROM messages WHERE id = $1")
                .bind(m)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            match status.as_deref() {
                Some("failed") | None => due.progress.last_failed = true,
                Some(_) => due.progress.delivered_any = true,
            }
        }
        if let Some(rung) = act(conn, req, rules, due, &mut counts, &mut later, now).await? {
            planned.push(rung);
        }
    }
    rungs::send(conn, planned, &mut counts, &mut later, now).await?;
    later.flush(conn, now).await?;
    counts.apply(conn, now).await?;
    for id in &touched {
        finish_if_done(conn, id, counts.moved(id), now).await?;
    }
    let next_due: Option<i64> =
        sqlx::query("SELECT MIN(next_at) FROM broadcast_recipients WHERE next_at IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
    Ok(broadcast::Tick { handled, next_due })
}

/// Why rung `k` cannot reach this recipient (`None`: it can).
async fn blocked(
    conn: &mut AnyConnection,
    req: &DispatchRequest,
    spec: &Spec,
    due: &Due,
    now: i64,
) -> Result<Vec<Option<&'static str>>, StoreError> {
    let mut out = Vec::with_capacity(spec.steps.len());
    for step in &spec.steps {
        let address = match step.channel {
            Channel::Email => due.email.as_deref(),
            _ => due.phone.as_deref(),
        };
        let sender = req.senders.get(&(due.org_id.clone(), step.channel));
        out.push(match (step.channel, address, sender) {
            (_, None, _) => Some("no address for this channel"),
            (_, _, None) => Some("the channel is not configured for this organization"),
            (_, Some(to), Some(s)) if s.window_for_text && step.content.template.is_none() => {
                let closes = super::windows::closes_at(conn, &due.org_id, step.channel, to).await?;
                closes
                    .is_none_or(|t| t <= now)
                    .then_some("outside the customer-service window (no template)")
            }
            _ => None,
        });
    }
    Ok(out)
}

/// Does what the plan says for `due`, except a rung to send: that is returned, for the
/// round to send with the others ([`super::broadcast_rungs::send`]).
async fn act(
    conn: &mut AnyConnection,
    req: &DispatchRequest,
    rules: &Rules,
    due: Due,
    counts: &mut Counts,
    later: &mut Deferred,
    now: i64,
) -> Result<Option<Planned>, StoreError> {
    let spec = &rules.spec;
    let reasons = blocked(conn, req, spec, &due, now).await?;
    let tz_name = due.tz.as_deref().unwrap_or(&spec.timezone);
    let tz = broadcast::quiet::zone_or_utc(tz_name);
    let action = plan(spec, &due.progress, now, &tz, &|k| reasons[k].is_none());
    let from = due.progress.last_step.map_or(0, |l| l as usize + 1);
    let upto = match action {
        Action::Send { step, .. } => step as usize,
        Action::Finish { .. } => spec.steps.len(),
        _ => from,
    };
    for (k, reason) in reasons.iter().enumerate().take(upto).skip(from) {
        if let Some(reason) = reason {
            later.send(record_send(
                &due,
                k,
                spec.steps[k].channel,
                None,
                Some(reason),
            ));
        }
    }
    match action {
        Action::Idle => set_next(conn, &due.id, None, now).await.map(|()| None),
        Action::Wait { until } => set_next(conn, &due.id, Some(until), now)
            .await
            .map(|()| None),
        Action::Finish { delivered } => {
            let event = RecipientEvent::Exhaust { delivered };
            transition(conn, &due, event, counts, now)
                .await
                .map(|()| None)
        }
        Action::Send { step, next_at } => {
            rungs::plan(conn, req, rules, due, step, next_at, now).await
        }
    }
}

pub(super) async fn transition(
    conn: &mut AnyConnection,
    due: &Due,
    event: RecipientEvent,
    counts: &mut Counts,
    now: i64,
) -> Result<(), StoreError> {
    let Ok((next, effects)) = recipient::step(due.progress.state, event) else {
        return set_next(conn, &due.id, None, now).await;
    };
    sqlx::query(
        "UPDATE broadcast_recipients SET state = $1, delivered_any = $2, next_at = NULL, \
         updated_at = $3 WHERE id = $4",
    )
    .bind(next.as_str())
    .bind(due.progress.delivered_any as i64)
    .bind(now)
    .bind(&due.id)
    .execute(&mut *conn)
    .await?;
    if effects
        .iter()
        .any(|e| matches!(e, RecipientEffect::Changed { .. }))
    {
        counts.record(&due.broadcast_id, &effects);
    }
    Ok(())
}

pub(super) async fn set_next(
    conn: &mut AnyConnection,
    id: &str,
    next_at: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE broadcast_recipients SET next_at = $1, updated_at = $2 WHERE id = $3")
        .bind(next_at)
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) fn record_send(
    due: &Due,
    step: usize,
    channel: Channel,
    message_id: Option<&str>,
    skipped: Option<&'static str>,
) -> BroadcastSend {
    BroadcastSend {
        broadcast_id: due.broadcast_id.clone(),
        recipient_id: due.id.clone(),
        step: step as i64,
        channel: channel.as_str(),
        message_id: message_id.map(str::to_owned),
        skipped,
    }
}

/// Marks the broadcast `done` when every chunk is expanded and no recipient waits for
/// anything; publishes its progress when its counts moved (`changed`) or it finished.
pub async fn finish_if_done(
    conn: &mut AnyConnection,
    id: &str,
    changed: bool,
    now: i64,
) -> Result<(), StoreError> {
    // Locked first (PostgreSQL): a round running beside this one (`alerts::run`) that
    // moved this broadcast's last recipients commits before this check reads them, so the
    // last of two such rounds always sees the broadcast done.
    let lock = if is_postgres(conn) { " FOR UPDATE" } else { "" };
    let r = sqlx::query(AssertSqlSafe(format!(
        "SELECT org_id, state, chunks_expanded, chunks FROM broadcasts WHERE id = $1{lock}"
    )))
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let (org_id, state): (String, String) = (r.try_get(0)?, r.try_get(1)?);
    let expanded = r.try_get::<i64, _>(2)? >= r.try_get::<i64, _>(3)?;
    let waiting = sqlx::query(
        "SELECT 1 FROM broadcast_recipients WHERE broadcast_id = $1 AND next_at IS NOT NULL LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .is_some();
    let done = state == "running" && expanded && !waiting;
    if done {
        sqlx::query(
            "UPDATE broadcasts SET state = 'done', finished_at = $1, updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    } else if !changed {
        return Ok(());
    }
    let counts = super::broadcasts::counts(conn, id).await?;
    outbox::append(
        conn,
        NewEvent {
            org_id: &org_id,
            partition_key: id,
            event_type: if done {
                "dartwing.broadcast.finished.v1"
            } else {
                "dartwing.broadcast.progress.v1"
            },
            subject: format!("broadcasts/{id}"),
            data: json!({"broadcast_id": id, "state": if done { "done" } else { state.as_str() }, "counts": counts}),
        },
        now,
    )
    .await?;
    Ok(())
}

/// A broadcast message failed for good: its recipient is looked at again now (the next rung
/// goes out at once, or the recipient finishes).
pub async fn on_message_failed(
    conn: &mut AnyConnection,
    message_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE broadcast_recipients SET next_at = $1 WHERE message_id = $2 AND state = 'sent' \
         AND broadcast_id IN (SELECT id FROM broadcasts WHERE state = 'running')",
    )
    .bind(now)
    .bind(message_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Broadcast messages queued and not yet claimed by the send worker.
pub async fn backlog(pool: &sqlx::AnyPool) -> Result<i64, StoreError> {
    Ok(sqlx::query(
        "SELECT COUNT(*) FROM messages WHERE priority = 1 AND next_attempt_at IS NOT NULL \
         AND status = 'queued'",
    )
    .fetch_one(pool)
    .await?
    .try_get(0)?)
}
