//! Signed outbound webhooks against a local receiver that checks every request the way a
//! Standard Webhooks consumer does (its own HMAC code, not the gateway's): every event of the
//! org arrives, in sequence order (so each conversation's in order), signed; refusals are
//! retried; an event refused every time becomes a dead letter and is replayed on request; a
//! rotated secret is accepted beside the old one during the overlap. Endpoints are managed
//! with the real binary's CLI. Both backends.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use integration_tests::both_backends;
use integration_tests::env::{count, eventually, Backend, World};
use integration_tests::twilio::inbound_sms;
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Inner {
    script: VecDeque<u16>,
    got: Vec<(HeaderMap, Vec<u8>, u16)>,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Inner>>);

async fn hook(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let mut inner = r.0.lock().unwrap();
    let status = inner.script.pop_front().unwrap_or(200);
    inner.got.push((headers, body.to_vec(), status));
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let r = Receiver::default();
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    fn accepted(&self) -> Vec<Value> {
        let inner = self.0.lock().unwrap();
        inner
            .got
            .iter()
            .filter(|(_, _, s)| *s == 200)
            .map(|(_, b, _)| serde_json::from_slice(b).unwrap())
            .collect()
    }
}

/// Whether `header` carries a valid `v1` signature of (id, timestamp, body) under `secret`,
/// computed here with ring, independently of the gateway.
fn verifies(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let h = |k: &str| headers.get(k).unwrap().to_str().unwrap().to_string();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut msg = format!("{}.{}.", h("webhook-id"), h("webhook-timestamp")).into_bytes();
    msg.extend_from_slice(body);
    let want = base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, &msg));
    h("webhook-signature")
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(want.as_str()))
}

fn cli(url: &str, args: &[&str]) -> String {
    integration_tests::env::cli_ok(url, &[], args)
}

async fn ingest(w: &World, from: usize, n: usize) {
    for i in from..from + n {
        let params = inbound_sms(
            &w.org,
            &format!("SM{i:032}"),
            &format!("+1555010{:04}", i % 3),
            &format!("message {i}"),
        );
        assert_eq!(w.webhook(&w.org, "sms", &params).await.status(), 200);
    }
}

