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

    // Late, duplicate and out of order: read, sent, delivered, read, sent.
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
    w.twilio.script([Scripted::Fail {
        status: 400,
        code: 21211,
    }]);
    let id = send(&w, "to a bad number").await;
    let m = wait_status(&w, &id, "failed").await;
    assert_eq!(m["error_code"], "21211");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        w.twilio.received().len(),
        1,
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
