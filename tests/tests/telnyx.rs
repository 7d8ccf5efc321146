//! Telnyx SMS end to end on both backends, against the Telnyx stand-in: Ed25519-signed
//! webhooks (forged, stale, missing, re-serialised → 401 and nothing stored), inbound
//! messages with STOP, sends with delivery reports, error classification.

use integration_tests::both_backends;
use integration_tests::env::{count, eventually, Backend, World};
use integration_tests::telnyx::{received, report, Scripted, TelnyxStandin, FROM};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);
const CUSTOMER: &str = "+13125550001";

/// An org whose only SMS account is Telnyx (the World's Twilio account is removed).
async fn setup(backend: Backend) -> (World, TelnyxStandin) {
    let w = World::new(backend).await;
    sqlx::query("DELETE FROM channel_accounts WHERE org_id = $1")
        .bind(&w.org.id)
        .execute(&w.db.pool)
        .await
        .unwrap();
    let telnyx = TelnyxStandin::start().await;
    telnyx.add_account(&w.db, &w.org.id).await;
    (w, telnyx)
}

async fn inbound_and_bad_signatures(backend: Backend) {
    let (w, telnyx) = setup(backend).await;
    let messages = || async { count(&w.db, "messages", &w.org.id).await };
    let body = serde_json::to_vec(&received(
        "84cca175-9755-4859-b67f-4730d7f58aa3",
        CUSTOMER,
        "Hi there",
    ))
    .unwrap();
    let url = format!("{}/webhooks/telnyx/acme/sms", w.gw.base);
    let now = gateway::db::now_ms() / 1000;
    let post = |body: Vec<u8>, headers: Vec<(&'static str, String)>| {
        let mut req = w
            .client
            .post(&url)
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.body(body).send()
    };
    // Missing, stale (six minutes old), forged (another key), over a re-serialised body.
    assert_eq!(post(body.clone(), vec![]).await.unwrap().status(), 401);
    let stale = telnyx.sign(&body, now - 360).to_vec();
    assert_eq!(post(body.clone(), stale).await.unwrap().status(), 401);
    let other = TelnyxStandin::start().await;
    assert_eq!(
        post(body.clone(), other.sign(&body, now).to_vec())
            .await
            .unwrap()
            .status(),
        401
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    let pretty = serde_json::to_vec_pretty(&v).unwrap();
    assert_eq!(
        post(pretty, telnyx.sign(&body, now).to_vec())
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(messages().await, 0);
    // Signed but malformed: 400 naming the field, nothing stored.
    let mut bad = v.clone();
    bad["data"]["payload"]["from"] = json!({});
    let bad = serde_json::to_vec(&bad).unwrap();
    let r = telnyx
        .post_signed(&w.client, &w.gw.base, "acme", &bad)
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("from.phone_number"));
    assert_eq!(messages().await, 0);

    // Genuine: stored once, retries change nothing, shown with channel sms.
    for _ in 0..2 {
        assert_eq!(
            telnyx
                .post_signed(&w.client, &w.gw.base, "acme", &body)
                .await
                .status(),
            200
        );
    }
    assert_eq!(messages().await, 1);
    let convs = w.get_json(&w.org, "/api/v1/conversations").await;
    let conv = convs[0]["id"].as_str().unwrap();
    let thread = w
        .get_json(&w.org, &format!("/api/v1/conversations/{conv}/messages"))
        .await;
    assert_eq!(thread[0]["channel"], "sms");
    assert_eq!(thread[0]["from"], CUSTOMER);
    assert_eq!(thread[0]["to"], FROM);
    assert_eq!(thread[0]["body"], "Hi there");

    // STOP opts the number out of SMS (whichever SMS provider sends next).
    let stop = serde_json::to_vec(&received("stop-1", CUSTOMER, "stop")).unwrap();
    assert_eq!(
        telnyx
            .post_signed(&w.client, &w.gw.base, "acme", &stop)
            .await
            .status(),
        200
    );
    let r = w.send_sms(&w.org, CUSTOMER, "still there?").await;
    assert_eq!(r.status(), 422);
    integration_tests::schema::assert_org_events_valid(&w, &w.org).await;
    w.gw.stop().await;
}
both_backends!(inbound_and_bad_signatures);

async fn wait_status(w: &World, id: &str, want: &str) -> Value {
    let path = format!("/api/v1/messages/{id}");
    eventually(WAIT, || async {
        let m = w.get_json(&w.org, &path).await;
        (m["status"] == want).then_some(m)
    })
    .await
}

async fn send(w: &World, body: &str) -> String {
    let r = w.send_sms(&w.org, CUSTOMER, body).await;
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn sends_and_reports(backend: Backend) {
    let (w, telnyx) = setup(backend).await;
    let id = send(&w, "Your table is ready").await;
    let m = wait_status(&w, &id, "sent").await;
    let got = telnyx.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].authorized);
    assert_eq!(got[0].body["from"], FROM);
    assert_eq!(got[0].body["to"], CUSTOMER);
    assert_eq!(got[0].body["text"], "Your table is ready");
    assert_eq!(
        got[0].body["webhook_url"],
        format!("{}/webhooks/telnyx/acme/sms", w.gw.base)
    );
    let tid = got[0].id.clone().unwrap();
    assert_eq!(m["provider_message_id"], tid.as_str());
    assert_eq!(m["from"], FROM);
    // Finalized before sent (out of order): delivered stays.
    for (event, status) in [("message.finalized", "delivered"), ("message.sent", "sent")] {
        let body = serde_json::to_vec(&report(event, &tid, status, json!([]))).unwrap();
        assert_eq!(
            telnyx
                .post_signed(&w.client, &w.gw.base, "acme", &body)
                .await
                .status(),
            200
        );
    }
    let m = wait_status(&w, &id, "delivered").await;
    assert_eq!(m["history"].as_array().unwrap().len(), 5, "{m}");

    // A delivery failure with Telnyx's error.
    let id = send(&w, "second").await;
    let tid = wait_status(&w, &id, "sent").await["provider_message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let errors = json!([{"code": "40001", "title": "Not routable"}]);
    let body = serde_json::to_vec(&report(
        "message.finalized",
        &tid,
        "delivery_failed",
        errors,
    ))
    .unwrap();
    assert_eq!(
        telnyx
            .post_signed(&w.client, &w.gw.base, "acme", &body)
            .await
            .status(),
        200
    );
    let m = wait_status(&w, &id, "failed").await;
    assert_eq!(m["error_code"], "40001");
    assert_eq!(m["error_message"], "Not routable");

    // 5xx and 429 are retried; a 422 fails at once into a dead letter.
    telnyx.script([
        Scripted::Fail {
            status: 503,
            code: "10001",
        },
        Scripted::Fail {
            status: 429,
            code: "10011",
        },
    ]);
    let id = send(&w, "third").await;
    wait_status(&w, &id, "sent").await;
    let before = telnyx.received().len();
    telnyx.script([Scripted::Fail {
        status: 422,
        code: "40310",
    }]);
    let id = send(&w, "fourth").await;
    let m = wait_status(&w, &id, "failed").await;
    assert_eq!(m["error_code"], "40310");
    assert_eq!(telnyx.received().len(), before + 1);
    w.gw.stop().await;
}
both_backends!(sends_and_reports);
