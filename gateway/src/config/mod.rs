//! Configuration: a TOML file (optional) plus `DARTWING_*` environment overrides, on top of
//! defaults that run the gateway with no set-up. Unknown keys are errors, and every problem —
//! unknown keys, wrong types, invalid values — is reported at once.
//!
//! Environment variables (each overrides the key named beside it):
//!
//! | variable | key |
//! |---|---|
//! | `DARTWING_HTTP_ADDR` | `http_addr` |
//! | `DARTWING_DATABASE_URL` | `database_url` |
//! | `DARTWING_PUBLIC_URL` | `public_url` |
//! | `DARTWING_OPS_TOKEN` | `ops_token` (unlocks error texts on `/health`) |
//! | `DARTWING_SECRET_KEYS` | `secret_keys` (seal provider credentials at rest; `ID:BASE64,…`) |
//! | `DARTWING_MAX_BODY_BYTES` | `max_body_bytes` |
//! | `DARTWING_HTTP_MAX_CONNECTIONS`, `_MAX_CONNECTIONS_PER_SOURCE`, `_UNKNOWN_ORGS_PER_SOURCE`, `_HEADER_TIMEOUT_MS`, `_REQUEST_TIMEOUT_MS` | `http.*` |
//! | `DARTWING_API_RATE_PER_KEY`, `DARTWING_API_RATE_PER_ORG` | `api.*` (requests/s; 0: off) |
//! | `DARTWING_WEBHOOKS_MAX_ATTEMPTS`, `_RETRY_BASE_MS`, `_RETRY_MAX_MS`, `_TIMEOUT_MS` | `webhooks.*` |
//! | `DARTWING_MAX_MEDIA_BYTES` | `max_media_bytes` |
//! | `DARTWING_LOG` | `log` |
//! | `DARTWING_DATABASE_MAX_CONNECTIONS` | `database_max_connections` |
//! | `DARTWING_INGEST_QUEUE_CAPACITY`, `_MAX_BATCH`, `_WRITERS` | `ingest.*` |
//! | `DARTWING_DELIVERY_MAX_ATTEMPTS`, `_RETRY_BASE_MS`, `_RETRY_MAX_MS`, `_CONCURRENCY`, `_BREAKER_THRESHOLD`, `_BREAKER_COOLDOWN_MS`, `_SEND_TIMEOUT_MS`, `_POLL_MS` | `delivery.*` |
//! | `DARTWING_RELAY_BATCH`, `DARTWING_RELAY_POLL_MS`, `DARTWING_RELAY_RETENTION_HOURS` | `relay.*` |
//! | `DARTWING_KAFKA_BROKERS` | `kafka.brokers` (unset or empty: the embedded log only) |
//! | `DARTWING_KAFKA_TOPIC_PREFIX` | `kafka.topic_prefix` (default `dartwing.`) |
//! | `DARTWING_KAFKA_DELIVERY_TIMEOUT_MS` | `kafka.delivery_timeout_ms` |
//! | `DARTWING_SIP_ADDR` | `sip.addr` (UDP and TCP; default `0.0.0.0:5060`; empty: no SIP) |
//! | `DARTWING_INBOX_SESSION_SECS`, `_WS_QUEUE_FRAMES`, `_WS_SLOW_MS`, `_WS_IDLE_SECS`, `_WS_PING_SECS` | `inbox.*` |
//! | `DARTWING_EMAIL_SCAN_MS`, `_IDLE_SECS`, `_POLL_MS` | `email.*` (mailbox readers) |
//! | `DARTWING_BROADCAST_BATCH`, `_MAX_BACKLOG`, `_POLL_MS` | `broadcast.*` (the alert engine) |
//! | `DARTWING_MEMORY_TRIM_SECS` | `memory_trim_secs` (0: never) |
//! | `DARTWING_SIP_REALM`, `_RTP_PORT_MIN`, `_RTP_PORT_MAX`, `_MAX_CALLS`, `_MAX_CALL_SECS`, `_INVITES_PER_SECOND_PER_SOURCE` | `sip.*` |
//! | `DARTWING_SIP_WHISPER_MODEL`, `_TTS_VOICE`, `_REPROMPT_SECS`, `_WHISPER_PROMPT`, `_EARLY_END` | `sip.*` (the receptionist's speech) |

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

