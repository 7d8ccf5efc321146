//! The media worker: downloads inbound attachments that the provider keeps only for a while
//! (WhatsApp media ids), through the plugin of the provider that received them, and stores
//! them with their SHA-256 (see [`crate::db::media`] for the row's lifecycle).
//!
//! It never holds up a webhook: the message is committed and acknowledged with its
//! attachments `pending`, and this worker, woken by the commit, fetches them afterwards.
//! Transient failures retry with the send worker's backoff; an attachment over
//! `max_media_bytes` is kept as `too_large` without its bytes.

use crate::commit::{Committer, WriteOp, WriteResult};
use crate::db::media::{MediaJob, MediaOutcome, MAX_ATTEMPTS};
use crate::db::now_ms;
use crate::plugins::Plugins;
use crate::sender::limits::backoff;
use channels::MediaError;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Settings of the worker.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// Largest attachment kept.
    pub max_bytes: u64,
    /// Downloads at once.
    pub concurrency: usize,
    /// First retry delay.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How long one download may take (also its lease, doubled).
    pub timeout: Duration,
    /// How often to look for due retries without a signal.
    pub poll: Duration,
}

/// Runs the worker until shutdown; `wake` is signalled when attachments are committed.
pub async fn run(
    committer: Committer,
    plugins: Arc<Plugins>,
    settings: MediaSettings,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let lease_ms = settings.timeout.as_millis() as i64 * 2 + 10_000;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let op = WriteOp::MediaClaim {
            limit: settings.concurrency.max(1) as i64,
            lease_ms,
        };
        match committer.submit_wait(op).await {
            Ok(WriteResult::MediaClaimed(jobs)) if !jobs.is_empty() => {
                let downloads = jobs.into_iter().map(|job| fetch(&plugins, &settings, job));
                for (id, outcome) in futures_util::future::join_all(downloads).await {
                    let op = WriteOp::MediaDone { id, outcome };
                    if let Err(e) = committer.submit_wait(op).await {
                        // The lease brings it back.
                        tracing::warn!(error = %e, "recording a media download failed");
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "claiming media downloads failed"),
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(settings.poll) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn fetch(
    plugins: &Plugins,
    settings: &MediaSettings,
    job: MediaJob,
) -> (String, MediaOutcome) {
    let outcome = match plugins.by_provider(&job.org_id, &job.provider).await {
        Ok(Some(plugin)) => {
            let download = plugin.fetch_media(&job.reference, settings.max_bytes);
            match tokio::time::timeout(settings.timeout, download).await {
                Ok(Ok(media)) => MediaOutcome::Stored {
                    sha256: hex::encode(Sha256::digest(&media.bytes)),
                    content_type: media.content_type,
                    data: media.bytes,
                },
                Ok(Err(e)) => failed(&job, settings, e),
                Err(_) => failed(
                    &job,
                    settings,
                    MediaError::Transient(format!("no answer within {:?}", settings.timeout)),
                ),
            }
        }
        Ok(None) => MediaOutcome::GaveUp {
            status: "failed",
            error: format!("the org has no {} account any more", job.provider),
        },
        Err(e) => failed(&job, settings, MediaError::Transient(e.to_string())),
    };
    if let MediaOutcome::GaveUp { error, .. } = &outcome {
        tracing::warn!(media_id = %job.id, %error, "media download given up");
    }
    (job.id, outcome)
}

fn failed(job: &MediaJob, settings: &MediaSettings, e: MediaError) -> MediaOutcome {
    match e {
        MediaError::TooLarge { .. } => MediaOutcome::GaveUp {
            status: "too_large",
            error: e.to_string(),
        },
        e if e.is_transient() && job.attempts + 1 < MAX_ATTEMPTS => MediaOutcome::Retry {
            at: now_ms()
                + backoff(job.attempts, settings.retry_base, settings.retry_max).as_millis() as i64,
            error: e.to_string(),
        },
        e => MediaOutcome::GaveUp {
            status: "failed",
            error: e.to_string(),
        },
    }
}
