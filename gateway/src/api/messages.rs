//! Messages, conversations and the event feed of API v1.

use super::{ApiError, OrgAuth, State};
use crate::commit::{WriteOp, WriteResult};
use crate::db::message_views;
use crate::db::messages::{Created, NewOutbound};
use crate::db::{conversations, outbox};
use crate::events::envelope;
use crate::telemetry::MessageCounted;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use state_machines::Channel;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    channel: String,
    to: String,
    #[serde(default)]
    body: String,
    /// Structured content in the provider's shape (WhatsApp media, buttons, templates).
    #[serde(default)]
    content: Option<serde_json::Value>,
    /// Email: the subject (default: `Re: ` and the subject of the contact's latest email).
    #[serde(default)]
    subject: Option<String>,
    /// Email: the conversation whose latest inbound email the message answers (default: the
    /// recipient's conversation).
    #[serde(default)]
    conversation_id: Option<String>,
    /// Email: an HTML version of `body`, sent beside it as multipart/alternative (sanitised
    /// first: scripts, handlers, forms and remote images are removed).
    #[serde(default)]
    html: Option<String>,
    /// Email: files to attach.
    #[serde(default)]
    attachments: Option<Vec<AttachmentIn>>,
}

/// A file to attach, as the API takes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentIn {
    filename: String,
    content_type: String,
    /// The bytes, base64 (standard alphabet, padded).
    content_base64: String,
}

/// Decodes and checks the files to attach; their list for `content.attachments` beside them.
fn attachments(
    given: &[AttachmentIn],
) -> Result<(Vec<channels::OutboundAttachment>, Vec<serde_json::Value>), ApiError> {
    use base64::Engine;
    use channels::email::smtp::{check_attachment, MAX_ATTACHMENTS_OUT, MAX_ATTACHMENT_BYTES_OUT};
    use sha2::Digest;
    if given.len() > MAX_ATTACHMENTS_OUT {
        return Err(ApiError::bad_request(format!(
            "field `attachments`: at most {MAX_ATTACHMENTS_OUT} files"
        )));
    }
    let (mut files, mut listed, mut total) = (Vec::new(), Vec::new(), 0usize);
    for a in given {
        let data = base64::engine::general_purpose::STANDARD
            .decode(a.content_base64.trim())
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "field `attachments`: `{}` is not base64: {e}",
                    a.filename
                ))
            })?;
        check_attachment(&a.filename, &a.content_type, data.len())
            .map_err(|e| ApiError::bad_request(format!("field `attachments`: {e}")))?;
        total += data.len();
        if total > MAX_ATTACHMENT_BYTES_OUT {
            return Err(ApiError::bad_request(format!(
                "field `attachments`: more than {MAX_ATTACHMENT_BYTES_OUT} bytes in all"
            )));
        }
        listed.push(serde_json::json!({
            "filename": a.filename, "content_type": a.content_type, "size": data.len(),
            "sha256": hex::encode(sha2::Sha256::digest(&data)),
        }));
        files.push(channels::OutboundAttachment {
            filename: a.filename.clone(),
            content_type: a.content_type.to_ascii_lowercase(),
            data,
        });
    }
    Ok((files, listed))
}

/// Longest serialized `content` accepted.
const MAX_CONTENT_BYTES: usize = 16 * 1024;