mod sip;
pub use sip::SipConfig;

/// The whole configuration. Field docs are the reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the HTTP API and webhooks listen.
    pub http_addr: String,
    /// `sqlite://PATH` (embedded default) or `postgres://…`.
    pub database_url: String,
    /// The base URL providers call and sign (empty: `http://` + `http_addr`).
    pub public_url: String,
    /// A secret that unlocks error details on `/health` (empty: never shown).
    pub ops_token: String,
    /// Keys sealing provider credentials at rest, `ID:BASE64[,…]`, the first sealing
    /// ([`crate::secrets`]); empty: stored unencrypted.
    pub secret_keys: String,
    /// Largest request body accepted; larger gets 413.
    pub max_body_bytes: usize,
    /// Largest inbound attachment downloaded from a provider (WhatsApp media); larger ones
    /// are kept as `too_large` with no bytes.
    pub max_media_bytes: u64,
    /// Log filter, e.g. `info` or `info,gateway=debug`.
    pub log: String,
    /// Database pool size (the committer's writers hold one each while they commit: 3, and
    /// on PostgreSQL 2 more for broadcast rounds; the rest serve reads).
    pub database_max_connections: u32,
    /// HTTP server limits: connections, header and request timeouts.
    pub http: crate::http_serve::HttpLimits,
    /// API request rates per key and per org.
    pub api: crate::api::rate::ApiLimits,
    /// Signed outbound webhooks: retries, timeouts, secret rotation.
    pub webhooks: crate::outhooks::WebhookSettings,
    /// Group commit of writes.
    pub ingest: IngestConfig,
    /// Outbound sending.
    pub delivery: DeliveryConfig,
    /// The outbox relay.
    pub relay: RelayConfig,
    /// Kafka (optional): where the relay publishes and what each node consumes.
    pub kafka: KafkaConfig,
    /// Voice: the SIP listener and RTP media.
    pub sip: SipConfig,
    /// The agent inbox: sessions, sockets, assignment.
    pub inbox: crate::inbox::InboxConfig,
    /// The IMAP mailbox readers of email accounts.
    pub email: crate::email::MailConfig,
    /// The broadcast engine.
    pub broadcast: crate::alerts::BroadcastConfig,
    /// How often freed memory is handed back to the OS after a burst, seconds (0: never;
    /// glibc only, see [`crate::memory`]).
    pub memory_trim_secs: u64,
}

/// Kafka. With `brokers` empty the outbox table is the log and the relay feeds in-process
/// subscribers directly; with it set, the relay publishes to Kafka and every node feeds its
/// subscribers from the topics (so several nodes behave as one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// Topic prefix: events go to `{prefix}{family}s`, e.g. `dartwing.messages`.
    pub topic_prefix: String,
    /// How long a publish may wait for the broker's acknowledgement before the relay counts
    /// it as failed (keeps the events, reports degraded, retries), ms. Default 60 s: a
    /// shorter one turns a slow broker's late acknowledgements into re-sends, and so into
    /// duplicates (BENCHMARKS.md, "Kafka suites at full size").
    pub delivery_timeout_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            topic_prefix: "dartwing.".into(),
            delivery_timeout_ms: 60_000,
        }
    }
}

/// Group commit of writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Writes that may wait for a writer; beyond that requests get 503 with `Retry-After`.
    pub queue_capacity: usize,
    /// Most writes in one transaction.
    pub max_batch: usize,
    /// Writer tasks on PostgreSQL (SQLite always uses one).
    pub writers: usize,
}

/// Outbound sending.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Attempts before a transiently failing send becomes a dead letter.
    pub max_attempts: i64,
    /// First retry delay, ms (doubles each attempt, with jitter).
    pub retry_base_ms: u64,
    /// Longest retry delay, ms.
    pub retry_max_ms: u64,
    /// Provider calls in flight at once.
    pub concurrency: usize,
    /// Consecutive transient failures that open an account's circuit.
    pub breaker_threshold: u32,
    /// How long an open circuit stays open, ms.
    pub breaker_cooldown_ms: u64,
    /// Longest a provider call may take, ms.
    pub send_timeout_ms: u64,
    /// How often to look for due retries without a signal, ms.
    pub poll_ms: u64,
}

