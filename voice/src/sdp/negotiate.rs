//! Offer/answer (RFC 3264) for one G.711 audio stream plus telephone-event (RFC 4733).
//!
//! Rules we apply, in order:
//! - the first `m=audio` section with a non-zero port and an RTP/AVP profile is ours; every
//!   other section is answered with port 0 (RFC 3264 §6: same number of sections, in order);
//! - the codec is the first payload type of that section, in the offer's order, that is PCMU
//!   or PCMA (by `a=rtpmap`, or by static type 0/8 without one) and that we list locally;
//! - telephone-event is answered with the payload type the offer used (usually 101);
//! - our direction mirrors theirs: `sendonly` → `recvonly`, `recvonly` → `sendonly`,
//!   `inactive` → `inactive`, else `sendrecv`. A `c=0.0.0.0` (RFC 2543 hold) counts as
//!   `sendonly` from the remote side: they do not want our audio;
//! - we always send and ask for 20 ms packets (`a=ptime:20`); the remote's ptime is reported.
//!
//! No common codec is [`NegotiationError::NoCommonCodec`]; the SIP layer answers 488.

use super::parse::{Attribute, Connection, MediaDescription, Origin, SessionDescription};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The audio codecs we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The RFC 3551 static payload type.
    pub fn static_pt(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The G.711 law that encodes this codec's payload.
    pub fn law(self) -> audio::G711Law {
        match self {
            Codec::Pcmu => audio::G711Law::Ulaw,
            Codec::Pcma => audio::G711Law::Alaw,
        }
    }

    /// The encoding name as it appears in `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    fn from_name(name: &str) -> Option<Codec> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }
}

/// Media direction attribute (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Both ways (the default when no attribute is present).
    SendRecv,
    /// The side that wrote it only sends (a phone putting us on hold).
    SendOnly,
    /// The side that wrote it only receives.
    RecvOnly,
    /// No media either way.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// What an answerer says to an offer with this direction.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// Whether the side holding this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side holding this direction receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn of(media: &MediaDescription, session: &SessionDescription) -> Direction {
        for d in [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ] {
            if media.has_flag(d.as_str()) {
                return d;
            }
        }
        for d in [
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ] {
            if session.has_flag(d.as_str()) {
                return d;
            }
        }
        Direction::SendRecv
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Our side of the media: where we receive and what we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// The address we advertise in `c=` and `o=` (the media socket's public address).
    pub address: IpAddr,
    /// The RTP port of our [`crate::media::MediaSession`].
    pub rtp_port: u16,
    /// The codecs we accept, in our order of preference (used for offers).
    pub codecs: Vec<Codec>,
    /// The payload type we offer for telephone-event (101 by convention).
    pub telephone_event_pt: u8,
    /// `o=` session id, fixed for the dialog.
    pub session_id: u64,
    /// `o=` version: the caller increments it for each new offer or changed answer.
    pub session_version: u64,
}

impl LocalMedia {
    /// PCMU then PCMA, telephone-event 101, session id and version from the caller.
    pub fn new(address: IpAddr, rtp_port: u16, session_id: u64) -> LocalMedia {
        LocalMedia {
            address,
            rtp_port,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event_pt: 101,
            session_id,
            session_version: 1,
        }
    }
}

/// What both sides agreed on; everything a media session needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The audio codec.
    pub codec: Codec,
    /// Its payload type in this session (the static one unless the offer mapped it).
    pub payload_type: u8,
    /// The telephone-event payload type, when both sides support it.
    pub telephone_event: Option<u8>,
    /// Where to send RTP; `None` when the remote gave port 0 or address 0.0.0.0 (on hold).
    pub remote_rtp: Option<SocketAddr>,
    /// The remote's own direction attribute (as written by them).
    pub remote_direction: Direction,
    /// Our direction (as written in our SDP).
    pub direction: Direction,
    /// The packetization we send, in milliseconds (always 20).
    pub ptime_ms: u32,
    /// The remote's `a=ptime`, if it gave one.
    pub remote_ptime_ms: Option<u32>,
}

/// Why an offer or answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// No active RTP/AVP audio section at all.
    #[error("the SDP has no active RTP audio stream")]
    NoAudio,
    /// An audio section, but none of its formats is PCMU or PCMA among ours.
    #[error("no common codec; offered payload types: {offered:?}")]
    NoCommonCodec {
        /// The formats the offer listed.
        offered: Vec<String>,
    },
    /// No `c=` line applies to the audio section.
    #[error("the audio stream has no connection address")]
    NoConnection,
    /// The connection is a host name or an address type we do not handle.
    #[error("connection address `{address}` is not an IP address")]
    BadAddress {
        /// What the SDP said.
        address: String,
    },
}

