//! Signed outbound webhooks, for consumers who do not run Kafka: every event of an org, as the
//! same CloudEvents envelope `/api/v1/events` serves, POSTed to each of the org's endpoints
//! and signed per the Standard Webhooks specification (<https://www.standardwebhooks.com>):
//!
//! ```text
//! webhook-id:        the event's id (the same on every retry: deduplicate on it)
//! webhook-timestamp: Unix seconds of this attempt
//! webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")> [v1,<…> with the
//!                    previous secret during a rotation]
//! ```
//!
//! where `key` is the base64 part of the secret `whsec_…`. A 2xx within the send timeout is
//! delivered; anything else is retried with exponential backoff and full jitter. Events go out
//! in the org's sequence order, one at a time per endpoint, so each conversation's events
//! arrive in order; an event refused `max_attempts` times becomes a dead letter (replayed on
//! request, `dartwing-gateway webhook replay`) and the endpoint moves on. Each node runs the
//! worker; an endpoint is delivered by the node holding its lease.
//!
//! Events are read from the outbox, so an endpoint further behind than the retention
//! (`relay.retention_hours`) loses what was pruned.

use crate::db::webhooks::{self, Endpoint};
use crate::db::{now_ms, outbox, Db};
use crate::sender::limits::backoff;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Settings (`[webhooks]` in the file, `DARTWING_WEBHOOKS_*` in the environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Attempts at one event before it becomes a dead letter.
    pub max_attempts: i64,
    /// First retry delay, ms.
    pub retry_base_ms: u64,
    /// Longest retry delay, ms.
    pub retry_max_ms: u64,
    /// How long an attempt may take, ms.
    pub timeout_ms: u64,
    /// How often to look for new events without a signal, ms.
    pub poll_ms: u64,
    /// How long the previous secret keeps signing after a rotation, seconds.
    pub rotation_overlap_secs: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            max_attempts: 8,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            timeout_ms: 10_000,
            poll_ms: 500,
            rotation_overlap_secs: 24 * 3600,
        }
    }
}

impl WebhookSettings {
    /// Every invalid setting, named.
    pub fn problems(&self) -> Vec<String> {
        [
            ("webhooks.max_attempts", self.max_attempts.max(0) as u64),
            ("webhooks.retry_base_ms", self.retry_base_ms),
            ("webhooks.retry_max_ms", self.retry_max_ms),
            ("webhooks.timeout_ms", self.timeout_ms),
            ("webhooks.poll_ms", self.poll_ms),
        ]
        .into_iter()
        .filter(|(_, v)| *v == 0)
        .map(|(k, _)| format!("{k} must be greater than 0"))
        .collect()
    }
}

/// A new signing secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).expect("the operating system's random source works");
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// `v1,<signature>` of one message under one secret; `None` if the secret is malformed.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_")?)
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: the current secret's signature, then the previous
/// secret's while its overlap lasts.
fn signature_header(ep: &Endpoint, id: &str, timestamp: i64, body: &[u8], now: i64) -> String {
    let mut sigs: Vec<String> = sign(&ep.secret, id, timestamp, body).into_iter().collect();
    if let (Some(prev), Some(until)) = (&ep.previous_secret, ep.previous_until) {
        if now < until {
            sigs.extend(sign(prev, id, timestamp, body));
        }
    }
    sigs.join(" ")
}

