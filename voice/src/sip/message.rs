//! Parsing a framed message with `rsip` into an [`Inbound`]: the fields every later layer
//! keys on (Call-ID, CSeq, tags, top Via branch and sent-by) read once, typed, and checked.
//! A plain function over bytes, no I/O.
//!
//! A message that fails here is refused with a [`ParseError`] that still carries its raw
//! [`Head`], so that a request can be answered 400 when it can be addressed (Via, Call-ID
//! and CSeq present) and is dropped otherwise; a response that fails is always dropped.

use super::framing::{Head, RawMessage};
use rsip::headers::{ToTypedHeader, UntypedHeader};
use rsip::message::HasHeaders;
use rsip::prelude::HeadersExt;
use std::net::SocketAddr;

/// The magic cookie every RFC 3261 branch starts with.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// Request or response, with what is specific to each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Request {
        method: rsip::Method,
        uri: rsip::Uri,
    },
    Response {
        status: u16,
    },
}

/// The topmost Via of a message: where its transaction is keyed and answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopVia {
    pub branch: String,
    /// `host[:port]` as written by the sender.
    pub sent_by: String,
    /// Whether the sender asked for `rport` (RFC 3581).
    pub rport: bool,
}

/// A parsed, checked SIP message.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub kind: Kind,
    /// The raw head, copied into responses (Via, From, To, Call-ID, CSeq).
    pub head: Head,
    pub body: Vec<u8>,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: rsip::Method,
    pub from_tag: Option<String>,
    pub to_tag: Option<String>,
    pub via: TopVia,
    pub via_count: usize,
    pub max_forwards: Option<u32>,
    /// The parsed message, for what the fields above do not cover (Contact, Record-Route).
    pub sip: rsip::SipMessage,
}

impl Inbound {
    pub fn method(&self) -> Option<&rsip::Method> {
        match &self.kind {
            Kind::Request { method, .. } => Some(method),
            Kind::Response { .. } => None,
        }
    }

    /// The user part of the request URI: the dialled number.
    pub fn request_user(&self) -> Option<&str> {
        match &self.kind {
            Kind::Request { uri, .. } => uri.user(),
            Kind::Response { .. } => None,
        }
    }
}

/// Why a framed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("malformed {part}: {detail}")]
    Syntax { part: &'static str, detail: String },
    #[error("missing {header} header")]
    MissingHeader { header: &'static str },
    #[error("top Via has no branch")]
    MissingBranch,
    #[error("CSeq method {cseq} does not match request method {method}")]
    CSeqMismatch { cseq: String, method: String },
}

/// A refused message and its raw head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub head: Head,
}

impl ParseError {
    /// Whether a 400 can be sent back (a request with Via, Call-ID and CSeq).
    pub fn is_addressable(&self) -> bool {
        self.head.is_addressable()
    }
}

/// A request that parsed but must be refused before any transaction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Max-Forwards reached 0")]
    TooManyHops,
    #[error("more than {limit} Via headers")]
    TooManyVias { limit: usize },
    #[error("request looped back to us")]
    Looped,
}

impl Refusal {
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::TooManyHops | Self::TooManyVias { .. } => (483, "Too Many Hops"),
            // 482 would be the RFC 3261 code; the project's contract names 483 for loops.
            Self::Looped => (483, "Too Many Hops (Loop Detected)"),
        }
    }
}

/// Parses a framed message.
pub fn parse(raw: RawMessage) -> Result<Inbound, ParseError> {
    let RawMessage {
        head,
        normalised,
        body_offset,
    } = raw;
    match read(&normalised) {
        Ok(fields) => Ok(Inbound {
            body: normalised[body_offset..].to_vec(),
            head,
            ..fields
        }),
        Err(kind) => Err(ParseError { kind, head }),
    }
}

fn syntax(part: &'static str) -> impl Fn(rsip::Error) -> ParseErrorKind {
    move |e| ParseErrorKind::Syntax {
        part,
        detail: e.to_string(),
    }
}

fn missing(header: &'static str) -> ParseErrorKind {
    ParseErrorKind::MissingHeader { header }
}

fn read(bytes: &[u8]) -> Result<Inbound, ParseErrorKind> {
    let sip = rsip::SipMessage::try_from(bytes).map_err(syntax("message"))?;
    let kind = match &sip {
        rsip::SipMessage::Request(r) => Kind::Request {
            method: r.method,
            uri: r.uri.clone(),
        },
        rsip::SipMessage::Response(r) => Kind::Response {
            status: r.status_code.code(),
        },
    };
    let via_header = sip.via_header().map_err(|_| missing("Via"))?;
    let via = via_header.typed().map_err(syntax("Via"))?;
    let branch = via
        .branch()
        .map(|b| b.to_string())
        .filter(|b| !b.is_empty())
        .ok_or(ParseErrorKind::MissingBranch)?;
    let rport = via
        .params
        .iter()
        .any(|p| matches!(p, rsip::Param::Other(name, _) if name.to_string().eq_ignore_ascii_case("rport")));
    let call_id = sip
        .call_id_header()
        .map_err(|_| missing("Call-ID"))?
        .value()
        .to_owned();
    if call_id.is_empty() {
        return Err(missing("Call-ID"));
    }
    let cseq = sip
        .cseq_header()
        .map_err(|_| missing("CSeq"))?
        .typed()
        .map_err(syntax("CSeq"))?;
    if let Kind::Request { method, .. } = &kind {
        if cseq.method != *method {
            return Err(ParseErrorKind::CSeqMismatch {
                cseq: cseq.method.to_string(),
                method: method.to_string(),
            });
        }
    }
    let from_tag = sip
        .from_header()
        .map_err(|_| missing("From"))?
        .tag()
        .map_err(syntax("From"))?
        .map(|t| t.to_string());
    let to_tag = sip
        .to_header()
        .map_err(|_| missing("To"))?
        .tag()
        .map_err(syntax("To"))?
        .map(|t| t.to_string());
    let max_forwards = match sip.max_forwards_header() {
        Ok(h) => Some(h.num().map_err(syntax("Max-Forwards"))?),
        Err(_) => None,
    };
    let via_count = sip
        .headers()
        .iter()
        .filter(|h| matches!(h, rsip::Header::Via(_)))
        .count();
    Ok(Inbound {
        kind,
        head: Head::default(),
        body: Vec::new(),
        call_id,
        cseq: cseq.seq,
        cseq_method: cseq.method,
        from_tag,
        to_tag,
        via: TopVia {
            branch,
            sent_by: via.uri.host_with_port.to_string(),
            rport,
        },
        via_count,
        max_forwards,
        sip,
    })
}

