//! The inbox's reads: the conversation list an agent sees (unread counts, channel, queue,
//! assignee, last message), where a reply goes, the org's head sequence, and full-text search
//! over message bodies — FTS5 on SQLite, a `tsvector` expression index on PostgreSQL, both
//! matching whole words without stemming so the two backends answer alike.

use super::conversations::{identities, Identity};
use super::{Backend, Db, StoreError};
use serde::Serialize;
use sqlx::{AnyPool, Row};

/// A conversation as the inbox lists it.
#[derive(Debug, Clone, Serialize)]
pub struct InboxConversation {
    /// Its id.
    pub id: String,
    /// The contact.
    pub contact_id: String,
    /// `open`, `pending` or `resolved`.
    pub status: String,
    /// Who has it (`None`: it waits in the queue, when open).
    pub assignee_id: Option<String>,
    /// Last message, Unix ms.
    pub last_message_at: i64,
    /// Inbound messages newer than this agent's read mark.
    pub unread: i64,
    /// The channel of the last message.
    pub channel: Option<String>,
    /// The last message's text.
    pub preview: Option<String>,
    /// The contact's identities.
    pub identities: Vec<Identity>,
}

/// The org's last numbered event (0 before any): a client that loads a snapshot after reading
/// this and then streams from it misses nothing.
pub async fn head_seq(pool: &AnyPool, org_id: &str) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT next_seq - 1 FROM orgs WHERE id = $1")
        .bind(org_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
}

/// The org's conversations, most recent first, as `agent_id` sees them.
pub async fn conversations(
    pool: &AnyPool,
    org_id: &str,
    agent_id: &str,
    limit: i64,
) -> Result<Vec<InboxConversation>, StoreError> {
    let rows = sqlx::query(
        "SELECT c.id, c.contact_id, c.status, c.assignee_id, c.last_message_at, \
         (SELECT COUNT(*) FROM messages m WHERE m.org_id = c.org_id AND m.conversation_id = c.id \
            AND m.direction = 'inbound' AND m.created_at > COALESCE((SELECT r.read_at \
            FROM conversation_reads r WHERE r.agent_id = $2 AND r.conversation_id = c.id), 0)) AS unread, \
         (SELECT m.channel FROM messages m WHERE m.org_id = c.org_id AND m.conversation_id = c.id \
            ORDER BY m.created_at DESC, m.id DESC LIMIT 1) AS channel, \
         (SELECT m.body FROM messages m WHERE m.org_id = c.org_id AND m.conversation_id = c.id \
            ORDER BY m.created_at DESC, m.id DESC LIMIT 1) AS preview \
         FROM conversations c WHERE c.org_id = $1 \
         ORDER BY c.last_message_at DESC, c.id DESC LIMIT $3",
    )
    .bind(org_id)
    .bind(agent_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let contact_id: String = r.try_get(1)?;
        out.push(InboxConversation {
            id: r.try_get(0)?,
            identities: identities(pool, org_id, &contact_id).await?,
            contact_id,
            status: r.try_get(2)?,
            assignee_id: r.try_get(3)?,
            last_message_at: r.try_get(4)?,
            unread: r.try_get(5)?,
            channel: r.try_get(6)?,
            preview: r.try_get(7)?,
        });
    }
    Ok(out)
}

/// Where a reply in a conversation goes: `(channel, address)` — the last inbound message's
/// channel and sender, or the contact's identity on `channel` when one is named. `None` when
/// the conversation is not the org's or has no such address.
pub async fn reply_target(
    pool: &AnyPool,
    org_id: &str,
    conversation_id: &str,
    channel: Option<&str>,
) -> Result<Option<(String, String)>, StoreError> {
    let row = match channel {
        None => {
            sqlx::query(
                "SELECT channel, from_addr FROM messages WHERE org_id = $1 AND conversation_id = $2 \
                 AND direction = 'inbound' ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .bind(org_id)
            .bind(conversation_id)
            .fetch_optional(pool)
            .await?
        }
        Some(ch) => {
            sqlx::query(
                "SELECT i.channel, i.address FROM contact_identities i JOIN conversations c \
                 ON c.contact_id = i.contact_id AND c.org_id = i.org_id \
                 WHERE c.org_id = $1 AND c.id = $2 AND i.channel = $3 ORDER BY i.created_at DESC LIMIT 1",
            )
            .bind(org_id)
            .bind(conversation_id)
            .bind(ch)
            .fetch_optional(pool)
            .await?
        }
    };
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// One search hit.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    /// The message.
    pub message_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Its channel.
    pub channel: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// The text.
    pub body: String,
    /// Created, Unix ms.
    pub created_at: i64,
}

/// The words of a query, as both backends' tokenizers split them (letters and digits).
pub fn query_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(str::to_lowercase)
        .collect()
}

/// Messages of the org containing every word of `q`, best first.
pub async fn search(
    db: &Db,
    org_id: &str,
    q: &str,
    limit: i64,
) -> Result<Vec<SearchHit>, StoreError> {
    let words = query_words(q);
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let (sql, arg) = match db.backend {
        Backend::Sqlite => (
            "SELECT m.id, m.conversation_id, m.channel, m.direction, m.body, m.created_at \
             FROM messages_fts JOIN messages m ON m.id = messages_fts.message_id \
             WHERE messages_fts MATCH $1 AND messages_fts.org_id = $2 AND m.org_id = $2 \
             ORDER BY messages_fts.rank, m.created_at DESC LIMIT $3",
            // Each word quoted: FTS5 query syntax (NEAR, -, *) in user input stays literal.
            words
                .iter()
                .map(|w| format!("\"{w}\""))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Backend::Postgres => (
            "SELECT m.id, m.conversation_id, m.channel, m.direction, m.body, m.created_at \
             FROM messages m, plainto_tsquery('simple', $1) AS q \
             WHERE m.org_id = $2 AND to_tsvector('simple', m.body) @@ q \
             ORDER BY ts_rank(to_tsvector('simple', m.body), q) DESC, m.created_at DESC LIMIT $3",
            words.join(" "),
        ),
    };
    let rows = sqlx::query(sql)
        .bind(arg)
        .bind(org_id)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SearchHit {
                message_id: r.try_get(0)?,
                conversation_id: r.try_get(1)?,
                channel: r.try_get(2)?,
                direction: r.try_get(3)?,
                body: r.try_get(4)?,
                created_at: r.try_get(5)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_words_drop_syntax() {
        assert_eq!(
            query_words("Refund NEAR(\"order\" -42)*"),
            vec!["refund", "near", "order", "42"]
        );
        assert!(query_words(" -*\" ").is_empty());
    }
}