/// Runs deliveries until shutdown. `wake` is the committer's signal (new events may exist).
pub async fn run(
    db: Db,
    http: reqwest::Client,
    settings: WebhookSettings,
    node: String,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let poll = Duration::from_millis(settings.poll_ms);
    let lease = (settings.timeout_ms as i64) * 3 + 30_000;
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = now_ms();
        match webhooks::lease(&db.pool, &node, now, now + lease).await {
            Ok(endpoints) => {
                for ep in endpoints {
                    if let Err(e) = deliver_due(&db, &http, &settings, &ep).await {
                        tracing::warn!(endpoint = %ep.id, error = %e, "webhook delivery round failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "leasing webhook endpoints"),
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(poll) => {}
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                let _ = webhooks::release(&db.pool, &node).await;
                return;
            }
        }
    }
}

/// Why an attempt failed.
fn attempt_error(r: Result<reqwest::Response, reqwest::Error>) -> Option<String> {
    match r {
        Ok(resp) if resp.status().is_success() => None,
        Ok(resp) => Some(format!("HTTP {}", resp.status().as_u16())),
        Err(e) if e.is_timeout() => Some("timed out".into()),
        Err(e) => Some(format!("transport: {e}")),
    }
}

async fn post(
    http: &reqwest::Client,
    settings: &WebhookSettings,
    ep: &Endpoint,
    ev: &outbox::StoredEvent,
) -> Option<String> {
    let body = serde_json::to_vec(&crate::events::envelope(ev)).expect("JSON serializes");
    let now = now_ms();
    let timestamp = now / 1000;
    let r = http
        .post(&ep.url)
        .timeout(Duration::from_millis(settings.timeout_ms))
        .header("content-type", "application/json")
        .header("webhook-id", &ev.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            signature_header(ep, &ev.event_id, timestamp, &body, now),
        )
        .body(body)
        .send()
        .await;
    attempt_error(r)
}

/// Delivers what is due on one endpoint: replays asked for, then events after the cursor in
/// order, until one fails (it is retried later) or none are left.
async fn deliver_due(
    db: &Db,
    http: &reqwest::Client,
    settings: &WebhookSettings,
    ep: &Endpoint,
) -> Result<(), crate::db::StoreError> {
    for (dead_letter, event_id) in webhooks::replays_due(&db.pool, &ep.id).await? {
        if let Some(ev) = outbox::by_event_id(&db.pool, &ep.org_id, &event_id).await? {
            if post(http, settings, ep, &ev).await.is_none() {
                webhooks::replayed(&db.pool, &dead_letter, now_ms()).await?;
            }
        }
    }
    if ep.retry_at.is_some_and(|t| t > now_ms()) {
        return Ok(());
    }
    let mut ep = ep.clone();
    loop {
        let batch = outbox::after_seq(&db.pool, &ep.org_id, ep.cursor_seq, 100).await?;
        if batch.is_empty() {
            return Ok(());
        }
        for ev in batch {
            let seq = ev.seq.expect("after_seq returns numbered events");
            match post(http, settings, &ep, &ev).await {
                None => {
                    metrics::counter!("webhook_deliveries_total", "outcome" => "delivered")
                        .increment(1);
                }
                Some(error) if ep.attempts + 1 < settings.max_attempts => {
                    metrics::counter!("webhook_deliveries_total", "outcome" => "retry")
                        .increment(1);
                    let delay = backoff(
                        ep.attempts,
                        Duration::from_millis(settings.retry_base_ms),
                        Duration::from_millis(settings.retry_max_ms),
                    );
                    let at = now_ms() + delay.as_millis() as i64;
                    webhooks::failed(&db.pool, &ep.id, ep.attempts + 1, at, &error).await?;
                    return Ok(());
                }
                Some(error) => {
                    metrics::counter!("webhook_deliveries_total", "outcome" => "dead_letter")
                        .increment(1);
                    tracing::warn!(endpoint = %ep.id, event = %ev.event_id, %error,
                        "webhook event dead-lettered after every attempt failed");
                    webhooks::dead_letter(&db.pool, &ep, &ev.event_id, seq, &error, now_ms())
                        .await?;
                }
            }
            webhooks::advance(&db.pool, &ep.id, seq).await?;
            ep.cursor_seq = seq;
            ep.attempts = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn signs_like_the_specification() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, id, 1614265330, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(sign("nope", id, 1, body), None);
        let s = new_secret();
        assert!(s.starts_with("whsec_") && sign(&s, id, 1, body).is_some());
    }
}
