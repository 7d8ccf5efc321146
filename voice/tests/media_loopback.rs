//! A real media session on loopback, driven by a plain UDP socket playing the phone: echo
//! content, DTMF both ways, symmetric-RTP latching, reordering, hold, recording and the
//! inactivity timeout. Real time and real sockets; nothing is mocked.

mod common;

use audio::wav::parse_wav;
use audio::G711Law;
use common::{code, quiet, start, Phone};
use std::time::Duration;
use tokio::time::{sleep, timeout, Instant};
use voice::app::Action;
use voice::media::dtmf::EventPayload;
use voice::media::{MediaConfig, MediaEvent};

#[tokio::test]
async fn echo_returns_the_callers_audio_in_order_despite_reordering() {
    let mut phone = Phone::new().await;
    let (handle, _events, media) = start(&phone, "sendrecv", "echo", quiet()).await;
    let mut packets: Vec<Vec<u8>> = (0..60).map(|i| phone.next_audio(code(i))).collect();
    // Swap neighbours every 10 packets: the later one overtakes, the earlier one follows
    // 2 ms behind it (what a reordering network path does).
    // Sent on an absolute 20 ms schedule, as a phone's sound card clock does.
    let mut at: Vec<u64> = (0..60).map(|i| i * 20).collect();
    for i in (5..60).step_by(10) {
        packets.swap(i, i + 1);
        at[i + 1] = at[i] + 2;
    }
    let sender = async {
        let t0 = Instant::now();
        for (p, ms) in packets.iter().zip(&at) {
            tokio::time::sleep_until(t0 + Duration::from_millis(*ms)).await;
            phone.send(p, media).await;
        }
    };
    let (_, received) = tokio::join!(sender, phone.collect(Duration::from_millis(1700)));
    let stats = handle.stop().await;

    let audio: Vec<u8> = received
        .iter()
        .filter(|r| r.0 == 0)
        .map(|r| r.4[0])
        .filter(|&c| c != 0xFF)
        .collect();
    let want: Vec<u8> = (0..60).map(code).collect();
    assert_eq!(
        audio, want,
        "echoed payloads, in the original order; {stats:?}"
    );
    // Every echoed packet carries one code, unchanged by decode → encode.
    assert!(received.iter().all(|r| r.4.iter().all(|&b| b == r.4[0])));
    // Outgoing RTP: one SSRC stream with consecutive sequence numbers and 160-step timestamps.
    for w in received.windows(2) {
        assert_eq!(w[1].2, w[0].2.wrapping_add(1));
        assert_eq!(w[1].3, w[0].3.wrapping_add(160));
    }
    assert!(received[0].1, "the first packet has the marker");
    assert_eq!(stats.jitter.received, 60);
    assert_eq!(stats.jitter.concealed, 0, "{stats:?}");
    assert!(stats.jitter.reordered >= 5);
}

#[tokio::test]
async fn dtmf_is_reported_once_and_sent_as_rfc4733() {
    let mut phone = Phone::new().await;
    let (handle, mut events, media) = start(&phone, "sendrecv", "echo", quiet()).await;
    phone.send_audio(0xFF, media).await;
    // A '7' press: 3 packets growing, then the end packet three times, plus a duplicate.
    let ts = 99_000;
    let mut wire = Vec::new();
    for (i, end) in [
        (1u16, false),
        (2, false),
        (3, false),
        (3, true),
        (3, true),
        (3, true),
    ] {
        let p = EventPayload {
            event: 7,
            end,
            volume: 10,
            duration: i * 160,
        };
        wire.push(phone.packet(
            101,
            2000 + wire.len() as u16,
            ts,
            i == 1 && !end,
            &p.to_bytes(),
        ));
    }
    wire.push(wire[1].clone());
    for p in &wire {
        phone.send(p, media).await;
        sleep(Duration::from_millis(5)).await;
    }
    let mut digits = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(500);
    while let Ok(Some(ev)) = timeout(deadline - Instant::now(), events.recv()).await {
        if let MediaEvent::Dtmf(d) = ev {
            digits.push(d);
        }
    }
    assert_eq!(digits, ['7']);

    handle.act(Action::SendDtmf('#')).unwrap();
    let got = phone.collect(Duration::from_millis(400)).await;
    let events_out: Vec<_> = got.iter().filter(|r| r.0 == 101).collect();
    assert_eq!(events_out.len(), 8, "5 packets of 20 ms and 3 ends");
    assert!(events_out[0].1 && events_out[1..].iter().all(|r| !r.1));
    assert!(events_out.iter().all(|r| r.3 == events_out[0].3));
    let payloads: Vec<EventPayload> = events_out
        .iter()
        .map(|r| EventPayload::parse(&r.4).unwrap())
        .collect();
    assert!(payloads.iter().all(|p| p.event == 11));
    assert_eq!(payloads.iter().filter(|p| p.end).count(), 3);
    assert_eq!(payloads[7].duration, 800);
    let stats = handle.stop().await;
    assert_eq!(stats.dtmf_received, 1);
}

