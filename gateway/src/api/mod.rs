//! The HTTP surface (axum): provider webhooks, API v1 (bearer API keys, one org each), health,
//! metrics and the OpenAPI document, and the agent inbox ([`crate::inbox`]: its page at `/`,
//! login, the WebSocket, search).
//!
//! Errors are JSON `{"error": {"code": "...", "message": "..."}}` with the status that says
//! what happened: 400 malformed (naming the field), 401 bad key or signature, 404 unknown or
//! another org's object, 409/422 refused, 413 too large, 503 overloaded with `Retry-After`.

pub mod appointments;
pub mod audit;
pub mod broadcasts;
pub mod calls;
pub mod contacts;
pub mod dead_letters;
pub mod health;
pub mod messages;
pub mod rate;
pub mod receptionist;
pub mod settings;
pub mod webhooks;

use crate::commit::{CommitError, Committer};
use crate::db::{orgs, Db};
use crate::inbox;
use crate::plugins::Plugins;
use crate::relay::{Hub, RelayStatus};
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Everything a handler may need.
pub struct AppState {
    /// Storage (reads).
    pub db: Db,
    /// Writes.
    pub committer: Committer,
    /// Orgs and plugins.
    pub plugins: Arc<Plugins>,
    /// The public base URL providers sign.
    pub public_base: String,
    /// Unlocks error details on `/health` (empty: never).
    pub ops_token: String,
    /// Live events.
    pub hub: Hub,
    /// Relay health.
    pub relay_status: Arc<RelayStatus>,
    /// Prometheus renderer.
    pub metrics: PrometheusHandle,
    /// Wakes the send worker.
    pub send_wake: Arc<Notify>,
    /// Wakes the media worker.
    pub media_wake: Arc<Notify>,
    /// Wakes the broadcast engine.
    pub broadcast_wake: Arc<Notify>,
    /// Presented API key (by digest) → org, cached briefly, bounded in size.
    pub keys: crate::cache::TtlCache<Option<orgs::KeyOwner>>,
    /// Keys whose use was recorded in the last minute (by key id).
    pub key_uses: crate::cache::TtlCache<()>,
    /// Requests per second per API key and per org.
    pub api_limits: rate::ApiRateLimits,
    /// Webhooks naming unknown orgs, per source address.
    pub webhook_sources: webhooks::SourceBudget,
    /// The SIP user agent, when voice is on (for `sip_calls_active` and `/health`).
    pub sip: Option<Arc<voice::ua::SipServer>>,
    /// The agent inbox: login throttle, sockets, presence.
    pub inbox: Arc<crate::inbox::Inbox>,
}

/// Shared state.
pub type State = Arc<AppState>;

