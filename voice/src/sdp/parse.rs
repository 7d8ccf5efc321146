//! The SDP text format: parse and serialize, nothing else.
//!
//! Tolerant where phones are sloppy (bare `\n` line ends, trailing blanks, lines SDP does not
//! define), strict where meaning is at stake (a bad `o=`, `c=` or `m=` is an error with its
//! line number). Serialization always writes `\r\n` and the lines in RFC 4566 order.

use std::fmt;
use std::net::IpAddr;

/// The largest SDP body accepted, in bytes (real offers are under 2 KiB).
pub const MAX_SDP_LEN: usize = 16 * 1024;
/// The most `m=` sections accepted.
pub const MAX_MEDIA: usize = 16;

/// Why an SDP body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is longer than [`MAX_SDP_LEN`].
    #[error("SDP body of {len} bytes is over the {max} byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More than [`MAX_MEDIA`] media sections.
    #[error("more than {max} media sections")]
    TooManyMedia {
        /// The limit.
        max: usize,
    },
    /// The first line is not `v=0`.
    #[error("SDP must start with v=0")]
    BadVersion,
    /// A line is not `x=value` with a single lowercase letter.
    #[error("line {line}: not a `type=value` line")]
    BadLine {
        /// 1-based line number.
        line: usize,
    },
    /// A known line whose value does not parse.
    #[error("line {line}: malformed `{kind}=` line")]
    BadField {
        /// 1-based line number.
        line: usize,
        /// The line type letter.
        kind: char,
    },
    /// A mandatory session-level line is absent.
    #[error("missing mandatory `{kind}=` line")]
    Missing {
        /// The line type letter.
        kind: char,
    },
}

/// `o=username sess-id sess-version IN IP4 address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Usually `-` or the product name.
    pub username: String,
    /// Kept as text: phones send numbers larger than `u64` or with leading zeros.
    pub session_id: String,
    /// Must increase when a re-offer changes anything (RFC 3264 §8); kept as text too.
    pub session_version: String,
    /// Address type, `IP4` or `IP6`.
    pub addr_type: String,
    /// The originator's address or host name.
    pub address: String,
}

/// `c=IN IP4 address` (session or media level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `IP4` or `IP6`.
    pub addr_type: String,
    /// The address, without any `/ttl` suffix (kept in `ttl_suffix`).
    pub address: String,
    /// A multicast `/ttl[/count]` suffix, verbatim, when present.
    pub ttl_suffix: Option<String>,
}

impl Connection {
    /// A unicast connection line for an IP address.
    pub fn for_ip(ip: IpAddr) -> Connection {
        Connection {
            addr_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.to_string(),
            address: ip.to_string(),
            ttl_suffix: None,
        }
    }

    /// The address as an IP, when it is one (host names are not resolved here).
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }
}

/// `a=name` or `a=name:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The part before the first `:`.
    pub name: String,
    /// The part after it, if there was a `:`.
    pub value: Option<String>,
}

impl Attribute {
    /// A property attribute (`a=sendrecv`).
    pub fn flag(name: &str) -> Attribute {
        Attribute {
            name: name.to_string(),
            value: None,
        }
    }

    /// A value attribute (`a=ptime:20`).
    pub fn value(name: &str, value: impl Into<String>) -> Attribute {
        Attribute {
            name: name.to_string(),
            value: Some(value.into()),
        }
    }
}

/// One `m=` section and the lines under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, ...
    pub media: String,
    /// The transport port; 0 means the stream is rejected or disabled.
    pub port: u16,
    /// The `/count` after the port, rare.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, ...
    pub proto: String,
    /// Payload types (or other formats) in the offerer's order of preference.
    pub formats: Vec<String>,
    /// A media-level `c=`; overrides the session's.
    pub connection: Option<Connection>,
    /// `b=` lines, verbatim values.
    pub bandwidths: Vec<String>,
    /// `a=` lines in order.
    pub attributes: Vec<Attribute>,
    /// Lines SDP allows here that we do not interpret (`i=`, `k=`), type and value.
    pub other: Vec<(char, String)>,
}

