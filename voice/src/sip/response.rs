//! Writing messages: responses built from a request's raw head (RFC 3261 §8.2.6: Via, From,
//! To, Call-ID and CSeq copied, a To tag added), and in-dialog requests this user agent
//! sends (BYE). Plain functions producing bytes, no I/O.

use super::framing::Head;
use std::fmt::Write as _;
use std::net::SocketAddr;

/// What goes into a response besides the copied headers.
#[derive(Debug, Clone, Default)]
pub struct ResponseParts<'a> {
    pub status: u16,
    pub reason: &'a str,
    /// Added to To when it has no tag yet (every response but 100 inside a dialog-creating
    /// transaction carries it).
    pub to_tag: Option<&'a str>,
    pub headers: Vec<(&'a str, String)>,
    /// Content-Type and body.
    pub body: Option<(&'a str, &'a [u8])>,
}

impl<'a> ResponseParts<'a> {
    pub fn new(status: u16, reason: &'a str) -> Self {
        Self {
            status,
            reason,
            ..Self::default()
        }
    }

    pub fn to_tag(mut self, tag: &'a str) -> Self {
        self.to_tag = Some(tag);
        self
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, content_type: &'a str, body: &'a [u8]) -> Self {
        self.body = Some((content_type, body));
        self
    }
}

/// Builds a response to the request whose head is given, received from `source`.
///
/// The top Via gets `received` and, when the sender asked for it, the `rport` value
/// (RFC 3581), so that the response and the sender agree on where it was sent.
pub fn build_response(head: &Head, source: SocketAddr, parts: &ResponseParts<'_>) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    let reason: String = parts
        .reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let _ = write!(out, "SIP/2.0 {} {}\r\n", parts.status, reason);
    let mut first_via = true;
    for via in head.all("Via") {
        for one in via.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            if first_via {
                let _ = write!(out, "Via: {}\r\n", stamp_via(one, source));
                first_via = false;
            } else {
                let _ = write!(out, "Via: {one}\r\n");
            }
        }
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        let Some(value) = head.get(name) else {
            continue;
        };
        if name == "To" {
            match parts.to_tag {
                Some(tag) if !has_tag(value) => {
                    let _ = write!(out, "To: {value};tag={tag}\r\n");
                }
                _ => {
                    let _ = write!(out, "To: {value}\r\n");
                }
            }
        } else {
            let _ = write!(out, "{name}: {value}\r\n");
        }
    }
    for (name, value) in &parts.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    finish(out, parts.body)
}

