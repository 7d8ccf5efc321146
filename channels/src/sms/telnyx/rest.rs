//! Telnyx's Messages API: `POST {api_base}/v2/messages` with the API key as bearer and a JSON
//! body (`from`, `to`, `text`, `webhook_url`), answered `{"data": {"id", "to": [{"status"}]}}`;
//! errors come as `{"errors": [{"code", "title", "detail"}]}` and are classified like Twilio's.

use super::TelnyxSmsConfig;
use crate::message::post_json;
use crate::{OutboundMessage, SendError, SendReceipt};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

#[derive(Deserialize)]
struct Created {
    data: CreatedData,
}

#[derive(Deserialize)]
struct CreatedData {
    id: String,
    #[serde(default)]
    to: Vec<Recipient>,
}

#[derive(Deserialize)]
struct Recipient {
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    code: Option<serde_json::Value>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: Option<String>,
}

/// Sends one message; delivery reports are asked for at this account's webhook.
pub async fn send(
    http: &reqwest::Client,
    config: &TelnyxSmsConfig,
    msg: &OutboundMessage,
) -> Result<SendReceipt, SendError> {
    let url = format!("{}/v2/messages", config.api_base.trim_end_matches('/'));
    let body = json!({
        "from": config.from,
        "to": msg.to,
        "text": msg.body,
        "webhook_url": format!("{}/sms", msg.webhook_base),
        "use_profile_webhooks": false,
    });
    let (status, retry, bytes) = post_json(http, &url, config.api_key.expose(), &body).await?;
    if (200..300).contains(&status) {
        let created: Created =
            serde_json::from_slice(&bytes).map_err(|e| SendError::BadResponse(e.to_string()))?;
        let provider_status = created
            .data
            .to
            .first()
            .and_then(|r| r.status.clone())
            .unwrap_or_else(|| "queued".into());
        return Ok(SendReceipt {
            provider_message_id: created.data.id,
            provider_status,
        });
    }
    let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
    let first = err.errors.into_iter().next();
    let code = first
        .as_ref()
        .and_then(|e| e.code.clone())
        .map(|c| match c {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
    let message = first
        .map(|e| match e.detail {
            Some(d) => format!("{}: {d}", e.title),
            None => e.title,
        })
        .unwrap_or_default();
    Err(classify(status, code, message, retry))
}

/// Decides whether an error is worth retrying: 429 and every 5xx are transient; any other
/// 4xx (40310 invalid `to`, 40300 blocked as spam, 10009 authentication, 40013 invalid
/// source number, …) names a problem a retry cannot fix.
pub fn classify(
    status: u16,
    code: Option<String>,
    message: String,
    retry_after: Option<Duration>,
) -> SendError {
    SendError::from_status(status, code, message, retry_after, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_http::{client, outbound, serve, Reply};

    #[test]
    fn classification() {
        assert!(classify(500, None, String::new(), None).is_transient());
        assert!(classify(429, Some("10011".into()), String::new(), None).is_transient());
        let e = classify(
            422,
            Some("40310".into()),
            "Invalid 'to' address".into(),
            None,
        );
        assert!(!e.is_transient());
        assert_eq!(e.code(), Some("40310"));
        assert!(!classify(401, Some("10009".into()), String::new(), None).is_transient());
    }

    fn config(api_base: &str) -> TelnyxSmsConfig {
        TelnyxSmsConfig {
            api_key: crate::Secret::new("KEYabc"),
            public_key: String::new(),
            from: "+15550001111".into(),
            api_base: format!("{api_base}/"),
            messages_per_second: 1.0,
        }
    }

    fn message() -> OutboundMessage {
        outbound(
            "+15550002222",
            "hello",
            "https://gw.example/webhooks/telnyx/acme",
        )
    }

    #[tokio::test]
    async fn a_send_posts_json_with_the_key_and_reads_id_and_status() {
        let (base, seen) = serve(vec![
            Reply::json(200, r#"{"data":{"id":"t-1","to":[{"status":"sent"}]}}"#),
            Reply::json(200, r#"{"data":{"id":"t-2"}}"#),
        ])
        .await;
        let (http, cfg) = (client(), config(&base));
        let receipt = send(&http, &cfg, &message()).await.unwrap();
        assert_eq!(
            (
                receipt.provider_message_id.as_str(),
                receipt.provider_status.as_str()
            ),
            ("t-1", "sent")
        );
        let receipt = send(&http, &cfg, &message()).await.unwrap();
        assert_eq!(
            receipt.provider_status, "queued",
            "no recipient status: queued"
        );
        let req = &seen.await.unwrap()[0];
        assert_eq!(
            (req.method.as_str(), req.path.as_str()),
            ("POST", "/v2/messages")
        );
        assert_eq!(req.header("authorization"), Some("Bearer KEYabc"));
        assert_eq!(
            req.json(),
            serde_json::json!({
                "from": "+15550001111", "to": "+15550002222", "text": "hello",
                "webhook_url": "https://gw.example/webhooks/telnyx/acme/sms",
                "use_profile_webhooks": false,
            })
        );
    }

    #[tokio::test]
    async fn errors_carry_the_first_code_and_its_detail() {
        let (base, _seen) = serve(vec![
            Reply::json(
                422,
                r#"{"errors":[{"code":"40310","title":"Invalid to","detail":"not a number"},{"code":"1"}]}"#,
            ),
            Reply::json(400, r#"{"errors":[{"code":10009,"title":"Auth failed"}]}"#),
            Reply::json(503, "<html>down</html>").header("Retry-After", "9"),
            Reply::json(200, r#"{"data":{}}"#),
        ])
        .await;
        let (http, cfg) = (client(), config(&base));
        match send(&http, &cfg, &message()).await {
            Err(SendError::Rejected {
                status,
                code,
                message,
            }) => {
                assert_eq!((status, code.as_deref()), (422, Some("40310")));
                assert_eq!(message, "Invalid to: not a number");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        match send(&http, &cfg, &message()).await {
            Err(SendError::Rejected { code, message, .. }) => {
                assert_eq!(
                    (code.as_deref(), message.as_str()),
                    (Some("10009"), "Auth failed")
                );
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        match send(&http, &cfg, &message()).await {
            Err(SendError::Unavailable {
                status,
                code,
                retry_after,
            }) => {
                assert_eq!((status, code), (503, None));
                assert_eq!(retry_after, Some(Duration::from_secs(9)));
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(matches!(
            send(&http, &cfg, &message()).await,
            Err(SendError::BadResponse(_))
        ));
    }
}
