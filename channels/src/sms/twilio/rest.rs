//! Twilio's Messages REST API: `POST {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json`
//! with HTTP basic auth (account SID, auth token) and a form body, and the classification of its
//! errors into transient (retry) and permanent (fail now).

use super::TwilioSmsConfig;
use crate::message::retry_after;
use crate::{OutboundMessage, SendError, SendReceipt};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
struct Created {
    sid: String,
    #[serde(default)]
    status: String,
}

/// Twilio's error body (`{"code": 21211, "message": "…", "more_info": "…", "status": 400}`).
#[derive(Deserialize, Default)]
struct ErrorBody {
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: String,
}

/// Sends one message.
pub async fn send(
    http: &reqwest::Client,
    config: &TwilioSmsConfig,
    msg: &OutboundMessage,
) -> Result<SendReceipt, SendError> {
    let url = format!(
        "{}/2010-04-01/Accounts/{}/Messages.json",
        config.api_base.trim_end_matches('/'),
        config.account_sid
    );
    let sender = if config.from.starts_with("MG") {
        "MessagingServiceSid"
    } else {
        "From"
    };
    let status_callback = format!("{}/status", msg.webhook_base);
    let form = vec![
        ("To", msg.to.as_str()),
        (sender, config.from.as_str()),
        ("Body", msg.body.as_str()),
        ("StatusCallback", status_callback.as_str()),
    ];
    let resp = http
        .post(&url)
        .basic_auth(&config.account_sid, Some(config.auth_token.expose()))
        .form(&form)
        .send()
        .await
        .map_err(SendError::Transport)?;
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let bytes = crate::message::read_send_response(resp).await?;
    if (200..300).contains(&status) {
        let created: Created =
            serde_json::from_slice(&bytes).map_err(|e| SendError::BadResponse(format!("{e}")))?;
        return Ok(SendReceipt {
            provider_message_id: created.sid,
            provider_status: created.status,
        });
    }
    let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
    Err(classify(
        status,
        err.code.map(code_string),
        err.message,
        retry_after,
    ))
}

fn code_string(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Twilio's error code for "Too Many Requests".
const TOO_MANY_REQUESTS: &str = "20429";

/// Decides whether an HTTP error is worth retrying. 429 (or Twilio's 20429) and every 5xx are
/// transient; any other 4xx names a problem with this message or account that a retry cannot
/// fix (21211 invalid `To`, 21610 unsubscribed recipient, 21614 not a mobile number, 20003
/// authentication, …).
pub fn classify(
    status: u16,
    code: Option<String>,
    message: String,
    retry_after: Option<Duration>,
) -> SendError {
    let throttled = code.as_deref() == Some(TOO_MANY_REQUESTS);
    SendError::from_status(status, code, message, retry_after, throttled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(classify(500, None, String::new(), None).is_transient());
        assert!(classify(503, Some("20500".into()), String::new(), None).is_transient());
        assert!(classify(429, Some("20429".into()), String::new(), None).is_transient());
        let e = classify(400, Some("21211".into()), "bad To".into(), None);
        assert!(!e.is_transient());
        assert_eq!(e.code(), Some("21211"));
        assert!(!classify(401, Some("20003".into()), String::new(), None).is_transient());
    }
}
