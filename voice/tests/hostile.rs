//! A corpus of malformed and hostile SIP sent over real sockets: each gets the status it
//! deserves or is dropped, and the server keeps answering OPTIONS afterwards.

mod sip_common;
use sip_common as common;

use common::{header, start_ua, status_of, Client};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use voice::ua::UaConfig;

const WAIT: Duration = Duration::from_millis(700);

fn request(port: u16, branch: &str, extra: &str, call_id: bool) -> String {
    let call_id = if call_id {
        format!("Call-ID: {branch}\r\n")
    } else {
        String::new()
    };
    format!(
        "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch}\r\n\
         From: <sip:t@127.0.0.1>;tag=h\r\nTo: <sip:100@127.0.0.1>\r\n\
         {call_id}CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_udp_corpus_gets_the_right_status_or_is_dropped() {
    let ua = start_ua(UaConfig::default()).await;
    let c = Client::new(ua.addr()).await;
    let p = c.port();
    let server = ua.addr();
    let invite = common::invite(p, "trunc-1", "z9hG4bK-trunc");
    let many_headers: String = (0..100).map(|i| format!("X-Filler-{i}: x\r\n")).collect();
    let huge_value = format!("X-Huge: {}\r\n", "a".repeat(30_000));
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        // Cut inside the SDP: Content-Length promises more than arrived.
        (
            "truncated body",
            invite.as_bytes()[..invite.len() - 20].to_vec(),
            Some(400),
        ),
        // Cut inside the start line: nothing to address a response with.
        (
            "truncated start line",
            invite.as_bytes()[..20].to_vec(),
            None,
        ),
        (
            "too many headers",
            request(
                p,
                "z9hG4bK-h1",
                &format!("{many_headers}Content-Length: 0\r\n\r\n"),
                true,
            )
            .into_bytes(),
            Some(513),
        ),
        (
            "huge header",
            request(
                p,
                "z9hG4bK-h2",
                &format!("{huge_value}Content-Length: 0\r\n\r\n"),
                true,
            )
            .into_bytes(),
            Some(513),
        ),
        (
            "bad Content-Length",
            request(p, "z9hG4bK-h3", "Content-Length: abc\r\n\r\n", true).into_bytes(),
            Some(400),
        ),
        (
            "negative Content-Length",
            request(p, "z9hG4bK-h4", "Content-Length: -1\r\n\r\n", true).into_bytes(),
            Some(400),
        ),
        (
            "missing Call-ID",
            request(p, "z9hG4bK-h5", "Content-Length: 0\r\n\r\n", false).into_bytes(),
            None,
        ),
        (
            "looped Via",
            request(
                p,
                "z9hG4bK-h6",
                &format!(
                    "Via: SIP/2.0/UDP {server};branch=z9hG4bK-ours\r\nContent-Length: 0\r\n\r\n"
                ),
                true,
            )
            .into_bytes(),
            Some(483),
        ),
        (
            "Max-Forwards 0",
            request(p, "z9hG4bK-h7", "Content-Length: 0\r\n\r\n", true)
                .replace("Max-Forwards: 70", "Max-Forwards: 0")
                .into_bytes(),
            Some(483),
        ),
        (
            "CSeq method mismatch",
            request(p, "z9hG4bK-h8", "Content-Length: 0\r\n\r\n", true)
                .replace("1 OPTIONS", "1 INVITE")
                .into_bytes(),
            Some(400),
        ),
        (
            "garbage bytes",
            (0..2000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
            None,
        ),
        ("a 60 KB datagram of junk", vec![b'A'; 60_000], None),
        ("empty lines only", b"\r\n\r\n".to_vec(), None),
        (
            "header without colon",
            request(
                p,
                "z9hG4bK-h9",
                "This line has no colon\r\nContent-Length: 0\r\n\r\n",
                true,
            )
            .into_bytes(),
            Some(400),
        ),
    ];
    for (name, bytes, expected) in cases {
        let dropped_before = ua.server.stats().dropped.load(Ordering::Relaxed);
        c.send(&bytes).await;
        let got = c.recv(WAIT).await;
        match expected {
            Some(status) => {
                let msg = got.unwrap_or_else(|| panic!("{name}: no response"));
                assert_eq!(status_of(&msg), Some(status), "{name}: {msg}");
                assert!(
                    header(&msg, "Call-ID").is_some(),
                    "{name}: response is addressed"
                );
            }
            None => {
                assert_eq!(got, None, "{name}: expected a drop");
                let dropped = ua.server.stats().dropped.load(Ordering::Relaxed);
                assert_eq!(dropped, dropped_before + 1, "{name}: counted as dropped");
            }
        }
        assert!(
            c.options_ok().await,
            "{name}: server stopped answering OPTIONS"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_megabyte_over_tcp_gets_513_and_the_connection_closes() {
    let ua = start_ua(UaConfig::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(ua.addr()).await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let body = vec![b'x'; 1 << 20];
    let head = request(
        port,
        "z9hG4bK-big",
        &format!("Content-Length: {}\r\n\r\n", body.len()),
        true,
    )
    .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    tcp.write_all(head.as_bytes()).await.unwrap();
    // The server may close before all of the body is written: that is the point.
    let _ = tcp.write_all(&body).await;
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(read.is_ok(), "connection not closed");
    assert_eq!(status_of(&reply), Some(513), "{reply}");
    let c = Client::new(ua.addr()).await;
    assert!(c.options_ok().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_message_in_small_pieces_is_answered() {
    let ua = start_ua(UaConfig::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(ua.addr()).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let port = tcp.local_addr().unwrap().port();
    let msg = request(port, "z9hG4bK-pieces", "Content-Length: 0\r\n\r\n", true)
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    for piece in msg.as_bytes().chunks(7) {
        tcp.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(status_of(&reply), Some(200), "{reply}");
    assert!(header(&reply, "Allow").unwrap().contains("INVITE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_connection_is_closed() {
    let mut config = UaConfig::default();
    config.transport.tcp_idle_timeout = Duration::from_millis(300);
    let ua = start_ua(config).await;
    let mut tcp = tokio::net::TcpStream::connect(ua.addr()).await.unwrap();
    // Half a message, then nothing.
    tcp.write_all(b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP ")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "not closed: {read:?}"
    );
}
