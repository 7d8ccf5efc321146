//! Email in: one IMAP reader per configured mailbox, started, restarted and stopped as
//! `channel add email` accounts appear, change and go. Parsing, threading keys and bounce
//! classification are the channel's (`channels::email`); this is the I/O and the ordering.
//!
//! ```text
//!  supervisor (every scan_ms) ─▶ one task per email account
//!     task: take the mailbox (PostgreSQL advisory lock: one node at a time)
//!        ─▶ connect (none | STARTTLS | TLS) ─▶ LOGIN ─▶ SELECT folder (UIDVALIDITY)
//!        ─▶ sync: UID SEARCH last+1:* ─▶ per chunk: UID FETCH BODY.PEEK[] ─▶ parse
//!                 ─▶ commit (group commit; dedupe on Message-ID) ─▶ UID STORE +\Seen
//!                 ─▶ cursor := last UID done
//!        ─▶ IDLE until the server says EXISTS (or idle_secs), or poll where IDLE is missing
//!        ─▶ any error: drop the connection, back off (retry_base_ms doubling), start over
//! ```
//!
//! The invariant ([`crate::db::mailboxes`]): `\Seen` and the cursor move only after the
//! commit, so a crash anywhere reads the message again and the dedupe makes it a no-op.

pub mod imap;
pub mod mailbox;

use crate::commit::Committer;
use crate::db::{mailboxes, Db};
use channels::email::EmailConfig;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Settings of the mailbox readers (`[email]` in the configuration file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// How often the accounts are read for added, changed or removed mailboxes, ms.
    pub scan_ms: u64,
    /// Longest one IDLE waits before the folder is read again anyway, seconds (RFC 2177
    /// asks for less than 29 minutes).
    pub idle_secs: u64,
    /// How often a server without IDLE is polled, ms.
    pub poll_ms: u64,
    /// Messages fetched and committed per round.
    pub chunk: usize,
    /// Largest message read; a larger one is refused with its size.
    pub max_message_bytes: u64,
    /// Connect and login timeout, ms.
    pub timeout_ms: u64,
    /// First reconnect delay, ms; it doubles up to `retry_max_ms`.
    pub retry_base_ms: u64,
    /// Longest reconnect delay, ms.
    pub retry_max_ms: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            scan_ms: 5_000,
            idle_secs: 300,
            poll_ms: 10_000,
            chunk: 50,
            max_message_bytes: 25 * 1024 * 1024,
            timeout_ms: 30_000,
            retry_base_ms: 500,
            retry_max_ms: 60_000,
        }
    }
}

/// What one mailbox message came to, counted as `email_messages_total{outcome}`.
#[derive(Debug, Clone, Copy)]
pub struct MailCounted {
    /// `stored`, `duplicate`, `status`, `ignored` or `rejected`.
    pub outcome: &'static str,
}

impl MailCounted {
    /// Records it.
    pub fn emit(self) {
        metrics::counter!("email_messages_total", "outcome" => self.outcome).increment(1);
    }
}

/// What every mailbox task shares.
pub struct Shared {
    /// The database (cursor, rejects, the ownership lock).
    pub db: Db,
    /// Where messages are committed.
    pub committer: Committer,
    /// Woken when a message with attachments is stored.
    pub media_wake: Arc<Notify>,
    /// The settings.
    pub settings: MailConfig,
}

struct Running {
    config: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Runs the supervisor until shutdown, then stops every mailbox task.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let scan = Duration::from_millis(shared.settings.scan_ms.max(10));
    loop {
        match mailboxes::email_accounts(&shared.db.pool).await {
            Ok(accounts) => {
                let ids: HashSet<String> = accounts.iter().map(|a| a.id.clone()).collect();
                running.retain(|id, r| {
                    let keep = ids.contains(id);
                    if !keep {
                        let _ = r.stop.send(true);
                    }
                    keep
                });
                for acct in accounts {
                    let current = running
                        .get(&acct.id)
                        .is_some_and(|r| r.config == acct.config && !r.task.is_finished());
                    if current {
                        continue;
                    }
                    if let Some(old) = running.remove(&acct.id) {
                        let _ = old.stop.send(true);
                    }
                    let (stop, stop_rx) = watch::channel(false);
                    let task = match serde_json::from_str::<EmailConfig>(&acct.config) {
                        Ok(cfg) => {
                            tracing::info!(org_id = %acct.org_id, mailbox = %cfg.mailbox_key(), "reading mailbox");
                            tokio::spawn(mailbox::run(
                                shared.clone(),
                                acct.org_id.clone(),
                                cfg,
                                stop_rx,
                            ))
                        }
                        Err(e) => {
                            tracing::error!(account = %acct.id, error = %e, "stored email account is unusable");
                            // Parked until the account changes: no retry storm.
                            tokio::spawn(async move {
                                let mut rx = stop_rx;
                                let _ = rx.wait_for(|s| *s).await;
                            })
                        }
                    };
                    running.insert(
                        acct.id,
                        Running {
                            config: acct.config,
                            stop,
                            task,
                        },
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading email accounts failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(scan) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    for (_, r) in running {
        // A task mid-chunk finishes its commit; one stuck on the network is not waited for.
        let _ = tokio::time::timeout(Duration::from_secs(5), r.task).await;
    }
}
