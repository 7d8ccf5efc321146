//! Storage: one code path over SQLite (the embedded default) and PostgreSQL, through sqlx's
//! `Any` driver with runtime queries (`$1` placeholders work on both).
//!
//! Every table carries `org_id` and every query here takes the org it is scoped to; a lookup
//! by id in another org finds nothing, which the API turns into 404.
//! Timestamps are Unix milliseconds; ids are UUID v7 text (time-ordered, so indexes stay warm).
//!
//! Writes that answer a provider or a client go through [`crate::commit`] (group commit);
//! the functions in the submodules that take `&mut AnyConnection` run inside its transaction.

pub mod agents;
pub mod appointments;
pub mod audit;
pub mod broadcast_expand;
pub mod broadcast_replies;
pub mod broadcast_run;
mod broadcast_rungs;
pub mod broadcast_views;
pub mod broadcasts;
pub mod calls;
pub mod calls_bulk;
pub mod contacts;
pub mod conversations;
pub mod dead_letters;
pub mod email_threads;
pub mod inbox;
pub mod inbox_views;
pub mod ingest;
pub mod ingest_bulk;
pub mod leader;
pub mod mailboxes;
pub mod media;
pub mod message_views;
pub mod messages;
mod nodelay;
pub mod org_settings;
pub mod orgs;
pub mod outbound_bulk;
pub mod outbox;
pub mod pending;
pub mod receptionist;
pub mod sender_pace;
pub mod sends;
pub mod sip_agents;
pub mod sql;
pub mod threads_bulk;
pub mod webhooks;
pub mod windows;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which database is behind the `Any` pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in WAL mode, one file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Storage errors, classified for retry decisions.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or refused a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored JSON column did not parse (a bug or a manual edit).
    #[error("stored data is corrupt in {what}: {detail}")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// The parse error.
        detail: String,
    },
    /// The migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// An id that exists but belongs to another organization (never crosses tenants).
    #[error("{what} belongs to another organization")]
    ForeignId {
        /// What kind of id.
        what: &'static str,
    },
    /// A whole batch of writes failed (its commit, or its connection); each job of it gets
    /// this, classified as the batch's error was.
    #[error("{message}")]
    BatchFailed {
        /// The batch's error.
        message: String,
        /// Whether it was transient ([`StoreError::is_transient`]).
        transient: bool,
        /// Whether the disk was full ([`StoreError::is_out_of_space`]).
        out_of_space: bool,
    },
    /// The database URL is not one we support.
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// Deadlocks, serialization failures and a busy SQLite: worth running again.
    pub fn is_transient(&self) -> bool {
        if let StoreError::BatchFailed { transient, .. } = self {
            return *transient;
        }
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Database(db) => matches!(
                db.code().as_deref(),
                Some("40001" | "40P01" | "55P03" | "5" | "6" | "517" | "261")
            ),
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
            _ => false,
        }
    }

    /// The database's disk is full (SQLite's `SQLITE_FULL`, PostgreSQL's `disk_full`): a
    /// write may pass once space returns.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            StoreError::BatchFailed { out_of_space, .. } => *out_of_space,
            StoreError::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("13" | "53100"))
            }
            _ => false,
        }
    }

    /// A copy of a [`StoreError::BatchFailed`] for each job of the batch.
    pub fn clone_batch(&self) -> StoreError {
        match self {
            StoreError::BatchFailed {
                message,
                transient,
                out_of_space,
            } => StoreError::BatchFailed {
                message: message.clone(),
                transient: *transient,
                out_of_space: *out_of_space,
            },
            other => StoreError::BatchFailed {
                message: other.to_string(),
                transient: other.is_transient(),
                out_of_space: other.is_out_of_space(),
            },
        }
    }

    /// A unique constraint refused an insert.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(db))
            if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
    }
}

/// The connection pool and which backend it talks to.
#[derive(Clone)]
pub struct Db {
    /// The pool; reads use it directly, writes go through the committer.
    pub pool: AnyPool,
    /// The backend.
    pub backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../sql/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../sql/postgres");

impl Db {
    /// Connects (creating the SQLite file and its folder if needed). Does not migrate.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let mut url = url.to_string();
        if backend == Backend::Sqlite {
            prepare_sqlite_path(&url);
            if !url.contains("mode=") {
                url.push_str(if url.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
        }
        let mut opts = AnyConnectOptions::from_str(&url)?;
        let pg_port = reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| u.port())
            .unwrap_or(5432);
        // Every statement at `debug` on target `sqlx::query`, with its time, only when asked
        // (`DARTWING_LOG_SQL=1` and a log filter such as `sqlx::query=debug`): where the
        // database time of a workload goes (BENCHMARKS.md, the broadcast section).
        if std::env::var_os("DARTWING_LOG_SQL").is_none() {
            opts = opts.disable_statement_logging();
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer; FULL makes each commit
                        // durable (fsync of the WAL) before we acknowledge anything.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = FULL",
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA busy_timeout = 10000",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    } else {
                        nodelay::set_on_sockets_to(pg_port);
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        Ok(Db { pool, backend })
    }

    /// Applies every pending migration of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Whether this is a PostgreSQL server whose autovacuum is switched off: nothing then
    /// analyzes the growing tables, and ingest slows as they grow (measured fourfold in
    /// BENCHMARKS.md) unless the operator runs `ANALYZE` regularly.
    pub async fn autovacuum_off(&self) -> Result<bool, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(false);
        }
        let setting: Option<String> =
            sqlx::query_scalar("SELECT setting FROM pg_settings WHERE name = 'autovacuum'")
                .fetch_optional(&self.pool)
                .await?;
        Ok(setting.as_deref() == Some("off"))
    }

    /// Round trip to the database, for `/health`.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let start = std::time::Instant::now();
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(start.elapsed())
    }
}

fn prepare_sqlite_path(url: &str) {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return;
    }
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
}

/// Now, in Unix microseconds.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Now, Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A new time-ordered id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Whether a connection (inside a committer transaction) talks to PostgreSQL, where several
/// gateway nodes may share the database and row locks must be taken explicitly.
/// Begins a transaction that will write. On SQLite the write lock is taken up front
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads first fails at once (SQLITE_BUSY,
/// no busy wait) if another connection wrote in between, and the committer is not the only
/// writer (the CLI while the gateway runs, the webhook worker's and API keys' bookkeeping).
/// IMMEDIATE waits for the lock instead.
pub async fn begin_write(
    conn: &mut sqlx::AnyConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Any>, sqlx::Error> {
    if is_postgres(conn) {
        sqlx::Connection::begin(conn).await
    } else {
        sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await
    }
}

pub fn is_postgres(conn: &sqlx::AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("postgresql")
}
