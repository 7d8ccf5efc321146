//! SMTP out through lettre: the message we send and how a server's answer is classified.
//!
//! Every message carries our own Message-ID, `<{our message id}@{our domain}>`: the same on
//! every retry, so a retried send is one message to the recipient's client, and the id the
//! runtime stores as the provider id — a reply's `In-Reply-To` and a bounce name it. A reply
//! carries `In-Reply-To` and `References` (from `content`, filled in by the runtime from the
//! contact's latest inbound email) so the customer's client threads it.
//!
//! The server accepting the message (250 after DATA) is `sent`; a 5xx is a permanent
//! failure, a 4xx or a broken connection is worth retrying.

use super::config::{normalize_address, EmailConfig, SmtpSettings, TlsMode};
use super::thread::normalize_id;
use crate::{OutboundMessage, SendError, SendReceipt};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::time::Duration;

/// The pooled SMTP client of one account.
pub type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Longest body accepted for sending, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Builds the pooled client (connections are opened on demand and reused).
pub fn transport(s: &SmtpSettings) -> Result<Transport, SendError> {
    let tls = match s.tls {
        TlsMode::None => Tls::None,
        TlsMode::Starttls | TlsMode::Tls => {
            let params = TlsParameters::new(s.host.clone()).map_err(|e| SendError::Rejected {
                status: 0,
                code: None,
                message: format!("TLS settings for {}: {e}", s.host),
            })?;
            if s.tls == TlsMode::Tls {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            }
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
        .port(s.port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(30)))
        .pool_config(PoolConfig::new().max_size(8));
    if let (Some(user), Some(password)) = (&s.username, &s.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        ));
    }
    Ok(builder.build())
}

/// Checks what an API client asked to send: a body, and the `content` the API made
/// (`{"type": "email", "subject", "in_reply_to", "references"}`), if any.
pub fn check_outbound(body: &str, content: Option<&serde_json::Value>) -> Result<(), String> {
    if body.trim().is_empty() {
        return Err("field `body`: must not be empty".into());
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(format!("field `body`: larger than {MAX_BODY_BYTES} bytes"));
    }
    if let Some(c) = content {
        if c.get("type").and_then(|t| t.as_str()) != Some("email") {
            return Err("field `content`: email takes a subject, not content".into());
        }
        let subject = c.get("subject").and_then(|s| s.as_str()).unwrap_or("");
        if subject.len() > super::parse::MAX_SUBJECT_BYTES || subject.contains(['\r', '\n']) {
            return Err("field `subject`: one line of at most 998 bytes".into());
        }
    }
    Ok(())
}

/// Our Message-ID for our message `id` sent from `address` (without brackets).
pub fn message_id(id: &str, address: &str) -> String {
    let domain = address.rsplit_once('@').map_or("localhost", |(_, d)| d);
    format!("{id}@{domain}")
}

/// Sends one message.
pub async fn send(
    transport: &Transport,
    config: &EmailConfig,
    address: &str,
    msg: &OutboundMessage,
) -> Result<SendReceipt, SendError> {
    let reject = |message: String| SendError::Rejected {
        status: 0,
        code: None,
        message,
    };
    let from_addr = address
        .parse()
        .map_err(|e| reject(format!("our address: {e}")))?;
    let to = normalize_address(&msg.to).map_err(|e| reject(format!("recipient: {e}")))?;
    let to_addr = to.parse().map_err(|e| reject(format!("recipient: {e}")))?;
    let content = msg.content.as_ref();
    let text = |k: &str| content.and_then(|c| c.get(k)).and_then(|v| v.as_str());
    let subject = text("subject").unwrap_or("").trim();
    let id = message_id(&msg.message_id, address);
    let mut builder = lettre::Message::builder()
        .from(Mailbox::new(config.display_name.clone(), from_addr))
        .to(Mailbox::new(None, to_addr))
        .subject(if subject.is_empty() {
            "(no subject)"
        } else {
            subject
        })
        .message_id(Some(format!("<{id}>")))
        .date_now();
    if let Some(parent) = text("in_reply_to").and_then(normalize_id) {
        builder = builder.in_reply_to(format!("<{parent}>"));
    }
    let refs: Vec<String> = content
        .and_then(|c| c.get("references"))
        .and_then(|r| r.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().and_then(normalize_id))
                .map(|r| format!("<{r}>"))
                .collect()
        })
        .unwrap_or_default();
    if !refs.is_empty() {
        builder = builder.references(refs.join(" "));
    }
    let email = builder
        .header(ContentType::TEXT_PLAIN)
        .body(msg.body.clone())
        .map_err(|e| reject(format!("cannot build the message: {e}")))?;
    match transport.send(email).await {
        Ok(response) => Ok(SendReceipt {
            provider_message_id: id,
            provider_status: format!("{}", response.code()),
        }),
        Err(e) => Err(classify(&e)),
    }
}

/// A 5xx answer is permanent; 4xx, timeouts and broken connections are transient.
pub fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let code = e.status().map(|c| c.to_string());
    let status = code
        .as_deref()
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(0);
    if e.is_permanent() {
        SendError::Rejected {
            status,
            code,
            message: e.to_string(),
        }
    } else {
        SendError::Unavailable {
            status,
            code,
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outbound_checks() {
        assert!(check_outbound("hi", None).is_ok());
        assert!(check_outbound(" ", None).is_err());
        assert!(check_outbound("hi", Some(&json!({"type": "email", "subject": "x"}))).is_ok());
        assert!(check_outbound("hi", Some(&json!({"type": "template"}))).is_err());
        assert!(check_outbound(
            "hi",
            Some(&json!({"type": "email", "subject": "a\r\nBcc: x"}))
        )
        .is_err());
    }

    #[test]
    fn our_message_ids_are_stable_per_message() {
        assert_eq!(
            message_id("0190-ab", "support@acme.test"),
            "0190-ab@acme.test"
        );
        assert_eq!(
            message_id("0190-ab", "support@acme.test"),
            message_id("0190-ab", "support@acme.test")
        );
    }
}