/// Builds the router.
pub fn router(state: State, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/openapi.json", get(health::openapi))
        .route(
            "/webhooks/{provider}/{org}",
            get(webhooks::receive_root).post(webhooks::receive_root),
        )
        .route(
            "/webhooks/{provider}/{org}/{hook}",
            get(webhooks::receive).post(webhooks::receive),
        )
        .route("/api/v1/messages", post(messages::send))
        .route("/api/v1/messages/{id}", get(messages::get_message))
        .route("/api/v1/messages/{id}/audio", get(messages::audio))
        .route("/api/v1/conversations", get(messages::conversations))
        .route(
            "/api/v1/conversations/{id}/messages",
            get(messages::conversation_messages),
        )
        .route(
            "/api/v1/conversations/{id}/status",
            post(messages::conversation_status),
        )
        .route("/api/v1/events", get(messages::events))
        .route("/api/v1/media/{id}", get(messages::media))
        .route("/api/v1/calls", get(calls::list))
        .route("/api/v1/appointments", get(appointments::list))
        .route(
            "/api/v1/receptionist",
            get(receptionist::get).put(receptionist::put),
        )
        .route(
            "/api/v1/receptionist/knowledge",
            post(receptionist::add_knowledge),
        )
        .route("/api/v1/calls/{id}", get(calls::get_call))
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/settings", get(settings::get_own))
        .route("/api/v1/orgs/{slug}/settings", put(settings::put))
        .route("/api/v1/dead-letters", get(dead_letters::list))
        .route(
            "/api/v1/dead-letters/{id}/replay",
            post(dead_letters::replay),
        )
        .route(
            "/api/v1/broadcasts",
            get(broadcasts::list)
                .post(broadcasts::create)
                .layer(DefaultBodyLimit::max(broadcasts::MAX_BODY_BYTES)),
        )
        .route("/api/v1/broadcasts/{id}", get(broadcasts::get_one))
        .route("/api/v1/broadcasts/{id}/cancel", post(broadcasts::cancel))
        .route(
            "/api/v1/broadcasts/{id}/recipients.csv",
            get(broadcasts::export),
        )
        .route(
            "/b/{token}",
            get(broadcasts::confirm_page).post(broadcasts::confirm),
        )
        .route("/", get(inbox::page::index))
        .route("/inbox.js", get(inbox::page::script))
        .route("/inbox.css", get(inbox::page::style))
        .route("/api/v1/login", post(inbox::api::login))
        .route("/api/v1/logout", post(inbox::api::logout))
        .route("/api/v1/ws", get(inbox::ws::upgrade))
        .route(
            "/api/v1/agents",
            get(inbox::api::list_agents).post(inbox::api::create_agent),
        )
        .route(
            "/api/v1/inbox/conversations",
            get(inbox::api::inbox_conversations),
        )
        .route(
            "/api/v1/inbox/conversations/{id}/messages",
            get(inbox::api::inbox_messages),
        )
        .route(
            "/api/v1/inbox/broadcasts",
            get(inbox::api::inbox_broadcasts),
        )
        .route("/api/v1/search", get(inbox::api::search))
        .route("/api/v1/contacts/merge", post(inbox::api::merge_contacts))
        .route("/api/v1/contacts", get(contacts::list).post(contacts::save))
        .route("/api/v1/contacts/{id}", get(contacts::get_one))
        .route("/api/v1/contacts/{id}/tags", put(contacts::set_tags))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    /// Its machine-readable code (`feature_disabled`, …).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Its message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Any status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    /// 429 `rate_limited`, with `Retry-After` of `wait` in whole seconds (at least one).
    pub fn rate_limited(wait: Duration, message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 500, logged; the client sees no internals.
    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; nothing was acknowledged",
        )
    }
}

impl From<CommitError> for ApiError {
    fn from(e: CommitError) -> ApiError {
        match e {
            CommitError::Overloaded | CommitError::Closed => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", e.to_string())
            },
            // Nothing was written; the same request may pass later: 503, so providers retry.
            CommitError::Store(s) if s.is_out_of_space() || s.is_transient() => {
                tracing::error!(error = %s, "a write failed; answered 503");
                ApiError {
                    retry_after: Some(5),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage_unavailable",
                        if s.is_out_of_space() {
                            "the database's disk is full; nothing was acknowledged"
                        } else {
                            "the database is unavailable; nothing was acknowledged"
                        },
                    )
                }
            }
            CommitError::Store(s) => ApiError::internal(s),
        }
    }
}

impl From<crate::db::org_settings::Refusal> for ApiError {
    fn from(r: crate::db::org_settings::Refusal) -> ApiError {
        use crate::db::org_settings::Refusal;
        match r {
            Refusal::FeatureDisabled(f) => ApiError::new(
                StatusCode::FORBIDDEN,
                "feature_disabled",
                format!("`{f}` is not enabled for this organization"),
            ),
            Refusal::LimitReached {
                cap,
                retry_after_secs,
            } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "org_limit_reached",
                    format!(
                        "this organization's limit of {cap} outbound messages per day is reached"
                    ),
                )
            },
        }
    }
}

