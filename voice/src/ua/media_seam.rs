//! INTERIM SEAM — to be replaced by the voice-media branch's SDP offer/answer and media
//! session (`voice/src/sdp.rs`, `voice/src/media/`). Until that lands, an INVITE is answered
//! with a minimal SDP answer: the first of PCMU/PCMA the offer lists, telephone-event when
//! offered, ptime 20, and a real UDP port bound for the call's lifetime (nothing reads it:
//! no RTP is processed). DTMF received by SIP INFO is handed to [`InterimMedia::dtmf`], the
//! place where the application's DTMF input will be fed.

use std::net::{IpAddr, UdpSocket};

/// What the seam holds for one call.
#[derive(Debug)]
pub struct InterimMedia {
    /// Keeps the advertised RTP port bound while the call lasts.
    _socket: UdpSocket,
    pub answer: Vec<u8>,
    /// Digits received so far (INFO now; RFC 4733 once media lands).
    pub digits: String,
}

/// Why no answer could be made.
#[derive(Debug, thiserror::Error)]
pub enum SeamError {
    #[error("offer has no audio stream with PCMU or PCMA")]
    NoCommonCodec,
    #[error("cannot bind an RTP port")]
    Bind(#[source] std::io::Error),
}

impl InterimMedia {
    /// Answers `offer` (an empty offer gets our offer, to be answered in the ACK).
    pub fn answer(offer: &[u8], local_ip: IpAddr) -> Result<Self, SeamError> {
        let (codec, dtmf) = if offer.is_empty() {
            (0, Some(101))
        } else {
            choose(&String::from_utf8_lossy(offer)).ok_or(SeamError::NoCommonCodec)?
        };
        let socket = UdpSocket::bind((local_ip, 0)).map_err(SeamError::Bind)?;
        let port = socket.local_addr().map_err(SeamError::Bind)?.port();
        let family = if local_ip.is_ipv4() { "IP4" } else { "IP6" };
        let session = fastrand::u32(..);
        let mut sdp = format!(
            "v=0\r\no=dartwing {session} {session} IN {family} {local_ip}\r\ns=dartwing\r\n\
             c=IN {family} {local_ip}\r\nt=0 0\r\n"
        );
        let name = if codec == 0 { "PCMU" } else { "PCMA" };
        match dtmf {
            Some(pt) => sdp.push_str(&format!(
                "m=audio {port} RTP/AVP {codec} {pt}\r\na=rtpmap:{codec} {name}/8000\r\n\
                 a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\n"
            )),
            None => sdp.push_str(&format!(
                "m=audio {port} RTP/AVP {codec}\r\na=rtpmap:{codec} {name}/8000\r\n"
            )),
        }
        sdp.push_str("a=ptime:20\r\na=sendrecv\r\n");
        Ok(Self {
            _socket: socket,
            answer: sdp.into_bytes(),
            digits: String::new(),
        })
    }

    /// A DTMF digit from the caller.
    pub fn dtmf(&mut self, digit: char) {
        tracing::debug!(%digit, "dtmf");
        self.digits.push(digit);
    }
}

/// The codec (0 or 8, the offer's order) and telephone-event payload type of an offer.
fn choose(offer: &str) -> Option<(u8, Option<u8>)> {
    let media = offer.lines().find(|l| l.starts_with("m=audio "))?;
    let codec = media
        .split_whitespace()
        .skip(3)
        .filter_map(|pt| pt.parse::<u8>().ok())
        .find(|pt| *pt == 0 || *pt == 8)?;
    let dtmf = offer.lines().find_map(|l| {
        let rest = l.strip_prefix("a=rtpmap:")?;
        let (pt, name) = rest.split_once(' ')?;
        name.to_ascii_lowercase()
            .starts_with("telephone-event/8000")
            .then(|| pt.trim().parse().ok())
            .flatten()
    });
    Some((codec, dtmf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_first_g711_of_the_offer_and_telephone_event() {
        let offer = "v=0\r\nm=audio 4000 RTP/AVP 18 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\n";
        assert_eq!(choose(offer), Some((8, Some(96))));
        assert_eq!(choose("m=audio 4000 RTP/AVP 18\r\n"), None);
        let media = InterimMedia::answer(offer.as_bytes(), "127.0.0.1".parse().unwrap()).unwrap();
        let sdp = String::from_utf8(media.answer).unwrap();
        assert!(sdp.contains("RTP/AVP 8 96\r\n"), "{sdp}");
        assert!(sdp.contains("c=IN IP4 127.0.0.1\r\n"));
    }
}
