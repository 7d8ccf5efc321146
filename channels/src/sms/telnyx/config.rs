//! What an organization configures for Telnyx SMS, and the running plugin it builds.

use super::{rest, signature, webhook};
use crate::{
    address, ChannelPlugin, ConfigError, Handled, OutboundMessage, OutboundRules, Secret,
    SendFuture, WebhookError, WebhookRequest,
};
use serde::{Deserialize, Serialize};
use state_machines::Channel;

/// Telnyx's production API base URL.
pub const TELNYX_API_BASE: &str = "https://api.telnyx.com";

fn default_api_base() -> String {
    TELNYX_API_BASE.to_string()
}

fn default_rate() -> f64 {
    6.0
}

/// One Telnyx account and sending number of one organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelnyxSmsConfig {
    /// The API key (`KEY…`): authenticates REST calls. Never logged or returned.
    pub api_key: Secret,
    /// The account's Ed25519 public key, base64: checks every webhook.
    pub public_key: String,
    /// The sending number (E.164).
    pub from: String,
    /// The REST API base URL; Telnyx's unless a test points it elsewhere.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Sends per second from this number (Telnyx long codes: 6 per minute per carrier
    /// rules vary; the default is conservative per second).
    #[serde(default = "default_rate")]
    pub messages_per_second: f64,
}

impl TelnyxSmsConfig {
    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        if self.api_key.expose().is_empty() {
            errs.push("api_key must not be empty".to_string());
        }
        if signature::public_key(&self.public_key).is_none() {
            errs.push("public_key must be a base64 Ed25519 public key (32 bytes)".to_string());
        }
        if address::normalize_e164(&self.from).as_deref() != Ok(self.from.as_str()) {
            errs.push("from must be an E.164 number (+15551234567)".to_string());
        }
        if !(self.api_base.starts_with("http://") || self.api_base.starts_with("https://")) {
            errs.push("api_base must be an http(s) URL".to_string());
        }
        if !(self.messages_per_second.is_finite() && self.messages_per_second > 0.0) {
            errs.push("messages_per_second must be a positive number".to_string());
        }
        ConfigError::check(errs)
    }

    /// Builds the running plugin, sharing the runtime's HTTP client.
    pub fn build(self, http: reqwest::Client) -> Result<TelnyxSms, ConfigError> {
        self.validate()?;
        let public_key = signature::public_key(&self.public_key).expect("validated");
        Ok(TelnyxSms {
            config: self,
            public_key,
            http,
        })
    }
}

/// The running Telnyx SMS plugin of one number.
pub struct TelnyxSms {
    config: TelnyxSmsConfig,
    public_key: Vec<u8>,
    http: reqwest::Client,
}

impl ChannelPlugin for TelnyxSms {
    fn provider(&self) -> &'static str {
        "telnyx"
    }

    fn channel(&self) -> Channel {
        Channel::Sms
    }

    fn account_key(&self) -> String {
        // The key's hash would do as well; the number is what a Telnyx account sends from.
        format!("telnyx:{}", self.config.from)
    }

    fn sender_key(&self) -> String {
        format!("telnyx:{}", self.config.from)
    }

    fn sender_address(&self) -> String {
        self.config.from.clone()
    }

    fn rate_limit_per_second(&self) -> f64 {
        self.config.messages_per_second
    }

    fn normalize_recipient(&self, to: &str) -> Result<String, String> {
        address::normalize_e164(to)
    }

    fn check_outbound(
        &self,
        body: &str,
        content: Option<&serde_json::Value>,
    ) -> Result<OutboundRules, String> {
        crate::sms::check_outbound(body, content)
    }

    fn handle_webhook(
        &self,
        hook: &str,
        req: &WebhookRequest<'_>,
    ) -> Result<Handled, WebhookError> {
        webhook::handle(&self.public_key, hook, req)
    }

    fn send<'a>(&'a self, msg: &'a OutboundMessage) -> SendFuture<'a> {
        Box::pin(rest::send(&self.http, &self.config, msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let cfg = TelnyxSmsConfig {
            api_key: Secret::new(""),
            public_key: "short".into(),
            from: "555".into(),
            api_base: "ftp://x".into(),
            messages_per_second: 0.0,
        };
        assert_eq!(cfg.validate().unwrap_err().0.len(), 5);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let cfg = TelnyxSmsConfig {
            api_key: Secret::new("KEYsupersecret"),
            public_key: "O4rQiBSSTNX0EqxA9dRBxZ4aUeDOwmPPDTeJs1czXfE=".into(),
            from: "+15550001111".into(),
            api_base: default_api_base(),
            messages_per_second: 1.0,
        };
        assert!(cfg.validate().is_ok(), "{:?}", cfg.validate());
        assert!(!format!("{cfg:?}").contains("supersecret"));
    }
}