impl MediaDescription {
    /// The first value of attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .and_then(|a| a.value.as_deref())
    }

    /// Whether a property attribute (`a=sendonly`) is present.
    pub fn has_flag(&self, name: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.value.is_none() && a.name.eq_ignore_ascii_case(name))
    }

    /// The `a=rtpmap` encoding of payload type `pt`: `(name, clock rate)`.
    pub fn rtpmap(&self, pt: &str) -> Option<(&str, u32)> {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("rtpmap"))
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (num, enc) = v.split_once(' ')?;
                if num.trim() != pt {
                    return None;
                }
                let mut parts = enc.trim().split('/');
                let name = parts.next()?;
                let rate = parts.next()?.parse().ok()?;
                Some((name, rate))
            })
    }

    /// The `a=fmtp` parameters of payload type `pt`.
    pub fn fmtp(&self, pt: &str) -> Option<&str> {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("fmtp"))
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (num, params) = v.split_once(' ')?;
                (num.trim() == pt).then(|| params.trim())
            })
    }
}

/// A whole SDP body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// The `o=` line.
    pub origin: Origin,
    /// The `s=` line (phones send `-`, a space, or the product name).
    pub session_name: String,
    /// Session-level `c=`; the default for every media section.
    pub connection: Option<Connection>,
    /// Session-level `b=` values.
    pub bandwidths: Vec<String>,
    /// The `t=` lines (start, stop), usually one `0 0`.
    pub timing: Vec<(String, String)>,
    /// Session-level `a=` lines.
    pub attributes: Vec<Attribute>,
    /// Other session-level lines (`i u e p z k r`), type and value, in order.
    pub other: Vec<(char, String)>,
    /// The `m=` sections in order.
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parses an SDP body. Never panics; see [`SdpError`] for what is refused.
    pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
        if text.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLarge {
                len: text.len(),
                max: MAX_SDP_LEN,
            });
        }
        let mut origin = None;
        let mut session_name = None;
        let mut connection = None;
        let mut bandwidths = Vec::new();
        let mut timing = Vec::new();
        let mut attributes = Vec::new();
        let mut other = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();
        let mut seen_version = false;

        for (index, raw) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw).trim_end();
            if line.is_empty() {
                continue;
            }
            let (kind, value) = split_line(line).ok_or(SdpError::BadLine { line: line_no })?;
            if !seen_version {
                if kind != 'v' || value.trim() != "0" {
                    return Err(SdpError::BadVersion);
                }
                seen_version = true;
                continue;
            }
            let bad = SdpError::BadField {
                line: line_no,
                kind,
            };
            if let Some(m) = media.last_mut() {
                match kind {
                    'm' => {}
                    'c' => {
                        m.connection = Some(parse_connection(value).ok_or(bad)?);
                        continue;
                    }
                    'b' => {
                        m.bandwidths.push(value.to_string());
                        continue;
                    }
                    'a' => {
                        m.attributes.push(parse_attribute(value));
                        continue;
                    }
                    _ => {
                        m.other.push((kind, value.to_string()));
                        continue;
                    }
                }
            }
            match kind {
                'v' => return Err(bad),
                'o' => origin = Some(parse_origin(value).ok_or(bad)?),
                's' => session_name = Some(value.to_string()),
                'c' => connection = Some(parse_connection(value).ok_or(bad)?),
                'b' => bandwidths.push(value.to_string()),
                't' => {
                    let mut it = value.split_ascii_whitespace();
                    match (it.next(), it.next(), it.next()) {
                        (Some(a), Some(b), None) => timing.push((a.to_string(), b.to_string())),
                        _ => return Err(bad),
                    }
                }
                'a' => attributes.push(parse_attribute(value)),
                'm' => {
                    if media.len() == MAX_MEDIA {
                        return Err(SdpError::TooManyMedia { max: MAX_MEDIA });
                    }
                    media.push(parse_media(value).ok_or(bad)?);
                }
                _ => other.push((kind, value.to_string())),
            }
        }
        if !seen_version {
            return Err(SdpError::BadVersion);
        }
        Ok(SessionDescription {
            origin: origin.ok_or(SdpError::Missing { kind: 'o' })?,
            // Some phones omit s= although it is mandatory; "-" is what they would have sent.
            session_name: session_name.unwrap_or_else(|| "-".to_string()),
            connection,
            bandwidths,
            timing: if timing.is_empty() {
                vec![("0".to_string(), "0".to_string())]
            } else {
                timing
            },
            attributes,
            other,
            media,
        })
    }

    /// The connection that applies to media section `index`: its own, else the session's.
    pub fn connection_for(&self, index: usize) -> Option<&Connection> {
        self.media
            .get(index)
            .and_then(|m| m.connection.as_ref())
            .or(self.connection.as_ref())
    }

    /// Whether a session-level property attribute is present.
    pub fn has_flag(&self, name: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.value.is_none() && a.name.eq_ignore_ascii_case(name))
    }
}

