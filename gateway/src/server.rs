//! Starting and stopping the gateway: storage, the committer, the relay (with its Kafka sink
//! and this node's reader of the event topics, when Kafka is configured), the send worker, the
//! email mailbox readers and the HTTP server, all listening to one shutdown signal.
//!
//! Shutdown order: stop accepting HTTP (in-flight requests finish and get their commit), then
//! stop the relay and the worker. Anything not yet relayed or sent stays in the database.

use crate::api::{self, AppState};
use crate::commit::{CommitSettings, Committer};
use crate::config::Config;
use crate::db::{Db, StoreError};
use crate::kafka::{self, sink::KafkaSink, KafkaClientError};
use crate::plugins::Plugins;
use crate::relay::{self, EventSink, Hub, RelaySettings, RelayStatus};
use crate::sender::{self, SendSettings};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The Kafka producer could not be made (bad settings).
    #[error(transparent)]
    Kafka(#[from] KafkaClientError),
    /// SIP could not start.
    #[error(transparent)]
    Voice(#[from] crate::voice::VoiceStartError),
    /// Two plugins claim one webhook.
    #[error("plugins: {0}")]
    Plugins(String),
}

/// A running gateway.
pub struct Running {
    /// Where HTTP listens (useful when the config said port 0).
    pub addr: SocketAddr,
    /// The live event hub (subscribe to see events as they are relayed).
    pub hub: Hub,
    /// The database.
    pub db: Db,
    /// The committer every write goes through.
    pub committer: Committer,
    /// The SIP user agent, unless `sip.addr` is empty.
    pub sip: Option<Arc<voice::ua::SipServer>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Opens storage (migrating it), starts every task, binds HTTP.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    crate::secrets::install(&config.secret_keys).expect("validated with the configuration");
    if crate::secrets::keyring().is_none() {
        tracing::warn!("no secret_keys configured: provider credentials are stored unencrypted");
    }
    let db = Db::connect(&config.database_url, config.database_max_connections).await?;
    db.migrate().await?;
    if db.autovacuum_off().await.unwrap_or(false) {
        tracing::warn!(
            "PostgreSQL's autovacuum is off: nothing analyzes the growing tables and ingest \
             slows as they grow; switch it on or run ANALYZE regularly"
        );
    }
    // Bound before any task starts: a port taken meanwhile fails the start with nothing
    // left running (the test harness then tries another port).
    let listener = tokio::net::TcpListener::bind(&config.http_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.http_addr.clone(),
            source,
        })?;
    let metrics = crate::telemetry::install();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.delivery.send_timeout_ms))
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(32)
        .build()?;
    channels::registry::check().map_err(StartError::Plugins)?;
    let committer = Committer::start(
        db.clone(),
        CommitSettings {
            queue_capacity: config.ingest.queue_capacity,
            max_batch: config.ingest.max_batch,
            writers: config.ingest.writers,
        },
    );
    let plugins = Arc::new(Plugins::new(db.clone(), http.clone()));
    let hub = Hub::new(8192);
    let relay_status = Arc::new(RelayStatus::default());
    let send_wake = Arc::new(Notify::new());
    let media_wake = Arc::new(Notify::new());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let public_base = config.public_base();

    let mut tasks = Vec::new();
    // With Kafka the relay publishes only there, and every node (this one too) feeds its hub
    // from the topics: each event reaches each node's subscribers once, whichever node relayed
    // it. Without Kafka the relay feeds the hub directly.
    let sinks: Vec<Arc<dyn EventSink>> = if config.kafka.brokers.trim().is_empty() {
        vec![Arc::new(hub.clone())]
    } else {
        relay_status.kafka.store(true, Ordering::Relaxed);
        tasks.push(tokio::spawn(kafka::consume::feed_hub(
            config.kafka.brokers.clone(),
            kafka::all_topics(&config.kafka.topic_prefix),
            hub.clone(),
            relay_status.kafka_reader_ready.clone(),
            shutdown_rx.clone(),
        )));
        vec![Arc::new(KafkaSink::new(&config.kafka)?)]
    };
    tasks.push(tokio::spawn(relay::run(
        db.clone(),
        committer.clone(),
        sinks,
        relay_status.clone(),
        RelaySettings {
            batch: config.relay.batch,
            poll_ms: config.relay.poll_ms,
        },
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::clock::watch(
        db.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::memory::run(
        Duration::from_secs(config.memory_trim_secs),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::retention::run(
        committer.clone(),
        Duration::from_secs(config.relay.retention_hours.saturating_mul(3600)),
        Duration::from_secs(3600),
        shutdown_rx.clone(),
    )));
    let d = &config.delivery;
    tasks.push(tokio::spawn(sender::run(
        db.clone(),
        committer.clone(),
        plugins.clone(),
        SendSettings {
            max_attempts: d.max_attempts,
            retry_base: Duration::from_millis(d.retry_base_ms),
            retry_max: Duration::from_millis(d.retry_max_ms),
            concurrency: d.concurrency,
            breaker_threshold: d.breaker_threshold,
            breaker_cooldown: Duration::from_millis(d.breaker_cooldown_ms),
            send_timeout: Duration::from_millis(d.send_timeout_ms),
            poll: Duration::from_millis(d.poll_ms),
            public_url: public_base.clone(),
        },
        send_wake.clone(),
        shutdown_rx.clone(),
    )));

    tasks.push(tokio::spawn(crate::media::run(
        committer.clone(),
        plugins.clone(),
        crate::media::MediaSettings {
            max_bytes: config.max_media_bytes,
            concurrency: 4,
            retry_base: Duration::from_millis(d.retry_base_ms),
            retry_max: Duration::from_millis(d.retry_max_ms),
            timeout: Duration::from_millis(d.send_timeout_ms),
            poll: Duration::from_millis(d.poll_ms),
        },
        media_wake.clone(),
        shutdown_rx.clone(),
    )));

    tasks.push(tokio::spawn(crate::email::run(
        Arc::new(crate::email::Shared {
            db: db.clone(),
            committer: committer.clone(),
            media_wake: media_wake.clone(),
            settings: config.email.clone(),
        }),
        shutdown_rx.clone(),
    )));

    let inbox = Arc::new(crate::inbox::Inbox::new(
        config.inbox.clone(),
        shutdown_rx.clone(),
    ));
    tasks.push(tokio::spawn(crate::outhooks::run(
        db.clone(),
        http.clone(),
        config.webhooks.clone(),
        // Per process: two nodes on one host must never share a lease.
        format!(
            "{}#{}",
            crate::voice::node_id(&config.sip),
            crate::db::new_id()
        ),
        committer.committed.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::inbox::assign::run(
        db.clone(),
        committer.clone(),
        hub.clone(),
        inbox.assign_wake.clone(),
        Duration::from_millis(config.inbox.assign_poll_ms),
        shutdown_rx.clone(),
    )));
    let broadcast_wake = Arc::new(Notify::new());
    tasks.push(tokio::spawn(crate::alerts::run(
        crate::alerts::GatewayStore {
            db: db.clone(),
            committer: committer.clone(),
            plugins: plugins.clone(),
            public_url: public_base.clone(),
            send_wake: send_wake.clone(),
        },
        broadcast_wake.clone(),
        config.broadcast,
        committer.round_lanes(),
        shutdown_rx.clone(),
    )));
    let sip = crate::voice::start(&config.sip, &db, &committer).await?;
    if let Some(dialer) = crate::voice::dialer(&config.sip, sip.as_ref(), &committer) {
        plugins.attach_dialer(dialer);
    }
    let state = Arc::new(AppState {
        db: db.clone(),
        committer: committer.clone(),
        plugins,
        public_base,
        ops_token: config.ops_token.clone(),
        hub: hub.clone(),
        relay_status,
        metrics,
        send_wake,
        media_wake,
        broadcast_wake,
        keys: crate::cache::TtlCache::new(
            crate::api::KEY_CACHE_TTL,
            crate::api::KEY_CACHE_CAPACITY,
        ),
        key_uses: crate::cache::TtlCache::new(
            Duration::from_secs(60),
            crate::api::KEY_CACHE_CAPACITY,
        ),
        api_limits: crate::api::rate::ApiRateLimits::new(config.api.clone()),
        webhook_sources: crate::api::webhooks::SourceBudget::new(
            config.http.unknown_orgs_per_source,
        ),
        sip: sip.clone(),
        inbox,
    });
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.http_addr.clone(),
        source,
    })?;
    let app = crate::http_serve::with_request_timeout(
        api::router(state, config.max_body_bytes),
        Duration::from_millis(config.http.request_timeout_ms),
    );
    let (limits, stop) = (config.http.clone(), shutdown_rx.clone());
    tasks.insert(
        0,
        tokio::spawn(async move { crate::http_serve::serve(listener, app, &limits, stop).await }),
    );
    tracing::info!(%addr, backend = ?db.backend, "dartwing gateway listening");
    Ok(Running {
        addr,
        hub,
        db,
        committer,
        sip,
        shutdown,
        tasks,
    })
}

impl Running {
    /// Stops everything and waits for the tasks to finish.
    pub async fn stop(self) {
        // Calls first: the user agent hangs up live calls (BYE) and refuses new ones; their
        // last transitions still go through the committer, so wait for them (at most 5 s)
        // before the rest stops.
        if let Some(sip) = &self.sip {
            sip.shutdown();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while sip.active_calls() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.db.pool.close().await;
    }
}
