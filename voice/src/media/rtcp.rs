//! RTCP (RFC 3550 §6): the sender and receiver reports a leg sends every few seconds, and a
//! parser for what the far end sends. Pure functions over bytes.
//!
//! A compound packet we send is `SR` (when we sent RTP since the last report) or `RR`,
//! followed by `SDES` with a CNAME, as §6.1 requires. We read SR, RR and BYE and skip the
//! rest (APP, XR, feedback).

/// RTCP packet types.
const SR: u8 = 200;
const RR: u8 = 201;
const SDES: u8 = 202;
const BYE: u8 = 203;

/// Why a datagram is not RTCP we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// Shorter than its headers or lengths claim.
    #[error("RTCP packet truncated at byte {at}")]
    Truncated {
        /// Where the data ran out.
        at: usize,
    },
    /// Version bits other than 2.
    #[error("RTCP version {version} is not 2")]
    BadVersion {
        /// What it said.
        version: u8,
    },
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source reported on.
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received from that source (0: none).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// The sender information of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// NTP timestamp (seconds since 1900 in the high 32 bits, fraction in the low 32).
    pub ntp: u64,
    /// The RTP timestamp matching `ntp`.
    pub rtp_timestamp: u32,
    /// Packets sent so far.
    pub packets: u32,
    /// Payload octets sent so far.
    pub octets: u32,
}

/// One RTCP packet of a compound datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// A sender report.
    SenderReport {
        /// The sender.
        ssrc: u32,
        /// What it sent.
        info: SenderInfo,
        /// What it received.
        blocks: Vec<ReportBlock>,
    },
    /// A receiver report.
    ReceiverReport {
        /// The reporter.
        ssrc: u32,
        /// What it received.
        blocks: Vec<ReportBlock>,
    },
    /// The sources are leaving.
    Bye {
        /// Who.
        ssrcs: Vec<u32>,
    },
    /// Any other type (SDES, APP, XR, feedback), skipped.
    Other {
        /// Its packet type.
        packet_type: u8,
    },
}

fn u32_at(d: &[u8], i: usize) -> Result<u32, RtcpError> {
    d.get(i..i + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(RtcpError::Truncated { at: i })
}

fn parse_block(d: &[u8], i: usize) -> Result<ReportBlock, RtcpError> {
    let lost = u32_at(d, i + 4)?;
    // 24-bit two's complement.
    let cumulative = ((lost & 0x00FF_FFFF) << 8) as i32 >> 8;
    Ok(ReportBlock {
        ssrc: u32_at(d, i)?,
        fraction_lost: (lost >> 24) as u8,
        cumulative_lost: cumulative,
        highest_seq: u32_at(d, i + 8)?,
        jitter: u32_at(d, i + 12)?,
        last_sr: u32_at(d, i + 16)?,
        delay_since_last_sr: u32_at(d, i + 20)?,
    })
}

fn parse_blocks(d: &[u8], from: usize, count: u8) -> Result<Vec<ReportBlock>, RtcpError> {
    (0..usize::from(count))
        .map(|k| parse_block(d, from + 24 * k))
        .collect()
}

/// Parses a compound RTCP datagram.
pub fn parse(data: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let head = data.get(at..at + 4).ok_or(RtcpError::Truncated { at })?;
        let version = head[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion { version });
        }
        let count = head[0] & 0x1F;
        let packet_type = head[1];
        let len = 4 * (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1);
        let body = data
            .get(at..at + len)
            .ok_or(RtcpError::Truncated { at: data.len() })?;
        out.push(match packet_type {
            SR => RtcpPacket::SenderReport {
                ssrc: u32_at(body, 4)?,
                info: SenderInfo {
                    ntp: (u64::from(u32_at(body, 8)?) << 32) | u64::from(u32_at(body, 12)?),
                    rtp_timestamp: u32_at(body, 16)?,
                    packets: u32_at(body, 20)?,
                    octets: u32_at(body, 24)?,
                },
                blocks: parse_blocks(body, 28, count)?,
            },
            RR => RtcpPacket::ReceiverReport {
                ssrc: u32_at(body, 4)?,
                blocks: parse_blocks(body, 8, count)?,
            },
            BYE => RtcpPacket::Bye {
                ssrcs: (0..usize::from(count))
                    .map(|k| u32_at(body, 4 + 4 * k))
                    .collect::<Result<_, _>>()?,
            },
            other => RtcpPacket::Other { packet_type: other },
        });
        at += len;
    }
    Ok(out)
}

fn header(out: &mut Vec<u8>, count: u8, packet_type: u8, words_after_header: usize) {
    out.push(0x80 | (count & 0x1F));
    out.push(packet_type);
    out.extend_from_slice(&(words_after_header as u16).to_be_bytes());
}

fn push_block(out: &mut Vec<u8>, b: &ReportBlock) {
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    let lost = (u32::from(b.fraction_lost) << 24)
        | (b.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0x00FF_FFFF);
    out.extend_from_slice(&lost.to_be_bytes());
    out.extend_from_slice(&b.highest_seq.to_be_bytes());
    out.extend_from_slice(&b.jitter.to_be_bytes());
    out.extend_from_slice(&b.last_sr.to_be_bytes());
    out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
}

