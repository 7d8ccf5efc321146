//! The send worker's writes in bulk: claiming due outbound messages (each with a lease),
//! and recording what providers accepted, in a handful of statements per batch rather than
//! four to seven per message.
//!
//! Both write the rows the one-at-a-time path writes (`messages::apply_delivery`): a history
//! row per message and a `dartwing.message.status_changed.v1` event per change. Why in bulk:
//! a draining broadcast claims up to 48 messages at a time and their acceptances arrive
//! together in the committer's batches, and every statement is a trip to SQLite's one writer
//! (on PostgreSQL a loopback round trip): that is what the broadcast rate was made of
//! (BENCHMARKS.md, the broadcast section). An acceptance batch that is anything but plain
//! (a status report waiting for the message, a message not found) is left to the exact
//! one-at-a-time path ([`accept_many`] returns `None` before writing anything).

use super::messages::{Applied, Claimed, StatusChanged};
use super::outbox;
use super::sql::{numbered_case, numbered_list, numbered_rows};
use super::{is_postgres, StoreError};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use state_machines::delivery::{self, DeliveryEffect};
use state_machines::{Channel, DeliveryEvent, DeliveryState};
use std::collections::{HashMap, HashSet};

/// Rows per multi-row statement (7 values each: well under both backends' limits).
const CHUNK: usize = 100;

