//! `dartwing-receptionistbench`: the receptionist's reply latency measured on the RTP
//! packets. An in-process gateway (SQLite in a temp folder, SIP on loopback) answers
//! `--calls` calls to a receptionist number, `--concurrency` at a time; each caller is a
//! plain SIP client that streams 20 ms PCMU packets in real time: it waits for the greeting
//! to finish, then says `--turns` questions (espeak-ng through 8 kHz µ-law, made once),
//! each after the previous reply has finished. Per turn it measures the time from the last
//! packet of the caller's speech to the first packet of the reply that carries sound.
//!
//! Prints one JSON line: turns measured and missed, p50/p95/max of that latency, the mean of
//! each stage the gateway records (`receptionist_stt_wait_seconds`: final transcript after
//! the end of speech was decided; `receptionist_tts_seconds`: synthesis per clip;
//! `receptionist_reply_seconds`: end decided → reply queued), the VAD hangover (the rest of
//! the wire figure), and the RSS growth per concurrent call (callers in the same process,
//! tiny).
//!
//! ```text
//! dartwing-receptionistbench --calls 10 --turns 5 --concurrency 1
//! ```

use audio::g711::G711Law;
use clap::Parser;
use integration_tests::env::{create_org, test_config, Backend, TestDb, TestGateway};
use integration_tests::sip::{call_with_rtp, hang_up};
use integration_tests::speech::phone_speech;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use voice::media::rtp::RtpPacket;

#[derive(Parser)]
struct Args {
    /// Calls placed in all.
    #[arg(long, default_value_t = 10)]
    calls: usize,
    /// Caller turns per call.
    #[arg(long, default_value_t = 5)]
    turns: usize,
    /// Calls at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Whisper without the org's vocabulary prompt (`sip.whisper_prompt = false`).
    #[arg(long)]
    no_prompt: bool,
    /// Every turn waits out the whole hangover (`sip.early_end = false`).
    #[arg(long)]
    no_early_end: bool,
}

const NUMBER: &str = "15550109999";
/// A received frame is sound when a sample exceeds this (speech; the line's silence is 0).
const LOUD: u16 = 1_000;
/// Quiet this long after sound: the receptionist finished speaking.
const DONE_QUIET: Duration = Duration::from_millis(900);
/// A reply not heard within this is counted as missed.
const REPLY_WAIT: Duration = Duration::from_secs(15);

const QUESTIONS: [&str; 5] = [
    "Do you have parking?",
    "What are your opening hours?",
    "Do you accept insurance?",
    "Where are you located?",
    "Do you have parking near the building?",
];

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

/// A histogram's `_sum` and `_count` and a counter's value, from a Prometheus page (0 for
/// what is absent).
fn sum_count(metrics: &str, name: &str) -> (f64, f64, f64) {
    let value = |suffix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{suffix} ")))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0.0)
    };
    (value("_sum"), value("_count"), value(""))
}

/// The latency's percentile (nearest rank), ms.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

/// One caller's RTP side: sends `frames` in real time, then silence; hears the gateway.
struct Line {
    rtp: UdpSocket,
    peer: SocketAddr,
    seq: u16,
    ts: u32,
    next: tokio::time::Instant,
    /// When sound was last heard, and whether any was since `mark`.
    last_sound: Option<Instant>,
    first_sound_after_mark: Option<Instant>,
}

impl Line {
    /// Sends one 20 ms frame at its time and takes in whatever arrived meanwhile.
    async fn tick(&mut self, frame: &[i16]) {
        tokio::time::sleep_until(self.next).await;
        self.next += Duration::from_millis(20);
        let payload = G711Law::Ulaw.encode(frame);
        let mut out = Vec::with_capacity(172);
        RtpPacket {
            marker: false,
            payload_type: 0,
            sequence: self.seq,
            timestamp: self.ts,
            ssrc: 0x5151_5151,
            payload: &payload,
        }
        .write(&mut out);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
        let _ = self.rtp.send_to(&out, self.peer).await;
        let mut buf = [0u8; 1500];
        while let Ok((n, _)) = self.rtp.try_recv_from(&mut buf) {
            let Ok(p) = RtpPacket::parse(&buf[..n]) else {
                continue;
            };
            if p.payload_type != 0 {
                continue;
            }
            let loud = G711Law::Ulaw
                .decode(p.payload)
                .iter()
                .any(|s| s.unsigned_abs() > LOUD);
            if loud {
                let now = Instant::now();
                self.last_sound = Some(now);
                self.first_sound_after_mark.get_or_insert(now);
            }
        }
    }

    /// Silence until the receptionist has spoken and gone quiet (or `wait` passed); when
    /// its reply started, if it did.
    async fn listen(&mut self, wait: Duration) -> Option<Instant> {
        let silent = vec![0i16; 160];
        let until = Instant::now() + wait;
        loop {
            self.tick(&silent).await;
            let now = Instant::now();
            if let (Some(start), Some(last)) = (self.first_sound_after_mark, self.last_sound) {
                if now.duration_since(last) >= DONE_QUIET {
                    return Some(start);
                }
            }
            if now >= until {
                return self.first_sound_after_mark;
            }
        }
    }
}

