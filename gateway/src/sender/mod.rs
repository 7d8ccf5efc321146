//! The send worker: claims due outbound messages, sends them through their org's plugin with
//! the per-sender rate limit and the per-account circuit breaker, and records the outcome.
//!
//! ```text
//!  due? ──claim (queued→sending, lease)──▶ breaker open? ──▶ defer (no attempt counted)
//!                                          rate limit wait ─▶ plugin.send
//!      accepted ─▶ sent (provider id)     transient ─▶ retry at now+backoff, or dead letter
//!      permanent ─▶ failed + dead letter (never retried)
//! ```

pub mod limits;

use crate::commit::{Committer, WriteOp, WriteResult};
use crate::db::messages::Claimed;
use crate::db::{now_ms, Db};
use crate::plugins::Plugins;
use crate::telemetry::MessageCounted;
use channels::{OutboundMessage, SendError};
use limits::{backoff, Breakers, RateLimiter};
use sqlx::Row;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify, Semaphore};

/// Settings of the worker.
#[derive(Debug, Clone)]
pub struct SendSettings {
    /// Attempts before a transient failure becomes a dead letter.
    pub max_attempts: i64,
    /// First retry delay.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Provider calls in flight at once (a slot is freed when the provider answers).
    pub concurrency: usize,
    /// Consecutive transient failures that open an account's circuit.
    pub breaker_threshold: u32,
    /// How long an open circuit stays open.
    pub breaker_cooldown: Duration,
    /// Longest a provider call may take.
    pub send_timeout: Duration,
    /// How often to look for due retries without a signal.
    pub poll: Duration,
    /// Public base URL for status callbacks.
    pub public_url: String,
}

struct Worker {
    db: Db,
    committer: Committer,
    plugins: Arc<Plugins>,
    settings: SendSettings,
    limiter: RateLimiter,
    breakers: Breakers,
    wake: Arc<Notify>,
    /// How long a claim holds a message before another worker may take it, ms.
    lease_ms: i64,
    /// Shared-rate slots this node holds (PostgreSQL).
    pace: crate::db::sender_pace::PaceSlots,
    /// Messages this node is sending now. A claim that returns one of them again (its lease
    /// ran out under it: the wall clock jumped forward) is dropped, never sent a second time.
    in_flight: Mutex<HashSet<String>>,
}

