//! SIGKILL while 2,000 webhooks are in flight: every webhook that got a 2xx is stored exactly
//! once after restart, and the provider's retries of the rest complete the set — on both
//! backends, with the real binary.

use integration_tests::both_backends;
use integration_tests::env::{count, create_org, free_port, Backend, ChildGateway, TestDb};
use integration_tests::twilio::{inbound_sms, post_signed};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const N: usize = 2000;

async fn kill_mid_ingest_loses_nothing_acknowledged(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 10.0).await;
    let port = free_port();
    let mut gw = ChildGateway::spawn(&tdb.url, port).await;
    let client = reqwest::Client::new();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, base, org, acked, next) = (
            client.clone(),
            gw.base.clone(),
            org.clone(),
            acked.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= N {
                    return;
                }
                let sid = format!("SM{i:032}");
                let params = inbound_sms(&org, &sid, &format!("+1555{:07}", i % 97), "crash test");
                let url = format!("{base}/webhooks/twilio/acme/sms");
                let sig = channels::sms::twilio::signature::compute(&org.auth_token, &url, &params);
                let body = serde_urlencoded::to_string(&params).unwrap();
                let sent = client
                    .post(&url)
                    .header("X-Twilio-Signature", sig)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await;
                if let Ok(r) = sent {
                    if r.status().is_success() {
                        acked.lock().unwrap().push(sid);
                    }
                }
            }
        }));
    }
    // Kill once a good part is acknowledged, while requests are still in flight.
    while acked.lock().unwrap().len() < N / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw.kill();
    for t in tasks {
        t.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= N / 4 && acked.len() < N,
        "killed mid-run: {} acknowledged",
        acked.len()
    );

    let gw = ChildGateway::spawn(&tdb.url, port).await;
    let stored: HashSet<String> = sqlx::query_as::<_, (String,)>(
        "SELECT provider_message_id FROM messages WHERE org_id = $1",
    )
    .bind(&org.id)
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.0)
    .collect();
    let total = count(&db, "messages", &org.id).await as usize;
    assert_eq!(total, stored.len(), "no message stored twice");
    for sid in &acked {
        assert!(stored.contains(sid), "acknowledged {sid} was lost");
    }
    // The provider retries everything; afterwards each message exists exactly once.
    for i in 0..N {
        let params = inbound_sms(
            &org,
            &format!("SM{i:032}"),
            &format!("+1555{:07}", i % 97),
            "crash test",
        );
        let r = post_signed(
            &client,
            &gw.base,
            "/webhooks/twilio/acme/sms",
            &org.auth_token,
            &params,
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(count(&db, "messages", &org.id).await as usize, N);
    assert_eq!(count(&db, "conversations", &org.id).await, 97);
}
both_backends!(kill_mid_ingest_loses_nothing_acknowledged);
