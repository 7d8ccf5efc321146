//! A local stand-in for Telnyx's Messaging API v2: `POST /v2/messages` (API key as bearer,
//! Telnyx's JSON answer and `errors[]` body, scriptable failures), and webhooks signed as
//! Telnyx signs them (Ed25519 over `{timestamp}|{raw body}`, `telnyx-signature-ed25519` and
//! `telnyx-timestamp` headers) with a key pair made for the test.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use gateway::db::{orgs, Db};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The sending number of test accounts.
pub const FROM: &str = "+17735550002";

/// What the stand-in answers the next send with.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// 200 with a fresh id.
    Accept,
    /// An error with Telnyx's error body.
    Fail {
        /// HTTP status.
        status: u16,
        /// Telnyx's error code.
        code: &'static str,
    },
}

/// A send the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Whether the bearer key matched.
    pub authorized: bool,
    /// The JSON body.
    pub body: Value,
    /// The id it answered with, if it accepted.
    pub id: Option<String>,
}

#[derive(Default)]
struct Inner {
    api_key: String,
    script: VecDeque<Scripted>,
    received: Vec<Received>,
}

/// The running stand-in, with the key pair that signs its webhooks.
#[derive(Clone)]
pub struct TelnyxStandin {
    /// Its base URL (what `api_base` is set to).
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    keypair: Arc<Ed25519KeyPair>,
}

impl TelnyxStandin {
    /// Starts it on a free loopback port with a fresh signing key.
    pub async fn start() -> TelnyxStandin {
        let inner = Arc::new(Mutex::new(Inner {
            api_key: format!("KEY{}", uuid::Uuid::new_v4().simple()),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/v2/messages", post(send))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("stand-in serves") });
        let seed: [u8; 32] = *uuid::Uuid::new_v4()
            .as_bytes()
            .repeat(2)
            .first_chunk()
            .expect("32 bytes");
        let keypair = Arc::new(Ed25519KeyPair::from_seed_unchecked(&seed).expect("key"));
        TelnyxStandin {
            base,
            inner,
            keypair,
        }
    }

    /// The public key, base64, as the portal shows it.
    pub fn public_key(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.keypair.public_key().as_ref())
    }

    /// Adds a Telnyx SMS account pointing at this stand-in to `org_id`.
    pub async fn add_account(&self, db: &Db, org_id: &str) {
        let cfg = json!({
            "api_key": self.inner.lock().unwrap().api_key, "public_key": self.public_key(),
            "from": FROM, "api_base": self.base, "messages_per_second": 1000.0,
        });
        orgs::upsert_channel_account(&db.pool, org_id, "telnyx", "sms", &cfg.to_string())
            .await
            .expect("account");
    }

    /// Queues answers for the next sends (after them: accept).
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.inner.lock().unwrap().script.extend(answers);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The two signature headers for `body` at Unix time `ts`.
    pub fn sign(&self, body: &[u8], ts: i64) -> [(&'static str, String); 2] {
        let msg = [ts.to_string().as_bytes(), b"|", body].concat();
        let sig = base64::engine::general_purpose::STANDARD.encode(self.keypair.sign(&msg));
        [
            ("telnyx-signature-ed25519", sig),
            ("telnyx-timestamp", ts.to_string()),
        ]
    }

    /// Posts `body` to `/webhooks/telnyx/{slug}/sms`, signed now.
    pub async fn post_signed(
        &self,
        client: &reqwest::Client,
        gateway: &str,
        slug: &str,
        body: &[u8],
    ) -> reqwest::Response {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let mut req = client
            .post(format!("{gateway}/webhooks/telnyx/{slug}/sms"))
            .header("content-type", "application/json");
        for (k, v) in self.sign(body, now) {
            req = req.header(k, v);
        }
        req.body(body.to_vec())
            .send()
            .await
            .expect("webhook request")
    }
}

async fn send(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut inner = inner.lock().unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(inner.api_key.as_str());
    let mut rec = Received {
        authorized,
        body: body.clone(),
        id: None,
    };
    if !authorized {
        inner.received.push(rec);
        return error(401, "10009", "Authentication failed");
    }
    if body["to"].as_str().is_none() || body["from"].as_str().is_none() {
        inner.received.push(rec);
        return error(422, "10005", "Missing required parameter");
    }
    match inner.script.pop_front().unwrap_or(Scripted::Accept) {
        Scripted::Fail { status, code } => {
            inner.received.push(rec);
            error(status, code, "scripted failure")
        }
        Scripted::Accept => {
            let id = uuid::Uuid::new_v4().to_string();
            rec.id = Some(id.clone());
            inner.received.push(rec);
            Json(json!({"data": {
                "record_type": "message", "direction": "outbound", "id": id, "type": "SMS",
                "from": {"phone_number": body["from"], "carrier": "Telnyx", "line_type": "Wireless"},
                "to": [{"phone_number": body["to"], "status": "queued", "carrier": "T-Mobile USA"}],
                "text": body["text"], "webhook_url": body["webhook_url"], "parts": 1,
                "encoding": "GSM-7", "errors": []}}))
            .into_response()
        }
    }
}

fn error(status: u16, code: &str, title: &str) -> Response {
    let body = json!({"errors": [{"code": code, "title": title, "detail": title,
        "meta": {"url": format!("https://developers.telnyx.com/docs/overview/errors/{code}")}}]});
    (StatusCode::from_u16(status).expect("status"), Json(body)).into_response()
}

/// A `message.received` webhook body.
pub fn received(id: &str, from: &str, text: &str) -> Value {
    json!({"data": {"event_type": "message.received", "id": uuid::Uuid::new_v4().to_string(),
        "occurred_at": "2026-11-30T10:00:00.000+00:00", "record_type": "event",
        "payload": {"direction": "inbound", "id": id, "record_type": "message", "type": "SMS",
            "from": {"carrier": "T-Mobile USA", "line_type": "long_code", "phone_number": from},
            "to": [{"carrier": "Telnyx", "line_type": "Wireless", "phone_number": FROM, "status": "webhook_delivered"}],
            "text": text, "media": []}},
        "meta": {"attempt": 1, "delivered_to": "https://example.com/webhooks"}})
}

/// A `message.sent` / `message.finalized` webhook body for our message `id`.
pub fn report(event: &str, id: &str, status: &str, errors: Value) -> Value {
    json!({"data": {"event_type": event, "id": uuid::Uuid::new_v4().to_string(),
        "occurred_at": "2026-11-30T10:00:01.000+00:00", "record_type": "event",
        "payload": {"direction": "outbound", "id": id, "record_type": "message", "type": "SMS",
            "from": {"phone_number": FROM},
            "to": [{"phone_number": "+13125550001", "status": status, "carrier": "T-Mobile USA"}],
            "text": "Hello", "errors": errors, "parts": 1,
            "cost": {"amount": "0.0040", "currency": "USD"}}},
        "meta": {"attempt": 1}})
}
