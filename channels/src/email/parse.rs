//! One raw message (RFC 5322 bytes, as IMAP returns them) to what the runtime stores, through
//! mail-parser: no I/O, no clocks, and no panic escapes (a parser failure is a refusal with its
//! reason, so one hostile message never stalls a mailbox).
//!
//! The inbound message keeps the full text as `body` (text/plain preferred, HTML reduced to
//! text when there is no plain part) and, in `content`, what email adds: the subject, the
//! threading ids, the text with quoted replies and signature trimmed for display, the
//! auto-reply flag, the attachments (hash, name, type, size) and, when the mail has an HTML
//! part, that HTML sanitised ([`super::html`]; left out when it is over the body cap). Strings
//! are cleaned of NUL bytes and capped, so what is stored is always storable.

use super::bounce::{self, Action};
use super::config::normalize_address;
use super::thread::{self, normalize_id, MAX_REFERENCES};
use crate::{InboundMedia, InboundMessage, StatusUpdate};
use base64::Engine;
use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use serde_json::json;
use sha2::{Digest, Sha256};
use state_machines::{Channel, DeliveryState};

/// Longest text body kept, in bytes (the rest is cut and `content.truncated` is set).
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// Longest subject kept, in bytes (RFC 5322's line limit).
pub const MAX_SUBJECT_BYTES: usize = 998;
/// Most attachments kept per message.
pub const MAX_ATTACHMENTS: usize = 32;

/// What one raw message is to the runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A message from a contact (an auto-reply too: its `kind` is `auto_reply`).
    Message(Box<InboundMessage>),
    /// A bounce or delivery report about one of our messages.
    Status(StatusUpdate),
    /// Nothing to store or change (a delay report), with the reason.
    Ignored(String),
    /// Unusable, with the reason (reported, not stored).
    Rejected(String),
}

/// Parses one raw message received at our address `to`. Attachments up to
/// `max_attachment_bytes` travel with it (as `data:` URLs the media worker stores); larger
/// ones are listed without their bytes.
pub fn parse(raw: &[u8], to: &str, max_attachment_bytes: u64) -> Parsed {
    let run = std::panic::AssertUnwindSafe(|| parse_inner(raw, to, max_attachment_bytes));
    std::panic::catch_unwind(run)
        .unwrap_or_else(|_| Parsed::Rejected("the MIME parser failed on this message".into()))
}

fn parse_inner(raw: &[u8], to: &str, max_attachment_bytes: u64) -> Parsed {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Parsed::Rejected("empty message".into());
    }
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Parsed::Rejected("not a MIME message".into());
    };
    if let Some(b) = bounce::detect(&msg) {
        return match (b.action, b.original_id) {
            (Action::Delayed, _) => Parsed::Ignored(format!("delivery delayed: {}", b.diagnostic)),
            (_, None) => Parsed::Rejected(format!(
                "a delivery report that names no message: {}",
                b.diagnostic
            )),
            (action, Some(id)) => {
                let (state, word) = match action {
                    Action::Delivered => (DeliveryState::Delivered, "delivered"),
                    _ => (DeliveryState::Failed, "bounced"),
                };
                let mut update = StatusUpdate::new(id, state, word);
                if state == DeliveryState::Failed {
                    update.error_code = b.status.map(|s| clean(&s, 32));
                    update.error_message = Some(clean(&b.diagnostic, 500));
                }
                update.details = b.recipient.map(|r| json!({"recipient": clean(&r, 254)}));
                Parsed::Status(update)
            }
        };
    }
    let Some(from) = sender(&msg) else {
        return Parsed::Rejected("no usable sender address (From, Sender, Return-Path)".into());
    };
    let provider_message_id = msg
        .message_id()
        .and_then(normalize_id)
        .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(raw))));
    let subject = msg
        .subject()
        .map(|s| clean(s, MAX_SUBJECT_BYTES))
        .unwrap_or_default();
    let in_reply_to = ids(msg.in_reply_to());
    let mut references = ids(msg.references());
    if references.len() > MAX_REFERENCES {
        let tail = references.split_off(references.len() - (MAX_REFERENCES - 1));
        references.truncate(1);
        references.extend(tail);
    }
    let (body, truncated) = text_body(&msg);
    let html = html_body(&msg);
    let auto_reply = thread::auto_reply_reason(|name| msg.header_raw(name.to_string()));
    let (media, attachments) = attachments(&msg, max_attachment_bytes);
    let content = json!({
        "type": "email",
        "subject": subject,
        "message_id": provider_message_id,
        "in_reply_to": in_reply_to,
        "references": references,
        "thread_keys": thread::reference_chain(&in_reply_to, &references),
        "subject_key": thread::normalize_subject(&subject),
        "display": display_text(&body),
        "auto_reply": auto_reply,
        "cc": addresses(msg.cc()),
        "attachments": attachments,
        "truncated": truncated,
        "html": html,
    });
    Parsed::Message(Box::new(InboundMessage {
        channel: Channel::Email,
        provider_message_id,
        from,
        to: to.to_string(),
        body,
        kind: if auto_reply.is_some() {
            crate::message::AUTO_REPLY_KIND
        } else {
            "email"
        }
        .into(),
        content: Some(content),
        media,
        reply_to: in_reply_to.first().cloned(),
        keyword: None,
        opens_window: None,
    }))
}

