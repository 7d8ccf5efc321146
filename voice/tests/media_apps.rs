//! The built-in applications and call-control operations through a real media session on
//! loopback: `play:` sends its WAV then asks to hang up, `menu` transfers on `1`, a re-INVITE
//! moves media to a new address and codec, and stopping gives the port back.

mod common;

use audio::g711::{encode_alaw, encode_ulaw};
use audio::wav::encode_wav;
use common::{code, quiet, start, wait_for, Phone, LOCAL};
use std::time::Duration;
use tokio::time::Instant;
use voice::app::{parse_app_spec, Action, CallContext};
use voice::media::dtmf::EventPayload;
use voice::media::{MediaEvent, MediaSession, PortPool};
use voice::sdp::{answer, Codec, LocalMedia, SessionDescription};

#[tokio::test]
async fn play_sends_the_whole_clip_then_asks_to_hang_up() {
    let phone = Phone::new().await;
    let path = std::env::temp_dir().join(format!("dartwing-play-{}.wav", std::process::id()));
    // Half a second at 16 kHz of a constant level: 25 packets of one µ-law code at 8 kHz.
    std::fs::write(&path, encode_wav(16_000, 1, &[1000; 8000])).unwrap();
    let started = Instant::now();
    let (handle, mut events, _) = start(
        &phone,
        "sendrecv",
        &format!("play:{}", path.display()),
        quiet(),
    )
    .await;
    let (received, hangup) = tokio::join!(
        phone.collect(Duration::from_millis(900)),
        wait_for(&mut events, Duration::from_secs(2), |e| match e {
            MediaEvent::AppAction(Action::Hangup) => Some(Instant::now()),
            _ => None,
        })
    );
    std::fs::remove_file(&path).unwrap();
    let hangup = hangup.expect("play asks to hang up") - started;
    assert!(
        hangup >= Duration::from_millis(480) && hangup < Duration::from_millis(800),
        "{hangup:?}"
    );
    // The band-limited resampler (16 kHz -> 8 kHz) rings for a few samples at the clip's
    // start and end: 25 packets carry the clip, all but the first and last at its level.
    let level = encode_ulaw(1000);
    let audible = received
        .iter()
        .filter(|r| r.4.iter().any(|&b| b != 0xFF))
        .count();
    assert_eq!(audible, 25);
    let clip_packets = received
        .iter()
        .filter(|r| r.4.iter().all(|&b| b == level))
        .count();
    assert!(
        clip_packets >= 23,
        "{clip_packets} packets at the clip's level"
    );
    handle.stop().await;
}

#[tokio::test]
async fn menu_plays_a_prompt_and_transfers_on_1() {
    let mut phone = Phone::new().await;
    let (handle, mut events, media) = start(&phone, "sendrecv", "menu", quiet()).await;
    let prompt = phone.collect(Duration::from_millis(300)).await;
    assert!(
        prompt.iter().any(|r| r.4.iter().any(|&b| b != 0xFF)),
        "the prompt is audible"
    );
    phone.send_audio(0xFF, media).await;
    for (i, end) in [false, false, true, true, true].into_iter().enumerate() {
        let p = EventPayload {
            event: 1,
            end,
            volume: 10,
            duration: 160 * (i as u16 + 1).min(3),
        };
        let pkt = phone.packet(101, 3000 + i as u16, 4242, i == 0, &p.to_bytes());
        phone.send(&pkt, media).await;
    }
    let target = wait_for(&mut events, Duration::from_secs(1), |e| match e {
        MediaEvent::AppAction(Action::Transfer { target, .. }) => Some(target),
        _ => None,
    })
    .await;
    assert_eq!(target.as_deref(), Some("agent"));
    handle.stop().await;
}

