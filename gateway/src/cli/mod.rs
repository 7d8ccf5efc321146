//! The command line: `serve` (the default), `migrate`, `org create`, `apikey create|list|revoke`
//! ([`apikey`]),
//! `channel add twilio-sms|telnyx-sms|whatsapp|email`, `channel list` ([`channel`]), `events tail`
//! (the example Kafka consumer), `voice route|agent …` ([`voice`]), `agent create|list|revoke`
//! ([`agent`]), `webhook add|list|rotate|remove|dead-letters|replay` ([`webhook`]),
//! `receptionist set`, `kb add|list` ([`receptionist`]), `contact add|list|tag`,
//! `broadcast list|show|cancel|export` ([`broadcast`]), `speech …`.

pub mod agent;
pub mod apikey;
pub mod broadcast;
pub mod channel;
pub mod receptionist;
pub mod voice;
pub mod webhook;

use crate::config::Config;
use crate::db::{orgs, Db};
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Dartwing Gateway: one self-hostable gateway for SMS, WhatsApp, email and voice.
#[derive(Parser)]
#[command(name = "dartwing-gateway", version)]
pub struct Cli {
    /// A TOML configuration file (environment variables `DARTWING_*` override it).
    #[arg(long, global = true, env = "DARTWING_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway (HTTP API, webhooks, workers).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage organizations.
    Org {
        /// What to do.
        #[command(subcommand)]
        action: OrgAction,
    },
    /// Manage API keys.
    Apikey {
        /// What to do.
        #[command(subcommand)]
        action: apikey::KeyAction,
    },
    /// Manage provider accounts.
    Channel {
        /// What to do.
        #[command(subcommand)]
        action: channel::ChannelAction,
    },
    /// Read the event topics on Kafka.
    Events {
        /// What to do.
        #[command(subcommand)]
        action: EventsAction,
    },
    /// Voice: numbers routed to applications, agent phones.
    Voice {
        /// What to do.
        #[command(subcommand)]
        action: voice::VoiceAction,
    },
    /// Provider credentials at rest: make a key, re-seal under the first key.
    Secrets {
        /// What to do.
        #[command(subcommand)]
        action: SecretsAction,
    },
    /// Signed outbound webhooks: endpoints that receive the org's events.
    Webhook {
        /// What to do.
        #[command(subcommand)]
        action: webhook::WebhookAction,
    },
    /// The AI receptionist's per-org settings.
    Receptionist {
        /// What to do.
        #[command(subcommand)]
        action: receptionist::ReceptionistAction,
    },
    /// The knowledge base the receptionist answers from.
    Kb {
        /// What to do.
        #[command(subcommand)]
        action: receptionist::KbAction,
    },
    /// Inbox agents: create, list, revoke sessions.
    Agent {
        /// What to do.
        #[command(subcommand)]
        action: agent::AgentAction,
    },
    /// Contacts: save people, tag them, list them.
    Contact {
        /// What to do.
        #[command(subcommand)]
        action: broadcast::ContactAction,
    },
    /// Broadcast alerts: list, show, cancel, export the outcome.
    Broadcast {
        /// What to do.
        #[command(subcommand)]
        action: broadcast::BroadcastAction,
    },
    /// Speech engines: install models, transcribe a WAV, speak text.
    Speech {
        /// What to do.
        #[command(subcommand)]
        action: stt_tts::cli::SpeechCommand,
    },
}

/// Event log commands.
#[derive(Subcommand)]
pub enum EventsAction {
    /// Print events from Kafka topics, one JSON object per line:
    /// `{"topic","partition","offset","key","headers":{…},"event":{CloudEvents envelope}}`.
    /// Reads every partition without a consumer group and commits nothing.
    Tail {
        /// A topic to read (repeatable); default: every event topic
        /// (`{prefix}messages`, `{prefix}conversations`, `{prefix}contacts`, `{prefix}calls`).
        #[arg(long)]
        topic: Vec<String>,
        /// Start at the oldest retained event instead of only new ones.
        #[arg(long)]
        from_beginning: bool,
        /// Brokers, `host:port,…` (default: `DARTWING_KAFKA_BROKERS`).
        #[arg(long)]
        brokers: Option<String>,
        /// Exit after this many events.
        #[arg(long)]
        max: Option<u64>,
    },
}

/// Commands for the keys that seal provider credentials.
#[derive(Subcommand)]
pub enum SecretsAction {
    /// Print a new key (base64 of 32 random bytes) for `DARTWING_SECRET_KEYS=ID:KEY`.
    GenerateKey,
    /// Re-seal every stored provider account under the first key of `DARTWING_SECRET_KEYS`
    /// (after putting a new key first; older keys still listed open the old rows).
    Rotate,
}

