//! Transfer by REFER to an agent registered with digest credentials: the agent (a real
//! SIPp, first registering, then answering as `uas`) is called by our B2BUA leg and bridged;
//! the caller's BYE is passed on to the agent. The store sees every step.

mod sip_common;
use sip_common as common;

use common::{free_udp_port, header, in_dialog, invite, next_request, reply_to, sipp, Client};
use std::sync::Arc;
use std::time::Duration;
use voice::ua::{
    start_with, CallState, EndCause, InMemoryCallStore, InMemoryRegistrar, Registrar, Route,
    StaticRouter, UaConfig, UaPorts,
};

const WAIT: Duration = Duration::from_secs(3);

async fn start_ua() -> (voice::ua::SipServer, Arc<InMemoryCallStore>) {
    let registrar = Arc::new(InMemoryRegistrar::new());
    registrar.add_agent("acme", "dartwing", "agent1", "s3cret");
    let store = Arc::new(InMemoryCallStore::new());
    let ports = UaPorts {
        router: Arc::new(
            StaticRouter::new().with_route(
                "100",
                Route::new("acme", "menu")
                    .with_agent("agent")
                    .allowing_refer(),
            ),
        ),
        store: Arc::clone(&store) as _,
        registrar: Some(registrar as _),
    };
    let config = UaConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..UaConfig::default()
    };
    (start_with(config, ports).await.unwrap(), store)
}

/// INVITE, 200, ACK from a raw caller; returns our To tag.
async fn call(c: &Client, call_id: &str) -> String {
    c.send(invite(c.port(), call_id, "z9hG4bK-inv").as_bytes())
        .await;
    let ok = c.expect_status(200, WAIT).await;
    let to = header(&ok, "To").unwrap().to_owned();
    let ack = format!(
        "ACK sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-ack\r\n\
         From: <sip:caller@127.0.0.1>;tag=c1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        c.port()
    );
    c.send(ack.as_bytes()).await;
    common::to_tag(&ok)
}

fn refer(port: u16, call_id: &str, to_tag: &str, agent: &str) -> String {
    in_dialog(port, call_id, "REFER", 2, to_tag, ("", "")).replace(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\nRefer-To: <sip:{agent}@127.0.0.1>\r\nContact: <sip:caller@127.0.0.1:{port}>\r\n"),
    )
}

