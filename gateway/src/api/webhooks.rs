//! `GET|POST /webhooks/{provider}/{org}[/{hook}]`: verify, parse, commit, and only then answer
//! 200 with whatever the provider's plugin says (TwiML, a handshake challenge, nothing).
//! A provider's retry of the same webhook changes nothing and still gets 200.
//!
//! A webhook naming an org this node has not cached costs a database lookup, so a source
//! that keeps naming orgs that do not exist (a scan, or random noise) is given a budget of
//! such lookups ([`SourceBudget`], `http.unknown_orgs_per_source`). Past it, that source's
//! webhooks for uncached orgs are answered 429 without a lookup, while its webhooks for
//! orgs in the cache — a provider's real traffic — go on as before. Only unknown orgs are
//! charged: a provider's many real orgs, or one org with a wrong auth token, never are.
//!
//! ```text
//!  provider? ─ not in the registry ─▶ 404 (before any lookup or metric)
//!  org not cached, and its source named too many unknown orgs lately ─▶ 429
//!  org, account? ─ unknown ─▶ refused as the provider refuses a bad signature
//!  plugin.handle_webhook ─ bad signature 401 · wrong verify token 403 · malformed 400
//!     │ Handled { events, skipped, reply }
//!     ├─ skipped items: logged and counted, the rest goes on
//!     ├─ every event committed (each its own job; the committer batches them)
//!     │     status for a provider id we do not know yet: kept as pending, applied when
//!     │     the send's acceptance commits
//!     └─▶ 200 reply
//! ```

use super::{ApiError, State};
use crate::commit::{WriteOp, WriteResult};
use crate::db::ingest::StatusOutcome;
use crate::telemetry::{Delivered, MessageCounted, WebhookItemSkipped, WebhookRejected};
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use channels::{ChannelPlugin, InboundEvent, WebhookError, WebhookRequest};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Sources tracked at most by [`SourceBudget`]; past it, new sources' uncached lookups wait.
const TRACKED_SOURCES: usize = 10_000;

/// Per-source budget of webhooks naming unknown orgs.
pub struct SourceBudget {
    limiter: crate::sender::limits::RateLimiter,
    per_second: f64,
}

impl SourceBudget {
    /// A budget of `per_second` unknown orgs per source (0: unlimited).
    pub fn new(per_second: f64) -> SourceBudget {
        SourceBudget {
            limiter: crate::sender::limits::RateLimiter::bounded(TRACKED_SOURCES),
            per_second,
        }
    }

    /// How long `ip` must wait before another lookup, if it spent its budget.
    fn throttled(&self, ip: IpAddr) -> Option<Duration> {
        (self.per_second > 0.0)
            .then(|| self.limiter.exhausted(&ip.to_string(), self.per_second))
            .flatten()
    }

    /// `ip` named an unknown org.
    fn charge(&self, ip: IpAddr) {
        if self.per_second > 0.0 {
            let _ = self
                .limiter
                .reserve_within(&ip.to_string(), self.per_second, Duration::ZERO);
        }
    }
}

/// `/webhooks/{provider}/{org}`: the provider's root hook (`""`).
pub async fn receive_root(
    state: AxState<State>,
    Path((provider, org_slug)): Path<(String, String)>,
    peer: Peer,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let path = Path((provider, org_slug, String::new()));
    receive(state, path, peer, method, uri, headers, body).await
}

/// The client's address, where the server recorded it (always, behind [`crate::http_serve`]).
pub struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// The answer to a refused webhook, and its reason for the metric.
fn refusal(e: &WebhookError) -> (&'static str, ApiError) {
    match e {
        WebhookError::BadSignature => (
            "signature",
            ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string()),
        ),
        WebhookError::Forbidden(_) => (
            "verification",
            ApiError::new(StatusCode::FORBIDDEN, "verification_failed", e.to_string()),
        ),
        WebhookError::Malformed { .. } => ("malformed", ApiError::bad_request(e.to_string())),
        WebhookError::UnknownHook(_) => ("unknown_hook", ApiError::not_found(e.to_string())),
        WebhookError::Method(_) => (
            "method",
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                e.to_string(),
            ),
        ),
    }
}

