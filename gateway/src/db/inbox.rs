//! The inbox's writes, run inside the committer's transaction: agents' commands (assign,
//! unassign, resolve, reopen, mark read) made idempotent by their client id, the round-robin
//! assignment of the queue, and merging two contacts.
//!
//! A command's response is stored in `inbox_commands` in the same transaction as its effect,
//! so a client that retries after a lost ack gets the first answer and nothing happens twice.
//!
//! The queue is the org's open conversations without an assignee. [`assign_queued`] gives each,
//! oldest first, to the online agent (presence: `agents.online_until`) with room under its
//! capacity (open and pending conversations it holds) that was assigned least recently — a
//! round robin that skips full agents. The assignee is a column, so it survives restarts.

use super::conversations::{change_status, StatusChange};
use super::outbox::{self, NewEvent};
use super::{is_postgres, StoreError};
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};
use state_machines::ConversationEvent;

/// What an agent's command asks for.
#[derive(Debug, Clone)]
pub enum CommandKind {
    /// Give the conversation to an agent of the org.
    Assign {
        /// The agent.
        agent_id: String,
    },
    /// Put it back in the queue.
    Unassign,
    /// A conversation-machine event (resolve, reopen).
    Status(ConversationEvent),
    /// The agent has read everything in it up to now.
    Read,
}

/// An inbox write.
#[derive(Debug, Clone)]
pub enum InboxOp {
    /// An agent's command on a conversation.
    Command {
        /// The org.
        org_id: String,
        /// Who.
        agent_id: String,
        /// The client's id of the command (idempotency).
        client_id: String,
        /// The conversation.
        conversation_id: String,
        /// What.
        kind: CommandKind,
    },
    /// Assign the org's queue to online agents with room.
    AssignQueued {
        /// The org.
        org_id: String,
    },
    /// Move everything of contact `from` to contact `into`.
    MergeContacts {
        /// The org.
        org_id: String,
        /// The contact that goes away.
        from: String,
        /// The contact that stays.
        into: String,
    },
}

/// What an inbox write did: the JSON the client is answered with (`ok` false: refused).
#[derive(Debug, Clone, PartialEq)]
pub struct InboxResult {
    /// Whether it was done (or had been done by the same client id).
    pub ok: bool,
    /// The answer's fields (`code` and `message` when refused).
    pub body: Value,
}

fn refused(code: &str, message: impl Into<String>) -> InboxResult {
    InboxResult {
        ok: false,
        body: json!({"code": code, "message": message.into()}),
    }
}

/// Runs one inbox write in the caller's transaction.
pub async fn execute(
    conn: &mut AnyConnection,
    op: &InboxOp,
    now: i64,
) -> Result<InboxResult, StoreError> {
    match op {
        InboxOp::Command {
            org_id,
            agent_id,
            client_id,
            conversation_id,
            kind,
        } => {
            let seen = sqlx::query(
                "SELECT response FROM inbox_commands WHERE agent_id = $1 AND client_id = $2 AND org_id = $3",
            )
            .bind(agent_id)
            .bind(client_id)
            .bind(org_id)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = seen {
                let text: String = row.try_get(0)?;
                let stored: Value =
                    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                        what: "inbox_commands.response",
                        detail: e.to_string(),
                    })?;
                return Ok(InboxResult {
                    ok: stored["ok"].as_bool().unwrap_or(false),
                    body: stored["body"].clone(),
                });
            }
            let result = command(conn, org_id, agent_id, conversation_id, kind, now).await?;
            sqlx::query(
                "INSERT INTO inbox_commands (org_id, agent_id, client_id, response, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(org_id)
            .bind(agent_id)
            .bind(client_id)
            .bind(json!({"ok": result.ok, "body": result.body}).to_string())
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(result)
        }
        InboxOp::AssignQueued { org_id } => {
            let n = assign_queued(conn, org_id, now).await?;
            Ok(InboxResult {
                ok: true,
                body: json!({"assigned": n}),
            })
        }
        InboxOp::MergeContacts { org_id, from, into } => {
            merge_contacts(conn, org_id, from, into, now).await
        }
    }
}

