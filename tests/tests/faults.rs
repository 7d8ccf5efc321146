//! Faults under load, asserting what was kept: PostgreSQL stopped (fast shutdown, sessions
//! cut) and started again 3 s later while webhooks arrive. Every webhook the gateway answered
//! 2xx is stored exactly once; requests that arrived meanwhile either waited for the database
//! (up to the pool's acquire timeout) or were refused, never acknowledged unstored; the
//! provider's retries complete the set; `/health` says `down` during the outage and recovers. Real binary, a private
//! PostgreSQL cluster of the test's own.
//!
//! And SQLite's disk filling up: webhooks are refused with 503 `storage_unavailable` while
//! no page can be written, every one acknowledged before is kept, the file passes
//! `PRAGMA integrity_check`, and the refused ones are taken once space returns.
//!
//! And the wall clock jumping (libfaketime preloaded into the binary): set back, scheduled
//! work is not held back; set forward, a send in flight is not sent again.

use integration_tests::env::{
    count, create_org, eventually, free_port, stored_provider_ids, ChildGateway, TestOrg,
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

/// A small tmpfs of the test's own (the test runs as root, as CI does), unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(megabytes: u32) -> SmallDisk {
        let dir =
            std::env::temp_dir().join(format!("dartwing-full-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir)
    }

    /// Fills what is left with one file, until the disk says it is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            match f.write_all(&chunk).and_then(|()| f.flush()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full_refuses_keeps_what_it_took_and_recovers() {
    integration_tests::env::init();
    let disk = SmallDisk::mount(24);
    let url = format!("sqlite://{}/gw.db", disk.0.display());
    let db = gateway::db::Db::connect(&url, 2).await.expect("connect");
    db.migrate().await.expect("migrate");
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 10.0).await;
    let gw =
        integration_tests::env::TestGateway::start(integration_tests::env::test_config(&url)).await;
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    let post = |i: usize| {
        let (id, req) = webhook(&client, &gw.base, &org, i);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().contains_key("retry-after");
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (
                id,
                status,
                retry,
                body["error"]["code"].as_str().map(str::to_string),
            )
        }
    };
    for i in 0..50 {
        let (id, status, _, _) = post(i).await;
        assert_eq!(status, 200);
        acked.push(id);
    }

    // The disk fills: the gateway refuses what it cannot store, and says why.
    let filler = disk.fill();
    let mut refused = Vec::new();
    let mut i = 50;
    while refused.len() < 10 && i < 2_000 {
        let (id, status, retry, code) = post(i).await;
        match status {
            200 => acked.push(id),
            503 => {
                assert!(retry, "503 carries Retry-After");
                assert_eq!(code.as_deref(), Some("storage_unavailable"));
                refused.push(i);
            }
            other => panic!("webhook {i} on a full disk: {other} {code:?}"),
        }
        i += 1;
    }
    eprintln!(
        "disk full after {} webhooks; {} refused with 503 (of {} sent while full)",
        acked.len(),
        refused.len(),
        i - 50
    );
    assert_eq!(refused.len(), 10, "the full disk was reached");

    // Space returns: the provider's retries of the refused ones are taken.
    std::fs::remove_file(filler).unwrap();
    for i in refused.iter().copied() {
        let (id, status, _, code) = post(i).await;
        assert_eq!(status, 200, "webhook {i} after space returned: {code:?}");
        acked.push(id);
    }
    let (id, status, _, _) = post(i).await;
    assert_eq!(status, 200);
    acked.push(id);
    gw.stop().await;

    let check = gateway::db::Db::connect(&url, 1).await.expect("reopen");
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&check.pool)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    let stored = stored_provider_ids(&check, &org.id).await;
    let stored_set: HashSet<&String> = stored.iter().collect();
    assert_eq!(stored_set.len(), stored.len(), "none stored twice");
    assert!(
        acked.iter().all(|id| stored_set.contains(id)),
        "every acknowledged one kept"
    );
    assert_eq!(stored.len(), acked.len(), "and nothing else");
    check.pool.close().await;
    db.pool.close().await;
}

/// The gateway binary with libfaketime preloaded: its wall clock is what `clock` (a file,
/// `+0`, `-1h`, `+10m` …) says, re-read on every call; its monotonic clock stays real.
struct JumpingGateway {
    gw: ChildGateway,
    clock: std::path::PathBuf,
    _dir: integration_tests::env::TempDir,
}