/// Answers NOTIFYs until one carries a final sipfrag; returns that status line.
async fn final_notify(c: &Client) -> String {
    loop {
        let notify = next_request(c, WAIT).await;
        assert!(notify.starts_with("NOTIFY "), "{notify}");
        assert_eq!(header(&notify, "Event"), Some("refer"));
        c.send(reply_to(&notify, 200, "OK").as_bytes()).await;
        let frag = notify
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .trim()
            .to_owned();
        if !frag.starts_with("SIP/2.0 1") {
            assert!(header(&notify, "Subscription-State")
                .unwrap()
                .starts_with("terminated"));
            return frag;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refer_bridges_the_caller_to_a_registered_sipp_agent() {
    let (server, store) = start_ua().await;
    let target = server.local_addr().to_string();
    let agent_port = free_udp_port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("register.xml");
    std::fs::write(&xml, include_str!("scenarios/register_digest.xml")).unwrap();
    let registered = sipp(&[
        "-sf",
        xml.to_str().unwrap(),
        &target,
        "-i",
        "127.0.0.1",
        "-p",
        &agent_port,
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
    assert!(registered.status.success(), "agent did not register");
    // The agent now answers one call on the port it registered from.
    let agent = tokio::spawn(async move {
        sipp(&[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &agent_port,
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "20s",
            "-timeout_error",
        ])
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let c = Client::new(server.local_addr()).await;
    let tag = call(&c, "xfer-1").await;
    c.send(refer(c.port(), "xfer-1", &tag, "agent1").as_bytes())
        .await;
    let accepted = c.expect_status(202, WAIT).await;
    assert_eq!(header(&accepted, "CSeq"), Some("2 REFER"));
    assert_eq!(final_notify(&c).await, "SIP/2.0 200 OK");

    let bye = in_dialog(c.port(), "xfer-1", "BYE", 3, &tag, ("", ""));
    c.send(bye.as_bytes()).await;
    c.expect_status(200, WAIT).await;
    let out = agent.await.unwrap();
    assert!(
        out.status.success(),
        "the agent's uas scenario failed: {}",
        out.status
    );
    assert!(common::eventually(WAIT, || store.ended_with(EndCause::CallerHangup) == 1).await);
    let states: Vec<CallState> = store.transitions().iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [
            CallState::Ringing,
            CallState::Answered,
            CallState::Transferring,
            CallState::Bridged,
            CallState::Ended {
                cause: EndCause::CallerHangup
            }
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refer_to_an_unregistered_agent_reports_480_and_the_call_goes_on() {
    let (server, store) = start_ua().await;
    let c = Client::new(server.local_addr()).await;
    let tag = call(&c, "xfer-2").await;
    c.send(refer(c.port(), "xfer-2", &tag, "agent1").as_bytes())
        .await;
    c.expect_status(202, WAIT).await;
    assert_eq!(
        final_notify(&c).await,
        "SIP/2.0 480 Temporarily Unavailable"
    );
    let bye = in_dialog(c.port(), "xfer-2", "BYE", 3, &tag, ("", ""));
    c.send(bye.as_bytes()).await;
    c.expect_status(200, WAIT).await;
    assert!(common::eventually(WAIT, || store.ended_with(EndCause::CallerHangup) == 1).await);
    let states: Vec<CallState> = store.transitions().iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [
            CallState::Ringing,
            CallState::Answered,
            CallState::Transferring,
            CallState::Answered,
            CallState::Ended {
                cause: EndCause::CallerHangup
            }
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menu_key_1_pressed_by_rtp_transfers_to_the_registered_agent() {
    let registrar = Arc::new(InMemoryRegistrar::new());
    registrar.add_agent("acme", "dartwing", "agent", "pw");
    let store = Arc::new(InMemoryCallStore::new());
    let ports = UaPorts {
        router: Arc::new(
            StaticRouter::new().with_route(
                "100",
                Route::new("acme", "menu")
                    .with_agent("agent")
                    .allowing_refer(),
            ),
        ),
        store: Arc::clone(&store) as _,
        registrar: Some(registrar as _),
    };
    let config = UaConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..UaConfig::default()
    };
    let server = start_with(config, ports).await.unwrap();
    let target = server.local_addr().to_string();
    let dir = tempfile::tempdir().unwrap();

    // The agent registers as `agent` (the menu's transfer target), then answers as uas.
    let agent_port = free_udp_port().to_string();
    let register = dir.path().join("register.xml");
    let xml = include_str!("scenarios/register_digest.xml").replace("agent1", "agent");
    std::fs::write(&register, xml).unwrap();
    let registered = sipp(&[
        "-sf",
        register.to_str().unwrap(),
        &target,
        "-i",
        "127.0.0.1",
        "-p",
        &agent_port,
        "-au",
        "agent",
        "-ap",
        "pw",
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "10s",
        "-timeout_error",
    ])
    .await;
    assert!(registered.status.success(), "agent did not register");
    let messages = dir.path().join("agent-messages.log");
    let message_file = messages.to_str().unwrap().to_owned();
    let agent = tokio::spawn(async move {
        sipp(&[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &agent_port,
            "-m",
            "1",
            "-nostdin",
            "-trace_msg",
            "-message_file",
            &message_file,
            "-timeout",
            "20s",
            "-timeout_error",
        ])
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The caller presses 1 as RFC 4733 events in its RTP.
    let caller = dir.path().join("caller.xml");
    let xml = include_str!("scenarios/uac_dtmf_rtp.xml").replace("DIGIT", "1");
    std::fs::write(&caller, xml).unwrap();
    let port = free_udp_port().to_string();
    let media_port = (free_udp_port() & !1).to_string();
    let out = sipp(&[
        "-sf",
        caller.to_str().unwrap(),
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
        "1",
        "-nostdin",
        "-timeout",
        "20s",
        "-timeout_error",
    ])
    .await;
    assert!(
        out.status.success(),
        "caller scenario failed: {}",
        out.status
    );
    let agent = agent.await.unwrap();
    assert!(
        agent.status.success(),
        "agent was not called and hung up: {}",
        agent.status
    );
    assert!(common::eventually(WAIT, || store.ended() == 1).await);
    let states: Vec<CallState> = store.transitions().iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [
            CallState::Ringing,
            CallState::Answered,
            CallState::Transferring,
            CallState::Bridged,
            CallState::Ended {
                cause: EndCause::CallerHangup
            }
        ]
    );
    assert_eq!(store.ended_with(EndCause::CallerHangup), 1);
    // A warm transfer: the agent's phone is told who calls, why, and which call it is.
    let seen = std::fs::read_to_string(&messages).unwrap();
    let invite = seen
        .split("INVITE sip:")
        .nth(1)
        .expect("the agent's log holds our INVITE");
    let invite = invite.split("\r\n\r\n").next().unwrap();
    assert!(
        invite.contains("Subject: Menu: the caller pressed 1 for a person"),
        "{invite}"
    );
    assert!(invite.contains("From: \"sipp\" <sip:sipp@"), "{invite}");
    let call_id = store.transitions()[0].call_id.clone();
    assert!(
        invite.contains(&format!("X-Dartwing-Call-Id: {call_id}")),
        "{invite}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_digit_reaches_the_application_like_an_rtp_digit() {
    // The menu answers 1 with a transfer to `agent`, who is not registered: the history
    // shows the attempt, and the caller stays with the menu.
    let (server, store) = start_ua().await;
    let c = Client::new(server.local_addr()).await;
    let tag = call(&c, "info-menu").await;
    let info = in_dialog(
        c.port(),
        "info-menu",
        "INFO",
        2,
        &tag,
        ("application/dtmf-relay", "Signal=1\r\nDuration=160\r\n"),
    );
    c.send(info.as_bytes()).await;
    c.expect_status(200, WAIT).await;
    let seen = || {
        store
            .transitions()
            .iter()
            .map(|t| t.state)
            .collect::<Vec<_>>()
    };
    let failed_transfer = [
        CallState::Ringing,
        CallState::Answered,
        CallState::Transferring,
        CallState::Answered,
    ];
    assert!(
        common::eventually(WAIT, || seen() == failed_transfer).await,
        "{:?}",
        seen()
    );
    let bye = in_dialog(c.port(), "info-menu", "BYE", 3, &tag, ("", ""));
    c.send(bye.as_bytes()).await;
    c.expect_status(200, WAIT).await;
    assert!(common::eventually(WAIT, || store.ended_with(EndCause::CallerHangup) == 1).await);
}

/// An RTP packet of PCMU with every sample byte `byte` (0xFF is silence).
fn rtp(seq: u16, byte: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend(std::iter::repeat_n(byte, 160));
    p
}

fn sdp_port(msg: &str) -> u16 {
    msg.split("m=audio ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("m=audio port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridged_agent_hears_the_caller() {
    let registrar = Arc::new(InMemoryRegistrar::new());
    let store = Arc::new(InMemoryCallStore::new());
    let ports = UaPorts {
        router: Arc::new(
            StaticRouter::new().with_route(
                "100",
                Route::new("acme", "echo")
                    .with_agent("agent")
                    .allowing_refer(),
            ),
        ),
        store: Arc::clone(&store) as _,
        registrar: Some(Arc::clone(&registrar) as _),
    };
    let config = UaConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..UaConfig::default()
    };
    let server = start_with(config, ports).await.unwrap();
    // The agent: a raw SIP socket and an RTP socket, bound directly in the registrar.
    let agent = Client::new(server.local_addr()).await;
    let agent_rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let agent_rtp_port = agent_rtp.local_addr().unwrap().port();
    registrar
        .bind(voice::ua::Binding {
            org: "acme".into(),
            user: "agent".into(),
            contact: format!("sip:agent@127.0.0.1:{}", agent.port()),
            expires_at: std::time::SystemTime::now() + Duration::from_secs(60),
            source: ([127, 0, 0, 1], agent.port()).into(),
        })
        .await
        .unwrap();
    // The caller: a call with the echo app, RTP flowing from its own socket.
    let caller = Client::new(server.local_addr()).await;
    let caller_rtp = tokio::net::UdpSocket::bind("127.0.0.1:40000").await;
    let caller_rtp = match caller_rtp {
        Ok(s) => s,
        Err(_) => tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
    };
    let offer_port = caller_rtp.local_addr().unwrap().port();
    let msg = invite(caller.port(), "bridge-1", "z9hG4bK-b1")
        .replace("m=audio 40000", &format!("m=audio {offer_port}"));
    caller.send(msg.as_bytes()).await;
    let ok = caller.expect_status(200, WAIT).await;
    let our_caller_leg = sdp_port(&ok);
    let to = header(&ok, "To").unwrap().to_owned();
    let ack = format!(
        "ACK sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-b1a\r\n\
         From: <sip:caller@127.0.0.1>;tag=c1\r\nTo: {to}\r\nCall-ID: bridge-1\r\nCSeq: 1 ACK\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        caller.port()
    );
    caller.send(ack.as_bytes()).await;

    server.transfer("bridge-1", "agent").await;
    let invite_to_agent = next_request(&agent, WAIT).await;
    assert!(
        invite_to_agent.starts_with("INVITE sip:agent@127.0.0.1:"),
        "{invite_to_agent}"
    );
    let our_agent_leg = sdp_port(&invite_to_agent);
    let answer = format!(
        "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {agent_rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    let to_line = header(&invite_to_agent, "To").unwrap();
    let ok = reply_to(&invite_to_agent, 200, "OK")
        .replace(
            &format!("To: {to_line}\r\n"),
            &format!("To: {to_line};tag=ag1\r\n"),
        )
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Contact: <sip:agent@127.0.0.1:{}>\r\nContent-Type: application/sdp\r\n\
                 Content-Length: {}\r\n\r\n{answer}",
                agent.port(),
                answer.len()
            ),
        );
    agent.send(ok.as_bytes()).await;
    let ack = next_request(&agent, WAIT).await;
    assert!(ack.starts_with("ACK "), "{ack}");

    // Both phones talk; the agent must receive the caller's (loud) audio, not only silence.
    let caller_to: std::net::SocketAddr = ([127, 0, 0, 1], our_caller_leg).into();
    let agent_to: std::net::SocketAddr = ([127, 0, 0, 1], our_agent_leg).into();
    let mut heard_caller = false;
    let mut buf = [0u8; 2048];
    for seq in 0..150u16 {
        caller_rtp
            .send_to(&rtp(seq, 0x10), caller_to)
            .await
            .unwrap();
        agent_rtp.send_to(&rtp(seq, 0xFF), agent_to).await.unwrap();
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(1), agent_rtp.recv_from(&mut buf)).await
        {
            if n > 12 && buf[1] & 0x7f == 0 && buf[12..n].iter().any(|b| *b != 0xFF) {
                heard_caller = true;
            }
        }
        if heard_caller {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(heard_caller, "the agent never received the caller's audio");
    let states: Vec<CallState> = store.transitions().iter().map(|t| t.state).collect();
    assert_eq!(states.last(), Some(&CallState::Bridged));
}
