//! SIGKILL while 2,000 webhooks are in flight: every webhook that got a 2xx is stored exactly
//! once after restart, and the provider's retries of the rest complete the set — on both
//! backends, with the real binary, for each provider's wire format (Twilio forms, Meta's
//! signed JSON deliveries, Telnyx's Ed25519-signed events).

use integration_tests::both_backends;
use integration_tests::env::{
    count, create_org, free_port, stored_provider_ids, Backend, ChildGateway, TestDb, TestOrg,
};
use integration_tests::telnyx::TelnyxStandin;
use integration_tests::twilio::signed_inbound;
use integration_tests::whatsapp::{delivery, text, GraphStandin};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const N: usize = 2000;

/// How one provider's webhook for message `i` is made.
#[derive(Clone)]
enum Provider {
    Twilio(TestOrg),
    WhatsApp { secret: String },
    Telnyx(TelnyxStandin),
}

impl Provider {
    /// The provider id of message `i` and the signed request carrying it.
    fn request(
        &self,
        client: &reqwest::Client,
        base: &str,
        i: usize,
    ) -> (String, reqwest::RequestBuilder) {
        let from = format!("+1555{:07}", i % 97);
        match self {
            Provider::Twilio(org) => {
                let id = format!("SM{i:032}");
                let req = signed_inbound(client, base, org, &id, &from, "crash test");
                (id, req)
            }
            Provider::WhatsApp { secret } => {
                let id = format!("wamid.{i:032}");
                let v = delivery(
                    serde_json::json!([text(&id, &from[1..], "crash test")]),
                    serde_json::json!([]),
                );
                let body = serde_json::to_vec(&v).unwrap();
                let sig = channels::whatsapp::signature::compute(secret, &body);
                let req = client
                    .post(format!("{base}/webhooks/whatsapp/acme"))
                    .header("X-Hub-Signature-256", sig)
                    .header("content-type", "application/json")
                    .body(body);
                (id, req)
            }
            Provider::Telnyx(standin) => {
                let id = format!("tx-{i:032}");
                let v = integration_tests::telnyx::received(&id, &from, "crash test");
                let body = serde_json::to_vec(&v).unwrap();
                let now = gateway::db::now_ms() / 1000;
                let mut req = client
                    .post(format!("{base}/webhooks/telnyx/acme/sms"))
                    .header("content-type", "application/json");
                for (k, v) in standin.sign(&body, now) {
                    req = req.header(k, v);
                }
                (id, req.body(body))
            }
        }
    }
}

async fn kill_mid_ingest(backend: Backend, which: &str) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 10.0).await;
    let provider = match which {
        "twilio" => Provider::Twilio(org.clone()),
        "whatsapp" => {
            let graph = GraphStandin::start().await;
            let acct = graph.add_account(&db, &org.id).await;
            Provider::WhatsApp {
                secret: acct.app_secret,
            }
        }
        _ => {
            let telnyx = TelnyxStandin::start().await;
            telnyx.add_account(&db, &org.id).await;
            Provider::Telnyx(telnyx)
        }
    };
    let port = free_port();
    let mut gw = ChildGateway::spawn(&tdb.url, port).await;
    let client = reqwest::Client::new();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, base, provider, acked, next) = (
            client.clone(),
            gw.base.clone(),
            provider.clone(),
            acked.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= N {
                    return;
                }
                let (id, req) = provider.request(&client, &base, i);
                if let Ok(r) = req.send().await {
                    if r.status().is_success() {
                        acked.lock().unwrap().push(id);
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
    let stored: HashSet<String> = stored_provider_ids(&db, &org.id)
        .await
        .into_iter()
        .collect();
    // The claim: every webhook answered 2xx before the kill is stored after the restart.
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    eprintln!(
        "{which}: {} of {N} acknowledged before SIGKILL, {} stored after the restart, {} of the acknowledged lost",
        acked.len(),
        stored.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged webhooks lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let total = count(&db, "messages", &org.id).await as usize;
    assert_eq!(total, stored.len(), "no message stored twice");
    // The provider retries everything; afterwards each message exists exactly once.
    for i in 0..N {
        let (_, req) = provider.request(&client, &gw.base, i);
        assert_eq!(req.send().await.unwrap().status(), 200);
    }
    assert_eq!(count(&db, "messages", &org.id).await as usize, N);
    assert_eq!(count(&db, "conversations", &org.id).await, 97);
}

async fn kill_mid_ingest_loses_nothing_acknowledged(backend: Backend) {
    kill_mid_ingest(backend, "twilio").await
}
both_backends!(kill_mid_ingest_loses_nothing_acknowledged);

async fn whatsapp_kill_mid_ingest_loses_nothing_acknowledged(backend: Backend) {
    kill_mid_ingest(backend, "whatsapp").await
}
both_backends!(whatsapp_kill_mid_ingest_loses_nothing_acknowledged);

async fn telnyx_kill_mid_ingest_loses_nothing_acknowledged(backend: Backend) {
    kill_mid_ingest(backend, "telnyx").await
}
both_backends!(telnyx_kill_mid_ingest_loses_nothing_acknowledged);