/// Claims up to `limit` due messages: `queued` ones are dispatched (→ `sending`), `sending`
/// ones are retries. Each claimed message gets a lease: if this node dies mid-send it is due
/// again when the lease ends. Messages a person waits on (priority 0) come first; broadcast
/// messages (priority 1) fill what is left, at most `bulk_limit`, so a draining broadcast
/// never takes the capacity an agent's reply needs. Whether each recipient has opted out
/// since its message was queued is read in the same statement.
pub async fn claim_due(
    conn: &mut AnyConnection,
    now: i64,
    limit: i64,
    bulk_limit: i64,
    lease_ms: i64,
) -> Result<Vec<Claimed>, StoreError> {
    // On PostgreSQL several nodes claim at once: rows another node's claim holds are skipped,
    // not waited for (and never claimed twice). SQLite has one writer and one node.
    let lock = if is_postgres(conn) {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let mut rows = Vec::new();
    for (priority, most) in [(0, limit), (1, bulk_limit.min(limit))] {
        let most = most.min(limit - rows.len() as i64);
        if most <= 0 {
            continue;
        }
        rows.extend(
            sqlx::query(AssertSqlSafe(format!(
                "SELECT id, org_id, channel, to_addr, body, attempts, created_at, status, content, \
                 priority, conversation_id, CAST(CASE WHEN EXISTS (SELECT 1 FROM opt_outs o \
                 WHERE o.org_id = messages.org_id AND o.channel = messages.channel \
                 AND o.address = messages.to_addr) THEN 1 ELSE 0 END AS BIGINT) \
                 FROM messages WHERE next_attempt_at IS NOT NULL \
                 AND next_attempt_at <= $1 AND priority = $3 ORDER BY next_attempt_at LIMIT $2{lock}"
            )))
            .bind(now)
            .bind(most)
            .bind(priority)
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    let mut claimed = Vec::with_capacity(rows.len());
    let mut dispatched = Vec::new();
    for r in &rows {
        let c = claimed_from_row(r)?;
        if r.try_get::<String, _>(7)? == DeliveryState::Queued.as_str() {
            dispatched.push((
                c.org_id.clone(),
                c.id.clone(),
                r.try_get::<String, _>(10)?,
                c.channel,
            ));
        }
        claimed.push(c);
    }
    let ids: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
    for chunk in ids.chunks(CHUNK) {
        lease(conn, chunk, now, now + lease_ms).await?;
    }
    dispatch(conn, &dispatched, now).await?;
    Ok(claimed)
}

/// One statement per chunk: every claimed message gets its lease and an attempt; those still
/// `queued` move to `sending` (the CASEs read the row as it was).
async fn lease(
    conn: &mut AnyConnection,
    ids: &[&str],
    now: i64,
    until: i64,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE messages SET next_attempt_at = $1, attempts = attempts + 1, \
         status = CASE WHEN status = 'queued' THEN $2 ELSE status END, \
         updated_at = CASE WHEN status = 'queued' THEN $3 ELSE updated_at END \
         WHERE id IN ({})",
        numbered_list(4, ids.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql))
        .bind(until)
        .bind(DeliveryState::Sending.as_str())
        .bind(now);
    for id in ids {
        q = q.bind(*id);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// The history rows and events of `queued → sending` for (org, message, conversation,
/// channel) each, as `messages::apply_delivery` writes them one at a time.
async fn dispatch(
    conn: &mut AnyConnection,
    messages: &[(String, String, String, Channel)],
    now: i64,
) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let (from, event) = (DeliveryState::Queued, DeliveryEvent::Dispatch);
    let (to, _) = delivery::step(from, event).expect("the table dispatches a queued message");
    for chunk in messages.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO message_history (org_id, message_id, event, state, applied, source, at) \
             VALUES {}",
            numbered_rows("(?, ?, $1, $2, 1, 'worker', $3)", chunk.len(), 4)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(event.name())
            .bind(to.as_str())
            .bind(now);
        for (org_id, id, _, _) in chunk {
            q = q.bind(org_id.as_str()).bind(id.as_str());
        }
        q.execute(&mut *conn).await?;
    }
    let events = messages
        .iter()
        .map(|(org_id, id, conversation_id, channel)| {
            StatusChanged {
                org_id,
                message_id: id,
                conversation_id,
                channel: channel.as_str(),
                from,
                to,
                provider_status: None,
                error_code: None,
                error_message: None,
                source: "worker",
            }
            .event()
        })
        .collect();
    outbox::append_many(conn, events, now).await
}

/// Acceptances [`accept_many`] takes at once.
pub const MAX_ACCEPTS: usize = CHUNK;

/// A provider's acceptance to record: (org, message, provider's id, provider's status).
pub type Acceptance<'a> = (&'a str, &'a str, &'a str, &'a str);

/// Records several acceptances at once, with what `messages::record_accepted` writes for
/// each; one result per acceptance, in order. `None` (nothing written) when the batch is not
/// plain: a message twice, one not found or not the org's, a status report already waiting
/// for one of them. The caller then records them one at a time.
pub async fn accept_many(
    conn: &mut AnyConnection,
    items: &[Acceptance<'_>],
    now: i64,
) -> Result<Option<Vec<Applied>>, StoreError> {
    let ids: Vec<&str> = items.iter().map(|(_, id, _, _)| *id).collect();
    if ids.iter().collect::<HashSet<_>>().len() != ids.len() || ids.len() > CHUNK {
        return Ok(None);
    }
    // Locked as the one-at-a-time path's first UPDATE locks them (PostgreSQL).
    let lock = if is_postgres(conn) { " FOR UPDATE" } else { "" };
    let sql = format!(
        "SELECT id, org_id, status, conversation_id, channel FROM messages WHERE id IN ({}){lock}",
        numbered_list(1, ids.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for id in &ids {
        q = q.bind(*id);
    }
    let mut found: HashMap<String, (String, String, String, String)> = HashMap::new();
    for r in q.fetch_all(&mut *conn).await? {
        let row = (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?);
        found.insert(r.try_get(0)?, row);
    }
    // Reports that beat an acceptance to the database are applied after it, one by one
    // (`messages::record_accepted`): such a batch is not plain. One query per org and
    // channel, on the index of waiting reports.
    let mut groups: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    for (_, id, provider_id, _) in items {
        if let Some((org, _, _, channel)) = found.get(*id) {
            groups.entry((org, channel)).or_default().push(provider_id);
        }
    }
    for ((org, channel), provider_ids) in groups {
        let sql = format!(
            "SELECT 1 FROM pending_statuses WHERE org_id = $1 AND channel = $2 \
             AND provider_message_id IN ({}) LIMIT 1",
            numbered_list(3, provider_ids.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(org).bind(channel);
        for provider_id in provider_ids {
            q = q.bind(provider_id);
        }
        if q.fetch_optional(&mut *conn).await?.is_some() {
            return Ok(None);
        }
    }
    // Every step decided before anything is written.
    let mut steps = Vec::with_capacity(items.len());
    for (org_id, id, _, _) in items {
        let Some((org, status, conversation_id, channel)) = found.get(*id) else {
            return Ok(None);
        };
        let Some(state) = DeliveryState::parse(status) else {
            return Ok(None);
        };
        if org != org_id {
            return Ok(None);
        }
        let (next, effects) =
            delivery::step(state, DeliveryEvent::Accepted).unwrap_or((state, Vec::new()));
        let changed = effects
            .iter()
            .any(|e| matches!(e, DeliveryEffect::Changed { .. }));
        if changed && next == DeliveryState::Failed {
            return Ok(None);
        }
        steps.push((
            state,
            next,
            changed,
            conversation_id.as_str(),
            channel.as_str(),
        ));
    }
    // The provider's ids, lease cleared.
    let (when, ids) = numbered_case(items.len());
    let sql = format!(
        "UPDATE messages SET provider_message_id = CASE id{when} END, \
         next_attempt_at = NULL, error_message = NULL WHERE id IN ({ids})"
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for (_, id, provider_id, _) in items {
        q = q.bind(*id).bind(*provider_id);
    }
    q.execute(&mut *conn).await?;
    // History: a row per acceptance, applied or not.
    let sql = format!(
        "INSERT INTO message_history (org_id, message_id, event, state, applied, \
         provider_status, source, at) VALUES {}",
        numbered_rows("(?, ?, $1, ?, ?, ?, 'worker', $2)", items.len(), 3)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql))
        .bind(DeliveryEvent::Accepted.name())
        .bind(now);
    for ((org_id, id, _, provider_status), (_, next, changed, _, _)) in items.iter().zip(&steps) {
        q = q
            .bind(*org_id)
            .bind(*id)
            .bind(next.as_str())
            .bind(*changed as i64)
            .bind(*provider_status);
    }
    q.execute(&mut *conn).await?;
    // The states that moved, one statement per state reached.
    let mut by_state: HashMap<&str, Vec<&str>> = HashMap::new();
    for ((_, id, _, _), (_, next, changed, _, _)) in items.iter().zip(&steps) {
        if *changed {
            by_state.entry(next.as_str()).or_default().push(id);
        }
    }
    for (state, moved) in by_state {
        let sql = format!(
            "UPDATE messages SET status = $1, updated_at = $2 WHERE id IN ({})",
            numbered_list(3, moved.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(state).bind(now);
        for id in moved {
            q = q.bind(id);
        }
        q.execute(&mut *conn).await?;
    }
    let events = items
        .iter()
        .zip(&steps)
        .filter(|(_, step)| step.2)
        .map(
            |((org_id, id, _, provider_status), (from, to, _, conversation_id, channel))| {
                StatusChanged {
                    org_id,
                    message_id: id,
                    conversation_id,
                    channel,
                    from: *from,
                    to: *to,
                    provider_status: Some(provider_status),
                    error_code: None,
                    error_message: None,
                    source: "worker",
                }
                .event()
            },
        )
        .collect();
    outbox::append_many(conn, events, now).await?;
    Ok(Some(
        steps
            .iter()
            .map(|(from, to, _, _, _)| Applied {
                from: *from,
                to: *to,
            })
            .collect(),
    ))
}

/// Rows a broadcast's dispatch round writes at its end, together: each rung message's
/// `create` history row and `dartwing.message.queued.v1` event
/// ([`super::messages::create_outbound_in`]), and the round's `broadcast_sends` records.
/// Same rows as one at a time, in a few multi-row statements (measured on PostgreSQL: the
/// outbox insert alone was 0.7 ms a rung).
#[derive(Default)]
pub struct Deferred {
    created: Vec<(String, String)>,
    events: Vec<OwnedEvent>,
    sends: Vec<BroadcastSend>,
}

/// A [`NewEvent`](super::outbox::NewEvent) that owns its strings.
struct OwnedEvent {
    org_id: String,
    partition_key: String,
    event_type: &'static str,
    subject: String,
    data: serde_json::Value,
}

/// One row of `broadcast_sends`: a rung queued as a message, or passed over with a reason.
pub struct BroadcastSend {
    pub broadcast_id: String,
    pub recipient_id: String,
    pub step: i64,
    pub channel: &'static str,
    pub message_id: Option<String>,
    pub skipped: Option<&'static str>,
}

impl Deferred {
    /// A message created: its history row and event, for later.
    pub fn created(&mut self, org_id: &str, message_id: &str, event: super::outbox::NewEvent<'_>) {
        self.created
            .push((org_id.to_owned(), message_id.to_owned()));
        self.events.push(OwnedEvent {
            org_id: event.org_id.to_owned(),
            partition_key: event.partition_key.to_owned(),
            event_type: event.event_type,
            subject: event.subject,
            data: event.data,
        });
    }

    /// A `broadcast_sends` row, for later.
    pub fn send(&mut self, row: BroadcastSend) {
        self.sends.push(row);
    }

    /// Writes everything kept, in the caller's transaction.
    pub async fn flush(self, conn: &mut AnyConnection, now: i64) -> Result<(), StoreError> {
        for chunk in self.created.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO message_history (org_id, message_id, event, state, applied, source, at) \
                 VALUES {}",
                numbered_rows("(?, ?, 'create', 'queued', 1, 'api', $1)", chunk.len(), 2)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for (org_id, id) in chunk {
                q = q.bind(org_id.as_str()).bind(id.as_str());
            }
            q.execute(&mut *conn).await?;
        }
        let events = self
            .events
            .iter()
            .map(|e| super::outbox::NewEvent {
                org_id: &e.org_id,
                partition_key: &e.partition_key,
                event_type: e.event_type,
                subject: e.subject.clone(),
                data: e.data.clone(),
            })
            .collect();
        outbox::append_many(conn, events, now).await?;
        for chunk in self.sends.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO broadcast_sends (broadcast_id, recipient_id, step, channel, \
                 message_id, skipped, at) VALUES {}",
                numbered_rows("(?, ?, ?, ?, ?, ?, $1)", chunk.len(), 2)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for r in chunk {
                q = q
                    .bind(r.broadcast_id.as_str())
                    .bind(r.recipient_id.as_str())
                    .bind(r.step)
                    .bind(r.channel)
                    .bind(r.message_id.as_deref())
                    .bind(r.skipped);
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

fn claimed_from_row(r: &AnyRow) -> Result<Claimed, StoreError> {
    let channel: String = r.try_get(2)?;
    Ok(Claimed {
        id: r.try_get(0)?,
        org_id: r.try_get(1)?,
        channel: Channel::parse(&channel).ok_or_else(|| StoreError::Corrupt {
            what: "messages.channel",
            detail: channel.clone(),
        })?,
        to: r.try_get(3)?,
        body: r.try_get(4)?,
        attempts: r.try_get(5)?,
        created_at: r.try_get(6)?,
        content: r.try_get(8)?,
        bulk: r.try_get::<i64, _>(9)? != 0,
        opted_out: r.try_get::<i64, _>(11)? != 0,
    })
}
