//! The domain of Dartwing Gateway and every lifecycle as a pure function.
//!
//! What lives here: the vocabulary (channels, directions, message and conversation states)
//! and one table per machine, each written as
//! `step(state, event) -> Result<(state, Vec<Effect>), InvalidTransition>`.
//! What does not: I/O of any kind, clocks, tokio, storage. The runtime (`gateway`) persists
//! the new state and acts on the effects; timers and publishes are effects, never side effects.
//!
//! Machines:
//! - [`delivery`]: an outbound (or inbound) message's delivery status, ranked so late,
//!   duplicate and out-of-order provider callbacks only ever move it forward.
//! - [`conversation`]: open / pending / resolved, reopened by new inbound.
//! - [`call`]: a phone call from ringing through answered, hold, transfer and bridge to
//!   ended with a cause.
//! - [`recipient`]: one broadcast recipient over the channel ladder: pending, sent at step n,
//!   confirmed, not confirmed, unreachable, opted out.

pub mod call;
pub mod conversation;
pub mod delivery;
pub mod domain;
pub mod recipient;

pub use call::{CallEffect, CallEvent, CallState, EndCause};
pub use conversation::{ConversationEvent, ConversationState};
pub use delivery::{DeliveryEvent, DeliveryState};
pub use domain::{Channel, Direction};
pub use recipient::{RecipientEffect, RecipientEvent, RecipientState};

/// A pair (state, event) that the machine's table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{machine}: event `{event}` is not allowed in state `{state}`")]
pub struct InvalidTransition {
    /// Which machine refused.
    pub machine: &'static str,
    /// The state it was in (its stable name).
    pub state: &'static str,
    /// The event it was given (its stable name).
    pub event: &'static str,
}
