//! Inbound SMS webhooks against the real gateway on both backends: stored once, answered only
//! after commit; bad input refused with a clear status and nothing stored.

use integration_tests::both_backends;
use integration_tests::env::{count, Backend, World};
use integration_tests::twilio::{inbound_sms, post_signed};

async fn stored_once_despite_ten_deliveries(backend: Backend) {
    let w = World::new(backend).await;
    let params = inbound_sms(
        &w.org,
        "SM00000000000000000000000000000001",
        "+15557654321",
        "Hi, is the clinic open?",
    );
    for _ in 0..10 {
        let r = w.webhook(&w.org, "sms", &params).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("<Response>"));
    }
    assert_eq!(count(&w.db, "messages", &w.org.id).await, 1);
    assert_eq!(count(&w.db, "conversations", &w.org.id).await, 1);
    let convs = w.get_json(&w.org, "/api/v1/conversations").await;
    let conv = convs[0]["id"].as_str().unwrap().to_string();
    let msgs = w
        .get_json(&w.org, &format!("/api/v1/conversations/{conv}/messages"))
        .await;
    assert_eq!(msgs.as_array().unwrap().len(), 1);
    assert_eq!(msgs[0]["direction"], "inbound");
    assert_eq!(msgs[0]["body"], "Hi, is the clinic open?");
    assert_eq!(msgs[0]["status"], "received");
    assert!(msgs[0]["history"].is_array());
    // A second message from the same number joins the same conversation.
    let second = inbound_sms(
        &w.org,
        "SM00000000000000000000000000000002",
        "+15557654321",
        "Hello?",
    );
    assert_eq!(w.webhook(&w.org, "sms", &second).await.status(), 200);
    assert_eq!(count(&w.db, "conversations", &w.org.id).await, 1);
    assert_eq!(count(&w.db, "messages", &w.org.id).await, 2);
    w.gw.stop().await;
}
both_backends!(stored_once_despite_ten_deliveries);

