//! Outbound messages created many at a time: what [`super::messages::create_outbound_in`] does for
//! one, for a whole broadcast dispatch round, in a handful of statements per org and channel
//! instead of about eleven per message (idempotency lookup, opt-out lookup, the contact's
//! identity, contact and conversation, the conversation's times, the message).
//!
//! Why: a rung costs the database what its statements cost, and on SQLite every statement is
//! a hand-off to the connection's worker thread and back (two thread wake-ups, which this
//! VM makes expensive: half of a draining broadcast's CPU was the kernel waking threads,
//! BENCHMARKS.md). The rows written are the same: the message, its conversation's times, a
//! new contact's contact, identity, conversation and `conversation.created` event; the history
//! row and `message.queued` event go to the round's [`Deferred`] as before.
//!
//! Only plain requests go in bulk: no attachments, no daily cap, no customer-service window to
//! check, an idempotency key used once in the call, a recipient whose conversation exists (or
//! is made here) and stays in its state. Anything else is answered `None`, for the caller to
//! hand to `create_outbound_in` one at a time — after the bulk writes, which touch nothing it
//! reads.

use super::conversations::Thread;
use super::messages::{
    bind_new_outbound, queued_event, Created, NewOutbound, NEW_OUTBOUND_COLUMNS, NEW_OUTBOUND_ROW,
};
use super::sends::Deferred;
use super::sql::{numbered_list, numbered_rows};
use super::{new_id, threads_bulk, StoreError};
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use state_machines::ConversationEvent;
use std::collections::{HashMap, HashSet};

/// Rows per multi-row statement (12 values each).
const CHUNK: usize = 100;

/// A request and the org it is for.
pub type Request<'a> = (&'a str, &'a NewOutbound);

