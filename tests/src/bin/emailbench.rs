//! `dartwing-emailbench`: email in and out against the real peers, for
//! `scripts/bench-email.sh`. Prints one JSON line per measurement.
//!
//! 1. **Parse**: the corpus (`--messages` plain-text mails of ~700 bytes from 50 senders)
//!    through our `channels::email::parse::parse` and through `mail_parser::MessageParser`
//!    alone (the text body), three rounds each; the median round counts.
//! 2. **Ingest**: the corpus is appended to a fresh Dovecot INBOX, then an in-process gateway
//!    starts with the account; the clock runs from its start to the last message committed
//!    (each is also flagged `\Seen`, checked after).
//! 3. **Send**: `--sends` emails through `POST /api/v1/messages` (16 requests in flight) to an
//!    aiosmtpd receiver, from the first request to the last message `sent`; beside it lettre
//!    alone, its pooled transport (8 connections, as ours), sending messages of the same
//!    shape with 16 in flight to a fresh receiver of the same kind.

use clap::Parser;
use futures_util::StreamExt;
use integration_tests::env::{count, create_org, test_config, Backend, TestDb, TestGateway};
use integration_tests::mail::{self, mail, Dovecot, SmtpReceiver, ADDRESS};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Mails in the IMAP corpus.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Emails sent in the SMTP runs.
    #[arg(long, default_value_t = 2_000)]
    sends: usize,
    /// `sqlite` or `postgres` (`DARTWING_TEST_PG_URL`).
    #[arg(long, default_value = "sqlite")]
    backend: String,
}

fn corpus(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let body = format!(
                "message {i}\r\n\r\n{}",
                "Some text of a usual length. ".repeat(20)
            );
            mail(
                &format!("c{}@example.com", i % 50),
                &format!("bulk-{i}@example.com"),
                &format!("Subject {}", i % 50),
                &body,
                None,
                &[],
            )
        })
        .collect()
}

/// Median of three timed rounds of `f` over `corpus`, µs per message.
fn per_message(corpus: &[Vec<u8>], f: impl Fn(&[u8])) -> f64 {
    let mut rounds: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            for m in corpus {
                f(m);
            }
            t.elapsed().as_secs_f64() * 1e6 / corpus.len() as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[1]
}

async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let backend = match args.backend.as_str() {
        "postgres" => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let n = args.messages;
    let mails = corpus(n);

    let ours = per_message(&mails, |m| {
        std::hint::black_box(channels::email::parse::parse(m, ADDRESS, 1 << 20));
    });
    let alone = per_message(&mails, |m| {
        let parsed = mail_parser::MessageParser::default().parse(m);
        std::hint::black_box(parsed.and_then(|p| p.body_text(0).map(|t| t.into_owned())));
    });
    println!(
        "{}",
        json!({"measure": "parse", "messages": n, "ours_us": ours, "mail_parser_us": alone,
               "ratio": ours / alone})
    );

    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 10.0).await;
    let imap = Dovecot::start();
    let smtp = SmtpReceiver::start();
    let appended = Instant::now();
    for chunk in mails.chunks(500) {
        imap.append(chunk).await;
    }
    eprintln!("appended {n} in {:.1?}", appended.elapsed());
    mail::add_account(&db, &org.id, &imap, &smtp).await;
    let mut config = test_config(&tdb.url);
    config.email.scan_ms = 50;
    config.api.rate_per_key = 0.0;
    config.api.rate_per_org = 0.0;
    let started = Instant::now();
    let gw = TestGateway::start(config).await;
    wait_until(
        "every mail committed",
        Duration::from_secs(1800),
        async || count(&db, "messages", &org.id).await as usize >= n,
    )
    .await;
    let ingest = started.elapsed();
    wait_until(
        "every mail flagged \\Seen",
        Duration::from_secs(120),
        async || imap.unseen().await.is_empty(),
    )
    .await;
    assert_eq!(count(&db, "messages", &org.id).await as usize, n);
    println!(
        "{}",
        json!({"measure": "imap_ingest", "backend": args.backend, "messages": n,
               "seconds": ingest.as_secs_f64(), "per_second": n as f64 / ingest.as_secs_f64()})
    );

    let sends = args.sends;
    let client = reqwest::Client::new();
    let sent_at = Instant::now();
    futures_util::stream::iter(0..sends)
        .map(|i| {
            let (client, base, key) = (client.clone(), gw.base.clone(), org.key.clone());
            async move {
                let body = json!({"channel": "email", "to": format!("r{}@example.com", i % 50),
                    "subject": format!("Notice {i}"), "body": "Your order ships today."});
                let r = client
                    .post(format!("{base}/api/v1/messages"))
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .expect("send");
                assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    wait_until("every email sent", Duration::from_secs(1800), async || {
        smtp.count() >= sends
    })
    .await;
    let ours_send = sent_at.elapsed();
    gw.stop().await;

    let receiver = SmtpReceiver::start();
    let transport =
        lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(receiver.port)
            .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(8))
            .build();
    let lettre_at = Instant::now();
    futures_util::stream::iter(0..sends)
        .map(|i| {
            let transport = transport.clone();
            async move {
                use lettre::AsyncTransport;
                let email = lettre::Message::builder()
                    .from(ADDRESS.parse().unwrap())
                    .to(format!("r{}@example.com", i % 50).parse().unwrap())
                    .subject(format!("Notice {i}"))
                    .message_id(Some(format!("<lettre-{i}@acme.test>")))
                    .header(lettre::message::header::ContentType::TEXT_PLAIN)
                    .body("Your order ships today.".to_string())
                    .unwrap();
                transport.send(email).await.expect("lettre send");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let lettre_send = lettre_at.elapsed();
    assert_eq!(receiver.count(), sends);
    println!(
        "{}",
        json!({"measure": "smtp_send", "backend": args.backend, "emails": sends,
               "ours_per_second": sends as f64 / ours_send.as_secs_f64(),
               "lettre_per_second": sends as f64 / lettre_send.as_secs_f64(),
               "time_ratio": ours_send.as_secs_f64() / lettre_send.as_secs_f64()})
    );
}