/// The contact's address: `From`, else `Sender`, else `Return-Path`.
fn sender(msg: &Message<'_>) -> Option<String> {
    let first = |a: Option<&mail_parser::Address<'_>>| {
        a.and_then(|a| a.iter().find_map(|x| x.address()))
            .and_then(|s| normalize_address(&clean(s, 254)).ok())
    };
    first(msg.from())
        .or_else(|| first(msg.sender()))
        .or_else(|| msg.return_address().and_then(|s| normalize_address(s).ok()))
}

fn addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| x.address())
            .filter_map(|s| normalize_address(s).ok())
            .take(50)
            .collect()
    })
    .unwrap_or_default()
}

/// Message-ids of an `In-Reply-To` or `References` header, normalized.
fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    let raw: Vec<&str> = match value {
        HeaderValue::Text(t) => t.split_whitespace().collect(),
        HeaderValue::TextList(list) => list.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<String> = Vec::new();
    for id in raw.into_iter().filter_map(normalize_id) {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// The first text body (HTML reduced to text when there is no plain one), cleaned and capped.
fn text_body(msg: &Message<'_>) -> (String, bool) {
    let text = msg
        .text_body
        .first()
        .and_then(|&i| msg.parts.get(i as usize))
        .and_then(|part| match &part.body {
            PartType::Text(t) => Some(t.to_string()),
            PartType::Html(h) => Some(mail_parser::decoders::html::html_to_text(h)),
            _ => None,
        })
        .unwrap_or_default();
    let truncated = text.len() > MAX_BODY_BYTES;
    (clean(&text, MAX_BODY_BYTES), truncated)
}

/// The first HTML body, sanitised, when the mail has one and it fits the body cap.
fn html_body(msg: &Message<'_>) -> Option<String> {
    let part = msg.parts.get(*msg.html_body.first()? as usize)?;
    let PartType::Html(h) = &part.body else {
        return None;
    };
    let safe = super::html::sanitize(&clean(h, MAX_BODY_BYTES));
    (safe.len() <= MAX_BODY_BYTES).then_some(safe)
}

/// Attachments: the ones within the cap as media to keep; every one listed with its hash.
fn attachments(msg: &Message<'_>, max_bytes: u64) -> (Vec<InboundMedia>, Vec<serde_json::Value>) {
    let mut media = Vec::new();
    let mut listed = Vec::new();
    for part in msg.attachments().take(MAX_ATTACHMENTS) {
        let bytes = part.contents();
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .map(|t| clean(&t.to_ascii_lowercase(), 127))
            .unwrap_or_else(|| "application/octet-stream".into());
        let filename = part.attachment_name().map(|n| clean(n, 255));
        let sha256 = hex::encode(Sha256::digest(bytes));
        let kept = bytes.len() as u64 <= max_bytes;
        listed.push(json!({
            "filename": filename, "content_type": content_type, "size": bytes.len(),
            "sha256": sha256, "kept": kept,
        }));
        if kept {
            media.push(InboundMedia {
                reference: format!(
                    "data:{content_type};base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                ),
                content_type,
                caption: None,
                filename,
                provider_sha256: Some(sha256),
                fetch: true,
            });
        }
    }
    (media, listed)
}

/// Decodes a `data:{type};base64,{bytes}` reference made by [`parse`].
pub fn decode_data_url(reference: &str) -> Option<(String, Vec<u8>)> {
    let rest = reference.strip_prefix("data:")?;
    let (content_type, data) = rest.split_once(";base64,")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    Some((content_type.to_string(), bytes))
}

/// The text for display: what the sender wrote above the quoted message and the signature.
/// The full body is kept beside it.
pub fn display_text(body: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let lines: Vec<&str> = body.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        let next_quoted = lines
            .get(i + 1)
            .is_some_and(|n| n.trim_start().starts_with('>'));
        let attribution = (t.starts_with("On ") && t.ends_with("wrote:"))
            // German clients put the name after the verb: "Am …, um 10:00 schrieb Jane <j@x>:".
            || (t.starts_with("Am ") && t.contains(" schrieb ") && t.ends_with(':'))
            || (t.starts_with("Am ") && t.ends_with("schrieb:"))
            || (t.starts_with("Le ") && t.ends_with("écrit :"))
            || (t.ends_with(':') && next_quoted);
        if t.starts_with('>')
            || attribution
            || *line == "-- "
            || t == "--"
            || t.starts_with("-----Original Message-----")
            || t.starts_with("________________________________")
        {
            break;
        }
        out.push(line);
    }
    let text = out.join("\n").trim().to_string();
    if text.is_empty() {
        body.trim().to_string()
    } else {
        text
    }
}

/// The string without NUL and other C0 controls (tab and newlines stay), at most `max`
/// bytes, cut at a character boundary.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
            continue;
        }
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(raw: &str) -> InboundMessage {
        match parse(raw.as_bytes(), "support@acme.test", 1024) {
            Parsed::Message(m) => *m,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn plain_text_with_threading_ids() {
        let m = message(
            "From: Jane Doe <Jane@Example.com>\r\nTo: support@acme.test\r\n\
             Subject: =?UTF-8?B?UmU6IE9yZGVyIMOcYmVy?=\r\nMessage-ID: <r1@example.com>\r\n\
             In-Reply-To: <q1@acme.test>\r\nReferences: <root@example.com> <q1@acme.test>\r\n\
             \r\nThanks!\r\n\r\nOn Mon, Support wrote:\r\n> Hello\r\n",
        );
        assert_eq!(m.from, "jane@example.com");
        assert_eq!(m.provider_message_id, "r1@example.com");
        assert_eq!(m.reply_to.as_deref(), Some("q1@acme.test"));
        assert_eq!(m.kind, "email");
        let c = m.content.unwrap();
        assert_eq!(c["subject"], "Re: Order Über");
        assert_eq!(c["subject_key"], "order über");
        assert_eq!(
            c["thread_keys"],
            json!(["q1@acme.test", "root@example.com"])
        );
        assert_eq!(c["display"], "Thanks!");
        assert!(m.body.contains("> Hello"));
    }

    #[test]
    fn caps_and_lists() {
        assert_eq!(MAX_BODY_BYTES, 512 * 1024);
        let head = "From: a@b.test\r\nMessage-ID: <big@b.test>\r\n\
                    Cc: C@D.test, bad address, e@f.test\r\n";
        let at_cap = "x".repeat(MAX_BODY_BYTES);
        let m = message(&format!("{head}\r\n{at_cap}"));
        let c = m.content.unwrap();
        assert_eq!(
            (m.body.len(), &c["truncated"]),
            (MAX_BODY_BYTES, &json!(false))
        );
        assert_eq!(c["cc"], json!(["c@d.test", "e@f.test"]));
        let m = message(&format!("{head}\r\n{at_cap}y"));
        assert_eq!(m.body.len(), MAX_BODY_BYTES);
        assert_eq!(m.content.unwrap()["truncated"], json!(true));
    }

    #[test]
    fn long_reference_chains_keep_the_root_and_the_latest() {
        let refs = |n: usize| (0..n).map(|i| format!("<r{i}@x.test>")).collect::<Vec<_>>();
        for n in [MAX_REFERENCES, MAX_REFERENCES + 1, MAX_REFERENCES + 5] {
            let all = refs(n);
            let raw = format!(
                "From: a@b.test\r\nReferences: {}\r\n\r\nhi\r\n",
                all.join(" ")
            );
            let kept = message(&raw).content.unwrap()["references"].clone();
            let kept: Vec<String> = serde_json::from_value(kept).unwrap();
            assert_eq!(kept.len(), MAX_REFERENCES, "{n} references");
            assert_eq!(kept[0], "r0@x.test");
            assert_eq!(kept.last().unwrap(), &format!("r{}@x.test", n - 1));
            assert_eq!(kept[1], format!("r{}@x.test", n - (MAX_REFERENCES - 1)));
        }
    }

    #[test]
    fn delivery_reports_become_status_updates() {
        let dsn = |action: &str, status: &str| {
            format!(
                "From: MAILER-DAEMON@mx.test\r\nSubject: report\r\nMIME-Version: 1.0\r\n\
                 Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
                 --B\r\nContent-Type: message/delivery-status\r\n\r\n\
                 Final-Recipient: rfc822; bob@x.test\r\nAction: {action}\r\nStatus: {status}\r\n\r\n\
                 --B\r\nContent-Type: text/rfc822-headers\r\n\r\n\
                 Message-ID: <out-1@acme.test>\r\n--B--\r\n"
            )
        };
        let delivered = match parse(dsn("delivered", "2.0.0").as_bytes(), "s@acme.test", 0) {
            Parsed::Status(u) => u,
            other => panic!("{other:?}"),
        };
        assert_eq!(delivered.provider_message_id, "out-1@acme.test");
        assert_eq!(
            (delivered.state, delivered.provider_status.as_str()),
            (DeliveryState::Delivered, "delivered")
        );
        assert_eq!(
            (delivered.error_code, delivered.error_message),
            (None, None)
        );
        assert_eq!(delivered.details, Some(json!({"recipient": "bob@x.test"})));
        let failed = match parse(dsn("failed", "5.1.1").as_bytes(), "s@acme.test", 0) {
            Parsed::Status(u) => u,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (failed.state, failed.provider_status.as_str()),
            (DeliveryState::Failed, "bounced")
        );
        assert_eq!(failed.error_code.as_deref(), Some("5.1.1"));
        assert_eq!(
            failed.error_message.as_deref(),
            Some("delivery status 5.1.1")
        );
        assert!(matches!(
            parse(dsn("delayed", "4.4.1").as_bytes(), "s@acme.test", 0),
            Parsed::Ignored(r) if r.starts_with("delivery delayed")
        ));
        let unnamed = dsn("failed", "5.1.1").replace("Message-ID: <out-1@acme.test>", "X: y");
        assert!(matches!(
            parse(unnamed.as_bytes(), "s@acme.test", 0),
            Parsed::Rejected(r) if r.contains("names no message")
        ));
    }

    #[test]
    fn html_only_is_reduced_to_text() {
        let m = message(
            "From: a@b.test\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
             <p>Hello <b>there</b></p><script>alert(1)</script>\r\n",
        );
        assert!(m.body.contains("Hello there"), "{}", m.body);
        assert!(!m.body.contains("<b>"));
        // The HTML is kept too, without the script.
        let html = m.content.unwrap()["html"].as_str().unwrap().to_string();
        assert!(
            html.contains("<b>there</b>") && !html.contains("script"),
            "{html}"
        );
    }

    #[test]
    fn the_text_part_is_the_body_and_the_html_part_is_kept_sanitised() {
        let m = message(SAMPLE);
        assert_eq!(m.body.trim(), "café");
        assert_eq!(m.content.unwrap()["html"], "<b>café</b>");
        // A text-only mail has no HTML (mail-parser would make some up from the text).
        let plain = message("From: a@b.test\r\n\r\nJust text\r\n");
        assert!(plain.content.unwrap()["html"].is_null());
    }

    #[test]
    fn attachments_are_listed_and_small_ones_kept() {
        let m = message(
            "From: a@b.test\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\n\
             Content-Type: text/plain\r\n\r\nsee attached\r\n--X\r\n\
             Content-Type: application/pdf; name=\"a.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--X--\r\n",
        );
        assert_eq!(m.media.len(), 1);
        assert_eq!(m.media[0].filename.as_deref(), Some("a.pdf"));
        let (ct, bytes) = decode_data_url(&m.media[0].reference).unwrap();
        assert_eq!(
            (ct.as_str(), bytes.as_slice()),
            ("application/pdf", &b"%PDF-1.4\n"[..])
        );
        assert_eq!(m.content.unwrap()["attachments"][0]["size"], 9);
    }

    #[test]
    fn auto_replies_are_flagged() {
        let m = message(
            "From: a@b.test\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\naway\r\n",
        );
        assert_eq!(m.kind, "auto_reply");
        assert!(m.content.unwrap()["auto_reply"].is_string());
    }

    #[test]
    fn no_sender_is_refused_with_a_reason() {
        let p = parse(b"Subject: x\r\n\r\nbody", "s@acme.test", 10);
        assert!(matches!(p, Parsed::Rejected(r) if r.contains("sender")));
        assert!(matches!(parse(b"", "s@acme.test", 10), Parsed::Rejected(_)));
    }

    #[test]
    fn nul_bytes_never_reach_storage() {
        let m = message("From: a@b.test\r\nSubject: a\0b\r\n\r\nx\0y\r\n");
        assert!(!m.body.contains('\0'));
        assert!(!m.content.unwrap().to_string().contains("\\u0000"));
    }

    #[test]
    fn missing_message_id_gets_a_content_hash() {
        let m = message("From: a@b.test\r\n\r\nhi\r\n");
        assert!(m.provider_message_id.starts_with("sha256:"));
    }

    const SAMPLE: &str = "From: Jane <jane@example.com>\r\nSubject: =?UTF-8?Q?R=C3=A9:?= x\r\n\
Message-ID: <s1@example.com>\r\nIn-Reply-To: <p@x>\r\nReferences: <r@x> <p@x>\r\n\
Content-Type: multipart/mixed; boundary=\"M\"\r\n\r\n--M\r\n\
Content-Type: multipart/alternative; boundary=A\r\n\r\n--A\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=E9\r\n--A\r\nContent-Type: text/html\r\n\r\n<b>caf&eacute;</b>\r\n--A--\r\n--M\r\n\
Content-Type: application/octet-stream; name=a.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n\
AAECAwQF\r\n--M\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\n--M--\r\n";

    #[test]
    fn every_truncation_of_a_rich_message_parses_without_panic() {
        let raw = SAMPLE.as_bytes();
        // `parse_inner`: the parser itself must not panic (`parse` also catches, as a net).
        for end in 0..=raw.len() {
            let _ = parse_inner(&raw[..end], "s@acme.test", 1024);
        }
        assert!(matches!(
            parse(raw, "s@acme.test", 1024),
            Parsed::Message(_)
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = parse_inner(&bytes, "s@acme.test", 64);
        }

        #[test]
        fn a_corrupted_message_never_panics(at in 0usize..700, byte in proptest::num::u8::ANY, cut in 0usize..700) {
            let mut raw = SAMPLE.as_bytes().to_vec();
            let i = at % raw.len();
            raw[i] = byte;
            raw.truncate(raw.len() - cut % raw.len());
            if let Parsed::Message(m) = parse_inner(&raw, "s@acme.test", 64) {
                proptest::prop_assert!(!m.body.contains('\0'));
            }
        }
    }

    #[test]
    fn display_trims_quotes_and_signature() {
        assert_eq!(display_text("Hi\n\n-- \nJane"), "Hi");
        assert_eq!(display_text("> only a quote"), "> only a quote");
        assert_eq!(display_text("A\n-----Original Message-----\nB"), "A");
        assert_eq!(display_text("A\n________________________________\nB"), "A");
        assert_eq!(display_text("A\n--\nJane"), "A");
        assert_eq!(display_text("Thanks\n> quoted"), "Thanks");
        // Attributions cut even with a blank line before the quote.
        for attribution in [
            "On Mon, 1 Dec 2026, Jane <j@x.test> wrote:",
            "Am Mo., 1. Dez. 2026 um 10:00 Uhr schrieb Jane Doe <j@x.test>:",
            "Am 01.12.26 um 10:00 schrieb:",
            "Le lun. 1 déc. 2026, Jane a écrit :",
        ] {
            let body = format!("Thanks\n{attribution}\n\n> hi");
            assert_eq!(display_text(&body), "Thanks", "{attribution}");
        }
        // Any line ending in a colon cuts only when a quote follows at once.
        assert_eq!(display_text("Thanks\nJane said:\n> hi"), "Thanks");
        for kept in [
            "Hi\nNotes:\nbring the key",
            "Hi\nOn Monday we meet.\nOK",
            "Hi\nShe wrote:\nnothing",
            "Hi\nAm Montag geht es.\nOK",
            "Hi\nLe lundi, oui.\nOK",
            "Hi\nIch schrieb:\nnichts",
            "Hi\nIl a écrit :\nrien",
        ] {
            assert_eq!(display_text(kept), kept);
        }
    }

    #[test]
    fn clean_caps_at_a_character_boundary() {
        assert_eq!(clean("abc", 3), "abc");
        assert_eq!(clean("abcd", 3), "abc");
        assert_eq!(clean("aé", 2), "a");
        assert_eq!(clean("aé", 3), "aé");
        assert_eq!(clean("a\0b\u{1}\tc\r\n", 10), "ab\tc\r\n");
    }
}
