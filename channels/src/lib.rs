//! Channel plugins: the boundary between Dartwing's durable core and the providers that carry
//! messages — Twilio and Telnyx for SMS, the WhatsApp Cloud API, and email (IMAP in, SMTP
//! out; [`email`] — its mailbox is read by the runtime's worker, not a webhook).
//!
//! What lives here: the [`ChannelPlugin`] trait and the normalized types that cross it
//! ([`InboundMessage`], [`StatusUpdate`], [`OutboundMessage`]), the static [`registry`] of
//! providers, and one folder per provider holding its configuration, wire format, signature
//! check and REST client. What does not: storage, HTTP serving, retries, rate limits and
//! circuit breakers — those are the runtime's (`gateway`), driven by the data a plugin returns
//! ([`SendError::is_transient`], [`OutboundRules`], [`Handled::reply`]).
//!
//! Webhook parsing is a plain function over bytes (no I/O), so it is tested directly; only
//! [`ChannelPlugin::send`] and [`ChannelPlugin::fetch_media`] talk to the network.
//!
//! ```text
//!   provider ──HTTP──▶ gateway route /webhooks/{provider}/{org}[/{hook}]
//!                         │  WebhookRequest { method, url, query, headers, raw body }
//!                         ▼
//!                    plugin.handle_webhook(hook, req)  → verify signature → parse
//!                         │  Handled { events, skipped, reply }
//!                         ▼
//!                    gateway: commit every event, then 200 with `reply`
//! ```
//!
//! Adding a provider: a folder with `config` (serde, `deny_unknown_fields`, every problem
//! reported at once), `signature`, `webhook` (pure parsing) and `rest` (send), a `SPEC`, and
//! one line in [`registry::PROVIDERS`]. The gateway needs nothing else but a CLI command.

pub mod address;
pub mod email;
pub mod message;
pub mod plugin;
#[cfg(test)]
mod plugin_tests;
pub mod registry;
pub mod secret;
pub mod sms;
#[cfg(test)]
mod test_http;
pub mod whatsapp;

pub use message::{
    FetchedMedia, InboundEvent, InboundMedia, InboundMessage, MediaError, MediaFuture,
    OutboundAttachment, OutboundMessage, SendError, SendFuture, SendReceipt, StatusUpdate,
    AUTO_REPLY_KIND,
};
pub use plugin::{
    ChannelPlugin, Handled, OutboundRules, WebhookError, WebhookReply, WebhookRequest,
};
pub use registry::{ConfigError, ProviderSpec, PROVIDERS};
pub use secret::Secret;
