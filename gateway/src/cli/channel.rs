//! `channel add twilio-sms|telnyx-sms|whatsapp|email` and `channel list`: provider accounts of an
//! org. Each kind's flags make its provider's configuration, which the provider registry
//! checks (every problem at once) before it is stored. Secrets are also read from
//! environment variables, so they need not appear on a command line.

use crate::config::Config;
use crate::db::{orgs, Db};
use anyhow::Context;
use channels::email::{DkimSettings, EmailConfig, ImapSettings, SmtpSettings, TlsMode};
use channels::sms::telnyx::{TelnyxSmsConfig, TELNYX_API_BASE};
use channels::sms::twilio::{TwilioSmsConfig, TWILIO_API_BASE};
use channels::whatsapp::{WhatsAppConfig, GRAPH_API_BASE, GRAPH_API_VERSION};
use channels::Secret;
use clap::Subcommand;

/// Provider account commands.
// Parsed once per run: the size of the `add` variant (email's many flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ChannelAction {
    /// Add (or replace) a provider account.
    Add {
        /// The kind of account.
        #[command(subcommand)]
        kind: ChannelKind,
    },
    /// List an organization's accounts (secrets are not shown).
    List {
        /// The organization's slug.
        #[arg(long)]
        org: String,
    },
}

/// Provider account kinds.
#[derive(Subcommand)]
pub enum ChannelKind {
    /// Twilio Programmable Messaging (SMS).
    TwilioSms {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The account SID (AC…).
        #[arg(long)]
        account_sid: String,
        /// The auth token (also read from DARTWING_TWILIO_AUTH_TOKEN).
        #[arg(long, env = "DARTWING_TWILIO_AUTH_TOKEN", hide_env_values = true)]
        auth_token: String,
        /// The sending number (E.164) or messaging service SID (MG…).
        #[arg(long)]
        from: String,
        /// The REST API base URL.
        #[arg(long, default_value = TWILIO_API_BASE)]
        api_base: String,
        /// Sends per second from this number.
        #[arg(long, default_value_t = 10.0)]
        rate_limit: f64,
    },
    /// Telnyx Messaging (SMS), API v2.
    TelnyxSms {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The API key (also read from DARTWING_TELNYX_API_KEY).
        #[arg(long, env = "DARTWING_TELNYX_API_KEY", hide_env_values = true)]
        api_key: String,
        /// The account's Ed25519 public key, base64 (signs webhooks).
        #[arg(long)]
        public_key: String,
        /// The sending number (E.164).
        #[arg(long)]
        from: String,
        /// The REST API base URL.
        #[arg(long, default_value = TELNYX_API_BASE)]
        api_base: String,
        /// Sends per second from this number.
        #[arg(long, default_value_t = 6.0)]
        rate_limit: f64,
    },
    /// WhatsApp Cloud API: one business phone number.
    Whatsapp {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// The phone number's id in the Graph API.
        #[arg(long)]
        phone_number_id: String,
        /// A system-user access token (also read from DARTWING_WHATSAPP_ACCESS_TOKEN).
        #[arg(long, env = "DARTWING_WHATSAPP_ACCESS_TOKEN", hide_env_values = true)]
        access_token: String,
        /// The app secret that signs webhooks (also read from DARTWING_WHATSAPP_APP_SECRET).
        #[arg(long, env = "DARTWING_WHATSAPP_APP_SECRET", hide_env_values = true)]
        app_secret: String,
        /// The verify token of the webhook handshake (also read from
        /// DARTWING_WHATSAPP_VERIFY_TOKEN).
        #[arg(long, env = "DARTWING_WHATSAPP_VERIFY_TOKEN", hide_env_values = true)]
        verify_token: String,
        /// The Graph API base URL.
        #[arg(long, default_value = GRAPH_API_BASE)]
        api_base: String,
        /// The Graph API version.
        #[arg(long, default_value = GRAPH_API_VERSION)]
        api_version: String,
        /// Sends per second from this number.
        #[arg(long, default_value_t = 80.0)]
        rate_limit: f64,
    },
    /// Email: one address, read over IMAP, sent through SMTP.
    Email {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// Our address (the From of what we send).
        #[arg(long)]
        address: String,
        /// The display name beside the address.
        #[arg(long)]
        display_name: Option<String>,
        /// IMAP server host.
        #[arg(long)]
        imap_host: String,
        /// IMAP server port.
        #[arg(long)]
        imap_port: u16,
        /// IMAP security: none, starttls or tls.
        #[arg(long)]
        imap_tls: TlsMode,
        /// IMAP login name.
        #[arg(long)]
        imap_username: String,
        /// IMAP password (also read from DARTWING_EMAIL_IMAP_PASSWORD).
        #[arg(long, env = "DARTWING_EMAIL_IMAP_PASSWORD", hide_env_values = true)]
        imap_password: String,
        /// The folder read.
        #[arg(long, default_value = "INBOX")]
        imap_folder: String,
        /// Move stored mail to this folder (created when missing) instead of leaving it,
        /// flagged \Seen, in the folder read.
        #[arg(long)]
        imap_move_to: Option<String>,
        /// SMTP server host.
        #[arg(long)]
        smtp_host: String,
        /// SMTP server port.
        #[arg(long)]
        smtp_port: u16,
        /// SMTP security: none, starttls or tls.
        #[arg(long)]
        smtp_tls: TlsMode,
        /// SMTP login name, when the server wants one.
        #[arg(long)]
        smtp_username: Option<String>,
        /// SMTP password (also read from DARTWING_EMAIL_SMTP_PASSWORD).
        #[arg(long, env = "DARTWING_EMAIL_SMTP_PASSWORD", hide_env_values = true)]
        smtp_password: Option<String>,
        /// Sends per second through this server.
        #[arg(long, default_value_t = 5.0)]
        rate_limit: f64,
        /// DKIM: sign what this address sends with the key published at
        /// `{selector}._domainkey.{domain}`.
        #[arg(long, requires = "dkim_key_file")]
        dkim_selector: Option<String>,
        /// DKIM: the private key file (RSA PEM, PKCS#1 or PKCS#8; or an Ed25519 seed in base64).
        #[arg(long, requires = "dkim_selector")]
        dkim_key_file: Option<std::path::PathBuf>,
        /// DKIM: the signing domain (default: the address's domain).
        #[arg(long, requires = "dkim_selector")]
        dkim_domain: Option<String>,
    },
}