/// Organization commands.
#[derive(Subcommand)]
pub enum OrgAction {
    /// Create an organization.
    Create {
        /// URL-safe name: a-z, 0-9, '-'.
        slug: String,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
    },
    /// Switch an organization's features and set its caps (what is not named is kept).
    Set {
        /// The organization's slug.
        slug: String,
        /// A feature to switch on (repeatable): voice, receptionist, broadcast, sms, whatsapp, email.
        #[arg(long)]
        enable: Vec<String>,
        /// A feature to switch off (repeatable).
        #[arg(long)]
        disable: Vec<String>,
        /// Outbound messages per UTC day, or `off`.
        #[arg(long)]
        messages_per_day: Option<String>,
        /// Receptionist turns per hour, or `off`.
        #[arg(long)]
        ai_turns_per_hour: Option<String>,
        /// Broadcasts created per UTC day, or `off`.
        #[arg(long)]
        broadcasts_per_day: Option<String>,
        /// Recipients in one broadcast, or `off` (the default, 100,000).
        #[arg(long)]
        broadcast_recipients: Option<String>,
    },
    /// Print an organization's features and caps (JSON).
    Show {
        /// The organization's slug.
        slug: String,
    },
}

/// `N` or `off`.
fn cap(name: &str, v: Option<String>, old: Option<i64>) -> anyhow::Result<Option<i64>> {
    match v.as_deref() {
        None => Ok(old),
        Some("off") => Ok(None),
        Some(n) => match n.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => bail!("--{name}: a number of 0 or more, or `off`"),
        },
    }
}

/// Parses the command line and runs it.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Speech { action } = command {
        // Speech needs no database, configuration or runtime.
        return Ok(stt_tts::cli::run(action)?);
    }
    let config = Config::load(cli.config.as_deref())?;
    crate::logging::init(&config.log);
    crate::secrets::install(&config.secret_keys)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let argv: Vec<String> = std::env::args().skip(1).collect();
    runtime.block_on(async {
        let audited = audited_action(&argv);
        let audit_config = config.clone();
        run(command, config).await?;
        if let Some((action, slug, detail)) = audited {
            let db = open(&audit_config).await?;
            let org_id = match &slug {
                Some(s) => orgs::by_slug(&db.pool, s).await?.map(|o| o.id),
                None => None,
            };
            crate::db::audit::record(
                &db.pool,
                crate::db::audit::Entry {
                    org_id: org_id.as_deref(),
                    actor: &crate::db::audit::cli_actor(),
                    action: &action,
                    target: None,
                    detail,
                    source: None,
                },
            )
            .await?;
        }
        Ok(())
    })
}

