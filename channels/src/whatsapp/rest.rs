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
    }
}
