//! Channel plugins: the boundary between Dartwing's durable core and the providers that carry
//! messages (Twilio for SMS now; WhatsApp Cloud API and email later).
//!
//! What lives here: the [`ChannelPlugin`] trait and the normalized types that cross it
//! ([`InboundMessage`], [`StatusUpdate`], [`OutboundMessage`]), plus one folder per channel
//! family holding each provider's wire format, signature check and REST client.
//! What does not: storage, HTTP serving, retries, rate limits and circuit breakers — those are
//! the runtime's (`gateway`), driven by the data a plugin returns ([`SendError::is_transient`]).
//!
//! Webhook parsing is a plain function over bytes (no I/O), so it is tested directly; only
//! [`ChannelPlugin::send`] talks to the network.
//!
//! ```text
//!   provider ──HTTP──▶ gateway route /webhooks/{provider}/{org}/{hook}
//!                         │  WebhookRequest { url, headers, body }
//!                         ▼
//!                    plugin.handle_webhook(hook, req)  → verify signature → parse
//!                         │  Vec<InboundEvent>
//!                         ▼
//!                    gateway: one transaction, then 2xx
//! ```

pub mod plugin;
pub mod secret;
pub mod sms;

pub use plugin::{
    ChannelPlugin, InboundEvent, InboundMessage, OutboundMessage, Resource, SendError, SendFuture,
    SendReceipt, StatusUpdate, WebhookError, WebhookRequest,
};
pub use secret::Secret;