/// The outbox relay.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Events per round.
    pub batch: i64,
    /// How often to look without a signal, ms.
    pub poll_ms: u64,
    /// Published outbox rows older than this are deleted (hourly, in chunks); 0 keeps them
    /// forever. The HTTP catch-up feed (`/api/v1/events?after_seq=`) reaches back this far.
    /// Unpublished rows are never deleted.
    pub retention_hours: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http_addr: "127.0.0.1:8080".into(),
            database_url: "sqlite://./data/dartwing.db".into(),
            public_url: String::new(),
            ops_token: String::new(),
            secret_keys: String::new(),
            max_body_bytes: 64 * 1024,
            max_media_bytes: 16 * 1024 * 1024,
            log: "info".into(),
            database_max_connections: 12,
            http: crate::http_serve::HttpLimits::default(),
            api: crate::api::rate::ApiLimits::default(),
            webhooks: crate::outhooks::WebhookSettings::default(),
            ingest: IngestConfig::default(),
            delivery: DeliveryConfig::default(),
            relay: RelayConfig::default(),
            kafka: KafkaConfig::default(),
            sip: SipConfig::default(),
            inbox: crate::inbox::InboxConfig::default(),
            email: crate::email::MailConfig::default(),
            broadcast: crate::alerts::BroadcastConfig::default(),
            memory_trim_secs: 10,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            queue_capacity: 20_000,
            max_batch: 500,
            writers: 3,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_attempts: 6,
            retry_base_ms: 2_000,
            retry_max_ms: 300_000,
            concurrency: 32,
            breaker_threshold: 5,
            breaker_cooldown_ms: 30_000,
            send_timeout_ms: 15_000,
            poll_ms: 1_000,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch: 1_000,
            // Another node's commits reach this node's relay only by polling (its own
            // committer wakes it at once): short, so a message taken by any node is published
            // well within a second.
            poll_ms: 100,
            retention_hours: 168,
        }
    }
}