#[tokio::test]
async fn latches_to_the_first_source_and_ignores_others() {
    // The SDP says the phone is at `sdp_addr`, but its NAT sends from `nat` (another socket).
    let sdp_phone = Phone::new().await;
    let mut nat = Phone::new().await;
    let intruder = Phone::new().await;
    let (handle, mut events, media) = start(&sdp_phone, "sendrecv", "echo", quiet()).await;
    // Before any packet arrives, audio goes to the SDP address.
    assert!(!sdp_phone
        .collect(Duration::from_millis(100))
        .await
        .is_empty());
    nat.send_audio(code(1), media).await;
    let latched = timeout(Duration::from_secs(1), async {
        loop {
            if let Some(MediaEvent::Latched(a)) = events.recv().await {
                return a;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(latched, nat.addr());
    for i in 0..10 {
        intruder
            .send(&intruder.packet(0, 5000 + i, 0, false, &[0x90; 160]), media)
            .await;
    }
    for i in 2..12 {
        nat.send_audio(code(i), media).await;
        sleep(Duration::from_millis(20)).await;
    }
    let to_nat = nat.collect(Duration::from_millis(300)).await;
    assert!(to_nat.len() > 10, "audio now goes to the latched source");
    assert!(intruder.collect(Duration::from_millis(50)).await.is_empty());
    let _ = sdp_phone.collect(Duration::from_millis(50)).await;
    let stats = handle.stop().await;
    assert_eq!(stats.foreign, 10);
    assert!(
        !to_nat.iter().any(|r| r.4[0] == 0x90),
        "intruder audio never echoed"
    );
}

#[tokio::test]
async fn inactivity_is_reported_and_hold_sends_nothing() {
    let mut phone = Phone::new().await;
    let config = MediaConfig {
        inactivity_timeout: Duration::from_millis(300),
        ..quiet()
    };
    let (handle, mut events, media) = start(&phone, "sendonly", "echo", config).await;
    phone.send_audio(code(3), media).await;
    let started = Instant::now();
    let got = timeout(Duration::from_secs(2), async {
        loop {
            if let Some(MediaEvent::MediaTimeout) = events.recv().await {
                return Instant::now();
            }
        }
    })
    .await
    .expect("a media timeout event");
    let waited = got - started;
    assert!(waited >= Duration::from_millis(280), "{waited:?}");
    // The phone put us on hold (sendonly): we answered recvonly and send nothing.
    assert!(phone.collect(Duration::from_millis(200)).await.is_empty());
    let stats = handle.stop().await;
    assert_eq!(stats.packets_sent, 0);
}

#[tokio::test]
async fn recording_writes_both_directions_to_a_stereo_wav() {
    let mut phone = Phone::new().await;
    let path = std::env::temp_dir().join(format!("dartwing-rec-{}.wav", std::process::id()));
    let config = MediaConfig {
        recording_path: Some(path.clone()),
        ..quiet()
    };
    let (handle, mut events, media) = start(&phone, "sendrecv", "echo", config).await;
    handle.act(Action::StartRecording).unwrap();
    for i in 0..25 {
        phone.send_audio(code(i + 10), media).await;
        sleep(Duration::from_millis(20)).await;
    }
    sleep(Duration::from_millis(100)).await;
    handle.act(Action::StopRecording).unwrap();
    let saved = timeout(Duration::from_secs(2), async {
        loop {
            if let Some(MediaEvent::RecordingSaved { path, seconds }) = events.recv().await {
                return (path, seconds);
            }
        }
    })
    .await
    .unwrap();
    handle.stop().await;
    assert_eq!(saved.0, path);
    let clip = parse_wav(&std::fs::read(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!((clip.rate, clip.channels), (8000, 2));
    assert!((saved.1 - clip.samples.len() as f64 / 16_000.0).abs() < 1e-9);
    let left: Vec<i16> = clip.samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = clip.samples.iter().skip(1).step_by(2).copied().collect();
    let heard = G711Law::Ulaw.decode(&[code(10)])[0];
    let first_heard = left
        .iter()
        .position(|&s| s == heard)
        .expect("caller audio on the left");
    let first_sent = right
        .iter()
        .position(|&s| s == heard)
        .expect("echo on the right");
    // The echo is queued on the tick it is heard, and sent on that same tick.
    assert_eq!(first_heard, first_sent);
}

#[tokio::test]
async fn rtcp_reports_go_both_ways() {
    use voice::media::rtcp::{self, ReportBlock, RtcpPacket};
    let mut phone = Phone::new().await;
    let rtcp_socket = tokio::net::UdpSocket::bind((common::LOCAL, 0))
        .await
        .unwrap();
    let config = MediaConfig {
        rtcp_interval: Some(Duration::from_millis(300)),
        ..quiet()
    };
    let (handle, _events, media) = start(&phone, "sendrecv", "echo", config).await;
    for i in 0..10 {
        phone.send_audio(code(i), media).await;
        sleep(Duration::from_millis(20)).await;
    }
    let mut buf = [0u8; 1500];
    let (n, _) = phone.socket.recv_from(&mut buf).await.unwrap();
    let our_ssrc = voice::media::rtp::RtpPacket::parse(&buf[..n]).unwrap().ssrc;

    // The phone reports on our stream from its RTCP socket; the leg latches its RTCP there.
    let mut rr = Vec::new();
    let block = ReportBlock {
        ssrc: our_ssrc,
        fraction_lost: 64,
        jitter: 80,
        ..ReportBlock::default()
    };
    rtcp::write_report(&mut rr, 0x1234_5678, None, Some(block));
    rtcp::write_sdes_cname(&mut rr, 0x1234_5678, "phone@test");
    let rtcp_port = std::net::SocketAddr::new(common::LOCAL, media.port() + 1);
    rtcp_socket.send_to(&rr, rtcp_port).await.unwrap();

    let sr = timeout(Duration::from_secs(2), async {
        loop {
            let (n, _) = rtcp_socket.recv_from(&mut buf).await.unwrap();
            if let Ok(packets) = rtcp::parse(&buf[..n]) {
                return packets;
            }
        }
    })
    .await
    .expect("an RTCP report from the leg");
    match &sr[0] {
        RtcpPacket::SenderReport { ssrc, info, blocks } => {
            assert_eq!(*ssrc, our_ssrc);
            assert!(info.packets > 0 && info.octets >= 160 * info.packets);
            assert_eq!(blocks.len(), 1);
            assert_eq!(blocks[0].ssrc, 0x1234_5678);
            assert_eq!(blocks[0].highest_seq, 1009);
            assert_eq!(blocks[0].cumulative_lost, 0);
        }
        other => panic!("want an SR, got {other:?}"),
    }
    assert!(matches!(sr[1], RtcpPacket::Other { packet_type: 202 }));
    let stats = handle.stop().await;
    assert_eq!(
        stats.remote_report,
        Some(voice::media::RemoteReport {
            fraction_lost: 64,
            jitter_ms: 10.0
        })
    );
    assert!(stats.rtcp_received >= 1 && stats.rtcp_sent >= 1);
}
