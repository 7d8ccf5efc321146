//! Voice through the whole gateway: the real SIPp calls numbers routed with the gateway's own
//! storage (`voice_routes`), every call is persisted through the committer as the pure call
//! machine's steps, and `GET /api/v1/calls` shows them with their history, per org only.
//! Both backends.

use integration_tests::both_backends;
use integration_tests::env::{count, create_org, Backend, World};
use integration_tests::sip;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

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

/// A route of the world's org.
fn route(w: &World, number: &str, app: &str, agent: Option<&str>) -> gateway::db::calls::Route {
    gateway::db::calls::Route {
        number: number.to_owned(),
        org_id: w.org.id.clone(),
        app: app.to_owned(),
        agent: agent.map(str::to_owned),
        allow_refer: false,
    }
}

async fn calls_are_persisted_with_their_history(backend: Backend) {
    let w = World::new(backend).await;
    let sip = w.gw.running.sip.as_ref().expect("SIP is on").local_addr();
    let sip = SocketAddr::from(([127, 0, 0, 1], sip.port()));
    assert!(gateway::db::calls::add_route(
        &w.db.pool,
        &route(&w, "+1 555 010 0000", "echo", None),
        0
    )
    .await
    .unwrap());
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
    // Health names the SIP listener; the metric of live calls is exported.
    // (The 200 to a BYE goes out once the end is committed; the call's task lets go of its
    // slot just after: wait for it.)
    let health: Value = integration_tests::env::eventually(Duration::from_secs(5), || async {
        let h: Value = serde_json::from_str(&w.get_text("/health").await).ok()?;
        (h["sip"]["active_calls"] == 0).then_some(h)
    })
    .await;
    assert_eq!(health["sip"]["active_calls"], 0, "{health}");
    let metrics = w.get_text("/metrics").await;
    assert!(metrics.contains("sip_calls_active 0"), "{metrics}");
    // Each step is an event on the org's log, valid against its JSON Schema. The feed lists
    // numbered events, and the relay numbers the last steps just after they commit: wait
    // for them (a deadline, then the exact count).
    let call_events: Vec<Value> =
        integration_tests::env::eventually(Duration::from_secs(10), || async {
            let events = w
                .get_json(&w.org, "/api/v1/events?after_seq=0&limit=1000")
                .await;
            let calls: Vec<Value> = events
                .as_array()?
                .iter()
                .filter(|e| e["type"] == "dartwing.call.state_changed.v1")
                .cloned()
                .collect();
            (calls.len() >= 30).then_some(calls)
        })
        .await;
    let schemas = integration_tests::schema::load_all();
    assert_eq!(call_events.len(), 30, "one event per step");
    for ev in &call_events {
        if let Err(errors) = integration_tests::schema::validate_event(&schemas, ev) {
            panic!("call event does not match its schema: {errors:?}\n{ev}");
        }
    }

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
    // Another org may have its own `alice` (its own realm, its own password).
    assert!(ok, "{err}");
    let (ok, out, _) = run(&["voice", "agent", "list", "--org", "acme"]);
    assert!(ok);
    assert_eq!(out.trim(), "alice\tacme\tnot registered");
    let mut db = std::fs::read(dir.0.join("cli.db")).unwrap();
    // What is not yet checkpointed into the file is in its WAL.
    db.extend(std::fs::read(dir.0.join("cli.db-wal")).unwrap_or_default());
    let text = String::from_utf8_lossy(&db);
    assert!(
        !text.contains("correct horse"),
        "the password is not stored"
    );
    assert!(
        text.contains(&voice::sip::digest::ha1("alice", "acme", "correct horse")),
        "its HA1 is, in the org's realm"
    );
    assert!(
        text.contains(&voice::sip::digest::ha1("alice", "globex", "another pass")),
        "the other org's alice is its own agent"
    );
}

