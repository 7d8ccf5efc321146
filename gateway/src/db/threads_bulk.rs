//! Contacts' conversations for the bulk writers ([`super::ingest_bulk`] for messages,
//! [`super::calls_bulk`] for call starts, [`super::outbound_bulk`] for broadcast rungs): one read of identity ⋈ conversation for many
//! addresses, one `UPDATE` of the conversations' times, and for addresses never seen, their
//! contacts, identities and open conversations created a table at a time — what
//! [`super::conversations::touch`] does for each. A contact that exists without a
//! conversation (saved through the contacts API), or a conversation that would change
//! state, is the caller's to hand to `touch`, the one path that changes a conversation.
//!
//! A broadcast dispatch round uses it too, through [`super::outbound_bulk`], which also
//! takes the idempotency and opt-out lookups and the message inserts a table at a time. An
//! earlier try (2026-12-02) that prepared only the round's conversations here, leaving the
//! other statements one per rung, measured no gain (BENCHMARKS.md, the broadcast section).

use super::conversations::created_event;
use super::outbox;
use super::sql::{numbered_list, numbered_rows};
use super::{is_postgres, new_id, StoreError};
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use state_machines::conversation;
use state_machines::{ConversationEvent, ConversationState};
use std::collections::HashMap;

/// A contact's conversation, as found.
#[derive(Debug, Clone)]
pub struct Known {
    /// The contact.
    pub contact_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// The conversation's state.
    pub state: ConversationState,
}

impl Known {
    /// Whether `event` leaves the conversation as it is (nothing but its times to write).
    pub fn keeps(&self, event: ConversationEvent) -> bool {
        let (next, effects) =
            conversation::step(self.state, event).unwrap_or((self.state, Vec::new()));
        next == self.state && effects.is_empty()
    }
}

/// The contacts among `addresses` (of one org and channel) that exist and have their
/// conversation, by address. On PostgreSQL the conversations are locked here, in the byte
/// order of their addresses — the order the committer sorts one-at-a-time jobs in — so that
/// writers sharing the database take these locks in one order.
pub async fn find(
    conn: &mut AnyConnection,
    org: &str,
    channel: &str,
    addresses: &[&str],
) -> Result<HashMap<String, Known>, StoreError> {
    let Some(addresses) = distinct(addresses) else {
        return Ok(HashMap::new());
    };
    let lock = if is_postgres(conn) {
        " ORDER BY ci.address COLLATE \"C\" FOR UPDATE OF c"
    } else {
        ""
    };
    let sql = format!(
        "SELECT ci.address, ci.contact_id, c.id, c.status FROM contact_identities ci \
         JOIN conversations c ON c.org_id = ci.org_id AND c.contact_id = ci.contact_id \
         WHERE ci.org_id = $1 AND ci.channel = $2 AND ci.address IN ({}){lock}",
        numbered_list(3, addresses.len())
    );
    let mut out = HashMap::new();
    for r in of_addresses(conn, sql, (org, channel), &addresses).await? {
        let status: String = r.try_get(3)?;
        let state = ConversationState::parse(&status).ok_or_else(|| StoreError::Corrupt {
            what: "conversations.status",
            detail: status.clone(),
        })?;
        let known = Known {
            contact_id: r.try_get(1)?,
            conversation_id: r.try_get(2)?,
            state,
        };
        out.insert(r.try_get(0)?, known);
    }
    Ok(out)
}

/// The addresses sorted, each once; `None` when there are none.
fn distinct<'a>(addresses: &[&'a str]) -> Option<Vec<&'a str>> {
    let mut out = addresses.to_vec();
    out.sort_unstable();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

/// The rows of `sql`, bound to the org (`$1`), the channel (`$2`) and the addresses (`$3…`).
async fn of_addresses(
    conn: &mut AnyConnection,
    sql: String,
    (org, channel): (&str, &str),
    addresses: &[&str],
) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(org).bind(channel);
    for a in addresses {
        q = q.bind(*a);
    }
    Ok(q.fetch_all(&mut *conn).await?)
}

