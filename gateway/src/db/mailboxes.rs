//! IMAP mailboxes: the email accounts to read, each mailbox's cursor (UIDVALIDITY and the last
//! UID committed), the messages it refused with their reasons, and the lock that makes one
//! node at a time the reader of a mailbox.
//!
//! Invariant: `last_uid` only moves past a UID once that message is committed (or refused and
//! recorded here). A crash between the commit and the cursor update reads the message again,
//! and the provider-id dedupe of the ingest path makes that a no-op: stored exactly once.

use super::{Backend, Db, StoreError};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, AnyPool, Row};

/// A stored email account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAccount {
    /// The account's id.
    pub id: String,
    /// Its org.
    pub org_id: String,
    /// Its configuration, JSON (`channels::email::EmailConfig`).
    pub config: String,
}

/// Every org's email accounts, their configurations opened (they are sealed at rest; one
/// that cannot be opened comes back empty, which the reader reports as unusable).
pub async fn email_accounts(pool: &AnyPool) -> Result<Vec<EmailAccount>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, org_id, config FROM channel_accounts WHERE provider = 'email' ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let org_id: String = r.try_get(1)?;
            let stored: String = r.try_get(2)?;
            let config = crate::secrets::open(&org_id, "email", &stored).unwrap_or_else(|e| {
                tracing::error!(%org_id, error = %e, "an email account's configuration cannot be opened");
                String::new()
            });
            Ok(EmailAccount {
                id: r.try_get(0)?,
                org_id,
                config,
            })
        })
        .collect()
}

/// Where reading a mailbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The folder's UIDVALIDITY the UIDs belong to.
    pub uid_validity: u32,
    /// The highest UID done (committed and flagged, or refused and recorded).
    pub last_uid: u32,
}

/// A mailbox's cursor, if it was read before.
pub async fn cursor(
    pool: &AnyPool,
    org_id: &str,
    mailbox: &str,
) -> Result<Option<Cursor>, StoreError> {
    let row = sqlx::query(
        "SELECT uid_validity, last_uid FROM email_mailboxes WHERE org_id = $1 AND mailbox = $2",
    )
    .bind(org_id)
    .bind(mailbox)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(Cursor {
            uid_validity: r.try_get::<i64, _>(0)? as u32,
            last_uid: r.try_get::<i64, _>(1)? as u32,
        })
    })
    .transpose()
}

/// Stores a mailbox's cursor.
pub async fn save_cursor(
    pool: &AnyPool,
    org_id: &str,
    mailbox: &str,
    cursor: Cursor,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO email_mailboxes (org_id, mailbox, uid_validity, last_uid, updated_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, mailbox) DO UPDATE SET \
         uid_validity = excluded.uid_validity, last_uid = excluded.last_uid, \
         updated_at = excluded.updated_at",
    )
    .bind(org_id)
    .bind(mailbox)
    .bind(cursor.uid_validity as i64)
    .bind(cursor.last_uid as i64)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a message the mailbox could not store, with the reason (once per UID).
pub async fn record_reject(
    pool: &AnyPool,
    org_id: &str,
    mailbox: &str,
    (uid_validity, uid): (u32, u32),
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO email_rejects (org_id, mailbox, uid_validity, uid, reason, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (org_id, mailbox, uid_validity, uid) DO NOTHING",
    )
    .bind(org_id)
    .bind(mailbox)
    .bind(uid_validity as i64)
    .bind(uid as i64)
    .bind(reason)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// This node's claim on one mailbox. On PostgreSQL a session-level advisory lock held on a
/// connection of its own: when the node dies its session ends, the lock goes, and another
/// node's next try takes the mailbox over. SQLite is one node: always the owner.
pub struct MailboxLock {
    held: Option<AnyConnection>,
}

/// The advisory lock key of a mailbox: the first 8 bytes of SHA-256 of its org and key.
pub fn lock_key(org_id: &str, mailbox: &str) -> i64 {
    let digest = Sha256::digest(format!("dartwing-mailbox:{org_id}:{mailbox}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

impl MailboxLock {
    /// Takes the mailbox if no other node holds it; `None` when another does.
    pub async fn try_take(
        db: &Db,
        org_id: &str,
        mailbox: &str,
    ) -> Result<Option<MailboxLock>, StoreError> {
        if db.backend == Backend::Sqlite {
            return Ok(Some(MailboxLock { held: None }));
        }
        let mut conn = db.pool.acquire().await?;
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(lock_key(org_id, mailbox))
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        // The connection leaves the pool: its session holds the lock until it closes.
        Ok(got.then(|| MailboxLock {
            held: Some(conn.detach()),
        }))
    }

    /// Whether the claim still holds (its session answers).
    pub async fn still_held(&mut self) -> bool {
        match self.held.as_mut() {
            None => true,
            Some(conn) => sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok(),
        }
    }
}