fn split_line(line: &str) -> Option<(char, &str)> {
    let mut chars = line.chars();
    let kind = chars.next()?;
    if !kind.is_ascii_lowercase() || chars.next()? != '=' {
        return None;
    }
    Some((kind, &line[2..]))
}

fn parse_origin(value: &str) -> Option<Origin> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [username, session_id, session_version, net, addr_type, address] = f.as_slice() else {
        return None;
    };
    if *net != "IN" {
        return None;
    }
    Some(Origin {
        username: username.to_string(),
        session_id: session_id.to_string(),
        session_version: session_version.to_string(),
        addr_type: addr_type.to_string(),
        address: address.to_string(),
    })
}

fn parse_connection(value: &str) -> Option<Connection> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [net, addr_type, address] = f.as_slice() else {
        return None;
    };
    if *net != "IN" {
        return None;
    }
    let (address, ttl_suffix) = match address.split_once('/') {
        Some((a, rest)) => (a, Some(rest.to_string())),
        None => (*address, None),
    };
    if address.is_empty() {
        return None;
    }
    Some(Connection {
        addr_type: addr_type.to_string(),
        address: address.to_string(),
        ttl_suffix,
    })
}

fn parse_attribute(value: &str) -> Attribute {
    match value.split_once(':') {
        Some((name, v)) => Attribute {
            name: name.to_string(),
            value: Some(v.to_string()),
        },
        None => Attribute {
            name: value.to_string(),
            value: None,
        },
    }
}

fn parse_media(value: &str) -> Option<MediaDescription> {
    let mut it = value.split_ascii_whitespace();
    let media = it.next()?.to_string();
    let port_field = it.next()?;
    let (port, port_count) = match port_field.split_once('/') {
        Some((p, n)) => (p.parse().ok()?, Some(n.parse().ok()?)),
        None => (port_field.parse().ok()?, None),
    };
    let proto = it.next()?.to_string();
    let formats: Vec<String> = it.map(str::to_string).collect();
    if formats.is_empty() {
        return None;
    }
    Some(MediaDescription {
        media,
        port,
        port_count,
        proto,
        formats,
        connection: None,
        bandwidths: Vec::new(),
        attributes: Vec::new(),
        other: Vec::new(),
    })
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IN {} {}", self.addr_type, self.address)?;
        if let Some(s) = &self.ttl_suffix {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "a={}:{}\r\n", self.name, v),
            None => write!(f, "a={}\r\n", self.name),
        }
    }
}

/// The RFC 4566 order of the optional session lines between `s=` and `c=`, and after `t=`.
const BEFORE_C: [char; 4] = ['i', 'u', 'e', 'p'];

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(
            f,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\n",
            o.username, o.session_id, o.session_version, o.addr_type, o.address, self.session_name
        )?;
        for (k, v) in self.other.iter().filter(|(k, _)| BEFORE_C.contains(k)) {
            write!(f, "{k}={v}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for b in &self.bandwidths {
            write!(f, "b={b}\r\n")?;
        }
        for (start, stop) in &self.timing {
            write!(f, "t={start} {stop}\r\n")?;
        }
        for (k, v) in self.other.iter().filter(|(k, _)| !BEFORE_C.contains(k)) {
            write!(f, "{k}={v}\r\n")?;
        }
        for a in &self.attributes {
            write!(f, "{a}")?;
        }
        for m in &self.media {
            write!(f, "m={} {}", m.media, m.port)?;
            if let Some(n) = m.port_count {
                write!(f, "/{n}")?;
            }
            write!(f, " {}", m.proto)?;
            for fmt in &m.formats {
                write!(f, " {fmt}")?;
            }
            f.write_str("\r\n")?;
            for (k, v) in &m.other {
                write!(f, "{k}={v}\r\n")?;
            }
            if let Some(c) = &m.connection {
                write!(f, "c={c}\r\n")?;
            }
            for b in &m.bandwidths {
                write!(f, "b={b}\r\n")?;
            }
            for a in &m.attributes {
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}
