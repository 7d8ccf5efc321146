//! SDP tests against bodies that real user agents send, plus hostile input and round trips.

use super::parse::MAX_SDP_LEN;
use super::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// SIPp 3.6 built-in `uac` scenario.
const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// baresip 1.x with g711 loaded.
const BARESIP: &str = "v=0\r\no=- 1519406117 3043522451 IN IP4 192.168.1.10\r\ns=-\r\nc=IN IP4 192.168.1.10\r\nt=0 0\r\nm=audio 10214 RTP/AVP 0 8 101\r\nb=AS:64\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\na=label:1\r\na=ssrc:1234 cname:abc\r\na=rtcp-rsize\r\na=ptime:20\r\n";

/// Linphone: opus and speex first, three telephone-event rates, a video section, bare \n.
const LINPHONE: &str = "v=0\no=alice 3342 1424 IN IP4 192.168.0.10\ns=Talk\nc=IN IP4 192.168.0.10\nt=0 0\na=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\nm=audio 7078 RTP/AVP 96 97 98 8 0 18 101 99 100\na=rtpmap:96 opus/48000/2\na=fmtp:96 useinbandfec=1\na=rtpmap:97 speex/16000\na=fmtp:97 vbr=on\na=rtpmap:98 speex/8000\na=fmtp:98 vbr=on\na=fmtp:18 annexb=yes\na=rtpmap:101 telephone-event/48000\na=rtpmap:99 telephone-event/16000\na=rtpmap:100 telephone-event/8000\na=rtcp-fb:* trr-int 1000\nm=video 9078 RTP/AVP 96\na=rtpmap:96 VP8/90000\n";

/// Asterisk-style: PCMA first, media-level c=, maxptime.
const ASTERISK: &str = "v=0\r\no=- 1234567 1234568 IN IP4 10.0.0.1\r\ns=Asterisk\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 18000 RTP/AVP 8 0 101\r\nc=IN IP4 10.0.0.2\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:30\r\na=maxptime:150\r\na=sendonly\r\n";

fn local() -> LocalMedia {
    LocalMedia::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 20000, 42)
}

#[test]
fn sipp_offer_gets_pcmu_without_telephone_event() {
    let offer = SessionDescription::parse(SIPP).unwrap();
    let (ans, neg) = answer(&offer, &local()).unwrap();
    assert_eq!(neg.codec, Codec::Pcmu);
    assert_eq!(neg.payload_type, 0);
    assert_eq!(neg.telephone_event, None);
    assert_eq!(neg.remote_rtp, Some("127.0.0.1:6000".parse().unwrap()));
    assert_eq!(neg.direction, Direction::SendRecv);
    let text = ans.to_string();
    assert!(text.contains("m=audio 20000 RTP/AVP 0\r\n"), "{text}");
    assert!(text.contains("c=IN IP4 198.51.100.7\r\n"));
    assert!(text.contains("a=ptime:20\r\n"));
    assert!(text.contains("a=sendrecv\r\n"));
    assert_eq!(SessionDescription::parse(&text).unwrap(), ans);
}

#[test]
fn baresip_offer_gets_pcmu_and_101() {
    let offer = SessionDescription::parse(BARESIP).unwrap();
    assert_eq!(offer.media[0].bandwidths, vec!["AS:64".to_string()]);
    assert_eq!(offer.media[0].fmtp("101"), Some("0-15"));
    let (ans, neg) = answer(&offer, &local()).unwrap();
    assert_eq!(
        (neg.codec, neg.payload_type, neg.telephone_event),
        (Codec::Pcmu, 0, Some(101))
    );
    assert_eq!(neg.remote_ptime_ms, Some(20));
    let text = ans.to_string();
    assert!(text.contains("m=audio 20000 RTP/AVP 0 101\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\n"));
}

#[test]
fn linphone_offer_skips_unsupported_and_picks_8000_hz_events_and_rejects_video() {
    let offer = SessionDescription::parse(LINPHONE).unwrap();
    assert_eq!(offer.media.len(), 2);
    let (ans, neg) = answer(&offer, &local()).unwrap();
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcma, 8));
    assert_eq!(neg.telephone_event, Some(100));
    assert_eq!(ans.media.len(), 2);
    assert_eq!(ans.media[1].port, 0);
    assert_eq!(ans.media[1].media, "video");
    assert!(ans.to_string().contains("m=video 0 RTP/AVP 96\r\n"));
}

