//! Events on a real Kafka-protocol broker (tansu, started per test by `scripts/ensure-kafka.sh`):
//! a produce-and-consume round trip with per-conversation order and the CloudEvents headers,
//! and two gateway nodes on one PostgreSQL and one broker behaving as one. (The broker-outage
//! test is not here yet: see the events issue.) Every event read back is validated against its JSON Schema.

use gateway::kafka::consume::{EventReader, Record, StartAt};
use gateway::kafka::{all_topics, topic_for};
use integration_tests::both_backends;
use integration_tests::broker::Broker;
use integration_tests::env::{
    create_org, eventually, free_port, test_config, Backend, ChildGateway, TestDb, TestGateway,
    World,
};
use integration_tests::schema;
use integration_tests::telnyx::TelnyxStandin;
use integration_tests::twilio::{inbound_sms, post_signed};
use integration_tests::whatsapp::{self, delivery, text, GraphStandin};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A test size: the full size is the env override (`DARTWING_KAFKA_OUTAGE_WEBHOOKS=5000`,
/// `DARTWING_KAFKA_TWO_NODE_MESSAGES=10000`); the default is what the test broker sustains
/// on a 2-core machine running the whole suite. tansu (SQLite storage) took ~1,900 events/s
/// here on a quiet machine and far less under the suite's load, and reads a few hundred
/// records/s back (a query per record for its headers): at the full sizes the read-back
/// alone outlasts the suite's patience. Nothing in the gateway depends on the size.
fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn health(client: &reqwest::Client, base: &str) -> Value {
    client
        .get(format!("{base}/health"))
        .bearer_auth(integration_tests::env::OPS_TOKEN)
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("health json")
}

/// Waits until the node reads the event topics (its hub is fed from Kafka).
async fn reader_ready(client: &reqwest::Client, base: &str) {
    eventually(Duration::from_secs(30), || async {
        let h = health(client, base).await;
        (h["event_log"]["kind"] == "kafka" && h["event_log"]["reader_ready"] == true).then_some(())
    })
    .await
}

async fn outbox_ids(db: &gateway::db::Db) -> Vec<String> {
    sqlx::query_as::<_, (String,)>("SELECT event_id FROM outbox")
        .fetch_all(&db.pool)
        .await
        .expect("outbox ids")
        .into_iter()
        .map(|r| r.0)
        .collect()
}

/// Waits until the relay has published everything (backlog 0).
async fn drained(db: &gateway::db::Db, timeout: Duration) {
    eventually(timeout, || async {
        (gateway::db::outbox::backlog(&db.pool).await.ok()? == 0).then_some(())
    })
    .await
}

/// Reads every topic from the beginning until each of `want` event ids was seen.
async fn read_all(brokers: &str, want: &HashSet<String>) -> Vec<Record> {
    let reader = EventReader::open(brokers, &all_topics("dartwing."), StartAt::Beginning)
        .await
        .expect("open reader");
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !want.iter().all(|id| seen.contains(id)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let rec = tokio::time::timeout(left, reader.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {} events arrived on Kafka",
                    want.iter().filter(|id| seen.contains(*id)).count(),
                    want.len()
                )
            })
            .expect("read");
        seen.insert(rec.header("ce_id").expect("ce_id").to_string());
        out.push(rec);
    }
    out
}