async fn events_arrive_signed_in_order_with_retries_dead_letters_and_rotation(backend: Backend) {
    let w = World::with_config(backend, |c| c.webhooks.max_attempts = 3).await;
    let (rx, url) = Receiver::start().await;
    let out = cli(
        &w.tdb.url,
        &["webhook", "add", "--org", "acme", "--url", &url],
    );
    let secret = out.lines().last().unwrap().trim().to_string();
    assert!(secret.starts_with("whsec_"), "{out}");
    let endpoint = out.split_whitespace().nth(1).unwrap().to_string();

    // Two refusals, then acceptance: retried, nothing skipped.
    rx.0.lock().unwrap().script.extend([500, 503]);
    ingest(&w, 0, 15).await;
    // 15 received + 3 conversations created.
    let all = eventually(Duration::from_secs(20), || async {
        let got = rx.accepted();
        (got.len() >= 18).then_some(got)
    })
    .await;
    assert_eq!(all.len(), 18, "each event delivered once after its retries");
    let seqs: Vec<i64> = all
        .iter()
        .map(|e| e["dartwingseq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=18).collect::<Vec<_>>(),
        "in the org's sequence order"
    );
    {
        let inner = rx.0.lock().unwrap();
        assert_eq!(
            inner.got.iter().map(|g| g.2).take(3).collect::<Vec<_>>(),
            [500, 503, 200]
        );
        let first_id = inner.got[0].0.get("webhook-id").unwrap().clone();
        assert_eq!(
            inner.got[2].0.get("webhook-id"),
            Some(&first_id),
            "the same id on retries"
        );
        let now = gateway::db::now_ms() / 1000;
        for (headers, body, _) in &inner.got {
            assert!(
                verifies(&secret, headers, body),
                "signed with the endpoint's secret"
            );
            let ts: i64 = headers["webhook-timestamp"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((now - ts).abs() < 300, "a current timestamp");
            let env: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(
                headers["webhook-id"].to_str().unwrap(),
                env["id"].as_str().unwrap()
            );
            assert_eq!(env["specversion"], "1.0");
        }
        let ids: HashSet<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 18);
    }
    integration_tests::schema::assert_org_events_valid(&w, &w.org).await;

    // Refused three times (max_attempts): dead-lettered, and the endpoint moves on.
    rx.0.lock().unwrap().script.extend([500, 500, 500]);
    ingest(&w, 15, 2).await;
    let after = eventually(Duration::from_secs(20), || async {
        let got = rx.accepted();
        (got.len() >= 19).then_some(got)
    })
    .await;
    assert_eq!(after.len(), 19);
    assert_eq!(
        after[18]["dartwingseq"], 20,
        "seq 19 was dead-lettered, 20 delivered"
    );
    let dl = cli(&w.tdb.url, &["webhook", "dead-letters", "--org", "acme"]);
    let line = dl.lines().nth(1).expect("one dead letter");
    let cols: Vec<&str> = line.split('\t').collect();
    assert_eq!(
        (cols[1], cols[3], cols[4], cols[5]),
        (endpoint.as_str(), "19", "3", "-"),
        "{dl}"
    );
    assert!(cols[6].contains("HTTP 500"), "{dl}");
    cli(
        &w.tdb.url,
        &["webhook", "replay", "--org", "acme", "--id", cols[0]],
    );
    let replayed = eventually(Duration::from_secs(20), || async {
        let got = rx.accepted();
        (got.len() >= 20).then_some(got)
    })
    .await;
    assert_eq!(
        replayed[19]["dartwingseq"], 19,
        "the dead letter, delivered on replay"
    );
    eventually(Duration::from_secs(10), || async {
        let dl = cli(&w.tdb.url, &["webhook", "dead-letters", "--org", "acme"]);
        (dl.lines().nth(1)?.split('\t').nth(5)? != "-").then_some(())
    })
    .await;

    // Rotation: the new secret and, during the overlap, the old one sign.
    let out = cli(
        &w.tdb.url,
        &["webhook", "rotate", "--org", "acme", "--id", &endpoint],
    );
    let rotated = out.lines().last().unwrap().trim().to_string();
    assert_ne!(rotated, secret);
    ingest(&w, 17, 1).await;
    eventually(Duration::from_secs(20), || async {
        (rx.accepted().len() >= 21).then_some(())
    })
    .await;
    {
        let inner = rx.0.lock().unwrap();
        let (headers, body, _) = inner.got.last().unwrap();
        assert!(verifies(&rotated, headers, body), "the new secret signs");
        assert!(
            verifies(&secret, headers, body),
            "the old one too, during the overlap"
        );
        let sig = headers["webhook-signature"].to_str().unwrap();
        assert_eq!(sig.split(' ').count(), 2, "{sig}");
    }
    // Removed: nothing more is sent. The barrier is a second endpoint, added after the
    // removal: once it has the next event, the worker has been past the removed one.
    cli(
        &w.tdb.url,
        &["webhook", "remove", "--org", "acme", "--id", &endpoint],
    );
    let before = rx.0.lock().unwrap().got.len();
    let (rx2, url2) = Receiver::start().await;
    cli(
        &w.tdb.url,
        &["webhook", "add", "--org", "acme", "--url", &url2],
    );
    ingest(&w, 18, 1).await;
    eventually(Duration::from_secs(20), || async {
        (!rx2.accepted().is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        rx.0.lock().unwrap().got.len(),
        before,
        "a removed endpoint gets nothing"
    );
    assert!(count(&w.db, "outbox", &w.org.id).await >= 22);
    w.gw.stop().await;
}
both_backends!(events_arrive_signed_in_order_with_retries_dead_letters_and_rotation);
