//! Outbound SMS through the Twilio stand-in on both backends: acceptance, callbacks out of
//! order, retries, permanent failures, dead letters and replay, idempotency, tenant isolation.

use integration_tests::both_backends;
use integration_tests::env::{count, create_org, eventually, Backend, World};
use integration_tests::twilio::{status_callback, Scripted};
use serde_json::Value;
use std::time::Duration;

const TO: &str = "+15557654321";
const WAIT: Duration = Duration::from_secs(15);

async fn message(w: &World, id: &str) -> Value {
    w.get_json(&w.org, &format!("/api/v1/messages/{id}")).await
}

async fn wait_status(w: &World, id: &str, status: &str) -> Value {
    eventually(WAIT, || async {
        let m = message(w, id).await;
        (m["status"] == status).then_some(m)
    })
    .await
}

async fn send(w: &World, body: &str) -> String {
    let r = w.send_sms(&w.org, TO, body).await;
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn accepted_then_callbacks_in_any_order(backend: Backend) {
    let w = World::new(backend).await;
    let id = send(&w, "Your appointment is at 3pm").await;
    let m = wait_status(&w, &id, "sent").await;
    let got = w.twilio.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].authorized, "basic auth with the account's token");
    assert_eq!(got[0].form["To"], TO);
    assert_eq!(got[0].form["From"], w.org.from);
    assert_eq!(got[0].form["Body"], "Your appointment is at 3pm");
    assert_eq!(
        got[0].form["StatusCallback"],
        format!("{}/webhooks/twilio/acme/status", w.gw.base)
    );
    let sid = got[0].sid.clone().unwrap();
    assert_eq!(m["provider_message_id"], sid.as_str());

    // Late, duplicate and out of order: read, sent, delivered, read, sent. Each callback is
    // answered after its commit, so the outbox counted afterwards holds whatever it produced.
    let events_before = count(&w.db, "outbox", &w.org.id).await;
    for status in ["read", "sent", "delivered", "read", "sent", "undelivered"] {
        let r = w
            .webhook(
                &w.org,
                "status",
                &status_callback(
                    &w.org,
                    &sid,
                    status,
                    Some("30003").filter(|_| status == "undelivered"),
                ),
            )
            .await;
        assert_eq!(r.status(), 200, "{status}");
    }
    assert_eq!(
        count(&w.db, "outbox", &w.org.id).await - events_before,
        1,
        "only the callback that moved the state (read) produced an event"
    );
    let metrics = w.get_text("/metrics").await;
    assert!(
        metrics.contains("message_delivered_total{channel=\"sms\"} 1"),
        "a read receipt first counts as delivered, once: {metrics}"
    );
    assert!(
        metrics.contains("message_delivery_duration_seconds_count{channel=\"sms\"} 1")
            || metrics.contains("message_delivery_duration_seconds{channel=\"sms\",quantile"),
        "{metrics}"
    );
    let m = message(&w, &id).await;
    assert_eq!(m["status"], "read", "never backwards, terminal stays");
    let history: Vec<(String, bool)> = m["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                format!(
                    "{}:{}",
                    h["event"].as_str().unwrap(),
                    h["reported"].as_str().unwrap_or("")
                ),
                h["applied"].as_bool().unwrap(),
            )
        })
        .collect();
    let expect = [
        ("create:", true),
        ("dispatch:", true),
        ("accepted:", true),
        ("report:read", true),
        ("report:sent", false),
        ("report:delivered", false),
        ("report:read", false),
        ("report:sent", false),
        ("report:failed", false),
    ];
    let expect: Vec<(String, bool)> = expect.iter().map(|(e, a)| (e.to_string(), *a)).collect();
    assert_eq!(history, expect);

    // A callback for an id we do not know (yet) is acknowledged and kept for matching: it
    // may have beaten its send's commit. It changes no message.
    let r = w
        .webhook(
            &w.org,
            "status",
            &status_callback(&w.org, "SMnotours", "delivered", None),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(count(&w.db, "pending_statuses", &w.org.id).await, 1);
    assert_eq!(
        message(&w, &id).await["history"].as_array().unwrap().len(),
        9
    );
    integration_tests::schema::assert_org_events_valid(&w, &w.org).await;
    w.gw.stop().await;
}
both_backends!(accepted_then_callbacks_in_any_order);

