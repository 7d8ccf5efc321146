//! Email: one mailbox of one organization — IMAP in, SMTP out, MIME through mail-parser.
//!
//! Email is not a webhook channel: the runtime's mailbox worker (`gateway::email`) reads the
//! IMAP folder and hands each raw message to [`parse::parse`]; everything here is pure except
//! [`smtp`], which talks to the SMTP server.
//!
//! - [`config`]: what an organization configures (address, IMAP and SMTP servers); it builds
//!   the running [`Email`] plugin.
//! - [`parse`]: raw RFC 5322 bytes to an [`crate::InboundMessage`] (text preferred, HTML
//!   reduced to text, attachments, encoded words and charsets through mail-parser), a bounce
//!   report, or a refusal with its reason. Never panics, never does I/O.
//! - [`bounce`]: DSNs (`multipart/report; report-type=delivery-status`) and the common
//!   non-standard bounce formats to a [`crate::StatusUpdate`] of the message they name.
//! - [`thread`]: threading keys — normalized Message-IDs, the reference chain of a reply,
//!   the subject with its `Re:`/`Fwd:` prefixes stripped, auto-reply classification.
//! - [`smtp`]: the message we send (our Message-ID, In-Reply-To, References; text, or text
//!   and HTML as multipart/alternative) through lettre.
//! - [`dkim`]: an account's optional DKIM key, signing everything it sends.
//! - [`html`]: the sanitiser every kept HTML body goes through, inbound and outbound.
//!
//! ```text
//!   IMAP UID ─▶ parse::parse ─┬─ Message(InboundMessage{content: subject, ids, thread keys})
//!                             ├─ Status(StatusUpdate: the bounced message → failed)
//!                             └─ Rejected(reason)   (recorded, never retried, never stalls)
//! ```

pub mod bounce;
pub mod config;
pub mod dkim;
pub mod html;
pub mod parse;
pub mod smtp;
pub mod thread;

pub use config::{Email, EmailConfig, ImapSettings, SmtpSettings, TlsMode};
pub use dkim::DkimSettings;

use crate::registry::{build_json, ProviderSpec};
use state_machines::Channel;

/// Email in the provider registry. It claims no webhook: the mailbox worker reads IMAP.
pub const SPEC: ProviderSpec = ProviderSpec {
    name: "email",
    kind: "email",
    channel: Channel::Email,
    hooks: &[],
    build: |json, http| build_json(json, http, EmailConfig::build),
    // Email takes no webhooks, so no stranger is ever answered with it; it exists because
    // every provider has one, and builds like any account.
    decoy: || {
        serde_json::json!({
            "address": "decoy@invalid.example",
            "imap": {"host": "invalid.example", "port": 993, "tls": "tls",
                     "username": "decoy", "password": crate::registry::random_hex(16)},
            "smtp": {"host": "invalid.example", "port": 465, "tls": "tls"},
        })
        .to_string()
    },
};
