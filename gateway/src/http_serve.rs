//! Serving HTTP with limits a public address needs: at most `max_connections` open
//! connections, and at most `max_connections_per_source` from one IP address, so that one
//! flooding source cannot take the slots a provider's webhooks need (more are closed at
//! once, before a byte is read), request headers that must
//! arrive within `header_timeout_ms` (a slowloris that trickles headers is dropped), and a
//! whole request — body read, handler, response head — within `request_timeout_ms`, else 503
//! with `Retry-After` (nothing was acknowledged, so a provider's retry is safe: webhooks are
//! deduplicated). The axum router is served by hyper directly, because `axum::serve` offers
//! none of these knobs.
//!
//! A WebSocket's upgrade answers at once and the socket then lives outside the request (and
//! outside the connection count: the inbox bounds its sockets itself).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// HTTP server limits (`[http]` in the file, `DARTWING_HTTP_*` in the environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Open connections at most; more are closed on accept.
    pub max_connections: usize,
    /// Open connections from one IP address at most; more are closed on accept. Behind a
    /// reverse proxy or load balancer every connection comes from its address: raise this to
    /// `max_connections` there (and `unknown_orgs_per_source` to 0, or high).
    pub max_connections_per_source: usize,
    /// Webhooks per second from one IP address that may name an org this node does not know
    /// (each costs a database lookup); over it, such webhooks get 429 while webhooks for
    /// known orgs still pass ([`crate::api::webhooks`]). 0 turns the limit off.
    pub unknown_orgs_per_source: f64,
    /// How long a connection may take to send a request's headers, ms.
    pub header_timeout_ms: u64,
    /// How long a request may take, body and handler included, ms; then 503.
    pub request_timeout_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 10_000,
            max_connections_per_source: 1_000,
            unknown_orgs_per_source: 20.0,
            header_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
        }
    }
}

impl HttpLimits {
    /// Every invalid setting, named.
    pub fn problems(&self) -> Vec<String> {
        [
            ("http.max_connections", self.max_connections as u64),
            (
                "http.max_connections_per_source",
                self.max_connections_per_source as u64,
            ),
            ("http.header_timeout_ms", self.header_timeout_ms),
            ("http.request_timeout_ms", self.request_timeout_ms),
        ]
        .into_iter()
        .filter(|(_, v)| *v == 0)
        .map(|(k, _)| format!("{k} must be greater than 0"))
        .chain(
            (!(self.unknown_orgs_per_source.is_finite() && self.unknown_orgs_per_source >= 0.0))
                .then(|| {
                    "http.unknown_orgs_per_source must be 0 (off) or a positive number".into()
                }),
        )
        .collect()
    }
}

/// Wraps `app` so that every request answers within `timeout` (503 with `Retry-After` when it
/// would not).
pub fn with_request_timeout(app: Router, timeout: Duration) -> Router {
    app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(resp) => resp,
                Err(_) => timed_out(timeout),
            }
        },
    ))
}

fn timed_out(timeout: Duration) -> Response {
    let mut resp = crate::api::ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        format!("the request took longer than {timeout:?}; nothing was acknowledged"),
    )
    .into_response();
    resp.headers_mut()
        .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    resp
}

/// Open connections per source address.
struct SourceCounts {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of a source; dropping it frees the slot.
struct SourceSlot(Arc<SourceCounts>, IpAddr);

impl SourceCounts {
    /// A slot for one more connection from `ip`, if it has fewer than the limit open. The
    /// map holds only sources with open connections, so it is bounded by `max_connections`.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let mut open = self.open.lock().expect("not poisoned");
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SourceSlot(self.clone(), ip))
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.0.open.lock().expect("not poisoned");
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` turns true, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let sources = Arc::new(SourceCounts {
        max: limits.max_connections_per_source,
        open: Mutex::new(HashMap::new()),
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_timeout_ms));
    let http = Arc::new(http);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("http_connections_refused_total").increment(1);
            tracing::debug!(%peer, "connection limit reached; closed");
            drop(stream);
            continue;
        };
        let Some(source_slot) = sources.admit(peer.ip()) else {
            metrics::counter!("http_source_connections_refused_total").increment(1);
            tracing::debug!(%peer, "per-source connection limit reached; closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (http, app, mut stop) = (http.clone(), app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = (permit, source_slot);
            // Handlers see the client's address (the audit log's source) as axum's
            // `ConnectInfo`, as `into_make_service_with_connect_info` would provide it: set
            // on each request, so the router is not re-layered per connection.
            let app = app.map_request(move |mut req: axum::extract::Request<_>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            });
            let conn = http
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "HTTP connection ended");
                    }
                }
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    // Open connections finish their requests (bounded: each request has its timeout).
    let _ = slots.acquire_many(limits.max_connections as u32).await;
}
