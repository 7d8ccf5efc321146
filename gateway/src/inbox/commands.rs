//! The commands an agent sends on its socket, each with a client id `id` and answered
//! `{"type":"ack","id":…,…}` only after its effect is committed, or `{"type":"error","id":…,
//! "code":…,"message":…}`. A retry with the same id gets the same answer and changes nothing:
//! a reply is an outbound message whose idempotency key is the agent and the client id; the
//! other commands store their answer with their effect ([`crate::db::inbox`]).
//!
//! | `type` | fields | does |
//! |---|---|---|
//! | `reply` | `conversation_id`, `body`, `channel`? | queues a message on the last inbound channel (or `channel`) |
//! | `assign` | `conversation_id`, `agent_id`? | assigns to `agent_id` (default: oneself) |
//! | `unassign` | `conversation_id` | back to the queue |
//! | `resolve` / `reopen` | `conversation_id` | moves the conversation machine |
//! | `read` | `conversation_id` | marks it read up to now for this agent |
//! | `typing` | `conversation_id` | tells the org's other sockets on this node (not stored) |
//! | `ping` | — | `{"type":"pong"}` |

use crate::api::State;
use crate::commit::{CommitError, WriteOp, WriteResult};
use crate::db::agents::Agent;
use crate::db::inbox::{CommandKind, InboxOp};
use crate::db::inbox_views;
use crate::db::messages::{Created, NewOutbound};
use serde::Deserialize;
use serde_json::{json, Value};
use state_machines::{Channel, ConversationEvent};

/// Longest reply, as for `POST /api/v1/messages`.
const MAX_BODY_CHARS: usize = 1600;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Command {
    Ping {
        #[serde(default)]
        id: Option<Value>,
    },
    Reply {
        id: String,
        conversation_id: String,
        body: String,
        #[serde(default)]
        channel: Option<String>,
    },
    Assign {
        id: String,
        conversation_id: String,
        #[serde(default)]
        agent_id: Option<String>,
    },
    Unassign {
        id: String,
        conversation_id: String,
    },
    Resolve {
        id: String,
        conversation_id: String,
    },
    Reopen {
        id: String,
        conversation_id: String,
    },
    Read {
        id: String,
        conversation_id: String,
    },
    Typing {
        id: String,
        conversation_id: String,
    },
}

fn error(id: Option<&str>, code: &str, message: impl Into<String>) -> Value {
    json!({"type": "error", "id": id, "code": code, "message": message.into()})
}

fn ack(id: &str, mut fields: Value) -> Value {
    if let Some(obj) = fields.as_object_mut() {
        obj.insert("type".into(), "ack".into());
        obj.insert("id".into(), id.into());
    }
    fields
}

