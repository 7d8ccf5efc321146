//! The normalized types that cross the plugin boundary: inbound messages and status reports
//! (from webhooks), outbound messages (to `send`), and the classified errors of both.

use crate::sms::keywords::Keyword;
use state_machines::{Channel, DeliveryState};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// An attachment of an inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMedia {
    /// Where it is: a URL (Twilio, Telnyx) or the provider's media id (WhatsApp).
    pub reference: String,
    /// Its MIME type as the provider declared it.
    pub content_type: String,
    /// A caption sent with it.
    pub caption: Option<String>,
    /// Its file name, for documents.
    pub filename: Option<String>,
    /// The provider's SHA-256 of it, when it gives one (checked after the download).
    pub provider_sha256: Option<String>,
    /// Whether the runtime should download it through [`crate::ChannelPlugin::fetch_media`]
    /// and keep it (the provider's copy expires); otherwise only the reference is kept.
    pub fetch: bool,
}

impl InboundMedia {
    /// A plain link with its type, nothing to fetch.
    pub fn link(url: impl Into<String>, content_type: impl Into<String>) -> InboundMedia {
        InboundMedia {
            reference: url.into(),
            content_type: content_type.into(),
            caption: None,
            filename: None,
            provider_sha256: None,
            fetch: false,
        }
    }
}

/// The `kind` of an inbound message a machine sent on the contact's behalf (an
/// out-of-office, bulk mail): stored, but it reopens no conversation and asks no agent.
pub const AUTO_REPLY_KIND: &str = "auto_reply";

/// A message from a contact, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// The channel it came on.
    pub channel: Channel,
    /// The provider's id for it; with the channel, the deduplication key.
    pub provider_message_id: String,
    /// The contact's address on that channel (E.164 number, email address, …).
    pub from: String,
    /// Our address it was sent to.
    pub to: String,
    /// The text (for non-text messages, a readable rendering of them).
    pub body: String,
    /// What kind of message it is: `text`, `image`, `location`, `reaction`, …, or
    /// [`AUTO_REPLY_KIND`] for a message sent by a machine on the contact's behalf.
    pub kind: String,
    /// The structured part of non-text messages (coordinates, contact cards, the button
    /// pressed, the emoji of a reaction), as the plugin normalized it.
    pub content: Option<serde_json::Value>,
    /// Attachments.
    pub media: Vec<InboundMedia>,
    /// The provider id of the message this one replies or reacts to.
    pub reply_to: Option<String>,
    /// The carrier keyword it is (STOP, START, HELP), if the channel has keywords.
    pub keyword: Option<Keyword>,
    /// The customer-service window this message opens (WhatsApp: 24 hours), if any.
    pub opens_window: Option<Duration>,
}

impl InboundMessage {
    /// A plain text message with nothing else.
    pub fn text(
        channel: Channel,
        provider_message_id: impl Into<String>,
        from: impl Into<String>,
        to: impl Into<String>,
        body: impl Into<String>,
    ) -> InboundMessage {
        InboundMessage {
            channel,
            provider_message_id: provider_message_id.into(),
            from: from.into(),
            to: to.into(),
            body: body.into(),
            kind: "text".into(),
            content: None,
            media: Vec::new(),
            reply_to: None,
            keyword: None,
            opens_window: None,
        }
    }
}

/// A provider's report on one of our outbound messages, mapped onto the delivery machine.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    /// The provider's id of the message (what [`SendReceipt::provider_message_id`] returned).
    pub provider_message_id: String,
    /// The state it maps to.
    pub state: DeliveryState,
    /// The provider's own word for it (`undelivered`, …), kept in history.
    pub provider_status: String,
    /// The provider's error code, if any.
    pub error_code: Option<String>,
    /// The provider's error text, if any.
    pub error_message: Option<String>,
    /// Whatever else the provider reported that is worth keeping (pricing, conversation).
    pub details: Option<serde_json::Value>,
}

impl StatusUpdate {
    /// A report with no error and no details.
    pub fn new(
        provider_message_id: impl Into<String>,
        state: DeliveryState,
        provider_status: impl Into<String>,
    ) -> StatusUpdate {
        StatusUpdate {
            provider_message_id: provider_message_id.into(),
            state,
            provider_status: provider_status.into(),
            error_code: None,
            error_message: None,
            details: None,
        }
    }
}

/// One item a webhook carried.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundEvent {
    /// A new message from a contact.
    Message(InboundMessage),
    /// A delivery status callback.
    Status(StatusUpdate),
}

/// A message to send, as the runtime hands it to a plugin.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// Our id of the message (for idempotency on the provider side where supported).
    pub message_id: String,
    /// The recipient's address, as [`crate::ChannelPlugin::normalize_recipient`] returned it.
    pub to: String,
    /// The text.
    pub body: String,
    /// The structured content the API accepted ([`crate::ChannelPlugin::check_outbound`]).
    pub content: Option<serde_json::Value>,
    /// This account's webhook base, `{public url}/webhooks/{provider}/{org}`: the plugin
    /// appends its own status hook where the provider takes a callback URL per message.
    pub webhook_base: String,
    /// Files sent with it (email), in the order given, loaded from the stored media.
    pub attachments: Vec<OutboundAttachment>,
}

