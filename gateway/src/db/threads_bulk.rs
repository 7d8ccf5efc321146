//! Known contacts' conversations for the bulk writers ([`super::ingest_bulk`] for messages,
//! [`super::calls_bulk`] for call starts): one read of identity ⋈ conversation for many
//! addresses, and one `UPDATE` of the conversations' times — what
//! [`super::conversations::touch`] does for a contact that exists and whose conversation
//! keeps its state. A contact or conversation that does not exist yet, or a conversation that
//! would change state, is the caller's to hand to `touch`, the one path that creates and
//! changes.

use super::sql::numbered_list;
use super::{is_postgres, StoreError};
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
    let mut addresses = addresses.to_vec();
    addresses.sort_unstable();
    addresses.dedup();
    if addresses.is_empty() {
        return Ok(HashMap::new());
    }
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
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(org).bind(channel);
    for a in &addresses {
        q = q.bind(*a);
    }
    let mut out = HashMap::new();
    for r in q.fetch_all(&mut *conn).await? {
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
