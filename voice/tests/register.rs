//! REGISTER with digest authentication: SIPp registers an agent with its password; wrong
//! credentials, someone else's address and a missing registrar are refused.

mod sip_common;
use sip_common as common;

use common::{free_udp_port, header, sipp, status_of, Client};
use std::sync::Arc;
use std::time::Duration;
use voice::sip::digest::{expected_response, ha1, Credentials};
use voice::ua::{
    start, start_with, InMemoryCallStore, InMemoryRegistrar, Registrar, StaticRouter, UaConfig,
    UaPorts,
};

const WAIT: Duration = Duration::from_secs(2);

async fn start_registrar() -> (voice::ua::SipServer, Arc<InMemoryRegistrar>) {
    let registrar = Arc::new(InMemoryRegistrar::new());
    registrar.add_agent("acme", "dartwing", "agent1", "s3cret");
    let ports = UaPorts {
        router: Arc::new(StaticRouter::new()),
        store: Arc::new(InMemoryCallStore::new()),
        registrar: Some(Arc::clone(&registrar) as _),
    };
    let config = UaConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..UaConfig::default()
    };
    (start_with(config, ports).await.unwrap(), registrar)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_registers_with_digest_and_the_binding_is_stored() {
    let (server, registrar) = start_registrar().await;
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("register.xml");
    std::fs::write(&xml, include_str!("scenarios/register_digest.xml")).unwrap();
    let port = free_udp_port();
    let out = sipp(&[
        "-sf",
        xml.to_str().unwrap(),
        &server.local_addr().to_string(),
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-au",
        "agent1",
        "-ap",
        "s3cret",
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "10s",
        "-timeout_error",
    ])
    .await;
    assert!(out.status.success(), "sipp failed: {}", out.status);
    let bindings = registrar.bindings("acme", "agent1").await.unwrap();
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].contact, format!("sip:agent1@127.0.0.1:{port}"));
}

