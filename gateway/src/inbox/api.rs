//! The inbox's HTTP endpoints: login and logout, agents (admins and API keys create them),
//! the agent's conversation list and threads, search, and merging contacts.
//!
//! Every read is scoped by the caller's org; another org's conversation or contact is a 404.

use super::auth::{hash_password, verify_password, AgentAuth, AgentOrKey};
use crate::api::{ApiError, State};
use crate::commit::{WriteOp, WriteResult};
use crate::db::agents::{self, Role};
use crate::db::inbox::InboxOp;
use crate::db::{conversations, inbox_views, message_views};
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    email: String,
    password: String,
}

/// `POST /api/v1/login` `{"email","password"}` → 200 `{"token","agent"}`; 401 otherwise; 429
/// with `Retry-After` while the email is throttled.
pub async fn login(AxState(state): AxState<State>, body: Bytes) -> Result<Response, ApiError> {
    let req: Login = parse(&body)?;
    let email = agents::normalize_email(&req.email);
    if let Err(wait) = state.inbox.throttle.check(&email) {
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "too many failed logins; wait and try again",
        )
        .into_response();
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from(wait));
        return Ok(resp);
    }
    let found = agents::by_email(&state.db.pool, &email).await?;
    let ok = match &found {
        Some((_, hash)) => verify_password(req.password, hash.clone()).await,
        None => {
            // As slow as a wrong password, so timing does not tell which emails exist.
            let _ = hash_password(req.password).await;
            false
        }
    };
    let Some((agent, _)) = found.filter(|_| ok) else {
        state.inbox.throttle.failed(&email);
        return Err(ApiError::unauthorized("wrong email or password"));
    };
    state.inbox.throttle.succeeded(&email);
    let ttl = (state.inbox.config.session_secs as i64).saturating_mul(1000);
    let token = agents::create_session(&state.db.pool, &agent, ttl).await?;
    Ok(
        Json(
            json!({"token": token, "agent": agent, "expires_in": state.inbox.config.session_secs}),
        )
        .into_response(),
    )
}

/// `POST /api/v1/logout`: revokes the session token presented.
pub async fn logout(
    AxState(state): AxState<State>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let token = super::auth::bearer(&headers).unwrap_or_default();
    if agents::revoke_session(&state.db.pool, token).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::unauthorized(
            "unknown or already revoked session token",
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAgent {
    email: String,
    password: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    capacity: Option<i64>,
}

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;

/// Checks an agent's fields (shared by the API and the CLI); the role.
pub fn validate_agent(email: &str, password: &str, role: Option<&str>) -> Result<Role, String> {
    let email = agents::normalize_email(email);
    if email.len() > 254 || !email.contains('@') || email.starts_with('@') || email.ends_with('@') {
        return Err("`email` must be an email address".into());
    }
    if password.chars().count() < MIN_PASSWORD {
        return Err(format!(
            "`password` must be at least {MIN_PASSWORD} characters"
        ));
    }
    Role::parse(role.unwrap_or("agent")).ok_or_else(|| "`role` must be `agent` or `admin`".into())
}

/// `POST /api/v1/agents` (API key or admin agent): creates an agent of the caller's org.
pub async fn create_agent(
    AxState(state): AxState<State>,
    who: AgentOrKey,
    ext: axum::http::Extensions,
    body: Bytes,
) -> Result<Response, ApiError> {
    who.require_admin()?;
    let req: NewAgent = parse(&body)?;
    crate::api::audit(
        &state,
        &ext,
        &who.org_id,
        who.agent.as_ref().map(|a| a.email.as_str()),
        "agent.create",
        Some(&req.email),
        serde_json::json!({"role": req.role, "capacity": req.capacity}),
    );
    let role = validate_agent(&req.email, &req.password, req.role.as_deref())
        .map_err(ApiError::bad_request)?;
    let capacity = req.capacity.unwrap_or(state.inbox.config.default_capacity);
    if capacity < 1 {
        return Err(ApiError::bad_request("`capacity` must be at least 1"));
    }
    let hash = hash_password(req.password)
        .await
        .map_err(ApiError::internal)?;
    match agents::create(
        &state.db.pool,
        &who.org_id,
        &req.email,
        &hash,
        role,
        capacity,
    )
    .await?
    {
        Some(agent) => Ok((StatusCode::CREATED, Json(agent)).into_response()),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "email_taken",
            "an agent with this email exists",
        )),
    }
}