/// A file sent with a message, with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundAttachment {
    /// The file name the recipient sees.
    pub filename: String,
    /// Its MIME type (`application/pdf`).
    pub content_type: String,
    /// The bytes.
    pub data: Vec<u8>,
}

/// What a provider answered when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The provider's id of the message; status callbacks name it.
    pub provider_message_id: String,
    /// The provider's status word at acceptance.
    pub provider_status: String,
}

/// Why a send failed; [`SendError::is_transient`] drives retry and dead-letter decisions.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The provider refused this message for good (bad number, unsubscribed, auth).
    #[error("provider rejected the message (HTTP {status}, code {code:?}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The provider's error code.
        code: Option<String>,
        /// The provider's message.
        message: String,
    },
    /// The provider is overloaded or failing (429, 5xx); try again later.
    #[error("provider unavailable (HTTP {status}, code {code:?})")]
    Unavailable {
        /// HTTP status.
        status: u16,
        /// The provider's error code, if it sent one.
        code: Option<String>,
        /// The provider's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// The request did not complete (connect, timeout, reset).
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// The provider answered 2xx with a body we could not understand.
    #[error("unexpected provider response: {0}")]
    BadResponse(String),
}

impl SendError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::Rejected { .. } => false,
            SendError::Unavailable { .. } | SendError::Transport(_) => true,
            // The provider may have accepted it; retrying risks a duplicate, but losing the
            // message is worse and providers answer well-formed JSON in practice.
            SendError::BadResponse(_) => true,
        }
    }

    /// The classification every provider shares: HTTP 429 and 5xx, and codes the provider
    /// documents as temporary (`transient_code`), are [`SendError::Unavailable`]; any other
    /// error names a problem with this message or account that a retry cannot fix.
    pub fn from_status(
        status: u16,
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
        transient_code: bool,
    ) -> SendError {
        if status == 429 || status >= 500 || transient_code {
            SendError::Unavailable {
                status,
                code,
                retry_after,
            }
        } else {
            SendError::Rejected {
                status,
                code,
                message,
            }
        }
    }

    /// The provider's error code, where it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            SendError::Rejected { code, .. } | SendError::Unavailable { code, .. } => {
                code.as_deref()
            }
            _ => None,
        }
    }
}

/// The `Retry-After` header of a provider response, in seconds.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// `POST`s a JSON body with a bearer token and returns the answer's status, `Retry-After`
/// and body — the request every JSON provider API (Meta's, Telnyx's) sends a message with.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &serde_json::Value,
) -> Result<(u16, Option<Duration>, Vec<u8>), SendError> {
    let resp = http
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .map_err(SendError::Transport)?;
    let status = resp.status().as_u16();
    let retry = retry_after(resp.headers());
    let bytes = read_send_response(resp).await?;
    Ok((status, retry, bytes))
}

/// The most a provider's answer to a send may hold. Real answers are a few hundred bytes; a
/// broken or hostile endpoint must not make us buffer without bound.
pub const MAX_PROVIDER_RESPONSE_BYTES: u64 = 1024 * 1024;

/// Reads a provider's answer to a send, up to [`MAX_PROVIDER_RESPONSE_BYTES`] (more is a
/// [`SendError::BadResponse`], which is retried: the provider may have accepted).
pub async fn read_send_response(resp: reqwest::Response) -> Result<Vec<u8>, SendError> {
    read_capped(resp, MAX_PROVIDER_RESPONSE_BYTES)
        .await
        .map_err(|e| SendError::BadResponse(format!("reading the answer: {e}")))
}

/// The future a send returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<SendReceipt, SendError>> + Send + 'a>>;

/// An attachment as downloaded from the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMedia {
    /// Its MIME type as served.
    pub content_type: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Why an attachment could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// This plugin does not fetch media.
    #[error("{0}")]
    Unsupported(String),
    /// Larger than allowed; never retried.
    #[error("attachment is larger than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: u64,
    },
    /// The provider said no for good (unknown or expired media, auth).
    #[error("provider refused the download (HTTP {status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// What it said.
        message: String,
    },
    /// A failure worth retrying (5xx, 429, connect, timeout).
    #[error("download failed, will retry: {0}")]
    Transient(String),
}

impl MediaError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, MediaError::Transient(_))
    }
}

/// The future a media download returns.
pub type MediaFuture<'a> =
    Pin<Box<dyn Future<Output = Result<FetchedMedia, MediaError>> + Send + 'a>>;

/// Reads a response body up to `max_bytes`, refusing more (by `Content-Length` before
/// reading, and by counting while reading when the length is not declared).
pub async fn read_capped(
    mut resp: reqwest::Response,
    max_bytes: u64,
) -> Result<Vec<u8>, MediaError> {
    if resp.content_length().is_some_and(|n| n > max_bytes) {
        return Err(MediaError::TooLarge { limit: max_bytes });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| MediaError::Transient(e.to_string()))?
    {
        if out.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(MediaError::TooLarge { limit: max_bytes });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
