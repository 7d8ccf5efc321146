//! A local stand-in for Meta's Graph API as the WhatsApp Cloud API uses it: `POST
//! /{version}/{phone-number-id}/messages` (bearer token, Meta's JSON answer and error body,
//! scriptable failures and message ids), the media endpoints (`GET /{version}/{media-id}` for
//! a URL, then that URL with the same token), and deliveries signed as Meta signs them
//! (`X-Hub-Signature-256` over the raw body).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gateway::db::{orgs, Db};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The phone number id test accounts use.
pub const PHONE_NUMBER_ID: &str = "106540352242922";
/// Its display number.
pub const DISPLAY_NUMBER: &str = "15550783881";
/// The Graph API version the stand-in serves.
pub const VERSION: &str = "v21.0";

/// What the stand-in answers the next send with.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// 200 with this message id (`None`: a fresh one).
    Accept(Option<String>),
    /// An error with Meta's error body.
    Fail {
        /// HTTP status.
        status: u16,
        /// Meta's error code.
        code: i64,
    },
}

/// A send the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Whether the bearer token matched.
    pub authorized: bool,
    /// The phone number id in the path.
    pub phone_number_id: String,
    /// The JSON body.
    pub body: Value,
    /// The id it answered with, if it accepted.
    pub id: Option<String>,
}

#[derive(Default)]
struct Inner {
    token: String,
    script: VecDeque<Scripted>,
    received: Vec<Received>,
    media: HashMap<String, (String, Vec<u8>)>,
    media_downloads: usize,
}

/// The running stand-in.
#[derive(Clone)]
pub struct GraphStandin {
    /// Its base URL (what `api_base` is set to).
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

/// A WhatsApp account of a test org.
#[derive(Debug, Clone)]
pub struct WhatsAppAccount {
    /// The access token.
    pub access_token: String,
    /// The app secret that signs deliveries.
    pub app_secret: String,
    /// The verify token.
    pub verify_token: String,
}

impl GraphStandin {
    /// Starts it on a free loopback port.
    pub async fn start() -> GraphStandin {
        let inner = Arc::new(Mutex::new(Inner {
            token: format!("EAA{}", uuid::Uuid::new_v4().simple()),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/{version}/{id}/messages", post(send))
            .route("/{version}/{id}", get(media_info))
            .route("/download/{id}", get(media_bytes))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("stand-in serves") });
        GraphStandin { base, inner }
    }

    /// Adds a WhatsApp account pointing at this stand-in to `org_id`.
    pub async fn add_account(&self, db: &Db, org_id: &str) -> WhatsAppAccount {
        let acct = WhatsAppAccount {
            access_token: self.inner.lock().unwrap().token.clone(),
            app_secret: format!("secret-{}", uuid::Uuid::new_v4().simple()),
            verify_token: format!("verify-{}", uuid::Uuid::new_v4().simple()),
        };
        let cfg = json!({
            "phone_number_id": PHONE_NUMBER_ID, "access_token": acct.access_token,
            "app_secret": acct.app_secret, "verify_token": acct.verify_token,
            "api_base": self.base, "api_version": VERSION, "messages_per_second": 1000.0,
        });
        orgs::upsert_channel_account(&db.pool, org_id, "whatsapp", "whatsapp", &cfg.to_string())
            .await
            .expect("account");
        acct
    }

    /// Queues answers for the next sends (after them: accept with a fresh id).
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.inner.lock().unwrap().script.extend(answers);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Makes a media object downloadable under `id`.
    pub fn add_media(&self, id: &str, mime: &str, bytes: Vec<u8>) {
        self.inner
            .lock()
            .unwrap()
            .media
            .insert(id.to_string(), (mime.to_string(), bytes));
    }

    /// How many media downloads (second step) it served.
    pub fn media_downloads(&self) -> usize {
        self.inner.lock().unwrap().media_downloads
    }
}

fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(inner.token.as_str())
}

fn error(status: u16, code: i64, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "OAuthException", "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": message},
        "fbtrace_id": "AbCdEf123"}});
    (StatusCode::from_u16(status).expect("status"), Json(body)).into_response()
}

async fn send(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut rec = Received {
        authorized: authorized(&inner, &headers),
        phone_number_id: id,
        body: body.clone(),
        id: None,
    };
    if !rec.authorized {
        inner.received.push(rec);
        return error(401, 190, "Invalid OAuth access token.");
    }
    if body["messaging_product"] != "whatsapp" || body["to"].as_str().is_none() {
        inner.received.push(rec);
        return error(400, 100, "Invalid parameter");
    }
    match inner.script.pop_front().unwrap_or(Scripted::Accept(None)) {
        Scripted::Fail { status, code } => {
            inner.received.push(rec);
            error(status, code, "scripted failure")
        }
        Scripted::Accept(id) => {
            let id = id.unwrap_or_else(|| format!("wamid.{}", uuid::Uuid::new_v4().simple()));
            rec.id = Some(id.clone());
            inner.received.push(rec);
            let to = body["to"].clone();
            Json(json!({"messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": id, "message_status": "accepted"}]}))
            .into_response()
        }
    }
}

async fn media_info(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let inner = inner.lock().unwrap();
    if !authorized(&inner, &headers) {
        return error(401, 190, "Invalid OAuth access token.");
    }
    let Some((mime, bytes)) = inner.media.get(&id) else {
        return error(404, 100, "Unsupported get request.");
    };
    let port = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    Json(
        json!({"messaging_product": "whatsapp", "url": format!("http://{port}/download/{id}"),
        "mime_type": mime, "sha256": "", "file_size": bytes.len(), "id": id}),
    )
    .into_response()
}

async fn media_bytes(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if !authorized(&inner, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    inner.media_downloads += 1;
    match inner.media.get(&id) {
        Some((mime, bytes)) => ([("content-type", mime.clone())], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A delivery carrying `messages` and `statuses` for the test number, as Meta sends it.
pub fn delivery(messages: Value, statuses: Value) -> Value {
    json!({
      "object": "whatsapp_business_account",
      "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
        "messages": messages, "statuses": statuses}}]}]
    })
}

/// A text message from `wa_id`.
pub fn text(id: &str, wa_id: &str, body: &str) -> Value {
    json!({"from": wa_id, "id": id, "timestamp": "1749416383", "type": "text", "text": {"body": body}})
}

/// A status report.
pub fn status(id: &str, status: &str) -> Value {
    json!({"id": id, "status": status, "timestamp": "1750263773", "recipient_id": "16505551234"})
}

/// Posts `body` (the exact bytes) to `/webhooks/whatsapp/{slug}` signed with `secret`.
pub async fn post_signed(
    client: &reqwest::Client,
    base: &str,
    slug: &str,
    secret: &str,
    body: &[u8],
) -> reqwest::Response {
    client
        .post(format!("{base}/webhooks/whatsapp/{slug}"))
        .header(
            "X-Hub-Signature-256",
            channels::whatsapp::signature::compute(secret, body),
        )
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("webhook request")
}
