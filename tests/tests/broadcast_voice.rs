//! A broadcast's voice rung end to end, on both backends: the gateway places a real call
//! through its SIP trunk (here the recipient's phone itself, a real baresip, or SIPp
//! answering busy), says the message, and the key 1 pressed on the phone confirms the
//! recipient; a busy line escalates to the next rung at once; without a trunk a voice rung is
//! refused with the reason, and nothing is stored.

use integration_tests::both_backends;
use integration_tests::env::{cli_ok, count, eventually, Backend, World};
use integration_tests::{baresip, speech};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const ANN: &str = "+15550000001";
const WAIT: Duration = Duration::from_secs(30);

async fn post(w: &World, body: &Value) -> reqwest::Response {
    w.client
        .post(format!("{}/api/v1/broadcasts", w.gw.base))
        .bearer_auth(&w.org.key)
        .json(body)
        .send()
        .await
        .expect("post")
}

async fn counts(w: &World, id: &str, want: &[(&str, i64)]) -> Value {
    eventually(WAIT, || async {
        let b = w
            .get_json(&w.org, &format!("/api/v1/broadcasts/{id}"))
            .await;
        want.iter().all(|(k, n)| b["counts"][k] == *n).then_some(b)
    })
    .await
}

/// `acme` calls from its voice route number.
fn add_route(w: &World) {
    cli_ok(
        &w.tdb.url,
        &[],
        &[
            "voice",
            "route",
            "add",
            "--org",
            "acme",
            "--number",
            "+15550100000",
            "--app",
            "echo",
        ],
    );
}

/// A gateway whose SIP trunk is `trunk_port` on loopback.
async fn world(backend: Backend, trunk_port: u16) -> World {
    World::with_config(backend, |c| {
        c.sip.trunk = format!("127.0.0.1:{trunk_port}");
        c.sip.ring_secs = 10;
    })
    .await
}

/// The recipient's phone: baresip answering every call to `ANN` at once, a ctrl_tcp port to
/// press keys, what it hears dumped into `dumps`.
fn phone(dir: &Path, port: u16, ctrl: u16) -> (tokio::process::Child, std::path::PathBuf) {
    let source = dir.join("quiet.wav");
    std::fs::write(
        &source,
        audio::wav::encode_wav(8000, 1, &vec![0; 8000 * 20]),
    )
    .unwrap();
    let (cfg, log) = (dir.join("phone"), dir.join("phone.log"));
    baresip::config(
        &cfg,
        port,
        &source,
        &dir.join("dumps"),
        Some(ctrl),
        &format!("<sip:{ANN}@127.0.0.1:{port}>;regint=0;answermode=auto"),
    );
    (baresip::spawn(&cfg, &log, &["-t".into(), "40".into()]), log)
}

/// Sends baresip a ctrl_tcp command (a netstring of JSON).
async fn ctrl_command(ctrl: u16, command: &str, params: &str) {
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", ctrl))
        .await
        .expect("ctrl_tcp");
    let cmd = json!({"command": command, "params": params, "token": "k"}).to_string();
    tokio::io::AsyncWriteExt::write_all(&mut sock, format!("{}:{cmd},", cmd.len()).as_bytes())
        .await
        .unwrap();
}

