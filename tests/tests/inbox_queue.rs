//! The inbox's queue, search and contacts on both backends: round-robin assignment among
//! online agents within their capacity (surviving a restart), full-text search scoped to the
//! org, and merging two contacts into one conversation with its history.

use integration_tests::agent::{create_agent, login, AgentSocket};
use integration_tests::both_backends;
use integration_tests::env::{create_org, eventually, test_config, Backend, TestGateway, World};
use integration_tests::twilio::inbound_sms;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

async fn sms(w: &World, org: &integration_tests::env::TestOrg, sid: &str, from: &str, body: &str) {
    let r = w
        .webhook(org, "sms", &inbound_sms(org, sid, from, body))
        .await;
    assert_eq!(r.status(), 200);
}

/// Assignee (or "queue") → how many open or pending conversations.
async fn loads(db: &gateway::db::Db) -> HashMap<String, i64> {
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT assignee_id, COUNT(*) FROM conversations WHERE status <> 'resolved' GROUP BY assignee_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(a, n)| (a.unwrap_or_else(|| "queue".into()), n))
        .collect()
}

async fn agent_id(db: &gateway::db::Db, email: &str) -> String {
    gateway::db::agents::by_email(&db.pool, email)
        .await
        .unwrap()
        .unwrap()
        .0
        .id
}