#[test]
fn asterisk_hold_uses_media_level_address_and_answers_recvonly() {
    let offer = SessionDescription::parse(ASTERISK).unwrap();
    let (ans, neg) = answer(&offer, &local()).unwrap();
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcma, 8));
    assert_eq!(neg.remote_rtp, Some("10.0.0.2:18000".parse().unwrap()));
    assert_eq!(neg.remote_direction, Direction::SendOnly);
    assert_eq!(neg.direction, Direction::RecvOnly);
    assert_eq!(neg.remote_ptime_ms, Some(30));
    assert_eq!(neg.ptime_ms, 20);
    assert!(ans.to_string().contains("a=recvonly\r\n"));
}

#[test]
fn every_direction_is_mirrored() {
    for (offered, want) in [
        ("sendrecv", Direction::SendRecv),
        ("sendonly", Direction::RecvOnly),
        ("recvonly", Direction::SendOnly),
        ("inactive", Direction::Inactive),
    ] {
        let text = format!("{SIPP}a={offered}\r\n");
        let (_, neg) = answer(&SessionDescription::parse(&text).unwrap(), &local()).unwrap();
        assert_eq!(neg.direction, want, "{offered}");
    }
    // Session-level direction applies when the media section has none.
    let text = SIPP.replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n");
    let (_, neg) = answer(&SessionDescription::parse(&text).unwrap(), &local()).unwrap();
    assert_eq!(neg.direction, Direction::Inactive);
}

#[test]
fn each_direction_says_who_sends_and_who_receives() {
    use Direction::*;
    for (d, sends, receives) in [
        (SendRecv, true, true),
        (SendOnly, true, false),
        (RecvOnly, false, true),
        (Inactive, false, false),
    ] {
        assert_eq!((d.sends(), d.receives()), (sends, receives), "{d:?}");
        assert_eq!(d.reversed().reversed(), d);
        assert_eq!(d.reversed().sends(), receives, "{d:?} answered");
    }
}

#[test]
fn directions_print_as_their_attribute() {
    assert_eq!(Direction::SendOnly.to_string(), "sendonly");
    assert_eq!(Direction::Inactive.to_string(), "inactive");
}

#[test]
fn static_payload_types_need_no_rtpmap() {
    for (pt, codec) in [("0", Codec::Pcmu), ("8", Codec::Pcma)] {
        let text = SIPP
            .replace("RTP/AVP 0", &format!("RTP/AVP {pt}"))
            .replace("a=rtpmap:0 PCMU/8000\r\n", "");
        let (_, neg) = answer(&SessionDescription::parse(&text).unwrap(), &local()).unwrap();
        assert_eq!(neg.codec, codec, "{pt}");
    }
    let unknown = SIPP
        .replace("RTP/AVP 0", "RTP/AVP 3")
        .replace("a=rtpmap:0 PCMU/8000\r\n", "");
    assert!(answer(&SessionDescription::parse(&unknown).unwrap(), &local()).is_err());
}

#[test]
fn only_plain_rtp_profiles_are_answered() {
    let avpf = SIPP.replace("RTP/AVP", "RTP/AVPF");
    assert!(answer(&SessionDescription::parse(&avpf).unwrap(), &local()).is_ok());
    for proto in ["RTP/SAVP", "UDP/TLS/RTP/SAVPF", "udp"] {
        let text = SIPP.replace("RTP/AVP", proto);
        assert!(
            answer(&SessionDescription::parse(&text).unwrap(), &local()).is_err(),
            "{proto}"
        );
    }
}

#[test]
fn old_style_hold_with_zero_address() {
    let text = SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
    let (_, neg) = answer(&SessionDescription::parse(&text).unwrap(), &local()).unwrap();
    assert_eq!(neg.remote_rtp, None);
    assert_eq!(neg.direction, Direction::RecvOnly);
}