async fn the_call_says_the_message_and_key_one_confirms(backend: Backend) {
    let dir = integration_tests::env::TempDir::new();
    let (port, ctrl) = (baresip::sip_port(), integration_tests::env::free_port());
    let w = world(backend, port).await;
    add_route(&w);
    let (mut phone, log) = phone(&dir.0, port, ctrl);
    let r = post(
        &w,
        &json!({
            "name": "Water main",
            "recipients": [{"phone": ANN, "name": "Ann"}],
            "steps": [
                {"channel": "voice", "after_secs": 0, "say": "{{name}}, the water main on Elm Street burst."},
                {"channel": "sms", "after_secs": 60, "body": "Water main burst. Reply YES"},
            ],
            "require_ack": true,
        }),
    )
    .await;
    assert_eq!(r.status(), 202);
    let made: Value = r.json().await.unwrap();
    assert_eq!(made["warnings"], json!([]));
    let id = made["id"].as_str().unwrap().to_string();
    counts(&w, &id, &[("sent", 1)]).await;
    baresip::log_shows(&log, "Call established", WAIT).await;
    // Let the message play once (about 7 s), then press 1 in the pause after it.
    tokio::time::sleep(Duration::from_secs(8)).await;
    ctrl_command(ctrl, "sndcode", "1").await;
    let b = counts(&w, &id, &[("confirmed", 1), ("sent", 0)]).await;
    assert_eq!(b["state"], "done");
    let via: (String,) = sqlx::query_as("SELECT confirmed_via FROM broadcast_recipients")
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(via.0, "voice");
    // The call: answered, then our side hung up after the thank-you.
    let (call, steps) = w.ended_call(WAIT).await;
    assert_eq!(call["to"], ANN, "{call}");
    let events: Vec<&str> = steps.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(events, ["invite", "answer", "callee_hangup"], "{steps:?}");
    // The rung's message is sent, its provider id the call's id.
    let msg: (String, Option<String>) =
        sqlx::query_as("SELECT status, provider_message_id FROM messages WHERE channel = 'voice'")
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(msg.1.as_deref(), call["id"].as_str());
    assert_ne!(msg.0, "failed");
    // Confirmed: the SMS rung never goes out.
    assert!(w.twilio.received().is_empty());
    // The phone quits, which closes its recording. (Killing it right away lost the WAV header
    // once in CI: the call's end is committed before our BYE reaches the phone, so the phone
    // may not have closed the file yet.)
    ctrl_command(ctrl, "quit", "").await;
    if tokio::time::timeout(WAIT, phone.wait()).await.is_err() {
        let _ = phone.kill().await;
        panic!("baresip did not quit");
    }
    // What the phone heard: the message, the key to press, then the thanks. (tiny.en hears
    // espeak-ng's robotic voice through G.711 at a 30 % word error rate, BENCHMARKS.md: the
    // words checked are ones it keeps, such as "and the water may not …" for "Ann, the water
    // main on …".)
    let heard = speech::transcribe(&speech::received_audio(&dir.0.join("dumps")));
    for words in ["water", "press", "confirm", "recorded"] {
        assert!(heard.contains(words), "`{words}` not in {heard:?}");
    }
}
both_backends!(the_call_says_the_message_and_key_one_confirms);

