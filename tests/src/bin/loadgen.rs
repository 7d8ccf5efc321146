//! `dartwing-loadgen`: drives signed Twilio incoming-SMS webhooks at a running gateway over
//! loopback and reports throughput and latency percentiles of 2xx answers.
//!
//! ```text
//! dartwing-loadgen --base http://127.0.0.1:8080 --org acme --account-sid AC… --auth-token T \
//!     --requests 20000 --concurrency 64
//! ```

use clap::Parser;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Gateway base URL (also the public URL signatures are computed over).
    #[arg(long)]
    base: String,
    /// Org slug.
    #[arg(long)]
    org: String,
    /// Twilio account SID configured for the org.
    #[arg(long)]
    account_sid: String,
    /// Its auth token.
    #[arg(long)]
    auth_token: String,
    /// Webhooks to send.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Distinct senders (contacts).
    #[arg(long, default_value_t = 500)]
    contacts: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let url = format!("{}/webhooks/twilio/{}/sms", args.base, args.org);
    let next = Arc::new(AtomicUsize::new(0));
    let run = format!(
        "{:x}",
        Instant::now().elapsed().as_nanos() ^ std::process::id() as u128
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, url, next, args, run) = (
            client.clone(),
            url.clone(),
            next.clone(),
            args.clone(),
            run.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.requests {
                    break;
                }
                let params: Vec<(String, String)> = vec![
                    ("MessageSid".into(), format!("SM{run}{i:020}")),
                    ("AccountSid".into(), args.account_sid.clone()),
                    ("From".into(), format!("+1555{:07}", i % args.contacts)),
                    ("To".into(), "+15550001111".into()),
                    ("Body".into(), format!("load message {i}")),
                    ("NumMedia".into(), "0".into()),
                    ("ApiVersion".into(), "2010-04-01".into()),
                ];
                let sig =
                    channels::sms::twilio::signature::compute(&args.auth_token, &url, &params);
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("X-Twilio-Signature", sig)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(serde_urlencoded::to_string(&params).expect("form"))
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat: Vec<Duration> = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{{\"ok\":{},\"errors\":{},\"seconds\":{:.3},\"per_second\":{:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}}}",
        lat.len(),
        errors,
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    Ok(())
}
