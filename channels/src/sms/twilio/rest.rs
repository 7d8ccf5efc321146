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
    use crate::test_http::{client, outbound, serve, Reply};

    #[test]
    fn classification() {
        assert!(classify(500, None, String::new(), None).is_transient());
        assert!(classify(503, Some("20500".into()), String::new(), None).is_transient());
        assert!(classify(429, Some("20429".into()), String::new(), None).is_transient());
        let e = classify(400, Some("21211".into()), "bad To".into(), None);
        assert!(!e.is_transient());
        assert_eq!(e.code(), Some("21211"));
        assert!(!classify(401, Some("20003".into()), String::new(), None).is_transient());
        // Twilio's own throttling code is transient whatever the HTTP status says.
        assert!(classify(400, Some("20429".into()), String::new(), None).is_transient());
        assert!(!classify(400, Some("20428".into()), String::new(), None).is_transient());
    }

    fn config(from: &str, api_base: &str) -> TwilioSmsConfig {
        TwilioSmsConfig {
            account_sid: format!("AC{}", "1".repeat(32)),
            auth_token: crate::Secret::new("tok"),
            from: from.into(),
            api_base: format!("{api_base}/"),
            messages_per_second: 1.0,
        }
    }

    fn message() -> OutboundMessage {
        outbound(
            "+15550002222",
            "hello there",
            "https://gw.example/webhooks/twilio/acme",
        )
    }

    #[tokio::test]
    async fn a_send_posts_the_form_with_basic_auth_and_reads_the_sid() {
        let accepted = Reply::json(201, r#"{"sid":"SM123","status":"queued"}"#);
        let (base, seen) = serve(vec![accepted]).await;
        let receipt = send(&client(), &config("+15550001111", &base), &message())
            .await
            .unwrap();
        assert_eq!(receipt.provider_message_id, "SM123");
        assert_eq!(receipt.provider_status, "queued");
        let req = &seen.await.unwrap()[0];
        let sid = format!("AC{}", "1".repeat(32));
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.path,
            format!("/2010-04-01/Accounts/{sid}/Messages.json")
        );
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{sid}:tok"),
        );
        assert_eq!(
            req.header("authorization"),
            Some(format!("Basic {basic}").as_str())
        );
        let form = req.form();
        let field = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(field("To"), Some("+15550002222"));
        assert_eq!(field("From"), Some("+15550001111"));
        assert_eq!(field("Body"), Some("hello there"));
        assert_eq!(
            field("StatusCallback"),
            Some("https://gw.example/webhooks/twilio/acme/status")
        );
    }

    #[tokio::test]
    async fn a_messaging_service_sends_as_messaging_service_sid() {
        let (base, seen) = serve(vec![Reply::json(201, r#"{"sid":"SM9"}"#)]).await;
        let mg = format!("MG{}", "2".repeat(32));
        let receipt = send(&client(), &config(&mg, &base), &message())
            .await
            .unwrap();
        assert_eq!(receipt.provider_status, "", "no status in the answer");
        let form = seen.await.unwrap()[0].form();
        assert!(form.contains(&("MessagingServiceSid".into(), mg)));
        assert!(!form.iter().any(|(k, _)| k == "From"));
    }

    #[tokio::test]
    async fn errors_are_classified_with_code_and_retry_after() {
        let (base, _seen) = serve(vec![
            Reply::json(
                400,
                r#"{"code":21211,"message":"Invalid 'To'","status":400}"#,
            ),
            Reply::json(429, r#"{"code":"20429","message":"Too Many Requests"}"#)
                .header("Retry-After", "5"),
            Reply::json(201, "not json"),
        ])
        .await;
        let (http, cfg) = (client(), config("+15550001111", &base));
        match send(&http, &cfg, &message()).await {
            Err(SendError::Rejected {
                status,
                code,
                message,
            }) => {
                assert_eq!((status, code.as_deref()), (400, Some("21211")));
                assert_eq!(message, "Invalid 'To'");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        match send(&http, &cfg, &message()).await {
            Err(SendError::Unavailable {
                status,
                code,
                retry_after,
            }) => {
                assert_eq!((status, code.as_deref()), (429, Some("20429")));
                assert_eq!(retry_after, Some(Duration::from_secs(5)));
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(matches!(
            send(&http, &cfg, &message()).await,
            Err(SendError::BadResponse(_))
        ));
    }
}
