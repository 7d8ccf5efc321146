//! Plain inbound messages in bulk: a run of a batch's inbound jobs stored with one statement
//! per table instead of about six per message (#16: on PostgreSQL each statement is a
//! loopback round trip, on SQLite a hand-off to sqlx's SQLite thread).
//!
//! "Plain" is the common case, decided before anything is read: a message with no
//! attachments to fetch, no reply reference, no email threading, no STOP/START and nothing
//! that could acknowledge a broadcast ([`is_plain`]). Of those, the ones whose conversation
//! exists and keeps its state, or whose sender was never seen, are written here:
//!
//! ```text
//!  SELECT existing ids (dedupe)            ┐ one statement per (org, channel) of the run
//!  SELECT identity ⋈ conversation          ┘ (locked in contact order on PostgreSQL)
//!  SELECT identities, INSERT contacts,     ┐ only when the run has senders never seen
//!  identities, conversations               ┘ (threads_bulk::create)
//!  UPDATE conversations … WHERE id IN (…)    one per org
//!  INSERT INTO messages VALUES (…), (…) …    one per 100 messages
//!  INSERT INTO service_windows … ON CONFLICT one, when WhatsApp opened windows
//!  INSERT INTO outbox VALUES (…), (…) …      one per 100 events
//! ```
//!
//! Everything else — a contact saved without a conversation, a conversation that reopens, a
//! message that repeats one stored one at a time in the same run — is answered `None` and
//! the caller stores it with [`super::ingest::message`], the one path that changes a
//! conversation. A contact's messages all go one way, so one contact's messages keep their
//! order.

use super::conversations::Thread;
use super::ingest::{Ingested, Received};
use super::outbox::{self, NewEvent};
use super::sql::{numbered_list, numbered_rows};
use super::threads_bulk::{self, Known};
use super::{new_id, StoreError};
use channels::sms::keywords::Keyword;
use channels::InboundMessage;
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use state_machines::{Channel, ConversationEvent};
use std::collections::{HashMap, HashSet};

/// Messages [`messages`] takes at once.
pub const MAX_BULK: usize = 100;

/// One inbound message of a run: the org it came to, and the message.
pub type Plain<'a> = (&'a str, &'a InboundMessage);

/// Whether `msg` may be stored in bulk: it writes nothing but its row, its conversation's
/// times, its event and (WhatsApp) its service window.
pub fn is_plain(msg: &InboundMessage) -> bool {
    msg.media.is_empty()
        && msg.reply_to.is_none()
        && msg.channel != Channel::Email
        && !matches!(msg.keyword, Some(Keyword::OptOut | Keyword::OptIn))
        && !(matches!(msg.channel, Channel::Sms | Channel::Whatsapp)
            && super::broadcast_replies::acknowledges(&msg.body, msg.content.as_ref()))
}

/// (org, channel, address): one contact identity.
type Who<'a> = (&'a str, &'a str, &'a str);

/// (org, channel, provider's id): one inbound message, as deduplicated.
type Key<'a> = (&'a str, &'a str, &'a str);

/// A stored message: (our id, its conversation).
type Stored = (String, String);