/// The strength of `freq` in `samples` (Goertzel), per sample.
fn tone_level(samples: &[i16], freq: f64, rate: f64) -> f64 {
    let k = 2.0 * (2.0 * std::f64::consts::PI * freq / rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x as f64 + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2).max(0.0).sqrt() / samples.len().max(1) as f64
}

/// The audio a baresip received (its sndfile module's `*-dec.wav` in `dumps`), 8 kHz mono;
/// asserts at least one second of it, mostly `want` Hz and hardly `not` Hz.
fn assert_heard(dumps: &std::path::Path, want: f64, not: f64, log: &str) {
    let received = std::fs::read_dir(dumps)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("baresip dumped no received audio; log:\n{log}"));
    let got = audio::wav::parse_wav(&std::fs::read(&received).unwrap())
        .unwrap()
        .to_mono_at(8_000)
        .unwrap();
    assert!(
        got.len() >= 8_000,
        "at least 1 s received, got {} samples",
        got.len()
    );
    let middle = &got[got.len() / 4..got.len() * 3 / 4];
    let (a, b) = (
        tone_level(middle, want, 8000.0),
        tone_level(middle, not, 8000.0),
    );
    assert!(a > 1000.0 && a > 50.0 * b, "{want} Hz {a}, {not} Hz {b}");
}

/// A real user agent: headless baresip dials a number routed to `play:WAV`; the audio it
/// received (dumped by its sndfile module) is the clip's 1 kHz tone, the gateway hangs up at
/// the clip's end, and the persisted history shows every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_hears_the_played_wav_and_the_call_is_persisted() {
    use audio::wav::encode_wav;
    let w = World::new(Backend::Sqlite).await;
    let sip = w.gw.running.sip.as_ref().expect("SIP is on").local_addr();
    let dir = integration_tests::env::TempDir::new();
    // 1.5 s of a 1 kHz tone, 8 kHz mono.
    let tone: Vec<i16> = (0..12_000)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 8000.0).sin()) as i16)
        .collect();
    let clip = dir.0.join("tone.wav");
    std::fs::write(&clip, encode_wav(8000, 1, &tone)).unwrap();
    // What the caller says: a 400 Hz tone.
    let said: Vec<i16> = (0..32_000)
        .map(|i| (6000.0 * (2.0 * std::f64::consts::PI * 400.0 * i as f64 / 8000.0).sin()) as i16)
        .collect();
    let caller_wav = dir.0.join("caller.wav");
    std::fs::write(&caller_wav, encode_wav(8000, 1, &said)).unwrap();
    let app = format!("play:{}", clip.display());
    assert!(
        gateway::db::calls::add_route(&w.db.pool, &route(&w, "15550100000", &app, None), 0)
            .await
            .unwrap()
    );

    let (cfg, dumps, log_path) = (
        dir.0.join("baresip"),
        dir.0.join("dumps"),
        dir.0.join("baresip.log"),
    );
    integration_tests::baresip::config(
        &cfg,
        integration_tests::baresip::sip_port(),
        &caller_wav,
        &dumps,
        None,
        "<sip:tester@127.0.0.1>;regint=0",
    );
    let dial = format!("/dial sip:15550100000@127.0.0.1:{}", sip.port());
    let mut caller = integration_tests::baresip::spawn(
        &cfg,
        &log_path,
        &["-e".into(), dial, "-t".into(), "5".into()],
    );
    let _ = caller.wait().await;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(log.contains("Call established"), "baresip log:\n{log}");

    // The audio baresip decoded is the clip: a strong 1 kHz tone, no 400 Hz echo of itself.
    assert_heard(&dumps, 1000.0, 400.0, &log);
    let (call, steps) = w.ended_call(Duration::from_secs(10)).await;
    assert_eq!(
        call["cause"], "callee_hangup",
        "the app hung up at the clip's end"
    );
    let states: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(states, vec!["ringing", "answered", "ended"]);
    w.gw.stop().await;
}

