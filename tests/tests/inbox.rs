//! The Universal Inbox over real sockets on both backends: agent login (argon2, throttling,
//! tokens that expire and are revoked), the WebSocket protocol (replay from any point exactly
//! once and in order, the replay/live seam, tenant isolation, idempotent commands, slow
//! readers resynced), round-robin assignment, search and contact merges.

use gateway::db::agents;
use integration_tests::agent::{create_agent, login, AgentSocket};
use integration_tests::both_backends;
use integration_tests::env::{create_org, eventually, Backend, TestOrg, World};
use integration_tests::twilio::inbound_sms;
use serde_json::{json, Value};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

async fn sms(w: &World, org: &TestOrg, sid: &str, from: &str, body: &str) {
    let r = w
        .webhook(org, "sms", &inbound_sms(org, sid, from, body))
        .await;
    assert_eq!(r.status(), 200, "webhook taken");
}

/// Waits until the org's events are all numbered and returns the last seq.
async fn head(w: &World, org: &TestOrg, expect_received: usize) -> i64 {
    eventually(Duration::from_secs(15), || async {
        let (mut after, mut received) = (0, 0);
        loop {
            let page = w
                .get_json(org, &format!("/api/v1/events?after_seq={after}&limit=1000"))
                .await;
            let page = page.as_array().unwrap();
            let Some(last) = page.last() else { break };
            after = last["dartwingseq"].as_i64().unwrap();
            received += page
                .iter()
                .filter(|e| e["type"] == "dartwing.message.received.v1")
                .count();
        }
        (received == expect_received).then_some(after)
    })
    .await
}

fn seqs(frames: &[Value]) -> Vec<i64> {
    frames.iter().map(|f| f["seq"].as_i64().unwrap()).collect()
}

