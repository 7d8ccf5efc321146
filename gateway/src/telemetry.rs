//! Typed telemetry: each metric that matters is a small struct emitted in one place, so names
//! and labels are defined once (the names DESIGN.md lists are kept exactly).
//!
//! The Prometheus recorder is process-global; [`install`] is idempotent so several servers in
//! one test process share it.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once) and returns the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may exist in a test binary; ours then renders empty, never panics.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// One group-commit transaction finished.
pub struct BatchCommitted {
    /// Jobs in it.
    pub size: usize,
    /// How long it took.
    pub elapsed: Duration,
}

impl BatchCommitted {
    /// Records it.
    pub fn emit(self) {
        metrics::histogram!("commit_batch_size").record(self.size as f64);
        metrics::histogram!("commit_duration_seconds").record(self.elapsed.as_secs_f64());
    }
}

/// A message reached a status (inbound `received`, outbound delivery states).
pub struct MessageCounted<'a> {
    /// Its channel.
    pub channel: &'a str,
    /// `inbound` or `outbound`.
    pub direction: &'a str,
    /// The status it reached.
    pub status: &'a str,
}

impl MessageCounted<'_> {
    /// Records it.
    pub fn emit(self) {
        metrics::counter!("messages_total",
            "channel" => self.channel.to_string(),
            "direction" => self.direction.to_string(),
            "status" => self.status.to_string())
        .increment(1);
    }
}

/// An outbound message was reported delivered (`message_delivered_total{channel}`); how long
/// since it was queued (`message_delivery_duration_seconds{channel}`, the histogram the
/// platform's delivery alerts read: p95 email < 30 s, sms < 10 s, whatsapp < 5 s).
pub struct Delivered<'a> {
    /// Its channel.
    pub channel: &'a str,
    /// Queue to delivery.
    pub elapsed: Duration,
}

impl Delivered<'_> {
    /// Records it.
    pub fn emit(self) {
        metrics::counter!("message_delivered_total", "channel" => self.channel.to_string())
            .increment(1);
        metrics::histogram!("message_delivery_duration_seconds", "channel" => self.channel.to_string())
            .record(self.elapsed.as_secs_f64());
    }
}

/// A webhook was refused.
pub struct WebhookRejected {
    /// The provider (a registry name, never request input).
    pub provider: &'static str,
    /// Why (`signature`, `malformed`, `too_large`, `unknown_org`, `source_throttled`,
    /// `overloaded`).
    pub reason: &'static str,
}

impl WebhookRejected {
    /// Records it.
    pub fn emit(self) {
        metrics::counter!("webhook_rejected_total",
            "provider" => self.provider, "reason" => self.reason)
        .increment(1);
    }
}

/// An item of a webhook delivery that could not be used (the rest was stored).
pub struct WebhookItemSkipped {
    /// The provider (a registry name, never request input).
    pub provider: &'static str,
}

impl WebhookItemSkipped {
    /// Records it.
    pub fn emit(self) {
        metrics::counter!("webhook_items_skipped_total", "provider" => self.provider).increment(1);
    }
}

/// Dead letters waiting per channel.
pub struct DeadLetterDepth<'a> {
    /// The channel.
    pub channel: &'a str,
    /// Unreplayed dead letters.
    pub depth: i64,
}

impl DeadLetterDepth<'_> {
    /// Records it.
    pub fn emit(self) {
        metrics::gauge!("dead_letter_queue_depth", "channel" => self.channel.to_string())
            .set(self.depth as f64);
    }
}

/// The relay handed events to its sinks.
pub struct EventsPublished {
    /// How many.
    pub count: usize,
    /// From the oldest event's commit to the sinks' acknowledgement.
    pub lag: Duration,
}

impl EventsPublished {
    /// Records it.
    pub fn emit(self) {
        metrics::counter!("events_published_total").increment(self.count as u64);
        metrics::histogram!("relay_lag_seconds").record(self.lag.as_secs_f64());
    }
}

/// A provider send finished.
pub struct ProviderSend<'a> {
    /// The channel.
    pub channel: &'a str,
    /// `accepted`, `retry`, `failed`, `deferred`.
    pub outcome: &'static str,
    /// How long the provider call took.
    pub elapsed: Duration,
}

impl ProviderSend<'_> {
    /// Records it.
    pub fn emit(self) {
        metrics::counter!("provider_sends_total",
            "channel" => self.channel.to_string(), "outcome" => self.outcome)
        .increment(1);
        metrics::histogram!("provider_send_duration_seconds", "channel" => self.channel.to_string())
            .record(self.elapsed.as_secs_f64());
    }
}

/// A receptionist turn was not answered: the org's `ai_turns_per_hour` was reached
/// (`ai_turns_refused_total{org}`).
pub struct AiTurnRefused<'a> {
    /// The org's id.
    pub org: &'a str,
}

impl AiTurnRefused<'_> {
    /// Records it.
    pub fn emit(self) {
        metrics::counter!("ai_turns_refused_total", "org" => self.org.to_owned()).increment(1);
    }
}
