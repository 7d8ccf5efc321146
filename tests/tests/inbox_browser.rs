//! The inbox page in a real browser: Debian's headless Chromium driven by playwright-core
//! (`tests/browser/inbox.mjs`; `scripts/ensure-browser.sh` installs both). The test owns the
//! gateway, the Twilio stand-in and a cuttable proxy between the browser and the gateway; the
//! script owns the page. They talk in lines. It checks that an inbound SMS shows within a
//! second, that the agent's reply goes out and its ticks advance with status callbacks, that
//! after a network cut nothing is missing or doubled, that a broadcast shows in the panel
//! and moves to confirmed when the recipient replies, and it writes `docs/inbox.png`.
//!
//! A machine without Chromium or the npm package fails this test (it never skips).

use integration_tests::agent::create_agent;
use integration_tests::env::{eventually, Backend, World};
use integration_tests::proxy::CutProxy;
use integration_tests::twilio::{inbound_sms, status_callback};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const PASSWORD: &str = "correct horse battery";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_page_in_chromium() {
    let script = repo().join("tests/browser/inbox.mjs");
    assert!(
        repo()
            .join("tests/browser/node_modules/playwright-core")
            .exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "run scripts/ensure-browser.sh first (chromium and playwright-core are required)"
    );
    let w = World::new(Backend::Sqlite).await;
    create_agent(&w.db, &w.org.id, "ann@acme.test", PASSWORD, "agent").await;
    let proxy = CutProxy::start(w.gw.running.addr).await;
    let shot = repo().join("docs/inbox.png");
    let mut child = Command::new("node")
        .arg(&script)
        .env("BASE", &proxy.base)
        .env("EMAIL", "ann@acme.test")
        .env("PASSWORD", PASSWORD)
        .env("SHOT", &shot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut expect = async |prefix: &str| -> String {
        let line = tokio::time::timeout(Duration::from_secs(30), out.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!("browser script said nothing within 30 s (waiting for {prefix})")
            })
            .expect("read")
            .unwrap_or_else(|| panic!("browser script ended before `{prefix}`"));
        assert!(
            line.starts_with(prefix),
            "expected `{prefix}`, got `{line}`"
        );
        line
    };
    let customer = "+15557654321";
    expect("ready").await;

    let first = "Where is my parcel?";
    let r = w
        .webhook(
            &w.org,
            "sms",
            &inbound_sms(
                &w.org,
                "SM10000000000000000000000000000001",
                customer,
                first,
            ),
        )
        .await;
    assert_eq!(r.status(), 200);
    stdin
        .write_all(format!("sent {first}\n").as_bytes())
        .await
        .unwrap();
    let seen = expect("seen").await;
    let ms: u64 = seen[5..].parse().unwrap();
    assert!(ms <= 1000, "shown after {ms} ms");
    eprintln!("inbound SMS shown on the page {ms} ms after the webhook's 200");

    expect("replied").await;
    let sid = eventually(Duration::from_secs(10), || async {
        w.twilio.received().iter().find_map(|r| r.sid.clone())
    })
    .await;
    for status in ["sent", "delivered", "read"] {
        // The worker records `sent` itself once Twilio accepted; callbacks move it on.
        if status != "sent" {
            let r = w
                .webhook(
                    &w.org,
                    "status",
                    &status_callback(&w.org, &sid, status, None),
                )
                .await;
            assert!(r.status().is_success(), "callback {status}: {}", r.status());
        }
        stdin
            .write_all(format!("tick {status}\n").as_bytes())
            .await
            .unwrap();
        expect(&format!("tick {status}")).await;
    }
    stdin.write_all(b"done\n").await.unwrap();

    // The network goes; messages arrive meanwhile; it comes back.
    proxy.cut();
    stdin.write_all(b"cut\n").await.unwrap();
    expect("offline").await;
    let during = ["Are you there?", "Hello??", "Ok found it, thanks"];
    for (i, text) in during.iter().enumerate() {
        let sid = format!("SM2000000000000000000000000000000{i}");
        let r = w
            .webhook(&w.org, "sms", &inbound_sms(&w.org, &sid, customer, text))
            .await;
        assert_eq!(r.status(), 200);
    }
    proxy.restore();
    stdin
        .write_all(format!("restored {}\n", during.join("|")).as_bytes())
        .await
        .unwrap();
    expect("caught up").await;
    expect("shot").await;

    // A voicemail left on a receptionist call: 1.5 s of a tone as its recording.
    let voicemail_caller = "+15550009999";
    let from = format!("<sip:{voicemail_caller}@127.0.0.1>");
    integration_tests::env::record_call(&w.db, &w.org.id, "vm-call", &from, "15550100000").await;
    let mut conn = w.db.pool.acquire().await.unwrap();
    let pcm: Vec<i16> = (0..12_000)
        .map(|i| ((i as f64 * 0.3).sin() * 8_000.0) as i16)
        .collect();
    let write = gateway::db::receptionist::VoicemailWrite {
        org_id: w.org.id.clone(),
        call_id: "vm-call".into(),
        text: "Please call me back.".into(),
        wav: audio::wav::encode_wav(8_000, 1, &pcm),
        seconds: 1.5,
    };
    let now = gateway::db::now_ms();
    let turn = gateway::db::receptionist::TranscriptWrite {
        org_id: w.org.id.clone(),
        call_id: "vm-call".into(),
        inbound: false,
        text: "Please leave a message after the tone.".into(),
        span_ms: None,
        confidence: None,
        intent: None,
    };
    gateway::db::receptionist::append_turn(&mut conn, &turn, now - 1)
        .await
        .unwrap()
        .expect("the turn is stored");
    let stored = gateway::db::receptionist::append_voicemail(&mut conn, &write, now)
        .await
        .unwrap();
    assert!(stored.is_some(), "the voicemail is stored");
    drop(conn);
    stdin
        .write_all(format!("voicemail {voicemail_caller}\n").as_bytes())
        .await
        .unwrap();
    let played = expect("played").await;
    let seconds: f64 = played[7..].trim().parse().unwrap();
    assert!(
        (seconds - 1.5).abs() < 0.05,
        "the browser decoded the 1.5 s recording: {seconds} s"
    );
    // The call goes on in the transcript: the thread updates live, the player stays.
    let later = gateway::db::receptionist::TranscriptWrite {
        text: "Thank you, goodbye.".into(),
        ..turn
    };
    let mut conn = w.db.pool.acquire().await.unwrap();
    gateway::db::receptionist::append_turn(&mut conn, &later, now + 1)
        .await
        .unwrap()
        .expect("the turn is stored");
    drop(conn);
    stdin
        .write_all(b"update Thank you, goodbye.\n")
        .await
        .unwrap();
    expect("player kept").await;
    // An HTML email from a new contact.
    let raw = b"From: Mia <mia@example.com>\r\nTo: support@acme.test\r\nSubject: Formatted\r\n\
Message-ID: <fmt1@example.com>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n\
Plain words here\r\n--B\r\nContent-Type: text/html\r\n\r\n\
<p>Plain <b>bold words</b> here</p><script>parent.document.title='pwned'</script>\r\n--B--\r\n";
    let channels::email::parse::Parsed::Message(msg) =
        channels::email::parse::parse(raw, "support@acme.test", 1024)
    else {
        panic!("the test mail parses")
    };
    w.gw.running
        .committer
        .submit_wait(gateway::commit::WriteOp::Inbound {
            org_id: w.org.id.clone(),
            provider: "email",
            msg: *msg,
        })
        .await
        .expect("the email is stored");
    stdin.write_all(b"email mia@example.com\n").await.unwrap();
    assert_eq!(expect("formatted").await, "formatted bold words");
    // A broadcast: the panel shows it sent, then confirmed by the recipient's reply.
    let r = w
        .client
        .post(format!("{}/api/v1/broadcasts", w.gw.base))
        .bearer_auth(&w.org.key)
        .json(&serde_json::json!({
            "name": "Elm St water main",
            "recipients": [{"phone": "+15550009999"}],
            "steps": [{"channel": "sms", "after_secs": 0, "body": "Water main burst. Reply YES"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    stdin
        .write_all(b"broadcast Elm St water main\n")
        .await
        .unwrap();
    expect("broadcast sent").await;
    let ack = inbound_sms(
        &w.org,
        "SM10000000000000000000000000000099",
        "+15550009999",
        "yes",
    );
    assert_eq!(w.webhook(&w.org, "sms", &ack).await.status(), 200);
    stdin.write_all(b"acked\n").await.unwrap();
    expect("broadcast confirmed").await;
    // Keyboard only, then a phone-sized screen.
    stdin
        .write_all(format!("keys {customer}\n").as_bytes())
        .await
        .unwrap();
    expect("keyboard ok").await;
    eventually(Duration::from_secs(10), || async {
        w.twilio
            .received()
            .iter()
            .any(|r| {
                r.form
                    .get("Body")
                    .is_some_and(|b| b == "Sent from the keyboard.")
            })
            .then_some(())
    })
    .await;
    let resolved = w.get_json(&w.org, "/api/v1/conversations").await;
    let theirs = resolved
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c.to_string().contains(customer))
        .expect("the customer's conversation");
    assert_eq!(theirs["status"], "resolved", "e resolved it: {theirs}");
    expect("phone ok").await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("script ends")
        .expect("wait");
    assert!(status.success(), "browser script failed");
    assert!(shot.exists(), "screenshot written");
    w.gw.stop().await;
}
