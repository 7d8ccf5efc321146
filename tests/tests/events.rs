//! The outbox relay and the per-org sequence: gap-free and in commit order under concurrent
//! writers, delivered in order to in-process subscribers, and continued across a restart.

use integration_tests::both_backends;
use integration_tests::env::{create_org, test_config, Backend, TestGateway, World};
use integration_tests::twilio::inbound_sms;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

async fn all_events(w: &World, org: &integration_tests::env::TestOrg) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = w
            .get_json(org, &format!("/api/v1/events?after_seq={after}&limit=1000"))
            .await;
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            return out;
        }
        after = page.last().unwrap()["dartwingseq"].as_i64().unwrap();
        out.extend(page);
    }
}

async fn sequence_is_gap_free_under_concurrency(backend: Backend) {
    let w = World::new(backend).await;
    let globex = create_org(&w.db, "globex", &w.twilio.base, 1000.0).await;
    let mut sub = w.gw.running.hub.subscribe();
    let n = 300;
    let mut tasks = Vec::new();
    for i in 0..n {
        let org = if i % 2 == 0 {
            w.org.clone()
        } else {
            globex.clone()
        };
        let (client, base) = (w.client.clone(), w.gw.base.clone());
        tasks.push(tokio::spawn(async move {
            let params = inbound_sms(
                &org,
                &format!("SM{i:032}"),
                &format!("+1555000{:04}", i % 17),
                "hello",
            );
            let path = format!("/webhooks/twilio/{}/sms", org.slug);
            integration_tests::twilio::post_signed(&client, &base, &path, &org.auth_token, &params)
                .await
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    for org in [&w.org, &globex] {
        let events = integration_tests::env::eventually(Duration::from_secs(15), || async {
            let e = all_events(&w, org).await;
            let received = e
                .iter()
                .filter(|e| e["type"] == "dartwing.message.received.v1")
                .count();
            (received == n / 2).then_some(e)
        })
        .await;
        let seqs: Vec<i64> = events
            .iter()
            .map(|e| e["dartwingseq"].as_i64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "gap-free from 1"
        );
        let schemas = integration_tests::schema::load_all();
        for e in &events {
            if let Err(errors) = integration_tests::schema::validate_event(&schemas, e) {
                panic!("event does not match docs/events schema: {errors:?}\n{e}");
            }
            assert_eq!(e["specversion"], "1.0");
            assert_eq!(e["dartwingorgid"], org.id.as_str());
            assert!(e["id"].is_string() && e["time"].as_str().unwrap().ends_with('Z'));
        }
        // Each conversation's own events come in the order they were written.
        let mut per_conv: HashMap<String, Vec<&str>> = HashMap::new();
        for e in &events {
            per_conv
                .entry(e["partitionkey"].as_str().unwrap().into())
                .or_default()
                .push(e["type"].as_str().unwrap());
        }
        for types in per_conv.values() {
            assert_eq!(types[0], "dartwing.conversation.created.v1");
        }
    }
    // The in-process subscriber got every event once, each org's in sequence order: it reads
    // until it has them all, fails on lag, and fails at a deadline.
    let mut per_org = HashMap::new();
    for org in [&w.org, &globex] {
        per_org.insert(org.id.clone(), all_events(&w, org).await.len() as i64);
    }
    let total: i64 = per_org.values().sum();
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut got = 0;
    while got < total {
        let ev = tokio::time::timeout(Duration::from_secs(15), sub.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("subscriber saw {got} of {total} events, then none for 15 s")
            })
            .expect("subscriber not lagged");
        let seq = ev.stored.seq.unwrap();
        let prev = last.insert(ev.stored.org_id.clone(), seq).unwrap_or(0);
        assert_eq!(
            seq,
            prev + 1,
            "subscriber sees each org's events in order, no gaps"
        );
        got += 1;
    }
    assert_eq!(
        last, per_org,
        "each org's last sequence number seen is its last event"
    );
    w.gw.stop().await;
}
both_backends!(sequence_is_gap_free_under_concurrency);

async fn sequence_continues_after_restart(backend: Backend) {
    let w = World::new(backend).await;
    let send = |sid: &'static str| {
        let params = inbound_sms(&w.org, sid, "+15557654321", "hi");
        let (client, base, org) = (w.client.clone(), w.gw.base.clone(), w.org.clone());
        async move {
            let path = format!("/webhooks/twilio/{}/sms", org.slug);
            integration_tests::twilio::post_signed(&client, &base, &path, &org.auth_token, &params)
                .await
                .status()
        }
    };
    assert_eq!(send("SM00000000000000000000000000000R01").await, 200);
    let World {
        tdb,
        db,
        twilio,
        org,
        gw,
        client,
    } = w;
    gw.stop().await;
    let gw = TestGateway::start(test_config(&tdb.url)).await;
    let w = World {
        tdb,
        db,
        twilio,
        org,
        gw,
        client,
    };
    let mut sub = w.gw.running.hub.subscribe();
    let params = inbound_sms(
        &w.org,
        "SM00000000000000000000000000000R02",
        "+15557654321",
        "again",
    );
    assert_eq!(w.webhook(&w.org, "sms", &params).await.status(), 200);
    // The first node may have stopped before its relay published the first message's
    // events: then this node delivers them now, in order, before the new one.
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("an event within 10 s")
            .expect("subscriber not lagged");
        seen.push(ev.stored.seq.unwrap());
        if ev.stored.seq == Some(3) {
            assert_eq!(ev.stored.event_type, "dartwing.message.received.v1");
            assert_eq!(ev.stored.data["body"], "again");
            break;
        }
    }
    assert!(
        seen.windows(2).all(|p| p[1] == p[0] + 1),
        "in order: {seen:?}"
    );
    let events = all_events(&w, &w.org).await;
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| e["dartwingseq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    w.gw.stop().await;
}
both_backends!(sequence_continues_after_restart);

/// The retention job deletes published rows only: an event the relay has not yet published
/// survives any retention, and numbering continues after a prune.
async fn retention_prunes_only_published_events(backend: Backend) {
    let w = World::new(backend).await;
    for i in 0..20 {
        let params = inbound_sms(&w.org, &format!("SM{i:032}"), "+15557650000", "hi");
        assert_eq!(w.webhook(&w.org, "sms", &params).await.status(), 200);
    }
    // 20 received + 1 conversation created, all published.
    integration_tests::env::eventually(Duration::from_secs(15), || async {
        (gateway::db::outbox::backlog(&w.db.pool).await.ok()? == 0
            && integration_tests::env::count(&w.db, "outbox", &w.org.id).await == 21)
            .then_some(())
    })
    .await;
    // Stop the node (its relay with it) and pretend the broker never took the last three (as
    // after an outage). With no relay running, nothing can publish them behind the test's back.
    let World {
        tdb,
        db,
        twilio,
        org,
        gw,
        client,
    } = w;
    gw.stop().await;
    sqlx::query("UPDATE outbox SET published_at = NULL WHERE seq IN (19, 20, 21) AND org_id = $1")
        .bind(&org.id)
        .execute(&db.pool)
        .await
        .unwrap();
    // A committer of its own, as the retention job uses, without a relay.
    let committer = gateway::commit::Committer::start(
        db.clone(),
        gateway::commit::CommitSettings {
            queue_capacity: 16,
            max_batch: 16,
            writers: 1,
        },
    );
    // A retention window no row is older than deletes nothing.
    let kept = gateway::retention::prune_published(&committer, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(kept, 0);
    // Zero retention deletes every published row, and only those.
    let pruned = gateway::retention::prune_published(&committer, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(pruned, 18, "exactly the 18 published rows");
    let left: Vec<(i64, Option<i64>)> =
        sqlx::query_as("SELECT seq, published_at FROM outbox ORDER BY seq")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        left,
        vec![(19, None), (20, None), (21, None)],
        "the unpublished rows remain"
    );
    // The relay resumes with the node and publishes them.
    let gw = TestGateway::start(test_config(&tdb.url)).await;
    let w = World {
        tdb,
        db,
        twilio,
        org,
        gw,
        client,
    };
    integration_tests::env::eventually(Duration::from_secs(15), || async {
        (gateway::db::outbox::backlog(&w.db.pool).await.ok()? == 0).then_some(())
    })
    .await;
    let published: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE published_at IS NOT NULL")
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(
        published.0, 3,
        "the three kept rows are published after the restart"
    );
    // Numbering goes on from where it was.
    let params = inbound_sms(
        &w.org,
        "SM99999999999999999999999999999999",
        "+15557650000",
        "x",
    );
    assert_eq!(w.webhook(&w.org, "sms", &params).await.status(), 200);
    let events = integration_tests::env::eventually(Duration::from_secs(10), || async {
        let e = all_events(&w, &w.org).await;
        (e.last()?["dartwingseq"] == 22).then_some(e)
    })
    .await;
    assert_eq!(events.last().unwrap()["data"]["body"], "x");
    w.gw.stop().await;
}
both_backends!(retention_prunes_only_published_events);

/// Two nodes on one PostgreSQL: one relays. SIGKILL it, and the survivor takes the relay over
/// (the dead session's advisory lock is released with its connection) and publishes what is
/// written after the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_leadership_moves_when_the_leader_is_killed() {
    use integration_tests::env::{eventually, free_port, ChildGateway, TestDb};
    let tdb = TestDb::new(Backend::Postgres).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 10.0).await;
    let client = reqwest::Client::new();
    let mut nodes = [
        ChildGateway::spawn(&tdb.url, free_port()).await,
        ChildGateway::spawn(&tdb.url, free_port()).await,
    ];
    let leader_of = |base: String| {
        let client = client.clone();
        async move {
            let h: Value = client
                .get(format!("{base}/health"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            h["relay"]["leader"].as_bool()
        }
    };
    let leader = eventually(Duration::from_secs(15), || async {
        let a = leader_of(nodes[0].base.clone()).await?;
        let b = leader_of(nodes[1].base.clone()).await?;
        (a != b).then_some(if a { 0 } else { 1 })
    })
    .await;
    nodes[leader].kill();
    let survivor = &nodes[1 - leader];
    for i in 0..20 {
        let params = inbound_sms(&org, &format!("SM{i:032}"), "+15557650000", "after");
        let path = format!("/webhooks/twilio/{}/sms", org.slug);
        let r = integration_tests::twilio::post_signed(
            &client,
            &survivor.base,
            &path,
            &org.auth_token,
            &params,
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    eventually(Duration::from_secs(30), || async {
        let leads = leader_of(survivor.base.clone()).await?;
        let backlog = gateway::db::outbox::backlog(&db.pool).await.ok()?;
        (leads && backlog == 0).then_some(())
    })
    .await;
    let published: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE published_at IS NOT NULL")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        published.0, 21,
        "20 messages and their conversation, published"
    );
}