async fn login_throttling_and_tokens(backend: Backend) {
    let w = World::new(backend).await;
    create_agent(&w.db, &w.org.id, "Ann@Acme.test", PASSWORD, "agent").await;
    let token = login(&w.client, &w.gw.base, "ann@acme.test", PASSWORD).await;
    assert!(token.starts_with("dwa_"));
    // The token is stored hashed: the table never holds it.
    let stored: Vec<(String,)> = sqlx::query_as("SELECT token_hash FROM agent_sessions")
        .fetch_all(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].0, token);
    let hash: (String,) = sqlx::query_as("SELECT password_hash FROM agents")
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert!(hash.0.starts_with("$argon2id$") && !hash.0.contains(PASSWORD));

    let post = |email: &'static str, password: &'static str| {
        let (c, base) = (w.client.clone(), w.gw.base.clone());
        async move {
            c.post(format!("{base}/api/v1/login"))
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(post("ann@acme.test", "wrong password").await.status(), 401);
    assert_eq!(post("nobody@acme.test", PASSWORD).await.status(), 401);
    // Four more failures make five: then even the right password is refused for a while.
    for _ in 0..4 {
        assert_eq!(post("ann@acme.test", "still wrong").await.status(), 401);
    }
    let r = post("ann@acme.test", PASSWORD).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());

    // A good token works; forged, expired and revoked ones are refused before any event.
    sms(&w, &w.org, "SM0001", "+15550000001", "hello").await;
    head(&w, &w.org, 1).await;
    let mut s = AgentSocket::connect(&w.gw.base, &token, 0).await;
    let (events, _) = s.replay().await;
    assert!(!events.is_empty());
    s.close().await;

    let (agent, _) = agents::by_email(&w.db.pool, "ann@acme.test")
        .await
        .unwrap()
        .unwrap();
    let expired = agents::create_session(&w.db.pool, &agent, -1)
        .await
        .unwrap();
    let revoked = agents::create_session(&w.db.pool, &agent, 60_000)
        .await
        .unwrap();
    let r = w
        .client
        .post(format!("{}/api/v1/logout", w.gw.base))
        .bearer_auth(&revoked)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let forged = format!("dwa_{}", "0".repeat(64));
    for bad in [
        forged.as_str(),
        expired.as_str(),
        revoked.as_str(),
        w.org.key.as_str(),
    ] {
        let mut s = AgentSocket::open(&w.gw.base).await;
        s.send(json!({"type": "hello", "token": bad, "last_seq": 0}))
            .await;
        let f = s.next_json().await.expect("an answer");
        assert_eq!(f["type"], "error", "{bad} refused");
        assert_eq!(f["code"], "unauthorized");
        assert_eq!(s.close_code().await, Some(4401));
        // And over HTTP.
        let r = w
            .client
            .get(format!("{}/api/v1/inbox/conversations", w.gw.base))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    w.gw.stop().await;
}
both_backends!(login_throttling_and_tokens);

async fn resume_at_every_point_exactly_once(backend: Backend) {
    let w = World::new(backend).await;
    let globex = create_org(&w.db, "globex", &w.twilio.base, 1000.0).await;
    create_agent(&w.db, &w.org.id, "ann@acme.test", PASSWORD, "agent").await;
    // No room for round-robin assignments: the event stream is only what this test writes.
    sqlx::query("UPDATE agents SET capacity = 0")
        .execute(&w.db.pool)
        .await
        .unwrap();
    for i in 0..6 {
        sms(
            &w,
            &w.org,
            &format!("SMa{i:031}"),
            &format!("+1555000000{}", i % 2),
            "hi",
        )
        .await;
        sms(
            &w,
            &globex,
            &format!("SMg{i:031}"),
            "+15550000009",
            "other org",
        )
        .await;
    }
    let total = head(&w, &w.org, 6).await;
    head(&w, &globex, 6).await;
    let token = login(&w.client, &w.gw.base, "ann@acme.test", PASSWORD).await;
    // Every resume point: exactly the events after it, in order, only this org's.
    for k in 0..=total {
        let mut s = AgentSocket::connect(&w.gw.base, &token, k).await;
        let (events, caught_up) = s.replay().await;
        assert_eq!(
            seqs(&events),
            ((k + 1)..=total).collect::<Vec<_>>(),
            "resume at {k}"
        );
        assert_eq!(caught_up, total);
        for e in &events {
            assert_eq!(e["event"]["dartwingorgid"], w.org.id.as_str());
            assert_eq!(e["event"]["dartwingseq"], e["seq"]);
        }
        s.close().await;
    }
    // The seam: connect while events are being written; replay and live together still give
    // every event once, in order. A disconnect mid-stream resumes from the last seq seen.
    let mut last = total;
    let mut written = 6;
    for round in 0..4 {
        let (client, base, org, globex) = (
            w.client.clone(),
            w.gw.base.clone(),
            w.org.clone(),
            globex.clone(),
        );
        let writer = tokio::spawn(async move {
            for i in 0..10 {
                for (o, tag) in [(&org, "a"), (&globex, "g")] {
                    let params = inbound_sms(
                        o,
                        &format!("SM{tag}{round}x{i:029}"),
                        "+15550000003",
                        "live",
                    );
                    let path = format!("/webhooks/twilio/{}/sms", o.slug);
                    let r = integration_tests::twilio::post_signed(
                        &client,
                        &base,
                        &path,
                        &o.auth_token,
                        &params,
                    )
                    .await;
                    assert_eq!(r.status(), 200);
                }
            }
        });
        written += 10;
        let mut s = AgentSocket::connect(&w.gw.base, &token, last).await;
        let target = head(&w, &w.org, written).await;
        writer.await.unwrap();
        let mut got = Vec::new();
        // Drop the socket halfway through, then resume from what was seen.
        let cut = last + (target - last) / 2;
        while last < target {
            let f = s.next_json().await.expect("socket open");
            if f["type"] != "event" {
                continue;
            }
            assert_eq!(
                f["event"]["dartwingorgid"],
                w.org.id.as_str(),
                "never another org's"
            );
            let seq = f["seq"].as_i64().unwrap();
            assert_eq!(seq, last + 1, "round {round}: no gap, no duplicate");
            last = seq;
            got.push(seq);
            if last == cut {
                s.close().await;
                s = AgentSocket::connect(&w.gw.base, &token, last).await;
            }
        }
        s.close().await;
    }
    w.gw.stop().await;
}
both_backends!(resume_at_every_point_exactly_once);

async fn commands_are_acknowledged_once(backend: Backend) {
    let w = World::new(backend).await;
    let globex = create_org(&w.db, "globex", &w.twilio.base, 1000.0).await;
    create_agent(&w.db, &w.org.id, "ann@acme.test", PASSWORD, "agent").await;
    create_agent(&w.db, &w.org.id, "bob@acme.test", PASSWORD, "agent").await;
    sms(
        &w,
        &w.org,
        "SM0000000000000000000000000000001",
        "+15557654321",
        "where is my order?",
    )
    .await;
    sms(
        &w,
        &globex,
        "SM0000000000000000000000000000002",
        "+15557654321",
        "globex customer",
    )
    .await;
    head(&w, &w.org, 1).await;
    let ann = login(&w.client, &w.gw.base, "ann@acme.test", PASSWORD).await;
    let bob = login(&w.client, &w.gw.base, "bob@acme.test", PASSWORD).await;
    let list = |token: String| {
        let (c, base) = (w.client.clone(), w.gw.base.clone());
        async move {
            let r = c
                .get(format!("{base}/api/v1/inbox/conversations"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let inbox = list(ann.clone()).await;
    let conv = inbox["conversations"][0].clone();
    assert_eq!(
        inbox["conversations"].as_array().unwrap().len(),
        1,
        "only this org's"
    );
    assert_eq!(conv["unread"], 1);
    assert_eq!(conv["channel"], "sms");
    let conv_id = conv["id"].as_str().unwrap().to_string();
    let globex_conv = w.get_json(&globex, "/api/v1/conversations").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut a = AgentSocket::connect(&w.gw.base, &ann, inbox["head_seq"].as_i64().unwrap()).await;
    a.replay().await;
    let mut b = AgentSocket::connect(&w.gw.base, &bob, inbox["head_seq"].as_i64().unwrap()).await;
    b.replay().await;

    // Reply: acked once committed; the retry gets the same message and sends nothing new.
    let reply =
        json!({"type": "reply", "id": "r-1", "conversation_id": conv_id, "body": "On its way"});
    let (ack1, _) = a.command(reply.clone()).await;
    assert_eq!(ack1["type"], "ack", "{ack1}");
    let (ack2, _) = a.command(reply).await;
    assert_eq!(ack2["message_id"], ack1["message_id"]);
    let m = w
        .get_json(
            &w.org,
            &format!("/api/v1/messages/{}", ack1["message_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(m["to"], "+15557654321");
    assert_eq!(m["channel"], "sms");
    eventually(Duration::from_secs(10), || async {
        (w.twilio
            .received()
            .iter()
            .filter(|r| r.sid.is_some())
            .count()
            == 1)
            .then_some(())
    })
    .await;
    let outbound: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM messages WHERE direction = 'outbound'")
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(outbound.0, 1, "one reply for two tries");

    // Assign, resolve, read: each retry answers the same and appends nothing.
    for (cmd, field, value) in [
        (
            json!({"type": "assign", "id": "as-1", "conversation_id": conv_id}),
            "assignee_id",
            Value::Null,
        ),
        (
            json!({"type": "resolve", "id": "rs-1", "conversation_id": conv_id}),
            "status",
            json!("resolved"),
        ),
        (
            json!({"type": "reopen", "id": "ro-1", "conversation_id": conv_id}),
            "status",
            json!("open"),
        ),
        (
            json!({"type": "unassign", "id": "un-1", "conversation_id": conv_id}),
            "assignee_id",
            Value::Null,
        ),
        (
            json!({"type": "read", "id": "rd-1", "conversation_id": conv_id}),
            "conversation_id",
            json!(conv_id),
        ),
    ] {
        let (first, _) = a.command(cmd.clone()).await;
        assert_eq!(first["type"], "ack", "{cmd} → {first}");
        if !value.is_null() {
            assert_eq!(first[field], value, "{first}");
        }
        let (again, _) = a.command(cmd.clone()).await;
        assert_eq!(again, first, "retry of {cmd} answered alike");
    }
    // (The round-robin assigner also assigns the queued conversation to an online agent; its
    // events say `round_robin`.)
    let assigned: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM outbox WHERE type = 'dartwing.conversation.assigned.v1' \
         AND data LIKE '%\"by\":\"manual\"%'",
    )
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(
        assigned.0, 2,
        "one assign and one unassign, retries added none"
    );
    let inbox = list(ann.clone()).await;
    assert_eq!(inbox["conversations"][0]["unread"], 0, "marked read");
    assert_eq!(
        list(bob.clone()).await["conversations"][0]["unread"],
        1,
        "read marks are per agent"
    );

    // Bob sees Ann's commands as events, and her typing.
    let (typing, _) = a
        .command(json!({"type": "typing", "id": "t-1", "conversation_id": conv_id}))
        .await;
    assert_eq!(typing["type"], "ack");
    let (t, events) = b.until(|f| f["type"] == "typing").await;
    assert_eq!(t["conversation_id"], conv_id.as_str());
    let types: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event"]["type"].as_str())
        .collect();
    assert!(types.contains(&"dartwing.message.queued.v1"), "{types:?}");
    assert!(
        types.contains(&"dartwing.conversation.assigned.v1"),
        "{types:?}"
    );

    // Another org's conversation does not exist for this agent.
    for cmd in [
        json!({"type": "reply", "id": "x-1", "conversation_id": globex_conv, "body": "hi"}),
        json!({"type": "resolve", "id": "x-2", "conversation_id": globex_conv}),
        json!({"type": "assign", "id": "x-3", "conversation_id": globex_conv}),
    ] {
        let (e, _) = a.command(cmd).await;
        assert_eq!(e["type"], "error");
        assert_eq!(e["code"], "not_found", "{e}");
    }
    let r = w
        .client
        .get(format!(
            "{}/api/v1/inbox/conversations/{globex_conv}/messages",
            w.gw.base
        ))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A malformed command is answered and the socket stays.
    let (e, _) = a.command(json!({"type": "fly", "id": "z"})).await;
    assert_eq!(e["code"], "malformed");
    a.send(json!({"type": "ping"})).await;
    let (pong, _) = a.until(|f| f["type"] == "pong").await;
    assert_eq!(pong["type"], "pong");
    w.gw.stop().await;
}
both_backends!(commands_are_acknowledged_once);

async fn slow_reader_is_resynced(backend: Backend) {
    let w = World::with_config(backend, |c| {
        c.inbox.ws_queue_frames = 8;
        c.inbox.ws_slow_ms = 300;
    })
    .await;
    create_agent(&w.db, &w.org.id, "ann@acme.test", PASSWORD, "agent").await;
    let token = login(&w.client, &w.gw.base, "ann@acme.test", PASSWORD).await;
    // A reader with a tiny receive window that reads nothing for now.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let addr = w.gw.running.addr;
    let tcp = sock.connect(addr).await.unwrap();
    let mut slow = AgentSocket::open_on(&w.gw.base, tcp).await;
    slow.send(json!({"type": "hello", "token": token, "last_seq": 0}))
        .await;
    let big = "x".repeat(1500);
    let mut sent = 0;
    // Write until the server reports the resync (an observable, with a deadline).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = w.get_text("/metrics").await;
        if metrics
            .lines()
            .any(|l| l.starts_with("ws_resyncs_total") && !l.ends_with(" 0"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no resync after {sent} messages"
        );
        for _ in 0..20 {
            sms(&w, &w.org, &format!("SM{sent:032}"), "+15550000001", &big).await;
            sent += 1;
        }
    }
    // Now read: a prefix of the stream in order, then `resync` at the last seq sent, then close.
    let welcome = slow.next_json().await.unwrap();
    assert_eq!(welcome["type"], "welcome");
    let mut last = 0;
    let resync = loop {
        let f = slow.next_json().await.expect("resync before close");
        match f["type"].as_str() {
            Some("event") => {
                assert_eq!(f["seq"].as_i64().unwrap(), last + 1);
                last += 1;
            }
            Some("caught_up") => {}
            Some("resync") => break f,
            other => panic!("unexpected frame {other:?}"),
        }
    };
    assert_eq!(
        resync["seq"].as_i64().unwrap(),
        last,
        "resync names the last seq delivered"
    );
    assert_eq!(slow.close_code().await, Some(4409));
    let total = head(&w, &w.org, sent).await;
    assert!(
        last < total,
        "the slow reader was cut off ({last} of {total})"
    );
    // Resuming from the resync point gets the rest exactly once.
    let mut s = AgentSocket::connect(&w.gw.base, &token, last).await;
    let (events, _) = s.replay().await;
    assert_eq!(seqs(&events), ((last + 1)..=total).collect::<Vec<_>>());
    w.gw.stop().await;
}
both_backends!(slow_reader_is_resynced);

/// Server frames in `buf` (unmasked): (opcode, payload).
fn frames(mut buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while buf.len() >= 2 {
        let op = buf[0] & 0x0f;
        let (len, at) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 if buf.len() >= 10 => (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n if n < 126 => (n as usize, 2),
            _ => break,
        };
        if buf.len() < at + len {
            break;
        }
        out.push((op, buf[at..at + len].to_vec()));
        buf = &buf[at + len..];
    }
    out
}

async fn idle_socket_is_closed(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = World::with_config(backend, |c| {
        c.inbox.ws_idle_secs = 2;
        c.inbox.ws_ping_secs = 1;
    })
    .await;
    create_agent(&w.db, &w.org.id, "ann@acme.test", PASSWORD, "agent").await;
    let token = login(&w.client, &w.gw.base, "ann@acme.test", PASSWORD).await;
    // A raw client that never answers the server's pings (a library would, on every read).
    let mut tcp = tokio::net::TcpStream::connect(w.gw.running.addr)
        .await
        .unwrap();
    tcp.write_all(
        b"GET /api/v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let hello = json!({"type": "hello", "token": token, "last_seq": 0}).to_string();
    let mut frame = vec![0x81, 0x80 | 126];
    frame.extend((hello.len() as u16).to_be_bytes());
    frame.extend([0, 0, 0, 0]); // a zero mask leaves the payload as it is
    frame.extend(hello.as_bytes());
    let mut buf = Vec::new();
    let started = std::time::Instant::now();
    // Read the 101 first, then send hello, then read until the server hangs up.
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk))
            .await
            .expect("handshake answer")
            .unwrap();
        assert!(n > 0, "closed during the handshake");
        buf.extend(&chunk[..n]);
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        buf.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    let mut rest = buf.split_off(head_end);
    tcp.write_all(&frame).await.unwrap();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk))
            .await
            .expect("the server closes an idle socket within the deadline")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        rest.extend(&chunk[..n]);
        if frames(&rest).iter().any(|(op, _)| *op == 0x8) {
            break;
        }
    }
    let got = frames(&rest);
    assert!(
        got.iter().any(|(op, _)| *op == 0x9),
        "the server pinged first"
    );
    let close = got
        .iter()
        .find(|(op, _)| *op == 0x8)
        .expect("a close frame");
    assert_eq!(u16::from_be_bytes([close.1[0], close.1[1]]), 4408);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before the idle timeout"
    );
    w.gw.stop().await;
}
both_backends!(idle_socket_is_closed);

async fn cli_creates_agents(backend: Backend) {
    use integration_tests::env::{gateway_binary, test_config, TestDb, TestGateway};
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    gateway::db::orgs::create(&db.pool, "acme", "Acme")
        .await
        .unwrap()
        .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(gateway_binary())
            .args(args)
            .env("DARTWING_DATABASE_URL", &tdb.url)
            .env("DARTWING_LOG", "warn")
            .output()
            .expect("run the binary")
    };
    let create = [
        "agent",
        "create",
        "--org",
        "acme",
        "--email",
        "Ann@Acme.test",
        "--password",
        PASSWORD,
        "--role",
        "admin",
    ];
    let out = run(&create);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created admin ann@acme.test"));
    assert!(!run(&create).status.success(), "the email is taken");
    let short = [
        "agent",
        "create",
        "--org",
        "acme",
        "--email",
        "b@acme.test",
        "--password",
        "short",
    ];
    assert!(!run(&short).status.success(), "too short a password");
    let no_org = [
        "agent",
        "create",
        "--org",
        "nope",
        "--email",
        "c@acme.test",
        "--password",
        PASSWORD,
    ];
    assert!(!run(&no_org).status.success(), "unknown org");
    let gw = TestGateway::start(test_config(&tdb.url)).await;
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/login", gw.base))
        .json(&json!({"email": "ann@acme.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["agent"]["role"], "admin");
    gw.stop().await;
}
both_backends!(cli_creates_agents);

async fn revoking_ends_a_live_socket(backend: Backend) {
    let w = World::with_config(backend, |c| {
        c.inbox.ws_ping_secs = 1;
        c.inbox.ws_idle_secs = 30;
    })
    .await;
    create_agent(&w.db, &w.org.id, "ann@acme.test", PASSWORD, "agent").await;
    let token = login(&w.client, &w.gw.base, "ann@acme.test", PASSWORD).await;
    let other = login(&w.client, &w.gw.base, "ann@acme.test", PASSWORD).await;
    let mut s = AgentSocket::connect(&w.gw.base, &token, 0).await;
    let mut kept = AgentSocket::connect(&w.gw.base, &other, 0).await;
    s.replay().await;
    kept.replay().await;
    let r = w
        .client
        .post(format!("{}/api/v1/logout", w.gw.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Within a ping interval (and the frame deadline) the revoked socket is told and closed.
    let (f, _) = s.until(|f| f["type"] == "error").await;
    assert_eq!(f["code"], "unauthorized");
    assert_eq!(s.close_code().await, Some(4401));
    // The agent's other session is untouched: it still answers.
    kept.send(json!({"type": "ping", "id": "p"})).await;
    let (pong, _) = kept.until(|f| f["type"] == "pong").await;
    assert_eq!(pong["id"], "p");
    w.gw.stop().await;
}
both_backends!(revoking_ends_a_live_socket);

async fn pruned_history_asks_for_a_snapshot(backend: Backend) {
    let w = World::new(backend).await;
    create_agent(&w.db, &w.org.id, "ann@acme.test", PASSWORD, "agent").await;
    sqlx::query("UPDATE agents SET capacity = 0")
        .execute(&w.db.pool)
        .await
        .unwrap();
    for i in 0..3 {
        sms(&w, &w.org, &format!("SMp{i:031}"), "+15550000001", "hi").await;
    }
    let total = head(&w, &w.org, 3).await;
    // What the retention job does to published rows, done here at once.
    sqlx::query("DELETE FROM outbox WHERE org_id = $1 AND seq <= 2")
        .bind(&w.org.id)
        .execute(&w.db.pool)
        .await
        .unwrap();
    let token = login(&w.client, &w.gw.base, "ann@acme.test", PASSWORD).await;
    let mut s = AgentSocket::connect(&w.gw.base, &token, 0).await;
    let f = s.next_json().await.expect("an answer");
    assert_eq!(f["type"], "error", "no event past the hole: {f}");
    assert_eq!(f["code"], "gone");
    assert_eq!(s.close_code().await, Some(4410));
    // From a seq the outbox still covers, the replay works.
    let mut s = AgentSocket::connect(&w.gw.base, &token, 2).await;
    let (events, _) = s.replay().await;
    assert_eq!(seqs(&events), (3..=total).collect::<Vec<_>>());
    w.gw.stop().await;
}
both_backends!(pruned_history_asks_for_a_snapshot);

/// `POST /api/v1/agents` creates agents for an admin agent or an API key, refuses a plain
/// agent (403), a taken email (409) and bad input (400); `GET /api/v1/agents` lists the
/// org's agents only, never a password or its hash.
async fn the_agents_api_creates_for_admins_and_lists_per_org(backend: Backend) {
    let w = World::new(backend).await;
    create_agent(&w.db, &w.org.id, "boss@acme.test", PASSWORD, "admin").await;
    create_agent(&w.db, &w.org.id, "ann@acme.test", PASSWORD, "agent").await;
    let globex = create_org(&w.db, "globex", &w.twilio.base, 1.0).await;
    create_agent(&w.db, &globex.id, "gus@globex.test", PASSWORD, "admin").await;
    let boss = login(&w.client, &w.gw.base, "boss@acme.test", PASSWORD).await;
    let ann = login(&w.client, &w.gw.base, "ann@acme.test", PASSWORD).await;
    let post = |token: String, body: Value| {
        let (client, base) = (w.client.clone(), w.gw.base.clone());
        async move {
            let r = client
                .post(format!("{base}/api/v1/agents"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let new = json!({"email": "cat@acme.test", "password": PASSWORD, "role": "agent"});
    let (status, v) = post(boss.clone(), new.clone()).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["email"], "cat@acme.test");
    assert_eq!(post(boss.clone(), new).await.0, 409, "the email is taken");
    let by_key = json!({"email": "dan@acme.test", "password": PASSWORD});
    assert_eq!(post(w.org.key.clone(), by_key).await.0, 201);
    let refused = json!({"email": "eve@acme.test", "password": PASSWORD});
    assert_eq!(
        post(ann, refused).await.0,
        403,
        "a plain agent creates no agent"
    );
    let short = json!({"email": "fay@acme.test", "password": "short"});
    assert_eq!(post(boss.clone(), short).await.0, 400);
    let bad_role = json!({"email": "gil@acme.test", "password": PASSWORD, "role": "owner"});
    assert_eq!(post(boss, bad_role).await.0, 400);

    let list = w
        .client
        .get(format!("{}/api/v1/agents", w.gw.base))
        .bearer_auth(&w.org.key)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let text = list.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let mut emails: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["email"].as_str().unwrap())
        .collect();
    emails.sort();
    assert_eq!(
        emails,
        [
            "ann@acme.test",
            "boss@acme.test",
            "cat@acme.test",
            "dan@acme.test"
        ]
    );
    assert!(
        !text.contains(PASSWORD) && !text.contains("argon2"),
        "{text}"
    );
    w.gw.stop().await;
}
both_backends!(the_agents_api_creates_for_admins_and_lists_per_org);