/// Sets the times of the conversations (org, conversation id) to `now`: one statement per
/// org.
pub async fn touch(
    conn: &mut AnyConnection,
    mut touched: Vec<(&str, &str)>,
    now: i64,
) -> Result<(), StoreError> {
    touched.sort_unstable();
    touched.dedup();
    for chunk in touched.chunk_by(|a, b| a.0 == b.0) {
        let sql = format!(
            "UPDATE conversations SET updated_at = $1, last_message_at = $1 \
             WHERE org_id = $2 AND id IN ({})",
            numbered_list(3, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now).bind(chunk[0].0);
        for (_, id) in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// [`find`], then [`create`] for the addresses it did not find: every address's contact and
/// conversation, except a contact saved without a conversation (left to `touch`).
pub async fn find_or_create(
    conn: &mut AnyConnection,
    org: &str,
    channel: &str,
    addresses: &[&str],
    now: i64,
) -> Result<HashMap<String, Known>, StoreError> {
    let mut known = find(conn, org, channel, addresses).await?;
    let new: Vec<&str> = addresses
        .iter()
        .copied()
        .filter(|a| !known.contains_key(*a))
        .collect();
    known.extend(create(conn, org, channel, &new, now).await?);
    Ok(known)
}

/// Of `addresses` (of one org and channel, none found by [`find`]), those no contact has:
/// each gets a contact, its identity and an open conversation (with the conversation's
/// `dartwing.conversation.created.v1`), in one statement per table. Returned by address; an
/// address a contact already has is left out (the caller's `touch` finds it).
pub async fn create(
    conn: &mut AnyConnection,
    org: &str,
    channel: &str,
    addresses: &[&str],
    now: i64,
) -> Result<HashMap<String, Known>, StoreError> {
    let Some(mut addresses) = distinct(addresses) else {
        return Ok(HashMap::new());
    };
    let sql = format!(
        "SELECT address FROM contact_identities WHERE org_id = $1 AND channel = $2 \
         AND address IN ({})",
        numbered_list(3, addresses.len())
    );
    let mut taken = Vec::new();
    for r in of_addresses(conn, sql, (org, channel), &addresses).await? {
        taken.push(r.try_get::<String, _>(0)?);
    }
    addresses.retain(|a| !taken.iter().any(|t| t == a));
    if addresses.is_empty() {
        return Ok(HashMap::new());
    }
    let made: Vec<(&str, Known)> = addresses
        .iter()
        .map(|a| {
            let known = Known {
                contact_id: new_id(),
                conversation_id: new_id(),
                state: ConversationState::Open,
            };
            (*a, known)
        })
        .collect();
    let n = made.len();
    let sql = format!(
        "INSERT INTO contacts (id, org_id, created_at) VALUES {}",
        numbered_rows("(?, $1, $2)", n, 3)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(org).bind(now);
    for (_, k) in &made {
        q = q.bind(k.contact_id.as_str());
    }
    q.execute(&mut *conn).await?;
    let sql = format!(
        "INSERT INTO contact_identities (org_id, channel, address, contact_id, created_at) \
         VALUES {}",
        numbered_rows("($1, $2, ?, ?, $3)", n, 4)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql))
        .bind(org)
        .bind(channel)
        .bind(now);
    for (a, k) in &made {
        q = q.bind(*a).bind(k.contact_id.as_str());
    }
    q.execute(&mut *conn).await?;
    let sql = format!(
        "INSERT INTO conversations (id, org_id, contact_id, status, created_at, updated_at, \
         last_message_at) VALUES {}",
        numbered_rows("(?, $1, ?, 'open', $2, $2, $2)", n, 3)
    );
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(org).bind(now);
    for (_, k) in &made {
        q = q
            .bind(k.conversation_id.as_str())
            .bind(k.contact_id.as_str());
    }
    q.execute(&mut *conn).await?;
    let events = made
        .iter()
        .map(|(_, k)| created_event(org, &k.conversation_id, &k.contact_id))
        .collect();
    outbox::append_many(conn, events, now).await?;
    Ok(made.into_iter().map(|(a, k)| (a.to_owned(), k)).collect())
}