/// Handles one text frame; the answer to send, if any.
pub async fn handle(state: &State, agent: &Agent, text: &str) -> Option<Value> {
    let raw: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Some(error(None, "malformed", format!("not JSON: {e}"))),
    };
    let id = raw.get("id").and_then(Value::as_str).map(str::to_string);
    let cmd: Command = match serde_json::from_value(raw) {
        Ok(c) => c,
        Err(e) => return Some(error(id.as_deref(), "malformed", e.to_string())),
    };
    if let Some(id) = &id {
        if id.is_empty() || id.len() > 128 {
            return Some(error(
                Some(id),
                "malformed",
                "`id` must be 1 to 128 characters",
            ));
        }
    }
    let (id, conversation_id, kind) = match cmd {
        Command::Ping { id } => return Some(json!({"type": "pong", "id": id})),
        Command::Reply {
            id,
            conversation_id,
            body,
            channel,
        } => return Some(reply(state, agent, &id, &conversation_id, body, channel).await),
        Command::Typing {
            id,
            conversation_id,
        } => {
            if !crate::db::conversations::exists(&state.db.pool, &agent.org_id, &conversation_id)
                .await
                .unwrap_or(false)
            {
                return Some(error(Some(&id), "not_found", "no such conversation"));
            }
            let _ = state.inbox.typing.send(super::Typing {
                org_id: agent.org_id.clone(),
                agent_id: agent.id.clone(),
                conversation_id: conversation_id.clone(),
            });
            return Some(ack(&id, json!({"conversation_id": conversation_id})));
        }
        Command::Assign {
            id,
            conversation_id,
            agent_id,
        } => (
            id,
            conversation_id,
            CommandKind::Assign {
                agent_id: agent_id.unwrap_or_else(|| agent.id.clone()),
            },
        ),
        Command::Unassign {
            id,
            conversation_id,
        } => (id, conversation_id, CommandKind::Unassign),
        Command::Resolve {
            id,
            conversation_id,
        } => (
            id,
            conversation_id,
            CommandKind::Status(ConversationEvent::Resolve),
        ),
        Command::Reopen {
            id,
            conversation_id,
        } => (
            id,
            conversation_id,
            CommandKind::Status(ConversationEvent::Reopen),
        ),
        Command::Read {
            id,
            conversation_id,
        } => (id, conversation_id, CommandKind::Read),
    };
    let action = match &kind {
        CommandKind::Assign { .. } => "inbox.assign",
        CommandKind::Unassign => "inbox.unassign",
        CommandKind::Status(ConversationEvent::Resolve) => "inbox.resolve",
        CommandKind::Status(_) => "inbox.reopen",
        CommandKind::Read => "",
    };
    // Every agent action but marking as read goes to the audit log (read receipts are state
    // the conversation keeps itself).
    if !action.is_empty() {
        let detail = match &kind {
            CommandKind::Assign { agent_id } => json!({"agent_id": agent_id}),
            _ => json!({}),
        };
        crate::db::audit::record_later(
            &state.db.pool,
            crate::db::audit::Entry {
                org_id: Some(&agent.org_id),
                actor: &format!("agent:{}", agent.email),
                action,
                target: Some(&conversation_id),
                detail,
                source: None,
            },
        );
    }
    let op = WriteOp::Inbox(InboxOp::Command {
        org_id: agent.org_id.clone(),
        agent_id: agent.id.clone(),
        client_id: id.clone(),
        conversation_id,
        kind,
    });
    Some(match state.committer.submit(op).await {
        Ok(WriteResult::Inbox(r)) if r.ok => {
            if matches!(r.body.get("assignee_id"), Some(Value::Null))
                || r.body.get("status").and_then(Value::as_str) == Some("resolved")
            {
                // Capacity freed: the queue may move.
                state.inbox.assign_wake.notify_one();
            }
            ack(&id, r.body)
        }
        Ok(WriteResult::Inbox(r)) => error(
            Some(&id),
            r.body["code"].as_str().unwrap_or("refused"),
            r.body["message"].as_str().unwrap_or_default(),
        ),
        Ok(_) => error(Some(&id), "internal", "unexpected write result"),
        Err(e) => commit_error(&id, e),
    })
}

fn commit_error(id: &str, e: CommitError) -> Value {
    match e {
        CommitError::Overloaded | CommitError::Closed => {
            error(Some(id), "overloaded", "try again; nothing was done")
        }
        CommitError::Store(s) => {
            tracing::error!(error = %s, "inbox command failed");
            error(Some(id), "internal", "nothing was done")
        }
    }
}