async fn transient_500_then_200_is_sent_once(backend: Backend) {
    let w = World::new(backend).await;
    w.twilio.script([Scripted::Fail {
        status: 500,
        code: 20500,
    }]);
    let id = send(&w, "retry me").await;
    let m = wait_status(&w, &id, "sent").await;
    let got = w.twilio.received();
    assert_eq!(got.len(), 2, "one failure, one success");
    assert_eq!(
        got.iter().filter(|r| r.sid.is_some()).count(),
        1,
        "accepted exactly once"
    );
    assert_eq!(m["attempts"], 2);
    let events: Vec<String> = m["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        events,
        ["create", "dispatch", "retry_scheduled", "accepted"]
    );
    assert_eq!(count(&w.db, "dead_letters", &w.org.id).await, 0);
    w.gw.stop().await;
}
both_backends!(transient_500_then_200_is_sent_once);

async fn permanent_error_fails_at_once_and_replays(backend: Backend) {
    let w = World::new(backend).await;
    // The first send fails permanently; a second message fails once transiently and is
    // retried. Its retry is the barrier: a retry of the first message, had one been
    // scheduled, would have been due before it.
    w.twilio.script([
        Scripted::Fail {
            status: 400,
            code: 21211,
        },
        Scripted::Fail {
            status: 500,
            code: 20500,
        },
    ]);
    let id = send(&w, "to a bad number").await;
    let m = wait_status(&w, &id, "failed").await;
    assert_eq!(m["error_code"], "21211");
    let barrier = send(&w, "retried once").await;
    wait_status(&w, &barrier, "sent").await;
    let bodies: Vec<String> = w
        .twilio
        .received()
        .iter()
        .map(|r| r.form["Body"].clone())
        .collect();
    assert_eq!(
        bodies,
        ["to a bad number", "retried once", "retried once"],
        "a permanent error is never retried"
    );
    let dls = w.get_json(&w.org, "/api/v1/dead-letters").await;
    assert_eq!(dls.as_array().unwrap().len(), 1);
    assert_eq!(dls[0]["message_id"], id.as_str());
    assert_eq!(dls[0]["error_code"], "21211");
    let metrics = w.get_text("/metrics").await;
    assert!(
        metrics.contains("dead_letter_queue_depth{channel=\"sms\"} 1"),
        "{metrics}"
    );

    let dl = dls[0]["id"].as_str().unwrap();
    let url = format!("{}/api/v1/dead-letters/{dl}/replay", w.gw.base);
    let r = w
        .client
        .post(&url)
        .bearer_auth(&w.org.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let new_id = r.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_id, id);
    wait_status(&w, &new_id, "sent").await;
    assert_eq!(
        message(&w, &id).await["status"],
        "failed",
        "the failed message stays failed"
    );
    let r = w
        .client
        .post(&url)
        .bearer_auth(&w.org.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "a dead letter replays once");
    integration_tests::schema::assert_org_events_valid(&w, &w.org).await;
    w.gw.stop().await;
}
both_backends!(permanent_error_fails_at_once_and_replays);

async fn exhausted_retries_become_a_dead_letter(backend: Backend) {
    let w = World::with_config(backend, |c| {
        c.delivery.max_attempts = 3;
        c.delivery.breaker_threshold = 100;
    })
    .await;
    w.twilio.script((0..3).map(|_| Scripted::Fail {
        status: 503,
        code: 20503,
    }));
    let id = send(&w, "provider is down").await;
    let m = wait_status(&w, &id, "failed").await;
    assert_eq!(m["attempts"], 3);
    assert!(m["error_message"]
        .as_str()
        .unwrap()
        .contains("gave up after 3 attempts"));
    assert_eq!(w.twilio.received().len(), 3);
    assert_eq!(count(&w.db, "dead_letters", &w.org.id).await, 1);
    integration_tests::schema::assert_org_events_valid(&w, &w.org).await;
    w.gw.stop().await;
}
both_backends!(exhausted_retries_become_a_dead_letter);

