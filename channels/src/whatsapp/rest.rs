//! The Graph API calls: `POST {api_base}/{version}/{phone-number-id}/messages` with the bearer
//! token, the two-step media download (`GET /{version}/{media-id}` for a short-lived URL, then
//! that URL with the same token), and Meta's error codes classified into transient (retry with
//! backoff) and permanent (fail now).

use super::{outbound, WhatsAppConfig};
use crate::message::{post_json, read_capped};
use crate::{FetchedMedia, MediaError, OutboundMessage, SendError, SendReceipt};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
struct Sent {
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
    #[serde(default)]
    message_status: Option<String>,
}

/// Meta's error body: `{"error": {"message", "type", "code", "error_subcode", …}}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorInner,
}

#[derive(Deserialize, Default)]
struct ErrorInner {
    #[serde(default)]
    message: String,
    code: Option<i64>,
}

/// Sends one message.
pub async fn send(
    http: &reqwest::Client,
    config: &WhatsAppConfig,
    msg: &OutboundMessage,
) -> Result<SendReceipt, SendError> {
    let url = format!(
        "{}/{}/{}/messages",
        config.api_base.trim_end_matches('/'),
        config.api_version,
        config.phone_number_id
    );
    let body = outbound::payload(&msg.to, &msg.body, msg.content.as_ref());
    let (status, retry, bytes) = post_json(http, &url, config.access_token.expose(), &body).await?;
    if (200..300).contains(&status) {
        let sent: Sent =
            serde_json::from_slice(&bytes).map_err(|e| SendError::BadResponse(e.to_string()))?;
        let first = sent
            .messages
            .into_iter()
            .next()
            .ok_or_else(|| SendError::BadResponse("no message id in the answer".into()))?;
        return Ok(SendReceipt {
            provider_message_id: first.id,
            provider_status: first.message_status.unwrap_or_else(|| "accepted".into()),
        });
    }
    let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
    Err(classify(status, err.error.code, err.error.message, retry))
}

/// Meta's codes that mean "later": API unknown/service errors (1, 2), rate limits (4,
/// 80007, 130429 throughput, 131048 spam rate, 131056 pair rate), temporary failures
/// (131000 something went wrong, 131016 service unavailable, 133004 server unavailable).
const TRANSIENT_CODES: &[i64] = &[
    1, 2, 4, 80007, 130429, 131000, 131016, 131048, 131056, 133004,
];

/// Decides whether an error is worth retrying: HTTP 429 and 5xx, and the codes above;
/// anything else (131026 undeliverable, 131047 re-engagement needed outside the window,
/// 131051 unsupported type, 100 invalid parameter, 190 expired token, …) fails at once.
pub fn classify(
    status: u16,
    code: Option<i64>,
    message: String,
    retry_after: Option<Duration>,
) -> SendError {
    let transient = code.is_some_and(|c| TRANSIENT_CODES.contains(&c));
    SendError::from_status(
        status,
        code.map(|c| c.to_string()),
        message,
        retry_after,
        transient,
    )
}

#[derive(Deserialize)]
struct MediaInfo {
    url: String,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    file_size: Option<serde_json::Value>,
}

/// Downloads a media object by its id, refusing more than `max_bytes`.
pub async fn fetch_media(
    http: &reqwest::Client,
    config: &WhatsAppConfig,
    media_id: &str,
    max_bytes: u64,
) -> Result<FetchedMedia, MediaError> {
    if media_id.is_empty() || !media_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(MediaError::Refused {
            status: 0,
            message: format!("`{media_id}` is not a media id"),
        });
    }
    let info_url = format!(
        "{}/{}/{}?phone_number_id={}",
        config.api_base.trim_end_matches('/'),
        config.api_version,
        media_id,
        config.phone_number_id
    );
    let resp = get(http, config, &info_url).await?;
    let info: MediaInfo = serde_json::from_slice(
        &crate::message::read_capped(resp, crate::message::MAX_PROVIDER_RESPONSE_BYTES).await?,
    )
    .map_err(|e| MediaError::Refused {
        status: 200,
        message: format!("media info: {e}"),
    })?;
    let declared = info.file_size.as_ref().and_then(|v| match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    });
    if declared.is_some_and(|n| n > max_bytes) {
        return Err(MediaError::TooLarge { limit: max_bytes });
    }
    let resp = get(http, config, &info.url).await?;
    let served = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = read_capped(resp, max_bytes).await?;
    Ok(FetchedMedia {
        content_type: info
            .mime_type
            .or(served)
            .unwrap_or_else(|| "application/octet-stream".into()),
        bytes,
    })
}