#[rustfmt::skip]
const ENV: &[(&str, &str)] = &[
    ("DARTWING_HTTP_ADDR", "http_addr"),
    ("DARTWING_DATABASE_URL", "database_url"),
    ("DARTWING_PUBLIC_URL", "public_url"),
    ("DARTWING_OPS_TOKEN", "ops_token"),
    ("DARTWING_SECRET_KEYS", "secret_keys"),
    ("DARTWING_MAX_BODY_BYTES", "max_body_bytes"),
    ("DARTWING_MAX_MEDIA_BYTES", "max_media_bytes"),
    ("DARTWING_LOG", "log"),
    ("DARTWING_DATABASE_MAX_CONNECTIONS", "database_max_connections"),
    ("DARTWING_WEBHOOKS_MAX_ATTEMPTS", "webhooks.max_attempts"),
    ("DARTWING_WEBHOOKS_RETRY_BASE_MS", "webhooks.retry_base_ms"),
    ("DARTWING_WEBHOOKS_RETRY_MAX_MS", "webhooks.retry_max_ms"),
    ("DARTWING_WEBHOOKS_TIMEOUT_MS", "webhooks.timeout_ms"),
    ("DARTWING_API_RATE_PER_KEY", "api.rate_per_key"),
    ("DARTWING_API_RATE_PER_ORG", "api.rate_per_org"),
    ("DARTWING_HTTP_MAX_CONNECTIONS", "http.max_connections"),
    ("DARTWING_HTTP_HEADER_TIMEOUT_MS", "http.header_timeout_ms"),
    ("DARTWING_HTTP_MAX_CONNECTIONS_PER_SOURCE", "http.max_connections_per_source"),
    ("DARTWING_HTTP_UNKNOWN_ORGS_PER_SOURCE", "http.unknown_orgs_per_source"),
    ("DARTWING_HTTP_REQUEST_TIMEOUT_MS", "http.request_timeout_ms"),
    ("DARTWING_INGEST_QUEUE_CAPACITY", "ingest.queue_capacity"),
    ("DARTWING_INGEST_MAX_BATCH", "ingest.max_batch"),
    ("DARTWING_INGEST_WRITERS", "ingest.writers"),
    ("DARTWING_DELIVERY_MAX_ATTEMPTS", "delivery.max_attempts"),
    ("DARTWING_DELIVERY_RETRY_BASE_MS", "delivery.retry_base_ms"),
    ("DARTWING_DELIVERY_RETRY_MAX_MS", "delivery.retry_max_ms"),
    ("DARTWING_DELIVERY_CONCURRENCY", "delivery.concurrency"),
    ("DARTWING_DELIVERY_BREAKER_THRESHOLD", "delivery.breaker_threshold"),
    ("DARTWING_DELIVERY_BREAKER_COOLDOWN_MS", "delivery.breaker_cooldown_ms"),
    ("DARTWING_DELIVERY_SEND_TIMEOUT_MS", "delivery.send_timeout_ms"),
    ("DARTWING_DELIVERY_POLL_MS", "delivery.poll_ms"),
    ("DARTWING_RELAY_BATCH", "relay.batch"),
    ("DARTWING_RELAY_POLL_MS", "relay.poll_ms"),
    ("DARTWING_RELAY_RETENTION_HOURS", "relay.retention_hours"),
    ("DARTWING_MEMORY_TRIM_SECS", "memory_trim_secs"),
    ("DARTWING_KAFKA_BROKERS", "kafka.brokers"),
    ("DARTWING_KAFKA_TOPIC_PREFIX", "kafka.topic_prefix"),
    ("DARTWING_KAFKA_DELIVERY_TIMEOUT_MS", "kafka.delivery_timeout_ms"),
    ("DARTWING_SIP_ADDR", "sip.addr"),
    ("DARTWING_SIP_REALM", "sip.realm"),
    ("DARTWING_SIP_RTP_PORT_MIN", "sip.rtp_port_min"),
    ("DARTWING_SIP_RTP_PORT_MAX", "sip.rtp_port_max"),
    ("DARTWING_SIP_MAX_CALLS", "sip.max_calls"),
    ("DARTWING_SIP_MAX_CALL_SECS", "sip.max_call_secs"),
    ("DARTWING_SIP_INVITES_PER_SECOND_PER_SOURCE", "sip.invites_per_second_per_source"),
    ("DARTWING_SIP_MAX_CALLS_PER_SOURCE", "sip.max_calls_per_source"),
    ("DARTWING_SIP_MAX_STORE_LAG_MS", "sip.max_store_lag_ms"),
    ("DARTWING_SIP_TRUSTED_SOURCES", "sip.trusted_sources"),
    ("DARTWING_SIP_NODE_ID", "sip.node_id"),
    ("DARTWING_SIP_WHISPER_MODEL", "sip.whisper_model"),
    ("DARTWING_SIP_TTS_VOICE", "sip.tts_voice"),
    ("DARTWING_SIP_REPROMPT_SECS", "sip.reprompt_secs"),
    ("DARTWING_SIP_AGENT_RING_SECS", "sip.agent_ring_secs"),
    ("DARTWING_SIP_VOICEMAIL_MAX_SECS", "sip.voicemail_max_secs"),
    ("DARTWING_SIP_RESPONDER_TIMEOUT_MS", "sip.responder_timeout_ms"),
    ("DARTWING_SIP_WHISPER_PROMPT", "sip.whisper_prompt"),
    ("DARTWING_SIP_EARLY_END", "sip.early_end"),
    ("DARTWING_SIP_TRUNK", "sip.trunk"),
    ("DARTWING_SIP_TRUNK_USERNAME", "sip.trunk_username"),
    ("DARTWING_SIP_TRUNK_PASSWORD", "sip.trunk_password"),
    ("DARTWING_SIP_RING_SECS", "sip.ring_secs"),
    ("DARTWING_SIP_CALLS_PER_SECOND", "sip.calls_per_second"),
    ("DARTWING_SIP_OUTBOUND_MAX_CALL_SECS", "sip.outbound_max_call_secs"),
    ("DARTWING_INBOX_SESSION_SECS", "inbox.session_secs"),
    ("DARTWING_INBOX_WS_QUEUE_FRAMES", "inbox.ws_queue_frames"),
    ("DARTWING_INBOX_WS_SLOW_MS", "inbox.ws_slow_ms"),
    ("DARTWING_INBOX_WS_IDLE_SECS", "inbox.ws_idle_secs"),
    ("DARTWING_INBOX_WS_PING_SECS", "inbox.ws_ping_secs"),
    ("DARTWING_EMAIL_SCAN_MS", "email.scan_ms"),
    ("DARTWING_EMAIL_IDLE_SECS", "email.idle_secs"),
    ("DARTWING_EMAIL_POLL_MS", "email.poll_ms"),
    ("DARTWING_BROADCAST_BATCH", "broadcast.batch"),
    ("DARTWING_BROADCAST_MAX_BACKLOG", "broadcast.max_backlog"),
    ("DARTWING_BROADCAST_POLL_MS", "broadcast.poll_ms"),
];

