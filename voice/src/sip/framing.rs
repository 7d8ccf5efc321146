//! Framing: finds where one SIP message ends, in a datagram or in a byte stream, and
//! normalises its head so that `rsip` can parse it. A plain function over bytes, no I/O.
//!
//! For a stream (TCP) the message ends `Content-Length` bytes after the blank line; until
//! those bytes are there the answer is [`Framed::NeedsMoreData`], so a reader can hand in
//! whatever it has read so far and try again after the next read. For a datagram (UDP) the
//! datagram is the message; a `Content-Length` larger than what is left is an error, a
//! smaller one cuts the body (RFC 3261 §18.3).
//!
//! Normalising means: folded header lines (a line starting with space or tab) are joined to
//! the header above, compact names (`v`, `i`, `f`, `t`, `m`, `l`, `c`, `k`, `s`, `e`) become
//! the full names, and `Name : value` becomes `Name: value`. rsip handles none of these.
//!
//! Limits are checked here, before anything bigger is allocated: a head larger than
//! [`FrameLimits::max_message_bytes`] is refused as soon as that many bytes arrived without
//! a blank line, and so is a declared `Content-Length` that would pass the limit.

/// Limits on one message, checked while framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Head plus body, in bytes.
    pub max_message_bytes: usize,
    /// Header lines after unfolding.
    pub max_headers: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// One header of a framed message, its name in full canonical form when it is one of the
/// names this layer reads, as received otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeader {
    pub name: String,
    pub value: String,
}

/// The start line and headers of a message, enough to address a response to it even when
/// the rest does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    pub start_line: String,
    pub headers: Vec<RawHeader>,
}

impl Head {
    /// The first header with this name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every header with this name, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Whether the start line is a request's (a response's starts with `SIP/2.0`).
    pub fn is_request(&self) -> bool {
        !self.start_line.starts_with("SIP/")
    }

    /// Whether a response can be addressed to this message: a request with Via, Call-ID
    /// and CSeq (RFC 3261 §8.2.6 copies them, with From and To, into the response).
    pub fn is_addressable(&self) -> bool {
        self.is_request()
            && self.get("Via").is_some_and(|v| !v.is_empty())
            && self.get("Call-ID").is_some_and(|v| !v.is_empty())
            && self.get("CSeq").is_some_and(|v| !v.is_empty())
    }
}

/// One framed message: its head, the normalised bytes rsip parses, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub head: Head,
    /// Start line, normalised headers, blank line and body.
    pub normalised: Vec<u8>,
    /// Where the body starts in `normalised`.
    pub body_offset: usize,
}

impl RawMessage {
    pub fn body(&self) -> &[u8] {
        &self.normalised[self.body_offset..]
    }
}

/// What [`frame_stream`] found at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// Not a whole message yet: read more and call again with everything so far.
    NeedsMoreData,
    /// Keep-alive CRLFs (RFC 5626 §4.4.1); consume this many bytes.
    KeepAlive(usize),
    /// A whole message, which used this many bytes of the buffer.
    Message(Box<RawMessage>, usize),
}

/// Why a message could not be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameErrorKind {
    #[error("message larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("more than {limit} header lines")]
    TooManyHeaders { limit: usize },
    #[error("head is not UTF-8")]
    NotUtf8,
    #[error("empty start line")]
    EmptyStartLine,
    #[error("header line {line} has no colon")]
    HeaderWithoutColon { line: usize },
    #[error("Content-Length is not a number")]
    BadContentLength,
    #[error("Content-Length given twice with different values")]
    ConflictingContentLength,
    #[error("Content-Length missing on a stream transport")]
    MissingContentLength,
    #[error("Content-Length {declared} exceeds the {available} body bytes received")]
    BodyShorterThanDeclared { declared: usize, available: usize },
}

impl FrameErrorKind {
    /// The status a request framed this badly deserves, when it can be addressed.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } | Self::TooManyHeaders { .. } => 513,
            _ => 400,
        }
    }
}

/// A framing failure, with the head when it got that far (to address a 400 or 513).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct FrameError {
    pub kind: FrameErrorKind,
    pub head: Option<Head>,
}

impl FrameError {
    fn bare(kind: FrameErrorKind) -> Self {
        Self { kind, head: None }
    }
}

