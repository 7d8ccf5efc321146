//! A broadcast round's rungs: each due recipient's message rendered ([`plan`]), then the
//! round's messages queued together ([`send`]: the plain ones in bulk through
//! [`super::outbound_bulk`], the rest one at a time) and the recipients that got one moved
//! in one statement per chunk. The round itself (which recipients, what the plan says, the
//! counts) is [`super::broadcast_run`].

use super::broadcast_run::{
    record_send, set_next, transition, DispatchRequest, Due, Rules, LINK_VALID_MS,
};
use super::broadcasts::Counts;
use super::messages::{create_outbound_in, Created, NewOutbound};
use super::sends::Deferred;
use super::sql::numbered_list;
use super::{outbound_bulk, StoreError};
use serde_json::json;
use sqlx::{AnyConnection, AssertSqlSafe};
use state_machines::recipient::{self, RecipientEffect, RecipientEvent};
use state_machines::Channel;
use std::collections::HashMap;

/// Recipients per multi-row statement (6 values each).
const CHUNK: usize = 100;

/// A rung decided on: the message to queue and the recipient's move once it is.
pub(super) struct Planned {
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
pub(super) async fn plan(
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
pub(super) async fn send(
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
    let mut sent: Vec<(&Planned, String)> = Vec::with_capacity(rungs.len());
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
        if let Some(message_id) = queued(conn, rung, created, counts, later, now).await? {
            sent.push((rung, message_id));
        }
    }
    for chunk in sent.chunks(CHUNK) {
        moved(conn, chunk, now).await?;
    }
    Ok(())
}

/// What a rung's message being queued (or refused) means for its recipient: the id of the
/// message when it is on its way (the recipient's row is then [`moved`] with its round's
/// others), else `None` and the recipient's row written here.
async fn queued(
    conn: &mut AnyConnection,
    rung: &Planned,
    created: Created,
    counts: &mut Counts,
    later: &mut Deferred,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let Planned {
        due,
        step,
        effects,
        message,
        ..
    } = rung;
    let (step, channel) = (*step, message.channel);
    let message_id = match created {
        Created::Queued { id, .. } | Created::Existing { id, .. } => id,
        Created::OptedOut => {
            transition(conn, due, RecipientEvent::OptOut, counts, now).await?;
            return Ok(None);
        }
        Created::OutsideWindow { .. } | Created::KeyReused | Created::DayLimitReached { .. } => {
            // The window closed between the check and the insert: pass the rung over now.
            let reason = "outside the customer-service window (no template)";
            later.send(record_send(due, step as usize, channel, None, Some(reason)));
            set_next(conn, &due.id, Some(now), now).await?;
            return Ok(None);
        }
    };
    later.send(record_send(
        due,
        step as usize,
        channel,
        Some(&message_id),
        None,
    ));
    counts.record(&due.broadcast_id, effects);
    Ok(Some(message_id))
}

/// Recipients whose rung is queued: each one's new state, step, message, delivery flag and
/// next time, in one statement (`$1` the time, the ids from `$2`, then one run of values per
/// column, each picked by id).
async fn moved(
    conn: &mut AnyConnection,
    sent: &[(&Planned, String)],
    now: i64,
) -> Result<(), StoreError> {
    let n = sent.len();
    let column = |k: usize| -> String {
        (0..n)
            .map(|i| format!(" WHEN ${} THEN ${}", 2 + i, 2 + n * (k + 1) + i))
            .collect()
    };
    let sql = format!(
        "UPDATE broadcast_recipients SET state = CASE id{} END, last_step = CASE id{} END, \
         message_id = CASE id{} END, delivered_any = CASE id{} END, next_at = CASE id{} END, \
         last_sent_at = $1, first_sent_at = COALESCE(first_sent_at, $1), updated_at = $1 \
         WHERE id IN ({})",
        column(0),
        column(1),
        column(2),
        column(3),
        column(4),
        numbered_list(2, n)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
    for (r, _) in sent {
        q = q.bind(r.due.id.as_str());
    }
    for (r, _) in sent {
        q = q.bind(r.next.as_str());
    }
    for (r, _) in sent {
        q = q.bind(r.step as i64);
    }
    for (_, message_id) in sent {
        q = q.bind(message_id.as_str());
    }
    for (r, _) in sent {
        q = q.bind(r.due.progress.delivered_any as i64);
    }
    for (r, _) in sent {
        q = q.bind(r.next_at);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}