/// Stores a run of plain messages ([`is_plain`], at most [`MAX_BULK`]) inside the caller's
/// transaction. One answer per message, in order: `Some` when it was stored (or found to be
/// a duplicate), `None` when the caller must store it one at a time.
pub async fn messages(
    conn: &mut AnyConnection,
    items: &[Plain<'_>],
    now: i64,
) -> Result<Vec<Option<Ingested>>, StoreError> {
    let mut groups: Vec<(&str, &str, Vec<usize>)> = Vec::new();
    for (i, (org, msg)) in items.iter().enumerate() {
        let channel = msg.channel.as_str();
        match groups.iter_mut().find(|g| g.0 == *org && g.1 == channel) {
            Some(g) => g.2.push(i),
            None => groups.push((org, channel, vec![i])),
        }
    }
    let mut stored: HashMap<(&str, &str, String), Stored> = HashMap::new();
    let mut found: Threads<'_> = HashMap::new();
    for (org, channel, members) in &groups {
        stored.extend(existing(conn, org, channel, items, members).await?);
        let senders: Vec<&str> = members.iter().map(|&i| items[i].1.from.as_str()).collect();
        let known = threads_bulk::find_or_create(conn, org, channel, &senders, now).await?;
        found.insert((*org, *channel), known);
    }
    // A contact goes in bulk only if it exists, has its conversation, and none of its
    // messages here would change that conversation's state.
    let mut slow: HashSet<Who<'_>> = HashSet::new();
    for (org, msg) in items {
        let who = (*org, msg.channel.as_str(), msg.from.as_str());
        if !known(&found, who).is_some_and(|k| k.keeps(event_of(msg))) {
            slow.insert(who);
        }
    }
    let mut answers: Vec<Option<Ingested>> = Vec::with_capacity(items.len());
    let mut fresh: Vec<(usize, String, Thread)> = Vec::new();
    let mut taken: HashMap<Key<'_>, Option<Stored>> = HashMap::new();
    for (i, (org, msg)) in items.iter().enumerate() {
        let channel = msg.channel.as_str();
        let key = (*org, channel, msg.provider_message_id.as_str());
        let duplicate_of = match stored.get(&(key.0, key.1, key.2.to_owned())) {
            Some(found) => Some(Some(found.clone())),
            None => taken.get(&key).cloned(),
        };
        let answer = match duplicate_of {
            // Stored before, or earlier in this run.
            Some(Some((message_id, conversation_id))) => Some(Ingested {
                message_id,
                conversation_id,
                duplicate: true,
                keyword: None,
                media_pending: false,
            }),
            // Repeats one that goes one at a time: it follows it there.
            Some(None) => None,
            None => {
                let who = (*org, channel, msg.from.as_str());
                if slow.contains(&who) {
                    taken.insert(key, None);
                    None
                } else {
                    let k = known(&found, who).expect("a contact not slow is known");
                    let conversation_id = &k.conversation_id;
                    let id = new_id();
                    taken.insert(key, Some((id.clone(), conversation_id.clone())));
                    let thread = Thread {
                        contact_id: k.contact_id.clone(),
                        conversation_id: conversation_id.clone(),
                    };
                    fresh.push((i, id.clone(), thread));
                    Some(Ingested {
                        message_id: id,
                        conversation_id: conversation_id.clone(),
                        duplicate: false,
                        keyword: msg.keyword,
                        media_pending: false,
                    })
                }
            }
        };
        answers.push(answer);
    }
    if !fresh.is_empty() {
        write(conn, items, &fresh, now).await?;
    }
    Ok(answers)
}

/// The known contacts' conversations of the run, by (org, channel) and address.
type Threads<'a> = HashMap<(&'a str, &'a str), HashMap<String, Known>>;

fn known<'m, 'a>(found: &'m Threads<'a>, who: Who<'a>) -> Option<&'m Known> {
    found.get(&(who.0, who.1)).and_then(|k| k.get(who.2))
}

/// The conversation machine's event for an inbound message: an automatic one (out-of-office,
/// bulk mail) reopens nothing.
fn event_of(msg: &InboundMessage) -> ConversationEvent {
    if msg.kind == channels::AUTO_REPLY_KIND {
        ConversationEvent::AutoReply
    } else {
        ConversationEvent::Inbound
    }
}

/// The group's messages already stored: (org, channel, provider id) → (id, conversation).
async fn existing<'a>(
    conn: &mut AnyConnection,
    org: &'a str,
    channel: &'a str,
    items: &[Plain<'_>],
    members: &[usize],
) -> Result<Vec<((&'a str, &'a str, String), Stored)>, StoreError> {
    let sql = format!(
        "SELECT provider_message_id, id, conversation_id FROM messages WHERE org_id = $1 \
         AND channel = $2 AND direction = 'inbound' AND provider_message_id IN ({})",
        numbered_list(3, members.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(org).bind(channel);
    for &i in members {
        q = q.bind(items[i].1.provider_message_id.as_str());
    }
    let mut out = Vec::new();
    for r in q.fetch_all(&mut *conn).await? {
        let pid: String = r.try_get(0)?;
        out.push(((org, channel, pid), (r.try_get(1)?, r.try_get(2)?)));
    }
    Ok(out)
}

/// Writes the fresh messages: their conversations' times, their rows, WhatsApp's service
/// windows, their events — what `ingest::message` writes for each, a table at a time.
async fn write(
    conn: &mut AnyConnection,
    items: &[Plain<'_>],
    fresh: &[(usize, String, Thread)],
    now: i64,
) -> Result<(), StoreError> {
    let touched = fresh
        .iter()
        .map(|(i, _, t)| (items[*i].0, t.conversation_id.as_str()))
        .collect();
    threads_bulk::touch(conn, touched, now).await?;
    let no_media = serde_json::Value::Array(Vec::new());
    for chunk in fresh.chunks(MAX_BULK) {
        let sql = format!(
            "INSERT INTO messages (id, org_id, conversation_id, contact_id, channel, direction, \
             provider_message_id, from_addr, to_addr, body, media, status, created_at, \
             updated_at, kind, content) VALUES {}",
            numbered_rows(
                "(?, ?, ?, ?, ?, 'inbound', ?, ?, ?, ?, '[]', 'received', $1, $1, ?, ?)",
                chunk.len(),
                2
            )
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for (i, id, thread) in chunk {
            let (org, msg) = items[*i];
            q = q
                .bind(id.as_str())
                .bind(org)
                .bind(thread.conversation_id.as_str())
                .bind(thread.contact_id.as_str())
                .bind(msg.channel.as_str())
                .bind(msg.provider_message_id.as_str())
                .bind(msg.from.as_str())
                .bind(msg.to.as_str())
                .bind(msg.body.as_str())
                .bind(msg.kind.as_str())
                .bind(msg.content.as_ref().map(|c| c.to_string()));
        }
        q.execute(&mut *conn).await?;
    }
    open_windows(conn, items, fresh, now).await?;
    let events: Vec<NewEvent<'_>> = fresh
        .iter()
        .map(|(i, id, thread)| {
            let (org, msg) = items[*i];
            let received = Received {
                id,
                thread,
                media: &no_media,
                content: msg.content.as_ref(),
                reply_to_message_id: None,
            };
            received.event(org, msg)
        })
        .collect();
    outbox::append_many(conn, events, now).await
}

/// The service windows the fresh messages open, in one upsert (each address once, with its
/// latest closing time: one statement may not update a row twice).
async fn open_windows(
    conn: &mut AnyConnection,
    items: &[Plain<'_>],
    fresh: &[(usize, String, Thread)],
    now: i64,
) -> Result<(), StoreError> {
    let mut windows: HashMap<Who<'_>, i64> = HashMap::new();
    for (i, _, _) in fresh {
        let (org, msg) = items[*i];
        if let Some(window) = msg.opens_window {
            let closes_at = now + window.as_millis() as i64;
            let who = (org, msg.channel.as_str(), msg.from.as_str());
            let at = windows.entry(who).or_insert(closes_at);
            *at = (*at).max(closes_at);
        }
    }
    if windows.is_empty() {
        return Ok(());
    }
    let mut windows: Vec<(Who<'_>, i64)> = windows.into_iter().collect();
    windows.sort_unstable();
    let sql = format!(
        "INSERT INTO service_windows (org_id, channel, address, closes_at) VALUES {} \
         ON CONFLICT (org_id, channel, address) DO UPDATE SET closes_at = \
         CASE WHEN service_windows.closes_at > excluded.closes_at \
         THEN service_windows.closes_at ELSE excluded.closes_at END",
        numbered_rows("(?, ?, ?, ?)", windows.len(), 1)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for ((org, channel, address), closes_at) in windows {
        q = q.bind(org).bind(channel).bind(address).bind(closes_at);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}
