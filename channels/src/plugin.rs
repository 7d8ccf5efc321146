//! The `ChannelPlugin` boundary and the normalized types that cross it.

use state_machines::{Channel, DeliveryState};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A webhook path a plugin claims, relative to `/webhooks/{provider}/{org}/`. The runtime
/// checks at start-up that no two plugins claim the same (provider, hook) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The provider segment of the path, e.g. `twilio`.
    pub provider: &'static str,
    /// The last path segment, e.g. `sms` or `status`.
    pub hook: &'static str,
}

/// A webhook as received, before any checks.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    /// The full public URL the provider called (the configured public base URL, the path and
    /// the query string), which is what providers sign.
    pub url: &'a str,
    /// Header (name, value) pairs as received.
    pub headers: &'a [(String, String)],
    /// The raw body.
    pub body: &'a [u8],
}

impl<'a> WebhookRequest<'a> {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A message from a contact, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The channel it came on.
    pub channel: Channel,
    /// The provider's id for it; with the channel, the deduplication key.
    pub provider_message_id: String,
    /// The contact's address on that channel (E.164 number, email address, …).
    pub from: String,
    /// Our address it was sent to.
    pub to: String,
    /// The text.
    pub body: String,
    /// Attached media URLs with their content types.
    pub media: Vec<(String, String)>,
}

/// A provider's report on one of our outbound messages, mapped onto the delivery machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The provider's id of the message (what [`SendReceipt::provider_message_id`] returned).
    pub provider_message_id: String,
    /// The state it maps to.
    pub state: DeliveryState,
    /// The provider's own word for it (`undelivered`, …), kept in history.
    pub provider_status: String,
    /// The provider's error code, if any (Twilio's `ErrorCode`).
    pub error_code: Option<String>,
}

/// What one webhook carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundEvent {
    /// A new message from a contact.
    Message(InboundMessage),
    /// A delivery status callback.
    Status(StatusUpdate),
}

/// Why a webhook was refused. Each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The signature header is missing or does not match (401).
    #[error("missing or invalid signature")]
    BadSignature,
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
}

/// A message to send, as the runtime hands it to a plugin.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// Our id of the message (for idempotency on the provider side where supported).
    pub message_id: String,
    /// The recipient's address.
    pub to: String,
    /// The text.
    pub body: String,
    /// Where the provider should send status callbacks.
    pub status_callback: Option<String>,
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
            // message is worse and Twilio answers well-formed JSON in practice.
            SendError::BadResponse(_) => true,
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

/// The future a send returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<SendReceipt, SendError>> + Send + 'a>>;

/// One provider account of one organization, ready to receive webhooks and send.
///
/// Built from its config (e.g. [`crate::sms::twilio::TwilioSmsConfig::build`]); the runtime
/// keeps one per configured account and routes webhooks to it by provider and org.
pub trait ChannelPlugin: Send + Sync {
    /// The channel family it serves.
    fn channel(&self) -> Channel;
    /// The webhook hooks it claims.
    fn resources(&self) -> Vec<Resource>;
    /// The key the runtime's circuit breaker groups failures by (the provider account).
    fn account_key(&self) -> String;
    /// The key the runtime's rate limit groups sends by (the sending number or address).
    fn sender_key(&self) -> String;
    /// Sends per second this sender may use (the runtime enforces it).
    fn rate_limit_per_second(&self) -> f64;
    /// Verifies and parses one webhook. No I/O.
    fn handle_webhook(
        &self,
        hook: &str,
        req: &WebhookRequest<'_>,
    ) -> Result<Vec<InboundEvent>, WebhookError>;
    /// Sends one message through the provider.
    fn send<'a>(&'a self, msg: &'a OutboundMessage) -> SendFuture<'a>;
}