/// `POST /api/v1/messages`: validate (the channel's plugin checks the recipient and the
/// content), store as `queued` (idempotently, inside the customer-service window where the
/// channel has one), answer 202.
pub async fn send(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SendRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let channel = Channel::parse(&req.channel).ok_or_else(|| {
        ApiError::bad_request(format!(
            "field `channel`: unknown channel `{}`",
            req.channel
        ))
    })?;
    let idempotency_key = super::idempotency_key(&headers)?;
    let daily_cap =
        crate::db::org_settings::check_send(&state.db.pool, &org_id, channel.as_str()).await??;
    let Some((_, plugin)) = state.plugins.for_channel(&org_id, channel).await else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "channel_not_configured",
            format!(
                "no {} account is configured for this organization",
                channel.as_str()
            ),
        ));
    };
    let to = plugin
        .normalize_recipient(&req.to)
        .map_err(|e| ApiError::bad_request(format!("field `to`: {e}")))?;
    let (email_content, files) = if channel == Channel::Email {
        let (files, listed) = attachments(req.attachments.as_deref().unwrap_or_default())?;
        let mut made = email_content(&state, &org_id, &to, &req).await?;
        if !listed.is_empty() {
            made["attachments"] = listed.into();
        }
        (Some(made), files)
    } else if req.subject.is_some()
        || req.conversation_id.is_some()
        || req.html.is_some()
        || req.attachments.is_some()
    {
        return Err(ApiError::bad_request(
            "fields `subject`, `conversation_id`, `html` and `attachments` are for email only",
        ));
    } else {
        (None, Vec::new())
    };
    let content = match email_content.as_ref().or(req.content.as_ref()) {
        Some(c) => {
            let text = c.to_string();
            // An email's content carries its HTML: the request's size limit bounds it.
            if text.len() > MAX_CONTENT_BYTES && channel != Channel::Email {
                return Err(ApiError::bad_request(format!(
                    "field `content`: larger than {MAX_CONTENT_BYTES} bytes"
                )));
            }
            Some(text)
        }
        None => None,
    };
    let rules = plugin
        .check_outbound(&req.body, email_content.as_ref().or(req.content.as_ref()))
        .map_err(ApiError::bad_request)?;
    let op = WriteOp::CreateOutbound {
        org_id,
        req: NewOutbound {
            channel,
            from: plugin.sender_address(),
            to,
            body: req.body,
            content,
            needs_service_window: rules.needs_service_window,
            idempotency_key,
            bulk: false,
            daily_cap,
            attachments: files,
        },
    };
    let WriteResult::Created(created) = state.committer.submit(op).await? else {
        return Err(ApiError::internal("unexpected write result"));
    };
    match created {
        Created::Queued {
            id,
            conversation_id,
        } => {
            MessageCounted {
                channel: channel.as_str(),
                direction: "outbound",
                status: "queued",
            }
            .emit();
            state.send_wake.notify_one();
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"id": id, "conversation_id": conversation_id, "status": "queued"})),
            )
                .into_response())
        }
        Created::Existing {
            id,
            conversation_id,
        } => Ok((
            StatusCode::ACCEPTED,
            [("idempotent-replayed", "true")],
            Json(json!({"id": id, "conversation_id": conversation_id})),
        )
            .into_response()),
        Created::KeyReused => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        )),
        Created::DayLimitReached { cap } => {
            Err(crate::db::org_settings::Refusal::day_limit(cap, crate::db::now_ms()).into())
        }
        Created::OptedOut => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "recipient_opted_out",
            "the recipient replied STOP on this channel; send START to opt back in",
        )),
        Created::OutsideWindow { closed_at } => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "outside_customer_service_window",
            format!(
                "the recipient's customer-service window is closed ({}); only a template \
                 may be sent: {{\"content\": {{\"type\": \"template\", \"template\": \
                 {{\"name\": …, \"language\": …}}}}}}",
                match closed_at {
                    Some(t) => format!("it closed at {t} ms since the epoch"),
                    None => "the recipient never wrote".to_string(),
                }
            ),
        )),
    }
}

/// An email's `content`: its subject and, when the contact wrote before, the threading
/// headers of the contact's latest inbound email (see [`crate::db::email_threads`]).
async fn email_content(
    state: &State,
    org_id: &str,
    to: &str,
    req: &SendRequest,
) -> Result<serde_json::Value, ApiError> {
    if req.content.is_some() {
        return Err(ApiError::bad_request(
            "field `content`: email takes `subject` and `body`",
        ));
    }
    let conversation = req.conversation_id.as_deref();
    let subject = req.subject.as_deref();
    let made =
        crate::db::email_threads::reply_content(&state.db.pool, org_id, to, conversation, subject)
            .await?
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if made["subject"].as_str().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "field `subject`: required for a new email thread",
        ));
    }
    let mut made = made;
    if let Some(html) = req.html.as_deref().filter(|h| !h.trim().is_empty()) {
        made["html"] = channels::email::html::sanitize(html).into();
    }
    Ok(made)
}

/// `?limit=`, and `?after_seq=` for the event feed.
#[derive(Deserialize)]
pub struct Page {
    limit: Option<i64>,
    after_seq: Option<i64>,
}

