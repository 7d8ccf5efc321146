//! What an organization configures for email — its address, the IMAP folder it reads and
//! the SMTP server it sends through — and the running plugin it builds.

use super::dkim::DkimSettings;
use super::smtp;
use crate::{
    ChannelPlugin, ConfigError, FetchedMedia, Handled, MediaError, MediaFuture, OutboundMessage,
    OutboundRules, Secret, SendFuture, WebhookError, WebhookRequest,
};
use serde::{Deserialize, Serialize};
use state_machines::Channel;
use std::sync::OnceLock;

/// How a connection to the IMAP or SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP (a local test server; never across a network).
    None,
    /// Plain TCP upgraded with STARTTLS before authenticating.
    Starttls,
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
}

impl std::str::FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<TlsMode, String> {
        match s {
            "none" => Ok(TlsMode::None),
            "starttls" => Ok(TlsMode::Starttls),
            "tls" => Ok(TlsMode::Tls),
            other => Err(format!("`{other}` is not one of none, starttls, tls")),
        }
    }
}

fn default_folder() -> String {
    "INBOX".into()
}

fn default_rate() -> f64 {
    5.0
}

fn default_max_attachment() -> u64 {
    10 * 1024 * 1024
}

/// The IMAP mailbox inbound mail is read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapSettings {
    /// Server host name.
    pub host: String,
    /// Server port (143 for none/starttls, 993 for tls).
    pub port: u16,
    /// How the connection is secured.
    pub tls: TlsMode,
    /// Login name.
    pub username: String,
    /// Password. Never logged or returned.
    pub password: Secret,
    /// The folder read (`INBOX`).
    #[serde(default = "default_folder")]
    pub folder: String,
    /// Where stored mail is moved once committed (created when missing); when absent it stays
    /// in `folder`, flagged `\Seen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_to: Option<String>,
}

/// The SMTP server outbound mail is submitted to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// Server host name.
    pub host: String,
    /// Server port (25/587 for none/starttls, 465 for tls).
    pub port: u16,
    /// How the connection is secured.
    pub tls: TlsMode,
    /// Login name, when the server wants authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, with `username`. Never logged or returned.
    #[serde(default)]
    pub password: Option<Secret>,
}

/// One email address of one organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Our address: the `From` of what we send and the mailbox we read.
    pub address: String,
    /// The display name beside it in `From`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Where inbound mail is read.
    pub imap: ImapSettings,
    /// Where outbound mail is sent.
    pub smtp: SmtpSettings,
    /// Sends per second through this server.
    #[serde(default = "default_rate")]
    pub messages_per_second: f64,
    /// Largest attachment kept with its bytes; larger ones are listed without them.
    #[serde(default = "default_max_attachment")]
    pub max_attachment_bytes: u64,
    /// The key every sent message is DKIM-signed with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim: Option<DkimSettings>,
}

/// Checks an email address (`local@domain`, no spaces or control characters, at most 254
/// bytes) and returns it lowercased: the form contacts are keyed by.
pub fn normalize_address(s: &str) -> Result<String, String> {
    let s = s.trim();
    let ok = s.len() <= 254
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && (domain.contains('.') || domain == "localhost")
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !s.chars().any(|c| {
            c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | ',' | ';' | '"')
        });
    if ok {
        Ok(s.to_lowercase())
    } else {
        Err("must be an email address like name@example.com".to_string())
    }
}