impl From<crate::db::StoreError> for ApiError {
    fn from(e: crate::db::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Whether the request carries the operator's token (`ops_token`; never when it is unset).
pub fn is_operator(state: &State, headers: &axum::http::HeaderMap) -> bool {
    !state.ops_token.is_empty()
        && inbox::auth::bearer(headers).is_some_and(|t| {
            voice::sip::digest::constant_time_eq(t.as_bytes(), state.ops_token.as_bytes())
        })
}

/// The `Idempotency-Key` header, if any: 1 to 255 visible characters, else 400.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 255);
    k.map(|k| Some(k.to_string())).ok_or_else(|| {
        ApiError::bad_request("header `Idempotency-Key`: 1 to 255 visible characters")
    })
}

/// The id of the API key a request was authenticated with (set by [`OrgAuth`]).
#[derive(Debug, Clone)]
pub struct AuthedKey(pub String);

/// Records an HTTP action in the audit log (off the request's path): the actor is the agent
/// if one is given, else the API key the request carried, else the operator; the source is
/// the client's address.
pub fn audit(
    state: &State,
    ext: &axum::http::Extensions,
    org_id: &str,
    agent: Option<&str>,
    action: &str,
    target: Option<&str>,
    detail: serde_json::Value,
) {
    let actor = match (agent, ext.get::<AuthedKey>()) {
        (Some(email), _) => format!("agent:{email}"),
        (None, Some(AuthedKey(id))) => format!("apikey:{id}"),
        (None, None) => "operator".to_string(),
    };
    let source = ext
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    crate::db::audit::record_later(
        &state.db.pool,
        crate::db::audit::Entry {
            org_id: Some(org_id),
            actor: &actor,
            action,
            target,
            detail,
            source,
        },
    );
}

/// The org an API request acts for, from `Authorization: Bearer KEY`.
pub struct OrgAuth(pub String);

/// How long a key's org (or its absence) is cached: a revoked key stops working within it,
/// on every node.
pub const KEY_CACHE_TTL: Duration = Duration::from_millis(900);
/// Most keys cached at once (presented keys, valid or not, are cached by digest).
pub const KEY_CACHE_CAPACITY: usize = 10_000;

impl FromRequestParts<State> for OrgAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        let key = inbox::auth::bearer(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer KEY`"))?;
        let owner = match state.keys.get(key) {
            Some(owner) => owner,
            None => {
                let owner = orgs::org_for_key(&state.db.pool, key).await?;
                // "Last used" is written at most once a minute per key and node, off the
                // request's path; a lost update only makes it older.
                if let Some(o) = owner
                    .as_ref()
                    .filter(|o| state.key_uses.get(&o.key_id).is_none())
                {
                    state.key_uses.insert(&o.key_id, ());
                    let (pool, id) = (state.db.pool.clone(), o.key_id.clone());
                    tokio::spawn(async move {
                        if let Err(e) = orgs::touch_key(&pool, &id, crate::db::now_ms()).await {
                            tracing::debug!(error = %e, "recording an API key's use");
                        }
                    });
                }
                state.keys.insert(key, owner.clone());
                owner
            }
        };
        let owner = owner.ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"))?;
        state.api_limits.check(&owner)?;
        parts.extensions.insert(AuthedKey(owner.key_id.clone()));
        Ok(OrgAuth(owner.org_id))
    }
}

#[cfg(test)]
mod tests {
    /// Every route the router serves is in the OpenAPI document, and nothing else is.
    #[test]
    fn openapi_lists_every_route() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("openapi.json")).expect("valid JSON");
        let mut documented: Vec<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        let source = include_str!("mod.rs");
        let mut routed: Vec<String> = source
            .split(".route(")
            .skip(1)
            .filter_map(|rest| rest.trim_start().strip_prefix("\"/"))
            .map(|r| format!("/{}", r.split('"').next().unwrap()))
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
    }
}