/// Appends Content-Type (if any), Content-Length, the blank line and the body.
fn finish(mut out: String, body: Option<(&str, &[u8])>) -> Vec<u8> {
    let body = match body {
        Some((content_type, bytes)) => {
            let _ = write!(out, "Content-Type: {content_type}\r\n");
            bytes
        }
        None => &[],
    };
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Whether a From/To value already has a tag parameter (outside the angle brackets).
pub fn has_tag(value: &str) -> bool {
    let params = value.rsplit_once('>').map_or(value, |(_, after)| after);
    params
        .split(';')
        .skip(1)
        .any(|p| p.trim().to_ascii_lowercase().starts_with("tag="))
}

fn stamp_via(via: &str, source: SocketAddr) -> String {
    let mut params: Vec<String> = via.split(';').map(str::to_owned).collect();
    let mut rport_asked = false;
    params.retain(|p| {
        let name = p.trim().to_ascii_lowercase();
        if name == "rport" {
            rport_asked = true;
            return false;
        }
        !name.starts_with("received=")
    });
    params.push(format!("received={}", source.ip()));
    if rport_asked {
        params.push(format!("rport={}", source.port()));
    }
    params.join(";")
}

/// An in-dialog request this user agent sends.
#[derive(Debug, Clone)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// `UDP` or `TCP`.
    pub transport: &'a str,
    pub sent_by: SocketAddr,
    pub branch: &'a str,
    /// The local party, with our tag.
    pub from: &'a str,
    /// The remote party, with its tag.
    pub to: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
    pub routes: &'a [String],
    pub headers: Vec<(&'a str, String)>,
    pub body: Option<(&'a str, &'a [u8])>,
}

/// Builds a request from its parts.
pub fn build_request(parts: &RequestParts<'_>) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    let _ = write!(
        out,
        "{} {} SIP/2.0\r\nVia: SIP/2.0/{} {};branch={};rport\r\nMax-Forwards: 70\r\n\
         From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {}\r\n",
        parts.method,
        parts.target,
        parts.transport,
        parts.sent_by,
        parts.branch,
        parts.from,
        parts.to,
        parts.call_id,
        parts.cseq,
        parts.method
    );
    for route in parts.routes {
        let _ = write!(out, "Route: {route}\r\n");
    }
    for (name, value) in &parts.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    finish(out, parts.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::framing::{frame_datagram, FrameLimits};
    use crate::sip::message::parse;

    const INVITE: &str = "INVITE sip:100@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bK-1;rport, SIP/2.0/UDP p1;branch=z9hG4bK-0\r\n\
        From: \"A\" <sip:a@127.0.0.1>;tag=1\r\n\
        To: <sip:100@127.0.0.1>\r\n\
        Call-ID: c9\r\n\
        CSeq: 1 INVITE\r\n\r\n";

    #[test]
    fn response_copies_the_dialog_headers_stamps_via_and_parses_back() {
        let m = frame_datagram(INVITE.as_bytes(), &FrameLimits::default()).unwrap();
        let source: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let parts = ResponseParts::new(200, "OK\r\nX: injected")
            .to_tag("t1")
            .header("Contact", "<sip:127.0.0.1:5060>")
            .body("application/sdp", b"v=0\r\n");
        let bytes = build_response(&m.head, source, &parts);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with("SIP/2.0 200 OK  X: injected\r\n"),
            "{text}"
        );
        assert!(text.contains(
            "Via: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bK-1;received=127.0.0.1;rport=40000\r\n"
        ));
        assert!(text.contains("Via: SIP/2.0/UDP p1;branch=z9hG4bK-0\r\n"));
        assert!(text.contains("To: <sip:100@127.0.0.1>;tag=t1\r\n"));
        let back = parse(frame_datagram(&bytes, &FrameLimits::default()).unwrap()).unwrap();
        assert_eq!(back.to_tag.as_deref(), Some("t1"));
        assert_eq!(back.body, b"v=0\r\n");
    }

    #[test]
    fn a_to_that_already_has_a_tag_keeps_it() {
        let tagged = INVITE.replace("To: <sip:100@127.0.0.1>", "To: <sip:100@127.0.0.1>;tag=old");
        let m = frame_datagram(tagged.as_bytes(), &FrameLimits::default()).unwrap();
        let source: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let parts = ResponseParts::new(200, "OK").to_tag("new");
        let text = String::from_utf8(build_response(&m.head, source, &parts)).unwrap();
        assert!(
            text.contains("To: <sip:100@127.0.0.1>;tag=old\r\n"),
            "{text}"
        );
        assert!(!text.contains("tag=new"), "{text}");
    }

    #[test]
    fn tag_inside_the_uri_is_not_a_tag() {
        assert!(!has_tag("<sip:a@b;tag=x>"));
        assert!(has_tag("<sip:a@b>;tag=x"));
        assert!(has_tag("sip:a@b;tag=x"));
    }

    #[test]
    fn request_parses_back_with_its_routes() {
        let routes = vec!["<sip:p1;lr>".to_owned(), "<sip:p2;lr>".to_owned()];
        let bytes = build_request(&RequestParts {
            method: "BYE",
            target: "sip:a@127.0.0.1:5070",
            transport: "UDP",
            sent_by: "127.0.0.1:5060".parse().unwrap(),
            branch: "z9hG4bK-b1",
            from: "<sip:100@127.0.0.1>;tag=t1",
            to: "<sip:a@127.0.0.1>;tag=1",
            call_id: "c9",
            cseq: 1,
            routes: &routes,
            headers: vec![],
            body: None,
        });
        let back = parse(frame_datagram(&bytes, &FrameLimits::default()).unwrap()).unwrap();
        assert_eq!(back.method(), Some(&rsip::Method::Bye));
        assert_eq!(back.via.branch, "z9hG4bK-b1");
        assert_eq!(back.head.all("Route").count(), 2);
    }
}
