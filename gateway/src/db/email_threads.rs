//! Email threads inside a contact's conversation. A contact has one conversation across
//! channels (issue 11); email adds threads to it, kept as `thread_id` in each email message's
//! `content`:
//!
//! ```text
//!  inbound email ─▶ its thread_keys (In-Reply-To, References newest first), looked up among
//!                   this conversation's email messages by Message-ID (= provider id)
//!               ─▶ none found: the same normalized subject within SUBJECT_WINDOW_MS, same
//!                   conversation only
//!               ─▶ none found: a new thread, named by its own Message-ID
//! ```
//!
//! Lookups never leave the contact's conversation, so a forwarded mail from someone else,
//! even one quoting our Message-IDs, starts its own thread in its own conversation. Replies we
//! send take `In-Reply-To`/`References` from the contact's latest inbound email
//! ([`reply_content`]).

use super::StoreError;
use channels::email::thread;
use serde_json::{json, Value};
use sqlx::{AnyConnection, AnyPool, Row};

/// How far back the subject fallback looks, ms (30 days).
pub const SUBJECT_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;
/// Most parent ids of one message looked up.
const MAX_KEYS: usize = 20;
/// Most recent messages the subject fallback compares.
const SUBJECT_SCAN: i64 = 200;

fn parse(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// The thread of a stored email message: its `thread_id`, else its own Message-ID.
fn thread_of(content: &Value, provider_id: Option<String>) -> Option<String> {
    content
        .get("thread_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(provider_id)
}

/// Returns the inbound email's `content` with `thread_id` (and `threaded_by`: `references`,
/// `subject` or `new`) filled in. Runs in the ingest transaction, after the conversation is
/// known.
pub async fn assign_inbound(
    conn: &mut AnyConnection,
    org_id: &str,
    conversation_id: &str,
    provider_message_id: &str,
    content: Option<&Value>,
    now: i64,
) -> Result<Option<Value>, StoreError> {
    let Some(mut content) = content.cloned() else {
        return Ok(None);
    };
    let keys: Vec<String> = content
        .get("thread_keys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut found: Option<(String, &str)> = None;
    for key in keys.iter().take(MAX_KEYS) {
        let row = sqlx::query(
            "SELECT content, provider_message_id FROM messages WHERE org_id = $1 \
             AND channel = 'email' AND provider_message_id = $2 AND conversation_id = $3",
        )
        .bind(org_id)
        .bind(key)
        .bind(conversation_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(r) = row {
            let parent = parse(r.try_get(0)?);
            if let Some(t) = thread_of(&parent, r.try_get(1)?) {
                found = Some((t, "references"));
                break;
            }
        }
    }
    let subject_key = content
        .get("subject_key")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if found.is_none() && !subject_key.is_empty() {
        let rows = sqlx::query(
            "SELECT content, provider_message_id FROM messages WHERE org_id = $1 \
             AND conversation_id = $2 AND channel = 'email' AND created_at >= $3 \
             ORDER BY created_at DESC LIMIT $4",
        )
        .bind(org_id)
        .bind(conversation_id)
        .bind(now - SUBJECT_WINDOW_MS)
        .bind(SUBJECT_SCAN)
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            let other = parse(r.try_get(0)?);
            let other_key = other
                .get("subject")
                .and_then(Value::as_str)
                .map(thread::normalize_subject);
            if other_key.as_deref() == Some(subject_key.as_str()) {
                if let Some(t) = thread_of(&other, r.try_get(1)?) {
                    found = Some((t, "subject"));
                    break;
                }
            }
        }
    }
    let (thread_id, how) = found.unwrap_or_else(|| (provider_message_id.to_string(), "new"));
    content["thread_id"] = json!(thread_id);
    content["threaded_by"] = json!(how);
    Ok(Some(content))
}

/// Why a reply's threading could not be worked out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// `conversation_id` names no conversation of this org.
    #[error("field `conversation_id`: no such conversation")]
    NoConversation,
    /// `conversation_id` is another contact's conversation than the recipient's.
    #[error("field `conversation_id`: the recipient is not this conversation's contact")]
    OtherContact,
}

/// The `content` of an email we send to `to`: the subject (the one given, else `Re: ` and the
/// parent's) and, when the contact wrote to us before, `In-Reply-To` and `References` of its
/// latest inbound email (in `conversation_id` when given) and that email's thread.
pub async fn reply_content(
    pool: &AnyPool,
    org_id: &str,
    to: &str,
    conversation_id: Option<&str>,
    subject: Option<&str>,
) -> Result<Result<Value, ReplyError>, StoreError> {
    let own = sqlx::query(
        "SELECT c.id FROM contact_identities i JOIN conversations c \
         ON c.org_id = i.org_id AND c.contact_id = i.contact_id \
         WHERE i.org_id = $1 AND i.channel = 'email' AND i.address = $2",
    )
    .bind(org_id)
    .bind(to)
    .fetch_optional(pool)
    .await?
    .map(|r| r.try_get::<String, _>(0))
    .transpose()?;
    let conversation = match conversation_id {
        Some(c) => {
            if !super::conversations::exists(pool, org_id, c).await? {
                return Ok(Err(ReplyError::NoConversation));
            }
            if own.as_deref() != Some(c) {
                return Ok(Err(ReplyError::OtherContact));
            }
            Some(c.to_string())
        }
        None => own,
    };
    let parent = match &conversation {
        Some(c) => {
            sqlx::query(
                "SELECT provider_message_id, content FROM messages WHERE org_id = $1 \
             AND conversation_id = $2 AND channel = 'email' AND direction = 'inbound' \
             AND kind = 'email' ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .bind(org_id)
            .bind(c)
            .fetch_optional(pool)
            .await?
        }
        None => None,
    };
    let given = subject.map(str::trim).filter(|s| !s.is_empty());
    let Some(parent) = parent else {
        let subject = given.unwrap_or("");
        return Ok(Ok(json!({
            "type": "email", "subject": subject,
            "subject_key": thread::normalize_subject(subject),
        })));
    };
    let parent_id: Option<String> = parent.try_get(0)?;
    let parent_id = parent_id.unwrap_or_default();
    let pc = parse(parent.try_get(1)?);
    let parent_refs: Vec<String> = pc
        .get("references")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let subject = match given {
        Some(s) => s.to_string(),
        None => thread::reply_subject(pc.get("subject").and_then(Value::as_str).unwrap_or("")),
    };
    Ok(Ok(json!({
        "type": "email",
        "subject": subject,
        "subject_key": thread::normalize_subject(&subject),
        "in_reply_to": parent_id,
        "references": thread::references_for_reply(&parent_refs, &parent_id),
        "thread_id": thread_of(&pc, Some(parent_id.clone())),
    })))
}