async fn bad_input_changes_nothing(backend: Backend) {
    let w = World::new(backend).await;
    let good = inbound_sms(
        &w.org,
        "SM00000000000000000000000000000009",
        "+15557654321",
        "hello",
    );
    let path = format!("/webhooks/twilio/{}/sms", w.org.slug);

    // Missing signature, wrong token, tampered body: 401.
    let r = w
        .client
        .post(format!("{}{path}", w.gw.base))
        .form(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = post_signed(&w.client, &w.gw.base, &path, "not-the-token", &good).await;
    assert_eq!(r.status(), 401);
    let url = format!("{}{path}", w.gw.base);
    let sig = channels::sms::twilio::signature::compute(&w.org.auth_token, &url, &good);
    let mut tampered = good.clone();
    tampered.iter_mut().find(|(k, _)| k == "Body").unwrap().1 = "send me money".into();
    let r = w
        .client
        .post(&url)
        .header("X-Twilio-Signature", sig)
        .form(&tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Correctly signed but malformed: 400 naming the field.
    let mut no_sid: Vec<(String, String)> = good
        .iter()
        .filter(|(k, _)| !k.ends_with("Sid") || k == "AccountSid")
        .cloned()
        .collect();
    let r = w.webhook(&w.org, "sms", &no_sid).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("MessageSid"));
    no_sid.retain(|(k, _)| k != "From");
    no_sid.push(("MessageSid".into(), "SM1".into()));
    let r = w.webhook(&w.org, "sms", &no_sid).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("From"));

    // Too large: 413.
    let huge = inbound_sms(
        &w.org,
        "SM0000000000000000000000000000000A",
        "+15557654321",
        &"x".repeat(70 * 1024),
    );
    let r = w.webhook(&w.org, "sms", &huge).await;
    assert_eq!(r.status(), 413);

    // An org that does not exist answers as a real org answers a bad signature (and as the
    // real org answers a malformed body or an unknown hook): strangers cannot tell which
    // orgs exist.
    let forged = post_signed(
        &w.client,
        &w.gw.base,
        "/webhooks/twilio/acme/sms",
        "not-the-token",
        &good,
    )
    .await;
    assert_eq!(forged.status(), 401);
    let forged = forged.text().await.unwrap();
    let r = post_signed(
        &w.client,
        &w.gw.base,
        "/webhooks/twilio/nobody/sms",
        &w.org.auth_token,
        &good,
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), forged);
    for (path, body) in [("sms", "%%%not a form"), ("fax", "From=x")] {
        let mut answers = Vec::new();
        for org in ["acme", "nobody"] {
            let r = w
                .client
                .post(format!("{}/webhooks/twilio/{org}/{path}", w.gw.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            answers.push((r.status().as_u16(), r.text().await.unwrap()));
        }
        assert_eq!(answers[0], answers[1], "{path}: {answers:?}");
    }
    let r = w.webhook(&w.org, "fax", &good).await;
    assert_eq!(r.status(), 404);

    // Another account's SID, signed with our token: refused.
    let mut other = good.clone();
    other.iter_mut().find(|(k, _)| k == "AccountSid").unwrap().1 = format!("AC{}", "f".repeat(32));
    assert_eq!(w.webhook(&w.org, "sms", &other).await.status(), 400);

    for table in ["messages", "conversations", "contacts", "outbox"] {
        assert_eq!(
            count(&w.db, table, &w.org.id).await,
            0,
            "{table} must be untouched"
        );
    }
    // And the good one still goes through.
    assert_eq!(w.webhook(&w.org, "sms", &good).await.status(), 200);
    assert_eq!(count(&w.db, "messages", &w.org.id).await, 1);
    w.gw.stop().await;
}
both_backends!(bad_input_changes_nothing);

async fn stop_and_start_keywords(backend: Backend) {
    let w = World::new(backend).await;
    let contact = "+15557654321";
    let stop = inbound_sms(
        &w.org,
        "SM000000000000000000000000000000S1",
        contact,
        " Stop ",
    );
    assert_eq!(w.webhook(&w.org, "sms", &stop).await.status(), 200);
    let r = w.send_sms(&w.org, contact, "We miss you").await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("recipient_opted_out"));
    assert!(
        w.twilio.received().is_empty(),
        "nothing may reach the provider"
    );
    let start = inbound_sms(
        &w.org,
        "SM000000000000000000000000000000S2",
        contact,
        "START",
    );
    assert_eq!(w.webhook(&w.org, "sms", &start).await.status(), 200);
    let r = w.send_sms(&w.org, contact, "Welcome back").await;
    assert_eq!(r.status(), 202);
    // Events are numbered by the relay just after commit: wait for the last one.
    let types: Vec<String> =
        integration_tests::env::eventually(std::time::Duration::from_secs(10), || async {
            let events = w.get_json(&w.org, "/api/v1/events").await;
            let types: Vec<String> = events
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["type"].as_str().unwrap().to_string())
                .collect();
            types
                .iter()
                .any(|t| t == "dartwing.contact.opted_in.v1")
                .then_some(types)
        })
        .await;
    let types: Vec<&str> = types.iter().map(String::as_str).collect();
    assert!(
        types.contains(&"dartwing.contact.opted_out.v1"),
        "{types:?}"
    );
    assert!(types.contains(&"dartwing.contact.opted_in.v1"), "{types:?}");
    integration_tests::schema::assert_org_events_valid(&w, &w.org).await;
    w.gw.stop().await;
}
both_backends!(stop_and_start_keywords);