/// Frames the message at the start of a stream buffer.
pub fn frame_stream(buf: &[u8], limits: &FrameLimits) -> Result<Framed, FrameError> {
    let crlfs = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if crlfs > 0 {
        return Ok(Framed::KeepAlive(crlfs));
    }
    let Some(head_end) = find_blank_line(buf, limits.max_message_bytes) else {
        if buf.len() >= limits.max_message_bytes {
            return Err(FrameError::bare(FrameErrorKind::TooLarge {
                limit: limits.max_message_bytes,
            }));
        }
        return Ok(Framed::NeedsMoreData);
    };
    let head = parse_head(&buf[..head_end], limits)?;
    let declared = match content_length(&head) {
        Ok(Some(n)) => n,
        Ok(None) => return Err(with_head(FrameErrorKind::MissingContentLength, head)),
        Err(kind) => return Err(with_head(kind, head)),
    };
    let body_start = head_end + 4;
    let total = body_start.saturating_add(declared);
    if total > limits.max_message_bytes {
        return Err(with_head(
            FrameErrorKind::TooLarge {
                limit: limits.max_message_bytes,
            },
            head,
        ));
    }
    if buf.len() < total {
        return Ok(Framed::NeedsMoreData);
    }
    let message = assemble(head, &buf[body_start..total]);
    Ok(Framed::Message(Box::new(message), total))
}

/// Frames one datagram, which must hold exactly one message (trailing bytes past
/// `Content-Length` are dropped).
pub fn frame_datagram(buf: &[u8], limits: &FrameLimits) -> Result<RawMessage, FrameError> {
    if buf.len() > limits.max_message_bytes {
        // Still try to read the head so that a 513 can be addressed.
        let head =
            find_blank_line(buf, buf.len()).and_then(|end| parse_head(&buf[..end], limits).ok());
        return Err(FrameError {
            kind: FrameErrorKind::TooLarge {
                limit: limits.max_message_bytes,
            },
            head,
        });
    }
    let start = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let buf = &buf[start..];
    let (head_bytes, body) = match find_blank_line(buf, buf.len()) {
        Some(end) => (&buf[..end], &buf[end + 4..]),
        // A datagram without the blank line: the whole of it is the head.
        None => (trim_trailing_crlf(buf), &buf[buf.len()..]),
    };
    let head = parse_head(head_bytes, limits)?;
    let body = match content_length(&head) {
        Ok(Some(declared)) if declared > body.len() => {
            return Err(with_head(
                FrameErrorKind::BodyShorterThanDeclared {
                    declared,
                    available: body.len(),
                },
                head,
            ))
        }
        Ok(Some(declared)) => &body[..declared],
        Ok(None) => body,
        Err(kind) => return Err(with_head(kind, head)),
    };
    Ok(assemble(head, body))
}

fn with_head(kind: FrameErrorKind, head: Head) -> FrameError {
    FrameError {
        kind,
        head: Some(head),
    }
}

fn trim_trailing_crlf(mut buf: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = buf {
        buf = rest;
    }
    buf
}

/// Offset of the `\r\n\r\n` that ends the head, searched within the first `within` bytes.
fn find_blank_line(buf: &[u8], within: usize) -> Option<usize> {
    let window = &buf[..buf.len().min(within.saturating_add(4))];
    window.windows(4).position(|w| w == b"\r\n\r\n")
}

fn parse_head(bytes: &[u8], limits: &FrameLimits) -> Result<Head, FrameError> {
    let text = std::str::from_utf8(bytes).map_err(|_| FrameError::bare(FrameErrorKind::NotUtf8))?;
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or_default().trim().to_owned();
    if start_line.is_empty() {
        return Err(FrameError::bare(FrameErrorKind::EmptyStartLine));
    }
    let mut head = Head {
        start_line,
        headers: Vec::new(),
    };
    let mut bad_line = None;
    for (index, line) in lines.enumerate() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = head.headers.last_mut() {
                last.value.push(' ');
                last.value.push_str(line.trim());
                continue;
            }
        }
        let Some((name, value)) = line.split_once(':') else {
            bad_line.get_or_insert(index + 2);
            continue;
        };
        if head.headers.len() == limits.max_headers {
            return Err(with_head(
                FrameErrorKind::TooManyHeaders {
                    limit: limits.max_headers,
                },
                head,
            ));
        }
        head.headers.push(RawHeader {
            name: canonical_name(name.trim()),
            value: value.trim().to_owned(),
        });
    }
    match bad_line {
        // Reported after the loop so that the head is complete enough to address a 400.
        Some(line) => Err(with_head(FrameErrorKind::HeaderWithoutColon { line }, head)),
        None => Ok(head),
    }
}

fn content_length(head: &Head) -> Result<Option<usize>, FrameErrorKind> {
    let mut found = None;
    for value in head.all("Content-Length") {
        let n: usize = value
            .parse()
            .map_err(|_| FrameErrorKind::BadContentLength)?;
        if found.is_some_and(|f| f != n) {
            return Err(FrameErrorKind::ConflictingContentLength);
        }
        found = Some(n);
    }
    Ok(found)
}