impl EmailConfig {
    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        if normalize_address(&self.address).is_err() {
            errs.push("address must be an email address like support@example.com".to_string());
        }
        for (what, host, port) in [
            ("imap", &self.imap.host, self.imap.port),
            ("smtp", &self.smtp.host, self.smtp.port),
        ] {
            if host.trim().is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
                errs.push(format!("{what}.host must be a host name"));
            }
            if port == 0 {
                errs.push(format!("{what}.port must be 1-65535"));
            }
        }
        if self.imap.username.is_empty() {
            errs.push("imap.username must not be empty".to_string());
        }
        if self.imap.password.expose().is_empty() {
            errs.push("imap.password must not be empty".to_string());
        }
        if self.imap.folder.is_empty() || self.imap.folder.chars().any(char::is_control) {
            errs.push("imap.folder must be a folder name".to_string());
        }
        if let Some(to) = &self.imap.move_to {
            if to.is_empty() || to.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
                errs.push("imap.move_to must be a folder name".to_string());
            } else if to.eq_ignore_ascii_case(&self.imap.folder) {
                errs.push("imap.move_to must differ from imap.folder".to_string());
            }
        }
        if self.smtp.username.is_some() != self.smtp.password.is_some() {
            errs.push("smtp.username and smtp.password go together".to_string());
        }
        if !(self.messages_per_second.is_finite() && self.messages_per_second > 0.0) {
            errs.push("messages_per_second must be a positive number".to_string());
        }
        if let Some(Err(e)) = self.dkim.as_ref().map(|d| d.signer(&self.address)) {
            errs.push(e);
        }
        ConfigError::check(errs)
    }

    /// Builds the running plugin (the SMTP connection pool is made at the first send; the
    /// DKIM key is read now).
    pub fn build(self, _http: reqwest::Client) -> Result<Email, ConfigError> {
        self.validate()?;
        let address = normalize_address(&self.address).expect("validated");
        let dkim = match &self.dkim {
            Some(d) => Some(d.signer(&address).map_err(|e| ConfigError(vec![e]))?),
            None => None,
        };
        Ok(Email {
            address,
            config: self,
            dkim,
            transport: OnceLock::new(),
        })
    }

    /// The key a mailbox's cursor is stored under: user, server and folder (a changed server
    /// or folder is another mailbox, with its own UIDs).
    pub fn mailbox_key(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.imap.username, self.imap.host, self.imap.port, self.imap.folder
        )
    }
}

/// The running email plugin of one address.
pub struct Email {
    config: EmailConfig,
    address: String,
    dkim: Option<lettre::message::dkim::DkimConfig>,
    transport: OnceLock<smtp::Transport>,
}

impl Email {
    /// Its configuration (the mailbox worker reads the IMAP part).
    pub fn config(&self) -> &EmailConfig {
        &self.config
    }
}

impl ChannelPlugin for Email {
    fn provider(&self) -> &'static str {
        "email"
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn account_key(&self) -> String {
        format!("email:{}:{}", self.config.smtp.host, self.config.smtp.port)
    }

    fn sender_key(&self) -> String {
        format!("email:{}", self.address)
    }

    fn sender_address(&self) -> String {
        self.address.clone()
    }

    fn rate_limit_per_second(&self) -> f64 {
        self.config.messages_per_second
    }

    fn normalize_recipient(&self, to: &str) -> Result<String, String> {
        normalize_address(to)
    }

    fn check_outbound(
        &self,
        body: &str,
        content: Option<&serde_json::Value>,
    ) -> Result<OutboundRules, String> {
        smtp::check_outbound(body, content)?;
        Ok(OutboundRules {
            needs_service_window: false,
        })
    }

    fn handle_webhook(
        &self,
        hook: &str,
        _req: &WebhookRequest<'_>,
    ) -> Result<Handled, WebhookError> {
        Err(WebhookError::UnknownHook(hook.to_string()))
    }

    fn send<'a>(&'a self, msg: &'a OutboundMessage) -> SendFuture<'a> {
        Box::pin(async move {
            let transport = match self.transport.get() {
                Some(t) => t,
                None => {
                    let t = smtp::transport(&self.config.smtp)?;
                    self.transport.get_or_init(|| t)
                }
            };
            let from = smtp::From {
                address: &self.address,
                display_name: self.config.display_name.as_deref(),
                dkim: self.dkim.as_ref(),
            };
            smtp::send(transport, &from, msg).await
        })
    }