impl JumpingGateway {
    async fn start(url: &str, env: &[(&str, &str)]) -> JumpingGateway {
        let lib = std::env::var("DARTWING_LIBFAKETIME")
            .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1".into());
        assert!(
            std::path::Path::new(&lib).exists(),
            "libfaketime is missing at {lib}: run scripts/ensure-faketime.sh"
        );
        let dir = integration_tests::env::TempDir::new();
        let clock = dir.0.join("clock");
        std::fs::write(&clock, "+0").unwrap();
        let clock_file = clock.display().to_string();
        let mut all = vec![
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME_TIMESTAMP_FILE", clock_file.as_str()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("DARTWING_DELIVERY_POLL_MS", "100"),
        ];
        all.extend_from_slice(env);
        let gw = ChildGateway::spawn_with(url, free_port(), &all).await;
        JumpingGateway {
            gw,
            clock,
            _dir: dir,
        }
    }

    fn set_clock(&self, offset: &str) {
        std::fs::write(&self.clock, offset).unwrap();
    }
}

async fn queue_sms(client: &reqwest::Client, base: &str, org: &TestOrg, body: &str) {
    let r = client
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(&org.key)
        .json(&serde_json::json!({"channel": "sms", "to": "+15557654321", "body": body}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

/// The wall clock set back an hour while a retry is scheduled two seconds ahead: the retry
/// still goes out within seconds (the due times moved back with the clock), not an hour
/// later. Then the clock set forward ten minutes while a slow provider holds a send: the
/// send's lease runs out under it, and the message is still sent once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_jumps_neither_hold_work_back_nor_send_twice() {
    use integration_tests::twilio::{Scripted, TwilioStandin};
    let tdb = integration_tests::env::TestDb::new(integration_tests::env::Backend::Sqlite).await;
    let db = tdb.connect().await;
    let twilio = TwilioStandin::start().await;
    let org = create_org(&db, "acme", &twilio.base, 100.0).await;
    twilio.add_account(&org);
    let gw = JumpingGateway::start(
        &tdb.url,
        &[
            ("DARTWING_DELIVERY_RETRY_BASE_MS", "4000"),
            ("DARTWING_DELIVERY_RETRY_MAX_MS", "4000"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let sent = |body: &str| -> usize {
        twilio
            .received()
            .iter()
            .filter(|r| r.form.get("Body").map(String::as_str) == Some(body))
            .count()
    };

    // Back: a transient failure schedules the retry 2–4 s ahead; the clock goes back an hour.
    twilio.script([Scripted::Fail {
        status: 500,
        code: 20500,
    }]);
    queue_sms(&client, &gw.gw.base, &org, "retried").await;
    eventually(Duration::from_secs(10), || async {
        (sent("retried") == 1).then_some(())
    })
    .await;
    // The failure recorded: its retry is scheduled in the clock's old time.
    eventually(Duration::from_secs(10), || async {
        let error: Option<String> =
            sqlx::query_scalar("SELECT error_message FROM messages WHERE body = 'retried'")
                .fetch_one(&db.pool)
                .await
                .ok()?;
        error.map(|_| ())
    })
    .await;
    gw.set_clock("-1h");
    let jumped = Instant::now();
    eventually(Duration::from_secs(20), || async {
        (sent("retried") == 2).then_some(())
    })
    .await;
    eprintln!(
        "clock back 1 h: the retry went out {:?} after the jump",
        jumped.elapsed()
    );

    // Forward: a send held 3 s by the provider; the clock jumps past the send's lease.
    twilio.script([Scripted::AcceptAfter { ms: 3_000 }]);
    queue_sms(&client, &gw.gw.base, &org, "held").await;
    eventually(Duration::from_secs(10), || async {
        (sent("held") == 1).then_some(())
    })
    .await;
    gw.set_clock("+10m");
    // A barrier the worker confirms: a message queued after the jump is sent, which takes
    // claim rounds that would have picked the held message up again.
    queue_sms(&client, &gw.gw.base, &org, "after the jump").await;
    eventually(Duration::from_secs(20), || async {
        (sent("after the jump") == 1).then_some(())
    })
    .await;
    // The held send's answer recorded: nothing of it is in flight any more.
    eventually(Duration::from_secs(20), || async {
        let status: String = sqlx::query_scalar("SELECT status FROM messages WHERE body = 'held'")
            .fetch_one(&db.pool)
            .await
            .ok()?;
        (status == "sent").then_some(())
    })
    .await;
    assert_eq!(sent("held"), 1, "the held message was sent once");
    let metrics = integration_tests::env::get_text(&client, &gw.gw.base, "/metrics").await;
    assert!(
        metrics.contains("clock_jumps_total{direction=\"back\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("clock_jumps_total{direction=\"forward\"}"));
}