/// SIPp as the trunk, answering every INVITE 486 Busy Here (and taking the ACK).
const BUSY: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="busy">
  <recv request="INVITE" />
  <send>
    <![CDATA[
SIP/2.0 486 Busy Here
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" />
</scenario>
"#;

/// SIPp as the trunk, ringing (180) and never answering: it expects our CANCEL, answers it
/// 200 and the INVITE 487, and takes the ACK of the 487.
const RINGS_OUT: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="rings out">
  <recv request="INVITE" />
  <send>
    <![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Length: 0

    ]]>
  </send>
  <recv request="CANCEL" />
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[
SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
CSeq: 1 INVITE
Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" />
</scenario>
"#;

/// SIPp as a trunk that wants credentials: it challenges the INVITE (401), checks the
/// INVITE that comes back against `acme` / `s3cret` (SIPp's own digest check), and answers
/// 486 Busy Here when they hold, another 401 when they do not.
const CHALLENGES: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="challenges">
  <recv request="INVITE" />
  <send>
    <![CDATA[
SIP/2.0 401 Unauthorized
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
WWW-Authenticate: Digest realm="trunk.example", nonce="4e6f6e63652d31", algorithm=MD5
Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" />
  <recv request="INVITE">
    <action>
      <verifyauth assign_to="authvalid" username="acme" password="s3cret" />
    </action>
  </recv>
  <nop hide="true" test="authvalid" next="good" />
  <send>
    <![CDATA[
SIP/2.0 401 Unauthorized
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag02[call_number]
[last_Call-ID:]
[last_CSeq:]
WWW-Authenticate: Digest realm="trunk.example", nonce="4e6f6e63652d32", algorithm=MD5
Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" next="end" />
  <label id="good" />
  <send>
    <![CDATA[
SIP/2.0 486 Busy Here
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag03[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" />
  <label id="end" />
</scenario>
"#;

/// SIPp playing `scenario` once as the trunk on `port`.
fn sipp_trunk(dir: &Path, port: u16, scenario: &str) -> tokio::process::Child {
    let path = dir.join(format!("trunk-{port}.xml"));
    std::fs::write(&path, scenario).unwrap();
    tokio::process::Command::new("sipp")
        .arg("-sf")
        .arg(&path)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
            "-nostdin",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp (scripts/ensure-voice-peers.sh)")
}

/// A broadcast whose voice rung `trunk` fails: the SMS rung (five minutes later on the
/// ladder) goes at once; returns the voice message's (status, error code) and the call's
/// steps.
async fn failed_call(
    backend: Backend,
    scenario: &str,
) -> ((String, Option<String>), Vec<(String, String)>) {
    failed_call_as(backend, scenario, None).await
}

/// [`failed_call`] with our account at the trunk (username, password).
async fn failed_call_as(
    backend: Backend,
    scenario: &str,
    account: Option<(&str, &str)>,
) -> ((String, Option<String>), Vec<(String, String)>) {
    let dir = integration_tests::env::TempDir::new();
    let port = integration_tests::env::free_port();
    let w = World::with_config(backend, |c| {
        c.sip.trunk = format!("127.0.0.1:{port}");
        c.sip.ring_secs = 2;
        if let Some((user, password)) = account {
            c.sip.trunk_username = user.into();
            c.sip.trunk_password = password.into();
        }
    })
    .await;
    add_route(&w);
    let mut sipp = sipp_trunk(&dir.0, port, scenario);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = post(
        &w,
        &json!({
            "name": "Shift cover",
            "recipients": [{"phone": ANN}],
            "steps": [
                {"channel": "voice", "after_secs": 0, "say": "Shift cover needed tonight."},
                {"channel": "sms", "after_secs": 300, "body": "Shift cover needed tonight. Reply YES"},
            ],
            "require_ack": true,
        }),
    )
    .await;
    assert_eq!(r.status(), 202);
    eventually(WAIT, || async {
        (w.twilio.received().len() == 1).then_some(())
    })
    .await;
    let sipp_ok = tokio::time::timeout(WAIT, sipp.wait())
        .await
        .expect("SIPp still waits for a message it expects")
        .unwrap()
        .success();
    assert!(
        sipp_ok,
        "SIPp's scenario ran to its end (every message it expected came)"
    );
    let msg: (String, Option<String>) =
        sqlx::query_as("SELECT status, error_code FROM messages WHERE channel = 'voice'")
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    let (_, steps) = w.ended_call(WAIT).await;
    (msg, steps)
}

fn step(state: &str, event: &str) -> (String, String) {
    (state.to_string(), event.to_string())
}

async fn a_busy_line_escalates_to_the_next_rung_at_once(backend: Backend) {
    let (msg, steps) = failed_call(backend, BUSY).await;
    assert_eq!(msg, ("failed".to_string(), Some("busy".to_string())));
    assert_eq!(steps, [step("ringing", "invite"), step("ended", "busy")]);
}
both_backends!(a_busy_line_escalates_to_the_next_rung_at_once);

async fn a_call_nobody_answers_is_cancelled_and_escalates(backend: Backend) {
    let (msg, steps) = failed_call(backend, RINGS_OUT).await;
    assert_eq!(msg, ("failed".to_string(), Some("no_answer".to_string())));
    assert_eq!(
        steps,
        [step("ringing", "invite"), step("ended", "no_answer")]
    );
}
both_backends!(a_call_nobody_answers_is_cancelled_and_escalates);

/// A trunk that challenges our INVITE gets it again with our credentials (SIPp checks the
/// digest and answers busy only when it holds); wrong credentials are challenged again,
/// and the call is refused as an authentication failure, not retried forever.
async fn a_trunk_that_challenges_gets_our_credentials(backend: Backend) {
    let (msg, steps) = failed_call_as(backend, CHALLENGES, Some(("acme", "s3cret"))).await;
    assert_eq!(msg, ("failed".to_string(), Some("busy".to_string())));
    assert_eq!(steps, [step("ringing", "invite"), step("ended", "busy")]);
    let (msg, steps) = failed_call_as(backend, CHALLENGES, Some(("acme", "wrong"))).await;
    assert_eq!(
        msg,
        ("failed".to_string(), Some("trunk_auth_failed".to_string()))
    );
    assert_eq!(steps, [step("ringing", "invite"), step("ended", "reject")]);
}
both_backends!(a_trunk_that_challenges_gets_our_credentials);

/// No trunk configured, or no number to call from: the POST is refused with the reason and
/// nothing is stored.
async fn a_voice_rung_without_a_way_to_call_is_refused(backend: Backend) {
    let w = World::new(backend).await;
    let spec = json!({
        "name": "Storm",
        "recipients": [{"phone": ANN}],
        "steps": [{"channel": "voice", "after_secs": 0, "say": "Storm warning."}],
    });
    let r = post(&w, &spec).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "channel_not_configured");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sip.trunk"));
    assert_eq!(count(&w.db, "broadcasts", &w.org.id).await, 0);
    // A trunk, but the org has no voice route number to call from.
    let w = world(backend, integration_tests::env::free_port()).await;
    assert_eq!(post(&w, &spec).await.status(), 422);
    add_route(&w);
    // Plugins are cached for a few seconds: the route is seen soon after.
    eventually(WAIT, || async {
        (post(&w, &spec).await.status() == 202).then_some(())
    })
    .await;
}
both_backends!(a_voice_rung_without_a_way_to_call_is_refused);
