//! Hostile traffic against the real binary: what unauthenticated strangers send must not grow
//! the gateway's memory or its metrics. 200,000 requests with random (long) org slugs,
//! random provider names and random (long) Bearer tokens; the process's RSS is read from
//! `/proc` before and after, and `/metrics` is compared. Nothing here is stored, so the
//! backend does not matter (SQLite).

use integration_tests::env::{free_port, Backend, ChildGateway, TestDb};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const REQUESTS: usize = 200_000;
/// How far RSS may rise over the run. Measured here (debug build): +4 MB with the bounded
/// caches (10,000 entries each, keys 32-byte digests); +26 MB with the same caches unbounded;
/// caching what was presented as-is would hold every 1 KB slug and 2 KB token (~200 MB).
const RSS_BOUND_MB: u64 = 16;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn random_text(len: usize) -> String {
    let mut s = String::with_capacity(len);
    while s.len() < len {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(len);
    s
}

/// Request `i` of the mix: a webhook for a random org, one for a random provider, an API
/// call with a random key.
fn hostile(client: &reqwest::Client, base: &str, i: usize) -> reqwest::RequestBuilder {
    match i % 3 {
        0 => client
            .post(format!("{base}/webhooks/twilio/{}/sms", random_text(1024)))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("From=%2B15550001111&Body=hi"),
        1 => client
            .post(format!("{base}/webhooks/{}/acme", random_text(24)))
            .body("{}"),
        _ => client
            .get(format!("{base}/api/v1/conversations"))
            .bearer_auth(random_text(2048)),
    }
}

async fn blast(base: &str, n: usize) -> [usize; 3] {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(std::sync::Mutex::new([0usize; 3]));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, base, next, statuses) = (
            client.clone(),
            base.to_string(),
            next.clone(),
            statuses.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let status = hostile(&client, &base, i).send().await.unwrap().status();
                assert!(
                    matches!(status.as_u16(), 401 | 403 | 404),
                    "request {i}: {status}"
                );
                statuses.lock().unwrap()[i % 3] += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = *statuses.lock().unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_slugs_providers_and_tokens_do_not_grow_memory_or_metrics() {
    let tdb = TestDb::new(Backend::Sqlite).await;
    let gw = ChildGateway::spawn(&tdb.url, free_port()).await;
    let pid = gw.child.id();
    let client = reqwest::Client::new();
    let metrics = |client: reqwest::Client, base: String| async move {
        client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // Warm up (allocator arenas, connection pools, every metric's first series).
    blast(&gw.base, 20_000).await;
    let rss_before = rss_kb(pid);
    let metrics_before = metrics(client.clone(), gw.base.clone()).await;
    let started = std::time::Instant::now();
    let answered = blast(&gw.base, REQUESTS).await;
    let rss_after = rss_kb(pid);
    let metrics_after = metrics(client.clone(), gw.base.clone()).await;
    eprintln!(
        "{REQUESTS} hostile requests in {:?} ({answered:?} per kind): RSS {} → {} MB; /metrics {} → {} bytes",
        started.elapsed(),
        rss_before / 1024,
        rss_after / 1024,
        metrics_before.len(),
        metrics_after.len()
    );
    assert!(
        rss_after <= rss_before + RSS_BOUND_MB * 1024,
        "RSS rose {} MB (bound {RSS_BOUND_MB} MB)",
        (rss_after - rss_before) / 1024
    );
    // The same series before and after: counts change, names and labels do not.
    let series = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' ').map(|(name, _)| name.to_string()))
            .collect()
    };
    let (before, after) = (series(&metrics_before), series(&metrics_after));
    let new: Vec<&String> = after.difference(&before).collect();
    assert!(new.is_empty(), "new series after hostile traffic: {new:?}");
}

/// Reads from `sock` until the server closes it (or `within` passes: then `None`).
async fn closed_within(
    sock: &mut tokio::net::TcpStream,
    within: std::time::Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|_| got)
}

/// The HTTP server's limits against slow and greedy clients: headers trickled past the
/// header timeout are cut off; a body that stalls gets 503 + `Retry-After` at the request
/// timeout; connections past the limit are closed at once while the admitted ones are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_stalled_bodies_and_connection_floods_are_cut_off() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let tdb = TestDb::new(Backend::Sqlite).await;
    let port = free_port();
    let gw = ChildGateway::spawn_with(
        &tdb.url,
        port,
        &[
            ("DARTWING_HTTP_HEADER_TIMEOUT_MS", "500"),
            ("DARTWING_HTTP_REQUEST_TIMEOUT_MS", "700"),
        ],
    )
    .await;
    let addr = format!("127.0.0.1:{port}");

    // Slowloris: half a request line, then nothing.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    closed_within(&mut slow, Duration::from_secs(5))
        .await
        .expect("a connection that never finishes its headers is closed");
    eprintln!("slow headers closed after {:?}", started.elapsed());
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "not before the timeout"
    );

    // A body that stalls: 503 with Retry-After at the request timeout, nothing stored.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            b"POST /webhooks/twilio/acme/sms HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nFrom=%2B1",
        )
        .await
        .unwrap();
    let answer = closed_within(&mut stalled, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );

    drop(gw);

    // Eight idle connections take every slot; a ninth is closed at once, unanswered. (A node
    // of its own, with the default header timeout, so the idle ones stay open meanwhile.)
    let port = free_port();
    let gw =
        ChildGateway::spawn_with(&tdb.url, port, &[("DARTWING_HTTP_MAX_CONNECTIONS", "8")]).await;
    let addr = format!("127.0.0.1:{port}");
    // Each held connection is served once (so the server has surely accepted it and holds
    // its slot), then stays open, idle, on keep-alive.
    let mut held = Vec::new();
    for _ in 0..8 {
        use tokio::io::AsyncReadExt;
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
            .await
            .expect("served within 10 s")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(c);
    }
    let mut ninth = TcpStream::connect(&addr).await.unwrap();
    let _ = ninth
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    // Closed without an answer (a served connection would answer, then stay open).
    let refused = closed_within(&mut ninth, Duration::from_secs(5))
        .await
        .expect("the ninth connection is closed");
    assert!(refused.is_empty(), "no answer past the limit");
    // An admitted connection is still served.
    let first = &mut held[0];
    first
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let ok = closed_within(first, Duration::from_secs(5))
        .await
        .expect("answered");
    assert!(String::from_utf8_lossy(&ok).contains("HTTP/1.1 200"));
    // Slots come back when connections go.
    drop(held);
    let health = integration_tests::env::eventually(Duration::from_secs(5), || async {
        let r = reqwest::get(format!("{}/health", gw.base)).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let () = health;
}
