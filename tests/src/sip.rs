//! A plain UDP SIP client for the voice suites: REGISTER with digest in any realm, INVITE →
//! 200 → ACK with an SDP offer, INFO DTMF, and reading what the gateway sends. Every message
//! is written out as text, so a test shows exactly what went over the wire.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// A REGISTER of `sip:{user}@{domain}` from `port` (contact on 127.0.0.1), with an
/// `Authorization` header when given.
pub fn register_request(
    port: u16,
    user: &str,
    domain: &str,
    cseq: u32,
    authorization: Option<&str>,
) -> String {
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!(
        "REGISTER sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-reg-{user}-{domain}-{port}-{cseq};rport\r\n\
         From: <sip:{user}@{domain}>;tag=r1\r\nTo: <sip:{user}@{domain}>\r\n\
         Call-ID: reg-{user}-{port}\r\nCSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@127.0.0.1:{port}>;expires=300\r\n{auth}\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The status code of a response.
pub fn status_of(text: &str) -> Option<u16> {
    text.strip_prefix("SIP/2.0 ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Sends `request` and returns the first final response's status and text.
pub async fn exchange(sock: &UdpSocket, sip: SocketAddr, request: &str) -> (u16, String) {
    sock.send_to(request.as_bytes(), sip).await.unwrap();
    loop {
        let text = recv(sock, Duration::from_secs(5))
            .await
            .expect("an answer within 5 s");
        if let Some(status) = status_of(&text).filter(|s| *s >= 200) {
            return (status, text);
        }
    }
}

/// The next datagram on `sock` as text, if one comes within `wait`.
pub async fn recv(sock: &UdpSocket, wait: Duration) -> Option<String> {
    let mut buf = vec![0u8; 65_535];
    let (n, _) = tokio::time::timeout(wait, sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// A quoted parameter (`nonce`, `realm`) of a 401's `WWW-Authenticate`.
pub fn challenge_param(challenge: &str, name: &str) -> String {
    challenge
        .split(&format!("{name}=\""))
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap_or_else(|| panic!("a {name} in the challenge: {challenge}"))
        .to_owned()
}

/// A digest `Authorization` for REGISTER (qop=auth, count `nc`) with this password in
/// `realm`, for the request URI `sip:{domain}`.
pub fn digest_for(
    user: &str,
    realm: &str,
    password: &str,
    domain: &str,
    nonce: &str,
    nc: u32,
) -> String {
    use voice::sip::digest::{expected_response, ha1, Credentials};
    let nc = format!("{nc:08x}");
    let uri = format!("sip:{domain}");
    // A fresh client nonce, as a phone makes one.
    let cnonce = uuid::Uuid::new_v4().simple().to_string();
    let c = Credentials {
        username: user.into(),
        realm: realm.into(),
        nonce: nonce.into(),
        uri: uri.clone(),
        qop: Some("auth".into()),
        nc: Some(nc.clone()),
        cnonce: Some(cnonce.clone()),
        ..Credentials::default()
    };
    let response = expected_response(&ha1(user, realm, password), "REGISTER", &c);
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
    )
}

/// Registers `sip:{user}@{domain}` from `sock` with `password`: the challenge, then the
/// answer in the realm the gateway named. Returns the final status and text, and the realm.
pub async fn register(
    sock: &UdpSocket,
    sip: SocketAddr,
    user: &str,
    domain: &str,
    password: &str,
) -> (u16, String, String) {
    let port = sock.local_addr().unwrap().port();
    let (status, challenge) =
        exchange(sock, sip, &register_request(port, user, domain, 1, None)).await;
    assert_eq!(status, 401, "{challenge}");
    let (realm, nonce) = (
        challenge_param(&challenge, "realm"),
        challenge_param(&challenge, "nonce"),
    );
    let auth = digest_for(user, &realm, password, domain, &nonce, 1);
    let (status, text) = exchange(
        sock,
        sip,
        &register_request(port, user, domain, 2, Some(&auth)),
    )
    .await;
    (status, text, realm)
}

/// A call answered: INVITE (with an SDP offer for RTP on the socket's port + 2), 200, ACK,
/// from a plain UDP socket. Returns the socket and the 200's `To` (with the gateway's tag).
pub async fn answer_call(sip: SocketAddr, number: &str, call_id: &str) -> (UdpSocket, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp = sock.local_addr().unwrap().port() + 2;
    let (to, _) = call_with_rtp(&sock, sip, number, call_id, rtp).await;
    (sock, to)
}

/// [`answer_call`] from `sock` with RTP offered on `rtp_port`; returns the 200's `To` and
/// its whole text (the gateway's SDP answer says where to send RTP).
pub async fn call_with_rtp(
    sock: &UdpSocket,
    sip: SocketAddr,
    number: &str,
    call_id: &str,
    rtp_port: u16,
) -> (String, String) {
    let me = sock.local_addr().unwrap();
    let invite = invite_request(me, sip, number, call_id, rtp_port);
    let (status, ok) = exchange(sock, sip, &invite).await;
    assert_eq!(status, 200, "{ok}");
    let to = ok
        .lines()
        .find(|l| l.starts_with("To:"))
        .expect("a To in the 200")
        .trim_start_matches("To:")
        .trim()
        .to_owned();
    let ack = format!(
        "ACK sip:{number}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ack-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:tester@{me}>;tag=t1\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(ack.as_bytes(), sip).await.unwrap();
    (to, ok)
}

/// An INVITE from `me` to `number` at `sip`, offering PCMU on `rtp_port`.
pub fn invite_request(
    me: SocketAddr,
    sip: SocketAddr,
    number: &str,
    call_id: &str,
    rtp_port: u16,
) -> String {
    let sdp = format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    format!(
        "INVITE sip:{number}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:tester@{me}>;tag=t1\r\nTo: <sip:{number}@{sip}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:tester@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// Hangs up an answered call (BYE) and waits for its 200.
pub async fn hang_up(sock: &UdpSocket, sip: SocketAddr, number: &str, call_id: &str, to: &str) {
    let me = sock.local_addr().unwrap();
    let bye = format!(
        "BYE sip:{number}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-bye-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:tester@{me}>;tag=t1\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let (status, text) = exchange(sock, sip, &bye).await;
    assert_eq!(status, 200, "{text}");
}

/// Presses `digit` in an answered call (INFO, `application/dtmf-relay`) and waits for its
/// 200.
pub async fn press(
    sock: &UdpSocket,
    sip: SocketAddr,
    number: &str,
    call_id: &str,
    to: &str,
    digit: char,
) {
    let me = sock.local_addr().unwrap();
    let body = format!("Signal={digit}\r\nDuration=160\r\n");
    let info = format!(
        "INFO sip:{number}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-info-{call_id}-{digit}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:tester@{me}>;tag=t1\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: 2 INFO\r\nContent-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = exchange(sock, sip, &info).await;
    assert_eq!(status, 200, "{text}");
}

/// A response to `request` (its Via, From, Call-ID and CSeq; To with a tag of ours).
pub fn reply_to(request: &str, status: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    for line in request.lines().take_while(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim();
        if ["Via", "From", "Call-ID", "CSeq"]
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if name.eq_ignore_ascii_case("To") {
            out.push_str(line);
            out.push_str(";tag=phone\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}
