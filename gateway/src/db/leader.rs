//! Relay leadership across gateway nodes on one PostgreSQL database.
//!
//! Exactly one node's relay numbers and publishes the outbox at a time: it holds a
//! session-level advisory lock on a dedicated connection. If that node dies, PostgreSQL ends
//! its session and another node's next try takes the lock. SQLite is single-node: the relay
//! is always the leader there.
//!
//! The numbering itself ([`crate::db::outbox::sequence`]) also takes a transaction-level
//! advisory lock, so even a leader that lost its session mid-round (network cut) cannot
//! number rows beside the new leader: the second waits and then sees the first's numbers.

use super::{Backend, Db, StoreError};
use sqlx::{AnyConnection, Row};

/// The advisory lock key of relay leadership ("dwrelay" in ASCII).
pub const RELAY_LEADER_KEY: i64 = 0x0064_7772_656c_6179;
/// The advisory lock key taken inside the numbering transaction ("dwseq" in ASCII).
pub const SEQUENCE_KEY: i64 = 0x0000_0064_7773_6571;

/// This node's claim to relay leadership.
pub struct Leadership {
    db: Db,
    held: Option<AnyConnection>,
}

impl Leadership {
    /// Not yet leader.
    pub fn new(db: Db) -> Leadership {
        Leadership { db, held: None }
    }

    /// Whether this node is the leader now, trying to become it if not. A lost session
    /// (its connection fails a ping) gives leadership up.
    pub async fn ensure(&mut self) -> Result<bool, StoreError> {
        if self.db.backend == Backend::Sqlite {
            return Ok(true);
        }
        if let Some(conn) = self.held.as_mut() {
            if sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {
                return Ok(true);
            }
            tracing::warn!("relay leader session lost; trying to take leadership again");
            self.held = None;
        }
        let mut conn = self.db.pool.acquire().await?;
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LEADER_KEY)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        if got {
            tracing::info!("this node now relays the outbox");
            // The connection leaves the pool for good: its session holds the lock, and closing
            // it (drop, or the process dying) releases it.
            self.held = Some(conn.detach());
        }
        Ok(got)
    }
}