/// Every problem found in a configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigErrors(pub Vec<String>);

impl Config {
    /// Loads the file (if any), applies the environment, checks everything.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", p.display())]))?,
            None => String::new(),
        };
        let env: Vec<(String, String)> = ENV
            .iter()
            .filter_map(|(var, key)| std::env::var(var).ok().map(|v| (key.to_string(), v)))
            .collect();
        Config::from_parts(&text, &env)
    }

    /// Builds a configuration from TOML text and (key path, value) overrides.
    pub fn from_parts(
        toml_text: &str,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut table: toml::Table = toml_text
            .parse()
            .map_err(|e: toml::de::Error| ConfigErrors(vec![format!("config file: {e}")]))?;
        let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
        unknown_keys(&table, &defaults, "", &mut errors);
        for (path, raw) in overrides {
            set_path(&mut table, &defaults, path, raw, &mut errors);
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigErrors(vec![e.message().to_string()]))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigErrors> {
        let mut e = Vec::new();
        if self.http_addr.parse::<SocketAddr>().is_err() {
            e.push(format!("http_addr `{}` is not host:port", self.http_addr));
        }
        let db = &self.database_url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            e.push(format!(
                "database_url `{db}` must start with sqlite:, postgres:// or postgresql://"
            ));
        }
        let url = &self.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            e.push(format!(
                "public_url `{}` must be an http(s) URL",
                self.public_url
            ));
        }
        e.extend(self.sip.outbound_problems(self.delivery.send_timeout_ms));
        e.extend(self.inbox.problems());
        e.extend(self.broadcast.problems());
        e.extend(self.http.problems());
        if let Err(err) = crate::secrets::Keyring::parse(&self.secret_keys) {
            e.push(err.to_string());
        }
        e.extend(self.api.problems());
        e.extend(self.webhooks.problems());
        let positive = [
            ("max_body_bytes", self.max_body_bytes as i64),
            ("max_media_bytes", self.max_media_bytes as i64),
            (
                "database_max_connections",
                self.database_max_connections as i64,
            ),
            ("ingest.queue_capacity", self.ingest.queue_capacity as i64),
            ("ingest.max_batch", self.ingest.max_batch as i64),
            ("ingest.writers", self.ingest.writers as i64),
            ("delivery.max_attempts", self.delivery.max_attempts),
            ("delivery.concurrency", self.delivery.concurrency as i64),
            (
                "delivery.breaker_threshold",
                self.delivery.breaker_threshold as i64,
            ),
            (
                "delivery.send_timeout_ms",
                self.delivery.send_timeout_ms as i64,
            ),
            ("delivery.poll_ms", self.delivery.poll_ms as i64),
            ("relay.batch", self.relay.batch),
            ("relay.poll_ms", self.relay.poll_ms as i64),
            (
                "kafka.delivery_timeout_ms",
                self.kafka.delivery_timeout_ms as i64,
            ),
            ("sip.max_calls", self.sip.max_calls as i64),
            ("sip.max_call_secs", self.sip.max_call_secs as i64),
            (
                "sip.outbound_max_call_secs",
                self.sip.outbound_max_call_secs as i64,
            ),
        ];
        for (name, v) in positive {
            if v <= 0 {
                e.push(format!("{name} must be greater than 0"));
            }
        }
        let k = &self.kafka;
        if k.brokers.split(',').any(|b| {
            let b = b.trim();
            let has_port = b
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
            !b.is_empty() && !has_port
        }) {
            e.push(format!(
                "kafka.brokers `{}` must be host:port[,host:port…]",
                k.brokers
            ));
        }
        if k.topic_prefix
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
        {
            e.push(format!(
                "kafka.topic_prefix `{}` may hold only a-z, A-Z, 0-9, '.', '_' and '-'",
                k.topic_prefix
            ));
        }
        let sip = &self.sip;
        if !sip.addr.is_empty() && sip.addr.parse::<SocketAddr>().is_err() {
            e.push(format!(
                "sip.addr `{}` must be IP:PORT (or empty to turn voice off)",
                sip.addr
            ));
        }
        if sip.rtp_port_min < 1024 || sip.rtp_port_max < sip.rtp_port_min.saturating_add(1) {
            e.push("sip.rtp_port_min must be at least 1024 and below sip.rtp_port_max".into());
        }
        if sip.invites_per_second_per_source.is_nan() || sip.invites_per_second_per_source <= 0.0 {
            e.push("sip.invites_per_second_per_source must be greater than 0".into());
        }
        if let Err(bad) = voice::ua::Cidr::parse_list(&sip.trusted_sources) {
            e.push(format!(
                "sip.trusted_sources: `{bad}` is not an IP or CIDR (like 203.0.113.0/24)"
            ));
        }
        if self.delivery.retry_max_ms < self.delivery.retry_base_ms {
            e.push("delivery.retry_max_ms must be at least delivery.retry_base_ms".into());
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(e))
        }
    }

    /// The public base URL, without a trailing slash.
    pub fn public_base(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.http_addr)
        } else {
            self.public_url.trim_end_matches('/').to_string()
        }
    }
}