impl Page {
    fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

/// `GET /api/v1/conversations`.
pub async fn conversations(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    Ok(Json(conversations::list(&state.db.pool, &org_id, page.limit()).await?).into_response())
}

/// `GET /api/v1/conversations/{id}/messages`: 404 for another org's conversation.
pub async fn conversation_messages(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    if !conversations::exists(&state.db.pool, &org_id, &id).await? {
        return Err(ApiError::not_found("no such conversation"));
    }
    Ok(
        Json(message_views::for_conversation(&state.db.pool, &org_id, &id, page.limit()).await?)
            .into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    status: String,
}

/// `POST /api/v1/conversations/{id}/status` with `{"status": "pending" | "resolved" | "open"}`:
/// an agent moves the conversation through its machine; a move the machine refuses is 409.
pub async fn conversation_status(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    use crate::db::conversations::StatusChange;
    use state_machines::ConversationEvent;
    let req: StatusRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let event = match req.status.as_str() {
        "pending" => ConversationEvent::MarkPending,
        "resolved" => ConversationEvent::Resolve,
        "open" => ConversationEvent::Reopen,
        other => {
            return Err(ApiError::bad_request(format!(
                "field `status`: `{other}` is not one of pending, resolved, open"
            )))
        }
    };
    let op = WriteOp::ConversationStatus { org_id, id, event };
    let WriteResult::Conversation(change) = state.committer.submit(op).await? else {
        return Err(ApiError::internal("unexpected write result"));
    };
    match change {
        StatusChange::Changed(s) => Ok(Json(json!({"status": s.as_str()})).into_response()),
        StatusChange::Refused(e) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_transition",
            e.to_string(),
        )),
        StatusChange::NotFound => Err(ApiError::not_found("no such conversation")),
    }
}

/// `GET /api/v1/messages/{id}`, with its downloaded attachments' status, hash and size.
pub async fn get_message(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(m) = message_views::get(&state.db.pool, &org_id, &id).await? else {
        return Err(ApiError::not_found("no such message"));
    };
    let attachments = crate::db::media::of_message(&state.db.pool, &org_id, &id).await?;
    let mut v = serde_json::to_value(m).map_err(|e| ApiError::internal(e.to_string()))?;
    v["attachments"] = serde_json::Value::Array(attachments);
    Ok(Json(v).into_response())
}

/// `GET /api/v1/media/{id}`: a downloaded attachment's bytes with its type; 404 for another
/// org's id, 409 while it is not downloaded (or could not be).
pub async fn media(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match crate::db::media::content(&state.db.pool, &org_id, &id).await? {
        None => Err(ApiError::not_found("no such attachment")),
        Some((content_type, Some(data), _)) => Ok((
            [
                ("content-type", content_type),
                ("x-content-type-options", "nosniff".to_string()),
                ("content-disposition", "attachment".to_string()),
            ],
            data,
        )
            .into_response()),
        Some((_, None, status)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "media_not_available",
            format!("the attachment is `{status}`"),
        )),
    }
}

/// `GET /api/v1/messages/{id}/audio`: a voicemail's recording (WAV), for an API key or an
/// agent of the org; 404 for another org's message or one without audio.
pub async fn audio(
    AxState(state): AxState<State>,
    who: crate::inbox::auth::AgentOrKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let found =
        crate::db::media::of_message_typed(&state.db.pool, &who.org_id, &id, "audio/").await?;
    let Some((content_type, data)) = found else {
        return Err(ApiError::not_found("no such message with audio"));
    };
    Ok((
        [
            ("content-type", content_type),
            ("x-content-type-options", "nosniff".to_string()),
            ("cache-control", "private, max-age=3600".to_string()),
        ],
        data,
    )
        .into_response())
}

/// `GET /api/v1/events?after_seq=N`: the org's numbered events after N, as CloudEvents —
/// the gap-free catch-up feed.
pub async fn events(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    let rows = outbox::after_seq(
        &state.db.pool,
        &org_id,
        page.after_seq.unwrap_or(0),
        page.limit(),
    )
    .await?;
    Ok(Json(rows.iter().map(envelope).collect::<Vec<_>>()).into_response())
}