/// One call: greeting, `turns` questions; the latency of each reply (`None`: missed), ms.
async fn one_call(
    sip: SocketAddr,
    n: usize,
    questions: Arc<Vec<Vec<i16>>>,
    turns: usize,
) -> Vec<Option<f64>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let call_id = format!("bench-{n}-{}", uuid::Uuid::new_v4().simple());
    let rtp_port = rtp.local_addr().unwrap().port();
    let (to, ok) = call_with_rtp(&sock, sip, NUMBER, &call_id, rtp_port).await;
    let port: u16 = ok
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("the answer's media port");
    let mut line = Line {
        rtp,
        peer: SocketAddr::from(([127, 0, 0, 1], port)),
        seq: 1,
        ts: 0,
        next: tokio::time::Instant::now(),
        last_sound: None,
        first_sound_after_mark: None,
    };
    // The greeting.
    line.listen(Duration::from_secs(20)).await;
    let mut out = Vec::new();
    for t in 0..turns {
        let speech = &questions[t % questions.len()];
        for frame in speech.chunks(160) {
            let mut f = frame.to_vec();
            f.resize(160, 0);
            line.tick(&f).await;
        }
        // The end of speech is the last frame sent; what came before it is not the reply.
        let ended = Instant::now();
        line.first_sound_after_mark = None;
        let heard = line.listen(REPLY_WAIT).await;
        out.push(heard.map(|at| at.duration_since(ended).as_secs_f64() * 1_000.0));
    }
    hang_up(&sock, sip, NUMBER, &call_id, &to).await;
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    integration_tests::env::init();
    let tmp = integration_tests::env::TempDir::new();
    let dir = tmp.0.clone();
    let questions: Vec<Vec<i16>> = QUESTIONS
        .iter()
        .map(|q| {
            let mut s = phone_speech(&dir, "en-us", q);
            // Trim the clip's trailing quiet so "end of speech" is the last loud frame.
            let end = s
                .iter()
                .rposition(|x| x.unsigned_abs() > LOUD)
                .map_or(0, |i| i + 1);
            s.truncate(end.div_ceil(160) * 160);
            s
        })
        .collect();
    let questions = Arc::new(questions);

    let tdb = TestDb::new(Backend::Sqlite).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "bench", "http://127.0.0.1:9", 10.0).await;
    {
        use gateway::db::receptionist as rdb;
        let settings = rdb::Settings {
            greeting: Some("Thank you for calling Harbour Dental. How can I help you?".into()),
            hours: Some("Mon-Sun 00:00-24:00".into()),
            timezone: Some("UTC".into()),
            ..rdb::Settings::default()
        };
        rdb::set_settings(&db.pool, &org.id, &settings, 0).await?;
        for (q, a) in [
            (
                "Do you have parking?",
                "Yes, free parking is behind the building.",
            ),
            (
                "Do you accept insurance?",
                "We accept most dental insurance plans.",
            ),
            (
                "Where are you located?",
                "We are at 12 Harbour Street, next to the library.",
            ),
        ] {
            rdb::add_entry(&db.pool, &org.id, q, a, 0).await?;
        }
        let route = gateway::db::calls::Route {
            number: NUMBER.into(),
            org_id: org.id.clone(),
            app: "receptionist".into(),
            agent: None,
            allow_refer: false,
        };
        gateway::db::calls::add_route(&db.pool, &route, 0).await?;
    }
    let mut config = test_config(&tdb.url);
    config.sip.reprompt_secs = 30;
    config.sip.max_calls_per_source = 0;
    config.sip.whisper_prompt = !args.no_prompt;
    config.sip.early_end = !args.no_early_end;
    let gw = TestGateway::start(config).await;
    let sip = gw.running.sip.as_ref().expect("SIP is on").local_addr();
    let sip = SocketAddr::from(([127, 0, 0, 1], sip.port()));

    // One call first, unmeasured: the model loads on the first receptionist call.
    one_call(sip, 0, Arc::clone(&questions), 1).await;
    let metrics = || async {
        reqwest::get(format!("{}/metrics", gw.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = metrics().await;
    let rss_before = rss_kib();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let sampler = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut next = 1;
    while next <= args.calls {
        let batch: Vec<_> = (next..(next + args.concurrency).min(args.calls + 1))
            .map(|n| tokio::spawn(one_call(sip, n, Arc::clone(&questions), args.turns)))
            .collect();
        next += batch.len();
        for b in batch {
            latencies.extend(b.await?);
        }
    }
    sampler.abort();
    let after = metrics().await;
    let missed = latencies.iter().filter(|l| l.is_none()).count();
    let mut ms: Vec<f64> = latencies.into_iter().flatten().collect();
    ms.sort_by(f64::total_cmp);
    let mean = |name: &str| {
        let (s0, c0, _) = sum_count(&before, name);
        let (s1, c1, _) = sum_count(&after, name);
        if c1 > c0 {
            (s1 - s0) / (c1 - c0) * 1_000.0
        } else {
            f64::NAN
        }
    };
    let rss_peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let reply_queued = mean("receptionist_reply_seconds");
    let wire_mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    println!(
        "{}",
        json!({
            "calls": args.calls,
            "concurrency": args.concurrency,
            "whisper_prompt": !args.no_prompt,
            "early_end": !args.no_early_end,
            "turns_ended_early": sum_count(&after, "receptionist_early_turn_ends_total").2
                - sum_count(&before, "receptionist_early_turn_ends_total").2,
            "turns": ms.len(),
            "missed": missed,
            "wire_ms": {"p50": pct(&ms, 50.0), "p95": pct(&ms, 95.0), "max": ms.last(), "mean": wire_mean},
            "stage_mean_ms": {
                "stt_wait_after_end_decided": mean("receptionist_stt_wait_seconds"),
                "tts_per_clip": mean("receptionist_tts_seconds"),
                "end_decided_to_reply_queued": reply_queued,
                "vad_hangover_and_rest": wire_mean - reply_queued,
            },
            "rss_kib_per_concurrent_call": (rss_peak.saturating_sub(rss_before)) / args.concurrency as u64,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    gw.stop().await;
    Ok(())
}