fn unknown_keys(table: &toml::Table, known: &toml::Table, prefix: &str, errors: &mut Vec<String>) {
    for (k, v) in table {
        let path = format!("{prefix}{k}");
        match (known.get(k), v) {
            (None, _) => errors.push(format!("unknown key `{path}`")),
            (Some(toml::Value::Table(kt)), toml::Value::Table(t)) => {
                unknown_keys(t, kt, &format!("{path}."), errors)
            }
            (Some(toml::Value::Table(_)), _) => errors.push(format!("`{path}` must be a table")),
            _ => {}
        }
    }
}

/// Sets `a.b` from an environment string, typed like the default at that path.
fn set_path(
    table: &mut toml::Table,
    defaults: &toml::Table,
    path: &str,
    raw: &str,
    errors: &mut Vec<String>,
) {
    let (section, key) = match path.split_once('.') {
        Some((s, k)) => (Some(s), k),
        None => (None, path),
    };
    let (target, default) = match section {
        Some(s) => {
            let entry = table
                .entry(s.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(t) = entry.as_table_mut() else {
                return;
            };
            (t, defaults.get(s).and_then(|d| d.get(key)))
        }
        None => (table, defaults.get(key)),
    };
    let value = match default {
        Some(toml::Value::Integer(_)) => match raw.trim().parse::<i64>() {
            Ok(i) => toml::Value::Integer(i),
            Err(_) => {
                errors.push(format!(
                    "{path} (from the environment) must be an integer, got `{raw}`"
                ));
                return;
            }
        },
        Some(toml::Value::Float(_)) => match raw.trim().parse::<f64>() {
            Ok(f) => toml::Value::Float(f),
            Err(_) => {
                errors.push(format!(
                    "{path} (from the environment) must be a number, got `{raw}`"
                ));
                return;
            }
        },
        Some(toml::Value::Boolean(_)) => match raw.trim() {
            "true" | "1" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "off" => toml::Value::Boolean(false),
            _ => {
                errors.push(format!(
                    "{path} (from the environment) must be true or false, got `{raw}`"
                ));
                return;
            }
        },
        _ => toml::Value::String(raw.to_string()),
    };
    target.insert(key.to_string(), value);
}

#[cfg(test)]
mod tests;
