//! Bounces: RFC 3464 delivery status notifications (`multipart/report;
//! report-type=delivery-status` with a `message/delivery-status` part) and the common
//! non-standard formats (a `MAILER-DAEMON`/`postmaster` sender, an "Undelivered Mail" subject,
//! the original's headers quoted in the text), reduced to the Message-ID of the message that
//! bounced, what happened to it and why. Pure functions over a parsed message.

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

/// What a report says happened to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It will not be delivered (`Action: failed`, a 5.x.x status, a non-standard bounce).
    Failed,
    /// Still being tried (`Action: delayed`): nothing changes yet.
    Delayed,
    /// Delivered or relayed (a success notification).
    Delivered,
}

/// A bounce or delivery report, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// The Message-ID of the message it reports on (without brackets), when found.
    pub original_id: Option<String>,
    /// What happened.
    pub action: Action,
    /// The enhanced status code (`5.1.1`).
    pub status: Option<String>,
    /// The server's diagnostic (`550 5.1.1 user unknown`), or a summary.
    pub diagnostic: String,
    /// The recipient it failed for.
    pub recipient: Option<String>,
}

/// Longest diagnostic kept.
const MAX_DIAGNOSTIC: usize = 500;

/// Reads a bounce out of `msg`, or `None` when it is not one.
pub fn detect(msg: &Message<'_>) -> Option<Bounce> {
    let root = msg.root_part();
    let is_report = root.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"))
    });
    if is_report {
        return Some(dsn(msg));
    }
    if looks_like_bounce(msg) {
        let text = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
        let status = find_status_code(&text);
        let action = match status.as_deref() {
            Some(s) if s.starts_with('4') => Action::Delayed,
            _ => Action::Failed,
        };
        return Some(Bounce {
            original_id: original_id(msg),
            action,
            diagnostic: diagnostic_line(&text)
                .unwrap_or_else(|| "bounced (non-standard report)".into()),
            status,
            recipient: None,
        });
    }
    None
}

/// A bounce by its sender and subject, for servers that do not send RFC 3464 reports.
fn looks_like_bounce(msg: &Message<'_>) -> bool {
    let from = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or("")
        .to_ascii_lowercase();
    let local = from.split('@').next().unwrap_or("");
    let daemon = matches!(local, "mailer-daemon" | "postmaster" | "mail-daemon");
    let subject = msg.subject().unwrap_or("").to_ascii_lowercase();
    let bouncy = [
        "undeliver",
        "delivery status notification",
        "returned mail",
        "failure notice",
        "delivery failure",
        "could not be delivered",
        "mail delivery failed",
        "delivery has failed",
    ]
    .iter()
    .any(|k| subject.contains(k));
    daemon && bouncy
}

fn dsn(msg: &Message<'_>) -> Bounce {
    let mut fields = Vec::new();
    for part in &msg.parts {
        let is_status = part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("delivery-status")
                        || s.eq_ignore_ascii_case("global-delivery-status")
                })
        });
        if is_status {
            fields = status_blocks(&part_text(part));
            break;
        }
    }
    // The per-recipient block that matters most: a failure, else a delay, else a success.
    let rank = |b: &Fields| match action_of(b) {
        Action::Failed => 0,
        Action::Delayed => 1,
        Action::Delivered => 2,
    };
    let block = fields.iter().min_by_key(|b| rank(b));
    let (action, status, diagnostic, recipient) = match block {
        Some(b) => (
            action_of(b),
            field(b, "status").map(|s| s.split_whitespace().next().unwrap_or("").to_string()),
            field(b, "diagnostic-code").map(|d| {
                d.split_once(';')
                    .map_or(d, |(_, rest)| rest)
                    .trim()
                    .to_string()
            }),
            field(b, "final-recipient")
                .or_else(|| field(b, "original-recipient"))
                .map(|r| {
                    r.split_once(';')
                        .map_or(r, |(_, rest)| rest)
                        .trim()
                        .to_string()
                }),
        ),
        None => (Action::Failed, None, None, None),
    };
    let diagnostic = diagnostic
        .filter(|d| !d.is_empty())
        .or_else(|| status.as_ref().map(|s| format!("delivery status {s}")))
        .unwrap_or_else(|| "bounced".into());
    Bounce {
        original_id: original_id(msg),
        action,
        status: status.filter(|s| !s.is_empty()),
        diagnostic: truncate(&diagnostic, MAX_DIAGNOSTIC),
        recipient,
    }
}

