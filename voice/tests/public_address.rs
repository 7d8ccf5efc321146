//! Attacks a user agent on a public address would see, over real loopback sockets (the
//! loopback range 127.0.0.0/8 stands in for distinct hosts). Each test ends with a
//! legitimate call still completing.

mod sip_common;
use sip_common as common;

use common::{
    ack, bye, client_at, expect, header, invite_with_media, local, start_ua, status_of, to_tag,
    Client,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use voice::ua::{AdmissionConfig, CallState, Cidr, EndCause, UaConfig};

const WAIT: Duration = common::CALL_WAIT;

/// Datagrams that reach `socket` within `window` (it counts until the window closes).
async fn count_for(socket: &UdpSocket, window: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + window;
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
        n += 1;
    }
    n
}

/// A full legitimate call from `c` with its media on its own socket: 200, ACK, our RTP
/// reaches the caller's media socket (within WAIT), BYE answered 200, recorded as the
/// caller's hangup.
async fn legitimate_call(ua: &common::Ua, c: &Client, call_id: &str) {
    let media = UdpSocket::bind((local(c).ip(), 0)).await.unwrap();
    let media_addr = media.local_addr().unwrap();
    c.send(invite_with_media(local(c), call_id, "100", media_addr).as_bytes())
        .await;
    let ok = expect(c, 200, call_id, "INVITE").await;
    let to = header(&ok, "To").unwrap().to_owned();
    c.send(ack(local(c), call_id, &to).as_bytes()).await;
    let mut buf = [0u8; 2048];
    tokio::time::timeout(WAIT, media.recv_from(&mut buf))
        .await
        .expect("the legitimate caller hears our RTP after its ACK")
        .unwrap();
    let ended_before = ua.store.ended_with(EndCause::CallerHangup);
    c.send(bye(local(c), call_id, &to_tag(&ok)).as_bytes())
        .await;
    expect(c, 200, call_id, "BYE").await;
    // The 200 to the BYE comes after the end was committed: no waiting needed here.
    assert_eq!(
        ua.store.ended_with(EndCause::CallerHangup),
        ended_before + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdp_naming_a_third_party_gets_no_rtp_before_or_after_the_ack() {
    let ua = start_ua(UaConfig::default()).await;
    let victim = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let c = client_at("127.0.0.1", ua.addr()).await;
    let invite = invite_with_media(local(&c), "amp-1", "100", victim.local_addr().unwrap());
    c.send(invite.as_bytes()).await;
    let ok = expect(&c, 200, "amp-1", "INVITE").await;
    // Answered and never ACKed: the 200 is retransmitted, the media must stay silent.
    assert_eq!(count_for(&victim, Duration::from_millis(1500)).await, 0);
    let to = header(&ok, "To").unwrap().to_owned();
    c.send(ack(local(&c), "amp-1", &to).as_bytes()).await;
    // ACKed, but 127.0.0.2 is not the signalling host and never sent RTP: still nothing.
    assert_eq!(count_for(&victim, Duration::from_millis(1500)).await, 0);
    c.send(bye(local(&c), "amp-1", &to_tag(&ok)).as_bytes())
        .await;
    expect(&c, 200, "amp-1", "BYE").await;
    legitimate_call(&ua, &c, "amp-legit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_goes_to_a_third_party_address_once_it_sent_rtp_itself() {
    // Latching: a phone whose media host differs from its signalling host (behind a
    // proxy) is reached once its own RTP arrives.
    let ua = start_ua(UaConfig::default()).await;
    let phone_media = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let c = client_at("127.0.0.1", ua.addr()).await;
    let invite = invite_with_media(
        local(&c),
        "latch-1",
        "100",
        phone_media.local_addr().unwrap(),
    );
    c.send(invite.as_bytes()).await;
    let ok = expect(&c, 200, "latch-1", "INVITE").await;
    let to = header(&ok, "To").unwrap().to_owned();
    c.send(ack(local(&c), "latch-1", &to).as_bytes()).await;
    let sdp = ok.split("\r\n\r\n").nth(1).unwrap();
    let port: u16 = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    // One PCMU packet from the phone's media socket.
    let mut rtp = vec![0x80, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
    rtp.extend([0xFF; 160]);
    let ours: SocketAddr = SocketAddr::new(ua.addr().ip(), port);
    let mut buf = [0u8; 2048];
    let heard = async {
        loop {
            phone_media.send_to(&rtp, ours).await.unwrap();
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(100), phone_media.recv_from(&mut buf))
                    .await
            {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, heard)
        .await
        .expect("RTP reaches the latched source");
    c.send(bye(local(&c), "latch-1", &to_tag(&ok)).as_bytes())
        .await;
    expect(&c, 200, "latch-1", "BYE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_from_outside_the_trusted_networks_get_403() {
    let config = UaConfig {
        admission: AdmissionConfig {
            trusted: Cidr::parse_list("127.0.0.1/32").unwrap(),
            ..AdmissionConfig::default()
        },
        ..UaConfig::default()
    };
    let ua = start_ua(config).await;
    let outsider = client_at("127.0.0.4", ua.addr()).await;
    let media = SocketAddr::from(([127, 0, 0, 4], 40_000));
    outsider
        .send(invite_with_media(local(&outsider), "untrusted-1", "100", media).as_bytes())
        .await;
    expect(&outsider, 403, "untrusted-1", "INVITE").await;
    assert_eq!(
        ua.store.transitions(),
        vec![],
        "nothing recorded for a refused source"
    );
    let carrier = client_at("127.0.0.1", ua.addr()).await;
    legitimate_call(&ua, &carrier, "trusted-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_take_more_than_its_share_of_calls() {
    let config = UaConfig {
        admission: AdmissionConfig {
            max_calls_per_source: 2,
            ..AdmissionConfig::default()
        },
        ..UaConfig::default()
    };
    let ua = start_ua(config).await;
    let hog = client_at("127.0.0.5", ua.addr()).await;
    let media = SocketAddr::from(([127, 0, 0, 5], 40_000));
    for i in 0..2 {
        let id = format!("hog-{i}");
        hog.send(invite_with_media(local(&hog), &id, "100", media).as_bytes())
            .await;
        expect(&hog, 200, &id, "INVITE").await;
    }
    hog.send(invite_with_media(local(&hog), "hog-2", "100", media).as_bytes())
        .await;
    let refused = expect(&hog, 503, "hog-2", "INVITE").await;
    assert!(header(&refused, "Retry-After").is_some(), "{refused}");
    let other = client_at("127.0.0.6", ua.addr()).await;
    legitimate_call(&ua, &other, "fair-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unrouted_invites_frees_every_slot_and_a_routed_call_completes() {
    // 50 call slots; 2,000 refused INVITEs. Were a refused INVITE to hold its slot until
    // its transaction ends (32 s), the routed call after the flood would get 503.
    let config = UaConfig {
        admission: AdmissionConfig {
            max_calls: 50,
            ..AdmissionConfig::default()
        },
        ..UaConfig::default()
    };
    let ua = start_ua(config).await;
    let mut senders = Vec::new();
    for host in 1..=9u8 {
        for _ in 0..10 {
            senders.push(std::sync::Arc::new(
                client_at(&format!("127.0.0.{host}"), ua.addr()).await,
            ));
        }
    }
    const FLOOD: usize = 2_000;
    // Each sender counts the 404s to its own INVITEs until it has them all (or 30 s pass).
    let mut answered = tokio::task::JoinSet::new();
    for (k, s) in senders.iter().enumerate() {
        let expected = (0..FLOOD).filter(|i| i % senders.len() == k).count();
        let s = std::sync::Arc::clone(s);
        answered.spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let mut finals = 0;
            while finals < expected {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let Some(msg) = s.recv(left).await else { break };
                match status_of(&msg) {
                    Some(404) => finals += 1,
                    Some(100) => {}
                    other => panic!("unexpected {other:?}: {msg}"),
                }
            }
            finals
        });
    }
    let media = SocketAddr::from(([127, 0, 0, 1], 40_000));
    let started = tokio::time::Instant::now();
    let mut pace = tokio::time::interval(Duration::from_millis(2));
    for i in 0..FLOOD {
        pace.tick().await;
        let s = &senders[i % senders.len()];
        let id = format!("flood-{i}");
        s.send(invite_with_media(local(s), &id, "999", media).as_bytes())
            .await;
    }
    assert!(started.elapsed() < Duration::from_secs(5), "flood too slow");
    let mut finals = 0;
    while let Some(n) = answered.join_next().await {
        finals += n.unwrap();
    }
    assert_eq!(finals, FLOOD, "every refused INVITE got its 404");
    assert_eq!(
        ua.store.count(CallState::Ringing),
        0,
        "no unrouted call recorded"
    );
    let caller = client_at("127.0.0.10", ua.addr()).await;
    legitimate_call(&ua, &caller, "after-flood").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refer_from_the_caller_is_refused_unless_the_route_allows_it() {
    let ua = start_ua(UaConfig::default()).await;
    let c = client_at("127.0.0.1", ua.addr()).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.send(invite_with_media(local(&c), "refer-1", "100", media.local_addr().unwrap()).as_bytes())
        .await;
    let ok = expect(&c, 200, "refer-1", "INVITE").await;
    let to = header(&ok, "To").unwrap().to_owned();
    c.send(ack(local(&c), "refer-1", &to).as_bytes()).await;
    let refer = common::in_dialog(c.port(), "refer-1", "REFER", 2, &to_tag(&ok), ("", "")).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRefer-To: <sip:someone@203.0.113.9>\r\n",
    );
    c.send(refer.as_bytes()).await;
    expect(&c, 403, "refer-1", "REFER").await;
    assert_eq!(ua.store.count(CallState::Transferring), 0);
    // The call goes on: the caller hangs up normally.
    let bye = common::in_dialog(c.port(), "refer-1", "BYE", 3, &to_tag(&ok), ("", ""));
    c.send(bye.as_bytes()).await;
    expect(&c, 200, "refer-1", "BYE").await;
    assert_eq!(ua.store.ended_with(EndCause::CallerHangup), 1);
    legitimate_call(&ua, &c, "refer-legit").await;
}

/// An OPTIONS over TCP on `stream`; true when a 200 comes back within WAIT, false when the
/// server closed the connection (or said nothing).
async fn tcp_options_ok(stream: &mut tokio::net::TcpStream, n: usize) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let me = stream.local_addr().unwrap();
    let msg = format!(
        "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK-tcp-{n}\r\n\
         From: <sip:t@127.0.0.1>;tag=o{n}\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: tcp-{n}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    if stream.write_all(msg.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_hold_more_than_32_tcp_connections() {
    use tokio::net::{TcpSocket, TcpStream};
    let ua = start_ua(UaConfig::default()).await;
    let server = ua.addr();
    let from = |ip: &str| {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        async move {
            s.connect(server)
                .await
                .expect("the TCP handshake completes")
        }
    };
    // 40 connections from one address: 32 are served, the rest closed at once.
    let mut held: Vec<TcpStream> = Vec::new();
    let mut served = 0;
    for n in 0..40 {
        let mut s = from("127.0.0.1").await;
        if tcp_options_ok(&mut s, n).await {
            served += 1;
        }
        held.push(s);
    }
    assert_eq!(served, 32, "the per-source cap");
    // Another source is not affected, and a legitimate UDP call completes.
    let mut other = from("127.0.0.2").await;
    assert!(tcp_options_ok(&mut other, 100).await);
    let caller = client_at("127.0.0.3", ua.addr()).await;
    legitimate_call(&ua, &caller, "after-tcp-flood").await;
    // Closing connections gives the source its slots back.
    held.truncate(20);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = from("127.0.0.1").await;
    assert!(
        tcp_options_ok(&mut again, 200).await,
        "a freed slot is reused"
    );
}

/// A `play:` prompt is read from disk once, however many calls ask for it: with the file
/// deleted after the first call, twenty more calls still answer and hear it (a read per
/// INVITE would fail every one of them, and would put a disk read on the async runtime).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_is_read_from_disk_once_however_many_calls_ask_for_it() {
    use std::sync::Arc;
    use voice::ua::{InMemoryCallStore, StaticRouter};
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("prompt.wav");
    std::fs::write(
        &wav,
        audio::wav::encode_wav(8_000, 1, &vec![3_000; 8_000 * 3]),
    )
    .unwrap();
    let store = Arc::new(InMemoryCallStore::new());
    let app = format!("play:{}", wav.display());
    let router = Arc::new(StaticRouter::new().with("100", "acme", &app));
    let server =
        common::start_on_loopback(UaConfig::default(), router, Arc::clone(&store) as _).await;
    let ua = common::Ua { server, store };
    let first = client_at("127.0.0.1", ua.addr()).await;
    legitimate_call(&ua, &first, "prompt-0").await;
    std::fs::remove_file(&wav).unwrap();
    for i in 1..=20 {
        let c = client_at("127.0.0.1", ua.addr()).await;
        legitimate_call(&ua, &c, &format!("prompt-{i}")).await;
    }
}