/// Creates the plain requests among `reqs`; one answer per request, in order: `Some` what
/// was done, `None` for a request to create one at a time with `create_outbound_in`.
pub async fn create_many(
    conn: &mut AnyConnection,
    reqs: &[Request<'_>],
    now: i64,
    later: &mut Deferred,
) -> Result<Vec<Option<Created>>, StoreError> {
    let mut answers: Vec<Option<Created>> = vec![None; reqs.len()];
    let plain: Vec<usize> = (0..reqs.len()).filter(|&i| is_plain(reqs[i].1)).collect();
    let mut orgs: Vec<&str> = plain.iter().map(|&i| reqs[i].0).collect();
    orgs.sort_unstable();
    orgs.dedup();
    for org in orgs {
        let members: Vec<usize> = plain
            .iter()
            .copied()
            .filter(|&i| reqs[i].0 == org)
            .collect();
        let everyone: Vec<usize> = (0..reqs.len()).filter(|&i| reqs[i].0 == org).collect();
        let fresh = by_key(conn, org, reqs, (&members, &everyone), &mut answers).await?;
        let mut channels: Vec<_> = fresh.iter().map(|&i| reqs[i].1.channel).collect();
        channels.sort_unstable_by_key(|c| c.as_str());
        channels.dedup();
        for channel in channels {
            let group: Vec<usize> = fresh
                .iter()
                .copied()
                .filter(|&i| reqs[i].1.channel == channel)
                .collect();
            create_group(conn, org, reqs, &group, now, later, &mut answers).await?;
        }
    }
    Ok(answers)
}

/// What `create_outbound_in` does without a statement of its own for the request.
fn is_plain(req: &NewOutbound) -> bool {
    req.attachments.is_empty() && req.daily_cap.is_none() && !req.needs_service_window
}

/// Answers the (plain) members whose idempotency key was used before (`Existing` or
/// `KeyReused`, as `create_outbound_in` would); returns those left to create. A key twice
/// among all of the org's requests (`everyone`, plain or not) leaves the plain ones that carry
/// it to the one-at-a-time path, so that which of them is created first stays the call's
/// order.
async fn by_key(
    conn: &mut AnyConnection,
    org: &str,
    reqs: &[Request<'_>],
    (members, everyone): (&[usize], &[usize]),
    answers: &mut [Option<Created>],
) -> Result<Vec<usize>, StoreError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for &i in everyone {
        if let Some(key) = reqs[i].1.idempotency_key.as_deref() {
            *seen.entry(key).or_default() += 1;
        }
    }
    let once: Vec<&str> = members
        .iter()
        .filter_map(|&i| reqs[i].1.idempotency_key.as_deref())
        .filter(|k| seen[k] == 1)
        .collect();
    let mut stored: HashMap<String, (String, String, String, String, String)> = HashMap::new();
    for chunk in once.chunks(CHUNK) {
        let sql = format!(
            "SELECT idempotency_key, id, conversation_id, channel, to_addr, body FROM messages \
             WHERE org_id = $1 AND idempotency_key IN ({})",
            numbered_list(2, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(org);
        for key in chunk {
            q = q.bind(*key);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let row = (
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
            );
            stored.insert(r.try_get(0)?, row);
        }
    }
    let mut fresh = Vec::with_capacity(members.len());
    for &i in members {
        let req = reqs[i].1;
        let Some(key) = req.idempotency_key.as_deref() else {
            fresh.push(i);
            continue;
        };
        if seen[key] > 1 {
            continue;
        }
        answers[i] = match stored.get(key) {
            Some((id, conversation_id, channel, to, body)) => Some(
                if channel == req.channel.as_str() && *to == req.to && *body == req.body {
                    Created::Existing {
                        id: id.clone(),
                        conversation_id: conversation_id.clone(),
                    }
                } else {
                    Created::KeyReused
                },
            ),
            None => {
                fresh.push(i);
                None
            }
        };
    }
    Ok(fresh)
}

/// Creates the `group`'s messages (one org and channel, keys unused): opted-out recipients
/// answered `OptedOut`, the rest stored in their conversations.
async fn create_group(
    conn: &mut AnyConnection,
    org: &str,
    reqs: &[Request<'_>],
    group: &[usize],
    now: i64,
    later: &mut Deferred,
    answers: &mut [Option<Created>],
) -> Result<(), StoreError> {
    let Some(&first) = group.first() else {
        return Ok(());
    };
    let channel = reqs[first].1.channel.as_str();
    let mut addresses: Vec<&str> = group.iter().map(|&i| reqs[i].1.to.as_str()).collect();
    addresses.sort_unstable();
    addresses.dedup();
    let mut opted_out: HashSet<String> = HashSet::new();
    for chunk in addresses.chunks(CHUNK) {
        let sql = format!(
            "SELECT address FROM opt_outs WHERE org_id = $1 AND channel = $2 AND address IN ({})",
            numbered_list(3, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(org).bind(channel);
        for a in chunk {
            q = q.bind(*a);
        }
        for r in q.fetch_all(&mut *conn).await? {
            opted_out.insert(r.try_get(0)?);
        }
    }
    addresses.retain(|a| !opted_out.contains(*a));
    let mut known = HashMap::new();
    for chunk in addresses.chunks(CHUNK) {
        known.extend(threads_bulk::find_or_create(conn, org, channel, chunk, now).await?);
    }
    let mut made: Vec<(usize, String, Thread)> = Vec::with_capacity(group.len());
    for &i in group {
        let to = reqs[i].1.to.as_str();
        if opted_out.contains(to) {
            answers[i] = Some(Created::OptedOut);
            continue;
        }
        // A contact saved without a conversation, or one this message would reopen: the
        // one-at-a-time path, which changes conversations.
        let Some(k) = known
            .get(to)
            .filter(|k| k.keeps(ConversationEvent::Outbound))
        else {
            continue;
        };
        let thread = Thread {
            contact_id: k.contact_id.clone(),
            conversation_id: k.conversation_id.clone(),
        };
        made.push((i, new_id(), thread));
    }
    let touched: Vec<(&str, &str)> = made
        .iter()
        .map(|(_, _, t)| (org, t.conversation_id.as_str()))
        .collect();
    threads_bulk::touch(conn, touched, now).await?;
    for chunk in made.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO messages ({NEW_OUTBOUND_COLUMNS}) VALUES {}",
            numbered_rows(NEW_OUTBOUND_ROW, chunk.len(), 2)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for (i, id, thread) in chunk {
            q = bind_new_outbound(q, org, id, thread, reqs[*i].1);
        }
        q.execute(&mut *conn).await?;
    }
    for (i, id, thread) in made {
        later.created(org, &id, queued_event(org, &id, &thread, reqs[i].1));
        answers[i] = Some(Created::Queued {
            id,
            conversation_id: thread.conversation_id,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(attachments: bool, cap: Option<i64>, window: bool) -> NewOutbound {
        NewOutbound {
            channel: state_machines::Channel::Sms,
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            body: "hi".into(),
            content: None,
            needs_service_window: window,
            idempotency_key: None,
            bulk: true,
            daily_cap: cap,
            attachments: if attachments {
                vec![channels::OutboundAttachment {
                    content_type: "text/plain".into(),
                    filename: "a.txt".into(),
                    data: b"a".to_vec(),
                }]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn only_requests_without_checks_of_their_own_are_plain() {
        assert!(is_plain(&req(false, None, false)));
        assert!(!is_plain(&req(true, None, false)));
        assert!(!is_plain(&req(false, Some(10), false)));
        assert!(!is_plain(&req(false, None, true)));
    }
}