/// Checks a parsed request against hop and loop limits. `local` is every address this
/// user agent writes into its own Via headers.
pub fn check_request(
    inbound: &Inbound,
    local: &[SocketAddr],
    max_vias: usize,
) -> Result<(), Refusal> {
    if inbound.max_forwards == Some(0) {
        return Err(Refusal::TooManyHops);
    }
    if inbound.via_count > max_vias {
        return Err(Refusal::TooManyVias { limit: max_vias });
    }
    let looped = inbound.head.all("Via").any(|via| {
        via.split(',').any(|one| {
            let sent_by = one
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default();
            local.iter().any(|addr| sent_by == addr.to_string())
        })
    });
    if looped && inbound.method() != Some(&rsip::Method::Ack) {
        return Err(Refusal::Looped);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::framing::{frame_datagram, FrameLimits};

    fn inbound(text: &str) -> Result<Inbound, ParseError> {
        parse(frame_datagram(text.as_bytes(), &FrameLimits::default()).unwrap())
    }

    const OPTIONS: &str = "OPTIONS sip:100@127.0.0.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-7;rport\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-6\r\n\
        From: <sip:a@127.0.0.1>;tag=abc\r\n\
        To: <sip:100@127.0.0.1>\r\n\
        Call-ID: c1\r\n\
        CSeq: 7 OPTIONS\r\n\
        Max-Forwards: 70\r\n\r\n";

    #[test]
    fn reads_the_keys_of_a_request() {
        let m = inbound(OPTIONS).unwrap();
        assert_eq!(m.method(), Some(&rsip::Method::Options));
        assert_eq!(m.request_user(), Some("100"));
        assert_eq!(m.call_id, "c1");
        assert_eq!((m.cseq, m.cseq_method), (7, rsip::Method::Options));
        assert_eq!(m.from_tag.as_deref(), Some("abc"));
        assert_eq!(m.to_tag, None);
        assert_eq!(m.via.branch, "z9hG4bK-7");
        assert_eq!(m.via.sent_by, "127.0.0.1:5070");
        assert!(m.via.rport);
        assert_eq!(m.via_count, 2);
        assert_eq!(m.max_forwards, Some(70));
    }

    #[test]
    fn missing_call_id_is_refused_and_not_addressable() {
        let err = inbound(&OPTIONS.replace("Call-ID: c1\r\n", "")).unwrap_err();
        assert_eq!(err.kind, missing("Call-ID"));
        assert!(!err.is_addressable());
    }

    #[test]
    fn cseq_method_mismatch_is_an_addressable_400() {
        let err = inbound(&OPTIONS.replace("7 OPTIONS", "7 INVITE")).unwrap_err();
        assert!(matches!(err.kind, ParseErrorKind::CSeqMismatch { .. }));
        assert!(err.is_addressable());
    }

    #[test]
    fn max_forwards_zero_and_own_via_are_refused() {
        let local: SocketAddr = "127.0.0.1:5080".parse().unwrap();
        let m = inbound(OPTIONS).unwrap();
        assert_eq!(check_request(&m, &[local], 70), Err(Refusal::Looped));
        assert_eq!(check_request(&m, &[], 70), Ok(()));
        let elsewhere: SocketAddr = "127.0.0.1:5999".parse().unwrap();
        assert_eq!(check_request(&m, &[elsewhere], 70), Ok(()), "not our Via");
        assert_eq!(check_request(&m, &[], 2), Ok(()), "exactly the Via limit");
        assert_eq!(
            check_request(&m, &[], 1),
            Err(Refusal::TooManyVias { limit: 1 })
        );
        let m = inbound(&OPTIONS.replace("Max-Forwards: 70", "Max-Forwards: 0")).unwrap();
        assert_eq!(check_request(&m, &[], 70), Err(Refusal::TooManyHops));
        assert_eq!(Refusal::TooManyHops.status().0, 483);
    }

    #[test]
    fn garbage_start_line_is_a_syntax_error() {
        let err = inbound(&OPTIONS.replace("OPTIONS sip:", "OPT IONS sip:")).unwrap_err();
        assert!(matches!(err.kind, ParseErrorKind::Syntax { .. }));
    }
}
