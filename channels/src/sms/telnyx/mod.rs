//! Telnyx Messaging (API v2): Ed25519-signed JSON webhooks and `POST /v2/messages`.
//!
//! - [`config`]: what an organization configures; it builds the running [`TelnyxSms`] plugin.
//! - [`signature`]: `telnyx-signature-ed25519` over `{telnyx-timestamp}|{raw body}` with the
//!   account's public key; a timestamp more than five minutes from now is a replay.
//! - [`webhook`]: `message.received` (inbound), `message.sent` and `message.finalized`
//!   (per-recipient `to[].status`, `errors[]`) to [`crate::InboundEvent`]s.
//! - [`rest`]: `POST {api_base}/v2/messages` with the API key as bearer, and Telnyx's error
//!   bodies classified like Twilio's.

pub mod config;
pub mod rest;
pub mod signature;
pub mod webhook;

pub use config::{TelnyxSms, TelnyxSmsConfig, TELNYX_API_BASE};

use crate::registry::{build_json, ProviderSpec};
use state_machines::Channel;

/// Telnyx SMS in the provider registry: `POST /webhooks/telnyx/{org}/sms` (messages and
/// delivery reports alike).
pub const SPEC: ProviderSpec = ProviderSpec {
    name: "telnyx",
    kind: "telnyx-sms",
    channel: Channel::Sms,
    hooks: webhook::HOOKS,
    build: |json, http| build_json(json, http, TelnyxSmsConfig::build),
    // 32 random bytes as the "public key": no one holds a private key for them.
    decoy: || {
        let key = hex::decode(crate::registry::random_hex(32)).expect("hex");
        serde_json::json!({
            "api_key": format!("KEY{}", crate::registry::random_hex(16)),
            "public_key": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key),
            "from": "+15555550100",
        })
        .to_string()
    },
};
