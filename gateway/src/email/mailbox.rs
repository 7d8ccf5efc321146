//! One mailbox: take it, connect, read everything past the cursor, wait for news (IDLE or
//! polling), and start over with backoff when anything fails. See [`super`] for the diagram.
//!
//! Per chunk of UIDs the order is fixed: fetch → parse → commit (all of the chunk's messages
//! go to the committer at once, so they share transactions) → `\Seen` on the committed ones
//! → (with `imap.move_to`) their move to that folder → cursor. The move is `UID MOVE` where
//! the server has MOVE (RFC 6851), else `UID COPY`, `\Deleted` and `UID EXPUNGE` of exactly
//! those UIDs (UIDPLUS; without it they stay flagged `\Deleted`, since a plain EXPUNGE would
//! also remove whatever else someone marked deleted). A move the server refuses (no such
//! folder) leaves the mail where it is, `\Seen`, with a warning, and reading goes on.
//!
//! A message that cannot be stored (unparseable, too large, refused by the database) is
//! recorded in `email_rejects` with its reason and passed over, unseen, for a person to look
//! at; a transient failure (database down, committer full) stops the chunk where it is and
//! retries it.

use super::imap::{self, ImapError, Session};
use super::{MailCounted, Shared};
use crate::commit::{CommitError, WriteOp, WriteResult};
use crate::db::mailboxes::{self, Cursor, MailboxLock};
use crate::db::now_ms;
use crate::sender::limits::backoff;
use async_imap::types::UnsolicitedResponse;
use channels::email::parse::{self, Parsed};
use channels::email::EmailConfig;
use futures_util::StreamExt;
use state_machines::Channel;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Reads one mailbox until `stop` is set.
pub async fn run(
    shared: Arc<Shared>,
    org_id: String,
    config: EmailConfig,
    mut stop: watch::Receiver<bool>,
) {
    let key = config.mailbox_key();
    let s = &shared.settings;
    let mut failures: i64 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let outcome = match MailboxLock::try_take(&shared.db, &org_id, &key).await {
            Ok(Some(mut lock)) => {
                let mut mb = Reader {
                    shared: &shared,
                    org_id: &org_id,
                    config: &config,
                    key: &key,
                    lock: &mut lock,
                    caps: Caps::default(),
                };
                mb.session(&mut failures, &mut stop).await
            }
            // Another node reads it; try again later (it may die).
            Ok(None) => {
                failures = 0;
                Err(None)
            }
            Err(e) => Err(Some(ImapError::Store(e))),
        };
        let delay = match outcome {
            Ok(()) => return,
            Err(None) => Duration::from_millis(s.scan_ms.max(100)),
            Err(Some(e)) => {
                failures += 1;
                tracing::warn!(%org_id, mailbox = %key, error = %e, failures, "mailbox connection failed; retrying");
                backoff(
                    failures - 1,
                    Duration::from_millis(s.retry_base_ms),
                    Duration::from_millis(s.retry_max_ms),
                )
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {}
        }
    }
}

struct Reader<'a> {
    shared: &'a Shared,
    org_id: &'a str,
    config: &'a EmailConfig,
    key: &'a str,
    lock: &'a mut MailboxLock,
    caps: Caps,
}

/// What the server can do, from its CAPABILITY answer.
#[derive(Debug, Default, Clone, Copy)]
struct Caps {
    idle: bool,
    mv: bool,
    uidplus: bool,
}

/// `Err(None)`: ownership lost or not taken (wait and try again, not a failure).
type Outcome = Result<(), Option<ImapError>>;