/// Receives one provider webhook.
pub async fn receive(
    AxState(state): AxState<State>,
    Path((provider, org_slug, hook)): Path<(String, String, String)>,
    Peer(peer): Peer,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Only registry names reach lookups and metric labels.
    let Some(spec) = channels::registry::find(&provider) else {
        return Err(ApiError::not_found("no such webhook"));
    };
    let reject = |reason| {
        WebhookRejected {
            provider: spec.name,
            reason,
        }
        .emit()
    };
    let org = match state.plugins.cached_org(&org_slug) {
        Some(org) => org,
        None => {
            let source = peer.map(|p| p.ip());
            if let Some(wait) = source.and_then(|ip| state.webhook_sources.throttled(ip)) {
                reject("source_throttled");
                return Err(ApiError::rate_limited(
                    wait,
                    "too many webhooks for unknown organizations from this address",
                ));
            }
            let org = state.plugins.org(&org_slug).await?;
            if let (None, Some(ip)) = (&org, source) {
                state.webhook_sources.charge(ip);
            }
            org
        }
    };
    let plugin = match &org {
        Some(org) => state.plugins.by_provider(&org.id, spec.name).await?,
        None => None,
    };
    let url = format!(
        "{}{}",
        state.public_base,
        uri.path_and_query()
            .map(|p| p.as_str())
            .unwrap_or(uri.path())
    );
    let header_pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let req = WebhookRequest {
        method: method.as_str(),
        url: &url,
        query: uri.query().unwrap_or(""),
        headers: &header_pairs,
        body: &body,
        received_at: crate::db::now_ms() / 1000,
    };
    // No such org (or no account with this provider): verified by the provider's decoy, so
    // the answer is the one a real org gives a request that fails verification. The reason
    // is kept for the operator (metric and log), never told to the sender.
    let (org, plugin) = match (org, plugin) {
        (Some(org), Some(plugin)) => (org, plugin),
        _ => {
            reject("unknown_org");
            tracing::info!(
                provider = spec.name,
                "webhook for an unknown organization or account"
            );
            let decoy = state
                .plugins
                .decoy(spec.name)
                .ok_or_else(|| ApiError::not_found("no such webhook"))?;
            return Err(match decoy.handle_webhook(&hook, &req) {
                Err(e) => refusal(&e).1,
                // Only a sender who knows the decoy's random secrets gets here.
                Ok(_) => refusal(&WebhookError::BadSignature).1,
            });
        }
    };
    let handled = plugin.handle_webhook(&hook, &req).map_err(|e| {
        let (reason, err) = refusal(&e);
        reject(reason);
        err
    })?;
    for reason in &handled.skipped {
        tracing::warn!(provider = spec.name, org = %org.slug, %reason, "webhook item skipped");
        WebhookItemSkipped {
            provider: spec.name,
        }
        .emit();
    }
    let stored = handled
        .events
        .into_iter()
        .map(|event| store(&state, &org.id, &plugin, event));
    for result in futures_util::future::join_all(stored).await {
        result.inspect_err(|_| reject("overloaded"))?;
    }
    Ok((
        [("content-type", handled.reply.content_type)],
        handled.reply.body,
    )
        .into_response())
}

/// Commits one event of a webhook and records its metrics.
async fn store(
    state: &State,
    org_id: &str,
    plugin: &Arc<dyn ChannelPlugin>,
    event: InboundEvent,
) -> Result<(), ApiError> {
    let channel = plugin.channel();
    match event {
        InboundEvent::Message(msg) => {
            let op = WriteOp::Inbound {
                org_id: org_id.to_string(),
                provider: plugin.provider(),
                msg,
            };
            if let WriteResult::Inbound(done) = state.committer.submit(op).await? {
                if !done.duplicate {
                    MessageCounted {
                        channel: channel.as_str(),
                        direction: "inbound",
                        status: "received",
                    }
                    .emit();
                    if done.media_pending {
                        state.media_wake.notify_one();
                    }
                }
            }
        }
        InboundEvent::Status(update) => {
            let op = WriteOp::Status {
                org_id: org_id.to_string(),
                channel,
                update,
            };
            if let WriteResult::Status(StatusOutcome::Recorded {
                applied,
                created_at,
            }) = state.committer.submit(op).await?
            {
                if applied.changed() {
                    // Reached the recipient: `delivered`, or `read` straight from below it
                    // (a read receipt that came before, or instead of, the delivery report).
                    use state_machines::DeliveryState::{Delivered as D, Read as R};
                    if applied.to == D || (applied.to == R && applied.from.rank() < D.rank()) {
                        let ms = (crate::db::now_ms() - created_at).max(0) as u64;
                        Delivered {
                            channel: channel.as_str(),
                            elapsed: std::time::Duration::from_millis(ms),
                        }
                        .emit();
                    }
                    MessageCounted {
                        channel: channel.as_str(),
                        direction: "outbound",
                        status: applied.to.as_str(),
                    }
                    .emit();
                }
            }
        }
    }
    Ok(())
}
