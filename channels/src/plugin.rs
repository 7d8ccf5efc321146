//! The `ChannelPlugin` boundary: what the runtime asks of a provider account, and the
//! webhook request and reply that cross it. The message types are in [`crate::message`].
//!
//! Everything that is one provider's habit is answered by the plugin, never guessed by the
//! runtime: the body a webhook is acknowledged with (TwiML for Twilio, nothing for Meta, the
//! challenge of a verification handshake), where status callbacks should go, which address
//! we send from, which recipients are acceptable, which words are keywords, and whether a
//! free-form message needs an open customer-service window.

use crate::message::{InboundEvent, MediaFuture, OutboundMessage, SendFuture};
use state_machines::Channel;

/// A webhook as received, before any checks.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The full public URL the provider called (the configured public base URL, the path and
    /// the query string), which is what some providers sign.
    pub url: &'a str,
    /// The raw query string (without `?`), empty when there is none.
    pub query: &'a str,
    /// Header (name, value) pairs as received.
    pub headers: &'a [(String, String)],
    /// The raw body, exactly as received (signatures are over these bytes).
    pub body: &'a [u8],
    /// When it arrived, Unix seconds (for replay windows; parsing stays free of clocks).
    pub received_at: i64,
}

impl<'a> WebhookRequest<'a> {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The decoded query parameters.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_str(self.query).unwrap_or_default()
    }
}

/// The 200 a webhook is answered with once everything it carried is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its body.
    pub body: String,
}

impl WebhookReply {
    /// An empty `text/plain` 200.
    pub fn empty() -> WebhookReply {
        WebhookReply {
            content_type: "text/plain",
            body: String::new(),
        }
    }
}

/// What one verified webhook carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// The messages and status reports to store, in the order the provider sent them.
    pub events: Vec<InboundEvent>,
    /// Items of the delivery that could not be used, each with the reason. They are reported
    /// (logged, counted) and the rest is still stored and acknowledged: providers such as
    /// Meta retry a refused delivery for days and may disable the webhook.
    pub skipped: Vec<String>,
    /// What to answer once the events are committed.
    pub reply: WebhookReply,
}

/// Why a webhook was refused. Each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The signature is missing, does not match, or is stale (401).
    #[error("missing or invalid signature")]
    BadSignature,
    /// A verification handshake named the wrong token (403).
    #[error("verification refused: {0}")]
    Forbidden(String),
    /// The body does not parse, or a required field is missing or wrong (400).
    #[error("malformed webhook: field `{field}`: {reason}")]
    Malformed {
        /// The field at fault (or `body`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The plugin claims no such hook (404).
    #[error("unknown webhook `{0}`")]
    UnknownHook(String),
    /// The hook exists but not for this method (405).
    #[error("method {0} is not accepted here")]
    Method(String),
}

impl WebhookError {
    /// A [`WebhookError::Malformed`] with a borrowed reason.
    pub fn malformed(field: &'static str, reason: impl Into<String>) -> WebhookError {
        WebhookError::Malformed {
            field,
            reason: reason.into(),
        }
    }
}

/// What a send request must satisfy beyond the plugin's own checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundRules {
    /// The message is free-form and the provider accepts it only while the recipient's
    /// customer-service window is open (WhatsApp); templates are not.
    pub needs_service_window: bool,
}

/// One provider account of one organization, ready to receive webhooks and send.
///
/// Built by its [`crate::registry::ProviderSpec`] from the stored configuration; the runtime
/// keeps one per configured account and routes webhooks to it by provider and org.
pub trait ChannelPlugin: Send + Sync {
    /// The provider's name in paths, the CLI and the database (`twilio`, `whatsapp`, …).
    fn provider(&self) -> &'static str;
    /// The channel family it serves.
    fn channel(&self) -> Channel;
    /// The key the runtime's circuit breaker groups failures by (the provider account).
    fn account_key(&self) -> String;
    /// The key the runtime's rate limit groups sends by (the sending number or address).
    fn sender_key(&self) -> String;
    /// Our address as the recipient sees it (the sending number), stored on each message.
    fn sender_address(&self) -> String;
    /// Sends per second this sender may use (the runtime enforces it).
    fn rate_limit_per_second(&self) -> f64;
    /// Checks a recipient address and returns it in the form stored and sent (E.164 for
    /// phone channels), or says what is wrong.
    fn normalize_recipient(&self, to: &str) -> Result<String, String>;
    /// Checks what an API client asked to send: the text and, where the provider has richer
    /// message types, its `content` object. Says what is wrong, or which rules apply.
    fn check_outbound(
        &self,
        body: &str,
        content: Option<&serde_json::Value>,
    ) -> Result<OutboundRules, String>;
    /// Verifies and parses one webhook. No I/O.
    fn handle_webhook(&self, hook: &str, req: &WebhookRequest<'_>)
        -> Result<Handled, WebhookError>;
    /// Sends one message through the provider.
    fn send<'a>(&'a self, msg: &'a OutboundMessage) -> SendFuture<'a>;
    /// How long one [`ChannelPlugin::send`] may take when that is longer than an HTTP
    /// request's (a call rings before it is answered); `None`: the runtime's own timeout.
    fn send_timeout(&self) -> Option<std::time::Duration> {
        None
    }
    /// Downloads an inbound attachment that [`crate::InboundMedia::fetch`] marked as ours to
    /// fetch, refusing more than `max_bytes`.
    fn fetch_media<'a>(&'a self, reference: &'a str, max_bytes: u64) -> MediaFuture<'a> {
        let _ = max_bytes;
        Box::pin(async move {
            Err(crate::MediaError::Unsupported(format!(
                "{} cannot fetch `{reference}`",
                self.provider()
            )))
        })
    }
}
