//! `dartwing-loadgen`: drives signed inbound-message webhooks at a running gateway over
//! loopback — Twilio forms, WhatsApp deliveries (several messages each) or Telnyx events —
//! and reports throughput and latency percentiles of 2xx answers. Each request is distinct.
//!
//! ```text
//! dartwing-loadgen --base http://127.0.0.1:8080 --org acme --account-sid AC… --auth-token T \
//!     --requests 20000 --concurrency 64
//! dartwing-loadgen --provider whatsapp --auth-token APP_SECRET --per-delivery 3 …
//! dartwing-loadgen --provider telnyx --telnyx-seed 7 …   (`--print-public-key` shows its key)
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
    /// `twilio`, `whatsapp` or `telnyx`.
    #[arg(long, default_value = "twilio")]
    provider: String,
    /// Twilio account SID configured for the org.
    #[arg(long, default_value = "")]
    account_sid: String,
    /// Twilio's auth token, or WhatsApp's app secret.
    #[arg(long, default_value = "")]
    auth_token: String,
    /// WhatsApp: messages per delivery (each counts as one message; a request is a delivery).
    #[arg(long, default_value_t = 1)]
    per_delivery: usize,
    /// Telnyx: the byte the Ed25519 signing key's seed is filled with.
    #[arg(long, default_value_t = 7)]
    telnyx_seed: u8,
    /// Telnyx: print the public key (base64) for `channel add telnyx-sms` and exit.
    #[arg(long)]
    print_public_key: bool,
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
    let telnyx_key = Arc::new(
        ring::signature::Ed25519KeyPair::from_seed_unchecked(&[args.telnyx_seed; 32])
            .expect("a 32-byte seed"),
    );
    if args.print_public_key {
        use base64::Engine;
        use ring::signature::KeyPair;
        let key = telnyx_key.public_key().as_ref();
        println!("{}", base64::engine::general_purpose::STANDARD.encode(key));
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let url = match args.provider.as_str() {
        "whatsapp" => format!("{}/webhooks/whatsapp/{}", args.base, args.org),
        p => format!("{}/webhooks/{p}/{}/sms", args.base, args.org),
    };
    let next = Arc::new(AtomicUsize::new(0));
    let run = format!(
        "{:x}",
        Instant::now().elapsed().as_nanos() ^ std::process::id() as u128
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, url, next, args, run, key) = (
            client.clone(),
            url.clone(),
            next.clone(),
            args.clone(),
            run.clone(),
            telnyx_key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.requests {
                    break;
                }
                let t = Instant::now();
                let r = request(&client, &url, &args, &run, &key, i).send().await;
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

/// The signed webhook for message (or delivery) `i`.
fn request(
    client: &reqwest::Client,
    url: &str,
    args: &Args,
    run: &str,
    key: &ring::signature::Ed25519KeyPair,
    i: usize,
) -> reqwest::RequestBuilder {
    let from = format!("+1555{:07}", i % args.contacts);
    match args.provider.as_str() {
        "whatsapp" => {
            let messages: Vec<serde_json::Value> = (0..args.per_delivery)
                .map(|k| {
                    serde_json::json!({"from": &from[1..], "id": format!("wamid.{run}{i:020}{k:02}"),
                        "timestamp": "1749416383", "type": "text",
                        "text": {"body": format!("load message {i}.{k}")}})
                })
                .collect();
            let delivery = serde_json::json!({"object": "whatsapp_business_account",
                "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540352242922"},
                    "contacts": [{"profile": {"name": "Load"}, "wa_id": &from[1..]}],
                    "messages": messages}}]}]});
            let body = serde_json::to_vec(&delivery).expect("json");
            client
                .post(url)
                .header(
                    "X-Hub-Signature-256",
                    channels::whatsapp::signature::compute(&args.auth_token, &body),
                )
                .header("content-type", "application/json")
                .body(body)
        }
        "telnyx" => {
            use base64::Engine;
            let event = serde_json::json!({"data": {"event_type": "message.received",
                "id": format!("ev-{run}{i:020}"), "record_type": "event",
                "payload": {"id": format!("tx-{run}{i:020}"), "direction": "inbound", "type": "SMS",
                    "from": {"phone_number": from}, "to": [{"phone_number": "+15550001111"}],
                    "text": format!("load message {i}"), "media": []}}, "meta": {"attempt": 1}});
            let body = serde_json::to_vec(&event).expect("json");
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs()
                .to_string();
            let signed = [ts.as_bytes(), b"|", &body[..]].concat();
            let sig = base64::engine::general_purpose::STANDARD.encode(key.sign(&signed));
            client
                .post(url)
                .header("telnyx-signature-ed25519", sig)
                .header("telnyx-timestamp", ts)
                .header("content-type", "application/json")
                .body(body)
        }
        _ => {
            let params: Vec<(String, String)> = vec![
                ("MessageSid".into(), format!("SM{run}{i:020}")),
                ("AccountSid".into(), args.account_sid.clone()),
                ("From".into(), from),
                ("To".into(), "+15550001111".into()),
                ("Body".into(), format!("load message {i}")),
                ("NumMedia".into(), "0".into()),
                ("ApiVersion".into(), "2010-04-01".into()),
            ];
            let sig = channels::sms::twilio::signature::compute(&args.auth_token, url, &params);
            client
                .post(url)
                .header("X-Twilio-Signature", sig)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(&params).expect("form"))
        }
    }
}
