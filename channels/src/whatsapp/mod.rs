//! WhatsApp Cloud API (Meta Graph API): one business phone number of one organization.
//!
//! - [`config`]: what an organization configures; it builds the running [`WhatsApp`] plugin.
//! - [`signature`]: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`.
//! - [`webhook`]: the verification handshake (`GET`, `hub.*`) and deliveries (`POST`):
//!   envelope, statuses and the items of each change.
//! - [`inbound`]: one inbound message of any type to an [`crate::InboundMessage`].
//! - [`outbound`]: what the API may send (text, media, interactive, templates) and the JSON
//!   Meta takes for it.
//! - [`rest`]: `POST /{version}/{phone-number-id}/messages`, the media download, and the
//!   classification of Meta's error codes.
//!
//! The 24-hour customer-service window: every inbound message opens (or extends) it
//! ([`crate::InboundMessage::opens_window`]); free-form sends need it open, templates do not
//! ([`crate::OutboundRules`]). The runtime keeps the window as conversation state.

pub mod config;
pub mod inbound;
pub mod outbound;
pub mod rest;
pub mod signature;
pub mod webhook;

pub use config::{WhatsApp, WhatsAppConfig, GRAPH_API_BASE, GRAPH_API_VERSION};

use crate::registry::{build_json, ProviderSpec};
use state_machines::Channel;
use std::time::Duration;

/// How long a customer-service window stays open after the customer's last message.
pub const SERVICE_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// WhatsApp in the provider registry: `GET|POST /webhooks/whatsapp/{org}`.
pub const SPEC: ProviderSpec = ProviderSpec {
    name: "whatsapp",
    kind: "whatsapp",
    channel: Channel::Whatsapp,
    hooks: webhook::HOOKS,
    build: |json, http| build_json(json, http, WhatsAppConfig::build),
    decoy: || {
        serde_json::json!({
            "phone_number_id": "100000000000000",
            "access_token": crate::registry::random_hex(32),
            "app_secret": crate::registry::random_hex(32),
            "verify_token": crate::registry::random_hex(32),
        })
        .to_string()
    },
};

#[cfg(test)]
mod tests {
    #[test]
    fn the_service_window_is_24_hours() {
        assert_eq!(super::SERVICE_WINDOW.as_secs(), 86_400);
    }
}
