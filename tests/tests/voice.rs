//! Voice through the whole gateway: the real SIPp calls numbers routed with the gateway's own
//! storage (`voice_routes`), every call is persisted through the committer as the pure call
//! machine's steps, and `GET /api/v1/calls` shows them with their history, per org only.
//! Both backends.

use integration_tests::both_backends;
use integration_tests::env::{count, create_org, Backend, World};
use serde_json::Value;
use std::net::SocketAddr;

/// Runs SIPp's built-in `uac` scenario (INVITE → 200 → ACK → pause → BYE) against `sip`,
/// dialling `number`; returns whether every call succeeded.
async fn sipp_uac(sip: SocketAddr, number: &str, calls: u32) -> bool {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tokio::process::Command::new("sipp")
        .args([
            "-sn",
            "uac",
            &sip.to_string(),
            "-s",
            number,
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &calls.to_string(),
            "-r",
            "20",
            "-d",
            "200",
            "-timeout",
            "30s",
            "-nostdin",
            "-nd",
        ])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("sipp must be installed (scripts/ensure-voice-peers.sh): {e}"));
    if !out.status.success() {
        eprintln!(
            "sipp: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// Sends one INVITE over a plain UDP socket and returns the first final status.
async fn invite_status(sip: SocketAddr, number: &str) -> u16 {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:{number}@{sip} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-unrouted-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tester@{me}>;tag=t1\r\n\
         To: <sip:{number}@{sip}>\r\n\
         Call-ID: unrouted-1@{me}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:tester@{me}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(invite.as_bytes(), sip).await.unwrap();
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, _) =
            tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv_from(&mut buf))
                .await
                .expect("an answer within 5 s")
                .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        if status >= 200 {
            return status;
        }
    }
}

