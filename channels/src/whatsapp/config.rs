//! What an organization configures for one WhatsApp business phone number, and the running
//! plugin it builds.

use super::{outbound, rest, webhook};
use crate::{
    address, ChannelPlugin, ConfigError, Handled, MediaFuture, OutboundMessage, OutboundRules,
    Secret, SendFuture, WebhookError, WebhookRequest,
};
use serde::{Deserialize, Serialize};
use state_machines::Channel;

/// Meta's Graph API base URL.
pub const GRAPH_API_BASE: &str = "https://graph.facebook.com";
/// The Graph API version requests name.
pub const GRAPH_API_VERSION: &str = "v21.0";

fn default_api_base() -> String {
    GRAPH_API_BASE.to_string()
}

fn default_version() -> String {
    GRAPH_API_VERSION.to_string()
}

fn default_rate() -> f64 {
    80.0
}

/// One WhatsApp business phone number of one organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// The phone number's id in the Graph API; deliveries for other numbers are skipped.
    pub phone_number_id: String,
    /// A system-user access token with `whatsapp_business_messaging`: sends and downloads.
    pub access_token: Secret,
    /// The app secret: signs every webhook delivery.
    pub app_secret: Secret,
    /// The token Meta echoes in the verification handshake.
    pub verify_token: Secret,
    /// The Graph API base URL; Meta's unless a test points it elsewhere.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// The Graph API version.
    #[serde(default = "default_version")]
    pub api_version: String,
    /// Sends per second from this number (Meta's default throughput is 80).
    #[serde(default = "default_rate")]
    pub messages_per_second: f64,
}

impl WhatsAppConfig {
    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        let id_ok = !self.phone_number_id.is_empty()
            && self.phone_number_id.len() <= 32
            && self.phone_number_id.bytes().all(|b| b.is_ascii_digit());
        if !id_ok {
            errs.push("phone_number_id must be the number's numeric Graph API id".to_string());
        }
        for (name, secret) in [
            ("access_token", &self.access_token),
            ("app_secret", &self.app_secret),
            ("verify_token", &self.verify_token),
        ] {
            if secret.expose().is_empty() {
                errs.push(format!("{name} must not be empty"));
            }
        }
        if !(self.api_base.starts_with("http://") || self.api_base.starts_with("https://")) {
            errs.push("api_base must be an http(s) URL".to_string());
        }
        let version_ok = self.api_version.starts_with('v')
            && self.api_version.len() <= 8
            && self.api_version[1..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.');
        if !version_ok {
            errs.push("api_version must look like v21.0".to_string());
        }
        if !(self.messages_per_second.is_finite() && self.messages_per_second > 0.0) {
            errs.push("messages_per_second must be a positive number".to_string());
        }
        ConfigError::check(errs)
    }

    /// Builds the running plugin, sharing the runtime's HTTP client.
    pub fn build(self, http: reqwest::Client) -> Result<WhatsApp, ConfigError> {
        self.validate()?;
        Ok(WhatsApp { config: self, http })
    }
}

/// The running WhatsApp plugin of one phone number.
pub struct WhatsApp {
    config: WhatsAppConfig,
    http: reqwest::Client,
}

impl WhatsApp {
    /// Its configuration.
    pub fn config(&self) -> &WhatsAppConfig {
        &self.config
    }
}

impl ChannelPlugin for WhatsApp {
    fn provider(&self) -> &'static str {
        "whatsapp"
    }

    fn channel(&self) -> Channel {
        Channel::Whatsapp
    }

    fn account_key(&self) -> String {
        format!("whatsapp:{}", self.config.phone_number_id)
    }

    fn sender_key(&self) -> String {
        format!("whatsapp:{}", self.config.phone_number_id)
    }

    fn sender_address(&self) -> String {
        self.config.phone_number_id.clone()
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
        outbound::check(body, content)
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

    fn fetch_media<'a>(&'a self, reference: &'a str, max_bytes: u64) -> MediaFuture<'a> {
        Box::pin(rest::fetch_media(
            &self.http,
            &self.config,
            reference,
            max_bytes,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let cfg = WhatsAppConfig {
            phone_number_id: "abc".into(),
            access_token: Secret::new(""),
            app_secret: Secret::new(""),
            verify_token: Secret::new(""),
            api_base: "ftp://x".into(),
            api_version: "21".into(),
            messages_per_second: -1.0,
        };
        assert_eq!(cfg.validate().unwrap_err().0.len(), 7);
        let mut zero: WhatsAppConfig = serde_json::from_str(
            r#"{"phone_number_id":"1","access_token":"a","app_secret":"s","verify_token":"v"}"#,
        )
        .unwrap();
        zero.messages_per_second = 0.0;
        assert_eq!(
            zero.validate().unwrap_err().0,
            vec!["messages_per_second must be a positive number".to_string()]
        );
    }

    #[test]
    fn defaults_and_no_secret_in_debug() {
        let cfg: WhatsAppConfig = serde_json::from_str(
            r#"{"phone_number_id":"106540352242922","access_token":"EAAtoken",
                "app_secret":"appsecret","verify_token":"vt"}"#,
        )
        .unwrap();
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.api_base, GRAPH_API_BASE);
        assert_eq!(cfg.messages_per_second, 80.0);
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("EAAtoken") && !shown.contains("appsecret"));
        assert!(
            serde_json::from_str::<WhatsAppConfig>(r#"{"phone_number_id":"1","x":1}"#).is_err()
        );
    }
}