/// Checks the wire format of every record (the CloudEvents Kafka binding, binary content
/// mode): topic per family, key = conversation id, every context attribute a `ce_*` header,
/// the value the event's bare `data`, and the envelope put back together valid against its
/// JSON Schema.
fn check_wire_format(records: &[Record]) {
    let schemas = schema::load_all();
    for rec in records {
        for attr in [
            "id",
            "type",
            "source",
            "specversion",
            "time",
            "subject",
            "dataschema",
            "dartwingorgid",
            "dartwingseq",
            "partitionkey",
        ] {
            assert!(
                rec.header(&format!("ce_{attr}")).is_some(),
                "header ce_{attr} missing"
            );
        }
        assert_eq!(rec.header("ce_specversion"), Some("1.0"));
        assert_eq!(rec.header("content-type"), Some("application/json"));
        let value = rec.json().expect("value is JSON");
        assert!(
            value.get("specversion").is_none() && value.get("data").is_none(),
            "binary mode: the value is the data, not an envelope: {value}"
        );
        let ev = rec.envelope().expect("envelope from headers");
        let t = ev["type"].as_str().expect("type");
        assert_eq!(rec.topic, topic_for("dartwing.", t));
        assert_eq!(rec.key.as_deref(), ev["partitionkey"].as_str(), "key");
        if let Err(errors) = schema::validate_event(&schemas, &ev) {
            panic!("event does not match its schema: {errors:?}\n{ev}");
        }
    }
}

/// Per topic and key, the first copy of each event comes in sequence order (later copies are
/// redeliveries); every copy of one `ce_id` is identical. Returns the duplicates.
/// (Order holds within a topic: a conversation's message events and its conversation events
/// are on different topics.)
fn check_order_per_key(records: &[Record]) -> usize {
    let mut first: HashMap<String, &Record> = HashMap::new();
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    let mut dups = 0;
    for rec in records {
        let id = rec.header("ce_id").unwrap().to_string();
        if let Some(prev) = first.get(&id) {
            assert_eq!(prev.payload, rec.payload, "a redelivery of {id} differs");
            assert_eq!(prev.headers, rec.headers, "a redelivery of {id} differs");
            assert_eq!(prev.key, rec.key);
            dups += 1;
            continue;
        }
        let seq = rec.envelope().unwrap()["dartwingseq"].as_i64().unwrap();
        let key = format!("{}/{}", rec.topic, rec.key.clone().unwrap());
        if let Some(prev) = last_seq.insert(key.clone(), seq) {
            assert!(
                seq > prev,
                "conversation {key}: seq {seq} after {prev} (out of order)"
            );
        }
        first.insert(id, rec);
    }
    dups
}

async fn send_webhook(
    client: &reqwest::Client,
    base: &str,
    org: &integration_tests::env::TestOrg,
    sid: &str,
    from: &str,
    body: &str,
) -> u16 {
    let params = inbound_sms(org, sid, from, body);
    let path = format!("/webhooks/twilio/{}/sms", org.slug);
    post_signed(client, base, &path, &org.auth_token, &params)
        .await
        .status()
        .as_u16()
}