#[tokio::test]
async fn reinvite_moves_media_to_a_new_address_and_codec() {
    let mut first = Phone::new().await;
    let (handle, _events, media) = start(&first, "sendrecv", "echo", quiet()).await;
    first.send_audio(code(1), media).await;
    assert!(!first.collect(Duration::from_millis(100)).await.is_empty());

    // The re-INVITE offers PCMA only, from another address.
    let mut second = Phone::new().await;
    let offer = second.offer("sendrecv").replace(
        "RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000",
        "RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000",
    );
    let local = LocalMedia::new(LOCAL, media.port(), 1);
    let (_, negotiated) = answer(&SessionDescription::parse(&offer).unwrap(), &local).unwrap();
    assert_eq!(negotiated.codec, Codec::Pcma);
    handle.update(negotiated).unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let _ = first.collect(Duration::from_millis(10)).await;

    let level = encode_alaw(-3000);
    for _ in 0..10 {
        let p = second.packet(8, second.seq, second.ts, false, &[level; 160]);
        second.seq += 1;
        second.ts += 160;
        second.send(&p, media).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = second.collect(Duration::from_millis(200)).await;
    assert!(got.iter().all(|r| r.0 == 8), "PCMA after the re-INVITE");
    assert!(got.iter().filter(|r| r.4[0] == level).count() >= 8);
    assert!(first.collect(Duration::from_millis(50)).await.is_empty());
    let stats = handle.stop().await;
    assert_eq!(stats.foreign, 0);
}

#[tokio::test]
async fn stopping_or_dropping_the_handle_gives_the_port_back() {
    let pool = PortPool::new(LOCAL, 43010..=43011).unwrap();
    let phone = Phone::new().await;
    let bound = MediaSession::bind(&pool).unwrap();
    assert!(
        MediaSession::bind(&pool).is_err(),
        "a one-port pool is used up"
    );
    let local = LocalMedia::new(LOCAL, bound.port(), 1);
    let offer = SessionDescription::parse(&phone.offer("sendrecv")).unwrap();
    let (_, negotiated) = answer(&offer, &local).unwrap();
    let (handle, _events) = bound
        .start(
            &negotiated,
            parse_app_spec("echo").unwrap(),
            CallContext::default(),
            quiet(),
        )
        .unwrap();
    assert_eq!(pool.available(), 0);
    handle.stop().await;
    assert_eq!(pool.available(), 1);

    // Dropping the handle (call control lost track of the call) ends the leg within a second.
    let bound = MediaSession::bind(&pool).unwrap();
    let (handle, _events) = bound
        .start(
            &negotiated,
            parse_app_spec("echo").unwrap(),
            CallContext::default(),
            quiet(),
        )
        .unwrap();
    drop(handle);
    let t0 = Instant::now();
    while pool.available() == 0 {
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "leg still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_workers_drive_many_legs_independently() {
    let pool = PortPool::new(LOCAL, 43100..=43199).unwrap();
    let workers = voice::media::MediaWorkers::new(2).unwrap();
    let mut calls = Vec::new();
    for _ in 0..20 {
        let phone = Phone::new().await;
        let bound = MediaSession::bind(&pool).unwrap();
        let local = LocalMedia::new(LOCAL, bound.port(), 1);
        let offer = SessionDescription::parse(&phone.offer("sendrecv")).unwrap();
        let (_, negotiated) = answer(&offer, &local).unwrap();
        let (handle, _events) = workers
            .start(
                bound,
                &negotiated,
                parse_app_spec("echo").unwrap(),
                CallContext::default(),
                quiet(),
            )
            .unwrap();
        calls.push((phone, handle));
    }
    // Each phone sends its own code; each must hear back only its own.
    let t0 = Instant::now();
    for k in 0..15u32 {
        tokio::time::sleep_until(t0 + Duration::from_millis(u64::from(k) * 20)).await;
        for (i, (phone, handle)) in calls.iter_mut().enumerate() {
            phone.send_audio(code(i + 1), handle.local_addr()).await;
        }
    }
    for (i, (phone, handle)) in calls.into_iter().enumerate() {
        let got = phone.collect(Duration::from_millis(150)).await;
        let echoed: Vec<u8> = got.iter().map(|r| r.4[0]).filter(|&c| c != 0xFF).collect();
        assert!(echoed.len() >= 10, "call {i}: {} echoed", echoed.len());
        assert!(
            echoed.iter().all(|&c| c == code(i + 1)),
            "call {i} heard another call"
        );
        let stats = handle.stop().await;
        assert_eq!(stats.jitter.received, 15);
    }
    assert_eq!(pool.available(), 50);
}

#[tokio::test]
async fn a_transfer_bridges_two_legs_audio_and_dtmf_both_ways() {
    let mut caller = Phone::new().await;
    let mut agent = Phone::new().await;
    let (caller_leg, mut caller_events, caller_media) =
        start(&caller, "sendrecv", "menu", quiet()).await;
    // The caller presses 1 by SIP INFO: the menu asks for the transfer.
    caller_leg.dtmf('1').unwrap();
    let target = wait_for(&mut caller_events, Duration::from_secs(1), |e| match e {
        MediaEvent::AppAction(Action::Transfer { target, .. }) => Some(target),
        _ => None,
    })
    .await;
    assert_eq!(target.as_deref(), Some("agent"));

    // The agent answers: its leg starts with one side of the bridge, the caller's gets the other.
    let (to_caller, to_agent) = voice::app::bridge::pair();
    caller_leg
        .set_app(Box::new(to_caller), CallContext::default())
        .unwrap();
    let pool = PortPool::new(LOCAL, 43300..=43399).unwrap();
    let bound = MediaSession::bind(&pool).unwrap();
    let local = LocalMedia::new(LOCAL, bound.port(), 2);
    let offer = SessionDescription::parse(&agent.offer("sendrecv")).unwrap();
    let (_, negotiated) = answer(&offer, &local).unwrap();
    let (agent_leg, _agent_events) = bound
        .start(
            &negotiated,
            Box::new(to_agent),
            CallContext::default(),
            quiet(),
        )
        .unwrap();
    let agent_media = agent_leg.local_addr();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let _ = caller.collect(Duration::from_millis(20)).await;
    let _ = agent.collect(Duration::from_millis(20)).await;

    let t0 = Instant::now();
    for k in 0..20u64 {
        tokio::time::sleep_until(t0 + Duration::from_millis(k * 20)).await;
        caller.send_audio(code(40), caller_media).await;
        agent.send_audio(code(50), agent_media).await;
    }
    // The agent presses 5 in RTP; the caller must get it as RFC 4733.
    for (i, end) in [false, true, true, true].into_iter().enumerate() {
        let p = EventPayload {
            event: 5,
            end,
            volume: 10,
            duration: 480,
        };
        let pkt = agent.packet(101, agent.seq + i as u16, 77_000, i == 0, &p.to_bytes());
        agent.send(&pkt, agent_media).await;
    }
    let (at_caller, at_agent) = tokio::join!(
        caller.collect(Duration::from_millis(400)),
        agent.collect(Duration::from_millis(400))
    );
    let heard_by_agent = at_agent.iter().filter(|r| r.4[0] == code(40)).count();
    let heard_by_caller = at_caller.iter().filter(|r| r.4[0] == code(50)).count();
    assert!(
        heard_by_agent >= 15,
        "agent heard {heard_by_agent} caller frames"
    );
    assert!(
        heard_by_caller >= 10,
        "caller heard {heard_by_caller} agent frames"
    );
    let digit_events: Vec<_> = at_caller
        .iter()
        .filter(|r| r.0 == 101)
        .map(|r| EventPayload::parse(&r.4).unwrap())
        .collect();
    assert!(!digit_events.is_empty() && digit_events.iter().all(|p| p.event == 5));
    agent_leg.stop().await;
    caller_leg.stop().await;
}
