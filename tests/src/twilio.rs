//! A local stand-in for Twilio: the Messages REST API
//! (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP basic auth, form body, 201
//! with Twilio's JSON, Twilio's error JSON) with scriptable failures, plus signed webhooks as
//! Twilio sends them (`X-Twilio-Signature` over the URL and sorted form parameters).
//!
//! It validates as strictly as the documented API: `To` required (21604), `From` or
//! `MessagingServiceSid` required (21603), a `Body` (or `MediaUrl`) required (21602), bodies
//! over 1,600 characters refused (21617). Besides Twilio's own errors it can script what the
//! network and proxies do: 429 with `Retry-After`, an HTML 5xx page, a request held past the
//! sender's timeout, a connection closed without an answer.

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
    /// 201 Created with this `sid` (a provider that reuses an id).
    AcceptAs(String),
    /// An error with Twilio's error body.
    Fail {
        /// HTTP status.
        status: u16,
        /// Twilio error code.
        code: u32,
    },
    /// 429 with Twilio's error 20429 and a `Retry-After` header.
    RateLimited {
        /// The header's value, in seconds.
        retry_after_secs: u64,
    },
    /// A 5xx whose body is an HTML error page (a proxy's), not Twilio's JSON.
    HtmlError {
        /// HTTP status.
        status: u16,
    },
    /// Holds the request this long before answering 201 — past the sender's timeout, the
    /// answer goes nowhere (the message was not created: no sid is recorded).
    Hang {
        /// How long, ms.
        ms: u64,
    },
    /// Closes the connection without an answer.
    Reset,
    /// Accepts (201) after holding the request this long: a slow provider, within the
    /// sender's timeout.
    AcceptAfter {
        /// How long, ms.
        ms: u64,
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
    /// When it arrived.
    pub at: std::time::Instant,
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
        self.add_credentials(&org.account_sid, &org.auth_token);
    }

    /// Registers an account SID and its auth token.
    pub fn add_credentials(&self, account_sid: &str, auth_token: &str) {
        self.inner
            .lock()
            .unwrap()
            .accounts
            .insert(account_sid.to_string(), auth_token.to_string());
    }

    /// Queues answers for the next sends (after them: accept).
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.inner.lock().unwrap().script.extend(answers);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// How many sends were received, without copying them (for load tools).
    pub fn received_count(&self) -> usize {
        self.inner.lock().unwrap().received.len()
    }

    /// When the newest send whose `Body` is `body` arrived, looking at the last `window`
    /// sends only (for load tools).
    pub fn arrival_of(&self, body: &str, window: usize) -> Option<std::time::Instant> {
        let inner = self.inner.lock().unwrap();
        inner
            .received
            .iter()
            .rev()
            .take(window)
            .find(|r| r.form.get("Body").is_some_and(|b| b == body))
            .map(|r| r.at)
    }

    /// The arrival times of every send (for load tools).
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.inner
            .lock()
            .unwrap()
            .received
            .iter()
            .map(|r| r.at)
            .collect()
    }
}

async fn create_message(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    // Decide under the lock, act (sleep, close) after releasing it.
    let answer = {
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
            at: std::time::Instant::now(),
        };
        let refusal = if !authorized {
            Some(error(401, 20003, "Authenticate"))
        } else {
            validate(&form)
        };
        if let Some(refusal) = refusal {
            inner.received.push(rec);
            return refusal;
        }
        let scripted = inner.script.pop_front().unwrap_or(Scripted::Accept);
        if let Scripted::Accept | Scripted::AcceptAs(_) | Scripted::AcceptAfter { .. } = scripted {
            let msid = match &scripted {
                Scripted::AcceptAs(sid) => sid.clone(),
                _ => format!("SM{}", uuid::Uuid::new_v4().simple()),
            };
            rec.sid = Some(msid.clone());
            inner.received.push(rec);
            match scripted {
                Scripted::AcceptAfter { ms } => (Scripted::AcceptAfter { ms }, msid),
                _ => return created(&sid, &msid, &form),
            }
        } else {
            inner.received.push(rec);
            (scripted, String::new())
        }
    };
    let (answer, msid) = answer;
    match answer {
        Scripted::Accept | Scripted::AcceptAs(_) => unreachable!("answered above"),
        Scripted::AcceptAfter { ms } => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            created(&sid, &msid, &form)
        }
        Scripted::Fail { status, code } => error(status, code, "scripted failure"),
        Scripted::RateLimited { retry_after_secs } => {
            let mut r = error(429, 20429, "Too Many Requests");
            r.headers_mut().insert(
                "retry-after",
                retry_after_secs.to_string().parse().expect("header value"),
            );
            r
        }
        Scripted::HtmlError { status } => (
            StatusCode::from_u16(status).expect("valid status"),
            [("content-type", "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        Scripted::Hang { ms } => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            error(500, 20500, "answered too late")
        }
        // Unwinding the connection's task drops its socket without a response; resume_unwind
        // skips the panic hook, so nothing is printed.
        Scripted::Reset => std::panic::resume_unwind(Box::new("scripted connection reset")),
    }
}

/// Twilio's own checks of a create request, in its order; `None` when it is acceptable.
fn validate(form: &HashMap<String, String>) -> Option<Response> {
    let has = |f: &str| form.get(f).is_some_and(|v| !v.is_empty());
    if !has("To") {
        return Some(error(400, 21604, "A 'To' phone number is required."));
    }
    if !has("From") && !has("MessagingServiceSid") {
        return Some(error(400, 21603, "A 'From' phone number is required."));
    }
    if !has("Body") && !has("MediaUrl") {
        return Some(error(400, 21602, "Message body is required."));
    }
    if form.get("Body").map_or(0, |b| b.chars().count()) > 1600 {
        return Some(error(
            400,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        ));
    }
    None
}

/// 201 with the Message resource as Twilio returns it (`from` null and status `accepted`
/// when sent through a Messaging Service).
fn created(account: &str, msid: &str, form: &HashMap<String, String>) -> Response {
    let service = form.get("MessagingServiceSid");
    let body = json!({
        "account_sid": account, "api_version": "2010-04-01", "body": form.get("Body"),
        "date_created": "Wed, 25 Nov 2026 19:00:00 +0000", "direction": "outbound-api",
        "error_code": null, "error_message": null, "from": form.get("From"),
        "messaging_service_sid": service, "num_media": "0", "num_segments": "1",
        "price": null, "price_unit": "USD", "sid": msid,
        "status": if service.is_some() { "accepted" } else { "queued" },
        "to": form.get("To"), "uri": format!("/2010-04-01/Accounts/{account}/Messages/{msid}.json"),
    });
    (StatusCode::CREATED, Json(body)).into_response()
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

/// A signed incoming-SMS webhook for `org` (slug path), ready to send: what Twilio posts.
pub fn signed_inbound(
    client: &reqwest::Client,
    base: &str,
    org: &TestOrg,
    sid: &str,
    from: &str,
    body: &str,
) -> reqwest::RequestBuilder {
    let params = inbound_sms(org, sid, from, body);
    let url = format!("{base}/webhooks/twilio/{}/sms", org.slug);
    let sig = channels::sms::twilio::signature::compute(&org.auth_token, &url, &params);
    client
        .post(&url)
        .header("X-Twilio-Signature", sig)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&params).expect("form"))
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
