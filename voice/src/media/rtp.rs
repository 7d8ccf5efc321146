//! RTP packets (RFC 3550 §5.1): parse a datagram into a borrowed view, build one into a buffer.
//!
//! Pure functions; no allocation on parse. Header extensions and CSRC lists are skipped
//! (phones rarely send them, and we never need their contents); padding is removed.

/// The fixed header length.
pub const HEADER_LEN: usize = 12;

/// Why a datagram is not an RTP packet we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Fewer bytes than the header (with its CSRCs and extension) claims.
    #[error("RTP packet of {len} bytes is truncated")]
    Truncated {
        /// The datagram's length.
        len: usize,
    },
    /// The version bits are not 2 (STUN, RTCP on the wrong port, garbage).
    #[error("RTP version {version} is not 2")]
    BadVersion {
        /// What the packet said.
        version: u8,
    },
    /// The padding count is larger than the payload.
    #[error("RTP padding of {padding} bytes exceeds the payload")]
    BadPadding {
        /// The padding count in the last byte.
        padding: u8,
    },
}

/// A parsed packet borrowing its payload from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The marker bit (start of a talkspurt, or of a DTMF event).
    pub marker: bool,
    /// The payload type (7 bits).
    pub payload_type: u8,
    /// The sequence number.
    pub sequence: u16,
    /// The media timestamp (8 kHz units for G.711 and telephone-event).
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: u32,
    /// The payload, without padding.
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Parses one datagram.
    pub fn parse(data: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        let truncated = RtpError::Truncated { len: data.len() };
        if data.len() < HEADER_LEN {
            return Err(truncated);
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion { version });
        }
        let padded = data[0] & 0x20 != 0;
        let extended = data[0] & 0x10 != 0;
        let csrc_count = usize::from(data[0] & 0x0F);
        let mut start = HEADER_LEN + 4 * csrc_count;
        if extended {
            let ext = data.get(start..start + 4).ok_or(truncated)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            start += 4 + 4 * words;
        }
        if start > data.len() {
            return Err(truncated);
        }
        let mut end = data.len();
        if padded {
            let padding = data[end - 1];
            if padding == 0 || usize::from(padding) > end - start {
                return Err(RtpError::BadPadding { padding });
            }
            end -= usize::from(padding);
        }
        Ok(RtpPacket {
            marker: data[1] & 0x80 != 0,
            payload_type: data[1] & 0x7F,
            sequence: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
            payload: &data[start..end],
        })
    }

    /// Writes the packet (version 2, no padding, no CSRC, no extension) into `out`, replacing
    /// its contents, and returns the length.
    pub fn write(&self, out: &mut Vec<u8>) -> usize {
        out.clear();
        out.push(0x80);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
        out.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_captured_pcmu_header() {
        // From a SIPp pcap: V=2, M=1, PT=0, seq 0x1234, ts 0x000000a0, ssrc 0xdeadbeef.
        let mut data = vec![
            0x80, 0x80, 0x12, 0x34, 0, 0, 0, 0xa0, 0xde, 0xad, 0xbe, 0xef,
        ];
        data.extend_from_slice(&[0xFF; 160]);
        let p = RtpPacket::parse(&data).unwrap();
        assert!(p.marker);
        assert_eq!(
            (p.payload_type, p.sequence, p.timestamp, p.ssrc),
            (0, 0x1234, 160, 0xdead_beef)
        );
        assert_eq!(p.payload.len(), 160);
    }

    #[test]
    fn skips_csrc_extension_and_padding() {
        let mut data = vec![0xB1, 8, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];
        data.extend_from_slice(&[1, 2, 3, 4]); // one CSRC
        data.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // extension of one word
        data.extend_from_slice(&[7, 7, 7]); // payload
        data.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let p = RtpPacket::parse(&data).unwrap();
        assert_eq!(p.payload, &[7, 7, 7]);
        assert_eq!(p.payload_type, 8);
    }

    #[test]
    fn rejects_what_is_not_rtp() {
        assert_eq!(
            RtpPacket::parse(&[0x80; 5]),
            Err(RtpError::Truncated { len: 5 })
        );
        // A STUN binding request starts with 0x00 0x01.
        let stun = [0u8, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            RtpPacket::parse(&stun),
            Err(RtpError::BadVersion { version: 0 })
        );
        let mut padded = vec![0xA0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 5];
        assert_eq!(
            RtpPacket::parse(&padded),
            Err(RtpError::BadPadding { padding: 5 })
        );
        padded[12] = 0;
        assert_eq!(
            RtpPacket::parse(&padded),
            Err(RtpError::BadPadding { padding: 0 })
        );
        let ext_cut = [0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0xBE, 0xDE, 0, 4];
        assert!(matches!(
            RtpPacket::parse(&ext_cut),
            Err(RtpError::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn build_then_parse_is_identity(
            marker in any::<bool>(), pt in 0u8..128, seq in any::<u16>(), ts in any::<u32>(),
            ssrc in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let p = RtpPacket { marker, payload_type: pt, sequence: seq, timestamp: ts, ssrc, payload: &payload };
            let mut buf = Vec::new();
            p.write(&mut buf);
            prop_assert_eq!(RtpPacket::parse(&buf), Ok(p));
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = RtpPacket::parse(&data);
        }
    }
}
