//! Any datagram: the RTP, RTCP and telephone-event parsers must return, never panic; an RTP
//! packet that parses is rebuilt to the same header fields and payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voice::media::dtmf::EventPayload;
use voice::media::rtcp;
use voice::media::rtp::RtpPacket;

fuzz_target!(|data: &[u8]| {
    let _ = rtcp::parse(data);
    let _ = EventPayload::parse(data);
    if let Ok(p) = RtpPacket::parse(data) {
        let mut out = Vec::new();
        p.write(&mut out);
        assert_eq!(RtpPacket::parse(&out), Ok(p));
    }
});
