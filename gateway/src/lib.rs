//! Dartwing Gateway's wiring crate: configuration, the HTTP API and webhooks (axum), storage
//! (sqlx over SQLite or PostgreSQL), group commit, the transactional outbox and its relay, the
//! send worker, metrics and the CLI. It is the only crate that knows sqlx and axum exist; the
//! domain (`state-machines`) and the providers (`channels`) know nothing of them.
//!
//! The inbound path, which every channel follows:
//!
//! ```text
//!  provider ─▶ api::webhooks ─▶ plugin.handle_webhook (signature, parse; no I/O)
//!           ─▶ commit (group commit: dedupe, contact, conversation, message, outbox row)
//!           ─▶ 2xx only after COMMIT ─▶ relay numbers events per org ─▶ sinks / subscribers
//! ```
//!
//! The outbound path: `POST /api/v1/messages` ─▶ `queued` + outbox in one transaction ─▶
//! [`sender`] claims it ─▶ plugin.send with rate limit and circuit breaker ─▶ `sent`, or retry
//! with backoff, or `failed` + dead letter ─▶ provider callbacks move it to `delivered`/`read`.
//!
//! Broadcasts: `POST /api/v1/broadcasts` ─▶ broadcast + audience chunks ─▶ [`alerts`] runs the
//! `broadcast` engine: chunks expand into recipients, due recipients get their next rung as a
//! bulk outbound message (the same path, behind conversation messages) ─▶ replies, confirm
//! links and failures move each recipient's machine.

pub mod alerts;
pub mod api;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod commit;
pub mod config;
pub mod db;
pub mod email;
pub mod events;
pub mod http_serve;
pub mod inbox;
pub mod kafka;
pub mod logging;
pub mod media;
pub mod memory;
pub mod outhooks;
pub mod plugins;
pub mod receptionist;
pub mod relay;
pub mod retention;
pub mod secrets;
pub mod sender;
pub mod server;
pub mod telemetry;
pub mod voice;
pub mod voice_out;
