//! Calls with their media running: the RTP session of an answered call keeps it alive while
//! RTP flows (SIPp echoing our packets back), and a caller that vanishes without BYE is
//! hung up by the RTP inactivity timeout.

mod sip_common;
use sip_common as common;

use common::{eventually, free_udp_port, header, invite, reply_to, sipp, start_ua, Client};
use std::time::Duration;
use voice::media::MediaConfig;
use voice::ua::{EndCause, UaConfig};

fn short_media_timeout() -> UaConfig {
    UaConfig {
        media: MediaConfig {
            inactivity_timeout: Duration::from_millis(800),
            ..MediaConfig::default()
        },
        ..UaConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_that_vanishes_is_hung_up_by_rtp_timeout() {
    let ua = start_ua(short_media_timeout()).await;
    let c = Client::new(ua.addr()).await;
    c.send(invite(c.port(), "vanish-1", "z9hG4bK-v1").as_bytes())
        .await;
    let ok = c.expect_status(200, Duration::from_secs(2)).await;
    let sdp = ok.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(sdp.contains("m=audio "), "{ok}");
    let to = header(&ok, "To").unwrap().to_owned();
    let ack = format!(
        "ACK sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-va\r\n\
         From: <sip:caller@127.0.0.1>;tag=c1\r\nTo: {to}\r\nCall-ID: vanish-1\r\nCSeq: 1 ACK\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        c.port()
    );
    c.send(ack.as_bytes()).await;
    // No RTP, no BYE: the media session times out and we hang up.
    let bye = common::next_request(&c, Duration::from_secs(3)).await;
    assert!(bye.starts_with("BYE "), "{bye}");
    c.send(reply_to(&bye, 200, "OK").as_bytes()).await;
    assert!(
        eventually(Duration::from_secs(2), || ua
            .store
            .ended_with(EndCause::MediaTimeout)
            == 1)
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_echoing_rtp_keeps_calls_up_past_the_media_timeout() {
    let ua = start_ua(short_media_timeout()).await;
    let target = ua.addr().to_string();
    let port = free_udp_port().to_string();
    let media_port = (free_udp_port() & !1).to_string();
    // Each call stays 2 s (-d), over twice the media timeout; SIPp echoes our RTP back.
    let out = sipp(&[
        "-sn",
        "uac",
        &target,
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-mp",
        &media_port,
        "-s",
        "100",
        "-m",
        "5",
        "-r",
        "5",
        "-d",
        "2000",
        "-rtp_echo",
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
    ])
    .await;
    assert!(out.status.success(), "sipp failed: {}", out.status);
    let store = &ua.store;
    assert!(eventually(Duration::from_secs(5), || store.ended() == 5).await);
    assert_eq!(
        store.ended_with(EndCause::CallerHangup),
        5,
        "{:?}",
        store.transitions()
    );
    assert_eq!(store.ended_with(EndCause::MediaTimeout), 0);
}

/// INVITE without SDP; returns the 200 and sends the ACK with `ack_body`.
async fn late_offer_call(c: &Client, call_id: &str, ack_body: &str) -> String {
    let invite = invite(c.port(), call_id, &format!("z9hG4bK-{call_id}"));
    let head = invite.split("Content-Type:").next().unwrap();
    c.send(format!("{head}Content-Length: 0\r\n\r\n").as_bytes())
        .await;
    let ok = c.expect_status(200, Duration::from_secs(2)).await;
    let to = header(&ok, "To").unwrap().to_owned();
    let ct = if ack_body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_owned()
    };
    let ack = format!(
        "ACK sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-ack-{call_id}\r\n\
         From: <sip:caller@127.0.0.1>;tag=c1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\n\
         Max-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{ack_body}",
        c.port(),
        ack_body.len()
    );
    c.send(ack.as_bytes()).await;
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_offer_gets_our_offer_and_media_starts_on_the_answer_in_the_ack() {
    let ua = start_ua(short_media_timeout()).await;
    let c = Client::new(ua.addr()).await;
    // Our media socket: the answer in the ACK is the only place its port appears.
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let answer = format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        rtp.local_addr().unwrap().port()
    );
    let ok = late_offer_call(&c, "late-1", &answer).await;
    let offer = ok.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        offer.contains("RTP/AVP 0 8 101"),
        "our offer lists PCMU, PCMA, telephone-event: {offer}"
    );
    // Media starts on that answer: RTP sent to the port in our offer is echoed to the port
    // in the ACK's answer.
    let ua_media: u16 = offer
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("a media port in our offer");
    let mut packet = vec![0x80u8, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
    packet.extend([0xffu8; 160]);
    let mut buf = [0u8; 2048];
    let mut echoed = None;
    for seq in 0..50u16 {
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        rtp.send_to(&packet, ("127.0.0.1", ua_media)).await.unwrap();
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(20), rtp.recv_from(&mut buf)).await
        {
            echoed = Some(n);
            break;
        }
    }
    let n = echoed.expect("RTP reached the port given in the ACK's answer");
    assert!(n >= 12 && buf[0] >> 6 == 2, "an RTP packet ({n} bytes)");
    // Then the caller falls silent: the media session times out and we hang up.
    let bye = common::next_request(&c, Duration::from_secs(3)).await;
    assert!(bye.starts_with("BYE "), "{bye}");
    c.send(reply_to(&bye, 200, "OK").as_bytes()).await;
    assert!(
        eventually(Duration::from_secs(2), || ua
            .store
            .ended_with(EndCause::MediaTimeout)
            == 1)
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_offer_without_an_answer_in_the_ack_is_hung_up() {
    let ua = start_ua(UaConfig::default()).await;
    let c = Client::new(ua.addr()).await;
    late_offer_call(&c, "late-2", "").await;
    let bye = common::next_request(&c, Duration::from_secs(3)).await;
    assert!(bye.starts_with("BYE "), "{bye}");
    c.send(reply_to(&bye, 200, "OK").as_bytes()).await;
    // Answered already: an unusable answer in the ACK is a failure (the detail says why).
    assert!(
        eventually(Duration::from_secs(2), || ua
            .store
            .ended_with(EndCause::Failed)
            == 1)
        .await
    );
}