impl Reader<'_> {
    /// One connection's life: `Ok` when stopped, `Err` when it has to start over.
    async fn session(&mut self, failures: &mut i64, stop: &mut watch::Receiver<bool>) -> Outcome {
        let s = &self.shared.settings;
        let timeout = Duration::from_millis(s.timeout_ms);
        let mut session = imap::connect(&self.config.imap, timeout).await?;
        let folder = session
            .select(&self.config.imap.folder)
            .await
            .map_err(ImapError::from)?;
        let validity = folder.uid_validity.ok_or(ImapError::NoUidValidity)?;
        let pool = &self.shared.db.pool;
        let mut cursor = match mailboxes::cursor(pool, self.org_id, self.key)
            .await
            .map_err(ImapError::from)?
        {
            Some(c) if c.uid_validity == validity => c,
            previous => {
                if previous.is_some() {
                    // The UIDs were renumbered: read the folder again; the Message-ID dedupe
                    // keeps what is already stored from being stored twice.
                    tracing::warn!(org_id = %self.org_id, mailbox = %self.key, "UIDVALIDITY changed; reading the folder again");
                }
                Cursor {
                    uid_validity: validity,
                    last_uid: 0,
                }
            }
        };
        let caps = session.capabilities().await.map_err(ImapError::from)?;
        self.caps = Caps {
            idle: caps.has_str("IDLE"),
            mv: caps.has_str("MOVE"),
            uidplus: caps.has_str("UIDPLUS"),
        };
        let idle = self.caps.idle;
        if let Some(to) = &self.config.imap.move_to {
            // Refused when it exists already; a real problem shows at the first move.
            let _ = session.create(to).await;
        }
        // An EXISTS the server sends with the answer to another command (a FETCH, the STORE,
        // the IDLE request itself) is not repeated during IDLE: it is kept from this channel
        // and checked before waiting, or new mail would wait for the next IDLE timeout.
        let unsolicited = session.unsolicited_responses.clone();
        loop {
            if !self.lock.still_held().await {
                tracing::warn!(org_id = %self.org_id, mailbox = %self.key, "lost the mailbox lock");
                return Err(None);
            }
            news(|| unsolicited.try_recv().ok());
            self.sync(&mut session, &mut cursor).await?;
            *failures = 0;
            if *stop.borrow() {
                let _ = session.logout().await;
                return Ok(());
            }
            if news(|| unsolicited.try_recv().ok()) {
                continue;
            }
            if idle {
                let mut handle = session.idle();
                handle.init().await.map_err(ImapError::from)?;
                if news(|| unsolicited.try_recv().ok()) {
                    session = handle.done().await.map_err(ImapError::from)?;
                    continue;
                }
                let (wait, _interrupt) =
                    handle.wait_with_timeout(Duration::from_secs(s.idle_secs.max(1)));
                let stopped = tokio::select! {
                    r = wait => { r.map_err(ImapError::from)?; false }
                    _ = stop.changed() => true,
                };
                if stopped {
                    return Ok(());
                }
                session = handle.done().await.map_err(ImapError::from)?;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(s.poll_ms)) => {}
                    _ = stop.changed() => return Ok(()),
                }
                session.noop().await.map_err(ImapError::from)?;
            }
        }
    }

    /// Reads every message past the cursor, chunk by chunk.
    async fn sync(&mut self, session: &mut Session, cursor: &mut Cursor) -> Outcome {
        loop {
            let found = session
                .uid_search(format!("UID {}:*", cursor.last_uid.saturating_add(1)))
                .await
                .map_err(ImapError::from)?;
            let mut uids: Vec<u32> = found.into_iter().filter(|u| *u > cursor.last_uid).collect();
            if uids.is_empty() {
                return Ok(());
            }
            uids.sort_unstable();
            for chunk in uids.chunks(self.shared.settings.chunk.max(1)) {
                if !self.lock.still_held().await {
                    return Err(None);
                }
                let done = self.chunk(session, cursor.uid_validity, chunk).await?;
                if let Some(&last) = done.last() {
                    cursor.last_uid = last;
                    let pool = &self.shared.db.pool;
                    mailboxes::save_cursor(pool, self.org_id, self.key, *cursor, now_ms())
                        .await
                        .map_err(ImapError::from)?;
                }
                if done.len() < chunk.len() {
                    return Err(Some(ImapError::Commit(
                        "a message could not be committed yet".into(),
                    )));
                }
            }
        }
    }

    /// Fetches, parses and commits one chunk; flags what was committed. Returns the UIDs
    /// done, a prefix of `chunk` (it stops at the first message that has to be retried).
    async fn chunk(
        &mut self,
        session: &mut Session,
        validity: u32,
        chunk: &[u32],
    ) -> Result<Vec<u32>, Option<ImapError>> {
        let set = uid_set(chunk);
        let max = self.shared.settings.max_message_bytes;
        let mut sizes = HashMap::new();
        {
            let mut stream = session
                .uid_fetch(&set, "(UID RFC822.SIZE)")
                .await
                .map_err(ImapError::from)?;
            while let Some(f) = stream.next().await {
                let f = f.map_err(ImapError::from)?;
                if let (Some(uid), Some(size)) = (f.uid, f.size) {
                    sizes.insert(uid, size as u64);
                }
            }
        }
        let wanted: Vec<u32> = chunk
            .iter()
            .copied()
            .filter(|u| sizes.get(u).is_some_and(|s| *s <= max))
            .collect();
        let mut raw: HashMap<u32, Vec<u8>> = HashMap::new();
        if !wanted.is_empty() {
            let mut stream = session
                .uid_fetch(uid_set(&wanted), "(UID BODY.PEEK[])")
                .await
                .map_err(ImapError::from)?;
            while let Some(f) = stream.next().await {
                let f = f.map_err(ImapError::from)?;
                if let (Some(uid), Some(body)) = (f.uid, f.body()) {
                    raw.insert(uid, body.to_vec());
                }
            }
        }
        // Parsing is CPU work: off the async threads, one blocking task per chunk.
        let (to, cap) = (
            self.config.address.to_lowercase(),
            self.config.max_attachment_bytes,
        );
        let order: Vec<u32> = chunk.to_vec();
        let parsed: Vec<(u32, Parsed)> = tokio::task::spawn_blocking(move || {
            order
                .into_iter()
                .map(|uid| {
                    let p = match (raw.get(&uid), sizes.get(&uid)) {
                        (Some(bytes), _) => parse::parse(bytes, &to, cap),
                        (None, Some(size)) if *size > max => {
                            Parsed::Rejected(format!("{size} bytes is over the {max}-byte limit"))
                        }
                        // Expunged between SEARCH and FETCH: nothing left to read.
                        (None, _) => Parsed::Ignored("gone from the folder".into()),
                    };
                    (uid, p)
                })
                .collect()
        })
        .await
        .map_err(|e| ImapError::Commit(format!("parser task: {e}")))?;
        let commits = parsed
            .iter()
            .map(|(_, p)| commit(self.shared, self.org_id, p));
        let results = futures_util::future::join_all(commits).await;
        let mut done = Vec::new();
        let mut seen = Vec::new();
        for ((uid, _), result) in parsed.iter().zip(results) {
            match result {
                Done::Committed => seen.push(*uid),
                Done::Rejected(reason) => {
                    let at = (validity, *uid);
                    let pool = &self.shared.db.pool;
                    mailboxes::record_reject(pool, self.org_id, self.key, at, &reason, now_ms())
                        .await
                        .map_err(ImapError::from)?;
                    tracing::warn!(org_id = %self.org_id, mailbox = %self.key, uid, %reason, "mail refused");
                    MailCounted {
                        outcome: "rejected",
                    }
                    .emit();
                }
                Done::Retry(e) => {
                    tracing::warn!(org_id = %self.org_id, uid, error = %e, "mail not committed; will retry");
                    break;
                }
            }
            done.push(*uid);
        }
        if !seen.is_empty() {
            let mut stream = session
                .uid_store(uid_set(&seen), "+FLAGS.SILENT (\\Seen)")
                .await
                .map_err(ImapError::from)?;
            while let Some(r) = stream.next().await {
                r.map_err(ImapError::from)?;
            }
            drop(stream);
            if let Some(to) = &self.config.imap.move_to {
                use async_imap::error::Error::{Bad, No};
                match move_out(session, self.caps, &uid_set(&seen), to).await {
                    Ok(()) => {}
                    // The server refused (no such folder, a name it does not take, no right
                    // to it): the mail stays, `\Seen`, and reading goes on; a move that can
                    // never succeed must not stall the mailbox.
                    Err(ImapError::Protocol(No(why) | Bad(why))) => {
                        tracing::warn!(org_id = %self.org_id, mailbox = %self.key, folder = %to, reason = %why, "could not move stored mail; it stays in the folder read")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(done)
    }
}

/// Moves the stored messages `set` to the folder `to` (see the module docs).
async fn move_out(session: &mut Session, caps: Caps, set: &str, to: &str) -> Result<(), ImapError> {
    if caps.mv {
        return Ok(session.uid_mv(set, to).await?);
    }
    session.uid_copy(set, to).await?;
    {
        let mut stream = session.uid_store(set, "+FLAGS.SILENT (\\Deleted)").await?;
        while let Some(r) = stream.next().await {
            r?;
        }
    }
    if caps.uidplus {
        let stream = session.uid_expunge(set).await?;
        let mut stream = std::pin::pin!(stream);
        while let Some(r) = stream.next().await {
            r?;
        }
    }
    Ok(())
}

/// Commits one parsed message.
async fn commit(shared: &Shared, org_id: &str, parsed: &Parsed) -> Done {
    let org_id = org_id.to_string();
    let op = match parsed {
        Parsed::Message(m) => WriteOp::Inbound {
            org_id,
            provider: "email",
            msg: (**m).clone(),
        },
        Parsed::Status(update) => WriteOp::Status {
            org_id,
            channel: Channel::Email,
            update: update.clone(),
        },
        Parsed::Ignored(_) => {
            MailCounted { outcome: "ignored" }.emit();
            return Done::Committed;
        }
        Parsed::Rejected(reason) => return Done::Rejected(reason.clone()),
    };
    match shared.committer.submit_wait(op).await {
        Ok(WriteResult::Inbound(ingested)) => {
            let outcome = if ingested.duplicate {
                "duplicate"
            } else {
                crate::telemetry::MessageCounted {
                    channel: "email",
                    direction: "inbound",
                    status: "received",
                }
                .emit();
                "stored"
            };
            MailCounted { outcome }.emit();
            if ingested.media_pending {
                shared.media_wake.notify_one();
            }
            Done::Committed
        }
        Ok(_) => {
            MailCounted { outcome: "status" }.emit();
            Done::Committed
        }
        Err(CommitError::Store(e)) if !e.is_transient() => {
            Done::Rejected(format!("the database refused it: {e}"))
        }
        Err(e) => Done::Retry(e.to_string()),
    }
}

/// Drains what the server said on its own; whether it announced new mail.
fn news(mut next: impl FnMut() -> Option<UnsolicitedResponse>) -> bool {
    let mut fresh = false;
    while let Some(r) = next() {
        fresh |= matches!(
            r,
            UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
        );
    }
    fresh
}

enum Done {
    Committed,
    Rejected(String),
    Retry(String),
}

/// An IMAP sequence set for sorted UIDs, with runs as ranges (`1:5,7,9:10`).
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::uid_set;

    #[test]
    fn uid_sets() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }
}
