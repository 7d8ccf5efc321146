//! Broadcast alerts end to end on both backends, through the real gateway and the Twilio
//! stand-in: the ladder escalates on its offsets, replies confirm (late ones counted apart),
//! STOP ends a recipient, a failed rung escalates at once, quiet hours hold in the
//! recipient's own zone unless critical, cancel stops queued and future rungs, idempotent
//! creation, and bad input refused with nothing stored.

use integration_tests::both_backends;
use integration_tests::env::{count, create_org, eventually, Backend, World};
use integration_tests::twilio::{inbound_sms, Scripted};
use serde_json::{json, Value};
use std::time::Duration;

const ANN: &str = "+15550000001";
const BOB: &str = "+15550000002";
const CY: &str = "+15550000003";
const WAIT: Duration = Duration::from_secs(20);

async fn post(w: &World, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut r = w
        .client
        .post(format!("{}/api/v1/broadcasts", w.gw.base))
        .bearer_auth(&w.org.key)
        .json(body);
    if let Some(k) = key {
        r = r.header("Idempotency-Key", k);
    }
    r.send().await.expect("post")
}

/// Posts `body` and asserts the refusal's status and error code.
async fn refused(w: &World, body: &Value, status: u16, code: &str) {
    let r = post(w, body, None).await;
    assert_eq!(r.status(), status, "{body}");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], code);
}

/// `dartwing-gateway org set acme ARGS…`.
fn org_set(w: &World, args: &[&str]) {
    let all: Vec<&str> = ["org", "set", "acme"].iter().chain(args).copied().collect();
    integration_tests::env::cli_ok(&w.tdb.url, &[], &all);
}