/// The issue's end-to-end call with real user agents: an agent baresip registers with digest
/// credentials made by the gateway; a caller baresip dials a number routed to the DTMF menu,
/// presses 1 (RFC 4733 from baresip), is transferred (B2BUA) to the agent, who hears the
/// caller's voice through the bridge; the call ends and its persisted history shows every
/// step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_presses_1_and_is_transferred_to_a_registered_baresip_agent() {
    let w = World::new(Backend::Sqlite).await;
    let sip = w.gw.running.sip.as_ref().expect("SIP is on").local_addr();
    let dir = integration_tests::env::TempDir::new();
    assert!(gateway::db::calls::add_route(
        &w.db.pool,
        &route(&w, "15550100000", "menu", Some("agent")),
        0
    )
    .await
    .unwrap());
    gateway::db::sip_agents::upsert(
        &w.db.pool,
        &w.org.id,
        "agent",
        "dartwing",
        "correcthorse1",
        0,
    )
    .await
    .unwrap();
    let tone = |hz: f64, secs: usize| -> Vec<i16> {
        (0..8000 * secs)
            .map(|i| (6000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16)
            .collect()
    };
    let caller_voice = dir.0.join("caller.wav");
    std::fs::write(
        &caller_voice,
        audio::wav::encode_wav(8000, 1, &tone(400.0, 10)),
    )
    .unwrap();
    let agent_voice = dir.0.join("agent.wav");
    std::fs::write(
        &agent_voice,
        audio::wav::encode_wav(8000, 1, &tone(700.0, 4)),
    )
    .unwrap();

    let (agent_cfg, agent_dumps, agent_log) = (
        dir.0.join("agent"),
        dir.0.join("agent-dumps"),
        dir.0.join("agent.log"),
    );
    integration_tests::baresip::config(
        &agent_cfg,
        integration_tests::baresip::sip_port(),
        &agent_voice,
        &agent_dumps,
        None,
        &format!(
            "<sip:agent@127.0.0.1:{};transport=udp>;auth_user=agent;auth_pass=correcthorse1;regint=60;answermode=auto",
            sip.port()
        ),
    );
    let mut agent =
        integration_tests::baresip::spawn(&agent_cfg, &agent_log, &["-t".into(), "20".into()]);
    // Registered with digest (the gateway answered 401, then 200).
    integration_tests::baresip::log_shows(&agent_log, "200 OK", Duration::from_secs(15)).await;

    let ctrl = integration_tests::env::free_port();
    let (caller_cfg, caller_log) = (dir.0.join("caller"), dir.0.join("caller.log"));
    integration_tests::baresip::config(
        &caller_cfg,
        integration_tests::baresip::sip_port(),
        &caller_voice,
        &dir.0.join("caller-dumps"),
        Some(ctrl),
        "<sip:tester@127.0.0.1>;regint=0",
    );
    let mut caller = integration_tests::baresip::spawn(
        &caller_cfg,
        &caller_log,
        &[
            "-e".into(),
            format!("/dial sip:15550100000@127.0.0.1:{}", sip.port()),
            "-t".into(),
            "14".into(),
        ],
    );
    integration_tests::baresip::log_shows(&caller_log, "Call established", Duration::from_secs(15))
        .await;
    // Press 1: baresip sends it as RFC 4733 telephone-events.
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", ctrl))
        .await
        .expect("ctrl_tcp");
    let cmd = serde_json::json!({"command": "sndcode", "params": "1", "token": "t1"}).to_string();
    tokio::io::AsyncWriteExt::write_all(&mut sock, format!("{}:{cmd},", cmd.len()).as_bytes())
        .await
        .unwrap();
    integration_tests::baresip::log_shows(&agent_log, "Call established", Duration::from_secs(15))
        .await;
    let _ = caller.wait().await;
    let _ = agent.wait().await;

    // The agent heard the caller (400 Hz) through the bridge.
    let log = std::fs::read_to_string(&agent_log).unwrap_or_default();
    assert_heard(&agent_dumps, 400.0, 700.0, &log);
    let (_, steps) = w.ended_call(Duration::from_secs(10)).await;
    let steps: Vec<(&str, &str)> = steps
        .iter()
        .map(|(s, e)| (s.as_str(), e.as_str()))
        .collect();
    assert_eq!(
        &steps[..4],
        &[
            ("ringing", "invite"),
            ("answered", "answer"),
            ("transferring", "transfer"),
            ("bridged", "transfer_answered")
        ],
        "{steps:?}"
    );
    assert_eq!(steps.len(), 5, "{steps:?}");
    assert_eq!(steps[4].0, "ended");
    w.gw.stop().await;
}

