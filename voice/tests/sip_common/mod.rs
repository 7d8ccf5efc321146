//! Test helpers: start the real user agent on a free loopback port, talk to it over a real
//! UDP socket, run the real SIPp against it.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use voice::ua::{start, InMemoryCallStore, SipServer, StaticRouter, UaConfig};

pub struct Ua {
    pub server: SipServer,
    pub store: Arc<InMemoryCallStore>,
}

impl Ua {
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// Starts the UA on 127.0.0.1 with number 100 → org `acme`, app `echo` (and `service`,
/// SIPp's default number, to the same).
pub async fn start_ua(config: UaConfig) -> Ua {
    let store = Arc::new(InMemoryCallStore::new());
    let router = Arc::new(
        StaticRouter::new()
            .with("100", "acme", "echo")
            .with("service", "acme", "echo"),
    );
    let server = start_on_loopback(config, router, Arc::clone(&store) as _).await;
    Ua { server, store }
}

/// The UA on a free loopback port with this router and store (a test's own store: one that
/// gates, refuses or records).
pub async fn start_on_loopback(
    config: UaConfig,
    router: Arc<StaticRouter>,
    store: Arc<dyn voice::ua::CallStore>,
) -> SipServer {
    let config = UaConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    start(config, router, store).await.expect("UA starts")
}

/// A raw SIP client on a UDP socket.
pub struct Client {
    pub socket: UdpSocket,
    pub server: SocketAddr,
}

impl Client {
    pub async fn new(server: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Self { socket, server }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().unwrap().port()
    }

    pub async fn send(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).await.unwrap();
    }

    /// The next datagram as text, or None after `wait`.
    pub async fn recv(&self, wait: Duration) -> Option<String> {
        let mut buf = vec![0u8; 65_536];
        match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    /// Receives until a response with this status arrives (skipping others).
    pub async fn expect_status(&self, status: u16, wait: Duration) -> String {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(msg) = self.recv(left).await else {
                panic!("no {status} within {wait:?}");
            };
            if status_of(&msg) == Some(status) {
                return msg;
            }
        }
    }

    /// An OPTIONS round trip works (the server is alive and answering).
    pub async fn options_ok(&self) -> bool {
        let branch = format!("z9hG4bK-opt-{}", fastrand::u64(..));
        self.send(options(self.port(), &branch).as_bytes()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                None => return false,
                Some(m) if m.contains(&branch) && status_of(&m) == Some(200) => return true,
                Some(_) => {}
            }
        }
    }
}

pub fn status_of(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// The value of a header in a received message.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub fn options(port: u16, branch: &str) -> String {
    format!(
        "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n\
         From: <sip:t@127.0.0.1>;tag=o1\r\n\
         To: <sip:100@127.0.0.1>\r\n\
         Call-ID: opt-{branch}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

pub const SDP: &str = "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

pub fn invite(port: u16, call_id: &str, branch: &str) -> String {
    format!(
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n\
         From: <sip:caller@127.0.0.1>;tag=c1\r\n\
         To: <sip:100@127.0.0.1>\r\n\
         Contact: <sip:caller@127.0.0.1:{port}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Max-Forwards: 70\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

/// A request in the dialog of `invite(port, call_id, _)` once answered with `to_tag`.
pub fn in_dialog(
    port: u16,
    call_id: &str,
    method: &str,
    cseq: u32,
    to_tag: &str,
    body: (&str, &str),
) -> String {
    let (content_type, body) = body;
    let ct = if content_type.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {content_type}\r\n")
    };
    format!(
        "{method} sip:100@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{method}-{cseq}-{call_id};rport\r\n\
         From: <sip:caller@127.0.0.1>;tag=c1\r\n\
         To: <sip:100@127.0.0.1>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Max-Forwards: 70\r\n\
         {ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The tag parameter of a To header value.
pub fn to_tag(msg: &str) -> String {
    let to = header(msg, "To").expect("To");
    to.split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .expect("To tag")
        .to_owned()
}

/// Runs SIPp with these arguments; panics (never skips) when sipp is not installed.
pub async fn sipp(args: &[&str]) -> std::process::Output {
    let out = tokio::process::Command::new("sipp")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("sipp must be installed for this test (scripts/ensure-voice-peers.sh): {e}")
        });
    if !out.status.success() {
        eprintln!(
            "sipp {:?} failed: {}\n{}\n{}",
            args,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A free local UDP port for SIPp to listen on.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `f` holds or `wait` passes.
pub async fn eventually(wait: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// A response to a received request: Via, From, To, Call-ID and CSeq copied.
pub fn reply_to(request: &str, status: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    for line in request.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let name = line.split(':').next().unwrap_or_default().trim();
        if ["Via", "From", "To", "Call-ID", "CSeq"]
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
        {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// The next request (not a response) received, skipping responses.
pub async fn next_request(c: &Client, wait: Duration) -> String {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = c.recv(left).await.expect("a request");
        if !msg.starts_with("SIP/2.0") {
            return msg;
        }
    }
}

/// How long the call helpers below wait for an answer.
pub const CALL_WAIT: Duration = Duration::from_secs(3);

/// An INVITE from a client at `from` whose SDP puts its media at `media`.
pub fn invite_with_media(
    from: SocketAddr,
    call_id: &str,
    number: &str,
    media: SocketAddr,
) -> String {
    let sdp = format!(
        "v=0\r\no=t 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        ip = media.ip(),
        port = media.port()
    );
    format!(
        "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-{call_id};rport\r\n\
         From: <sip:caller@{ip}>;tag=c1\r\nTo: <sip:{number}@127.0.0.1>\r\n\
         Contact: <sip:caller@{from}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Max-Forwards: 70\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len(),
        ip = from.ip(),
    )
}

pub fn ack(from: SocketAddr, call_id: &str, to: &str) -> String {
    format!(
        "ACK sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-ack-{call_id}\r\n\
         From: <sip:caller@{ip}>;tag=c1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        ip = from.ip()
    )
}

pub fn bye(from: SocketAddr, call_id: &str, tag: &str) -> String {
    format!(
        "BYE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-bye-{call_id}\r\n\
         From: <sip:caller@{ip}>;tag=c1\r\nTo: <sip:100@127.0.0.1>;tag={tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        ip = from.ip()
    )
}

pub async fn client_at(ip: &str, server: SocketAddr) -> Client {
    let socket = UdpSocket::bind((ip, 0))
        .await
        .expect("loopback alias binds");
    Client { socket, server }
}

pub fn local(c: &Client) -> SocketAddr {
    c.socket.local_addr().unwrap()
}

/// The next response with `status` to this call's `method` (stale retransmissions of other
/// responses skipped), or a panic at the deadline.
pub async fn expect(c: &Client, status: u16, call_id: &str, method: &str) -> String {
    let deadline = tokio::time::Instant::now() + CALL_WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(msg) = c.recv(left).await else {
            panic!("no {status} to {method} of {call_id} within {CALL_WAIT:?}");
        };
        let cseq = header(&msg, "CSeq").unwrap_or_default();
        if status_of(&msg) == Some(status)
            && header(&msg, "Call-ID") == Some(call_id)
            && cseq.ends_with(method)
        {
            return msg;
        }
    }
}
