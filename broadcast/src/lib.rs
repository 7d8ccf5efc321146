//! Broadcast alerts: an org's alert fanned out to many people over a ladder of channels
//! (SMS now, a call later, an email after that), each recipient escalated until it
//! acknowledges, opts out or runs out of rungs.
//!
//! What lives here is pure or behind a port:
//! - [`spec`]: the request, checked into a [`spec::Spec`] and a recipient list;
//!   [`csv`] reads recipients from a CSV upload.
//! - [`plan`]: what a recipient needs next (send rung k, wait, finish), from its progress.
//!   Its state moves by the `recipient` machine of `state-machines`.
//! - [`quiet`]: quiet hours in the recipient's own time zone.
//! - [`ack`]: which replies acknowledge; [`token`]: the email step's signed confirm link.
//! - [`engine`]: the loop over the [`engine::Store`] port, which the gateway implements on
//!   its database and send queue (so sends share the outbound path: rate limits, retries,
//!   dead letters, status callbacks).

pub mod ack;
pub mod csv;
pub mod engine;
pub mod plan;
pub mod quiet;
pub mod spec;
pub mod token;

pub use engine::{EngineSettings, Store, Tick};
pub use plan::{plan, Action, Progress};
pub use spec::{BroadcastRequest, Checked, Recipient, Spec, SpecError};