impl ChannelKind {
    /// The org, the registry name, the configuration as JSON, and the webhook path suffix.
    fn into_parts(self) -> anyhow::Result<(String, &'static str, String, &'static str)> {
        Ok(match self {
            ChannelKind::TwilioSms {
                org,
                account_sid,
                auth_token,
                from,
                api_base,
                rate_limit,
            } => {
                let cfg = TwilioSmsConfig {
                    account_sid,
                    auth_token: Secret::new(auth_token),
                    from,
                    api_base,
                    messages_per_second: rate_limit,
                };
                (org, "twilio", serde_json::to_string(&cfg)?, "/sms")
            }
            ChannelKind::TelnyxSms {
                org,
                api_key,
                public_key,
                from,
                api_base,
                rate_limit,
            } => {
                let cfg = TelnyxSmsConfig {
                    api_key: Secret::new(api_key),
                    public_key,
                    from,
                    api_base,
                    messages_per_second: rate_limit,
                };
                (org, "telnyx", serde_json::to_string(&cfg)?, "/sms")
            }
            ChannelKind::Whatsapp {
                org,
                phone_number_id,
                access_token,
                app_secret,
                verify_token,
                api_base,
                api_version,
                rate_limit,
            } => {
                let cfg = WhatsAppConfig {
                    phone_number_id,
                    access_token: Secret::new(access_token),
                    app_secret: Secret::new(app_secret),
                    verify_token: Secret::new(verify_token),
                    api_base,
                    api_version,
                    messages_per_second: rate_limit,
                };
                (org, "whatsapp", serde_json::to_string(&cfg)?, "")
            }
            ChannelKind::Email {
                org,
                address,
                display_name,
                imap_host,
                imap_port,
                imap_tls,
                imap_username,
                imap_password,
                imap_folder,
                imap_move_to,
                smtp_host,
                smtp_port,
                smtp_tls,
                smtp_username,
                smtp_password,
                rate_limit,
                dkim_selector,
                dkim_key_file,
                dkim_domain,
            } => {
                let dkim =
                    match (dkim_selector, dkim_key_file) {
                        (Some(selector), Some(path)) => Some(DkimSettings {
                            selector,
                            domain: dkim_domain,
                            private_key: Secret::new(std::fs::read_to_string(&path).with_context(
                                || format!("reading the DKIM key {}", path.display()),
                            )?),
                        }),
                        _ => None,
                    };
                let cfg = EmailConfig {
                    address,
                    display_name,
                    imap: ImapSettings {
                        host: imap_host,
                        port: imap_port,
                        tls: imap_tls,
                        username: imap_username,
                        password: Secret::new(imap_password),
                        folder: imap_folder,
                        move_to: imap_move_to,
                    },
                    smtp: SmtpSettings {
                        host: smtp_host,
                        port: smtp_port,
                        tls: smtp_tls,
                        username: smtp_username,
                        password: smtp_password.map(Secret::new),
                    },
                    messages_per_second: rate_limit,
                    max_attachment_bytes: 10 * 1024 * 1024,
                    dkim,
                };
                (org, "email", serde_json::to_string(&cfg)?, "")
            }
        })
    }
}

/// Runs a channel command.
pub async fn run(config: &Config, db: &Db, action: ChannelAction) -> anyhow::Result<()> {
    match action {
        ChannelAction::Add { kind } => {
            let (org, provider, json, hook) = kind.into_parts()?;
            let spec = channels::registry::find(provider).context("provider is registered")?;
            let org = super::find_org(db, &org).await?;
            crate::plugins::build(provider, &json, &reqwest::Client::new())?;
            orgs::upsert_channel_account(
                &db.pool,
                &org.id,
                spec.name,
                spec.channel.as_str(),
                &json,
            )
            .await?;
            if spec.hooks.is_empty() {
                println!(
                    "{} account configured for {}; the gateway reads its mailbox and sends through its server",
                    spec.kind, org.slug
                );
            } else {
                println!(
                    "{} account configured for {}; point the provider's webhook at {}/webhooks/{}/{}{hook}",
                    spec.kind,
                    org.slug,
                    config.public_base(),
                    spec.name,
                    org.slug
                );
            }
            Ok(())
        }
        ChannelAction::List { org } => {
            let org = super::find_org(db, &org).await?;
            for acct in orgs::channel_accounts(&db.pool, &org.id).await? {
                println!("{}\t{}\t{}", acct.provider, acct.channel, acct.id);
            }
            Ok(())
        }
    }
}