impl NegotiationError {
    /// The SIP status the signalling layer should answer with.
    pub fn sip_status(&self) -> u16 {
        match self {
            NegotiationError::NoCommonCodec { .. } | NegotiationError::NoAudio => 488,
            NegotiationError::NoConnection | NegotiationError::BadAddress { .. } => 400,
        }
    }
}

const PTIME_MS: u32 = 20;

fn is_rtp_avp(proto: &str) -> bool {
    // RTP/AVP and RTP/AVPF (which some phones offer for plain audio) carry the same payloads.
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

fn codec_of(m: &MediaDescription, pt: &str) -> Option<Codec> {
    match m.rtpmap(pt) {
        Some((name, 8000)) => Codec::from_name(name),
        Some(_) => None,
        None => match pt {
            "0" => Some(Codec::Pcmu),
            "8" => Some(Codec::Pcma),
            _ => None,
        },
    }
}

fn telephone_event_of(m: &MediaDescription) -> Option<u8> {
    m.formats.iter().find_map(|pt| match m.rtpmap(pt) {
        Some((name, 8000)) if name.eq_ignore_ascii_case("telephone-event") => pt.parse().ok(),
        _ => None,
    })
}

fn remote_addr(
    sdp: &SessionDescription,
    index: usize,
    port: u16,
) -> Result<Option<SocketAddr>, NegotiationError> {
    let conn = sdp
        .connection_for(index)
        .ok_or(NegotiationError::NoConnection)?;
    let ip = conn.ip().ok_or_else(|| NegotiationError::BadAddress {
        address: conn.address.clone(),
    })?;
    Ok((port != 0 && !ip.is_unspecified()).then(|| SocketAddr::new(ip, port)))
}

fn audio_section(
    local: &LocalMedia,
    pt: u8,
    codec: Codec,
    te: Option<u8>,
    dir: Direction,
) -> MediaDescription {
    let mut formats = vec![pt.to_string()];
    let mut attributes = vec![Attribute::value(
        "rtpmap",
        format!("{pt} {}/8000", codec.name()),
    )];
    if let Some(te) = te {
        formats.push(te.to_string());
        attributes.push(Attribute::value(
            "rtpmap",
            format!("{te} telephone-event/8000"),
        ));
        attributes.push(Attribute::value("fmtp", format!("{te} 0-16")));
    }
    attributes.push(Attribute::value("ptime", PTIME_MS.to_string()));
    attributes.push(Attribute::flag(dir.as_str()));
    MediaDescription {
        media: "audio".to_string(),
        port: local.rtp_port,
        port_count: None,
        proto: "RTP/AVP".to_string(),
        formats,
        connection: None,
        bandwidths: Vec::new(),
        attributes,
        other: Vec::new(),
    }
}

fn skeleton(local: &LocalMedia, media: Vec<MediaDescription>) -> SessionDescription {
    let conn = Connection::for_ip(local.address);
    SessionDescription {
        origin: Origin {
            username: "dartwing".to_string(),
            session_id: local.session_id.to_string(),
            session_version: local.session_version.to_string(),
            addr_type: conn.addr_type.clone(),
            address: conn.address.clone(),
        },
        session_name: "dartwing".to_string(),
        connection: Some(conn),
        bandwidths: Vec::new(),
        timing: vec![("0".to_string(), "0".to_string())],
        attributes: Vec::new(),
        other: Vec::new(),
        media,
    }
}

/// Answers a remote offer (an INVITE or re-INVITE body): the answer SDP and what was agreed.
pub fn answer(
    offer: &SessionDescription,
    local: &LocalMedia,
) -> Result<(SessionDescription, Negotiated), NegotiationError> {
    let index = offer
        .media
        .iter()
        .position(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0 && is_rtp_avp(&m.proto))
        .ok_or(NegotiationError::NoAudio)?;
    let m = &offer.media[index];
    let (pt, codec) = m
        .formats
        .iter()
        .find_map(|pt| {
            let codec = codec_of(m, pt)?;
            local.codecs.contains(&codec).then_some((pt, codec))
        })
        .ok_or_else(|| NegotiationError::NoCommonCodec {
            offered: m.formats.clone(),
        })?;
    let payload_type: u8 = pt.parse().map_err(|_| NegotiationError::NoCommonCodec {
        offered: m.formats.clone(),
    })?;
    let remote_rtp = remote_addr(offer, index, m.port)?;
    let mut remote_direction = Direction::of(m, offer);
    let effective = if remote_rtp.is_none() && remote_direction.receives() {
        // c=0.0.0.0: the old way of saying "hold"; they will not take our audio.
        match remote_direction {
            Direction::SendRecv => Direction::SendOnly,
            _ => Direction::Inactive,
        }
    } else {
        remote_direction
    };
    if remote_rtp.is_none() {
        remote_direction = effective;
    }
    let direction = effective.reversed();
    let telephone_event = telephone_event_of(m);

    let mut sections = Vec::with_capacity(offer.media.len());
    for (i, other) in offer.media.iter().enumerate() {
        if i == index {
            sections.push(audio_section(
                local,
                payload_type,
                codec,
                telephone_event,
                direction,
            ));
        } else {
            sections.push(MediaDescription {
                media: other.media.clone(),
                port: 0,
                port_count: None,
                proto: other.proto.clone(),
                formats: other.formats.iter().take(1).cloned().collect(),
                connection: None,
                bandwidths: Vec::new(),
                attributes: Vec::new(),
                other: Vec::new(),
            });
        }
    }
    let negotiated = Negotiated {
        codec,
        payload_type,
        telephone_event,
        remote_rtp,
        remote_direction,
        direction,
        ptime_ms: PTIME_MS,
        remote_ptime_ms: m.attribute("ptime").and_then(|p| p.trim().parse().ok()),
    };
    Ok((skeleton(local, sections), negotiated))
}

/// Builds an offer for an outgoing leg (the B2BUA leg to an agent phone): every local codec
/// in order, telephone-event, ptime 20, and `direction` (`sendonly` to put the far end on hold).
pub fn offer(local: &LocalMedia, direction: Direction) -> SessionDescription {
    let mut formats: Vec<String> = local
        .codecs
        .iter()
        .map(|c| c.static_pt().to_string())
        .collect();
    let mut attributes: Vec<Attribute> = local
        .codecs
        .iter()
        .map(|c| Attribute::value("rtpmap", format!("{} {}/8000", c.static_pt(), c.name())))
        .collect();
    let te = local.telephone_event_pt;
    formats.push(te.to_string());
    attributes.push(Attribute::value(
        "rtpmap",
        format!("{te} telephone-event/8000"),
    ));
    attributes.push(Attribute::value("fmtp", format!("{te} 0-16")));
    attributes.push(Attribute::value("ptime", PTIME_MS.to_string()));
    attributes.push(Attribute::flag(direction.as_str()));
    let media = MediaDescription {
        media: "audio".to_string(),
        port: local.rtp_port,
        port_count: None,
        proto: "RTP/AVP".to_string(),
        formats,
        connection: None,
        bandwidths: Vec::new(),
        attributes,
        other: Vec::new(),
    };
    skeleton(local, vec![media])
}

/// Reads the answer to an offer we made with [`offer`]: the codec is the first format of the
/// answer's audio section that we offered.
pub fn accept_answer(
    local: &LocalMedia,
    our_direction: Direction,
    answer: &SessionDescription,
) -> Result<Negotiated, NegotiationError> {
    let index = answer
        .media
        .iter()
        .position(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0 && is_rtp_avp(&m.proto))
        .ok_or(NegotiationError::NoAudio)?;
    let m = &answer.media[index];
    let (payload_type, codec) = m
        .formats
        .iter()
        .find_map(|pt| {
            let codec = codec_of(m, pt)?;
            let n: u8 = pt.parse().ok()?;
            local.codecs.contains(&codec).then_some((n, codec))
        })
        .ok_or_else(|| NegotiationError::NoCommonCodec {
            offered: m.formats.clone(),
        })?;
    let remote_rtp = remote_addr(answer, index, m.port)?;
    let remote_direction = Direction::of(m, answer);
    // Our direction can only narrow to what the answer allows.
    let direction = match (
        our_direction.sends() && remote_direction.receives(),
        our_direction.receives() && remote_direction.sends(),
    ) {
        (true, true) => Direction::SendRecv,
        (true, false) => Direction::SendOnly,
        (false, true) => Direction::RecvOnly,
        (false, false) => Direction::Inactive,
    };
    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event: telephone_event_of(m),
        remote_rtp,
        remote_direction,
        direction,
        ptime_ms: PTIME_MS,
        remote_ptime_ms: m.attribute("ptime").and_then(|p| p.trim().parse().ok()),
    })
}
