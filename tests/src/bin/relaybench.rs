//! `dartwing-relaybench`: the outbox relay against a bare rdkafka producer on one broker, for
//! `scripts/bench-relay.sh`. Prints one JSON line per measurement.
//!
//! 1. **Throughput**: `--events` inbound messages are committed first (relay not running),
//!    then the relay (numbering, publishing through [`KafkaSink`], marking) drains them; the
//!    clock runs from the relay's start to backlog 0. Beside it, a bare producer with the
//!    same settings ([`producer_config`]) sends records of the same keys, headers and values
//!    (the relayed events themselves) and awaits every acknowledgement.
//! 2. **Latency at a rate**: messages are committed at `--rate` per second for `--seconds`
//!    while the relay runs; for each event, commit time (the outbox row's time) to the
//!    broker's acknowledgement, measured by a sink wrapped around the Kafka sink (events
//!    committed in the first second, while the new producer connects, are not counted).

use clap::Parser;
use gateway::commit::{CommitSettings, Committer, WriteOp};
use gateway::config::KafkaConfig;
use gateway::db::{now_ms, Db};
use gateway::kafka::sink::{headers, producer_config, KafkaSink};
use gateway::kafka::topic_for;
use gateway::relay::{self, EventSink, PublishedEvent, RelaySettings, RelayStatus, SinkFuture};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Parser)]
struct Args {
    /// Broker address (`127.0.0.1:9092`).
    #[arg(long)]
    brokers: String,
    /// Database URL for the outbox (a fresh one).
    #[arg(long)]
    database_url: String,
    /// Events for the throughput runs.
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Commit rate for the latency run, per second.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Length of the latency run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Relay batch size.
    #[arg(long, default_value_t = 1_000)]
    batch: i64,
}

/// Wraps the Kafka sink: when a batch is acknowledged, records commit→ack per event.
struct Timed {
    inner: KafkaSink,
    /// (commit time, commit→ack) per event, ms.
    latencies_ms: Mutex<Vec<(i64, i64)>>,
    events: Mutex<Vec<Arc<PublishedEvent>>>,
    keep: bool,
}