/// The stored (state, cause) of the call with this SIP Call-ID, once it has one.
async fn stored_call(db: &gateway::db::Db, sip_call_id: &str) -> Option<(String, Option<String>)> {
    sqlx::query_as::<_, (String, Option<String>)>(
        "SELECT state, cause FROM calls WHERE sip_call_id = $1",
    )
    .bind(sip_call_id)
    .fetch_optional(&db.pool)
    .await
    .unwrap()
}

/// SIGKILL with three calls answered: at restart the node ends the call it ran with cause
/// `interrupted` (and an `interrupt` step in its history), leaves alone a call that another
/// node (here: a row moved to node `b`) is running, and ends a call of a node that vanished
/// (node `c`, started longer ago than any call may last).
async fn calls_left_live_by_a_crash_are_interrupted_at_start_up(backend: Backend) {
    use integration_tests::env::{free_port, ChildGateway, TestDb};
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 10.0).await;
    let sip_port = free_port();
    let sip = SocketAddr::from(([127, 0, 0, 1], sip_port));
    let env = [
        ("DARTWING_SIP_ADDR", format!("127.0.0.1:{sip_port}")),
        ("DARTWING_SIP_NODE_ID", "node-a".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let http = free_port();
    let mut gw = ChildGateway::spawn_with(&tdb.url, http, &env).await;
    let route = gateway::db::calls::Route {
        number: "15550100000".into(),
        org_id: org.id.clone(),
        app: "echo".into(),
        agent: None,
        allow_refer: false,
    };
    assert!(gateway::db::calls::add_route(&db.pool, &route, 0)
        .await
        .unwrap());
    let _a = sip::answer_call(sip, "15550100000", "crash-a").await;
    let _b = sip::answer_call(sip, "15550100000", "crash-b").await;
    let _c = sip::answer_call(sip, "15550100000", "crash-c").await;
    let answered = Some(("answered".to_owned(), None));
    assert_eq!(stored_call(&db, "crash-a").await, answered);
    assert_eq!(stored_call(&db, "crash-b").await, answered);
    gw.kill();
    sqlx::query("UPDATE calls SET node = 'node-b' WHERE sip_call_id = 'crash-b'")
        .execute(&db.pool)
        .await
        .unwrap();
    // crash-c: node c's call, started longer ago than a call can last (4 h by default plus
    // slack): node c died and never came back.
    sqlx::query(
        "UPDATE calls SET node = 'node-c', started_at = started_at - 5 * 3600000 \
         WHERE sip_call_id = 'crash-c'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let _gw = ChildGateway::spawn_with(&tdb.url, http, &env).await;
    let interrupted = Some(("ended".to_owned(), Some("interrupted".to_owned())));
    integration_tests::env::eventually(Duration::from_secs(10), || async {
        (stored_call(&db, "crash-a").await == interrupted).then_some(())
    })
    .await;
    assert_eq!(
        stored_call(&db, "crash-b").await,
        answered,
        "another node's call"
    );
    assert_eq!(
        stored_call(&db, "crash-c").await,
        interrupted,
        "a vanished node's call older than the longest call"
    );
    let steps: Vec<(String,)> = sqlx::query_as(
        "SELECT h.event FROM call_history h JOIN calls c ON c.id = h.call_id \
         WHERE c.sip_call_id = 'crash-a' ORDER BY h.id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let steps: Vec<&str> = steps.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(steps, ["invite", "answer", "interrupt"]);
}

both_backends!(calls_left_live_by_a_crash_are_interrupted_at_start_up);

/// The database-backed registrar (agents made by `voice agent add`) refuses a wrong password
/// and a user it does not know, binds nothing for either, and takes the right password.
async fn the_database_registrar_refuses_wrong_passwords_and_unknown_users(backend: Backend) {
    let w = World::new(backend).await;
    let sip = w.gw.running.sip.as_ref().expect("SIP is on").local_addr();
    gateway::db::sip_agents::upsert(
        &w.db.pool,
        &w.org.id,
        "frontdesk",
        "dartwing",
        "correcthorse1",
        0,
    )
    .await
    .unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let host = "127.0.0.1";
    let request = |user: &str, cseq: u32, auth: Option<&str>| {
        sip::register_request(port, user, host, cseq, auth)
    };
    let (status, challenge) = sip::exchange(&sock, sip, &request("frontdesk", 1, None)).await;
    assert_eq!(status, 401, "{challenge}");
    let nonce = sip::challenge_param(&challenge, "nonce");
    let digest = |user: &str, password: &str, nonce: &str, nc: u32| {
        sip::digest_for(user, "dartwing", password, host, nonce, nc)
    };
    let wrong = digest("frontdesk", "guess", &nonce, 1);
    let (status, text) = sip::exchange(&sock, sip, &request("frontdesk", 2, Some(&wrong))).await;
    assert_eq!(status, 403, "wrong password: {text}");
    // A user no agent row has, with a well-formed digest.
    let (status, challenge) = sip::exchange(&sock, sip, &request("nobody", 3, None)).await;
    assert_eq!(status, 401, "{challenge}");
    let stranger = digest(
        "nobody",
        "correcthorse1",
        &sip::challenge_param(&challenge, "nonce"),
        1,
    );
    let (status, text) = sip::exchange(&sock, sip, &request("nobody", 4, Some(&stranger))).await;
    assert_eq!(status, 403, "unknown user: {text}");
    // The right password binds: the refusals above were about the credentials.
    let right = digest("frontdesk", "correcthorse1", &nonce, 2);
    let (status, text) = sip::exchange(&sock, sip, &request("frontdesk", 5, Some(&right))).await;
    assert_eq!(status, 200, "right password: {text}");
    assert!(text.contains(&format!("127.0.0.1:{port}>")), "{text}");
    w.gw.stop().await;
}
both_backends!(the_database_registrar_refuses_wrong_passwords_and_unknown_users);

/// An org switched out of voice (`org set --disable voice`) has no numbers: its callers get
/// what an unrouted number gets; switched back on, the same number answers.
async fn an_org_without_the_voice_feature_takes_no_calls(backend: Backend) {
    let w = World::new(backend).await;
    let sip = w.gw.running.sip.as_ref().expect("SIP is on").local_addr();
    assert!(
        gateway::db::calls::add_route(&w.db.pool, &route(&w, "15550109999", "echo", None), 0)
            .await
            .unwrap()
    );
    let mut settings = gateway::db::org_settings::OrgSettings::default();
    settings.features.insert("voice".into(), false);
    gateway::db::org_settings::put(&w.db.pool, &w.org.id, &settings, 0)
        .await
        .unwrap();
    assert_eq!(invite_status(sip, "15550109999").await, 404);
    assert_eq!(
        count(&w.db, "calls", &w.org.id).await,
        0,
        "no call recorded"
    );
    settings.features.insert("voice".into(), true);
    gateway::db::org_settings::put(&w.db.pool, &w.org.id, &settings, 0)
        .await
        .unwrap();
    // Routes are cached for a second: the number answers again within that.
    let started = std::time::Instant::now();
    integration_tests::env::eventually(Duration::from_secs(5), || async {
        (invite_status(sip, "15550109999").await == 200).then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    w.gw.stop().await;
}
both_backends!(an_org_without_the_voice_feature_takes_no_calls);

/// Overload is shed at the door: while the database writer is stuck behind a lock (as behind
/// a slow disk or a long transaction), a call already admitted waits for its step to commit,
/// `/health` shows the writer's lag, and a new INVITE gets 503 with `Retry-After: 1` and
/// leaves nothing behind. Once the lock goes, the waiting call is answered with every step
/// kept, and new calls are taken again.
async fn a_writer_that_falls_behind_sheds_new_calls(backend: Backend) {
    let w = World::with_config(backend, |c| c.sip.max_store_lag_ms = 200).await;
    let sip = w.gw.running.sip.as_ref().expect("SIP is on").local_addr();
    let sip = SocketAddr::from(([127, 0, 0, 1], sip.port()));
    let number = "15550100001";
    assert!(
        gateway::db::calls::add_route(&w.db.pool, &route(&w, number, "echo", None), 0)
            .await
            .unwrap()
    );
    // Another connection holds the write lock the call steps need.
    let mut holder = w.db.pool.acquire().await.unwrap();
    let lock: &[&'static str] = match backend {
        Backend::Sqlite => &["BEGIN IMMEDIATE"],
        Backend::Postgres => &["BEGIN", "LOCK TABLE calls IN EXCLUSIVE MODE"],
    };
    for sql in lock {
        sqlx::query(*sql).execute(&mut *holder).await.unwrap();
    }
    let waiting = tokio::spawn(sip::answer_call(sip, number, "held-1"));
    let health: Value = integration_tests::env::eventually(Duration::from_secs(5), || async {
        let h: Value = serde_json::from_str(&w.get_text("/health").await).ok()?;
        (h["commit_lag_ms"].as_f64()? > 200.0).then_some(h)
    })
    .await;
    assert!(
        !waiting.is_finished(),
        "the admitted call waits for its commit"
    );

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let invite = sip::invite_request(me, sip, number, "shed-1", me.port() + 2);
    let (status, text) = sip::exchange(&sock, sip, &invite).await;
    assert_eq!(status, 503, "{text}\n(health: {health})");
    assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
    let metrics = w.get_text("/metrics").await;
    assert!(metrics.contains("sip_invites_shed_total 1"), "{metrics}");

    sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
    drop(holder);
    let (held, to) = waiting.await.unwrap();
    sip::hang_up(&held, sip, number, "held-1", &to).await;
    // The lag fades within a second of the writer catching up; then calls are taken again.
    integration_tests::env::eventually(Duration::from_secs(5), || async {
        let h: Value = serde_json::from_str(&w.get_text("/health").await).ok()?;
        (h["commit_lag_ms"].as_f64()? < 200.0).then_some(())
    })
    .await;
    let (after, to) = sip::answer_call(sip, number, "after-1").await;
    sip::hang_up(&after, sip, number, "after-1", &to).await;

    for id in ["held-1", "after-1"] {
        let stored = integration_tests::env::eventually(Duration::from_secs(5), || async {
            stored_call(&w.db, id)
                .await
                .filter(|(state, _)| state == "ended")
        })
        .await;
        assert_eq!(stored.1.as_deref(), Some("caller_hangup"), "{id}");
    }
    assert_eq!(
        stored_call(&w.db, "shed-1").await,
        None,
        "a shed call leaves no row"
    );
    assert_eq!(count(&w.db, "calls", &w.org.id).await, 2);
    w.gw.stop().await;
}
both_backends!(a_writer_that_falls_behind_sheds_new_calls);
