//! Twilio Programmable Messaging: the inbound and status webhooks, `X-Twilio-Signature`, and
//! the Messages REST API.
//!
//! - [`config`]: what an organization configures; it builds the running [`TwilioSms`] plugin.
//! - [`signature`]: HMAC-SHA1 over the public URL and the sorted POST parameters, base64.
//! - [`webhook`]: form bodies to [`crate::InboundEvent`]s, exactly Twilio's field names.
//! - [`rest`]: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` and error classification.

pub mod config;
pub mod rest;
pub mod signature;
pub mod webhook;

pub use config::{TwilioSms, TwilioSmsConfig, TWILIO_API_BASE};

use crate::registry::{build_json, ProviderSpec};
use state_machines::Channel;

/// Twilio SMS in the provider registry: `/webhooks/twilio/{org}/sms` and `…/status`.
pub const SPEC: ProviderSpec = ProviderSpec {
    name: "twilio",
    kind: "twilio-sms",
    channel: Channel::Sms,
    hooks: webhook::HOOKS,
    build: |json, http| build_json(json, http, TwilioSmsConfig::build),
    decoy: || {
        serde_json::json!({
            "account_sid": format!("AC{}", crate::registry::random_hex(16)),
            "auth_token": crate::registry::random_hex(32),
            "from": "+15555550100",
        })
        .to_string()
    },
};