async fn command(
    conn: &mut AnyConnection,
    org_id: &str,
    agent_id: &str,
    conversation_id: &str,
    kind: &CommandKind,
    now: i64,
) -> Result<InboxResult, StoreError> {
    let row = sqlx::query("SELECT assignee_id FROM conversations WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(conversation_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(refused("not_found", "no such conversation"));
    };
    let previous: Option<String> = row.try_get(0)?;
    match kind {
        CommandKind::Assign { agent_id: target } => {
            let known = sqlx::query("SELECT 1 FROM agents WHERE org_id = $1 AND id = $2")
                .bind(org_id)
                .bind(target)
                .fetch_optional(&mut *conn)
                .await?;
            if known.is_none() {
                return Ok(refused("not_found", "no such agent"));
            }
            set_assignee(
                conn,
                org_id,
                conversation_id,
                Some(target.as_str()),
                previous.as_deref(),
                "manual",
                agent_id,
                now,
            )
            .await?;
            Ok(InboxResult {
                ok: true,
                body: json!({"conversation_id": conversation_id, "assignee_id": target}),
            })
        }
        CommandKind::Unassign => {
            set_assignee(
                conn,
                org_id,
                conversation_id,
                None,
                previous.as_deref(),
                "manual",
                agent_id,
                now,
            )
            .await?;
            Ok(InboxResult {
                ok: true,
                body: json!({"conversation_id": conversation_id, "assignee_id": null}),
            })
        }
        CommandKind::Status(event) => Ok(
            match change_status(conn, org_id, conversation_id, *event, now).await? {
                StatusChange::Changed(s) => InboxResult {
                    ok: true,
                    body: json!({"conversation_id": conversation_id, "status": s.as_str()}),
                },
                StatusChange::Refused(e) => refused("invalid_transition", e.to_string()),
                StatusChange::NotFound => refused("not_found", "no such conversation"),
            },
        ),
        CommandKind::Read => {
            sqlx::query(
                "INSERT INTO conversation_reads (org_id, agent_id, conversation_id, read_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id, conversation_id) \
                 DO UPDATE SET read_at = excluded.read_at",
            )
            .bind(org_id)
            .bind(agent_id)
            .bind(conversation_id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            outbox::append(
                conn,
                NewEvent {
                    org_id,
                    partition_key: conversation_id,
                    event_type: "dartwing.conversation.read.v1",
                    subject: format!("conversations/{conversation_id}"),
                    data: json!({"conversation_id": conversation_id, "agent_id": agent_id, "read_at": now}),
                },
                now,
            )
            .await?;
            Ok(InboxResult {
                ok: true,
                body: json!({"conversation_id": conversation_id, "read_at": now}),
            })
        }
    }
}

/// Sets (or clears) the assignee and appends `dartwing.conversation.assigned.v1`: the one
/// place that event is shaped.
#[allow(clippy::too_many_arguments)]
async fn set_assignee(
    conn: &mut AnyConnection,
    org_id: &str,
    conversation_id: &str,
    agent_id: Option<&str>,
    previous: Option<&str>,
    by: &str,
    actor: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE conversations SET assignee_id = $1, assigned_at = $2, updated_at = $2 \
         WHERE org_id = $3 AND id = $4",
    )
    .bind(agent_id)
    .bind(now)
    .bind(org_id)
    .bind(conversation_id)
    .execute(&mut *conn)
    .await?;
    outbox::append(
        conn,
        NewEvent {
            org_id,
            partition_key: conversation_id,
            event_type: "dartwing.conversation.assigned.v1",
            subject: format!("conversations/{conversation_id}"),
            data: json!({
                "conversation_id": conversation_id,
                "agent_id": agent_id,
                "previous_agent_id": previous,
                "by": by,
                "actor": actor,
            }),
        },
        now,
    )
    .await
}

/// Assigns the org's queue (see the module doc); how many conversations were assigned.
pub async fn assign_queued(
    conn: &mut AnyConnection,
    org_id: &str,
    now: i64,
) -> Result<usize, StoreError> {
    if is_postgres(conn) {
        // Every node runs an assigner: one org's rounds take turns, so capacity holds.
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS l")
            .bind(format!("assign:{org_id}"))
            .execute(&mut *conn)
            .await?;
    }
    let rows = sqlx::query(
        "SELECT a.id, a.capacity, a.last_assigned_at, \
         (SELECT COUNT(*) FROM conversations c WHERE c.org_id = a.org_id AND c.assignee_id = a.id \
          AND c.status <> 'resolved') AS load \
         FROM agents a WHERE a.org_id = $1 AND a.online_until > $2",
    )
    .bind(org_id)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    // (last assigned, id, room)
    let mut agents: Vec<(i64, String, i64)> = rows
        .iter()
        .map(|r| {
            let capacity: i64 = r.try_get(1)?;
            let load: i64 = r.try_get(3)?;
            Ok((r.try_get(2)?, r.try_get(0)?, capacity - load))
        })
        .collect::<Result<_, StoreError>>()?;
    agents.retain(|a| a.2 > 0);
    let room: i64 = agents.iter().map(|a| a.2).sum();
    if room == 0 {
        return Ok(0);
    }
    let queue = sqlx::query(
        "SELECT c.id FROM conversations c WHERE c.org_id = $1 AND c.assignee_id IS NULL \
         AND c.status = 'open' AND EXISTS (SELECT 1 FROM messages m WHERE m.org_id = c.org_id \
         AND m.conversation_id = c.id AND m.direction = 'inbound' \
         AND COALESCE(m.kind, '') <> 'auto_reply') \
         ORDER BY c.last_message_at, c.id LIMIT $2",
    )
    .bind(org_id)
    .bind(room)
    .fetch_all(&mut *conn)
    .await?;
    let mut assigned = 0;
    // Each assignment is stamped later than every agent's last one: the agent just served
    // goes to the back of the rotation.
    let mut stamp = agents.iter().map(|a| a.0).max().unwrap_or(0).max(now - 1);
    for row in queue {
        let conversation_id: String = row.try_get(0)?;
        agents.sort();
        let Some(agent) = agents.iter_mut().find(|a| a.2 > 0) else {
            break;
        };
        stamp += 1;
        agent.0 = stamp;
        agent.2 -= 1;
        let agent_id = agent.1.clone();
        set_assignee(
            conn,
            org_id,
            &conversation_id,
            Some(&agent_id),
            None,
            "round_robin",
            "assigner",
            now,
        )
        .await?;
        sqlx::query("UPDATE agents SET last_assigned_at = $1 WHERE org_id = $2 AND id = $3")
            .bind(stamp)
            .bind(org_id)
            .bind(&agent_id)
            .execute(&mut *conn)
            .await?;
        assigned += 1;
    }
    Ok(assigned)
}