async fn idempotency_key_and_validation(backend: Backend) {
    let w = World::new(backend).await;
    let post = |key: &'static str, body: &'static str| {
        w.client
            .post(format!("{}/api/v1/messages", w.gw.base))
            .bearer_auth(&w.org.key)
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({"channel": "sms", "to": TO, "body": body}))
            .send()
    };
    let a: Value = post("k-1", "once").await.unwrap().json().await.unwrap();
    let r = post("k-1", "once").await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let b: Value = r.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    assert_eq!(post("k-1", "different").await.unwrap().status(), 422);
    assert_eq!(count(&w.db, "messages", &w.org.id).await, 1);

    let bad = |body: Value| {
        w.client
            .post(format!("{}/api/v1/messages", w.gw.base))
            .bearer_auth(&w.org.key)
            .json(&body)
            .send()
    };
    let r = bad(serde_json::json!({"channel": "pigeon", "to": TO, "body": "x"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("channel"));
    let r = bad(serde_json::json!({"channel": "sms", "to": "555", "body": "x"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("`to`"));
    let r = bad(serde_json::json!({"channel": "sms", "to": TO}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("body"));
    let r = bad(serde_json::json!({"channel": "email", "to": "a@b.c", "body": "x"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "no email account configured");
    let r = w
        .client
        .post(format!("{}/api/v1/messages", w.gw.base))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = w
        .client
        .get(format!("{}/api/v1/conversations", w.gw.base))
        .bearer_auth("dw_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(count(&w.db, "messages", &w.org.id).await, 1);
    w.gw.stop().await;
}
both_backends!(idempotency_key_and_validation);

async fn another_orgs_objects_are_404(backend: Backend) {
    let w = World::new(backend).await;
    let other = create_org(&w.db, "globex", &w.twilio.base, 1000.0).await;
    w.twilio.add_account(&other);
    w.twilio.script([Scripted::Fail {
        status: 400,
        code: 21211,
    }]);
    let id = send(&w, "acme's secret").await;
    wait_status(&w, &id, "failed").await;
    let conv = w.get_json(&w.org, "/api/v1/conversations").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dl = w.get_json(&w.org, "/api/v1/dead-letters").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let as_other = |path: String| {
        w.client
            .get(format!("{}{path}", w.gw.base))
            .bearer_auth(&other.key)
            .send()
    };
    assert_eq!(
        as_other(format!("/api/v1/messages/{id}"))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        as_other(format!("/api/v1/conversations/{conv}/messages"))
            .await
            .unwrap()
            .status(),
        404
    );
    let r = w
        .client
        .post(format!("{}/api/v1/dead-letters/{dl}/replay", w.gw.base))
        .bearer_auth(&other.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        w.get_json(&other, "/api/v1/conversations")
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        w.get_json(&other, "/api/v1/events")
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // A webhook signed with globex's token at acme's path is refused.
    let params = integration_tests::twilio::inbound_sms(
        &w.org,
        "SM0000000000000000000000000000000X",
        TO,
        "hi",
    );
    let r = integration_tests::twilio::post_signed(
        &w.client,
        &w.gw.base,
        "/webhooks/twilio/acme/sms",
        &other.auth_token,
        &params,
    )
    .await;
    assert_eq!(r.status(), 401);
    w.gw.stop().await;
}
both_backends!(another_orgs_objects_are_404);

async fn stop_after_queueing_stops_the_retry(backend: Backend) {
    let w = World::with_config(backend, |c| {
        c.delivery.retry_base_ms = 1_500;
        c.delivery.retry_max_ms = 3_000;
    })
    .await;
    w.twilio.script([Scripted::Fail {
        status: 503,
        code: 20503,
    }]);
    let id = send(&w, "reminder").await;
    eventually(WAIT, || async {
        (w.twilio.received().len() == 1).then_some(())
    })
    .await;
    let stop = integration_tests::twilio::inbound_sms(
        &w.org,
        "SM0000000000000000000000000000STOP",
        TO,
        "STOP",
    );
    assert_eq!(w.webhook(&w.org, "sms", &stop).await.status(), 200);
    let m = wait_status(&w, &id, "failed").await;
    assert!(
        m["error_message"].as_str().unwrap().contains("opted out"),
        "{m}"
    );
    assert_eq!(
        w.twilio.received().len(),
        1,
        "the retry never reached the provider"
    );
    w.gw.stop().await;
}
both_backends!(stop_after_queueing_stops_the_retry);

/// What networks and proxies do to a send: 429 with `Retry-After` (honoured), an HTML 502
/// page, a request held past the send timeout, a connection closed without an answer. Each
/// is retried; the message is accepted exactly once.
async fn provider_faults_are_retried_and_sent_once(backend: Backend) {
    let w = World::with_config(backend, |c| c.delivery.send_timeout_ms = 500).await;
    w.twilio.script([
        Scripted::RateLimited {
            retry_after_secs: 1,
        },
        Scripted::HtmlError { status: 502 },
        Scripted::Hang { ms: 1_500 },
        Scripted::Reset,
    ]);
    let id = send(&w, "through the storm").await;
    let m = wait_status(&w, &id, "sent").await;
    let got = w.twilio.received();
    assert_eq!(got.len(), 5, "four faults, then the acceptance");
    assert_eq!(
        got.iter().filter(|r| r.sid.is_some()).count(),
        1,
        "accepted exactly once"
    );
    assert_eq!(got[4].sid.as_deref(), m["provider_message_id"].as_str());
    let gap = got[1].at.duration_since(got[0].at);
    assert!(
        gap >= Duration::from_secs(1),
        "retried {gap:?} after a 429 with Retry-After: 1"
    );
    assert_eq!(m["attempts"], 5);
    let events: Vec<&str> = m["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "create",
            "dispatch",
            "retry_scheduled",
            "retry_scheduled",
            "retry_scheduled",
            "retry_scheduled",
            "accepted"
        ]
    );
    w.gw.stop().await;
}
both_backends!(provider_faults_are_retried_and_sent_once);

/// An account whose sender is a Messaging Service (`MG…`) sends with `MessagingServiceSid`
/// and no `From` (Twilio requires exactly one of the two).
async fn messaging_service_sender(backend: Backend) {
    let w = World::new(backend).await;
    // Replaced before the first send, so no node has built the org's plugin yet.
    w.replace_twilio_account("MG00000000000000000000000000000001", 1000.0)
        .await;
    let id = send(&w, "from the service").await;
    let m = wait_status(&w, &id, "sent").await;
    let got = w.twilio.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].form.get("MessagingServiceSid").map(String::as_str),
        Some("MG00000000000000000000000000000001")
    );
    assert!(!got[0].form.contains_key("From"), "{:?}", got[0].form);
    assert_eq!(got[0].sid.as_deref(), m["provider_message_id"].as_str());
    w.gw.stop().await;
}
both_backends!(messaging_service_sender);

/// The stand-in refuses what Twilio refuses, with Twilio's codes, so a gateway that sent such
/// a request would see the real answer.
#[tokio::test]
async fn the_twilio_stand_in_is_as_strict_as_twilio() {
    integration_tests::env::init();
    let twilio = integration_tests::twilio::TwilioStandin::start().await;
    let (sid, token) = ("AC00000000000000000000000000000001", "secret");
    twilio.add_credentials(sid, token);
    let client = reqwest::Client::new();
    let long = "x".repeat(1601);
    type Form<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Form, u16, u32); 5] = [
        (&[("From", "+15550001111"), ("Body", "hi")], 400, 21604),
        (&[("To", TO), ("Body", "hi")], 400, 21603),
        (&[("To", TO), ("From", "+15550001111")], 400, 21602),
        (
            &[
                ("To", TO),
                ("From", "+15550001111"),
                ("Body", long.as_str()),
            ],
            400,
            21617,
        ),
        (
            &[("To", TO), ("MessagingServiceSid", "MG1"), ("Body", "hi")],
            201,
            0,
        ),
    ];
    for (form, status, code) in cases {
        let r = client
            .post(format!(
                "{}/2010-04-01/Accounts/{sid}/Messages.json",
                twilio.base
            ))
            .basic_auth(sid, Some(token))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{form:?}");
        let body: Value = r.json().await.unwrap();
        if status == 201 {
            assert_eq!(body["status"], "accepted");
            assert_eq!(body["from"], Value::Null);
        } else {
            assert_eq!(body["code"], code, "{form:?}");
        }
    }
}

/// Provider ids of inbound and outbound messages are separate namespaces; and when a send's
/// acceptance cannot be recorded (a provider reusing an id it already gave another of our
/// sends), the message ends `failed` with the provider's id in the reason and a dead letter —
/// never stuck in `sending`, never sent again.
async fn an_unrecordable_acceptance_fails_visibly_and_is_not_resent(backend: Backend) {
    let w = World::new(backend).await;
    let sid = "SM0000000000000000000000000000C0DE";
    // An inbound message that already has the id.
    let params = integration_tests::twilio::inbound_sms(&w.org, sid, TO, "inbound first");
    assert_eq!(w.webhook(&w.org, "sms", &params).await.status(), 200);
    w.twilio.script([
        Scripted::AcceptAs(sid.into()),
        Scripted::AcceptAs(sid.into()),
    ]);
    let first = send(&w, "first").await;
    let m = wait_status(&w, &first, "sent").await;
    assert_eq!(
        m["provider_message_id"], sid,
        "no clash with the inbound id"
    );
    let second = send(&w, "second").await;
    wait_status(&w, &second, "failed").await;
    let dls = w.get_json(&w.org, "/api/v1/dead-letters").await;
    assert_eq!(dls.as_array().unwrap().len(), 1);
    assert_eq!(dls[0]["message_id"], second.as_str());
    let reason = dls[0]["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains(sid),
        "the reason names the provider's id: {dls}"
    );
    // The barrier: a third message sent after the failure is recorded; the second was not
    // sent again meanwhile.
    let third = send(&w, "third").await;
    wait_status(&w, &third, "sent").await;
    let bodies: Vec<String> = w
        .twilio
        .received()
        .iter()
        .map(|r| r.form["Body"].clone())
        .collect();
    assert_eq!(bodies, ["first", "second", "third"]);
    let metrics = w.get_text("/metrics").await;
    assert!(
        metrics.contains("send_outcome_unrecorded_total{channel=\"sms\"} 1"),
        "{metrics}"
    );
    w.gw.stop().await;
}
both_backends!(an_unrecordable_acceptance_fails_visibly_and_is_not_resent);

/// One sender's rate holds across nodes: two gateways share a PostgreSQL database and one
/// Twilio number paced at 4 messages/s; 24 messages queued through both nodes at once reach
/// the provider no faster than the one rate allows (a burst of 4, then 4 a second: at least
/// 5 s from first to last), not twice as fast as each node pacing alone did (about 2 s).
#[tokio::test]
async fn the_sender_rate_holds_across_nodes() {
    use integration_tests::env::{test_config, TestDb, TestGateway};
    let tdb = TestDb::new(Backend::Postgres).await;
    let db = tdb.connect().await;
    let twilio = integration_tests::twilio::TwilioStandin::start().await;
    let org = create_org(&db, "acme", &twilio.base, 4.0).await;
    twilio.add_account(&org);
    let nodes = [
        TestGateway::start(test_config(&tdb.url)).await,
        TestGateway::start(test_config(&tdb.url)).await,
    ];
    let client = reqwest::Client::new();
    let sends = (0..24).map(|i| {
        let req = client
            .post(format!("{}/api/v1/messages", nodes[i % 2].base))
            .bearer_auth(&org.key)
            .json(&serde_json::json!({"channel": "sms", "to": format!("+155576530{i:02}"), "body": format!("paced {i}")}));
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    eventually(Duration::from_secs(30), || async {
        (twilio.received_count() >= 24).then_some(())
    })
    .await;
    let mut at = twilio.arrivals();
    at.sort();
    let span = at[at.len() - 1] - at[0];
    // The most that reached the provider in any 2 s: the burst and two seconds' worth.
    let busiest = at
        .iter()
        .map(|t| {
            at.iter()
                .filter(|u| **u >= *t && **u - *t < Duration::from_secs(2))
                .count()
        })
        .max()
        .unwrap();
    println!("24 sends through two nodes: {span:?} from first to last; at most {busiest} in 2 s");
    assert_eq!(twilio.received_count(), 24, "each sent once");
    assert!(span >= Duration::from_millis(4_800), "{span:?}");
    assert!(busiest <= 4 + 8 + 1, "{busiest} sends in 2 s");
    for n in nodes {
        n.stop().await;
    }
}

/// The send worker's bulk writes (`db::sends`) leave each message exactly what the
/// one-at-a-time path leaves: the same history rows, state and events as a message accepted
/// alone. A batch with a report already waiting for one of its messages, or with another
/// org's message in it, writes nothing (the committer then records it one at a time).
async fn bulk_claims_and_acceptances_write_what_single_ones_do(backend: Backend) {
    use gateway::db::messages::{self, Created, NewOutbound};
    use gateway::db::sends;
    use sqlx::Row;
    let tdb = integration_tests::env::TestDb::new(backend).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 10.0).await;
    let mut conn = db.pool.acquire().await.unwrap();
    let now = gateway::db::now_ms();
    let mut ids = Vec::new();
    for i in 0..4 {
        let req = NewOutbound {
            channel: state_machines::Channel::Sms,
            from: org.from.clone(),
            to: format!("+1555000000{i}"),
            body: format!("hello {i}"),
            content: None,
            needs_service_window: false,
            idempotency_key: None,
            bulk: i > 0,
            daily_cap: None,
            attachments: Vec::new(),
        };
        match messages::create_outbound(&mut conn, &org.id, &req, now)
            .await
            .unwrap()
        {
            Created::Queued { id, .. } => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    // One claim takes all four (the person's message first), leased, in `sending`.
    let claimed = sends::claim_due(&mut conn, now, 10, 10, 60_000)
        .await
        .unwrap();
    let got: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!claimed[0].bulk && claimed[1].bulk);
    for id in &ids {
        let r = sqlx::query("SELECT status, attempts, next_attempt_at FROM messages WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        let row: (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
        assert_eq!(row, ("sending".into(), 1, now + 60_000));
    }
    // A claim when nothing is due takes nothing.
    assert!(sends::claim_due(&mut conn, now, 10, 10, 60_000)
        .await
        .unwrap()
        .is_empty());

    // The first message accepted alone, the way the committer records a lone acceptance.
    messages::record_accepted(&mut conn, &org.id, &ids[0], "SM0", "queued", now)
        .await
        .unwrap();
    let provider: Vec<String> = (1..4).map(|i| format!("SM{i}")).collect();
    let items: Vec<sends::Acceptance<'_>> = (1..4)
        .map(|i| {
            (
                org.id.as_str(),
                ids[i].as_str(),
                provider[i - 1].as_str(),
                "queued",
            )
        })
        .collect();
    let history = |id: String| {
        let pool = db.pool.clone();
        async move {
            sqlx::query(
                "SELECT event, reported, state, applied, provider_status, error_code, \
                 error_message, details, source, at FROM message_history WHERE message_id = $1 \
                 ORDER BY id",
            )
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let text = |i: usize| r.get::<Option<String>, _>(i).unwrap_or_default();
                format!(
                    "{} {} {} {} {} {} {} {} {} {}",
                    text(0),
                    text(1),
                    text(2),
                    r.get::<i64, _>(3),
                    text(4),
                    text(5),
                    text(6),
                    text(7),
                    text(8),
                    r.get::<i64, _>(9)
                )
            })
            .collect::<Vec<_>>()
        }
    };
    let before: Vec<Vec<String>> = {
        let mut all = Vec::new();
        for id in &ids[1..] {
            all.push(history(id.clone()).await);
        }
        all
    };
    // A report that beat the third acceptance to the database: not plain, nothing written.
    sqlx::query(
        "INSERT INTO pending_statuses (org_id, channel, provider_message_id, report, received_at) \
         VALUES ($1, 'sms', 'SM2', '{}', $2)",
    )
    .bind(&org.id)
    .bind(now)
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        sends::accept_many(&mut conn, &items, now).await.unwrap(),
        None
    );
    sqlx::query("DELETE FROM pending_statuses")
        .execute(&db.pool)
        .await
        .unwrap();
    // Another org's message among them: nothing written either.
    let other = create_org(&db, "globex", "http://127.0.0.1:9", 10.0).await;
    let mut foreign = items.clone();
    foreign[1].0 = other.id.as_str();
    assert_eq!(
        sends::accept_many(&mut conn, &foreign, now).await.unwrap(),
        None
    );
    for (id, was) in ids[1..].iter().zip(&before) {
        assert_eq!(&history(id.clone()).await, was, "nothing written");
    }
    // The plain batch.
    let applied = sends::accept_many(&mut conn, &items, now)
        .await
        .unwrap()
        .expect("a plain batch");
    assert!(applied
        .iter()
        .all(|a| a.from.as_str() == "sending" && a.to.as_str() == "sent"));
    let alone = history(ids[0].clone()).await;
    assert_eq!(alone.len(), 3, "{alone:?}");
    let events = |id: String| {
        let pool = db.pool.clone();
        async move {
            sqlx::query("SELECT type, data FROM outbox WHERE subject = $1 ORDER BY id")
                .bind(format!("messages/{id}"))
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    let kind: String = r.get(0);
                    let mut data: Value = serde_json::from_str(&r.get::<String, _>(1)).unwrap();
                    let fields = data.as_object_mut().unwrap();
                    for id in ["message_id", "conversation_id", "contact_id"] {
                        fields.remove(id);
                    }
                    if kind == "dartwing.message.queued.v1" {
                        // Each message's own address and text.
                        fields.remove("to");
                        fields.remove("body");
                    }
                    (kind, data)
                })
                .collect::<Vec<_>>()
        }
    };
    let alone_events = events(ids[0].clone()).await;
    assert_eq!(
        alone_events.len(),
        3,
        "queued, sending, sent: {alone_events:?}"
    );
    for (i, id) in ids.iter().enumerate().skip(1) {
        assert_eq!(history(id.clone()).await, alone, "history of message {i}");
        assert_eq!(
            events(id.clone()).await,
            alone_events,
            "events of message {i}"
        );
        let r = sqlx::query(
            "SELECT status, provider_message_id, next_attempt_at, error_message FROM messages \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let row: (String, String, Option<i64>, Option<String>) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        assert_eq!(row, ("sent".into(), format!("SM{i}"), None, None));
    }
    // The same acceptances again (a retried batch): history only, no state change, no event.
    let again = sends::accept_many(&mut conn, &items, now)
        .await
        .unwrap()
        .unwrap();
    assert!(again.iter().all(|a| a.from == a.to));
    assert_eq!(events(ids[1].clone()).await, alone_events);
    assert_eq!(history(ids[1].clone()).await.len(), 4);
}
both_backends!(bulk_claims_and_acceptances_write_what_single_ones_do);
