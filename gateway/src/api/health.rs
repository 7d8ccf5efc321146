//! `GET /health` (database, relay and event log, JSON), `GET /metrics` (Prometheus text) and the OpenAPI
//! document.
//!
//! `/health` is for load balancers and anyone who can reach the port, so it says *whether*
//! the database or the relay fails, never the error's text (which names hosts, users, brokers).
//! The text is added for callers presenting `Authorization: Bearer OPS_TOKEN` (`ops_token` in
//! the configuration, `DARTWING_OPS_TOKEN`; unset: never shown).

use super::State;
use crate::db::{dead_letters, now_ms};
use crate::telemetry::DeadLetterDepth;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::atomic::Ordering;

/// How long without a good relay round before the relay counts as unhealthy.
const RELAY_STALE_MS: i64 = 30_000;

/// Health: 200 when the database answers, 503 when it does not; `degraded` when the relay
/// is failing or stale.
pub async fn health(AxState(state): AxState<State>, headers: axum::http::HeaderMap) -> Response {
    let detailed = super::is_operator(&state, &headers);
    let db = state.db.ping().await;
    let db_ok = db.is_ok();
    let last_ok = state.relay_status.last_ok_ms.load(Ordering::Relaxed);
    let relay_error = state
        .relay_status
        .last_error
        .lock()
        .expect("not poisoned")
        .clone();
    let relay_ok = relay_error.is_none() && now_ms() - last_ok < RELAY_STALE_MS;
    let r = &state.relay_status;
    let log_ok = !r.kafka.load(Ordering::Relaxed) || r.kafka_reader_ready.load(Ordering::Relaxed);
    let status = match (db_ok, relay_ok && log_ok) {
        (false, _) => "down",
        (true, false) => "degraded",
        (true, true) => "ok",
    };
    let mut body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "database": {
            "ok": db_ok,
            "backend": format!("{:?}", state.db.backend).to_lowercase(),
            "latency_ms": db.as_ref().map(|d| d.as_secs_f64() * 1000.0).ok(),
            "error": db.as_ref().err().map(|e| e.to_string()),
        },
        "relay": {
            "ok": relay_ok,
            "backlog": state.relay_status.backlog.load(Ordering::Relaxed),
            "last_ok_ms_ago": now_ms() - last_ok,
            "error": relay_error,
            "leader": state.relay_status.leader.load(Ordering::Relaxed),
        },
        "event_log": event_log(&state),
        "sip": state.sip.as_ref().map(|sip| json!({
            "addr": sip.local_addr().to_string(),
            "active_calls": sip.active_calls(),
            "invites_shed": sip.stats().shed.load(Ordering::Relaxed),
        })),
        "commit_lag_ms": state.committer.lag().as_secs_f64() * 1000.0,
    });
    if !detailed {
        for part in ["database", "relay"] {
            if let Some(o) = body[part].as_object_mut() {
                o.remove("error");
            }
        }
    }
    let code = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Which log events go to, and (with Kafka) whether this node reads the topics yet.
fn event_log(state: &State) -> serde_json::Value {
    let r = &state.relay_status;
    if r.kafka.load(Ordering::Relaxed) {
        json!({"kind": "kafka", "reader_ready": r.kafka_reader_ready.load(Ordering::Relaxed)})
    } else {
        json!({"kind": "embedded"})
    }
}

/// Prometheus metrics.
pub async fn metrics(AxState(state): AxState<State>) -> Response {
    if let Ok(depths) = dead_letters::depth_by_channel(&state.db.pool).await {
        for c in state_machines::Channel::ALL {
            let depth = depths
                .iter()
                .find(|(ch, _)| ch == c.as_str())
                .map(|(_, d)| *d)
                .unwrap_or(0);
            DeadLetterDepth {
                channel: c.as_str(),
                depth,
            }
            .emit();
        }
    }
    metrics::gauge!("outbox_backlog")
        .set(state.relay_status.backlog.load(Ordering::Relaxed) as f64);
    if let Some(sip) = &state.sip {
        metrics::gauge!("sip_calls_active").set(sip.active_calls() as f64);
        metrics::counter!("sip_invites_shed_total")
            .absolute(sip.stats().shed.load(Ordering::Relaxed));
    }
    metrics::gauge!("commit_lag_seconds").set(state.committer.lag().as_secs_f64());
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI 3.1 document of API v1.
pub async fn openapi() -> Response {
    (
        [("content-type", "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}
