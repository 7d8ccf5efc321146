//! SMTP out through lettre: the message we send and how a server's answer is classified.
//!
//! Every message carries our own Message-ID, `<{our message id}@{our domain}>`: the same on
//! every retry, so a retried send is one message to the recipient's client, and the id the
//! runtime stores as the provider id — a reply's `In-Reply-To` and a bounce name it. A reply
//! carries `In-Reply-To` and `References` (from `content`, filled in by the runtime from the
//! contact's latest inbound email) so the customer's client threads it.
//!
//! With `content.html` (sanitised by the API) the message is multipart/alternative: the
//! text first, the HTML second, so a client shows the richest part it can and a text-only
//! reader still gets the words. With attachments it is multipart/mixed: that body, then each
//! file (base64). With a DKIM key the finished message is signed last.
//!
//! The server accepting the message (250 after DATA) is `sent`; a 5xx is a permanent
//! failure, a 4xx or a broken connection is worth retrying.

use super::config::{normalize_address, SmtpSettings, TlsMode};
use super::thread::normalize_id;
use crate::{OutboundMessage, SendError, SendReceipt};
use lettre::message::dkim::DkimConfig;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
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
/// (`{"type": "email", "subject", "in_reply_to", "references", "html"}`), if any.
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
        match c.get("html") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(h)) if h.len() <= MAX_BODY_BYTES => {}
            Some(serde_json::Value::String(_)) => {
                return Err(format!("field `html`: larger than {MAX_BODY_BYTES} bytes"))
            }
            Some(_) => return Err("field `html`: must be a string".into()),
        }
    }
    Ok(())
}

/// Most files attached to one message.
pub const MAX_ATTACHMENTS_OUT: usize = 10;
/// Most bytes of all the files attached to one message, decoded.
pub const MAX_ATTACHMENT_BYTES_OUT: usize = 10 * 1024 * 1024;

/// Checks one file to attach: a plain file name (no path, no control characters, at most 255
/// bytes), a MIME type `type/subtype`, and something in it.
pub fn check_attachment(filename: &str, content_type: &str, size: usize) -> Result<(), String> {
    let name_ok = !filename.trim().is_empty()
        && filename.len() <= 255
        && !filename
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    if !name_ok {
        return Err(format!(
            "attachment `{filename}`: a file name without a path, at most 255 bytes"
        ));
    }
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    if !content_type
        .split_once('/')
        .is_some_and(|(a, b)| token(a) && token(b))
    {
        return Err(format!(
            "attachment `{filename}`: content_type must be like application/pdf"
        ));
    }
    if size == 0 {
        return Err(format!("attachment `{filename}`: empty"));
    }
    Ok(())
}

/// Our Message-ID for our message `id` sent from `address` (without brackets).
pub fn message_id(id: &str, address: &str) -> String {
    let domain = address.rsplit_once('@').map_or("localhost", |(_, d)| d);
    format!("{id}@{domain}")
}

/// Who sends: the account's address, its display name and its DKIM signer.
#[derive(Debug, Clone, Copy)]
pub struct From<'a> {
    /// Our address (normalized).
    pub address: &'a str,
    /// The name shown beside it.
    pub display_name: Option<&'a str>,
    /// Signs every message when set.
    pub dkim: Option<&'a DkimConfig>,
}

/// Sends one message.
pub async fn send(
    transport: &Transport,
    from: &From<'_>,
    msg: &OutboundMessage,
) -> Result<SendReceipt, SendError> {
    let (email, id) = build(from, msg)?;
    match transport.send(email).await {
        Ok(response) => Ok(SendReceipt {
            provider_message_id: id,
            provider_status: format!("{}", response.code()),
        }),
        Err(e) => Err(classify(&e)),
    }
}