impl EventSink for Timed {
    fn name(&self) -> &'static str {
        "kafka"
    }
    fn publish<'a>(&'a self, events: &'a [Arc<PublishedEvent>]) -> SinkFuture<'a> {
        Box::pin(async move {
            self.inner.publish(events).await?;
            let now = now_ms();
            let mut l = self.latencies_ms.lock().unwrap();
            l.extend(events.iter().map(|e| (e.stored.time, now - e.stored.time)));
            if self.keep {
                self.events.lock().unwrap().extend(events.iter().cloned());
            }
            Ok(())
        })
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn inbound(org_id: &str, i: usize) -> WriteOp {
    WriteOp::Inbound {
        org_id: org_id.to_string(),
        provider: "twilio",
        msg: channels::InboundMessage::text(
            state_machines::Channel::Sms,
            format!("SM{i:032}"),
            format!("+1555{:07}", i % 100),
            "+15550001111",
            "Hello, I would like to move my appointment to Thursday at 3 pm.",
        ),
    }
}

/// Commits `n` inbound messages as fast as the committer takes them.
async fn fill(committer: &Committer, org_id: &str, from: usize, n: usize) {
    let mut tasks = Vec::new();
    for w in 0..64 {
        let (c, org) = (committer.clone(), org_id.to_string());
        tasks.push(tokio::spawn(async move {
            let mut i = from + w;
            while i < from + n {
                c.submit_wait(inbound(&org, i)).await.expect("commit");
                i += 64;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn backlog(db: &Db) -> i64 {
    gateway::db::outbox::backlog(&db.pool)
        .await
        .expect("backlog")
}

fn start_relay(
    db: &Db,
    committer: &Committer,
    sink: Arc<Timed>,
    batch: i64,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, stop_rx) = watch::channel(false);
    let handle = tokio::spawn(relay::run(
        db.clone(),
        committer.clone(),
        vec![sink as Arc<dyn EventSink>],
        Arc::new(RelayStatus::default()),
        RelaySettings {
            batch,
            poll_ms: 500,
        },
        stop_rx,
    ));
    (stop, handle)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kafka = KafkaConfig {
        brokers: args.brokers.clone(),
        ..KafkaConfig::default()
    };
    let db = Db::connect(&args.database_url, 8).await?;
    db.migrate().await?;
    let committer = Committer::start(
        db.clone(),
        CommitSettings {
            queue_capacity: 100_000,
            max_batch: 500,
            writers: 3,
        },
    );
    let org = gateway::db::orgs::create(&db.pool, "bench", "bench")
        .await?
        .expect("new org");

    // 1. Throughput: the relay drains a committed backlog.
    fill(&committer, &org.id, 0, args.events).await;
    let events_total = backlog(&db).await;
    let sink = Arc::new(Timed {
        inner: KafkaSink::new(&kafka)?,
        latencies_ms: Mutex::default(),
        events: Mutex::default(),
        keep: true,
    });
    let started = Instant::now();
    let (stop, relay) = start_relay(&db, &committer, sink.clone(), args.batch);
    while backlog(&db).await > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let relay_secs = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    relay.await?;
    let relayed: Vec<Arc<PublishedEvent>> = std::mem::take(&mut *sink.events.lock().unwrap());
    let bytes: usize = relayed
        .iter()
        .map(|e| e.stored.data.to_string().len())
        .sum();
    println!(
        "{}",
        json!({"run": "relay_throughput", "events": events_total,
               "seconds": relay_secs, "events_per_s": events_total as f64 / relay_secs,
               "mean_value_bytes": bytes / relayed.len().max(1), "batch": args.batch})
    );

    // The bare producer: the same records (topic, key, headers, value), all awaited.
    let producer: FutureProducer = producer_config(&kafka).create()?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(relayed.len());
    for ev in &relayed {
        let topic = topic_for("dartwing.", &ev.stored.event_type);
        let value = ev.stored.data.to_string();
        loop {
            let record = FutureRecord::to(&topic)
                .key(&ev.stored.partition_key)
                .payload(&value)
                .headers(headers(&ev.envelope));
            match producer.send_result(record) {
                Ok(d) => {
                    pending.push(d);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
    for d in pending {
        d.await?.map_err(|(e, _)| e)?;
    }
    let bare_secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"run": "bare_producer", "events": relayed.len(), "seconds": bare_secs,
               "events_per_s": relayed.len() as f64 / bare_secs,
               "relay_to_bare_ratio": bare_secs / relay_secs})
    );

    // 2. Latency: commits at a steady rate while the relay runs.
    let sink = Arc::new(Timed {
        inner: KafkaSink::new(&kafka)?,
        latencies_ms: Mutex::default(),
        events: Mutex::default(),
        keep: false,
    });
    let (stop, relay) = start_relay(&db, &committer, sink.clone(), args.batch);
    let total = (args.rate * args.seconds) as usize;
    let tick = Duration::from_millis(10);
    let per_tick = (args.rate as usize / 100).max(1);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let base = args.events;
    let started = Instant::now();
    // The first second warms the new producer up (connection, producer id): not counted.
    let measure_from = now_ms() + 1_000;
    let mut sent = 0;
    let mut inflight = Vec::new();
    while sent < total {
        interval.tick().await;
        for i in sent..(sent + per_tick).min(total) {
            let (c, org) = (committer.clone(), org.id.clone());
            inflight.push(tokio::spawn(async move {
                c.submit_wait(inbound(&org, base + i))
                    .await
                    .expect("commit");
            }));
        }
        sent = (sent + per_tick).min(total);
    }
    for t in inflight {
        t.await?;
    }
    let offered = started.elapsed().as_secs_f64();
    while backlog(&db).await > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(true);
    relay.await?;
    let all = std::mem::take(&mut *sink.latencies_ms.lock().unwrap());
    let mut l: Vec<i64> = all
        .iter()
        .filter(|(at, _)| *at >= measure_from)
        .map(|(_, ms)| *ms)
        .collect();
    l.sort_unstable();
    println!(
        "{}",
        json!({"run": "relay_latency", "target_rate": args.rate, "warm_up_events_not_counted": all.len() - l.len(),
               "achieved_commit_rate": total as f64 / offered, "events": l.len(),
               "commit_to_ack_ms": {"p50": percentile(&l, 0.5), "p95": percentile(&l, 0.95),
                                    "p99": percentile(&l, 0.99), "max": l.last().copied().unwrap_or(0)}})
    );
    Ok(())
}