    /// Attachments travel inside the message: the parser hands them over as `data:` URLs,
    /// which this decodes for the media worker to store with their hash.
    fn fetch_media<'a>(&'a self, reference: &'a str, max_bytes: u64) -> MediaFuture<'a> {
        Box::pin(async move {
            let (content_type, bytes) =
                super::parse::decode_data_url(reference).ok_or_else(|| MediaError::Refused {
                    status: 0,
                    message: "not an inline attachment".into(),
                })?;
            if bytes.len() as u64 > max_bytes {
                return Err(MediaError::TooLarge { limit: max_bytes });
            }
            Ok(FetchedMedia {
                content_type,
                bytes,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EmailConfig {
        EmailConfig {
            address: "Support@Example.com".into(),
            display_name: None,
            imap: ImapSettings {
                host: "imap.example.com".into(),
                port: 993,
                tls: TlsMode::Tls,
                username: "support".into(),
                password: Secret::new("imap-secret"),
                folder: "INBOX".into(),
                move_to: None,
            },
            smtp: SmtpSettings {
                host: "smtp.example.com".into(),
                port: 465,
                tls: TlsMode::Tls,
                username: Some("support".into()),
                password: Some(Secret::new("smtp-secret")),
            },
            messages_per_second: 5.0,
            max_attachment_bytes: 1024,
            dkim: None,
        }
    }

    #[test]
    fn a_good_config_builds_and_hides_its_secrets() {
        let cfg = sample();
        assert!(cfg.validate().is_ok(), "{:?}", cfg.validate());
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("imap-secret") && !dbg.contains("smtp-secret"));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let plugin = cfg.build(reqwest::Client::new()).unwrap();
        assert_eq!(plugin.sender_address(), "support@example.com");
        assert!(plugin
            .handle_webhook(
                "x",
                &WebhookRequest {
                    method: "POST",
                    url: "",
                    query: "",
                    headers: &[],
                    body: b"",
                    received_at: 0
                }
            )
            .is_err());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut cfg = sample();
        cfg.address = "nope".into();
        cfg.imap.host = "".into();
        cfg.smtp.port = 0;
        cfg.imap.password = Secret::new("");
        cfg.smtp.password = None;
        cfg.messages_per_second = 0.0;
        cfg.imap.move_to = Some("inbox".into());
        assert_eq!(cfg.validate().unwrap_err().0.len(), 7);
        cfg = sample();
        cfg.imap.move_to = Some("Archive/\"x\"".into());
        assert!(cfg.validate().is_err());
        cfg.imap.move_to = Some("Archive/Handled".into());
        assert!(cfg.validate().is_ok());
    }

    /// The one problem `change` makes, exactly.
    fn only_problem(change: impl FnOnce(&mut EmailConfig)) -> String {
        let mut cfg = sample();
        change(&mut cfg);
        let mut errs = cfg.validate().expect_err("refused").0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.remove(0)
    }

    #[test]
    fn each_rule_names_its_field() {
        let host = |h: &str| {
            let h = h.to_string();
            only_problem(move |c| c.smtp.host = h)
        };
        assert_eq!(host(" "), "smtp.host must be a host name");
        assert_eq!(host("smtp example.com"), "smtp.host must be a host name");
        assert_eq!(host("smtp.example.com/x"), "smtp.host must be a host name");
        assert_eq!(
            only_problem(|c| c.imap.port = 0),
            "imap.port must be 1-65535"
        );
        assert_eq!(
            only_problem(|c| c.imap.username.clear()),
            "imap.username must not be empty"
        );
        assert_eq!(
            only_problem(|c| c.imap.folder.clear()),
            "imap.folder must be a folder name"
        );
        assert_eq!(
            only_problem(|c| c.imap.folder = "IN\nBOX".into()),
            "imap.folder must be a folder name"
        );
        for bad in ["", "A\u{7}", "a\\b", "say \"hi\""] {
            let bad = bad.to_string();
            assert_eq!(
                only_problem(move |c| c.imap.move_to = Some(bad)),
                "imap.move_to must be a folder name"
            );
        }
        assert_eq!(
            only_problem(|c| c.imap.move_to = Some("inbox".into())),
            "imap.move_to must differ from imap.folder"
        );
        assert_eq!(
            only_problem(|c| c.smtp.username = None),
            "smtp.username and smtp.password go together"
        );
        for rate in [-1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                only_problem(move |c| c.messages_per_second = rate),
                "messages_per_second must be a positive number"
            );
        }
        let key = DkimSettings {
            selector: "s1".into(),
            domain: None,
            private_key: Secret::new("not a key"),
        };
        assert!(only_problem(move |c| c.dkim = Some(key)).starts_with("dkim.private_key"));
        // Without SMTP credentials at all is fine (a relay that trusts us).
        let mut open_relay = sample();
        (open_relay.smtp.username, open_relay.smtp.password) = (None, None);
        assert!(open_relay.validate().is_ok());
    }

    #[test]
    fn defaults_from_json() {
        let cfg: EmailConfig = serde_json::from_str(
            r#"{"address":"a@b.test",
                "imap":{"host":"h","port":143,"tls":"none","username":"u","password":"p"},
                "smtp":{"host":"h","port":25,"tls":"starttls"}}"#,
        )
        .unwrap();
        assert_eq!(cfg.imap.folder, "INBOX");
        assert_eq!(cfg.messages_per_second, 5.0);
        assert_eq!(cfg.max_attachment_bytes, 10 * 1024 * 1024);
        assert_eq!(cfg.mailbox_key(), "u@h:143/INBOX");
        assert!(cfg.validate().is_ok());
    }

    #[tokio::test]
    async fn the_plugin_names_its_sender_and_decodes_inline_attachments() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let plugin = sample().build(reqwest::Client::new()).unwrap();
        assert_eq!(plugin.provider(), "email");
        assert_eq!(plugin.channel(), Channel::Email);
        assert_eq!(plugin.account_key(), "email:smtp.example.com:465");
        assert_eq!(plugin.sender_key(), "email:support@example.com");
        assert_eq!(plugin.rate_limit_per_second(), 5.0);
        assert_eq!(plugin.config().imap.folder, "INBOX");
        assert_eq!(
            plugin.normalize_recipient(" Bob@X.org").unwrap(),
            "bob@x.org"
        );
        assert!(plugin.normalize_recipient("bob").is_err());
        let rules = plugin.check_outbound("hello", None).unwrap();
        assert!(!rules.needs_service_window);
        assert!(plugin.check_outbound(" ", None).is_err());
        let got = plugin
            .fetch_media("data:text/plain;base64,aGVsbG8=", 5)
            .await
            .unwrap();
        assert_eq!(
            (got.content_type.as_str(), got.bytes.as_slice()),
            ("text/plain", &b"hello"[..])
        );
        assert!(matches!(
            plugin
                .fetch_media("data:text/plain;base64,aGVsbG8=", 4)
                .await,
            Err(MediaError::TooLarge { limit: 4 })
        ));
        assert!(matches!(
            plugin.fetch_media("https://x/y", 100).await,
            Err(MediaError::Refused { status: 0, .. })
        ));
    }

    #[test]
    fn addresses() {
        assert_eq!(normalize_address(" A@B.org ").unwrap(), "a@b.org");
        assert_eq!(normalize_address("x@localhost").unwrap(), "x@localhost");
        for bad in [
            "",
            "a",
            "@b.org",
            "a@",
            "a b@c.org",
            "a@b@c.org",
            "<a@b.org>",
            "a@b",
        ] {
            assert!(normalize_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_modes_parse() {
        assert_eq!("starttls".parse::<TlsMode>().unwrap(), TlsMode::Starttls);
        assert!("ssl".parse::<TlsMode>().is_err());
        let json = serde_json::to_string(&sample()).unwrap();
        assert!(json.contains("\"tls\":\"tls\""));
    }
}