fn register(port: u16, user: &str, cseq: u32, authorization: Option<&str>) -> String {
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-reg-{user}-{cseq};rport\r\n\
         From: <sip:{user}@127.0.0.1>;tag=r1\r\nTo: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: reg-{user}\r\nCSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@127.0.0.1:{port}>;expires=300\r\n{auth}\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn nonce_of(challenge: &str) -> String {
    let value = header(challenge, "WWW-Authenticate").expect("challenge");
    value
        .split("nonce=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .expect("nonce")
        .to_owned()
}

fn authorization(user: &str, password: &str, nonce: &str) -> String {
    authorization_nc(user, password, nonce, 1)
}

fn authorization_nc(user: &str, password: &str, nonce: &str, nc: u32) -> String {
    let nc = format!("{nc:08x}");
    // Each Authorization made here has a client nonce of its own, as a phone's would.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let cnonce = format!(
        "c{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let c = Credentials {
        username: user.into(),
        realm: "dartwing".into(),
        nonce: nonce.into(),
        uri: "sip:127.0.0.1".into(),
        qop: Some("auth".into()),
        nc: Some(nc.clone()),
        cnonce: Some(cnonce.clone()),
        ..Credentials::default()
    };
    let response = expected_response(&ha1(user, "dartwing", password), "REGISTER", &c);
    format!(
        "Digest username=\"{user}\", realm=\"dartwing\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", \
         response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_other_address_and_forged_nonce_are_refused() {
    let (server, registrar) = start_registrar().await;
    let c = Client::new(server.local_addr()).await;
    let p = c.port();
    c.send(register(p, "agent1", 1, None).as_bytes()).await;
    let challenge = c.expect_status(401, WAIT).await;
    let nonce = nonce_of(&challenge);

    let wrong = authorization("agent1", "guess", &nonce);
    c.send(register(p, "agent1", 2, Some(&wrong)).as_bytes())
        .await;
    c.expect_status(403, WAIT).await;

    // Good credentials for agent1, but registering agent2's address.
    let good = authorization("agent1", "s3cret", &nonce);
    c.send(register(p, "agent2", 3, Some(&good)).as_bytes())
        .await;
    c.expect_status(403, WAIT).await;

    let forged = authorization(
        "agent1",
        "s3cret",
        "5f5e100.00000000000000000000000000000000",
    );
    c.send(register(p, "agent1", 4, Some(&forged)).as_bytes())
        .await;
    c.expect_status(401, WAIT).await;
    assert!(registrar
        .bindings("acme", "agent1")
        .await
        .unwrap()
        .is_empty());

    let next = authorization_nc("agent1", "s3cret", &nonce, 2);
    c.send(register(p, "agent1", 5, Some(&next)).as_bytes())
        .await;
    let ok = c.expect_status(200, WAIT).await;
    assert!(header(&ok, "Contact")
        .unwrap()
        .contains(&format!("127.0.0.1:{p}>;expires=")));
    assert_eq!(registrar.bindings("acme", "agent1").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_registrar_register_is_405() {
    let config = UaConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..UaConfig::default()
    };
    let server = start(
        config,
        Arc::new(StaticRouter::new()),
        Arc::new(InMemoryCallStore::new()),
    )
    .await
    .unwrap();
    let c = Client::new(server.local_addr()).await;
    c.send(register(c.port(), "agent1", 1, None).as_bytes())
        .await;
    let reply = c.recv(WAIT).await.expect("reply");
    assert_eq!(status_of(&reply), Some(405), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_authorization_and_a_nonce_from_elsewhere_are_challenged_again() {
    let (server, registrar) = start_registrar().await;
    let c = Client::new(server.local_addr()).await;
    let p = c.port();
    c.send(register(p, "agent1", 1, None).as_bytes()).await;
    let nonce = nonce_of(&c.expect_status(401, WAIT).await);
    let good = authorization("agent1", "s3cret", &nonce);
    c.send(register(p, "agent1", 2, Some(&good)).as_bytes())
        .await;
    c.expect_status(200, WAIT).await;
    registrar.unbind_all("acme", "agent1").await.unwrap();
    // The same Authorization again (what a listener on the path would send): refused.
    c.send(register(p, "agent1", 3, Some(&good)).as_bytes())
        .await;
    c.expect_status(401, WAIT).await;
    assert!(registrar
        .bindings("acme", "agent1")
        .await
        .unwrap()
        .is_empty());
    // The nonce issued to 127.0.0.1, used from 127.0.0.2 with a fresh count: not good there.
    let socket = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let elsewhere = Client {
        socket,
        server: server.local_addr(),
    };
    let moved = authorization_nc("agent1", "s3cret", &nonce, 7);
    let msg =
        register(elsewhere.port(), "agent1", 4, Some(&moved)).replace("127.0.0.1:", "127.0.0.2:");
    elsewhere.send(msg.as_bytes()).await;
    elsewhere.expect_status(401, WAIT).await;
    assert!(registrar
        .bindings("acme", "agent1")
        .await
        .unwrap()
        .is_empty());
    // The agent itself goes on: the next count of its nonce registers it.
    let next = authorization_nc("agent1", "s3cret", &nonce, 2);
    c.send(register(p, "agent1", 5, Some(&next)).as_bytes())
        .await;
    c.expect_status(200, WAIT).await;
    assert_eq!(registrar.bindings("acme", "agent1").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_passwords_is_throttled_per_source() {
    let (server, registrar) = start_registrar().await;
    registrar.add_agent("acme", "dartwing", "agent2", "other-s3cret");
    let guesser = Client::new(server.local_addr()).await;
    let p = guesser.port();
    guesser
        .send(register(p, "agent1", 1, None).as_bytes())
        .await;
    let nonce = nonce_of(&guesser.expect_status(401, WAIT).await);
    for i in 0..10u32 {
        let guess = authorization_nc("agent1", &format!("guess{i}"), &nonce, i + 1);
        guesser
            .send(register(p, "agent1", i + 2, Some(&guess)).as_bytes())
            .await;
        let refused = guesser.expect_status(403, WAIT).await;
        assert!(!refused.contains("too many"), "{refused}");
    }
    // The right password now gets the same refusal, unchecked: the source is throttled.
    let right = authorization_nc("agent1", "s3cret", &nonce, 20);
    guesser
        .send(register(p, "agent1", 30, Some(&right)).as_bytes())
        .await;
    let throttled = guesser.expect_status(403, WAIT).await;
    assert!(
        throttled.contains("too many failed attempts"),
        "{throttled}"
    );
    assert!(registrar
        .bindings("acme", "agent1")
        .await
        .unwrap()
        .is_empty());
    // Another agent on another address still registers.
    let socket = tokio::net::UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let other = Client {
        socket,
        server: server.local_addr(),
    };
    let q = other.port();
    let reg = |cseq, auth: Option<&str>| {
        register(q, "agent2", cseq, auth).replace("127.0.0.1:", "127.0.0.3:")
    };
    other.send(reg(1, None).as_bytes()).await;
    let nonce = nonce_of(&other.expect_status(401, WAIT).await);
    let good = authorization("agent2", "other-s3cret", &nonce);
    other.send(reg(2, Some(&good)).as_bytes()).await;
    other.expect_status(200, WAIT).await;
}

/// An agent's binding table is bounded: ten contacts register, the eleventh gets 403 and
/// binds nothing, and a refresh of a registered contact still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_holds_at_most_ten_contacts() {
    let (server, registrar) = start_registrar().await;
    let mut phones = Vec::new();
    for _ in 0..11 {
        phones.push(Client::new(server.local_addr()).await);
    }
    for (i, c) in phones.iter().enumerate() {
        let p = c.port();
        c.send(register(p, "agent1", 1, None).as_bytes()).await;
        let nonce = nonce_of(&c.expect_status(401, WAIT).await);
        let auth = authorization("agent1", "s3cret", &nonce);
        c.send(register(p, "agent1", 2, Some(&auth)).as_bytes())
            .await;
        if i < 10 {
            c.expect_status(200, WAIT).await;
        } else {
            let refused = c.expect_status(403, WAIT).await;
            assert!(refused.contains("at most 10 contacts"), "{refused}");
        }
    }
    assert_eq!(
        registrar.bindings("acme", "agent1").await.unwrap().len(),
        10
    );
    // The first phone refreshes its registration: still fine.
    let c = &phones[0];
    c.send(register(c.port(), "agent1", 3, None).as_bytes())
        .await;
    let nonce = nonce_of(&c.expect_status(401, WAIT).await);
    let auth = authorization_nc("agent1", "s3cret", &nonce, 1);
    c.send(register(c.port(), "agent1", 4, Some(&auth)).as_bytes())
        .await;
    c.expect_status(200, WAIT).await;
    assert_eq!(
        registrar.bindings("acme", "agent1").await.unwrap().len(),
        10
    );
}