async fn calls_are_persisted_with_their_history(backend: Backend) {
    let w = World::new(backend).await;
    let sip = w.gw.running.sip.as_ref().expect("SIP is on").local_addr();
    let sip = SocketAddr::from(([127, 0, 0, 1], sip.port()));
    assert!(
        gateway::db::calls::add_route(&w.db.pool, &w.org.id, "+1 555 010 0000", "echo", 0)
            .await
            .unwrap()
    );
    assert!(sipp_uac(sip, "15550100000", 10).await, "10 calls, 0 failed");
    let calls: Value =
        integration_tests::env::eventually(std::time::Duration::from_secs(10), || async {
            let c = w.get_json(&w.org, "/api/v1/calls").await;
            let all_ended = c.as_array()?.iter().all(|c| c["state"] == "ended");
            (c.as_array()?.len() == 10 && all_ended).then_some(c)
        })
        .await;
    for call in calls.as_array().unwrap() {
        assert_eq!(call["to"], "15550100000");
        assert!(call["from"].as_str().unwrap().contains("sipp"), "{call}");
        assert_eq!(call["app"], "echo");
        assert_eq!(call["cause"], "caller_hangup");
        let steps: Vec<(&str, &str)> = call["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["state"].as_str().unwrap(), s["event"].as_str().unwrap()))
            .collect();
        assert_eq!(
            steps,
            vec![
                ("ringing", "invite"),
                ("answered", "answer"),
                ("ended", "caller_hangup")
            ]
        );
        assert!(call["answered_at"].as_i64().is_some() && call["ended_at"].as_i64().is_some());
        let one = w
            .get_json(
                &w.org,
                &format!("/api/v1/calls/{}", call["id"].as_str().unwrap()),
            )
            .await;
        assert_eq!(one["id"], call["id"]);
    }
    // Each step is an event on the org's log.
    let events = count(&w.db, "outbox", &w.org.id).await;
    assert!(events >= 30, "{events} events for 30 steps");

    // Another org sees none of them, and gets 404 for one of them by id.
    let globex = create_org(&w.db, "globex", &w.twilio.base, 10.0).await;
    assert_eq!(
        w.get_json(&globex, "/api/v1/calls").await,
        serde_json::json!([])
    );
    let id = calls[0]["id"].as_str().unwrap();
    let r = w
        .client
        .get(format!("{}/api/v1/calls/{id}", w.gw.base))
        .bearer_auth(&globex.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A number nobody routed is refused (404) and leaves no call behind.
    assert_eq!(invite_status(sip, "19990000000").await, 404);
    assert_eq!(count(&w.db, "calls", &w.org.id).await, 10);
    assert_eq!(count(&w.db, "calls", &globex.id).await, 0);
    w.gw.stop().await;
}
both_backends!(calls_are_persisted_with_their_history);

/// `voice route add|list` and `voice agent add` through the real binary: good input is
/// stored (the agent's password only as HA1), bad input is refused with a clear message and
/// changes nothing, and one org cannot take another's number or username.
#[test]
fn voice_cli_routes_numbers_and_creates_agents() {
    let dir = integration_tests::env::TempDir::new();
    let url = format!("sqlite://{}/cli.db", dir.0.display());
    let run = |args: &[&str]| {
        let out = std::process::Command::new(integration_tests::env::gateway_binary())
            .args(args)
            .env("DARTWING_DATABASE_URL", &url)
            .env("DARTWING_LOG", "warn")
            .output()
            .expect("run the gateway binary");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(run(&["org", "create", "acme"]).0);
    assert!(run(&["org", "create", "globex"]).0);
    let (ok, out, _) = run(&[
        "voice",
        "route",
        "add",
        "--org",
        "acme",
        "--number",
        "+1 555 010 0000",
        "--app",
        "menu",
    ]);
    assert!(ok);
    assert!(out.contains("15550100000"), "{out}");
    let (ok, _, err) = run(&[
        "voice",
        "route",
        "add",
        "--org",
        "acme",
        "--number",
        "+15550100001",
        "--app",
        "dance",
    ]);
    assert!(!ok && err.contains("unknown application"), "{err}");
    let (ok, _, err) = run(&[
        "voice",
        "route",
        "add",
        "--org",
        "acme",
        "--number",
        "+15550100002",
        "--app",
        "play:/nonexistent.wav",
    ]);
    assert!(!ok && err.contains("cannot read"), "{err}");
    let (ok, _, err) = run(&[
        "voice",
        "route",
        "add",
        "--org",
        "globex",
        "--number",
        "15550100000",
        "--app",
        "echo",
    ]);
    assert!(!ok && err.contains("another organization"), "{err}");
    let (ok, out, _) = run(&["voice", "route", "list", "--org", "acme"]);
    assert!(ok);
    assert_eq!(out.trim(), "15550100000\tmenu");

    let (ok, _, err) = run(&[
        "voice",
        "agent",
        "add",
        "--org",
        "acme",
        "--username",
        "alice",
        "--password",
        "short",
    ]);
    assert!(!ok && err.contains("at least 8"), "{err}");
    let (ok, out, _) = run(&[
        "voice",
        "agent",
        "add",
        "--org",
        "acme",
        "--username",
        "alice",
        "--password",
        "correct horse",
    ]);
    assert!(ok, "{out}");
    let (ok, _, err) = run(&[
        "voice",
        "agent",
        "add",
        "--org",
        "globex",
        "--username",
        "alice",
        "--password",
        "another pass",
    ]);
    assert!(!ok && err.contains("another organization"), "{err}");
    let mut db = std::fs::read(dir.0.join("cli.db")).unwrap();
    // What is not yet checkpointed into the file is in its WAL.
    db.extend(std::fs::read(dir.0.join("cli.db-wal")).unwrap_or_default());
    let text = String::from_utf8_lossy(&db);
    assert!(
        !text.contains("correct horse"),
        "the password is not stored"
    );
    assert!(
        text.contains(&gateway::db::calls::digest_ha1(
            "alice",
            "dartwing",
            "correct horse"
        )),
        "its HA1 is"
    );
}