/// The message as it goes on the wire (signed when the account has a key), and our
/// Message-ID without brackets.
pub fn build(
    from: &From<'_>,
    msg: &OutboundMessage,
) -> Result<(lettre::Message, String), SendError> {
    let address = from.address;
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
        .from(Mailbox::new(
            from.display_name.map(str::to_string),
            from_addr,
        ))
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
    let html = text("html").filter(|h| !h.trim().is_empty());
    let built = match (html, msg.attachments.is_empty()) {
        (Some(html), true) => builder.multipart(MultiPart::alternative_plain_html(
            msg.body.clone(),
            html.to_string(),
        )),
        (None, true) => builder
            .header(ContentType::TEXT_PLAIN)
            .body(msg.body.clone()),
        (html, false) => {
            let mut mixed = match html {
                Some(html) => MultiPart::mixed().multipart(MultiPart::alternative_plain_html(
                    msg.body.clone(),
                    html.to_string(),
                )),
                None => MultiPart::mixed().singlepart(SinglePart::plain(msg.body.clone())),
            };
            for a in &msg.attachments {
                let ct = ContentType::parse(&a.content_type)
                    .map_err(|e| reject(format!("attachment {}: {e}", a.filename)))?;
                mixed =
                    mixed.singlepart(Attachment::new(a.filename.clone()).body(a.data.clone(), ct));
            }
            builder.multipart(mixed)
        }
    };
    let mut email = built.map_err(|e| reject(format!("cannot build the message: {e}")))?;
    if let Some(dkim) = from.dkim {
        email.sign(dkim);
    }
    Ok((email, id))
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

    fn outbound(content: serde_json::Value) -> OutboundMessage {
        OutboundMessage {
            message_id: "0190-ab".into(),
            to: "jane@example.com".into(),
            body: "It ships today.".into(),
            content: Some(content),
            webhook_base: String::new(),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn html_makes_a_multipart_alternative_and_a_key_signs_it() {
        use base64::Engine;
        let from = From {
            address: "support@acme.test",
            display_name: Some("Acme"),
            dkim: None,
        };
        let content =
            json!({"type": "email", "subject": "Order", "html": "<p>It <b>ships</b></p>"});
        let (email, id) = build(&from, &outbound(content.clone())).unwrap();
        assert_eq!(id, "0190-ab@acme.test");
        let raw = String::from_utf8(email.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        let text_at = raw.find("text/plain").unwrap();
        let html_at = raw.find("text/html").unwrap();
        assert!(text_at < html_at, "text first, the richest part last");
        assert!(!raw.contains("DKIM-Signature"));
        // Without HTML: one text/plain part.
        let (plain, _) = build(&from, &outbound(json!({"type": "email", "subject": "x"}))).unwrap();
        let plain = String::from_utf8(plain.formatted()).unwrap();
        assert!(
            !plain.contains("multipart") && plain.contains("text/plain"),
            "{plain}"
        );
        // With a key: signed for the address's domain.
        let seed = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let dkim = crate::email::DkimSettings {
            selector: "s1".into(),
            domain: None,
            private_key: crate::Secret::new(seed),
        }
        .signer("support@acme.test")
        .unwrap();
        let signed = From {
            dkim: Some(&dkim),
            ..from
        };
        let (email, _) = build(&signed, &outbound(content)).unwrap();
        let raw = String::from_utf8(email.formatted()).unwrap();
        let head = raw.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
        let sig = head
            .lines()
            .find(|l| l.starts_with("DKIM-Signature:"))
            .expect("signed");
        assert!(
            sig.contains("a=ed25519-sha256") && sig.contains("d=acme.test") && sig.contains("s=s1"),
            "{sig}"
        );
    }

    #[test]
    fn attachments_make_a_multipart_mixed_after_the_body() {
        let from = From {
            address: "support@acme.test",
            display_name: None,
            dkim: None,
        };
        let mut msg = outbound(json!({"type": "email", "subject": "Invoice", "html": "<p>Hi</p>"}));
        msg.attachments.push(crate::OutboundAttachment {
            filename: "invoice 42.pdf".into(),
            content_type: "application/pdf".into(),
            data: b"%PDF-1.4 fake".to_vec(),
        });
        let (email, _) = build(&from, &msg).unwrap();
        let raw = email.formatted();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert!(String::from_utf8_lossy(&raw).contains("multipart/mixed"));
        assert_eq!(parsed.body_text(0).unwrap().trim(), "It ships today.");
        assert!(parsed.body_html(0).unwrap().contains("<p>Hi</p>"));
        use mail_parser::MimeHeaders;
        let att = parsed.attachment(0).expect("one attachment");
        assert_eq!(att.attachment_name(), Some("invoice 42.pdf"));
        assert_eq!(att.contents(), b"%PDF-1.4 fake");
        msg.attachments[0].content_type = "not a type".into();
        assert!(build(&from, &msg).is_err());
    }

    #[test]
    fn sizes_are_taken_up_to_their_caps() {
        assert_eq!(MAX_BODY_BYTES, 1024 * 1024);
        assert_eq!(MAX_ATTACHMENT_BYTES_OUT, 10 * 1024 * 1024);
        assert!(check_outbound(&"x".repeat(MAX_BODY_BYTES), None).is_ok());
        assert_eq!(
            check_outbound(&"x".repeat(MAX_BODY_BYTES + 1), None).unwrap_err(),
            "field `body`: larger than 1048576 bytes"
        );
        let subject = |n: usize| json!({"type": "email", "subject": "s".repeat(n)});
        assert!(check_outbound("hi", Some(&subject(998))).is_ok());
        assert!(check_outbound("hi", Some(&subject(999))).is_err());
        assert!(check_outbound("hi", Some(&json!({"type": "email"}))).is_ok());
        let html = json!({"type": "email", "html": "h".repeat(MAX_BODY_BYTES)});
        assert!(check_outbound("hi", Some(&html)).is_ok());
        assert!(check_attachment(&"n".repeat(255), "text/plain", 1).is_ok());
        assert!(check_attachment(&"n".repeat(256), "text/plain", 1).is_err());
    }

    /// What the client sends first on a fresh connection to a silent server.
    async fn first_bytes(tls: TlsMode) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let settings = SmtpSettings {
            host: "localhost".into(),
            port: listener.local_addr().unwrap().port(),
            tls,
            username: None,
            password: None,
        };
        let client = transport(&settings).unwrap();
        let attempt = tokio::spawn(async move { client.test_connection().await });
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_millis(500), sock.read(&mut buf))
            .await
            .map(|r| r.unwrap())
            .unwrap_or(0);
        let mut first = buf[..n].to_vec();
        if n == 0 {
            // The client waits for a greeting: give it one and see what it says.
            sock.write_all(b"220 test ESMTP\r\n").await.unwrap();
            let n = sock.read(&mut buf).await.unwrap();
            first = buf[..n].to_vec();
        }
        attempt.abort();
        first
    }

    #[tokio::test]
    async fn tls_mode_tls_speaks_tls_first_and_starttls_waits_for_the_greeting() {
        let tls = first_bytes(TlsMode::Tls).await;
        assert_eq!(tls.first(), Some(&0x16), "a TLS handshake record: {tls:?}");
        let starttls = first_bytes(TlsMode::Starttls).await;
        assert!(
            starttls.starts_with(b"EHLO"),
            "{:?}",
            String::from_utf8_lossy(&starttls)
        );
        let plain = first_bytes(TlsMode::None).await;
        assert!(
            plain.starts_with(b"EHLO"),
            "{:?}",
            String::from_utf8_lossy(&plain)
        );
    }

    #[test]
    fn threading_headers_only_when_there_is_a_thread() {
        let from = From {
            address: "support@acme.test",
            display_name: None,
            dkim: None,
        };
        let reply = json!({"type": "email", "subject": "Re: x", "in_reply_to": "<p@x.test>",
                           "references": ["<r@x.test>", "bad id", "p@x.test"]});
        let (email, _) = build(&from, &outbound(reply)).unwrap();
        let raw = String::from_utf8(email.formatted()).unwrap();
        assert!(raw.contains("In-Reply-To: <p@x.test>"), "{raw}");
        assert!(raw.contains("References: <r@x.test> <p@x.test>"), "{raw}");
        let (first, _) = build(&from, &outbound(json!({"type": "email", "subject": "x"}))).unwrap();
        let raw = String::from_utf8(first.formatted()).unwrap();
        assert!(
            !raw.contains("References") && !raw.contains("In-Reply-To"),
            "{raw}"
        );
    }

    #[test]
    fn attachment_checks() {
        assert!(check_attachment("a.pdf", "application/pdf", 3).is_ok());
        assert!(check_attachment("../etc/passwd", "text/plain", 3).is_err());
        assert!(check_attachment("a\nb", "text/plain", 3).is_err());
        assert!(check_attachment("a.pdf", "pdf", 3).is_err());
        assert!(check_attachment("a.pdf", "application/pdf; x=\"y\"", 3).is_err());
        assert!(check_attachment("a.pdf", "application/pdf", 0).is_err());
    }

    #[test]
    fn html_must_be_a_string_within_the_cap() {
        let c = |h: serde_json::Value| json!({"type": "email", "subject": "x", "html": h});
        assert!(check_outbound("hi", Some(&c(json!("<p>x</p>")))).is_ok());
        assert!(check_outbound("hi", Some(&c(json!(5)))).is_err());
        let big = "x".repeat(MAX_BODY_BYTES + 1);
        assert!(check_outbound("hi", Some(&c(json!(big)))).is_err());
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