async fn reply(
    state: &State,
    agent: &Agent,
    id: &str,
    conversation_id: &str,
    body: String,
    channel: Option<String>,
) -> Value {
    if body.trim().is_empty() {
        return error(Some(id), "malformed", "`body` must not be empty");
    }
    crate::db::audit::record_later(
        &state.db.pool,
        crate::db::audit::Entry {
            org_id: Some(&agent.org_id),
            actor: &format!("agent:{}", agent.email),
            action: "inbox.reply",
            target: Some(conversation_id),
            detail: json!({"channel": channel, "chars": body.chars().count()}),
            source: None,
        },
    );
    if body.chars().count() > MAX_BODY_CHARS {
        return error(
            Some(id),
            "malformed",
            format!("`body` is longer than {MAX_BODY_CHARS} characters"),
        );
    }
    if let Some(ch) = &channel {
        if Channel::parse(ch).is_none() {
            return error(Some(id), "malformed", format!("unknown channel `{ch}`"));
        }
    }
    let target = inbox_views::reply_target(
        &state.db.pool,
        &agent.org_id,
        conversation_id,
        channel.as_deref(),
    )
    .await;
    let (channel, to) = match target {
        Ok(Some((c, to))) => match Channel::parse(&c) {
            Some(c) => (c, to),
            None => return error(Some(id), "internal", "stored channel is unknown"),
        },
        Ok(None)
            if crate::db::conversations::exists(&state.db.pool, &agent.org_id, conversation_id)
                .await
                .unwrap_or(false) =>
        {
            return error(
                Some(id),
                "no_address",
                "the contact has no address on that channel",
            )
        }
        Ok(None) => return error(Some(id), "not_found", "no such conversation"),
        Err(e) => {
            tracing::error!(error = %e, "reply lookup failed");
            return error(Some(id), "internal", "nothing was done");
        }
    };
    let daily_cap =
        match crate::db::org_settings::check_send(&state.db.pool, &agent.org_id, channel.as_str())
            .await
        {
            Ok(Ok(cap)) => cap,
            Ok(Err(refusal)) => {
                let e = crate::api::ApiError::from(refusal);
                return error(Some(id), e.code(), e.message());
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the org's settings failed");
                return error(Some(id), "internal", "nothing was done");
            }
        };
    let Some((_, plugin)) = state.plugins.for_channel(&agent.org_id, channel).await else {
        return error(
            Some(id),
            "channel_not_configured",
            format!("no {} account is configured", channel.as_str()),
        );
    };
    // The channel's plugin judges the text (length, and whether it needs an open
    // customer-service window, as free-form WhatsApp does).
    // Email replies thread on the contact's latest inbound email of this conversation.
    let content = if channel == Channel::Email {
        let pool = &state.db.pool;
        let conv = Some(conversation_id);
        match crate::db::email_threads::reply_content(pool, &agent.org_id, &to, conv, None).await {
            Ok(Ok(c)) => Some(c),
            _ => None,
        }
    } else {
        None
    };
    let rules = match plugin.check_outbound(&body, content.as_ref()) {
        Ok(rules) => rules,
        Err(e) => return error(Some(id), "malformed", e),
    };
    let op = WriteOp::CreateOutbound {
        org_id: agent.org_id.clone(),
        req: NewOutbound {
            channel,
            from: plugin.sender_address(),
            to,
            body,
            content: content.map(|c| c.to_string()),
            needs_service_window: rules.needs_service_window,
            idempotency_key: Some(format!("ws:{}:{id}", agent.id)),
            bulk: false,
            daily_cap,
            attachments: Vec::new(),
        },
    };
    match state.committer.submit(op).await {
        Ok(WriteResult::Created(created)) => match created {
            Created::Queued {
                id: message_id,
                conversation_id,
            } => {
                state.send_wake.notify_one();
                ack(
                    id,
                    json!({"message_id": message_id, "conversation_id": conversation_id, "status": "queued"}),
                )
            }
            Created::Existing {
                id: message_id,
                conversation_id,
            } => ack(
                id,
                json!({"message_id": message_id, "conversation_id": conversation_id, "replayed": true}),
            ),
            Created::KeyReused => error(
                Some(id),
                "id_reused",
                "this command id was used for a different reply",
            ),
            Created::OptedOut => error(
                Some(id),
                "recipient_opted_out",
                "the contact replied STOP on this channel",
            ),
            Created::DayLimitReached { cap } => {
                let refusal = crate::db::org_settings::Refusal::day_limit(cap, crate::db::now_ms());
                let e = crate::api::ApiError::from(refusal);
                error(Some(id), e.code(), e.message())
            }
            Created::OutsideWindow { .. } => error(
                Some(id),
                "outside_customer_service_window",
                "the contact's customer-service window is closed; only a template may be sent",
            ),
        },
        Ok(_) => error(Some(id), "internal", "unexpected write result"),
        Err(e) => commit_error(id, e),
    }
}
