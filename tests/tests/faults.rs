//! Faults under load, asserting what was kept: PostgreSQL stopped (fast shutdown, sessions
//! cut) and started again 3 s later while webhooks arrive. Every webhook the gateway answered
//! 2xx is stored exactly once; requests that arrived meanwhile either waited for the database
//! (up to the pool's acquire timeout) or were refused, never acknowledged unstored; the
//! provider's retries complete the set; `/health` says `down` during the outage and recovers. Real binary, a private
//! PostgreSQL cluster of the test's own.

use integration_tests::env::{
    count, create_org, free_port, stored_provider_ids, ChildGateway, TestOrg,
};
use integration_tests::pg::PrivatePostgres;
use integration_tests::twilio::signed_inbound;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const N: usize = 1500;

/// The signed Twilio webhook of message `i`.
fn webhook(
    client: &reqwest::Client,
    base: &str,
    org: &TestOrg,
    i: usize,
) -> (String, reqwest::RequestBuilder) {
    let id = format!("SM{i:032}");
    let from = format!("+1555{:07}", i % 53);
    let req = signed_inbound(client, base, org, &id, &from, "restart test");
    (id, req)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarting_mid_load_loses_nothing_acknowledged() {
    integration_tests::env::init();
    let pg = PrivatePostgres::start();
    let url = pg.url();
    let db = gateway::db::Db::connect(&url, 2).await.expect("connect");
    db.migrate().await.expect("migrate");
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 10.0).await;
    let gw = ChildGateway::spawn(&url, free_port()).await;

    let client = reqwest::Client::new();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, base, org) = (client.clone(), gw.base.clone(), org.clone());
        let (acked, refused, next) = (acked.clone(), refused.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= N {
                    return;
                }
                // The provider retries a webhook until it is acknowledged.
                let deadline = Instant::now() + Duration::from_secs(90);
                loop {
                    let (id, req) = webhook(&client, &base, &org, i);
                    match req.timeout(Duration::from_secs(20)).send().await {
                        Ok(r) if r.status().is_success() => {
                            acked.lock().unwrap().push(id);
                            break;
                        }
                        _ => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            assert!(Instant::now() < deadline, "webhook {i} never acknowledged");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        }));
    }
    // Stop the database once a good part is acknowledged, with requests in flight.
    while acked.lock().unwrap().len() < N / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = acked.lock().unwrap().len();
    pg.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let health = client
        .get(format!("{}/health", gw.base))
        .send()
        .await
        .unwrap();
    let during = (health.status().as_u16(), health.text().await.unwrap());
    pg.start_again();
    for t in tasks {
        t.await.unwrap();
    }
    let refusals = refused.load(Ordering::Relaxed);
    let acked: Vec<String> = acked.lock().unwrap().clone();
    eprintln!(
        "{before} acknowledged before the stop; {refusals} refusals while it was down; \
         {} acknowledged in all; /health during the outage: {during:?}",
        acked.len()
    );
    assert!(before < N, "the stop came mid-run");
    assert_ne!(
        during.0, 200,
        "/health is not ok while the database is down: {during:?}"
    );

    // The claim: every acknowledged webhook is stored, once; nothing else is.
    let db = gateway::db::Db::connect(&url, 2).await.expect("reconnect");
    let stored = stored_provider_ids(&db, &org.id).await;
    let stored_set: HashSet<&String> = stored.iter().collect();
    assert_eq!(stored_set.len(), stored.len(), "no message stored twice");
    let lost: Vec<&String> = acked.iter().filter(|id| !stored_set.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged webhooks lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(
        acked.len(),
        N,
        "every webhook acknowledged once it could be"
    );
    assert_eq!(stored.len(), N);
    assert_eq!(count(&db, "conversations", &org.id).await, 53);
    // Healthy again, and still taking webhooks.
    integration_tests::env::eventually(Duration::from_secs(20), || async {
        let r = client
            .get(format!("{}/health", gw.base))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let (_, req) = webhook(&client, &gw.base, &org, N);
    assert!(req.send().await.unwrap().status().is_success());
    drop(gw);
}