type Fields = Vec<(String, String)>;

fn field<'a>(block: &'a Fields, name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn action_of(block: &Fields) -> Action {
    let action = field(block, "action")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let status = field(block, "status").unwrap_or("").trim().to_string();
    match action.as_str() {
        "delayed" => Action::Delayed,
        "delivered" | "relayed" | "expanded" => Action::Delivered,
        "failed" => Action::Failed,
        _ if status.starts_with('2') => Action::Delivered,
        _ if status.starts_with('4') => Action::Delayed,
        _ => Action::Failed,
    }
}

/// The blocks of a `message/delivery-status` body (per-message fields, then one block per
/// recipient), each as (name, value) with folded lines joined.
fn status_blocks(text: &str) -> Vec<Fields> {
    let mut blocks = Vec::new();
    let mut cur: Fields = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                blocks.push(std::mem::take(&mut cur));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        blocks.push(cur);
    }
    // Only recipient blocks carry an action; the per-message block does not.
    let with_action: Vec<Fields> = blocks
        .iter()
        .filter(|b| field(b, "action").is_some() || field(b, "status").is_some())
        .cloned()
        .collect();
    with_action
}

/// A part's bytes as text, whatever mail-parser made of it.
fn part_text(part: &MessagePart<'_>) -> String {
    match &part.body {
        PartType::Text(t) | PartType::Html(t) => t.to_string(),
        PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b).into_owned(),
        PartType::Message(m) => String::from_utf8_lossy(m.raw_message()).into_owned(),
        PartType::Multipart(_) => String::new(),
    }
}

/// The Message-ID of the bounced message: from the attached original (`message/rfc822`,
/// `text/rfc822-headers`), else a `Message-ID:` line quoted in the body, else the bounce's
/// own `In-Reply-To`.
fn original_id(msg: &Message<'_>) -> Option<String> {
    for part in msg.parts.iter().skip(1) {
        if let PartType::Message(inner) = &part.body {
            if let Some(id) = inner.message_id().and_then(super::thread::normalize_id) {
                return Some(id);
            }
        }
        let headers_part = part.content_type().is_some_and(|ct| {
            ct.subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
        });
        if headers_part {
            if let Some(id) = quoted_message_id(&part_text(part)) {
                return Some(id);
            }
        }
    }
    let raw = msg.raw_message();
    let body_at = (msg.root_part().raw_body_offset() as usize).min(raw.len());
    if let Some(id) = quoted_message_id(&String::from_utf8_lossy(&raw[body_at..])) {
        return Some(id);
    }
    msg.in_reply_to()
        .as_text()
        .and_then(super::thread::normalize_id)
}

/// The first `Message-ID: <…>` header line quoted in a text.
fn quoted_message_id(text: &str) -> Option<String> {
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start_matches(['>', ' ']);
        let Some((name, value)) = trimmed.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("message-id") {
            continue;
        }
        let mut value = value.trim().to_string();
        if value.is_empty() {
            if let Some(next) = lines.peek() {
                value = next.trim().to_string();
            }
        }
        let id = value
            .split_whitespace()
            .next()
            .and_then(super::thread::normalize_id);
        if id.is_some() {
            return id;
        }
    }
    None
}

