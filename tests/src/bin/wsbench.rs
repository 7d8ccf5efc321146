//! `dartwing-wsbench`: agent-socket fan-out. Opens `--sockets` WebSockets to an in-process
//! gateway (SQLite in a temp folder), all logged in as agents of one org and caught up, then
//! sends `--events` signed inbound-SMS webhooks at `--rate` per second; every socket measures
//! webhook→frame latency (the body carries the send time). Then the same fan-out through a
//! bare tokio-tungstenite broadcast server (frames of the same size), in the same process.
//! Prints one JSON line per run plus the ratio of the bare p95 to the gateway p95.
//!
//! ```text
//! ulimit -n 65536; dartwing-wsbench --sockets 20000 --events 50 --rate 10
//! ```
//!
//! The clients live in the same process as the servers, so memory is reported per socket for
//! both ends together (RSS growth while the idle sockets were opened).

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use integration_tests::agent::{create_agent, login};
use integration_tests::env::{create_org, test_config, Backend, TestDb, TestGateway};
use integration_tests::twilio::{inbound_sms, post_signed};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    /// Concurrent agent sockets.
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Events fanned out to every socket.
    #[arg(long, default_value_t = 20)]
    events: usize,
    /// Events per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

type Lat = Arc<Mutex<Vec<u64>>>;

/// Opens one client; `hello` (if any) is sent first; it then records the latency of every
/// frame whose marker body it finds, until `want` are seen.
async fn client(
    url: String,
    hello: Option<String>,
    want: usize,
    lat: Lat,
    ready: Arc<tokio::sync::Barrier>,
) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    if let Some(h) = hello {
        ws.send(Message::Text(h.into())).await.expect("hello");
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                if t.contains("\"caught_up\"") {
                    break;
                }
            }
        }
    }
    ready.wait().await;
    let mut seen = 0;
    let mut mine = Vec::with_capacity(want);
    while seen < want {
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            continue;
        };
        if let Some(i) = t.find("bench:") {
            let ts: String = t[i + 6..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(ts) = ts.parse::<u64>() {
                mine.push(now_us().saturating_sub(ts));
                seen += 1;
            }
        }
    }
    lat.lock().unwrap().extend(mine);
}

fn report(
    name: &str,
    args: &Args,
    mut lat: Vec<u64>,
    elapsed: Duration,
    per_socket_kib: f64,
) -> f64 {
    lat.sort_unstable();
    let p = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let line = json!({
        "server": name, "sockets": args.sockets, "events": args.events, "rate": args.rate,
        "delivered": lat.len(), "expected": args.sockets * args.events,
        "p50_ms": p(0.50), "p95_ms": p(0.95), "p99_ms": p(0.99), "max_ms": p(1.0),
        "seconds": elapsed.as_secs_f64(), "rss_kib_per_idle_socket_both_ends": per_socket_kib,
    });
    println!("{line}");
    p(0.95)
}

async fn open_all(
    args: &Args,
    url: &str,
    hello: Option<String>,
    lat: &Lat,
) -> (
    Vec<tokio::task::JoinHandle<()>>,
    Arc<tokio::sync::Barrier>,
    f64,
) {
    let before = rss_kib();
    let ready = Arc::new(tokio::sync::Barrier::new(args.sockets + 1));
    let mut tasks = Vec::with_capacity(args.sockets);
    for i in 0..args.sockets {
        tasks.push(tokio::spawn(client(
            url.to_string(),
            hello.clone(),
            args.events,
            lat.clone(),
            ready.clone(),
        )));
        if i % 200 == 199 {
            tokio::task::yield_now().await;
        }
    }
    ready.wait().await;
    let per = (rss_kib().saturating_sub(before)) as f64 / args.sockets as f64;
    (tasks, ready, per)
}

async fn gateway_run(args: &Args) -> anyhow::Result<f64> {
    let tdb = TestDb::new(Backend::Sqlite).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "bench", "http://127.0.0.1:9", 1000.0).await;
    create_agent(&db, &org.id, "bench@bench.test", "benchmark-pass", "agent").await;
    sqlx::query("UPDATE agents SET capacity = 0")
        .execute(&db.pool)
        .await?;
    let mut cfg = test_config(&tdb.url);
    cfg.inbox.ws_queue_frames = 1024;
    // Every socket comes from this one address.
    cfg.http.max_connections_per_source = cfg.http.max_connections;
    let gw = TestGateway::start(cfg).await;
    let client = reqwest::Client::new();
    let token = login(&client, &gw.base, "bench@bench.test", "benchmark-pass").await;
    let head: Value = client
        .get(format!("{}/api/v1/inbox/conversations", gw.base))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let hello = json!({"type": "hello", "token": token, "last_seq": head["head_seq"]}).to_string();
    let lat: Lat = Arc::default();
    let url = format!("{}/api/v1/ws", gw.base.replacen("http://", "ws://", 1));
    let (tasks, _ready, per) = open_all(args, &url, Some(hello), &lat).await;
    let started = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / args.rate);
    let path = format!("/webhooks/twilio/{}/sms", org.slug);
    for i in 0..args.events {
        let body = format!("bench:{}", now_us());
        let params = inbound_sms(&org, &format!("SM{i:032}"), "+15550009999", &body);
        let r = post_signed(&client, &gw.base, &path, &org.auth_token, &params).await;
        anyhow::ensure!(r.status().is_success(), "webhook {}", r.status());
        tokio::time::sleep_until((started + gap * (i as u32 + 1)).into()).await;
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t).await??;
    }
    let lat = std::mem::take(&mut *lat.lock().unwrap());
    let p95 = report("dartwing-gateway", args, lat, started.elapsed(), per);
    gw.stop().await;
    Ok(p95)
}

async fn bare_run(args: &Args) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/", listener.local_addr()?);
    let (tx, _) = broadcast::channel::<Arc<String>>(1024);
    let tx2 = tx.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let mut rx = tx2.subscribe();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                tokio::spawn(async move { while stream.next().await.is_some() {} });
                while let Ok(frame) = rx.recv().await {
                    if sink
                        .send(Message::Text(frame.as_str().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let lat: Lat = Arc::default();
    let (tasks, _ready, per) = open_all(args, &url, None, &lat).await;
    // A frame of the size the gateway sends for an inbound SMS.
    let pad = "x".repeat(900);
    let started = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / args.rate);
    for i in 0..args.events {
        let frame = json!({"type": "event", "seq": i + 1, "event": {"data": {"body": format!("bench:{}", now_us()), "pad": pad}}});
        let _ = tx.send(Arc::new(frame.to_string()));
        tokio::time::sleep_until((started + gap * (i as u32 + 1)).into()).await;
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t).await??;
    }
    let lat = std::mem::take(&mut *lat.lock().unwrap());
    Ok(report(
        "bare tokio-tungstenite broadcast",
        args,
        lat,
        started.elapsed(),
        per,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    integration_tests::env::init();
    let gw = gateway_run(&args).await?;
    let bare = bare_run(&args).await?;
    println!(
        "{}",
        json!({"ratio_bare_p95_over_gateway_p95": if gw > 0.0 { bare / gw } else { 0.0 }})
    );
    Ok(())
}
