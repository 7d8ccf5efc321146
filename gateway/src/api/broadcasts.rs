//! Broadcast alerts over HTTP: `POST /api/v1/broadcasts` (Idempotency-Key), the list, one
//! broadcast with its counts and per-rung figures, cancel, the outcome as CSV, and the email
//! step's confirm page at `/b/{token}` (a GET shows a button, the POST confirms: link
//! scanners that open every URL in a mail do not confirm anyone).

use super::{ApiError, OrgAuth, State};
use crate::commit::{WriteOp, WriteResult};
use crate::db::broadcasts::{BroadcastOp, BroadcastResult, Confirmation, NewBroadcast};
use crate::db::{broadcast_views, org_settings};
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use broadcast::BroadcastRequest;
use serde::Deserialize;
use serde_json::json;
use state_machines::Channel;

/// Largest request body: 100,000 recipients with names and emails fit.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// `POST /api/v1/broadcasts`: checks everything (each rung against the org's account on its
/// channel), stores the broadcast and its audience, answers 202 after the commit.
pub async fn create(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: Bytes,
) -> Result<Response, ApiError> {
    let settings = org_settings::get(&state.db.pool, &org_id).await?;
    if !settings.enabled("broadcast") {
        return Err(crate::db::org_settings::Refusal::FeatureDisabled("broadcast".into()).into());
    }
    let idempotency_key = super::idempotency_key(&headers)?;
    let mut req: BroadcastRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let cap = settings
        .broadcast_recipients
        .unwrap_or(org_settings::DEFAULT_BROADCAST_RECIPIENTS)
        .max(0) as usize;
    if !req.tags.is_empty() {
        let tags = crate::db::contacts::check_tags(&req.tags)
            .map_err(|e| ApiError::bad_request(format!("field `tags`: {e}")))?;
        // One past the cap is enough to refuse an audience that is too big.
        let tagged =
            crate::db::contacts::recipients_with_tags(&state.db.pool, &org_id, &tags, cap + 1)
                .await?;
        if tagged.is_empty() && req.recipients.is_empty() && req.recipients_csv.is_none() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_recipients",
                format!("field `tags`: no contact with a phone or email carries {tags:?}"),
            ));
        }
        req.recipients.extend(tagged);
    }
    let checked = req.check(cap).map_err(|e| match e.over_cap {
        true => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "org_limit_reached",
            e.message,
        ),
        false => ApiError::bad_request(e.message),
    })?;
    let warnings: Vec<String> = Vec::new();
    for (i, step) in checked.spec.steps.iter().enumerate() {
        if !settings.enabled(step.channel.as_str()) {
            return Err(
                org_settings::Refusal::FeatureDisabled(step.channel.as_str().into()).into(),
            );
        }
        let Some((_, plugin)) = state.plugins.for_channel(&org_id, step.channel).await else {
            let missing = match step.channel {
                Channel::Voice => "calls need the gateway's SIP trunk (`sip.trunk`) and a voice \
                                   route number of this organization to call from"
                    .to_owned(),
                other => format!(
                    "no {} account is configured for this organization",
                    other.as_str()
                ),
            };
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "channel_not_configured",
                format!("step {i}: {missing}"),
            ));
        };
        let c = &step.content;
        let text = match step.channel {
            Channel::Voice => c.say.as_deref(),
            _ => c.body.as_deref(),
        }
        .unwrap_or_default();
        // Checked as written: the placeholders are filled per recipient later.
        let content = step.message_content(text, &|_| None);
        plugin
            .check_outbound(text, content.as_ref())
            .map_err(|e| ApiError::bad_request(format!("step {i}: {e}")))?;
    }
    let request_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let recipients = checked.recipients.len();
    let op = WriteOp::Broadcast(BroadcastOp::Create(NewBroadcast {
        org_id: org_id.clone(),
        name: checked.name,
        spec: checked.spec,
        recipients: checked.recipients,
        idempotency_key,
        request_hash,
        per_day: settings.broadcasts_per_day,
    }));
    let WriteResult::Broadcast(result) = state.committer.submit(op).await? else {
        return Err(ApiError::internal("unexpected write result"));
    };
    match result {
        BroadcastResult::Created { id, replayed } => {
            state.broadcast_wake.notify_one();
            if !replayed {
                super::audit(
                    &state,
                    &ext,
                    &org_id,
                    None,
                    "broadcast.create",
                    Some(&id),
                    json!({"recipients": recipients}),
                );
            }
            let body = json!({
                "id": id,
                "recipients": recipients,
                "duplicates_dropped": checked.duplicates,
                "warnings": warnings,
            });
            let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
            if replayed {
                resp.headers_mut()
                    .insert("idempotent-replayed", "true".parse().expect("valid"));
            }
            Ok(resp)
        }
        BroadcastResult::KeyReused => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        )),
        BroadcastResult::DailyCapReached { cap } => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "org_limit_reached",
            format!("this organization's limit of {cap} broadcasts per day is reached"),
        )),
        _ => Err(ApiError::internal("unexpected broadcast result")),
    }
}

/// `?limit=`.
#[derive(Deserialize)]
pub struct Page {
    limit: Option<i64>,
}

/// `GET /api/v1/broadcasts`: the org's broadcasts, newest first.
pub async fn list(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    Ok(Json(broadcast_views::list(&state.db.pool, &org_id, limit).await?).into_response())
}

