//! `dartwing-broadcastbench`: broadcast alerts on one backend, in-process gateway, Twilio
//! stand-in as the local sink. Prints one JSON line per measurement:
//!
//! - `throughput`: a `--recipients` broadcast (one SMS rung, no acknowledgement, sender limit
//!   off): POST time, time until every chunk is expanded, until every rung is queued, until
//!   the stand-in has every message; rates per second.
//! - `isolation`: agent-style API sends (`POST /api/v1/messages`, one at a time at 20/s),
//!   send latency (POST → stand-in received) p50/p99 while idle and while a broadcast drains,
//!   and their ratio.
//! - `pacing`: a broadcast to a sender limited to `--pace-rate` per second; the rate the
//!   stand-in saw after the first second and its error against the limit, the same over the
//!   second half alone (saturated), and the most any interval exceeded rate × its length
//!   (the bucket allows up to its burst, one second's worth).
//! - `ack`: `YES` replies from recipients, webhook round trip (the confirmation commits before
//!   the 200) p50/p99.
//!
//! ```text
//! dartwing-broadcastbench --backend sqlite --recipients 100000
//! ```

use clap::Parser;
use integration_tests::env::{create_org, test_config, Backend, TestDb, TestGateway, TestOrg};
use integration_tests::twilio::{inbound_sms, post_signed, TwilioStandin};
use serde_json::{json, Value};
use sqlx::Row;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// Recipients of the throughput broadcast.
    #[arg(long, default_value_t = 100_000)]
    recipients: usize,
    /// Sender limit of the pacing run, messages per second.
    #[arg(long, default_value_t = 50.0)]
    pace_rate: f64,
    /// Messages of the pacing run.
    #[arg(long, default_value_t = 1_000)]
    pace_messages: usize,
    /// Agent sends per isolation phase.
    #[arg(long, default_value_t = 100)]
    agent_sends: usize,
    /// Acknowledgements measured.
    #[arg(long, default_value_t = 300)]
    acks: usize,
    /// Recipients per dispatch round (`broadcast.batch`); the gateway's default if not given.
    #[arg(long)]
    round: Option<usize>,
    /// Sends in flight (`delivery.concurrency`).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn phone(i: usize) -> String {
    format!("+1555{:07}", i)
}

struct Bench {
    _tdb: TestDb,
    db: gateway::db::Db,
    twilio: TwilioStandin,
    org: TestOrg,
    gw: TestGateway,
    client: reqwest::Client,
}

impl Bench {
    async fn start(backend: Backend, rate: f64, args: &Args) -> Bench {
        let tdb = TestDb::new(backend).await;
        let db = tdb.connect().await;
        let twilio = TwilioStandin::start().await;
        let org = create_org(&db, "acme", &twilio.base, rate).await;
        twilio.add_account(&org);
        let mut config = test_config(&tdb.url);
        config.delivery.concurrency = args.concurrency;
        if let Some(round) = args.round {
            config.broadcast.batch = round;
        }
        let gw = TestGateway::start(config).await;
        Bench {
            _tdb: tdb,
            db,
            twilio,
            org,
            gw,
            client: reqwest::Client::new(),
        }
    }

