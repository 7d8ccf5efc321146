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
    // Every request comes from 127.0.0.1: the per-source budget of unknown orgs would soon
    // answer the random slugs 429 without a lookup. Off, so that the caches take the flood.
    let gw = ChildGateway::spawn_with(
        &tdb.url,
        free_port(),
        &[("DARTWING_HTTP_UNKNOWN_ORGS_PER_SOURCE", "0")],
    )
    .await;
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

/// A connection from `source` to `addr` that was served one `/health` (so the server holds
/// its slot), or `None` when the server closed it unanswered.
async fn held_from(source: &str, addr: &str) -> Option<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut c = sock.connect(addr.parse().unwrap()).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), c.read(&mut buf))
        .await
        .expect("answered or closed within 10 s")
        .unwrap_or(0);
    (n > 0 && buf.starts_with(b"HTTP/1.1 200")).then_some(c)
}

/// One flooding source does not starve a provider: 127.0.0.2 tries to hold every connection
/// slot and then sprays webhooks at orgs that do not exist, while the provider, from
/// 127.0.0.1, keeps posting signed webhooks. The flooder gets 16 of its 64 connections (the
/// per-source cap; without it, all 64 slots and the provider is shut out), then 401s for
/// its first unknown orgs and 429 for the rest; every one of the provider's webhooks is
/// answered 200 and stored, before, during and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_source_does_not_starve_the_provider() {
    use integration_tests::env::{count, create_org};
    use integration_tests::twilio::signed_inbound;
    let tdb = TestDb::new(Backend::Sqlite).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 1.0).await;
    let port = free_port();
    let gw = ChildGateway::spawn_with(
        &tdb.url,
        port,
        &[
            ("DARTWING_HTTP_MAX_CONNECTIONS", "64"),
            ("DARTWING_HTTP_MAX_CONNECTIONS_PER_SOURCE", "16"),
            ("DARTWING_HTTP_UNKNOWN_ORGS_PER_SOURCE", "5"),
        ],
    )
    .await;
    let addr = format!("127.0.0.1:{port}");
    let provider = reqwest::Client::new();
    let mut sent = 0;
    let mut provider_posts = |n: usize| {
        let reqs: Vec<_> = (sent..sent + n)
            .map(|i| {
                signed_inbound(
                    &provider,
                    &gw.base,
                    &org,
                    &format!("SM{i:032}"),
                    "+15557650000",
                    &format!("genuine {i}"),
                )
            })
            .collect();
        sent += n;
        async move {
            for r in reqs {
                let status = r.send().await.expect("the provider is served").status();
                assert_eq!(status, 200, "a genuine webhook");
            }
        }
    };
    provider_posts(5).await;

    // Connections: 16 held from the flooder, the other 48 closed unanswered.
    let mut held = Vec::new();
    let mut closed = 0;
    for _ in 0..64 {
        match held_from("127.0.0.2", &addr).await {
            Some(c) => held.push(c),
            None => closed += 1,
        }
    }
    eprintln!("flooder: {} connections held, {closed} closed", held.len());
    assert_eq!((held.len(), closed), (16, 48));
    provider_posts(10).await;
    drop(held);

    // Unknown orgs: a few lookups, then 429 without one; the provider goes on meanwhile.
    let flooder = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let spray = async {
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for i in 0..200 {
            let r = flooder
                .post(format!("{}/webhooks/twilio/nosuchorg{i}/sms", gw.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("From=%2B15550001111&Body=hi")
                .send()
                .await
                .unwrap();
            if r.status() == 429 {
                assert!(r.headers().contains_key("retry-after"));
            }
            *statuses.entry(r.status().as_u16()).or_default() += 1;
        }
        statuses
    };
    let (statuses, ()) = tokio::join!(spray, provider_posts(20));
    eprintln!("flooder's webhooks for unknown orgs: {statuses:?}");
    let throttled = statuses.get(&429).copied().unwrap_or(0);
    assert!(throttled >= 150, "{statuses:?}");
    assert_eq!(throttled + statuses.get(&401).copied().unwrap_or(0), 200);
    let metrics = integration_tests::env::get_text(&provider, &gw.base, "/metrics").await;
    assert!(
        metrics.contains("http_source_connections_refused_total 48"),
        "the refused connections are counted"
    );
    assert!(metrics.contains("reason=\"source_throttled\""));
    assert_eq!(
        count(&db, "messages", &org.id).await,
        35,
        "every genuine webhook kept"
    );
}