async fn conversation_lifecycle_through_the_api(backend: Backend) {
    let w = World::new(backend).await;
    let from = "+15557654321";
    let first = inbound_sms(&w.org, "SM000000000000000000000000000000C1", from, "hi");
    assert_eq!(w.webhook(&w.org, "sms", &first).await.status(), 200);
    let conv = w.get_json(&w.org, "/api/v1/conversations").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let set = |org: &integration_tests::env::TestOrg, status: &str| {
        w.client
            .post(format!("{}/api/v1/conversations/{conv}/status", w.gw.base))
            .bearer_auth(&org.key)
            .json(&serde_json::json!({ "status": status }))
            .send()
    };
    assert_eq!(set(&w.org, "pending").await.unwrap().status(), 200);
    assert_eq!(
        set(&w.org, "pending").await.unwrap().status(),
        409,
        "already pending"
    );
    assert_eq!(set(&w.org, "resolved").await.unwrap().status(), 200);
    assert_eq!(set(&w.org, "snoozed").await.unwrap().status(), 400);
    let other = integration_tests::env::create_org(&w.db, "globex", &w.twilio.base, 1.0).await;
    assert_eq!(set(&other, "open").await.unwrap().status(), 404);
    assert_eq!(
        w.get_json(&w.org, "/api/v1/conversations").await[0]["status"],
        "resolved"
    );
    // New inbound reopens it, and the events say so.
    let again = inbound_sms(
        &w.org,
        "SM000000000000000000000000000000C2",
        from,
        "one more thing",
    );
    assert_eq!(w.webhook(&w.org, "sms", &again).await.status(), 200);
    assert_eq!(
        w.get_json(&w.org, "/api/v1/conversations").await[0]["status"],
        "open"
    );
    // Events are numbered by the relay just after commit: wait for the third move.
    let moves = integration_tests::env::eventually(std::time::Duration::from_secs(10), || async {
        let events = w.get_json(&w.org, "/api/v1/events").await;
        let moves: Vec<String> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "dartwing.conversation.status_changed.v1")
            .map(|e| {
                format!(
                    "{}>{}",
                    e["data"]["from"].as_str().unwrap(),
                    e["data"]["to"].as_str().unwrap()
                )
            })
            .collect();
        (moves.len() >= 3).then_some(moves)
    })
    .await;
    assert_eq!(moves, ["open>pending", "pending>resolved", "resolved>open"]);
    integration_tests::schema::assert_org_events_valid(&w, &w.org).await;
    w.gw.stop().await;
}
both_backends!(conversation_lifecycle_through_the_api);

/// A full write queue refuses with 503 and `Retry-After` (the provider retries), and a refused
/// webhook stores nothing; the retries then complete the set, each once.
async fn full_write_queue_answers_503_with_retry_after(backend: Backend) {
    let w = World::with_config(backend, |c| {
        c.ingest.queue_capacity = 1;
        c.ingest.max_batch = 1;
        c.ingest.writers = 1;
    })
    .await;
    let n = 300;
    let sids: Vec<String> = (0..n).map(|i| format!("SM{i:032}")).collect();
    let mut tasks = Vec::new();
    for sid in &sids {
        let params = inbound_sms(&w.org, sid, "+15557650000", "burst");
        let (client, base, org) = (w.client.clone(), w.gw.base.clone(), w.org.clone());
        tasks.push(tokio::spawn(async move {
            let path = format!("/webhooks/twilio/{}/sms", org.slug);
            let r = post_signed(&client, &base, &path, &org.auth_token, &params).await;
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            (status, retry_after, body)
        }));
    }
    let mut refused = Vec::new();
    let mut accepted = Vec::new();
    for (sid, t) in sids.iter().zip(tasks) {
        let (status, retry_after, body) = t.await.unwrap();
        match status {
            200 => accepted.push(sid.clone()),
            503 => {
                assert_eq!(retry_after.as_deref(), Some("1"), "503 carries Retry-After");
                assert!(body.contains("overloaded"), "{body}");
                refused.push(sid.clone());
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    eprintln!(
        "queue of 1: {} accepted, {} refused with 503",
        accepted.len(),
        refused.len()
    );
    assert!(!refused.is_empty(), "a burst of {n} overflows a queue of 1");
    // Exactly the accepted ones are stored: a refusal changes nothing.
    let stored: std::collections::HashSet<String> =
        sqlx::query_as::<_, (String,)>("SELECT provider_message_id FROM messages")
            .fetch_all(&w.db.pool)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
    assert_eq!(
        stored,
        accepted.iter().cloned().collect(),
        "stored = acknowledged"
    );
    // The provider's retries (one at a time) complete the set. The queue of one is shared
    // with the relay's and workers' writes, so a retry may be refused again: retried again.
    for sid in &refused {
        let params = inbound_sms(&w.org, sid, "+15557650000", "burst");
        let mut tries = 0;
        loop {
            let status = w.webhook(&w.org, "sms", &params).await.status();
            tries += 1;
            if status == 200 {
                break;
            }
            assert_eq!(status, 503);
            assert!(tries < 200, "{sid} refused {tries} times");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    assert_eq!(count(&w.db, "messages", &w.org.id).await, n as i64);
    w.gw.stop().await;
}
both_backends!(full_write_queue_answers_503_with_retry_after);