async fn round_robin_within_capacity(backend: Backend) {
    let w = World::with_config(backend, |c| c.inbox.assign_poll_ms = 100).await;
    create_agent(&w.db, &w.org.id, "ann@acme.test", PASSWORD, "agent").await;
    create_agent(&w.db, &w.org.id, "bob@acme.test", PASSWORD, "agent").await;
    sqlx::query("UPDATE agents SET capacity = 2 WHERE email = 'ann@acme.test'")
        .execute(&w.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE agents SET capacity = 1 WHERE email = 'bob@acme.test'")
        .execute(&w.db.pool)
        .await
        .unwrap();
    let (ann, bob) = (
        agent_id(&w.db, "ann@acme.test").await,
        agent_id(&w.db, "bob@acme.test").await,
    );
    for i in 0..5 {
        sms(
            &w,
            &w.org,
            &format!("SMq{i:031}"),
            &format!("+1555000010{i}"),
            "help",
        )
        .await;
    }
    // Nobody online: everything waits in the queue.
    let q = eventually(Duration::from_secs(10), || async {
        let l = loads(&w.db).await;
        (l.get("queue") == Some(&5)).then_some(l)
    })
    .await;
    assert_eq!(q.len(), 1);

    let ann_token = login(&w.client, &w.gw.base, "ann@acme.test", PASSWORD).await;
    let bob_token = login(&w.client, &w.gw.base, "bob@acme.test", PASSWORD).await;
    let mut a = AgentSocket::connect(&w.gw.base, &ann_token, 0).await;
    a.replay().await;
    eventually(Duration::from_secs(10), || async {
        let l = loads(&w.db).await;
        (l.get(&ann) == Some(&2) && l.get("queue") == Some(&3)).then_some(())
    })
    .await;
    let mut b = AgentSocket::connect(&w.gw.base, &bob_token, 0).await;
    b.replay().await;
    eventually(Duration::from_secs(10), || async {
        let l = loads(&w.db).await;
        (l.get(&ann) == Some(&2) && l.get(&bob) == Some(&1) && l.get("queue") == Some(&2))
            .then_some(())
    })
    .await;
    // Ann resolves one of hers: the oldest queued conversation takes its place.
    let mine: (String,) = sqlx::query_as(
        "SELECT id FROM conversations WHERE assignee_id = $1 ORDER BY last_message_at LIMIT 1",
    )
    .bind(&ann)
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    let (ack, _) = a
        .command(json!({"type": "resolve", "id": "r1", "conversation_id": mine.0}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    eventually(Duration::from_secs(10), || async {
        let l = loads(&w.db).await;
        (l.get(&ann) == Some(&2) && l.get(&bob) == Some(&1) && l.get("queue") == Some(&1))
            .then_some(())
    })
    .await;
    // The assignment events are on the stream, named round_robin.
    let (f, _) = b
        .until(|f| {
            f["type"] == "event"
                && f["event"]["type"] == "dartwing.conversation.assigned.v1"
                && f["event"]["data"]["agent_id"] == ann.as_str()
        })
        .await;
    assert_eq!(f["event"]["data"]["by"], "round_robin");
    a.close().await;
    b.close().await;
    let before = loads(&w.db).await;

    // A restart keeps every assignment.
    let World { tdb, db, gw, .. } = w;
    gw.stop().await;
    let gw = TestGateway::start(test_config(&tdb.url)).await;
    let after = loads(&db).await;
    assert_eq!(before, after, "assignments survive the restart");
    gw.stop().await;
}
both_backends!(round_robin_within_capacity);

async fn search_is_full_text_and_org_scoped(backend: Backend) {
    let w = World::new(backend).await;
    let globex = create_org(&w.db, "globex", &w.twilio.base, 1000.0).await;
    sms(
        &w,
        &w.org,
        "SMs0000000000000000000000000000001",
        "+15550000201",
        "Refund for order 1234, please",
    )
    .await;
    sms(
        &w,
        &w.org,
        "SMs0000000000000000000000000000002",
        "+15550000202",
        "hello world",
    )
    .await;
    sms(
        &w,
        &globex,
        "SMs0000000000000000000000000000003",
        "+15550000203",
        "refund globex order",
    )
    .await;
    let search = |key: String, q: &'static str| {
        let (c, base) = (w.client.clone(), w.gw.base.clone());
        async move {
            let q = serde_urlencoded::to_string([("q", q)]).unwrap();
            c.get(format!("{base}/api/v1/search?{q}"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
        }
    };
    let hits: Value = search(w.org.key.clone(), "refund")
        .await
        .json()
        .await
        .unwrap();
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 1, "only this org's: {hits:?}");
    assert_eq!(hits[0]["body"], "Refund for order 1234, please");
    let both: Value = search(w.org.key.clone(), "ORDER refund")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(both.as_array().unwrap().len(), 1, "every word, any case");
    let none: Value = search(w.org.key.clone(), "refund world")
        .await
        .json()
        .await
        .unwrap();
    assert!(none.as_array().unwrap().is_empty(), "all words must match");
    // Query syntax in the input stays literal.
    let r = search(w.org.key.clone(), "refund\" OR * NEAR(").await;
    assert_eq!(r.status(), 200);
    assert_eq!(search(w.org.key.clone(), " \"* ").await.status(), 400);
    // Agents search too.
    create_agent(&w.db, &w.org.id, "ann@acme.test", PASSWORD, "agent").await;
    let token = login(&w.client, &w.gw.base, "ann@acme.test", PASSWORD).await;
    let hits: Value = search(token, "hello").await.json().await.unwrap();
    assert_eq!(hits.as_array().unwrap().len(), 1);
    w.gw.stop().await;
}
both_backends!(search_is_full_text_and_org_scoped);

async fn merge_keeps_history_in_one_conversation(backend: Backend) {
    let w = World::new(backend).await;
    let globex = create_org(&w.db, "globex", &w.twilio.base, 1000.0).await;
    sms(
        &w,
        &w.org,
        "SMm0000000000000000000000000000001",
        "+15550000301",
        "first from phone one",
    )
    .await;
    sms(
        &w,
        &w.org,
        "SMm0000000000000000000000000000002",
        "+15550000301",
        "second from phone one",
    )
    .await;
    sms(
        &w,
        &w.org,
        "SMm0000000000000000000000000000003",
        "+15550000302",
        "from phone two",
    )
    .await;
    sms(
        &w,
        &globex,
        "SMm0000000000000000000000000000004",
        "+15550000303",
        "globex",
    )
    .await;
    let convs = w.get_json(&w.org, "/api/v1/conversations").await;
    let contact = |addr: &str| {
        convs
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["identities"][0]["address"] == addr)
            .map(|c| {
                (
                    c["contact_id"].as_str().unwrap().to_string(),
                    c["id"].as_str().unwrap().to_string(),
                )
            })
            .unwrap()
    };
    let (one, conv_one) = contact("+15550000301");
    let (two, _) = contact("+15550000302");
    let globex_contact = w.get_json(&globex, "/api/v1/conversations").await[0]["contact_id"]
        .as_str()
        .unwrap()
        .to_string();
    let merge = |key: String, from: String, into: String| {
        let (c, base) = (w.client.clone(), w.gw.base.clone());
        async move {
            c.post(format!("{base}/api/v1/contacts/merge"))
                .bearer_auth(key)
                .json(&json!({"from": from, "into": into}))
                .send()
                .await
                .unwrap()
        }
    };
    // Another org's contact is not found; an agent without the admin role is refused.
    assert_eq!(
        merge(w.org.key.clone(), globex_contact, one.clone())
            .await
            .status(),
        404
    );
    create_agent(&w.db, &w.org.id, "ann@acme.test", PASSWORD, "agent").await;
    let ann = login(&w.client, &w.gw.base, "ann@acme.test", PASSWORD).await;
    assert_eq!(merge(ann, two.clone(), one.clone()).await.status(), 403);

    let r = merge(w.org.key.clone(), two.clone(), one.clone()).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["conversation_id"], conv_one.as_str());
    let convs = w.get_json(&w.org, "/api/v1/conversations").await;
    assert_eq!(
        convs.as_array().unwrap().len(),
        1,
        "one conversation per contact"
    );
    let ids: Vec<&str> = convs[0]["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["+15550000301", "+15550000302"]);
    let msgs = w
        .get_json(
            &w.org,
            &format!("/api/v1/conversations/{conv_one}/messages"),
        )
        .await;
    let bodies: Vec<&str> = msgs
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        vec![
            "first from phone one",
            "second from phone one",
            "from phone two"
        ]
    );
    // The merged identity now leads to the kept conversation; the old contact is gone.
    sms(
        &w,
        &w.org,
        "SMm0000000000000000000000000000005",
        "+15550000302",
        "after the merge",
    )
    .await;
    let msgs = w
        .get_json(
            &w.org,
            &format!("/api/v1/conversations/{conv_one}/messages"),
        )
        .await;
    assert_eq!(msgs.as_array().unwrap().len(), 4);
    assert_eq!(merge(w.org.key.clone(), two, one).await.status(), 404);
    w.gw.stop().await;
}
both_backends!(merge_keeps_history_in_one_conversation);