/// `GET /api/v1/broadcasts/{id}`: state, counts by recipient state, per-rung figures.
pub async fn get_one(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(mut b) = broadcast_views::summary(&state.db.pool, &org_id, &id).await? else {
        return Err(ApiError::not_found("no such broadcast"));
    };
    b["steps"] = json!(broadcast_views::steps(&state.db.pool, &id).await?);
    Ok(Json(b).into_response())
}

/// `POST /api/v1/broadcasts/{id}/cancel`: no rung goes out after it (queued ones included).
pub async fn cancel(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    ext: axum::http::Extensions,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let op = WriteOp::Broadcast(BroadcastOp::Cancel {
        org_id: org_id.clone(),
        id: id.clone(),
    });
    let WriteResult::Broadcast(result) = state.committer.submit(op).await? else {
        return Err(ApiError::internal("unexpected write result"));
    };
    match result {
        BroadcastResult::NotFound => Err(ApiError::not_found("no such broadcast")),
        BroadcastResult::Cancelled(s) if s == "cancelled" => {
            super::audit(
                &state,
                &ext,
                &org_id,
                None,
                "broadcast.cancel",
                Some(&id),
                json!({}),
            );
            Ok(Json(json!({"id": id, "state": s})).into_response())
        }
        BroadcastResult::Cancelled(s) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_transition",
            format!("the broadcast is `{s}`, not running"),
        )),
        _ => Err(ApiError::internal("unexpected broadcast result")),
    }
}

/// `GET /api/v1/broadcasts/{id}/recipients.csv`: every recipient's outcome.
pub async fn export(
    AxState(state): AxState<State>,
    OrgAuth(org_id): OrgAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if broadcast_views::summary(&state.db.pool, &org_id, &id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("no such broadcast"));
    }
    let csv = broadcast_views::export_csv(&state.db.pool, &id).await?;
    Ok((
        [
            ("content-type", "text/csv; charset=utf-8".to_string()),
            (
                "content-disposition",
                format!("attachment; filename=\"broadcast-{id}.csv\""),
            ),
        ],
        csv,
    )
        .into_response())
}

fn page(status: StatusCode, title: &str, text: &str, form: Option<&str>) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let button = form.map_or(String::new(), |action| {
        format!(
            "<form method=\"post\" action=\"{}\"><button type=\"submit\">Confirm</button></form>",
            esc(action)
        )
    });
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width,initial-scale=1\"><title>{t}</title></head><body \
         style=\"font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem\">\
         <h1>{t}</h1><p>{x}</p>{button}</body></html>",
        t = esc(title),
        x = esc(text),
    );
    (
        status,
        [
            ("cache-control", "no-store"),
            ("referrer-policy", "no-referrer"),
        ],
        Html(html),
    )
        .into_response()
}

/// Checks a confirm token; the recipient id, or the page that says why not.
async fn check_token(state: &State, token: &str) -> Result<String, Response> {
    let refused = |s, why: &str| page(s, "Link not valid", why, None);
    let Ok(recipient) = broadcast::token::recipient_of(token) else {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "This confirmation link is not valid.",
        ));
    };
    let key = match broadcast_views::link_key(&state.db.pool, recipient).await {
        Ok(Some((key, _))) => key,
        Ok(None) => {
            return Err(refused(
                StatusCode::NOT_FOUND,
                "This confirmation link is not valid.",
            ))
        }
        Err(e) => return Err(ApiError::from(e).into_response()),
    };
    match broadcast::token::verify(key.as_bytes(), token, crate::db::now_ms()) {
        Ok(r) => Ok(r.to_string()),
        Err(broadcast::token::TokenError::Expired) => Err(refused(
            StatusCode::GONE,
            "This confirmation link has expired.",
        )),
        Err(_) => Err(refused(
            StatusCode::NOT_FOUND,
            "This confirmation link is not valid.",
        )),
    }
}

/// `GET /b/{token}`: the confirm page (changes nothing).
pub async fn confirm_page(AxState(state): AxState<State>, Path(token): Path<String>) -> Response {
    match check_token(&state, &token).await {
        Ok(_) => page(
            StatusCode::OK,
            "Confirm you received the alert",
            "Press the button to let the sender know you received their message.",
            Some(&format!("/b/{token}")),
        ),
        Err(r) => r,
    }
}

/// `POST /b/{token}`: confirms (once; a second press says it was already done).
pub async fn confirm(AxState(state): AxState<State>, Path(token): Path<String>) -> Response {
    let recipient_id = match check_token(&state, &token).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let op = WriteOp::Broadcast(BroadcastOp::ConfirmLink { recipient_id });
    match state.committer.submit(op).await {
        Ok(WriteResult::Broadcast(BroadcastResult::Confirmed(c))) => {
            let text = match c {
                Confirmation::Confirmed { .. } => "Thank you: your confirmation was recorded.",
                Confirmation::Late => {
                    "Thank you: your confirmation was recorded, after the deadline."
                }
                Confirmation::Already => "You had already confirmed. Nothing else to do.",
                Confirmation::Nothing => "There is nothing to confirm for this link.",
            };
            page(StatusCode::OK, "Confirmation", text, None)
        }
        Ok(_) => ApiError::internal("unexpected write result").into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
