//! What an organization configures for Twilio SMS, and the running plugin it builds.

use super::{rest, webhook};
use crate::{
    address, ChannelPlugin, ConfigError, Handled, OutboundMessage, OutboundRules, Secret,
    SendFuture, WebhookError, WebhookRequest,
};
use serde::{Deserialize, Serialize};
use state_machines::Channel;

/// Twilio's production API base URL.
pub const TWILIO_API_BASE: &str = "https://api.twilio.com";

fn default_api_base() -> String {
    TWILIO_API_BASE.to_string()
}

fn default_rate() -> f64 {
    10.0
}

/// One Twilio account and sending number of one organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSmsConfig {
    /// The account SID (`AC…`); webhooks must name it.
    pub account_sid: String,
    /// The auth token: signs webhooks and authenticates REST calls. Never logged or returned.
    pub auth_token: Secret,
    /// The sending number (E.164) or messaging service SID (`MG…`).
    pub from: String,
    /// The REST API base URL; Twilio's unless a test points it elsewhere.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Sends per second from this number (Twilio long codes: 1; toll-free: 3; short codes: 100).
    #[serde(default = "default_rate")]
    pub messages_per_second: f64,
}

impl TwilioSmsConfig {
    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        if !(self.account_sid.starts_with("AC") && self.account_sid.len() == 34) {
            errs.push("account_sid must be `AC` followed by 32 characters".to_string());
        }
        if self.auth_token.expose().is_empty() {
            errs.push("auth_token must not be empty".to_string());
        }
        let from_ok = (self.from.starts_with('+')
            && self.from.len() > 2
            && self.from[1..].bytes().all(|b| b.is_ascii_digit()))
            || self.from.starts_with("MG");
        if !from_ok {
            errs.push("from must be an E.164 number (+15551234567) or an MG… service".into());
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
    pub fn build(self, http: reqwest::Client) -> Result<TwilioSms, ConfigError> {
        self.validate()?;
        Ok(TwilioSms { config: self, http })
    }
}

/// The running Twilio SMS plugin of one account.
pub struct TwilioSms {
    config: TwilioSmsConfig,
    http: reqwest::Client,
}

impl TwilioSms {
    /// Its configuration.
    pub fn config(&self) -> &TwilioSmsConfig {
        &self.config
    }
}

impl ChannelPlugin for TwilioSms {
    fn provider(&self) -> &'static str {
        "twilio"
    }

    fn channel(&self) -> Channel {
        Channel::Sms
    }

    fn account_key(&self) -> String {
        format!("twilio:{}", self.config.account_sid)
    }

    fn sender_key(&self) -> String {
        format!("twilio:{}:{}", self.config.account_sid, self.config.from)
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
        webhook::handle(&self.config, hook, req)
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
        let cfg = TwilioSmsConfig {
            account_sid: "nope".into(),
            auth_token: Secret::new(""),
            from: "555".into(),
            api_base: "ftp://x".into(),
            messages_per_second: 0.0,
        };
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.0.len(), 5, "{err}");
    }

    #[test]
    fn sids_and_senders_are_checked_exactly() {
        let with = |sid: &str, from: &str| TwilioSmsConfig {
            account_sid: sid.into(),
            auth_token: Secret::new("t"),
            from: from.into(),
            api_base: default_api_base(),
            messages_per_second: 1.0,
        };
        let good_sid = format!("AC{}", "0".repeat(32));
        assert!(with(&good_sid, "+12").validate().is_ok());
        assert!(with(&good_sid, &format!("MG{}", "0".repeat(32)))
            .validate()
            .is_ok());
        for (sid, from) in [
            ("AC123", "+15550001111"),
            (&*format!("XY{}", "0".repeat(32)), "+15550001111"),
            (&*format!("AC{}", "0".repeat(33)), "+15550001111"),
            (&*good_sid, "+1"),
            (&*good_sid, "+1555x"),
            (&*good_sid, "15550001111"),
        ] {
            assert_eq!(
                with(sid, from).validate().unwrap_err().0.len(),
                1,
                "{sid} {from}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let cfg = TwilioSmsConfig {
            account_sid: format!("AC{}", "0".repeat(32)),
            auth_token: Secret::new("supersecret"),
            from: "+15550001111".into(),
            api_base: default_api_base(),
            messages_per_second: 1.0,
        };
        assert!(cfg.validate().is_ok());
        assert!(!format!("{cfg:?}").contains("supersecret"));
    }
}