#[test]
fn reinvite_moves_the_remote_address() {
    let text = SIPP
        .replace("127.0.0.1\r\nt=", "203.0.113.9\r\nt=")
        .replace("6000", "7002");
    let (_, neg) = answer(&SessionDescription::parse(&text).unwrap(), &local()).unwrap();
    assert_eq!(
        neg.remote_rtp,
        Some(SocketAddr::from(([203, 0, 113, 9], 7002)))
    );
}

#[test]
fn no_common_codec_is_488() {
    let text = SIPP.replace("RTP/AVP 0", "RTP/AVP 18 96").replace(
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:18 G729/8000\r\na=rtpmap:96 opus/48000/2",
    );
    let err = answer(&SessionDescription::parse(&text).unwrap(), &local()).unwrap_err();
    assert!(
        matches!(err, NegotiationError::NoCommonCodec { ref offered } if offered == &["18", "96"])
    );
    assert_eq!(err.sip_status(), 488);
    // PCMU offered but we only take PCMA.
    let mut only_a = local();
    only_a.codecs = vec![Codec::Pcma];
    let err = answer(&SessionDescription::parse(SIPP).unwrap(), &only_a).unwrap_err();
    assert_eq!(err.sip_status(), 488);
    // A dynamic payload type mapped to PCMU is accepted with its number.
    let text = SIPP
        .replace("RTP/AVP 0", "RTP/AVP 110")
        .replace("rtpmap:0", "rtpmap:110");
    let (_, neg) = answer(&SessionDescription::parse(&text).unwrap(), &local()).unwrap();
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 110));
}

#[test]
fn no_audio_and_no_connection_are_refused() {
    let video_only = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n";
    let err = answer(&SessionDescription::parse(video_only).unwrap(), &local()).unwrap_err();
    assert_eq!(err, NegotiationError::NoAudio);
    let no_c = SIPP.replace("c=IN IP4 127.0.0.1\r\n", "");
    let err = answer(&SessionDescription::parse(&no_c).unwrap(), &local()).unwrap_err();
    assert_eq!(err, NegotiationError::NoConnection);
    let host = SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 pbx.example.com");
    let err = answer(&SessionDescription::parse(&host).unwrap(), &local()).unwrap_err();
    assert!(matches!(err, NegotiationError::BadAddress { .. }));
}

#[test]
fn our_offer_is_answered_by_our_own_answerer() {
    let mut b2b = local();
    b2b.codecs = vec![Codec::Pcma, Codec::Pcmu];
    let o = offer(&b2b, Direction::SendRecv);
    let text = o.to_string();
    assert!(text.contains("m=audio 20000 RTP/AVP 8 0 101\r\n"), "{text}");
    let agent = LocalMedia::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 30000, 7);
    let (ans, neg_agent) = answer(&SessionDescription::parse(&text).unwrap(), &agent).unwrap();
    assert_eq!(neg_agent.codec, Codec::Pcma);
    let neg = accept_answer(&b2b, Direction::SendRecv, &ans).unwrap();
    assert_eq!(neg.codec, Codec::Pcma);
    assert_eq!(neg.telephone_event, Some(101));
    assert_eq!(neg.remote_rtp, Some("127.0.0.1:30000".parse().unwrap()));
    assert_eq!(neg.direction, Direction::SendRecv);
    // We offer sendonly (hold); the agent answers recvonly; we only send.
    let hold = offer(&b2b, Direction::SendOnly);
    let (ans, _) = answer(&hold, &agent).unwrap();
    let neg = accept_answer(&b2b, Direction::SendOnly, &ans).unwrap();
    assert_eq!(neg.direction, Direction::SendOnly);
}

/// An answer to our offer: PCMU at 127.0.0.1:30000 with `direction`, after `before` (other
/// media sections) and with `proto`/`port` for its audio section.
fn answer_text(before: &str, proto: &str, port: u16, direction: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{before}\
         m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n"
    )
}

#[test]
fn our_direction_narrows_to_what_the_answer_allows() {
    use Direction::*;
    for ours in [SendRecv, SendOnly, RecvOnly, Inactive] {
        for theirs in [SendRecv, SendOnly, RecvOnly, Inactive] {
            let text = answer_text("", "RTP/AVP", 30000, theirs.as_str());
            let ans = SessionDescription::parse(&text).unwrap();
            let neg = accept_answer(&local(), ours, &ans).unwrap();
            let sends = ours.sends() && theirs.receives();
            let receives = ours.receives() && theirs.sends();
            assert_eq!(
                (neg.direction.sends(), neg.direction.receives()),
                (sends, receives),
                "{ours:?} answered {theirs:?}"
            );
            assert_eq!(neg.remote_direction, theirs);
        }
    }
}