/// What a successful command changed, for the audit log: (`group.verb`, the org's slug,
/// the arguments with secret values redacted). `None` for commands that only read or serve.
fn audited_action(argv: &[String]) -> Option<(String, Option<String>, serde_json::Value)> {
    let words: Vec<&str> = argv
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (group, verb) = (*words.first()?, words.get(1).copied().unwrap_or(""));
    let read_only = matches!(group, "serve" | "migrate" | "speech" | "events")
        || matches!(
            verb,
            "list" | "show" | "export" | "dead-letters" | "generate-key" | ""
        );
    if read_only {
        return None;
    }
    let mut redacted = Vec::new();
    let mut slug = None;
    let mut hide_next = false;
    for (i, a) in argv.iter().enumerate() {
        if hide_next {
            redacted.push("<redacted>".to_string());
            hide_next = false;
            continue;
        }
        let flag = a.split('=').next().unwrap_or("");
        let secret = ["token", "secret", "password", "key"]
            .iter()
            .any(|s| flag.starts_with("--") && flag.contains(s));
        if secret && !a.contains('=') {
            hide_next = true;
        }
        redacted.push(if secret && a.contains('=') {
            format!("{flag}=<redacted>")
        } else {
            a.clone()
        });
        if a == "--org" {
            slug = argv.get(i + 1).cloned();
        }
    }
    if group == "org" {
        slug = words.get(2).map(|s| s.to_string());
    }
    Some((
        format!("{group}.{verb}"),
        slug,
        serde_json::json!({ "argv": redacted }),
    ))
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Speech { .. } => unreachable!("speech commands return before the runtime starts"),
        Command::Events {
            action:
                EventsAction::Tail {
                    topic,
                    from_beginning,
                    brokers,
                    max,
                },
        } => tail(&config, topic, from_beginning, brokers, max).await,
        Command::Voice { action } => {
            let db = open(&config).await?;
            voice::run(&db, action).await
        }
        Command::Receptionist { action } => {
            let db = open(&config).await?;
            receptionist::run(&db, action).await
        }
        Command::Kb { action } => {
            let db = open(&config).await?;
            receptionist::run_kb(&db, action).await
        }
        Command::Contact { action } => {
            let db = open(&config).await?;
            broadcast::run_contact(&db, action).await
        }
        Command::Broadcast { action } => {
            let db = open(&config).await?;
            broadcast::run_broadcast(&db, action).await
        }
        Command::Agent { action } => {
            let db = open(&config).await?;
            agent::run(&db, config.inbox.default_capacity, action).await
        }
        Command::Migrate => {
            open(&config).await?;
            println!("migrations applied to {}", redact(&config.database_url));
            Ok(())
        }
        Command::Org {
            action:
                OrgAction::Set {
                    slug,
                    enable,
                    disable,
                    messages_per_day,
                    ai_turns_per_hour,
                    broadcasts_per_day,
                    broadcast_recipients,
                },
        } => {
            use crate::db::org_settings;
            let db = open(&config).await?;
            let org = find_org(&db, &slug).await?;
            let mut s = org_settings::get(&db.pool, &org.id).await?;
            for f in &enable {
                s.features.insert(f.clone(), true);
            }
            for f in &disable {
                s.features.insert(f.clone(), false);
            }
            s.messages_per_day = cap("messages-per-day", messages_per_day, s.messages_per_day)?;
            s.ai_turns_per_hour = cap("ai-turns-per-hour", ai_turns_per_hour, s.ai_turns_per_hour)?;
            s.broadcasts_per_day = cap(
                "broadcasts-per-day",
                broadcasts_per_day,
                s.broadcasts_per_day,
            )?;
            s.broadcast_recipients = cap(
                "broadcast-recipients",
                broadcast_recipients,
                s.broadcast_recipients,
            )?;
            let problems = s.problems();
            if !problems.is_empty() {
                bail!("{}", problems.join("; "));
            }
            org_settings::put(&db.pool, &org.id, &s, crate::db::now_ms()).await?;
            println!("{}", serde_json::to_string(&s)?);
            Ok(())
        }
        Command::Org {
            action: OrgAction::Show { slug },
        } => {
            let db = open(&config).await?;
            let org = find_org(&db, &slug).await?;
            let s = crate::db::org_settings::get(&db.pool, &org.id).await?;
            println!("{}", serde_json::to_string(&s)?);
            Ok(())
        }
        Command::Org {
            action: OrgAction::Create { slug, name },
        } => {
            if !orgs::valid_slug(&slug) {
                bail!("invalid slug `{slug}`: use 1-63 characters of a-z, 0-9 and '-', not starting with '-'");
            }
            let db = open(&config).await?;
            match orgs::create(&db.pool, &slug, name.as_deref().unwrap_or(&slug)).await? {
                Some(org) => println!("created organization {} ({})", org.slug, org.id),
                None => bail!("organization `{slug}` already exists"),
            }
            Ok(())
        }
        Command::Secrets {
            action: SecretsAction::GenerateKey,
        } => {
            println!("{}", crate::secrets::generate_key());
            Ok(())
        }
        Command::Secrets {
            action: SecretsAction::Rotate,
        } => {
            let Some(ring) = crate::secrets::keyring() else {
                bail!("set DARTWING_SECRET_KEYS (or secret_keys) first");
            };
            let db = open(&config).await?;
            let n = orgs::reseal_all(&db.pool, ring).await?;
            let keys = crate::db::receptionist::reseal_responder_keys(&db.pool, ring).await?;
            println!("re-sealed {n} account(s) and {keys} responder key(s) under the first key");
            Ok(())
        }
        Command::Webhook { action } => {
            let db = open(&config).await?;
            webhook::run(&db, &config.webhooks, action).await
        }
        Command::Apikey { action } => {
            let db = open(&config).await?;
            apikey::run(&db, action).await
        }
        Command::Channel { action } => {
            let db = open(&config).await?;
            channel::run(&config, &db, action).await
        }
    }
}

async fn tail(
    config: &Config,
    topics: Vec<String>,
    from_beginning: bool,
    brokers: Option<String>,
    max: Option<u64>,
) -> anyhow::Result<()> {
    use crate::kafka::consume::{EventReader, StartAt};
    use std::io::Write;
    let brokers = brokers.unwrap_or_else(|| config.kafka.brokers.clone());
    if brokers.trim().is_empty() {
        bail!("no brokers: pass --brokers or set DARTWING_KAFKA_BROKERS");
    }
    let topics = if topics.is_empty() {
        crate::kafka::all_topics(&config.kafka.topic_prefix)
    } else {
        topics
    };
    let from = if from_beginning {
        StartAt::Beginning
    } else {
        StartAt::End
    };
    let reader = EventReader::open(&brokers, &topics, from).await?;
    eprintln!("tailing {} at {brokers}", topics.join(", "));
    let mut out = std::io::stdout().lock();
    let mut seen = 0;
    while max.is_none_or(|m| seen < m) {
        let rec = reader.next().await?;
        let headers: serde_json::Map<String, serde_json::Value> = rec
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        let line = serde_json::json!({
            "topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
            "key": rec.key, "headers": headers,
            "event": rec.envelope().unwrap_or_else(|| String::from_utf8_lossy(&rec.payload).into()),
        });
        writeln!(out, "{line}")?;
        out.flush()?;
        seen += 1;
    }
    Ok(())
}

async fn open(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&config.database_url, 2).await?;
    db.migrate().await?;
    Ok(db)
}

pub(crate) async fn find_org(db: &Db, slug: &str) -> anyhow::Result<orgs::Org> {
    orgs::by_slug(&db.pool, slug).await?.with_context(|| {
        format!("no organization `{slug}` (create it with `dartwing-gateway org create {slug}`)")
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let running = crate::server::start(&config).await?;
    println!(
        "dartwing-gateway listening on http://{} ({})",
        running.addr,
        redact(&config.database_url)
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}

/// A database URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