/// Runs the worker until shutdown. `wake` is signalled when new messages are queued.
pub async fn run(
    db: Db,
    committer: Committer,
    plugins: Arc<Plugins>,
    settings: SendSettings,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let lease_ms = (settings.send_timeout.as_millis() as i64) * 2 + 30_000;
    // A quarter of the send slots stay free for messages a person waits on.
    let reserve = settings.concurrency as i64 / 4;
    let worker = Arc::new(Worker {
        lease_ms,
        in_flight: Mutex::new(HashSet::new()),
        pace: Default::default(),
        breakers: Breakers::new(settings.breaker_threshold, settings.breaker_cooldown),
        limiter: RateLimiter::default(),
        db: db.clone(),
        committer,
        plugins,
        settings,
        wake: wake.clone(),
    });
    loop {
        if *shutdown.borrow() {
            return;
        }
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next_due = next_due(&db).await;
        let now = now_ms();
        let free = permits.available_permits() as i64;
        if matches!(next_due, Some(t) if t <= now) && free > 0 {
            match worker
                .committer
                .submit_wait(WriteOp::Claim {
                    limit: free,
                    bulk_limit: free - reserve,
                    lease_ms,
                })
                .await
            {
                Ok(WriteResult::Claimed(claimed)) if !claimed.is_empty() => {
                    for msg in claimed {
                        let first = lock(&worker.in_flight).insert(msg.id.clone());
                        if !first {
                            metrics::counter!("send_reclaimed_in_flight_total").increment(1);
                            tracing::warn!(message_id = %msg.id,
                                "claimed again while this node sends it (did the clock jump?); not sent twice");
                            continue;
                        }
                        let permit = permits.clone().acquire_owned().await.expect("never closed");
                        let w = worker.clone();
                        tokio::spawn(async move {
                            // Leaves the in-flight set however the send ends.
                            let _sending = Sending(w.clone(), msg.id.clone());
                            w.send_one(msg, permit).await;
                        });
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "claiming due messages failed"),
            }
        }
        let wait = match next_due {
            Some(t) if t > now => Duration::from_millis((t - now) as u64).min(worker.settings.poll),
            _ => worker.settings.poll,
        };
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// A message in [`Worker::in_flight`], taken out on drop.
struct Sending(Arc<Worker>, String);

impl Drop for Sending {
    fn drop(&mut self) {
        lock(&self.0.in_flight).remove(&self.1);
    }
}

fn lock(set: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    set.lock().expect("not poisoned")
}

async fn next_due(db: &Db) -> Option<i64> {
    let row =
        sqlx::query("SELECT MIN(next_attempt_at) FROM messages WHERE next_attempt_at IS NOT NULL")
            .fetch_one(&db.pool)
            .await
            .ok()?;
    row.try_get::<Option<i64>, _>(0).ok().flatten()
}

impl Worker {
    /// One send's slot of its sender's rate: `Ok(wait)`, or `Err(due_in)` when the slot is
    /// further away than `max_wait`. On PostgreSQL, which several nodes may share, the rate
    /// is kept in the database so that the nodes together hold it
    /// ([`crate::db::sender_pace`]); a SQLite file has one node, whose buckets see every send.
    /// Should the shared rate be unreadable, this node paces alone (logged) rather than stop.
    async fn reserve(
        &self,
        key: &str,
        per_second: f64,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        if self.db.backend == crate::db::Backend::Postgres {
            let shared = self.pace.reserve(&self.db.pool, key, per_second, max_wait);
            match shared.await {
                Ok(slot) => return slot,
                Err(e) => {
                    tracing::warn!(error = %e, "the shared sender rate is unreadable; pacing on this node alone")
                }
            }
        }
        self.limiter.reserve_within(key, per_second, max_wait)
    }

    /// Sends `msg` and records what came of it. The `permit` (a slot of
    /// `delivery.concurrency`) is given back as soon as the provider has answered, not after
    /// the outcome is committed: the slots bound the provider calls in flight, and a slot held
    /// through the commit's wait (tens of ms while a broadcast drains) capped the send rate at
    /// slots ÷ commit latency — about 1,000 messages/s with 48 bulk slots (BENCHMARKS.md, the
    /// broadcast section). The message stays in this node's in-flight set, and under its
    /// claim's lease, until its outcome is recorded.
    async fn send_one(&self, msg: Claimed, permit: tokio::sync::OwnedSemaphorePermit) {
        let op = self.attempt(&msg).await;
        drop(permit);
        self.wake.notify_one();
        let channel = msg.channel.as_str();
        let outcome = match op {
            WriteOp::Accepted {
                org_id,
                id,
                provider_message_id,
                provider_status,
            } => {
                self.record_acceptance(&msg, org_id, id, provider_message_id, provider_status)
                    .await
            }
            op => self.committer.submit_wait(op).await,
        };
        match outcome {
            Ok(WriteResult::Applied(a)) if a.changed() => MessageCounted {
                channel,
                direction: "outbound",
                status: a.to.as_str(),
            }
            .emit(),
            Ok(WriteResult::DeadLettered(_)) => MessageCounted {
                channel,
                direction: "outbound",
                status: "failed",
            }
            .emit(),
            Ok(_) => {}
            // Not accepted by the provider (else recorded above): the lease brings it back,
            // nothing is lost, it is sent again later.
            Err(e) => {
                tracing::error!(message_id = %msg.id, error = %e, "recording a send outcome failed")
            }
        }
        // A retry may now be due.
        self.wake.notify_one();
    }

    /// Records the provider's acceptance. The provider has the message now, so it must never
    /// be sent again blindly: a write that keeps failing (a few tries, for a database hiccup)
    /// ends the message `failed` with the provider's id in the reason and a dead letter, an
    /// event and `send_outcome_unrecorded_total` — visible, and replayed only by a person.
    /// Only if that write fails too (the database is gone) does the lease bring it back.
    async fn record_acceptance(
        &self,
        msg: &Claimed,
        org_id: String,
        id: String,
        provider_message_id: String,
        provider_status: String,
    ) -> Result<WriteResult, crate::commit::CommitError> {
        let mut last_error = None;
        for delay_ms in [0u64, 200, 1_000] {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let op = WriteOp::Accepted {
                org_id: org_id.clone(),
                id: id.clone(),
                provider_message_id: provider_message_id.clone(),
                provider_status: provider_status.clone(),
            };
            match self.committer.submit_wait(op).await {
                Ok(r) => return Ok(r),
                Err(e) => last_error = Some(e),
            }
        }
        let e = last_error.expect("tried at least once");
        metrics::counter!("send_outcome_unrecorded_total", "channel" => msg.channel.as_str())
            .increment(1);
        tracing::error!(message_id = %msg.id, %provider_message_id, error = %e,
            "the provider accepted a message whose acceptance cannot be recorded; marking it failed");
        let reason = format!(
            "the provider accepted it as {provider_message_id}, but recording that failed ({e}); \
             not sent again automatically"
        );
        self.committer
            .submit_wait(self.failure(msg, reason, None))
            .await
    }

    async fn attempt(&self, msg: &Claimed) -> WriteOp {
        let channel = msg.channel.as_str();
        // A STOP may have arrived after the message was queued: never send past it.
        if msg.opted_out {
            return self.failure(
                msg,
                "the recipient opted out after the message was queued".into(),
                None,
            );
        }
        let Some((slug, plugin)) = self.plugins.for_channel(&msg.org_id, msg.channel).await else {
            return self.failure(
                msg,
                format!("no {channel} account is configured for this organization"),
                None,
            );
        };
        let account = plugin.account_key();
        if let Err(wait) = self.breakers.allow(&account) {
            crate::telemetry::ProviderSend {
                channel,
                outcome: "deferred",
                elapsed: Duration::ZERO,
            }
            .emit();
            return WriteOp::Defer {
                id: msg.id.clone(),
                until: now_ms() + wait.as_millis() as i64,
            };
        }
        // The claim's lease covers at most a quarter of it waiting here and the send's own
        // timeout; a longer wait puts the message back, unclaimed, for when its slot is due.
        let max_wait = Duration::from_millis(self.lease_ms as u64 / 4);
        match self
            .reserve(
                &plugin.sender_key(),
                plugin.rate_limit_per_second(),
                max_wait,
            )
            .await
        {
            Ok(wait) if !wait.is_zero() => {
                if msg.bulk {
                    metrics::counter!("broadcast_throttled_total", "organization" => msg.org_id.clone())
                        .increment(1);
                }
                tokio::time::sleep(wait).await
            }
            Ok(_) => {}
            Err(due_in) => {
                crate::telemetry::ProviderSend {
                    channel,
                    outcome: "deferred",
                    elapsed: Duration::ZERO,
                }
                .emit();
                return WriteOp::Defer {
                    id: msg.id.clone(),
                    until: now_ms() + due_in.as_millis() as i64,
                };
            }
        }
        let content: Option<serde_json::Value> =
            match msg.content.as_deref().map(serde_json::from_str) {
                None => None,
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    return self.failure(msg, format!("stored content is not JSON: {e}"), None)
                }
            };
        // Files to attach are stored with the message (only content that lists some has any).
        let listed = content
            .as_ref()
            .and_then(|c| c.get("attachments"))
            .and_then(|a| a.as_array())
            .is_some_and(|a| !a.is_empty());
        let attachments = if listed {
            let loaded = match self.db.pool.acquire().await {
                Ok(mut conn) => {
                    crate::db::media::outbound_attachments(&mut conn, &msg.org_id, &msg.id).await
                }
                Err(e) => Err(e.into()),
            };
            match loaded {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "loading the attachments failed; retrying later");
                    return WriteOp::Defer {
                        id: msg.id.clone(),
                        until: now_ms() + 1_000,
                    };
                }
            }
        } else {
            Vec::new()
        };
        let out = OutboundMessage {
            message_id: msg.id.clone(),
            to: msg.to.clone(),
            body: msg.body.clone(),
            content,
            attachments,
            webhook_base: format!(
                "{}/webhooks/{}/{}",
                self.settings.public_url,
                plugin.provider(),
                slug
            ),
        };
        let started = Instant::now();
        // A plugin's own longer timeout (a call rings) stays inside half the claim's lease,
        // so no other node claims the message while it is being sent.
        let timeout = plugin
            .send_timeout()
            .unwrap_or(self.settings.send_timeout)
            .min(Duration::from_millis(self.lease_ms as u64 / 2));
        let result = match tokio::time::timeout(timeout, plugin.send(&out)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::BadResponse(format!(
                "no answer within {timeout:?}"
            ))),
        };
        let elapsed = started.elapsed();
        match result {
            Ok(receipt) => {
                self.breakers.success(&account);
                crate::telemetry::ProviderSend {
                    channel,
                    outcome: "accepted",
                    elapsed,
                }
                .emit();
                WriteOp::Accepted {
                    org_id: msg.org_id.clone(),
                    id: msg.id.clone(),
                    provider_message_id: receipt.provider_message_id,
                    provider_status: receipt.provider_status,
                }
            }
            Err(e) if e.is_transient() => {
                self.breakers.failure(&account);
                let attempts = msg.attempts + 1;
                if attempts >= self.settings.max_attempts {
                    crate::telemetry::ProviderSend {
                        channel,
                        outcome: "failed",
                        elapsed,
                    }
                    .emit();
                    return self.failure(
                        msg,
                        format!("gave up after {attempts} attempts: {e}"),
                        e.code(),
                    );
                }
                crate::telemetry::ProviderSend {
                    channel,
                    outcome: "retry",
                    elapsed,
                }
                .emit();
                let mut delay = backoff(
                    msg.attempts,
                    self.settings.retry_base,
                    self.settings.retry_max,
                );
                if let SendError::Unavailable {
                    retry_after: Some(ra),
                    ..
                } = &e
                {
                    delay = delay.max(*ra);
                }
                WriteOp::Retry {
                    org_id: msg.org_id.clone(),
                    id: msg.id.clone(),
                    error: e.to_string(),
                    error_code: e.code().map(str::to_string),
                    retry_at: now_ms() + delay.as_millis() as i64,
                }
            }
            Err(e) => {
                self.breakers.success(&account);
                crate::telemetry::ProviderSend {
                    channel,
                    outcome: "failed",
                    elapsed,
                }
                .emit();
                self.failure(msg, e.to_string(), e.code())
            }
        }
    }

    fn failure(&self, msg: &Claimed, error: String, code: Option<&str>) -> WriteOp {
        WriteOp::Failure {
            org_id: msg.org_id.clone(),
            id: msg.id.clone(),
            channel: msg.channel,
            error,
            error_code: code.map(str::to_string),
            attempts: msg.attempts + 1,
        }
    }
}
