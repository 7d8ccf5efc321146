//! Workspace-level integration suites against real peers: a real SQLite file, a real
//! PostgreSQL server, the real gateway (in-process or as its binary), and local stand-ins for
//! Twilio, Meta and Telnyx that speak their documented wire formats, signatures included.
//!
//! - [`agent`]: an inbox agent: created, logged in, on a real WebSocket.
//! - [`baresip`]: a real SIP user agent (headless baresip) for the voice suites.
//! - [`chat`]: an OpenAI-compatible chat-completions stand-in that streams SSE (the
//!   receptionist's remote model).
//! - [`env`]: a fresh database per test on either backend, and a running gateway over it.
//! - [`mail`]: a real Dovecot IMAP server and an aiosmtpd SMTP receiver per test.
//! - [`twilio`]: the Twilio stand-in (Messages REST API) and signed webhook senders.
//! - [`whatsapp`]: the Graph API stand-in (messages, media) and signed deliveries.
//! - [`telnyx`]: the Telnyx Messaging v2 stand-in and Ed25519-signed webhooks.
//! - [`broker`]: a real Kafka-protocol broker (tansu) per test, which can be stopped and
//!   restarted to make an outage.
//! - [`pg`]: a private PostgreSQL cluster a test stops and starts (a database restart).
//! - [`proxy`]: a loopback TCP proxy a test cuts and restores (a network outage).
//! - [`schema`]: the event JSON Schemas of `docs/events/` and a checker for them.
//! - [`sip`]: a plain UDP SIP client (REGISTER with digest, INVITE/ACK, INFO DTMF).
//! - [`speech`]: espeak-ng + sox caller speech through µ-law, and whisper to hear replies.
//!
//! PostgreSQL comes from `DARTWING_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); `scripts/test.sh` installs and starts it.
//! A test that needs it and cannot reach it fails; it never skips.

pub mod agent;
pub mod baresip;
pub mod broker;
pub mod chat;
pub mod env;
pub mod mail;
pub mod pg;
pub mod proxy;
pub mod schema;
pub mod sip;
pub mod speech;
pub mod telnyx;
pub mod twilio;
pub mod whatsapp;

/// Runs an async test body `async fn name(Backend)` once per backend: `both_backends!(name)`
/// defines the tests `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::env::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::env::Backend::Postgres).await
            }
        }
    };
}