#[test]
fn the_answers_audio_is_the_first_live_plain_rtp_section() {
    let video = "m=video 9000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
    let text = answer_text(video, "RTP/AVP", 30000, "sendrecv");
    let neg = accept_answer(
        &local(),
        Direction::SendRecv,
        &SessionDescription::parse(&text).unwrap(),
    )
    .unwrap();
    assert_eq!(neg.remote_rtp, Some("127.0.0.1:30000".parse().unwrap()));
    for (proto, port) in [("RTP/AVP", 0), ("RTP/SAVP", 30000)] {
        let text = answer_text("", proto, port, "sendrecv");
        let got = accept_answer(
            &local(),
            Direction::SendRecv,
            &SessionDescription::parse(&text).unwrap(),
        );
        assert!(
            matches!(got, Err(NegotiationError::NoAudio)),
            "{proto} {port}: {got:?}"
        );
    }
}

#[test]
fn bodies_up_to_16_kib_are_read() {
    assert_eq!(MAX_SDP_LEN, 16 * 1024);
    let pad = |n: usize| format!("{SIPP}a=x:{}\r\n", "p".repeat(n));
    let room = MAX_SDP_LEN - pad(0).len();
    assert_eq!(pad(room).len(), MAX_SDP_LEN);
    assert!(SessionDescription::parse(&pad(room)).is_ok());
    assert!(matches!(
        SessionDescription::parse(&pad(room + 1)),
        Err(SdpError::TooLarge { len, max: MAX_SDP_LEN }) if len == MAX_SDP_LEN + 1
    ));
}

#[test]
fn malformed_lines_are_typed_errors() {
    assert_eq!(SessionDescription::parse(""), Err(SdpError::BadVersion));
    assert_eq!(
        SessionDescription::parse("v=1\r\n"),
        Err(SdpError::BadVersion)
    );
    assert_eq!(
        SessionDescription::parse("v=0\r\ns=-\r\n"),
        Err(SdpError::Missing { kind: 'o' })
    );
    let bad_m = SIPP.replace("m=audio 6000", "m=audio 99999");
    assert_eq!(
        SessionDescription::parse(&bad_m),
        Err(SdpError::BadField { line: 6, kind: 'm' })
    );
    let bad_line = SIPP.replace("s=-", "S-");
    assert_eq!(
        SessionDescription::parse(&bad_line),
        Err(SdpError::BadLine { line: 3 })
    );
    let bad_c = SIPP.replace("c=IN IP4 127.0.0.1", "c=IN");
    assert!(matches!(
        SessionDescription::parse(&bad_c),
        Err(SdpError::BadField { kind: 'c', .. })
    ));
    let big = format!("{SIPP}{}", "a=x\r\n".repeat(4000));
    assert!(matches!(
        SessionDescription::parse(&big),
        Err(SdpError::TooLarge { .. })
    ));
    let many = format!("{SIPP}{}", "m=audio 1 RTP/AVP 0\r\n".repeat(20));
    assert_eq!(
        SessionDescription::parse(&many),
        Err(SdpError::TooManyMedia { max: 16 })
    );
    let with_b = SIPP.replace(
        "c=IN IP4 127.0.0.1\r\n",
        "c=IN IP4 127.0.0.1\r\nb=AS:64\r\n",
    );
    let parsed = SessionDescription::parse(&with_b).unwrap();
    assert_eq!(parsed.bandwidths, vec!["AS:64".to_string()]);
    assert!(parsed.other.is_empty());
    let second_version = SIPP.replace("s=-\r\n", "s=-\r\nv=0\r\n");
    assert_eq!(
        SessionDescription::parse(&second_version),
        Err(SdpError::BadField { line: 4, kind: 'v' })
    );
}

