//! API keys as an operator manages them with the real binary's CLI (create with a label,
//! list with last use, revoke by id or by value), revocation taking effect within a second on
//! every node, and request rate limits per key and per org (429 with `Retry-After`).

use integration_tests::both_backends;
use integration_tests::env::{create_org, test_config, Backend, TestDb, TestGateway, World};
use std::time::{Duration, Instant};

/// Runs the gateway binary's CLI against `url`; (success, stdout, stderr).
fn cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let r = integration_tests::env::cli_run(url, &[], args);
    (r.ok, r.stdout, r.stderr)
}

async fn status(client: &reqwest::Client, base: &str, key: &str) -> u16 {
    client
        .get(format!("{base}/api/v1/conversations"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Create, use, list, revoke: on two nodes sharing one database (PostgreSQL) or one node
/// (SQLite), the revoked key is refused everywhere within a second, the other key still works.
async fn keys_are_listed_and_revoked_everywhere_within_a_second(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 1.0).await;
    let mut nodes = vec![TestGateway::start(test_config(&tdb.url)).await];
    if backend == Backend::Postgres {
        nodes.push(TestGateway::start(test_config(&tdb.url)).await);
    }
    let (ok, out, err) = cli(
        &tdb.url,
        &["apikey", "create", "--org", "acme", "--label", "crm sync"],
    );
    assert!(ok, "{err}");
    let key = out.lines().last().unwrap().trim().to_string();
    assert!(key.starts_with("dw_"), "{out}");
    let client = reqwest::Client::new();
    for n in &nodes {
        assert_eq!(status(&client, &n.base, &key).await, 200);
        assert_eq!(status(&client, &n.base, &org.key).await, 200);
    }
    // Listed with its label and its use; the key itself is never shown again.
    let (ok, out, err) = integration_tests::env::eventually(Duration::from_secs(5), || async {
        let r = cli(&tdb.url, &["apikey", "list", "--org", "acme"]);
        let line = r.1.lines().find(|l| l.contains("crm sync"))?.to_string();
        (line.split('\t').nth(4)? != "-").then_some(r)
    })
    .await;
    assert!(ok, "{err}");
    assert!(!out.contains(&key), "the list never shows a key: {out}");
    let line = out.lines().find(|l| l.contains("crm sync")).unwrap();
    let id = line.split('\t').next().unwrap().to_string();
    assert!(
        line.contains(&key[..10]),
        "the prefix identifies it: {line}"
    );
    assert_eq!(out.lines().count(), 3, "a header and two keys: {out}");
    // Another org cannot revoke it, and a key it does not have is an error.
    assert!(cli(&tdb.url, &["org", "create", "globex"]).0);
    let (ok, _, err) = cli(
        &tdb.url,
        &["apikey", "revoke", "--org", "globex", "--key", &id],
    );
    assert!(!ok && err.contains("no live key"), "{err}");
    assert_eq!(status(&client, &nodes[0].base, &key).await, 200);
    // Revoked by id: refused on every node within a second.
    let (ok, _, err) = cli(
        &tdb.url,
        &["apikey", "revoke", "--org", "acme", "--key", &id],
    );
    assert!(ok, "{err}");
    let revoked = Instant::now();
    for n in &nodes {
        integration_tests::env::eventually(Duration::from_secs(3), || async {
            (status(&client, &n.base, &key).await == 401).then_some(())
        })
        .await;
    }
    let took = revoked.elapsed();
    eprintln!(
        "revoked key refused on {} node(s) after {took:?}",
        nodes.len()
    );
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    for n in &nodes {
        assert_eq!(
            status(&client, &n.base, &org.key).await,
            200,
            "the other key works"
        );
    }
    // Revoking by the key's value works too, once.
    let (ok, _, err) = cli(
        &tdb.url,
        &["apikey", "revoke", "--org", "acme", "--key", &org.key],
    );
    assert!(ok, "{err}");
    let (ok, _, _) = cli(
        &tdb.url,
        &["apikey", "revoke", "--org", "acme", "--key", &org.key],
    );
    assert!(!ok, "already revoked");
    for n in nodes {
        n.stop().await;
    }
}
both_backends!(keys_are_listed_and_revoked_everywhere_within_a_second);

/// `DARTWING_API_RATE_PER_KEY`: a burst past the rate is answered 429 with `Retry-After`;
/// another key of the same org keeps its own allowance; after the wait the key works again.
/// The per-org limit caps the org's keys together.
async fn rate_limits_per_key_and_per_org(backend: Backend) {
    let w = World::with_config(backend, |c| {
        c.api.rate_per_key = 5.0;
        c.api.rate_per_org = 8.0;
    })
    .await;
    let second = gateway::db::orgs::create_api_key(&w.db.pool, &w.org.id)
        .await
        .unwrap();
    let mut codes = Vec::new();
    let mut retry_after = None;
    for _ in 0..12 {
        let r = w
            .client
            .get(format!("{}/api/v1/conversations", w.gw.base))
            .bearer_auth(&w.org.key)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body = r.text().await.unwrap();
            assert!(body.contains("rate_limited"), "{body}");
            codes.push(429);
        } else {
            codes.push(r.status().as_u16());
        }
    }
    let ok = codes.iter().filter(|c| **c == 200).count();
    eprintln!("12 requests at once on a 5/s key: {codes:?}");
    assert!(
        (5..=6).contains(&ok),
        "a burst of one second's worth: {codes:?}"
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    // The org's other key has its own allowance, up to the org's 8/s.
    let mut second_ok = 0;
    for _ in 0..6 {
        if status(&w.client, &w.gw.base, &second).await == 200 {
            second_ok += 1;
        }
    }
    assert!(
        (2..=4).contains(&second_ok),
        "the org's cap (8/s) leaves the second key what the first did not use: {second_ok}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        status(&w.client, &w.gw.base, &w.org.key).await,
        200,
        "after the wait"
    );
    w.gw.stop().await;
}
both_backends!(rate_limits_per_key_and_per_org);