/// Appends an SR (with `info`) or, when `info` is `None`, an RR, with at most one block.
pub fn write_report(
    out: &mut Vec<u8>,
    ssrc: u32,
    info: Option<SenderInfo>,
    block: Option<ReportBlock>,
) {
    let blocks = usize::from(block.is_some());
    match info {
        Some(i) => {
            header(out, blocks as u8, SR, 6 + 6 * blocks);
            out.extend_from_slice(&ssrc.to_be_bytes());
            out.extend_from_slice(&i.ntp.to_be_bytes());
            out.extend_from_slice(&i.rtp_timestamp.to_be_bytes());
            out.extend_from_slice(&i.packets.to_be_bytes());
            out.extend_from_slice(&i.octets.to_be_bytes());
        }
        None => {
            header(out, blocks as u8, RR, 1 + 6 * blocks);
            out.extend_from_slice(&ssrc.to_be_bytes());
        }
    }
    if let Some(b) = block {
        push_block(out, &b);
    }
}

/// Appends an SDES packet with one chunk: our SSRC and its CNAME (at most 255 bytes).
pub fn write_sdes_cname(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let name = &cname.as_bytes()[..cname.len().min(255)];
    // SSRC, CNAME item (type, length, text), end item, padded to a 32-bit boundary.
    let chunk = 4 + 2 + name.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    header(out, 1, SDES, padded / 4);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(1);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.resize(out.len() + (padded - chunk) + 1, 0);
}

/// The middle 32 bits of an NTP timestamp, as `last_sr` carries it.
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// An NTP timestamp for a wall-clock time.
pub fn ntp_from(time: std::time::SystemTime) -> u64 {
    /// Seconds from 1900 to 1970.
    const EPOCH_OFFSET: u64 = 2_208_988_800;
    let d = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let fraction = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    ((d.as_secs() + EPOCH_OFFSET) << 32) | fraction
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0xCAFE_F00D,
            fraction_lost: 25,
            cumulative_lost: -3,
            highest_seq: 0x0001_0005,
            jitter: 160,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 65536,
        }
    }

    #[test]
    fn sender_report_with_sdes_round_trips() {
        let info = SenderInfo {
            ntp: ntp_from(std::time::UNIX_EPOCH + std::time::Duration::from_millis(1500)),
            rtp_timestamp: 8000,
            packets: 50,
            octets: 8000,
        };
        let mut out = Vec::new();
        write_report(&mut out, 7, Some(info), Some(block()));
        write_sdes_cname(&mut out, 7, "dartwing@gw");
        assert_eq!(out.len() % 4, 0);
        let parsed = parse(&out).unwrap();
        assert_eq!(
            parsed,
            vec![
                RtcpPacket::SenderReport {
                    ssrc: 7,
                    info,
                    blocks: vec![block()]
                },
                RtcpPacket::Other { packet_type: SDES },
            ]
        );
        // 1970 + 1.5 s in NTP: 2208988801 s and half a second of fraction.
        assert_eq!(info.ntp >> 32, 2_208_988_801);
        assert_eq!(info.ntp as u32, 0x8000_0000);
        assert_eq!(ntp_middle(info.ntp), (2_208_988_801u32 << 16) | 0x8000);
    }

    #[test]
    fn receiver_report_and_bye_from_a_phone() {
        // An RR with one block followed by a BYE, as baresip sends at hangup.
        let mut out = Vec::new();
        write_report(&mut out, 9, None, Some(block()));
        out.extend_from_slice(&[0x81, BYE, 0, 1, 0, 0, 0, 9]);
        assert_eq!(
            parse(&out).unwrap(),
            vec![
                RtcpPacket::ReceiverReport {
                    ssrc: 9,
                    blocks: vec![block()]
                },
                RtcpPacket::Bye { ssrcs: vec![9] },
            ]
        );
        let mut empty = Vec::new();
        write_report(&mut empty, 9, None, None);
        assert_eq!(empty.len(), 8);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(parse(&[0x80, 200]), Err(RtcpError::Truncated { at: 0 }));
        assert_eq!(
            parse(&[0x40, 200, 0, 0]),
            Err(RtcpError::BadVersion { version: 1 })
        );
        // An SR claiming two blocks but carrying none.
        let mut out = Vec::new();
        write_report(&mut out, 1, Some(SenderInfo::default()), None);
        out[0] |= 2;
        assert!(matches!(parse(&out), Err(RtcpError::Truncated { .. })));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse(&data);
        }

        #[test]
        fn reports_round_trip(
            ssrc in any::<u32>(), sender in any::<bool>(), with_block in any::<bool>(),
            lost in -0x80_0000i32..0x80_0000, fraction in any::<u8>(), jitter in any::<u32>(),
            cname in "[a-z@.0-9]{0,40}",
        ) {
            let b = ReportBlock { fraction_lost: fraction, cumulative_lost: lost, jitter, ..block() };
            let info = SenderInfo { ntp: 1 << 40, rtp_timestamp: 1, packets: 2, octets: 3 };
            let mut out = Vec::new();
            write_report(&mut out, ssrc, sender.then_some(info), with_block.then_some(b));
            write_sdes_cname(&mut out, ssrc, &cname);
            prop_assert_eq!(out.len() % 4, 0);
            let parsed = parse(&out).unwrap();
            let blocks = if with_block { vec![b] } else { vec![] };
            let want = if sender {
                RtcpPacket::SenderReport { ssrc, info, blocks }
            } else {
                RtcpPacket::ReceiverReport { ssrc, blocks }
            };
            prop_assert_eq!(&parsed[0], &want);
            prop_assert_eq!(parsed.len(), 2);
        }
    }
}