fn assemble(head: Head, body: &[u8]) -> RawMessage {
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(head.start_line.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in &head.headers {
        if h.name.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    let body_offset = out.len();
    out.extend_from_slice(body);
    RawMessage {
        head,
        normalised: out,
        body_offset,
    }
}

/// The full name of a compact or differently-cased header this layer reads.
fn canonical_name(name: &str) -> String {
    const NAMES: [(&str, &str); 17] = [
        ("v", "Via"),
        ("i", "Call-ID"),
        ("f", "From"),
        ("t", "To"),
        ("m", "Contact"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("k", "Supported"),
        ("s", "Subject"),
        ("e", "Content-Encoding"),
        ("via", "Via"),
        ("call-id", "Call-ID"),
        ("from", "From"),
        ("to", "To"),
        ("cseq", "CSeq"),
        ("content-length", "Content-Length"),
        ("max-forwards", "Max-Forwards"),
    ];
    NAMES
        .iter()
        .find(|(short, _)| short.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_owned(), |(_, full)| (*full).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:100@127.0.0.1 SIP/2.0\r\n\
        v: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
        f: <sip:a@127.0.0.1>;tag=1\r\n\
        t: <sip:100@127.0.0.1>\r\n\
        i: call-1@127.0.0.1\r\n\
        CSeq: 1 INVITE\r\n\
        Subject: folded\r\n  across lines\r\n\
        Content-Type: application/sdp\r\n\
        l: 5\r\n\r\nv=0\r\n";

    fn limits() -> FrameLimits {
        FrameLimits::default()
    }

    #[test]
    fn stream_frames_a_whole_message_and_normalises_its_head() {
        let Framed::Message(m, used) = frame_stream(INVITE.as_bytes(), &limits()).unwrap() else {
            panic!("not framed")
        };
        assert_eq!(used, INVITE.len());
        assert_eq!(m.body(), b"v=0\r\n");
        assert_eq!(m.head.get("call-id"), Some("call-1@127.0.0.1"));
        assert_eq!(m.head.get("Subject"), Some("folded across lines"));
        let text = String::from_utf8(m.normalised.clone()).unwrap();
        assert!(text.contains("\r\nVia: SIP/2.0/TCP"), "{text}");
        assert!(text.contains("\r\nContent-Length: 5\r\n\r\nv=0"), "{text}");
    }

    #[test]
    fn a_response_is_not_a_request_and_cannot_be_answered() {
        let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
                  Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let m = frame_datagram(ok.as_bytes(), &limits()).unwrap();
        assert!(!m.head.is_request());
        assert!(!m.head.is_addressable());
        let Framed::Message(req, _) = frame_stream(INVITE.as_bytes(), &limits()).unwrap() else {
            panic!("not framed")
        };
        assert!(req.head.is_request() && req.head.is_addressable());
    }

    #[test]
    fn stream_split_at_every_offset_parses_the_same() {
        let two = format!("{INVITE}\r\n\r\n{INVITE}");
        let bytes = two.as_bytes();
        let whole = collect(&[bytes]);
        assert_eq!(whole.len(), 2);
        for cut in 0..=bytes.len() {
            let parts = collect(&[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(parts, whole, "split at {cut}");
        }
        // And byte by byte.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(collect(&singles), whole);
    }

    /// Feeds chunks as a reader would and returns the messages framed.
    fn collect(chunks: &[&[u8]]) -> Vec<RawMessage> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match frame_stream(&buf, &limits()).unwrap() {
                    Framed::NeedsMoreData => break,
                    Framed::KeepAlive(n) => {
                        buf.drain(..n);
                    }
                    Framed::Message(m, n) => {
                        out.push(*m);
                        buf.drain(..n);
                    }
                }
            }
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn stream_without_content_length_is_refused_with_its_head() {
        let msg = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n";
        let err = frame_stream(msg.as_bytes(), &limits()).unwrap_err();
        assert_eq!(err.kind, FrameErrorKind::MissingContentLength);
        assert_eq!(err.kind.status(), 400);
        assert!(err.head.is_some());
    }

    #[test]
    fn stream_head_without_end_past_the_limit_is_too_large() {
        let small = FrameLimits {
            max_message_bytes: 64,
            max_headers: 8,
        };
        let junk = vec![b'a'; 63];
        assert_eq!(frame_stream(&junk, &small), Ok(Framed::NeedsMoreData));
        let junk = vec![b'a'; 64];
        let err = frame_stream(&junk, &small).unwrap_err();
        assert_eq!(err.kind, FrameErrorKind::TooLarge { limit: 64 });
        assert_eq!(err.kind.status(), 513);
    }

    #[test]
    fn a_message_of_exactly_the_limit_is_framed() {
        let msg = "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nhello";
        let at = |max: usize| FrameLimits {
            max_message_bytes: max,
            max_headers: 8,
        };
        let framed = frame_stream(msg.as_bytes(), &at(msg.len())).unwrap();
        assert!(matches!(framed, Framed::Message(_, n) if n == msg.len()));
        let err = frame_stream(msg.as_bytes(), &at(msg.len() - 1)).unwrap_err();
        assert_eq!(
            err.kind,
            FrameErrorKind::TooLarge {
                limit: msg.len() - 1
            }
        );
        // Datagrams alike; the refusal keeps the head so the 513 can be addressed.
        assert_eq!(
            frame_datagram(msg.as_bytes(), &at(msg.len()))
                .unwrap()
                .body(),
            b"hello"
        );
        let err = frame_datagram(msg.as_bytes(), &at(msg.len() - 1)).unwrap_err();
        assert!(matches!(err.kind, FrameErrorKind::TooLarge { .. }));
        assert!(err.head.is_some());
        // Leading blank lines (keep-alives) before a datagram's message are skipped.
        let padded = format!("\r\n\r\n{msg}");
        assert_eq!(
            frame_datagram(padded.as_bytes(), &limits()).unwrap().body(),
            b"hello"
        );
        let padded = format!("\n{msg}");
        assert_eq!(
            frame_datagram(padded.as_bytes(), &limits()).unwrap().body(),
            b"hello"
        );
        // A datagram that ends after its headers without the blank line is all head.
        let bare = "OPTIONS sip:a@b SIP/2.0\r\nCall-ID: c9\r\nCSeq: 1 OPTIONS\r\n";
        let m = frame_datagram(bare.as_bytes(), &limits()).unwrap();
        assert_eq!(m.head.get("CSeq"), Some("1 OPTIONS"));
        assert!(m.body().is_empty());
    }

    #[test]
    fn a_header_without_colon_is_named_by_its_line_and_the_head_is_kept() {
        for (at, line) in [(0, 2), (1, 3)] {
            let mut lines = vec!["Call-ID: c1", "CSeq: 1 OPTIONS", "Via: SIP/2.0/UDP h"];
            lines.insert(at, "no colon here");
            let msg = format!("OPTIONS sip:a@b SIP/2.0\r\n{}\r\n\r\n", lines.join("\r\n"));
            let err = frame_datagram(msg.as_bytes(), &limits()).unwrap_err();
            assert_eq!(err.kind, FrameErrorKind::HeaderWithoutColon { line });
            assert_eq!(err.head.unwrap().get("CSeq"), Some("1 OPTIONS"));
        }
    }

    #[test]
    fn declared_body_past_the_limit_is_refused_before_it_arrives() {
        let msg = "INVITE sip:a@b SIP/2.0\r\nContent-Length: 999999999\r\n\r\n";
        let err = frame_stream(msg.as_bytes(), &limits()).unwrap_err();
        assert!(matches!(err.kind, FrameErrorKind::TooLarge { .. }));
    }

    #[test]
    fn datagram_body_shorter_than_declared_is_an_error_longer_is_cut() {
        let short = INVITE.replace("l: 5", "l: 50");
        let err = frame_datagram(short.as_bytes(), &limits()).unwrap_err();
        assert!(matches!(
            err.kind,
            FrameErrorKind::BodyShorterThanDeclared { declared: 50, .. }
        ));
        let long = format!("{INVITE}trailing");
        assert_eq!(
            frame_datagram(long.as_bytes(), &limits()).unwrap().body(),
            b"v=0\r\n"
        );
    }

    #[test]
    fn bad_and_conflicting_content_length() {
        let bad = INVITE.replace("l: 5", "l: five");
        assert_eq!(
            frame_datagram(bad.as_bytes(), &limits()).unwrap_err().kind,
            FrameErrorKind::BadContentLength
        );
        let twice = INVITE.replace("l: 5", "l: 5\r\nContent-Length: 6");
        assert_eq!(
            frame_datagram(twice.as_bytes(), &limits())
                .unwrap_err()
                .kind,
            FrameErrorKind::ConflictingContentLength
        );
    }

    #[test]
    fn too_many_headers_keeps_the_head_read_so_far() {
        let mut msg = String::from(INVITE.split("Subject").next().unwrap());
        for i in 0..100 {
            msg.push_str(&format!("X-H{i}: x\r\n"));
        }
        msg.push_str("\r\n");
        let err = frame_datagram(msg.as_bytes(), &limits()).unwrap_err();
        assert_eq!(err.kind, FrameErrorKind::TooManyHeaders { limit: 64 });
        assert!(err.head.unwrap().is_addressable());
    }

    #[test]
    fn garbage_never_panics() {
        let inputs: [&[u8]; 6] = [
            b"",
            b"\r\n",
            b"\xff\xfe\r\n\r\n",
            b"no colon here\r\nat all\r\n\r\n",
            b":\r\n\r\n",
            b"\r\n\r\n\r\nX",
        ];
        for input in inputs {
            let _ = frame_datagram(input, &limits());
            let _ = frame_stream(input, &limits());
        }
    }
}