#[test]
fn every_split_of_real_bodies_never_panics() {
    for body in [SIPP, BARESIP, LINPHONE, ASTERISK] {
        for i in 0..=body.len() {
            let (a, b) = body.split_at(i);
            let _ = SessionDescription::parse(a).map(|s| answer(&s, &local()));
            let _ = SessionDescription::parse(b).map(|s| answer(&s, &local()));
        }
    }
}

#[test]
fn real_bodies_round_trip() {
    for body in [SIPP, BARESIP, LINPHONE, ASTERISK] {
        let parsed = SessionDescription::parse(body).unwrap();
        let again = SessionDescription::parse(&parsed.to_string()).unwrap();
        assert_eq!(parsed, again);
    }
}

#[test]
fn optional_session_lines_are_written_in_rfc_order() {
    let text = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\ni=Call\r\nu=http://x.test/\r\n\
                e=a@x.test\r\nc=IN IP4 127.0.0.1\r\nb=AS:64\r\nt=0 0\r\nr=7d 1h 0 25h\r\n\
                z=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
    let written = SessionDescription::parse(text).unwrap().to_string();
    assert_eq!(written, text);
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9.+-]{1,12}"
}

fn attribute() -> impl Strategy<Value = Attribute> {
    (
        "[a-z][a-z0-9-]{0,10}",
        proptest::option::of("[ -~]{0,20}[!-~]"),
    )
        .prop_map(|(name, value)| Attribute { name, value })
}

fn connection() -> impl Strategy<Value = Connection> {
    (any::<[u8; 4]>(), proptest::option::of("[0-9]{1,3}")).prop_map(|(ip, ttl)| Connection {
        addr_type: "IP4".to_string(),
        address: Ipv4Addr::from(ip).to_string(),
        ttl_suffix: ttl,
    })
}

fn media() -> impl Strategy<Value = MediaDescription> {
    (
        token(),
        any::<u16>(),
        proptest::option::of(1u16..8),
        "RTP/[A-Z]{3,4}",
        proptest::collection::vec("[0-9]{1,3}", 1..6),
        proptest::option::of(connection()),
        proptest::collection::vec("AS:[0-9]{1,4}", 0..2),
        proptest::collection::vec(attribute(), 0..6),
        proptest::collection::vec("[ -~]{0,10}[!-~]", 0..2),
    )
        .prop_map(
            |(media, port, port_count, proto, formats, c, b, attributes, info)| MediaDescription {
                media,
                port,
                port_count,
                proto,
                formats,
                connection: c,
                bandwidths: b,
                attributes,
                other: info.into_iter().map(|i| ('i', i)).collect(),
            },
        )
}

fn session() -> impl Strategy<Value = SessionDescription> {
    (
        (token(), "[0-9]{1,20}", "[0-9]{1,20}", connection()),
        "[ -~]{0,10}[!-~]",
        proptest::option::of(connection()),
        proptest::collection::vec(("[0-9]{1,10}", "[0-9]{1,10}"), 1..3),
        proptest::collection::vec(attribute(), 0..4),
        proptest::collection::vec(media(), 0..4),
    )
        .prop_map(
            |((user, id, version, oc), name, c, timing, attributes, media)| SessionDescription {
                origin: Origin {
                    username: user,
                    session_id: id,
                    session_version: version,
                    addr_type: oc.addr_type,
                    address: oc.address,
                },
                session_name: name,
                connection: c,
                bandwidths: Vec::new(),
                timing,
                attributes,
                other: Vec::new(),
                media,
            },
        )
}

proptest! {
    #[test]
    fn serialize_then_parse_is_identity(sdp in session()) {
        let text = sdp.to_string();
        prop_assert_eq!(SessionDescription::parse(&text), Ok(sdp));
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = SessionDescription::parse(&text).map(|s| answer(&s, &local()));
    }

    #[test]
    fn garbled_real_bodies_never_panic(pos in 0usize..400, byte in any::<u8>(), which in 0usize..4) {
        let body = [SIPP, BARESIP, LINPHONE, ASTERISK][which];
        let mut bytes = body.as_bytes().to_vec();
        let at = pos % bytes.len();
        bytes[at] = byte;
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(s) = SessionDescription::parse(&text) {
            let _ = answer(&s, &local());
            let _ = SessionDescription::parse(&s.to_string());
        }
    }
}