async fn create(w: &World, body: &Value) -> String {
    let r = post(w, body, None).await;
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn get(w: &World, id: &str) -> Value {
    w.get_json(&w.org, &format!("/api/v1/broadcasts/{id}"))
        .await
}

async fn reply(w: &World, from: &str, body: &str) {
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let r = w
        .webhook(&w.org, "sms", &inbound_sms(&w.org, &sid, from, body))
        .await;
    assert_eq!(r.status(), 200);
}

/// Bodies the stand-in received for `to`, in order.
fn sent_to(w: &World, to: &str) -> Vec<String> {
    w.twilio
        .received()
        .iter()
        .filter(|r| r.form["To"] == to)
        .map(|r| r.form["Body"].clone())
        .collect()
}

/// The broadcast's outcome as CSV.
async fn csv_of(w: &World, id: &str) -> String {
    let url = format!("{}/api/v1/broadcasts/{id}/recipients.csv", w.gw.base);
    let r = w
        .client
        .get(url)
        .bearer_auth(&w.org.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// Posts a webhook body to the org's WhatsApp webhook, signed with the app's secret.
async fn post_whatsapp(w: &World, secret: &str, v: Value) -> reqwest::StatusCode {
    let body = serde_json::to_vec(&v).unwrap();
    integration_tests::whatsapp::post_signed(&w.client, &w.gw.base, "acme", secret, &body)
        .await
        .status()
}

/// Waits until `to` got `n` sends.
async fn wait_sent(w: &World, to: &str, n: usize) {
    eventually(WAIT, || async { (sent_to(w, to).len() == n).then_some(()) }).await;
}

async fn wait_counts(w: &World, id: &str, want: &[(&str, i64)]) -> Value {
    eventually(WAIT, || async {
        let b = get(w, id).await;
        want.iter().all(|(k, n)| b["counts"][k] == *n).then_some(b)
    })
    .await
}

async fn ladder_acks_stop_and_late_confirmations(backend: Backend) {
    let w = World::new(backend).await;
    let spec = json!({
        "name": "Water main burst on Elm St",
        "recipients": [
            {"phone": ANN, "name": "Ann"}, {"phone": BOB, "name": "Bob"},
            {"phone": CY, "name": "Cy"}, {"phone": ANN, "name": "Ann again"},
        ],
        "steps": [
            {"channel": "sms", "after_secs": 0, "body": "{{name}}: water main burst. Reply YES"},
            {"channel": "sms", "after_secs": 2, "body": "Reminder for {{name}}: reply YES"},
        ],
        "require_ack": true,
        "ack_window_secs": 2,
    });
    let r = post(&w, &spec, Some("elm-1")).await;
    assert_eq!(r.status(), 202);
    let made: Value = r.json().await.unwrap();
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(made["recipients"], 3);
    assert_eq!(
        made["duplicates_dropped"], 1,
        "the same phone twice is one person"
    );
    // The same request again is the same broadcast; another request with the key is refused.
    let again = post(&w, &spec, Some("elm-1")).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id.as_str());
    let mut other = spec.clone();
    other["name"] = json!("Another alert");
    let reused = post(&w, &other, Some("elm-1")).await;
    assert_eq!(reused.status(), 422);
    assert_eq!(count(&w.db, "broadcasts", &w.org.id).await, 1);

    // The first rung reaches all three.
    eventually(WAIT, || async {
        (w.twilio.received().len() >= 3).then_some(())
    })
    .await;
    assert_eq!(sent_to(&w, ANN), vec!["Ann: water main burst. Reply YES"]);
    assert_eq!(sent_to(&w, CY), vec!["Cy: water main burst. Reply YES"]);
    reply(&w, ANN, " Yes! ").await;
    reply(&w, CY, "STOP").await;
    let b = wait_counts(&w, &id, &[("confirmed", 1), ("opted_out", 1), ("sent", 1)]).await;
    assert_eq!(b["state"], "running");

    // Bob did not answer: the reminder 2 s later, then not confirmed after the 2 s window.
    let b = wait_counts(&w, &id, &[("not_confirmed", 1)]).await;
    assert_eq!(b["state"], "done");
    assert_eq!(
        sent_to(&w, BOB),
        vec![
            "Bob: water main burst. Reply YES",
            "Reminder for Bob: reply YES"
        ]
    );
    assert_eq!(
        sent_to(&w, ANN).len(),
        1,
        "a confirmed recipient is not reminded"
    );
    assert_eq!(sent_to(&w, CY).len(), 1, "STOP ends the ladder");
    assert_eq!(w.twilio.received().len(), 4);
    let counts = &b["counts"];
    assert_eq!(
        (
            counts["pending"].as_i64(),
            counts["sent"].as_i64(),
            counts["unreachable"].as_i64()
        ),
        (Some(0), Some(0), Some(0))
    );

    // A late "1" is counted apart; the state stays.
    reply(&w, BOB, "1").await;
    let b = eventually(WAIT, || async {
        let b = get(&w, &id).await;
        (b["late_confirmed"] == 1).then_some(b)
    })
    .await;
    assert_eq!(b["counts"]["not_confirmed"], 1);
    assert_eq!(b["counts"]["confirmed"], 1);
    let steps = b["steps"].as_array().unwrap();
    assert_eq!(
        (steps[0]["queued"].as_i64(), steps[1]["queued"].as_i64()),
        (Some(3), Some(1))
    );
    assert_eq!(steps[0]["confirmed"], 1);
    assert!(steps[0]["confirm_ms_p90"].as_i64().unwrap() >= 0);

    // The outcome as CSV.
    let csv = csv_of(&w, &id).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("index,recipient_id,phone,email,name,state"));
    let ann = lines.iter().find(|l| l.contains(ANN)).unwrap();
    assert!(
        ann.contains(",confirmed,") && ann.contains(",sms,"),
        "{ann}"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains(CY) && l.contains(",opted_out,")));

    // Another org sees none of it; a finished broadcast cannot be cancelled.
    let other = create_org(&w.db, "other", &w.twilio.base, 10.0).await;
    for path in [
        format!("/api/v1/broadcasts/{id}"),
        format!("/api/v1/broadcasts/{id}/recipients.csv"),
    ] {
        let r = w
            .client
            .get(format!("{}{path}", w.gw.base))
            .bearer_auth(&other.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let cancel = |key: String| {
        let url = format!("{}/api/v1/broadcasts/{id}/cancel", w.gw.base);
        let c = w.client.clone();
        async move { c.post(url).bearer_auth(key).send().await.unwrap().status() }
    };
    assert_eq!(cancel(other.key.clone()).await, 404);
    assert_eq!(cancel(w.org.key.clone()).await, 409);
    integration_tests::schema::assert_org_events_valid(&w, &w.org).await;
}
both_backends!(ladder_acks_stop_and_late_confirmations);

async fn bad_requests_change_nothing(backend: Backend) {
    let w = World::new(backend).await;
    let sms = json!([{"channel": "sms", "body": "hi"}]);
    let cases = [
        (
            json!({"name": "x", "recipients": [{"phone": "555"}], "steps": sms}),
            "E.164",
        ),
        (
            json!({"name": "x", "recipients": [{"phone": ANN}], "steps": [{"channel": "fax", "body": "hi"}]}),
            "fax",
        ),
        (
            json!({"name": "x", "recipients": [{"email": "a@example.org"}], "steps": sms}),
            "no address",
        ),
        (
            json!({"name": "x", "recipients": [{"phone": ANN}], "steps": [{"channel": "sms"}]}),
            "body",
        ),
        (
            json!({"name": "x", "recipients": [{"phone": ANN}], "steps": [
            {"channel": "sms", "body": "a", "after_secs": 5}, {"channel": "sms", "body": "b", "after_secs": 1}]}),
            "order",
        ),
        (
            json!({"name": "x", "recipients": [{"phone": ANN, "tz": "Mars/Base"}], "steps": sms}),
            "time zone",
        ),
        (
            json!({"name": "x", "recipients": [{"phone": ANN}], "steps": sms, "quiet_hours": {"start": "25:00", "end": "08:00"}}),
            "HH:MM",
        ),
        (
            json!({"name": "x", "recipients": [], "steps": sms}),
            "at least one",
        ),
        (
            json!({"name": "x", "recipients_csv": "name\nBob\n", "steps": sms}),
            "neither",
        ),
        (
            json!({"name": "x", "recipients": [{"phone": ANN}], "steps": sms, "surprise": 1}),
            "unknown field",
        ),
    ];
    for (body, needle) in cases {
        let r = post(&w, &body, None).await;
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{needle:?} in {msg:?}");
    }
    // No email account: an email rung is refused before anything is stored.
    let email = json!({"name": "x", "recipients": [{"phone": ANN, "email": "a@example.org"}],
        "steps": [{"channel": "email", "subject": "s", "body": "b"}]});
    refused(&w, &email, 422, "channel_not_configured").await;
    // Over the org's cap.
    org_set(&w, &["--broadcast-recipients", "2"]);
    let three = json!({"name": "x", "recipients": [{"phone": ANN}, {"phone": BOB}, {"phone": CY}], "steps": sms});
    refused(&w, &three, 422, "org_limit_reached").await;
    org_set(&w, &["--disable", "broadcast"]);
    let one = json!({"name": "x", "recipients": [{"phone": ANN}], "steps": sms});
    assert_eq!(post(&w, &one, None).await.status(), 403);
    let no_key = w
        .client
        .post(format!("{}/api/v1/broadcasts", w.gw.base))
        .json(&one)
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(count(&w.db, "broadcasts", &w.org.id).await, 0);
    assert_eq!(count(&w.db, "messages", &w.org.id).await, 0);
    assert!(w.twilio.received().is_empty());
}
both_backends!(bad_requests_change_nothing);

async fn a_failed_rung_escalates_at_once_and_cancel_stops_the_rest(backend: Backend) {
    let w = World::new(backend).await;
    // Ann's first SMS fails for good (21610: unsubscribed at the carrier): the second rung,
    // 60 s later on the timeline, goes out at once instead.
    w.twilio.script([Scripted::Fail {
        status: 400,
        code: 21610,
    }]);
    let id = create(&w, &json!({
        "name": "Shift cover tonight",
        "recipients": [{"phone": ANN}],
        "steps": [{"channel": "sms", "body": "first"}, {"channel": "sms", "after_secs": 60, "body": "second"}],
    }))
    .await;
    wait_sent(&w, ANN, 2).await;
    assert_eq!(sent_to(&w, ANN), vec!["first", "second"]);
    let b = get(&w, &id).await;
    assert_eq!(b["counts"]["sent"], 1);
    assert_eq!(b["steps"][0]["failed"], 1);

    // Cancel: the 60 s rung of Bob never goes out, and the broadcast says cancelled.
    let id2 = create(&w, &json!({
        "name": "Drill",
        "recipients": [{"phone": BOB}],
        "steps": [{"channel": "sms", "body": "drill"}, {"channel": "sms", "after_secs": 1, "body": "drill again"}],
    }))
    .await;
    wait_sent(&w, BOB, 1).await;
    let r = w
        .client
        .post(format!("{}/api/v1/broadcasts/{id2}/cancel", w.gw.base))
        .bearer_auth(&w.org.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(sent_to(&w, BOB), vec!["drill"]);
    assert_eq!(get(&w, &id2).await["state"], "cancelled");

    // The operator's daily cap: two broadcasts today, the third is refused.
    org_set(&w, &["--broadcasts-per-day", "2"]);
    let third = json!({"name": "x", "recipients": [{"phone": CY}], "steps": [{"channel": "sms", "body": "x"}]});
    refused(&w, &third, 429, "org_limit_reached").await;
    assert!(sent_to(&w, CY).is_empty());
    integration_tests::schema::assert_org_events_valid(&w, &w.org).await;
}
both_backends!(a_failed_rung_escalates_at_once_and_cancel_stops_the_rest);

async fn quiet_hours_hold_in_the_recipients_zone_unless_critical(backend: Backend) {
    let w = World::new(backend).await;
    // A window around the current UTC hour: quiet now in UTC, not in Tokyo (UTC+9).
    let now = jiff::Timestamp::now();
    let hour = now.to_zoned(jiff::tz::TimeZone::UTC).hour() as i64;
    let hhmm = |h: i64| format!("{:02}:00", h.rem_euclid(24));
    let quiet = json!({"start": hhmm(hour - 1), "end": hhmm(hour + 2)});
    let id = create(
        &w,
        &json!({
            "name": "Road works",
            "recipients": [{"phone": ANN, "tz": "UTC"}, {"phone": BOB, "tz": "Asia/Tokyo"}],
            "steps": [{"channel": "sms", "body": "road works tomorrow"}],
            "quiet_hours": quiet,
        }),
    )
    .await;
    wait_sent(&w, BOB, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(sent_to(&w, ANN).is_empty(), "held in UTC's quiet hours");
    let b = get(&w, &id).await;
    assert_eq!(
        (
            b["counts"]["pending"].as_i64(),
            b["counts"]["sent"].as_i64()
        ),
        (Some(1), Some(1))
    );
    // Held until the window's end: between 1 and 3 hours from now.
    let row: (Option<i64>,) =
        sqlx::query_as("SELECT next_at FROM broadcast_recipients WHERE phone = $1")
            .bind(ANN)
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    let held_ms = row.0.unwrap() - now.as_millisecond();
    assert!(
        (3_600_000..=3 * 3_600_000).contains(&held_ms),
        "held {held_ms} ms"
    );

    // Critical alerts ignore quiet hours.
    create(
        &w,
        &json!({
            "name": "Evacuate",
            "recipients": [{"phone": ANN, "tz": "UTC"}],
            "steps": [{"channel": "sms", "body": "evacuate now"}],
            "quiet_hours": quiet,
            "critical": true,
            "require_ack": false,
        }),
    )
    .await;
    eventually(WAIT, || async {
        (sent_to(&w, ANN) == ["evacuate now"]).then_some(())
    })
    .await;
}
both_backends!(quiet_hours_hold_in_the_recipients_zone_unless_critical);

/// The email rung (a real SMTP receiver): sent when the SMS is not acknowledged, it carries
/// a signed link; opening it changes nothing, pressing Confirm confirms once, a tampered
/// link is refused.
async fn the_email_rung_confirms_by_signed_link(backend: Backend) {
    use integration_tests::mail::{add_account, Dovecot, SmtpReceiver};
    let w = World::new(backend).await;
    let imap = Dovecot::start();
    let smtp = SmtpReceiver::start();
    add_account(&w.db, &w.org.id, &imap, &smtp).await;
    let id = create(
        &w,
        &json!({
            "name": "Water main burst",
            "recipients": [{"phone": ANN, "email": "ann@example.org", "name": "Ann"}],
            "steps": [
                {"channel": "sms", "body": "Water main burst. Reply YES"},
                {"channel": "email", "after_secs": 1, "subject": "Water main burst on Elm St",
                 "body": "Hello {{name}}, please confirm: {{confirm_url}}"},
            ],
            "ack_window_secs": 60,
        }),
    )
    .await;
    let raw = eventually(WAIT, || async { smtp.messages().into_iter().next() }).await;
    assert_eq!(sent_to(&w, ANN).len(), 1, "the SMS went first");
    let mail = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("a mail");
    assert_eq!(mail.subject(), Some("Water main burst on Elm St"));
    let text = mail.body_text(0).expect("a text body").to_string();
    assert!(text.starts_with("Hello Ann, please confirm: "), "{text}");
    let url = text
        .split_whitespace()
        .find(|w| w.contains("/b/"))
        .expect("a confirm link")
        .to_string();
    assert!(url.starts_with(&format!("{}/b/", w.gw.base)), "{url}");

    let confirmed = || async { get(&w, &id).await["counts"]["confirmed"].as_i64().unwrap() };
    let tampered = format!("{}0", url.trim_end_matches(|c: char| c.is_ascii_hexdigit()));
    let r = w.client.post(&tampered).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = w.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<form method=\"post\""));
    assert_eq!(confirmed().await, 0, "opening the link confirms nothing");
    let r = w.client.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("was recorded"));
    assert_eq!(confirmed().await, 1);
    let again = w
        .client
        .post(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(again.contains("already confirmed"), "{again}");
    let b = get(&w, &id).await;
    assert_eq!(
        (b["counts"]["confirmed"].as_i64(), b["state"].as_str()),
        (Some(1), Some("done"))
    );
    assert_eq!(b["steps"][1]["channel"], "email");
    assert_eq!(b["steps"][1]["confirmed"], 1);
    integration_tests::schema::assert_org_events_valid(&w, &w.org).await;
}
both_backends!(the_email_rung_confirms_by_signed_link);

/// SIGKILL of the real binary mid-broadcast (2,000 people, two rungs): after a restart every
/// recipient gets each rung, no rung is queued twice by us (one message per recipient and
/// rung), and the provider sees each at least once — more than once only for sends in
/// flight at the kill whose acceptance was never recorded (the send lease brings them back).
async fn sigkill_mid_broadcast_resumes_without_skips_or_double_rungs(backend: Backend) {
    use integration_tests::env::{free_port, ChildGateway, TestDb};
    use integration_tests::twilio::TwilioStandin;
    use std::collections::HashSet;
    const N: usize = 2000;
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let twilio = TwilioStandin::start().await;
    let org = create_org(&db, "acme", &twilio.base, 1e6).await;
    twilio.add_account(&org);
    let port = free_port();
    // A short send timeout makes the lease of sends cut by the kill short too (2·1 s + 30 s).
    let env = [("DARTWING_DELIVERY_SEND_TIMEOUT_MS", "1000")];
    let mut gw = ChildGateway::spawn_with(&tdb.url, port, &env).await;
    let recipients: Vec<Value> = (0..N)
        .map(|i| json!({"phone": format!("+1555{i:07}")}))
        .collect();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/api/v1/broadcasts", gw.base))
        .bearer_auth(&org.key)
        .json(&json!({"name": "crash", "recipients": recipients, "ack_window_secs": 1,
            "steps": [{"channel": "sms", "body": "first"}, {"channel": "sms", "after_secs": 1, "body": "second"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(Duration::from_secs(60), || async {
        (twilio.received_count() >= N / 2).then_some(())
    })
    .await;
    gw.kill();
    let at_kill = twilio.received_count();
    assert!(
        at_kill < 2 * N,
        "killed mid-broadcast ({at_kill} sends seen)"
    );
    let gw = ChildGateway::spawn_with(&tdb.url, port, &env).await;
    let done = eventually(Duration::from_secs(120), || async {
        let r = client
            .get(format!("{}/api/v1/broadcasts/{id}", gw.base))
            .bearer_auth(&org.key)
            .send()
            .await
            .ok()?;
        let b: Value = r.json().await.ok()?;
        (b["state"] == "done").then_some(b)
    })
    .await;
    assert_eq!(done["counts"]["not_confirmed"], N as i64, "{done}");
    let rungs: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT recipient_id || ':' || CAST(step AS TEXT)) FROM broadcast_sends \
         WHERE broadcast_id = $1 AND message_id IS NOT NULL",
    )
    .bind(&id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        rungs,
        (2 * N as i64, 2 * N as i64),
        "each rung queued once per recipient"
    );
    assert_eq!(count(&db, "messages", &org.id).await, 2 * N as i64);
    // Every rung reaches the provider; the lease re-sends what the kill cut.
    let seen = eventually(Duration::from_secs(90), || async {
        let got = twilio.received();
        let distinct: HashSet<(String, String)> = got
            .iter()
            .map(|r| (r.form["To"].clone(), r.form["Body"].clone()))
            .collect();
        (distinct.len() == 2 * N).then_some(got.len())
    })
    .await;
    assert!(
        seen - 2 * N <= 64,
        "{} sends repeated: more than were in flight",
        seen - 2 * N
    );
}
both_backends!(sigkill_mid_broadcast_resumes_without_skips_or_double_rungs);

/// An online agent's socket carries the broadcast's events (created, progress, finished),
/// and the agent is not handed the conversations the broadcast started: only a contact's
/// reply puts a conversation in the queue.
async fn agents_see_progress_but_not_unanswered_broadcast_conversations(backend: Backend) {
    use integration_tests::agent::{create_agent, login, AgentSocket};
    let w = World::new(backend).await;
    create_agent(&w.db, &w.org.id, "ann@acme.test", "pw-123456", "agent").await;
    let token = login(&w.client, &w.gw.base, "ann@acme.test", "pw-123456").await;
    let mut ws = AgentSocket::connect(&w.gw.base, &token, 0).await;
    ws.replay().await;
    let id = create(
        &w,
        &json!({
            "name": "Boil water notice",
            "recipients": [{"phone": BOB}, {"phone": CY}],
            "steps": [{"channel": "sms", "body": "boil water before drinking"}],
            "require_ack": false,
        }),
    )
    .await;
    let (done, seen) = ws
        .until(|f| f["event"]["type"] == "dartwing.broadcast.finished.v1")
        .await;
    assert_eq!(done["event"]["data"]["broadcast_id"], id.as_str());
    assert_eq!(done["event"]["data"]["counts"]["sent"], 2);
    let types: Vec<&str> = seen
        .iter()
        .filter_map(|f| f["event"]["type"].as_str())
        .collect();
    assert!(
        types.contains(&"dartwing.broadcast.created.v1"),
        "{types:?}"
    );
    // Give the assigner its chances: nothing is assigned while nobody answered.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let assigned = || async {
        let r: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM conversations WHERE org_id = $1 AND assignee_id IS NOT NULL",
        )
        .bind(&w.org.id)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
        r.0
    };
    assert_eq!(assigned().await, 0);
    reply(&w, BOB, "what about tea?").await;
    eventually(WAIT, || async { (assigned().await == 1).then_some(()) }).await;
}
both_backends!(agents_see_progress_but_not_unanswered_broadcast_conversations);

/// WhatsApp rungs (the Graph API stand-in): free-form text only inside the recipient's
/// 24-hour window — a recipient outside it passes over the rung at once to the next — or a
/// template outside it; a button reply whose payload acknowledges confirms.
async fn whatsapp_rungs_respect_the_window_and_buttons_confirm(backend: Backend) {
    use integration_tests::whatsapp::{delivery, text, GraphStandin};
    const OPEN: &str = "+16505551234";
    const CLOSED: &str = "+16505550000";
    let w = World::new(backend).await;
    let graph = GraphStandin::start().await;
    let acct = graph.add_account(&w.db, &w.org.id).await;
    let (wr, secret) = (&w, acct.app_secret.as_str());
    let post = move |v: Value| post_whatsapp(wr, secret, v);
    // OPEN wrote to us a moment ago: its window is open. CLOSED never did.
    let hello = delivery(
        json!([text("wamid.hello", "16505551234", "hi there")]),
        json!([]),
    );
    assert_eq!(post(hello).await, 200);
    let id = create(
        &w,
        &json!({
            "name": "Power outage",
            "recipients": [{"phone": OPEN}, {"phone": CLOSED}],
            "steps": [
                {"channel": "whatsapp", "body": "Power outage tonight"},
                {"channel": "sms", "after_secs": 600, "body": "Power outage tonight (sms)"},
            ],
            "ack_window_secs": 60,
        }),
    )
    .await;
    wait_sent(&w, CLOSED, 1).await;
    assert_eq!(
        sent_to(&w, CLOSED),
        vec!["Power outage tonight (sms)"],
        "passed over at once"
    );
    let to_digits = |r: &integration_tests::whatsapp::Received| {
        r.body["to"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('+')
            .to_string()
    };
    let got = eventually(WAIT, || async {
        let got = graph.received();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(to_digits(&got[0]), "16505551234");
    assert_eq!(got[0].body["type"], "text");
    assert!(sent_to(&w, OPEN).is_empty());
    let b = get(&w, &id).await;
    assert_eq!(
        (
            b["steps"][0]["queued"].as_i64(),
            b["steps"][0]["passed_over"].as_i64()
        ),
        (Some(1), Some(1))
    );

    // A template reaches CLOSED outside its window.
    create(&w, &json!({
        "name": "Planned works",
        "recipients": [{"phone": CLOSED}],
        "steps": [{"channel": "whatsapp", "template": {"name": "planned_works", "language": "en_US"}}],
        "require_ack": false,
    }))
    .await;
    let tpl = eventually(WAIT, || async {
        graph
            .received()
            .into_iter()
            .find(|r| r.body["type"] == "template")
    })
    .await;
    assert_eq!(to_digits(&tpl), "16505550000");
    assert_eq!(tpl.body["template"]["name"], "planned_works");

    // OPEN presses a quick-reply button whose payload is ACK: confirmed, via whatsapp.
    let button = json!({"from": "16505551234", "id": "wamid.button", "timestamp": "1749416999",
        "type": "button", "button": {"text": "Got it", "payload": "ACK"}});
    assert_eq!(post(delivery(json!([button]), json!([]))).await, 200);
    let b = wait_counts(&w, &id, &[("confirmed", 1), ("sent", 1)]).await;
    assert_eq!(b["steps"][0]["confirmed"], 1);
    let csv = csv_of(&w, &id).await;
    assert!(
        csv.lines()
            .any(|l| l.contains(OPEN) && l.contains(",confirmed,") && l.contains(",whatsapp,")),
        "{csv}"
    );
}
both_backends!(whatsapp_rungs_respect_the_window_and_buttons_confirm);

/// A WhatsApp rung with `ack_button` goes out as a reply button under the recipient's own
/// text, and a template's parameters are filled per recipient. A tap confirms the broadcast
/// whose message it answers (WhatsApp's `context`), not merely the sender's newest; a tap on
/// a message sent to somebody else confirms nothing of theirs; a typed YES with no context
/// confirms the newest.
async fn whatsapp_buttons_confirm_the_broadcast_they_answer(backend: Backend) {
    use integration_tests::whatsapp::{delivery, text, GraphStandin};
    const ANN_WA: &str = "+16505551234";
    const BOB_WA: &str = "+16505554321";
    let w = World::new(backend).await;
    let graph = GraphStandin::start().await;
    let acct = graph.add_account(&w.db, &w.org.id).await;
    let (wr, secret) = (&w, acct.app_secret.as_str());
    let post = move |v: Value| post_whatsapp(wr, secret, v);
    for (id, from) in [("wamid.a0", ANN_WA), ("wamid.b0", BOB_WA)] {
        let hello = delivery(json!([text(id, &from[1..], "hi")]), json!([]));
        assert_eq!(post(hello).await, 200);
    }
    let water = create(&w, &json!({
        "name": "Boil water",
        "recipients": [{"phone": ANN_WA, "name": "Ann"}, {"phone": BOB_WA, "name": "Bob"}],
        "steps": [{"channel": "whatsapp", "body": "{{name}}, boil your water", "ack_button": "Got it"}],
        "ack_window_secs": 600,
    }))
    .await;
    let road = create(&w, &json!({
        "name": "Road closed",
        "recipients": [{"phone": ANN_WA, "name": "Ann"}],
        "steps": [{"channel": "whatsapp", "template": {"name": "road_closed", "language": "en_US",
            "parameters": ["{{name}}", "Elm St"]}}],
        "ack_window_secs": 600,
    }))
    .await;
    let got = eventually(WAIT, || async {
        let got = graph.received();
        (got.len() == 3).then_some(got)
    })
    .await;
    let sent = |to: &str, kind: &str| {
        got.iter()
            .find(|r| r.body["to"] == to[1..] && r.body["type"] == kind)
            .unwrap_or_else(|| panic!("a {kind} to {to} in {got:?}"))
            .clone()
    };
    let (ann_button, bob_button) = (sent(ANN_WA, "interactive"), sent(BOB_WA, "interactive"));
    let ann_road = sent(ANN_WA, "template");
    let i = &ann_button.body["interactive"];
    assert_eq!(i["body"]["text"], "Ann, boil your water");
    assert_eq!(
        i["action"]["buttons"][0]["reply"],
        json!({"id": "ack", "title": "Got it"})
    );
    assert_eq!(
        bob_button.body["interactive"]["body"]["text"],
        "Bob, boil your water"
    );
    let params = &ann_road.body["template"]["components"][0]["parameters"];
    assert_eq!(params[0]["text"], "Ann");
    assert_eq!(params[1]["text"], "Elm St");
    // The replies below name our messages by the ids the stand-in gave them: wait until
    // those acceptances are stored.
    let wamid = |r: &integration_tests::whatsapp::Received| r.id.clone().unwrap();
    let ids = [wamid(&ann_button), wamid(&bob_button), wamid(&ann_road)];
    eventually(WAIT, || async {
        let stored: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM messages WHERE provider_message_id IN ($1, $2, $3)",
        )
        .bind(&ids[0])
        .bind(&ids[1])
        .bind(&ids[2])
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
        (stored.0 == 3).then_some(())
    })
    .await;
    let tap = |id: &str, from: &str, context: &str| {
        json!({"from": &from[1..], "id": id, "timestamp": "1749416999",
            "context": {"from": "15550001111", "id": context},
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": "ack", "title": "Got it"}}})
    };
    // Ann taps the button of the older broadcast: that one is confirmed, the newer waits.
    let ann_tap = tap("wamid.a1", ANN_WA, &ids[0]);
    assert_eq!(post(delivery(json!([ann_tap]), json!([]))).await, 200);
    wait_counts(&w, &water, &[("confirmed", 1), ("sent", 1)]).await;
    assert_eq!(get(&w, &road).await["counts"]["sent"], 1);
    // Bob taps with Ann's road message as the context: it is not his, so his own newest
    // broadcast is confirmed and Ann's stays waiting.
    let bob_tap = tap("wamid.b1", BOB_WA, &ids[2]);
    assert_eq!(post(delivery(json!([bob_tap]), json!([]))).await, 200);
    wait_counts(&w, &water, &[("confirmed", 2), ("sent", 0)]).await;
    let r = get(&w, &road).await;
    assert_eq!(
        (
            r["counts"]["sent"].as_i64(),
            r["counts"]["confirmed"].as_i64()
        ),
        (Some(1), Some(0))
    );
    // A typed YES with no context confirms Ann's newest unconfirmed broadcast.
    let yes = delivery(json!([text("wamid.a2", &ANN_WA[1..], "YES")]), json!([]));
    assert_eq!(post(yes).await, 200);
    wait_counts(&w, &road, &[("confirmed", 1), ("sent", 0)]).await;
    // A button on a step that is not WhatsApp is refused, naming the field.
    let bad = json!({"name": "x", "recipients": [{"phone": ANN_WA}],
        "steps": [{"channel": "sms", "body": "x", "ack_button": "OK"}]});
    let r = crate::post(&w, &bad, None).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("steps[0].ack_button"),
        "{e}"
    );
}
both_backends!(whatsapp_buttons_confirm_the_broadcast_they_answer);

/// A round finds or makes its recipients' contacts and conversations together, and files
/// each rung in its contact's conversation: a known contact's open one (its times moved), a
/// saved contact's first one, a new number's new one — one contact per number, one
/// `conversation.created` per new conversation, nothing made for a number twice.
async fn a_round_files_each_rung_in_its_contacts_conversation(backend: Backend) {
    const DEE: &str = "+15550000004";
    let w = World::new(backend).await;
    reply(&w, ANN, "hello").await;
    let saved = w
        .client
        .post(format!("{}/api/v1/contacts", w.gw.base))
        .bearer_auth(&w.org.key)
        .json(&json!({"name": "Bob", "phone": BOB}))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 201);
    let sql = |q: &'static str| {
        let (pool, org) = (w.db.pool.clone(), w.org.id.clone());
        async move {
            let r: (i64,) = sqlx::query_as(q).bind(org).fetch_one(&pool).await.unwrap();
            r.0
        }
    };
    let ann_before = sql(
        "SELECT c.last_message_at FROM conversations c JOIN contact_identities ci \
         ON ci.contact_id = c.contact_id AND ci.org_id = c.org_id \
         WHERE c.org_id = $1 AND ci.address = '+15550000001'",
    )
    .await;
    let everyone = [ANN, BOB, CY, DEE];
    let recipients: Vec<Value> = everyone.iter().map(|p| json!({"phone": p})).collect();
    create(
        &w,
        &json!({"name": "Drill", "recipients": recipients, "require_ack": false,
        "steps": [{"channel": "sms", "body": "Fire drill at noon"}]}),
    )
    .await;
    for phone in everyone {
        wait_sent(&w, phone, 1).await;
    }
    let filed = sql("SELECT COUNT(*) FROM messages m \
         JOIN conversations c ON c.id = m.conversation_id AND c.contact_id = m.contact_id \
         JOIN contact_identities ci ON ci.contact_id = m.contact_id AND ci.org_id = m.org_id \
         AND ci.channel = 'sms' AND ci.address = m.to_addr \
         WHERE m.org_id = $1 AND m.direction = 'outbound' AND c.last_message_at >= m.created_at");
    assert_eq!(filed.await, 4);
    let identities =
        "SELECT COUNT(*) FROM contact_identities WHERE org_id = $1 AND channel = 'sms'";
    assert_eq!(sql(identities).await, 4);
    assert_eq!(
        sql("SELECT COUNT(*) FROM contacts WHERE org_id = $1").await,
        4
    );
    assert_eq!(
        sql("SELECT COUNT(*) FROM conversations WHERE org_id = $1").await,
        4
    );
    let created = "SELECT COUNT(*) FROM outbox WHERE org_id = $1 \
                   AND type = 'dartwing.conversation.created.v1'";
    assert_eq!(sql(created).await, 4);
    let ann_after = sql(
        "SELECT c.last_message_at FROM conversations c JOIN contact_identities ci \
         ON ci.contact_id = c.contact_id AND ci.org_id = c.org_id \
         WHERE c.org_id = $1 AND ci.address = '+15550000001'",
    )
    .await;
    assert!(ann_after > ann_before, "{ann_before} → {ann_after}");
}
both_backends!(a_round_files_each_rung_in_its_contacts_conversation);

/// A broadcast to a sender paced at 2 messages/s goes out no faster (a burst of 2, then one
/// every half second: 6 messages over at least 1.8 s), and each wait is counted in
/// `broadcast_throttled_total{organization}`, the label the platform's dashboards query.
async fn a_paced_sender_throttles_the_broadcast_and_counts_it(backend: Backend) {
    let w = World::new(backend).await;
    w.replace_twilio_account(&w.org.from, 2.0).await;
    let recipients: Vec<Value> = (0..6)
        .map(|i| json!({"phone": format!("+155576540{i:02}")}))
        .collect();
    let body = json!({"name": "paced", "recipients": recipients, "steps": [{"channel": "sms", "body": "paced"}]});
    create(&w, &body).await;
    eventually(Duration::from_secs(30), || async {
        (w.twilio.received_count() >= 6).then_some(())
    })
    .await;
    let mut at = w.twilio.arrivals();
    at.sort();
    let span = at[at.len() - 1] - at[0];
    assert!(span >= Duration::from_millis(1_800), "{span:?}");
    let metrics = w.get_text("/metrics").await;
    let line = format!("broadcast_throttled_total{{organization=\"{}\"}}", w.org.id);
    assert!(metrics.contains(&line), "{line} in {metrics}");
}
both_backends!(a_paced_sender_throttles_the_broadcast_and_counts_it);