    async fn post_broadcast(&self, n: usize, offset: usize) -> String {
        let recipients: Vec<Value> = (0..n)
            .map(|i| json!({"phone": phone(offset + i)}))
            .collect();
        let r = self
            .client
            .post(format!("{}/api/v1/broadcasts", self.gw.base))
            .bearer_auth(&self.org.key)
            .json(&json!({"name": "bench", "recipients": recipients,
                "steps": [{"channel": "sms", "body": "bench alert"}], "require_ack": false}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn row(&self, id: &str) -> (i64, i64, i64, String) {
        let r = sqlx::query(
            "SELECT chunks_expanded, chunks, n_sent, state FROM broadcasts WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.db.pool)
        .await
        .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    }

    /// One agent-style send; seconds from POST to the stand-in holding it.
    async fn agent_send(&self, tag: &str) -> f64 {
        let t0 = Instant::now();
        let r = self
            .client
            .post(format!("{}/api/v1/messages", self.gw.base))
            .bearer_auth(&self.org.key)
            .json(&json!({"channel": "sms", "to": "+15559990000", "body": tag}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        loop {
            if let Some(at) = self.twilio.arrival_of(tag, 5_000) {
                return at.duration_since(t0).as_secs_f64();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn agent_phase(&self, n: usize, label: &str) -> Vec<f64> {
        let mut lat = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            lat.push(self.agent_send(&format!("{label}-{i}")).await);
            let pause = Duration::from_millis(50).saturating_sub(t.elapsed());
            tokio::time::sleep(pause).await;
        }
        lat
    }
}

/// What autovacuum would do: this machine's PostgreSQL runs with `autovacuum = off`, and a
/// 100,000-row run on stale statistics and growing dead rows measures that, not the gateway.
async fn vacuum_now_and_then(db: gateway::db::Db) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        for table in [
            "messages",
            "message_history",
            "outbox",
            "conversations",
            "contacts",
            "contact_identities",
            "broadcast_recipients",
        ] {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
                .execute(&db.pool)
                .await;
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    // `DARTWING_LOG=sqlx::query=debug` logs every statement with its time: where the
    // database time of a broadcast goes.
    if let Ok(filter) = std::env::var("DARTWING_LOG") {
        gateway::logging::init(&filter);
    }
    let backend = match args.backend.as_str() {
        "sqlite" => Backend::Sqlite,
        "postgres" => Backend::Postgres,
        other => panic!("--backend {other}: sqlite or postgres"),
    };
    let b = Bench::start(backend, 1e9, &args).await;
    let n = args.recipients;
    if backend == Backend::Postgres {
        tokio::spawn(vacuum_now_and_then(b.db.clone()));
    }

    // Isolation, idle first.
    let mut idle = b.agent_phase(args.agent_sends, "idle").await;
    let idle_sends = b.twilio.received_count();

    // Throughput (and the busy half of isolation while it drains).
    let t0 = Instant::now();
    let id = b.post_broadcast(n, 0).await;
    let post_s = t0.elapsed().as_secs_f64();
    let busy_task = b.agent_phase(args.agent_sends, "busy");
    let watch = async {
        let (mut expanded_s, mut queued_s) = (None, None);
        loop {
            let (done_chunks, chunks, sent, _) = b.row(&id).await;
            let t = t0.elapsed().as_secs_f64();
            if expanded_s.is_none() && done_chunks >= chunks {
                expanded_s = Some(t);
            }
            if queued_s.is_none() && sent as usize >= n {
                queued_s = Some(t);
            }
            // Every rung and every agent send of the busy phase arrived.
            let all = b.twilio.received_count() >= idle_sends + args.agent_sends + n;
            if let (Some(e), Some(q), true) = (expanded_s, queued_s, all) {
                return (e, q, t);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (mut busy, (expanded_s, queued_s, delivered_s)) = tokio::join!(busy_task, watch);
    println!(
        "{}",
        json!({"bench": "throughput", "backend": args.backend, "recipients": n,
            "post_s": post_s, "expanded_s": expanded_s, "queued_s": queued_s, "delivered_s": delivered_s,
            "queued_per_s": n as f64 / queued_s, "delivered_per_s": n as f64 / delivered_s})
    );
    let (i50, i99, b50, b99) = (
        pct(&mut idle, 0.5),
        pct(&mut idle, 0.99),
        pct(&mut busy, 0.5),
        pct(&mut busy, 0.99),
    );
    println!(
        "{}",
        json!({"bench": "isolation", "backend": args.backend, "sends": args.agent_sends,
            "idle_p50_ms": i50 * 1e3, "idle_p99_ms": i99 * 1e3, "busy_p50_ms": b50 * 1e3, "busy_p99_ms": b99 * 1e3,
            "p99_ratio": b99 / i99})
    );

    // Acknowledgements: replies from recipients of a broadcast that asks for them.
    let acks = args.acks.min(n);
    let recipients: Vec<Value> = (0..acks).map(|i| json!({"phone": phone(i)})).collect();
    let r = b
        .client
        .post(format!("{}/api/v1/broadcasts", b.gw.base))
        .bearer_auth(&b.org.key)
        .json(&json!({"name": "ack bench", "recipients": recipients,
            "steps": [{"channel": "sms", "body": "reply YES"}], "ack_window_secs": 3600}))
        .send()
        .await
        .unwrap();
    let ack_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    loop {
        if b.row(&ack_id).await.2 as usize >= acks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ack_lat = Vec::with_capacity(acks);
    let path = format!("/webhooks/twilio/{}/sms", b.org.slug);
    for i in 0..acks {
        let params = inbound_sms(&b.org, &format!("SMack{i:08}"), &phone(i), "YES");
        let t = Instant::now();
        let r = post_signed(&b.client, &b.gw.base, &path, &b.org.auth_token, &params).await;
        assert_eq!(r.status(), 200);
        ack_lat.push(t.elapsed().as_secs_f64());
    }
    let confirmed: i64 = sqlx::query("SELECT n_confirmed FROM broadcasts WHERE id = $1")
        .bind(&ack_id)
        .fetch_one(&b.db.pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(confirmed as usize, acks, "every acknowledgement recorded");
    println!(
        "{}",
        json!({"bench": "ack", "backend": args.backend, "acks": acks,
            "p50_ms": pct(&mut ack_lat, 0.5) * 1e3, "p99_ms": pct(&mut ack_lat, 0.99) * 1e3})
    );
    b.gw.stop().await;

    // Pacing against a limited sender.
    let p = Bench::start(backend, args.pace_rate, &args).await;
    let m = args.pace_messages;
    let pid = p.post_broadcast(m, 0).await;
    loop {
        let got = p.twilio.received_count();
        if got >= m {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = p.row(&pid).await;
    let mut at: Vec<Instant> = p.twilio.arrivals();
    at.sort();
    // The first second holds the bucket's burst; measure the steady part after it.
    let start = at[0] + Duration::from_secs(1);
    let steady: Vec<&Instant> = at.iter().filter(|t| **t >= start).collect();
    let span = steady
        .last()
        .unwrap()
        .duration_since(*steady[0])
        .as_secs_f64();
    let rate = (steady.len() - 1) as f64 / span;
    // The second half alone: the sender saturated, no burst regained after a stall.
    let tail = &at[at.len() / 2..];
    let tail_rate =
        (tail.len() - 1) as f64 / tail[tail.len() - 1].duration_since(tail[0]).as_secs_f64();
    // The bucket's promise: in any interval of length L, at most burst + rate·L sends. The
    // most by which any interval exceeds rate·L (≤ burst = one second's worth when kept).
    let mut excess = 0f64;
    for i in 0..at.len() {
        for j in i..at.len() {
            let l = at[j].duration_since(at[i]).as_secs_f64();
            excess = excess.max((j - i + 1) as f64 - args.pace_rate * l);
        }
    }
    println!(
        "{}",
        json!({"bench": "pacing", "backend": args.backend, "limit_per_s": args.pace_rate, "messages": m,
            "measured_per_s": rate, "error_pct": (rate - args.pace_rate).abs() / args.pace_rate * 100.0,
            "tail_per_s": tail_rate, "tail_error_pct": (tail_rate - args.pace_rate).abs() / args.pace_rate * 100.0,
            "max_excess_over_rate": excess, "burst": args.pace_rate.max(1.0)})
    );
    p.gw.stop().await;
}
