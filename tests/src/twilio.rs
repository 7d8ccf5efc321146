//! A local stand-in for Twilio: the Messages REST API
//! (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP basic auth, form body, 201
//! with Twilio's JSON, Twilio's error JSON) with scriptable failures, plus signed webhooks as
//! Twilio sends them (`X-Twilio-Signature` over the URL and sorted form parameters).

use crate::env::TestOrg;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// What the stand-in answers the next send with.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// 201 Created.
    Accept,
    /// An error with Twilio's error body.
    Fail {
        /// HTTP status.
        status: u16,
        /// Twilio error code.
        code: u32,
    },
}

/// A send request the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The account in the path.
    pub account_sid: String,
    /// Whether basic auth matched the account's token.
    pub authorized: bool,
    /// The form fields.
    pub form: HashMap<String, String>,
    /// The `sid` it answered with, if it accepted.
    pub sid: Option<String>,
}

#[derive(Default)]
struct Inner {
    accounts: HashMap<String, String>,
    script: VecDeque<Scripted>,
    received: Vec<Received>,
}

/// The running stand-in.
#[derive(Clone)]
pub struct TwilioStandin {
    /// Its base URL (what `api_base` is set to).
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl TwilioStandin {
    /// Starts it on a free loopback port.
    pub async fn start() -> TwilioStandin {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(create_message),
            )
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("stand-in serves") });
        TwilioStandin { base, inner }
    }

    /// Registers an account's credentials.
    pub fn add_account(&self, org: &TestOrg) {
        self.inner
            .lock()
            .unwrap()
            .accounts
            .insert(org.account_sid.clone(), org.auth_token.clone());
    }

    /// Queues answers for the next sends (after them: accept).
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.inner.lock().unwrap().script.extend(answers);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }
}

async fn create_message(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let authorized = match (inner.accounts.get(&sid), basic_auth(&headers)) {
        (Some(token), Some((user, pass))) => user == sid && &pass == token,
        _ => false,
    };
    let mut rec = Received {
        account_sid: sid.clone(),
        authorized,
        form: form.clone(),
        sid: None,
    };
    if !authorized {
        inner.received.push(rec);
        return error(401, 20003, "Authenticate");
    }
    for field in ["To", "Body"] {
        if form.get(field).is_none_or(|v| v.is_empty()) {
            inner.received.push(rec);
            return error(400, 21604, &format!("A '{field}' parameter is required."));
        }
    }
    match inner.script.pop_front().unwrap_or(Scripted::Accept) {
        Scripted::Fail { status, code } => {
            inner.received.push(rec);
            error(status, code, "scripted failure")
        }
        Scripted::Accept => {
            let msid = format!("SM{}", uuid::Uuid::new_v4().simple());
            rec.sid = Some(msid.clone());
            inner.received.push(rec);
            let body = json!({
                "account_sid": sid, "api_version": "2010-04-01", "body": form.get("Body"),
                "date_created": "Wed, 25 Nov 2026 19:00:00 +0000", "direction": "outbound-api",
                "error_code": null, "error_message": null, "from": form.get("From"),
                "messaging_service_sid": null, "num_media": "0", "num_segments": "1",
                "price": null, "price_unit": "USD", "sid": msid, "status": "queued",
                "to": form.get("To"), "uri": format!("/2010-04-01/Accounts/{sid}/Messages/{msid}.json"),
            });
            (StatusCode::CREATED, Json(body)).into_response()
        }
    }
}

fn error(status: u16, code: u32, message: &str) -> Response {
    let body = json!({"code": code, "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status});
    (
        StatusCode::from_u16(status).expect("valid status"),
        Json(body),
    )
        .into_response()
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
    let s = String::from_utf8(decoded).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// The form fields of an incoming-SMS webhook, exactly as Twilio names them.
pub fn inbound_sms(org: &TestOrg, sid: &str, from: &str, body: &str) -> Vec<(String, String)> {
    [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ToCity", ""),
        ("FromZip", ""),
        ("SmsSid", sid),
        ("FromState", "CA"),
        ("SmsStatus", "received"),
        ("FromCity", ""),
        ("Body", body),
        ("FromCountry", "US"),
        ("To", &org.from),
        ("ToZip", ""),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", &org.account_sid),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The form fields of a status callback.
pub fn status_callback(
    org: &TestOrg,
    message_sid: &str,
    status: &str,
    error_code: Option<&str>,
) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = [
        ("SmsSid", message_sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", "+15557654321"),
        ("MessageSid", message_sid),
        ("AccountSid", &org.account_sid),
        ("From", &org.from),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(code) = error_code {
        f.push(("ErrorCode".into(), code.into()));
    }
    f
}

/// Posts a webhook signed with `token` over `base` + `path`.
pub async fn post_signed(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
    params: &[(String, String)],
) -> reqwest::Response {
    let url = format!("{base}{path}");
    let sig = channels::sms::twilio::signature::compute(token, &url, params);
    client
        .post(&url)
        .header("X-Twilio-Signature", sig)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(params).expect("form"))
        .send()
        .await
        .expect("webhook request")
}