/// Moves contact `from`'s identities, conversation, messages and calls to `into`; the history
/// stays (message rows move, they are not copied), and `from` is kept as a tombstone
/// (`merged_into`). One conversation per contact: if both had one, `from`'s messages and
/// calls join `into`'s and `from`'s conversation row goes.
async fn merge_contacts(
    conn: &mut AnyConnection,
    org_id: &str,
    from: &str,
    into: &str,
    now: i64,
) -> Result<InboxResult, StoreError> {
    if from == into {
        return Ok(refused(
            "malformed",
            "a contact cannot be merged into itself",
        ));
    }
    for id in [from, into] {
        let row = sqlx::query(
            "SELECT 1 FROM contacts WHERE org_id = $1 AND id = $2 AND merged_into IS NULL",
        )
        .bind(org_id)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        if row.is_none() {
            return Ok(refused("not_found", format!("no such contact {id}")));
        }
    }
    let from_conv = conversation_of(conn, org_id, from).await?;
    let into_conv = conversation_of(conn, org_id, into).await?;
    sqlx::query(
        "UPDATE contact_identities SET contact_id = $1 WHERE org_id = $2 AND contact_id = $3",
    )
    .bind(into)
    .bind(org_id)
    .bind(from)
    .execute(&mut *conn)
    .await?;
    super::contacts::merge_tags(conn, org_id, from, into).await?;
    let kept = match (&from_conv, &into_conv) {
        (Some(f), Some(i)) => {
            exec_text(
                conn,
                "UPDATE messages SET conversation_id = $1, contact_id = $2 \
                 WHERE org_id = $3 AND conversation_id = $4",
                &[i, into, org_id, f],
            )
            .await?;
            exec_text(
                conn,
                "UPDATE calls SET conversation_id = $1 WHERE org_id = $2 AND conversation_id = $3",
                &[i, org_id, f],
            )
            .await?;
            exec_text(
                conn,
                "DELETE FROM conversation_reads WHERE org_id = $1 AND conversation_id = $2",
                &[org_id, f],
            )
            .await?;
            exec_text(
                conn,
                "UPDATE conversations SET last_message_at = (SELECT MAX(last_message_at) \
                 FROM conversations WHERE org_id = $1 AND id IN ($2, $3)) WHERE org_id = $1 AND id = $3",
                &[org_id, f, i],
            )
            .await?;
            exec_text(
                conn,
                "DELETE FROM conversations WHERE org_id = $1 AND id = $2",
                &[org_id, f],
            )
            .await?;
            Some(i.clone())
        }
        (Some(f), None) => {
            exec_text(
                conn,
                "UPDATE conversations SET contact_id = $1 WHERE org_id = $2 AND id = $3",
                &[into, org_id, f],
            )
            .await?;
            exec_text(
                conn,
                "UPDATE messages SET contact_id = $1 WHERE org_id = $2 AND conversation_id = $3",
                &[into, org_id, f],
            )
            .await?;
            Some(f.clone())
        }
        (None, i) => i.clone(),
    };
    if let Some(kept) = &kept {
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE org_id = $2 AND id = $3")
            .bind(now)
            .bind(org_id)
            .bind(kept)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("UPDATE contacts SET merged_into = $1 WHERE org_id = $2 AND id = $3")
        .bind(into)
        .bind(org_id)
        .bind(from)
        .execute(&mut *conn)
        .await?;
    let body = json!({
        "from_contact_id": from,
        "into_contact_id": into,
        "from_conversation_id": from_conv,
        "conversation_id": kept,
    });
    outbox::append(
        conn,
        NewEvent {
            org_id,
            partition_key: kept.as_deref().unwrap_or(into),
            event_type: "dartwing.contact.merged.v1",
            subject: format!("contacts/{into}"),
            data: body.clone(),
        },
        now,
    )
    .await?;
    Ok(InboxResult { ok: true, body })
}

/// Runs one statement whose parameters are all text.
async fn exec_text(
    conn: &mut AnyConnection,
    sql: &'static str,
    args: &[&str],
) -> Result<(), StoreError> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = q.bind(*a);
    }
    q.execute(conn).await?;
    Ok(())
}

async fn conversation_of(
    conn: &mut AnyConnection,
    org_id: &str,
    contact_id: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT id FROM conversations WHERE org_id = $1 AND contact_id = $2")
        .bind(org_id)
        .bind(contact_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| r.try_get(0).map_err(StoreError::from))
        .transpose()
}