async fn round_trip_keeps_each_conversation_in_order(backend: Backend) {
    let broker = Broker::start();
    let w = World::with_config(backend, |c| c.kafka.brokers = broker.addr.clone()).await;
    reader_ready(&w.client, &w.gw.base).await;
    let mut hub = w.gw.running.hub.subscribe();
    // 8 contacts, each sending 25 messages one after another: a defined order per conversation.
    let mut tasks = Vec::new();
    for c in 0..8 {
        let (client, base, org) = (w.client.clone(), w.gw.base.clone(), w.org.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let sid = format!("SM{c:02}{i:030}");
                let from = format!("+1555100{c:04}");
                let status = send_webhook(&client, &base, &org, &sid, &from, &format!("{i}")).await;
                assert_eq!(status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    drained(&w.db, Duration::from_secs(30)).await;
    let ids: HashSet<String> = outbox_ids(&w.db).await.into_iter().collect();
    assert_eq!(
        ids.len(),
        8 * 25 + 8,
        "200 received + 8 conversations created"
    );
    let records = read_all(&broker.addr, &ids).await;
    check_wire_format(&records);
    assert_eq!(
        check_order_per_key(&records),
        0,
        "no failures, so no redeliveries"
    );
    // Bodies of each conversation's messages arrive in the order they were sent.
    let mut bodies: HashMap<String, Vec<i64>> = HashMap::new();
    for rec in &records {
        let ev = rec.envelope().unwrap();
        if ev["type"] == "dartwing.message.received.v1" {
            let n: i64 = ev["data"]["body"].as_str().unwrap().parse().unwrap();
            bodies.entry(rec.key.clone().unwrap()).or_default().push(n);
        }
    }
    assert_eq!(bodies.len(), 8);
    for b in bodies.values() {
        assert_eq!(*b, (0..25).collect::<Vec<_>>());
    }
    // This node's hub is fed from Kafka: it saw every event.
    let mut got = HashSet::new();
    while got.len() < ids.len() {
        let ev = tokio::time::timeout(Duration::from_secs(10), hub.recv())
            .await
            .expect("hub event")
            .expect("not lagged");
        got.insert(ev.stored.event_id.clone());
    }
    assert_eq!(got, ids);
    w.gw.stop().await;
}
both_backends!(round_trip_keeps_each_conversation_in_order);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_and_broker_behave_as_one() {
    let broker = Broker::start();
    let tdb = TestDb::new(Backend::Postgres).await;
    let db = tdb.connect().await;
    let twilio = integration_tests::twilio::TwilioStandin::start().await;
    let org = create_org(&db, "acme", &twilio.base, 1000.0).await;
    twilio.add_account(&org);
    let graph = GraphStandin::start().await;
    let wa = graph.add_account(&db, &org.id).await;
    // Telnyx on an org of its own (an org with two SMS accounts sends through one of them,
    // and the SMS sends below count on Twilio).
    let telnyx = TelnyxStandin::start().await;
    let beta = gateway::db::orgs::create(&db.pool, "beta", "beta")
        .await
        .unwrap()
        .unwrap();
    telnyx.add_account(&db, &beta.id).await;
    let mut config = test_config(&tdb.url);
    config.kafka.brokers = broker.addr.clone();
    let a = TestGateway::start(config.clone()).await;
    let b = TestGateway::start(config).await;
    let client = reqwest::Client::new();
    reader_ready(&client, &a.base).await;
    reader_ready(&client, &b.base).await;
    // Exactly one relay leads.
    eventually(Duration::from_secs(10), || async {
        let la = health(&client, &a.base).await["relay"]["leader"] == true;
        let lb = health(&client, &b.base).await["relay"]["leader"] == true;
        (la != lb).then_some(())
    })
    .await;

    // A message ingested on A reaches a subscriber on B. The bound is 5 s, not the ~100 ms it
    // takes: two gateways and a broker share two cores here, and the feed's fetch wait is
    // 20 ms, so seconds mean a stuck path rather than a slow one (latency is benchmarked in
    // BENCHMARKS.md, not asserted here).
    let mut on_b = b.running.hub.subscribe();
    let started = Instant::now();
    let sid = "SM0000000000000000000000000000AB01";
    assert_eq!(
        send_webhook(&client, &a.base, &org, sid, "+15553000001", "hi B").await,
        200
    );
    let mut seen_on_b = HashSet::new();
    loop {
        let left = Duration::from_secs(5).saturating_sub(started.elapsed());
        let ev = tokio::time::timeout(left, on_b.recv())
            .await
            .expect("node B's subscriber got A's message within 5 s")
            .expect("not lagged");
        seen_on_b.insert(ev.stored.event_id.clone());
        if ev.stored.data["provider_message_id"] == sid {
            break;
        }
    }
    eprintln!("A → B in {:?}", started.elapsed());

    // WhatsApp the same way: a delivery taken by A and Meta's redelivery of it to B are stored
    // once; replies sent through both nodes' workers go out once each.
    let v = delivery(
        json!([text("wamid.2nodes", "16505551234", "hello both")]),
        json!([]),
    );
    let body = serde_json::to_vec(&v).unwrap();
    for base in [&a.base, &b.base] {
        let r = whatsapp::post_signed(&client, base, "acme", &wa.app_secret, &body).await;
        assert_eq!(r.status(), 200);
    }
    let stored: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM messages WHERE org_id = $1 AND provider_message_id = 'wamid.2nodes'",
    )
    .bind(&org.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(stored.0, 1, "one WhatsApp message, whichever node took it");
    // And Telnyx: one webhook taken by B and retried on A is one message.
    let body = serde_json::to_vec(&integration_tests::telnyx::received(
        "tx-2nodes",
        "+13125550001",
        "hello both",
    ))
    .unwrap();
    for base in [&b.base, &a.base] {
        let r = telnyx.post_signed(&client, base, "beta", &body).await;
        assert_eq!(r.status(), 200);
    }
    let stored: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM messages WHERE org_id = $1 AND provider_message_id = 'tx-2nodes'",
    )
    .bind(&beta.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(stored.0, 1, "one Telnyx message, whichever node took it");
    for base in [&a.base, &b.base] {
        let r = client
            .post(format!("{base}/api/v1/messages"))
            .bearer_auth(&org.key)
            .json(&json!({"channel": "whatsapp", "to": "+16505551234", "body": format!("from {base}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }

    // B's subscriber keeps reading while the bulk runs (its hub would drop a slow reader);
    // what it saw is checked against the outbox at the end, with a deadline rather than a
    // quiet gap (a pause in the relay must not end the reading early).
    let seen_on_b = Arc::new(std::sync::Mutex::new(seen_on_b));
    let collector = {
        let seen = seen_on_b.clone();
        tokio::spawn(async move {
            loop {
                match on_b.recv().await {
                    Ok(ev) => {
                        seen.lock().unwrap().insert(ev.stored.event_id.clone());
                    }
                    Err(e) => panic!("node B's subscriber: {e}"),
                }
            }
        })
    };

    // Webhooks spread over both nodes (10,000 at full size), and sends through both nodes'
    // workers.
    let n = size("DARTWING_KAFKA_TWO_NODE_MESSAGES", 3_000);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (client, org, next) = (client.clone(), org.clone(), next.clone());
        let base = if w % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let from = format!("+1555400{:04}", i % 40);
                let sid = format!("SM{i:032}");
                let status = send_webhook(&client, &base, &org, &sid, &from, "both").await;
                assert_eq!(status, 200, "webhook {i}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for i in 0..40 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let r = client
            .post(format!("{base}/api/v1/messages"))
            .bearer_auth(&org.key)
            .json(&serde_json::json!({"channel": "sms", "to": format!("+1555500{i:04}"), "body": "out"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    eventually(Duration::from_secs(30), || async {
        (twilio.received().len() >= 40).then_some(())
    })
    .await;
    drained(&db, Duration::from_secs(180)).await;
    // The barrier: all 42 outbound messages (40 SMS, 2 WhatsApp) are recorded as accepted, so
    // no worker on either node claims any of them again; what the stand-ins hold now is final.
    eventually(Duration::from_secs(30), || async {
        let sent: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM messages WHERE direction = 'outbound' AND status NOT IN ('queued', 'sending')",
        )
        .fetch_one(&db.pool)
        .await
        .ok()?;
        (sent.0 == 42).then_some(())
    })
    .await;
    assert_eq!(graph.received().len(), 2, "each WhatsApp reply sent once");
    // Each outbound message was sent once, though both nodes' workers claim.
    let sent = twilio.received();
    let tos: HashSet<&String> = sent.iter().map(|r| &r.form["To"]).collect();
    assert_eq!(
        (sent.len(), tos.len()),
        (40, 40),
        "each message sent exactly once"
    );

    // Each event was relayed once, and the org's sequence is gap-free across both nodes.
    let ids: HashSet<String> = outbox_ids(&db).await.into_iter().collect();
    let records = read_all(&broker.addr, &ids).await;
    check_wire_format(&records);
    assert_eq!(check_order_per_key(&records), 0, "each event relayed once");
    // Gap-free per org (two orgs here: acme and beta).
    let mut seqs: HashMap<String, Vec<i64>> = HashMap::new();
    for r in &records {
        let env = r.envelope().unwrap();
        let org_id = env["dartwingorgid"].as_str().unwrap().to_string();
        seqs.entry(org_id)
            .or_default()
            .push(env["dartwingseq"].as_i64().unwrap());
    }
    assert_eq!(seqs.len(), 2, "events of both orgs");
    assert_eq!(seqs.values().map(Vec::len).sum::<usize>(), ids.len());
    for (org_id, mut s) in seqs {
        s.sort_unstable();
        assert_eq!(
            s,
            (1..=s.len() as i64).collect::<Vec<_>>(),
            "gap-free for {org_id}"
        );
    }
    // B's subscriber saw every event, including those relayed from A's webhooks: every one of
    // them is on the broker (read back above), so each reaches B's feed or the test fails.
    let missing = || {
        let seen = seen_on_b.lock().unwrap();
        ids.iter().filter(|id| !seen.contains(*id)).count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while missing() > 0 && Instant::now() < deadline && !collector.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if collector.is_finished() {
        collector.await.expect("node B's subscriber");
    } else {
        collector.abort();
    }
    let missed = missing();
    assert_eq!(
        missed,
        0,
        "node B's subscriber missed {missed} of {} within 60 s of the outbox draining",
        ids.len()
    );
    a.stop().await;
    b.stop().await;
}

/// The real binary, SIGKILLed while its relay is publishing (some events acknowledged by the
/// broker, some not yet): after a restart every event of every acknowledged webhook is on
/// Kafka, each key's first copies in order, redeliveries only with the same `ce_id`.
async fn sigkill_mid_relay_loses_nothing(backend: Backend) {
    const N: usize = 2000;
    let broker = Broker::start();
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 10.0).await;
    let port = free_port();
    let env = [("DARTWING_KAFKA_BROKERS", broker.addr.as_str())];
    let mut gw = ChildGateway::spawn_with(&tdb.url, port, &env).await;
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, base, org, next) =
            (client.clone(), gw.base.clone(), org.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= N {
                    return;
                }
                let from = format!("+1555600{:04}", i % 60);
                let params = inbound_sms(&org, &format!("SM{i:032}"), &from, "kill");
                let path = format!("/webhooks/twilio/{}/sms", org.slug);
                let url = format!("{base}{path}");
                let sig = channels::sms::twilio::signature::compute(&org.auth_token, &url, &params);
                let sent = client
                    .post(&url)
                    .header("X-Twilio-Signature", sig)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(serde_urlencoded::to_string(&params).unwrap())
                    .send()
                    .await;
                // After the kill requests fail: the provider would retry them (below).
                if sent.is_err() {
                    return;
                }
            }
        }));
    }
    // Kill once the relay is mid-stream: some events published, some waiting.
    let published = eventually(Duration::from_secs(60), || async {
        let p: (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE published_at IS NOT NULL")
                .fetch_one(&db.pool)
                .await
                .ok()?;
        let backlog = gateway::db::outbox::backlog(&db.pool).await.ok()?;
        (p.0 >= 500 && backlog > 0).then_some(p.0)
    })
    .await;
    gw.kill();
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!("killed with {published}+ events published");

    let gw = ChildGateway::spawn_with(&tdb.url, port, &env).await;
    // The provider retries every webhook; the gateway dedupes what it already stored.
    for i in 0..N {
        let from = format!("+1555600{:04}", i % 60);
        let params = inbound_sms(&org, &format!("SM{i:032}"), &from, "kill");
        let path = format!("/webhooks/twilio/{}/sms", org.slug);
        let r = post_signed(&client, &gw.base, &path, &org.auth_token, &params).await;
        assert_eq!(r.status(), 200);
    }
    drained(&db, Duration::from_secs(120)).await;
    let ids: HashSet<String> = outbox_ids(&db).await.into_iter().collect();
    assert_eq!(
        ids.len(),
        N + 60,
        "one received event per message, one created per conversation"
    );
    let records = read_all(&broker.addr, &ids).await;
    let dups = check_order_per_key(&records);
    check_wire_format(&records);
    let received: HashSet<String> = records
        .iter()
        .filter_map(|r| {
            let ev = r.envelope()?;
            (ev["type"] == "dartwing.message.received.v1").then(|| {
                ev["data"]["provider_message_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
        })
        .collect();
    assert_eq!(received.len(), N, "every message's event is on Kafka");
    eprintln!(
        "sigkill: {} events, {dups} redelivered copies (same ce_id)",
        ids.len()
    );
    drop(gw);
}
both_backends!(sigkill_mid_relay_loses_nothing);

async fn broker_outage_loses_nothing_and_keeps_order(backend: Backend) {
    let n = size("DARTWING_KAFKA_OUTAGE_WEBHOOKS", 2_000);
    let mut broker = Broker::start();
    let w = World::with_config(backend, |c| {
        c.kafka.brokers = broker.addr.clone();
        c.kafka.delivery_timeout_ms = 5_000;
    })
    .await;
    reader_ready(&w.client, &w.gw.base).await;
    let acked = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, base, org) = (w.client.clone(), w.gw.base.clone(), w.org.clone());
        let (acked, next) = (acked.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let from = format!("+1555200{:04}", i % 50);
                let status =
                    send_webhook(&client, &base, &org, &format!("SM{i:032}"), &from, "x").await;
                assert_eq!(
                    status, 200,
                    "the gateway keeps acknowledging during the outage"
                );
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    while acked.load(Ordering::Relaxed) < 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    broker.stop();
    let down = Instant::now();
    // The relay keeps the events and says so.
    let h = eventually(Duration::from_secs(9), || async {
        let h = health(&w.client, &w.gw.base).await;
        (h["status"] == "degraded" && h["relay"]["backlog"].as_i64()? > 0).then_some(h)
    })
    .await;
    assert!(h["relay"]["error"].is_string(), "{h}");
    // Without the ops token, /health says that the relay fails but not the broker's error text.
    let public: Value = w
        .client
        .get(format!("{}/health", w.gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public["relay"]["ok"], false, "{public}");
    assert!(public["relay"].get("error").is_none(), "{public}");
    let metrics = w.get_text("/metrics").await;
    assert!(
        metrics.contains("outbox_backlog"),
        "backlog metric exported"
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down.elapsed())).await;
    broker.restart();
    for t in tasks {
        t.await.unwrap();
    }
    drained(&w.db, Duration::from_secs(120)).await;
    eventually(Duration::from_secs(20), || async {
        (health(&w.client, &w.gw.base).await["status"] == "ok").then_some(())
    })
    .await;
    let ids: HashSet<String> = outbox_ids(&w.db).await.into_iter().collect();
    assert!(
        ids.len() >= n + 50,
        "every message and conversation has its event"
    );
    let records = read_all(&broker.addr, &ids).await;
    let dups = check_order_per_key(&records);
    check_wire_format(&records);
    let received: HashSet<&str> = records
        .iter()
        .filter(|r| r.header("ce_type") == Some("dartwing.message.received.v1"))
        .map(|r| r.header("ce_id").unwrap())
        .collect();
    assert_eq!(received.len(), n, "every webhook's event is on Kafka");
    eprintln!(
        "outage: {} events, {dups} redelivered copies (same ce_id)",
        ids.len()
    );
    w.gw.stop().await;
}
both_backends!(broker_outage_loses_nothing_and_keeps_order);

/// Inbox agents on two nodes of one PostgreSQL and one broker: an agent's socket on B sees a
/// message that arrived on A, live; the agent's reply sent through B reaches another agent's
/// socket on A; and the agent, moving from B to A with the last seq it saw, gets exactly what
/// arrived meanwhile (on either node), in sequence order, gap-free, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_agents_on_either_node_see_every_event_once() {
    use integration_tests::agent::{create_agent, login, AgentSocket};
    let broker = Broker::start();
    let tdb = TestDb::new(Backend::Postgres).await;
    let db = tdb.connect().await;
    let twilio = integration_tests::twilio::TwilioStandin::start().await;
    let org = create_org(&db, "acme", &twilio.base, 1000.0).await;
    twilio.add_account(&org);
    let password = "correct horse battery";
    create_agent(&db, &org.id, "ann@acme.test", password, "agent").await;
    create_agent(&db, &org.id, "bob@acme.test", password, "agent").await;
    let mut config = test_config(&tdb.url);
    config.kafka.brokers = broker.addr.clone();
    let a = TestGateway::start(config.clone()).await;
    let b = TestGateway::start(config).await;
    let client = reqwest::Client::new();
    reader_ready(&client, &a.base).await;
    reader_ready(&client, &b.base).await;
    // A session made on one node is good on the other (it is in the shared database).
    let ann = login(&client, &a.base, "ann@acme.test", password).await;
    let bob = login(&client, &b.base, "bob@acme.test", password).await;
    let mut ann_on_b = AgentSocket::connect(&b.base, &ann, 0).await;
    let (_, mut ann_seq) = ann_on_b.replay().await;
    let mut bob_on_a = AgentSocket::connect(&a.base, &bob, 0).await;
    bob_on_a.replay().await;
    let says = |f: &Value, text: &str| f["type"] == "event" && f.to_string().contains(text);
    let seq_of = |f: &Value| f["seq"].as_i64().expect("an event frame has its seq");

    // In on A, seen live on B.
    let customer = "+15553000777";
    let sid = "SM0000000000000000000000000000IN01";
    assert_eq!(
        send_webhook(&client, &a.base, &org, sid, customer, "hello from A").await,
        200
    );
    let (frame, before) = ann_on_b.until(|f| says(f, "hello from A")).await;
    for f in before.iter().chain([&frame]) {
        assert!(seq_of(f) > ann_seq, "in order, each once: {f}");
        ann_seq = seq_of(f);
    }
    let conversation = frame["event"]["data"]["conversation_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a conversation id: {frame}"))
        .to_owned();

    // Ann replies through B; Bob on A sees it.
    let (ack, more) = ann_on_b
        .command(
            json!({"type": "reply", "id": "r-1", "conversation_id": conversation,
            "body": "Hi, Ann here."}),
        )
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    for f in &more {
        assert!(seq_of(f) > ann_seq, "in order, each once: {f}");
        ann_seq = seq_of(f);
    }
    bob_on_a.until(|f| says(f, "Hi, Ann here.")).await;

    // Ann leaves B; three more messages arrive, on both nodes; she comes back on A.
    ann_on_b.close().await;
    let meanwhile = ["one on B", "two on A", "three on B"];
    for (i, text) in meanwhile.iter().enumerate() {
        let node = if i % 2 == 0 { &b.base } else { &a.base };
        let sid = format!("SM0000000000000000000000000000MW0{i}");
        assert_eq!(
            send_webhook(&client, node, &org, &sid, customer, text).await,
            200
        );
    }
    // Bob (on A) sees all three live; then Ann resumes.
    for text in meanwhile {
        bob_on_a.until(|f| says(f, text)).await;
    }
    let mut ann_on_a = AgentSocket::connect(&a.base, &ann, ann_seq).await;
    let (missed, caught_up) = ann_on_a.replay().await;
    let seqs: Vec<i64> = missed.iter().map(seq_of).collect();
    let expected: Vec<i64> = (ann_seq + 1..=caught_up).collect();
    assert_eq!(
        seqs, expected,
        "gap-free, in order, each once after {ann_seq}"
    );
    for text in meanwhile {
        let n = missed.iter().filter(|f| says(f, text)).count();
        assert!(n >= 1, "{text:?} replayed: {missed:?}");
    }
    assert!(
        !missed.iter().any(|f| says(f, "hello from A")),
        "nothing she had seen comes again"
    );
    ann_on_a.close().await;
    bob_on_a.close().await;
    a.stop().await;
    b.stop().await;
}