/// An enhanced status code (`5.1.1`) anywhere in the text.
fn find_status_code(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// The line of a human-readable bounce that says what went wrong.
fn diagnostic_line(text: &str) -> Option<String> {
    let keys = [
        "550",
        "551",
        "552",
        "553",
        "554",
        "user unknown",
        "does not exist",
        "no such user",
        "rejected",
        "mailbox unavailable",
        "mailbox full",
        "quota",
    ];
    text.lines()
        .map(str::trim)
        .find(|l| {
            let low = l.to_ascii_lowercase();
            keys.iter().any(|k| low.contains(k))
        })
        .map(|l| truncate(l, MAX_DIAGNOSTIC))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    const DSN: &str = "From: MAILER-DAEMON@mx.example.net\r\n\
To: support@acme.test\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <bounce-1@mx.example.net>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
\r\n\
--B\r\n\
Content-Type: text/plain\r\n\
\r\n\
Your message could not be delivered.\r\n\
--B\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.net\r\n\
\r\n\
Final-Recipient: rfc822; nobody@example.net\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.net>: Recipient address\r\n\
\x20 rejected: User unknown\r\n\
\r\n\
--B\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: support@acme.test\r\n\
To: nobody@example.net\r\n\
Message-ID: <0190-abc@acme.test>\r\n\
Subject: Your order\r\n\
--B--\r\n";

    #[test]
    fn a_dsn_names_the_original_and_the_reason() {
        let msg = MessageParser::default().parse(DSN.as_bytes()).unwrap();
        let b = detect(&msg).expect("a bounce");
        assert_eq!(b.original_id.as_deref(), Some("0190-abc@acme.test"));
        assert_eq!(b.action, Action::Failed);
        assert_eq!(b.status.as_deref(), Some("5.1.1"));
        assert!(b.diagnostic.contains("User unknown"), "{}", b.diagnostic);
        assert_eq!(b.recipient.as_deref(), Some("nobody@example.net"));
    }

    #[test]
    fn a_delay_report_is_not_a_failure() {
        let delayed = DSN
            .replace("Action: failed", "Action: delayed")
            .replace("Status: 5.1.1", "Status: 4.4.1");
        let msg = MessageParser::default().parse(delayed.as_bytes()).unwrap();
        assert_eq!(detect(&msg).unwrap().action, Action::Delayed);
    }

    #[test]
    fn a_non_standard_bounce_is_read_from_its_text() {
        let raw = "From: Mail Delivery System <MAILER-DAEMON@mail.example.org>\r\n\
Subject: Mail delivery failed: returning message to sender\r\n\
Content-Type: text/plain\r\n\
\r\n\
This message was created automatically by mail delivery software.\r\n\
\r\n\
  nobody@example.org\r\n\
    SMTP error from remote mail server after RCPT TO:<nobody@example.org>:\r\n\
    550 5.1.1 No such user here\r\n\
\r\n\
------ This is a copy of the message, including all the headers. ------\r\n\
\r\n\
Message-Id: <orig-77@acme.test>\r\n\
From: support@acme.test\r\n";
        let msg = MessageParser::default().parse(raw.as_bytes()).unwrap();
        let b = detect(&msg).unwrap();
        assert_eq!(b.original_id.as_deref(), Some("orig-77@acme.test"));
        assert_eq!(b.action, Action::Failed);
        assert_eq!(b.status.as_deref(), Some("5.1.1"));
        assert!(b.diagnostic.contains("No such user"));
    }

    #[test]
    fn ordinary_mail_is_not_a_bounce() {
        let raw = "From: a@b.test\r\nSubject: undeliverable? no, a question\r\n\r\nhi\r\n";
        let msg = MessageParser::default().parse(raw.as_bytes()).unwrap();
        assert!(detect(&msg).is_none());
    }

    fn parse_detect(raw: &str) -> Option<Bounce> {
        let msg = MessageParser::default().parse(raw.as_bytes()).unwrap();
        detect(&msg)
    }

    /// The report's recipient block with `action` and `status` (either may be empty).
    fn report_with(action: &str, status: &str) -> String {
        let mut block = String::from("Final-Recipient: rfc822; nobody@example.net\r\n");
        if !action.is_empty() {
            block.push_str(&format!("Action: {action}\r\n"));
        }
        if !status.is_empty() {
            block.push_str(&format!("Status: {status}\r\n"));
        }
        let start = DSN.find("Final-Recipient").unwrap();
        let end = DSN[start..].find("\r\n\r\n").unwrap() + start + 2;
        format!("{}{}{}", &DSN[..start], block, &DSN[end..])
    }

    #[test]
    fn every_action_and_status_maps_onto_its_outcome() {
        for (action, status, want) in [
            ("failed", "2.0.0", Action::Failed),
            ("delayed", "5.0.0", Action::Delayed),
            ("Delivered", "5.0.0", Action::Delivered),
            ("relayed", "", Action::Delivered),
            ("expanded", "", Action::Delivered),
            ("", "2.1.5", Action::Delivered),
            ("", "4.4.7", Action::Delayed),
            ("", "5.1.1", Action::Failed),
            ("bogus", "", Action::Failed),
        ] {
            let got = parse_detect(&report_with(action, status)).unwrap();
            assert_eq!(got.action, want, "Action: {action:?} Status: {status:?}");
        }
    }

    #[test]
    fn the_worst_recipient_block_is_reported() {
        let two = report_with("delivered", "2.0.0").replace(
            "\r\n--B\r\nContent-Type: text/rfc822-headers",
            "\r\nFinal-Recipient: rfc822; other@example.net\r\nAction: delayed\r\n\
             Status: 4.2.2\r\n\r\n--B\r\nContent-Type: text/rfc822-headers",
        );
        let b = parse_detect(&two).unwrap();
        assert_eq!(b.action, Action::Delayed);
        assert_eq!(b.recipient.as_deref(), Some("other@example.net"));
        assert_eq!(
            b.diagnostic, "delivery status 4.2.2",
            "no Diagnostic-Code: the status"
        );
    }

    #[test]
    fn the_status_part_is_found_after_other_message_parts_and_without_a_final_blank_line() {
        // The original first (as message/rfc822), the status part last and unterminated.
        let raw = "From: postmaster@mx.example.net\r\n\
Subject: report\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
\r\n\
--B\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: support@acme.test\r\n\
Message-ID: <orig-9@acme.test>\r\n\
\r\n\
body\r\n\
--B\r\n\
Content-Type: message/global-delivery-status\r\n\
\r\n\
Final-Recipient: rfc822; late@example.net\r\n\
Action: delayed\r\n\
Status: 4.4.1\r\n\
--B--\r\n";
        let b = parse_detect(raw).unwrap();
        assert_eq!(b.original_id.as_deref(), Some("orig-9@acme.test"));
        assert_eq!(b.action, Action::Delayed);
        assert_eq!(b.status.as_deref(), Some("4.4.1"));
        assert_eq!(b.recipient.as_deref(), Some("late@example.net"));
    }

    #[test]
    fn other_multiparts_and_reports_are_not_bounces() {
        let alternative = "From: a@b.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"A\"\r\n\r\n\
--A\r\nContent-Type: text/plain\r\n\r\nhi\r\n--A--\r\n";
        assert!(parse_detect(alternative).is_none());
        let read_receipt = DSN
            .replace("From: MAILER-DAEMON@mx.example.net", "From: a@b.test")
            .replace(
                "Subject: Undelivered Mail Returned to Sender",
                "Subject: Read",
            )
            .replace(
                "report-type=delivery-status",
                "report-type=disposition-notification",
            );
        assert!(parse_detect(&read_receipt).is_none());
        let mixed = DSN
            .replace("From: MAILER-DAEMON@mx.example.net", "From: a@b.test")
            .replace(
                "Subject: Undelivered Mail Returned to Sender",
                "Subject: Files",
            )
            .replace("multipart/report", "multipart/mixed");
        assert!(parse_detect(&mixed).is_none());
        // A daemon's mail that does not read like a bounce, and a bounce-like subject from a
        // person, are ordinary mail.
        let daemon = "From: postmaster@x.test\r\nSubject: Weekly report\r\n\r\nhi\r\n";
        assert!(parse_detect(daemon).is_none());
    }

    #[test]
    fn a_non_standard_temporary_failure_is_a_delay() {
        let raw = "From: MAILER-DAEMON@mx.example.net\r\n\
Subject: Delivery Status Notification (Delay)\r\n\r\n\
Still trying: 451 4.7.1 greylisted, try again later\r\n";
        let b = parse_detect(raw).unwrap();
        assert_eq!(b.action, Action::Delayed);
        assert_eq!(b.status.as_deref(), Some("4.7.1"));
        let no_reason =
            "From: mail-daemon@mx.example.net\r\nSubject: failure notice\r\n\r\nSorry.\r\n";
        let b = parse_detect(no_reason).unwrap();
        assert_eq!(b.action, Action::Failed);
        assert_eq!(b.diagnostic, "bounced (non-standard report)");
        assert_eq!(b.status, None);
    }

    #[test]
    fn status_codes() {
        assert_eq!(
            find_status_code("said 550 5.7.1 blocked").as_deref(),
            Some("5.7.1")
        );
        assert_eq!(find_status_code("version 1.2.3"), None);
        assert_eq!(find_status_code("nothing"), None);
        assert_eq!(find_status_code("code 5..1 or 5.1234.1"), None);
        assert_eq!(find_status_code("4.7.100").as_deref(), Some("4.7.100"));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aéb", 3), "aé");
    }
}