async fn get(
    http: &reqwest::Client,
    config: &WhatsAppConfig,
    url: &str,
) -> Result<reqwest::Response, MediaError> {
    let resp = http
        .get(url)
        .bearer_auth(config.access_token.expose())
        .send()
        .await
        .map_err(|e| MediaError::Transient(e.to_string()))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let text = crate::message::read_capped(resp, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if status == 429 || status >= 500 {
        Err(MediaError::Transient(format!("HTTP {status}")))
    } else {
        Err(MediaError::Refused {
            status,
            message: text.chars().take(200).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_http::{client, outbound, serve, Reply};

    #[test]
    fn classification() {
        for (status, code) in [
            (400, 130429),
            (400, 131056),
            (500, 131000),
            (429, 4),
            (503, 0),
        ] {
            assert!(
                classify(status, Some(code), String::new(), None).is_transient(),
                "{status} {code}"
            );
        }
        for (status, code) in [(400, 131026), (400, 131047), (400, 100), (401, 190)] {
            let e = classify(status, Some(code), "no".into(), None);
            assert!(!e.is_transient(), "{status} {code}");
            assert_eq!(e.code(), Some(code.to_string().as_str()));
        }
        assert!(!classify(400, None, String::new(), None).is_transient());
        for code in TRANSIENT_CODES {
            assert!(
                classify(400, Some(*code), String::new(), None).is_transient(),
                "{code}"
            );
        }
    }

    fn config(api_base: &str) -> WhatsAppConfig {
        WhatsAppConfig {
            phone_number_id: "106540352242922".into(),
            access_token: crate::Secret::new("EAAtok"),
            app_secret: crate::Secret::new("s"),
            verify_token: crate::Secret::new("v"),
            api_base: format!("{api_base}/"),
            api_version: "v21.0".into(),
            messages_per_second: 80.0,
        }
    }

    fn message() -> OutboundMessage {
        outbound("15550002222", "hello", "")
    }

    #[tokio::test]
    async fn a_send_posts_metas_payload_and_reads_the_wamid() {
        let (base, seen) = serve(vec![
            Reply::json(
                200,
                r#"{"messages":[{"id":"wamid.A","message_status":"held_for_quality_assessment"}]}"#,
            ),
            Reply::json(200, r#"{"messages":[{"id":"wamid.B"}]}"#),
            Reply::json(200, r#"{"messages":[]}"#),
        ])
        .await;
        let (http, cfg) = (client(), config(&base));
        let r = send(&http, &cfg, &message()).await.unwrap();
        assert_eq!(
            (r.provider_message_id.as_str(), r.provider_status.as_str()),
            ("wamid.A", "held_for_quality_assessment")
        );
        let r = send(&http, &cfg, &message()).await.unwrap();
        assert_eq!(r.provider_status, "accepted");
        assert!(matches!(
            send(&http, &cfg, &message()).await,
            Err(SendError::BadResponse(m)) if m.contains("no message id")
        ));
        let req = &seen.await.unwrap()[0];
        assert_eq!(req.path, "/v21.0/106540352242922/messages");
        assert_eq!(req.header("authorization"), Some("Bearer EAAtok"));
        assert_eq!(req.json(), outbound::payload("15550002222", "hello", None));
    }

    #[tokio::test]
    async fn send_errors_carry_metas_code_and_message() {
        let (base, _seen) = serve(vec![
            Reply::json(
                400,
                r#"{"error":{"message":"Re-engagement","code":131047}}"#,
            ),
            Reply::json(400, r#"{"error":{"message":"spam rate","code":131048}}"#),
        ])
        .await;
        let (http, cfg) = (client(), config(&base));
        match send(&http, &cfg, &message()).await {
            Err(SendError::Rejected { code, message, .. }) => {
                assert_eq!(
                    (code.as_deref(), message.as_str()),
                    (Some("131047"), "Re-engagement")
                );
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        assert!(matches!(
            send(&http, &cfg, &message()).await,
            Err(SendError::Unavailable { status: 400, .. })
        ));
    }

    #[tokio::test]
    async fn media_is_fetched_in_two_steps_with_the_token() {
        let file = Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "image/jpeg".into())],
            body: b"JPEGDATA".to_vec(),
            no_length: false,
        };
        let (base, seen) = serve_media(file, r#""mime_type":"image/png","file_size":"8""#).await;
        let got = fetch_media(&client(), &config(&base), "1234", 8)
            .await
            .unwrap();
        assert_eq!(got.bytes, b"JPEGDATA");
        assert_eq!(got.content_type, "image/png", "the info's type wins");
        let reqs = seen.await.unwrap();
        assert_eq!(reqs[0].path, "/v21.0/1234?phone_number_id=106540352242922");
        assert_eq!(reqs[1].path, "/file");
        for r in &reqs {
            assert_eq!(r.header("authorization"), Some("Bearer EAAtok"));
        }
    }

    /// Serves the media info (pointing at `/file` on the same server) and then the file.
    async fn serve_media(
        file: Reply,
        info_fields: &str,
    ) -> (
        String,
        tokio::task::JoinHandle<Vec<crate::test_http::Captured>>,
    ) {
        crate::test_http::serve_with(|base| {
            let info = format!(r#"{{"url":"{base}/file",{info_fields}}}"#);
            vec![Reply::json(200, &info), file]
        })
        .await
    }

    #[tokio::test]
    async fn media_downloads_are_refused_or_retried_as_they_should() {
        let jpeg = |n: usize| Reply {
            status: 200,
            headers: Vec::new(),
            body: vec![7; n],
            no_length: false,
        };
        // A declared size over the cap is refused before the download.
        let (base, seen) = serve_media(jpeg(1), r#""file_size":9"#).await;
        let cfg = config(&base);
        assert!(matches!(
            fetch_media(&client(), &cfg, "1", 8).await,
            Err(MediaError::TooLarge { limit: 8 })
        ));
        drop(seen);
        // Meta sometimes sends the size as a string: it is read all the same.
        let (base, _seen) = serve_media(jpeg(8), r#""file_size":"9""#).await;
        assert!(matches!(
            fetch_media(&client(), &config(&base), "1", 8).await,
            Err(MediaError::TooLarge { limit: 8 })
        ));
        // No type anywhere: octet-stream; exactly the cap is fine.
        let (base, _seen) = serve_media(jpeg(8), r#""file_size":8"#).await;
        let got = fetch_media(&client(), &config(&base), "1", 8)
            .await
            .unwrap();
        assert_eq!(got.content_type, "application/octet-stream");
        assert_eq!(got.bytes.len(), 8);
        // Not a media id: refused without a request.
        assert!(matches!(
            fetch_media(&client(), &cfg, "../x", 8).await,
            Err(MediaError::Refused { status: 0, .. })
        ));
        assert!(matches!(
            fetch_media(&client(), &cfg, "", 8).await,
            Err(MediaError::Refused { status: 0, .. })
        ));
        // 404 is refused with Meta's words, 429 and 500 are retried, bad JSON is refused.
        let (base, _seen) = serve(vec![
            Reply::json(404, r#"{"error":"gone"}"#),
            Reply::json(429, "{}"),
            Reply::json(500, "{}"),
            Reply::json(499, "{}"),
            Reply::json(200, "nope"),
        ])
        .await;
        let (http, cfg) = (client(), config(&base));
        match fetch_media(&http, &cfg, "1", 8).await {
            Err(MediaError::Refused {
                status: 404,
                message,
            }) => {
                assert_eq!(message, r#"{"error":"gone"}"#)
            }
            other => panic!("expected Refused 404, got {other:?}"),
        }
        for _ in 0..2 {
            assert!(matches!(
                fetch_media(&http, &cfg, "1", 8).await,
                Err(MediaError::Transient(_))
            ));
        }
        assert!(matches!(
            fetch_media(&http, &cfg, "1", 8).await,
            Err(MediaError::Refused { status: 499, .. })
        ));
        assert!(matches!(
            fetch_media(&http, &cfg, "1", 8).await,
            Err(MediaError::Refused { status: 200, .. })
        ));
    }
}