/// `GET /api/v1/agents`: the org's agents.
pub async fn list_agents(
    AxState(state): AxState<State>,
    who: AgentOrKey,
) -> Result<Response, ApiError> {
    Ok(Json(agents::list(&state.db.pool, &who.org_id).await?).into_response())
}

/// `?limit=`, `?q=`.
#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
    q: Option<String>,
}

impl ListQuery {
    fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

/// `GET /api/v1/inbox/conversations`: the agent's view, with `head_seq` — the seq to stream
/// from so that nothing after this snapshot is missed.
pub async fn inbox_conversations(
    AxState(state): AxState<State>,
    AgentAuth(agent): AgentAuth,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let head = inbox_views::head_seq(&state.db.pool, &agent.org_id).await?;
    let list =
        inbox_views::conversations(&state.db.pool, &agent.org_id, &agent.id, q.limit()).await?;
    Ok(Json(json!({"head_seq": head, "agent": agent, "conversations": list})).into_response())
}

/// `GET /api/v1/inbox/broadcasts`: the org's ten latest broadcasts with their counts, for
/// the page's panel (it follows them live from the `dartwing.broadcast.*` events).
pub async fn inbox_broadcasts(
    AxState(state): AxState<State>,
    AgentAuth(agent): AgentAuth,
) -> Result<Response, ApiError> {
    let list = crate::db::broadcast_views::list(&state.db.pool, &agent.org_id, 10).await?;
    Ok(Json(list).into_response())
}

/// `GET /api/v1/inbox/conversations/{id}/messages`: a thread with delivery histories.
pub async fn inbox_messages(
    AxState(state): AxState<State>,
    AgentAuth(agent): AgentAuth,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    if !conversations::exists(&state.db.pool, &agent.org_id, &id).await? {
        return Err(ApiError::not_found("no such conversation"));
    }
    let msgs =
        message_views::for_conversation(&state.db.pool, &agent.org_id, &id, q.limit()).await?;
    Ok(Json(msgs).into_response())
}

/// `GET /api/v1/search?q=`: messages containing every word, best first.
pub async fn search(
    AxState(state): AxState<State>,
    who: AgentOrKey,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let text = q.q.as_deref().unwrap_or_default();
    if inbox_views::query_words(text).is_empty() {
        return Err(ApiError::bad_request("`q` must contain a word"));
    }
    let hits = inbox_views::search(&state.db, &who.org_id, text, q.limit()).await?;
    Ok(Json(hits).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Merge {
    from: String,
    into: String,
}

/// `POST /api/v1/contacts/merge` `{"from","into"}` (API key or admin agent): moves `from`'s
/// identities, conversation and messages to `into`.
pub async fn merge_contacts(
    AxState(state): AxState<State>,
    who: AgentOrKey,
    ext: axum::http::Extensions,
    body: Bytes,
) -> Result<Response, ApiError> {
    who.require_admin()?;
    let req: Merge = parse(&body)?;
    crate::api::audit(
        &state,
        &ext,
        &who.org_id,
        who.agent.as_ref().map(|a| a.email.as_str()),
        "contact.merge",
        Some(&req.into),
        serde_json::json!({"from": req.from, "into": req.into}),
    );
    let op = WriteOp::Inbox(InboxOp::MergeContacts {
        org_id: who.org_id,
        from: req.from,
        into: req.into,
    });
    let WriteResult::Inbox(r) = state.committer.submit(op).await? else {
        return Err(ApiError::internal("unexpected write result"));
    };
    if r.ok {
        return Ok(Json(r.body).into_response());
    }
    let message = r.body["message"].as_str().unwrap_or_default().to_string();
    Err(match r.body["code"].as_str() {
        Some("not_found") => ApiError::not_found(message),
        _ => ApiError::bad_request(message),
    })
}
