//! The engine's writes: acting on due recipients (send a rung as an outbound message,
//! hold, finish), each batch in one committer transaction (expanding an audience chunk into
//! recipients is [`super::broadcast_expand`]). A rung's message, the recipient's move and the broadcast's counts
//! commit together, and each rung's message carries the idempotency key
//! `broadcast:{recipient}:{step}`: a node killed mid-broadcast resumes from the recipients'
//! `next_at` with no rung skipped and none queued twice.

use super::broadcasts::{parse_state, Counts};
use super::messages::{create_outbound_in, Created, NewOutbound};
use super::outbox::{self, NewEvent};
use super::sends::{BroadcastSend, Deferred};
use super::{is_postgres, outbound_bulk, StoreError};
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
struct Due {
    id: String,
    broadcast_id: String,
    org_id: String,
    phone: Option<String>,
    email: Option<String>,
    name: Option<String>,
    tz: Option<String>,
    vars: Option<String>,
    progress: Progress,
    message_id: Option<String>,
    running: bool,
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
struct Rules {
    spec: Spec,
    name: String,
    link_key: String,
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
    let mut rungs: Vec<Planned> = Vec::new();
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
            rungs.push(rung);
        }
    }
    send_rungs(conn, rungs, &mut counts, &mut later, now).await?;
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
/// round to send with the others ([`send_rungs`]).
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
            plan_rung(conn, req, rules, due, step, next_at, now).await
        }
    }
}

/// A rung decided on: the message to queue and the recipient's move once it is.
struct Planned {
    due: Due,
    step: u32,
    next_at: Option<i64>,
    /// The recipient machine's step for the send.
    next: recipient::RecipientState,
    effects: Vec<RecipientEffect>,
    message: NewOutbound,
}

/// The message of rung `step` for `due`, rendered; `None` (the recipient set aside) when the
/// recipient machine refuses the send.
async fn plan_rung(
    conn: &mut AnyConnection,
    req: &DispatchRequest,
    rules: &Rules,
    due: Due,
    step: u32,
    next_at: Option<i64>,
    now: i64,
) -> Result<Option<Planned>, StoreError> {
    let rung = &rules.spec.steps[step as usize];
    let channel = rung.channel;
    let sender = &req.senders[&(due.org_id.clone(), channel)];
    let to = match channel {
        Channel::Email => due.email.clone(),
        _ => due.phone.clone(),
    }
    .expect("a reachable rung has an address");
    let confirm_url = (channel == Channel::Email && rules.spec.require_ack).then(|| {
        let token = broadcast::token::sign(rules.link_key.as_bytes(), &due.id, now + LINK_VALID_MS);
        format!("{}/b/{token}", req.public_url.trim_end_matches('/'))
    });
    let vars: HashMap<String, String> = due
        .vars
        .as_deref()
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    let lookup = |key: &str| -> Option<String> {
        match key {
            "name" => due.name.clone(),
            "phone" => due.phone.clone(),
            "email" => due.email.clone(),
            "broadcast" => Some(rules.name.clone()),
            "confirm_url" => confirm_url.clone(),
            other => vars.get(other).cloned(),
        }
    };
    let text = match channel {
        Channel::Voice => rung.content.say.as_deref(),
        _ => rung.content.body.as_deref(),
    }
    .unwrap_or_default();
    let mut body = broadcast::spec::render(text, &lookup);
    if channel == Channel::Voice && rules.spec.require_ack {
        // The call collects the key (see `voice_out`).
        body.push_str(" Press 1 to confirm that you received this message.");
    }
    if let Some(url) = &confirm_url {
        if !text.contains("{{confirm_url}}") {
            body.push_str(&format!("\n\nConfirm that you received this: {url}\n"));
        }
    }
    let content = match channel {
        // The call takes the key 1 as the acknowledgement (see `voice_out`).
        Channel::Voice => rules
            .spec
            .require_ack
            .then(|| json!({"type": "call", "confirm_key": "1"})),
        _ => rung.message_content(&body, &lookup),
    };
    // The machine decides before anything is queued: a refused step sends nothing.
    let event = RecipientEvent::Send {
        step,
        last: due.progress.last_step,
    };
    let Ok((next, effects)) = recipient::step(due.progress.state, event) else {
        tracing::error!(recipient = %due.id, step, "the recipient machine refused a rung");
        return set_next(conn, &due.id, None, now).await.map(|()| None);
    };
    let message = NewOutbound {
        channel,
        from: sender.from.clone(),
        to,
        body,
        content: content.map(|c| c.to_string()),
        needs_service_window: sender.window_for_text && rung.content.template.is_none(),
        idempotency_key: Some(format!("broadcast:{}:{step}", due.id)),
        bulk: true,
        daily_cap: None,
        attachments: Vec::new(),
    };
    Ok(Some(Planned {
        due,
        step,
        next_at,
        next,
        effects,
        message,
    }))
}

/// Queues the round's rungs: the plain ones in bulk ([`outbound_bulk`]), the others one at a
/// time, then each recipient's move.
async fn send_rungs(
    conn: &mut AnyConnection,
    rungs: Vec<Planned>,
    counts: &mut Counts,
    later: &mut Deferred,
    now: i64,
) -> Result<(), StoreError> {
    let reqs: Vec<outbound_bulk::Request<'_>> = rungs
        .iter()
        .map(|r| (r.due.org_id.as_str(), &r.message))
        .collect();
    let answers = outbound_bulk::create_many(conn, &reqs, now, later).await?;
    for (rung, answer) in rungs.iter().zip(answers) {
        let created = match answer {
            Some(created) => created,
            None => {
                create_outbound_in(
                    conn,
                    &rung.due.org_id,
                    &rung.message,
                    now,
                    Some(&mut *later),
                )
                .await?
            }
        };
        rung_queued(conn, rung, created, counts, later, now).await?;
    }
    Ok(())
}

/// The recipient's move once its rung's message is queued (or refused).
async fn rung_queued(
    conn: &mut AnyConnection,
    rung: &Planned,
    created: Created,
    counts: &mut Counts,
    later: &mut Deferred,
    now: i64,
) -> Result<(), StoreError> {
    let Planned {
        due,
        step,
        next_at,
        next,
        effects,
        message,
    } = rung;
    let (step, channel) = (*step, message.channel);
    let message_id = match created {
        Created::Queued { id, .. } | Created::Existing { id, .. } => id,
        Created::OptedOut => {
            return transition(conn, due, RecipientEvent::OptOut, counts, now).await;
        }
        Created::OutsideWindow { .. } | Created::KeyReused | Created::DayLimitReached { .. } => {
            // The window closed between the check and the insert: pass the rung over now.
            let reason = "outside the customer-service window (no template)";
            later.send(record_send(due, step as usize, channel, None, Some(reason)));
            return set_next(conn, &due.id, Some(now), now).await;
        }
    };
    sqlx::query(
        "UPDATE broadcast_recipients SET state = $1, last_step = $2, last_sent_at = $3, \
         first_sent_at = COALESCE(first_sent_at, $3), message_id = $4, delivered_any = $5, \
         next_at = $6, updated_at = $3 WHERE id = $7",
    )
    .bind(next.as_str())
    .bind(step as i64)
    .bind(now)
    .bind(&message_id)
    .bind(due.progress.delivered_any as i64)
    .bind(next_at)
    .bind(&due.id)
    .execute(&mut *conn)
    .await?;
    later.send(record_send(
        due,
        step as usize,
        channel,
        Some(&message_id),
        None,
    ));
    counts.record(&due.broadcast_id, effects);
    Ok(())
}

async fn transition(
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

async fn set_next(
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

fn record_send(
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
