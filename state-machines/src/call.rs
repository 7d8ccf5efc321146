//! The call machine: one inbound phone call, from INVITE to its end.
//!
//! ```text
//!            Answer              Transfer             TransferAnswered
//!  ringing ─────────▶ answered ───────────▶ transferring ─────────────▶ bridged
//!    │                 │  ▲  ◀──TransferFailed──┘                         │  ▲
//!    │            Hold │  │ Resume                                   Hold │  │ Resume
//!    │                 ▼  │                                               ▼  │
//!    │               on_hold                                      on_hold_bridged
//!    │
//!    └─ Cancel / Busy / NoAnswer / Reject / Fail ─▶ ended{cause}
//!  any answered state ─ CallerHangup / CalleeHangup / MediaTimeout / MaxDuration / Fail /
//!                      Shutdown (any state), NoAck (answered), AgentHangup (bridged) ─▶ ended{cause}
//!  any live state ─ Interrupt (at start-up, after a crash) ─▶ ended{interrupted}, no effects
//! ```
//!
//! [`start`] gives the first state. A step's effects are the state change and, for a call
//! refused before its answer, the INVITE's final status; timers, media, the agent leg and
//! BYEs belong to the SIP user agent, which reports what happened as events (see
//! [`CallEffect`]). Nothing here has a clock. A repeated hold
//! (or resume) re-INVITE changes nothing and is not an error. `ended` is terminal: every
//! event after it is an [`InvalidTransition`] (the SIP layer absorbs retransmissions first).
//!
//! The caller is the phone that called in; the callee is our side (the application or call
//! control); the agent is the phone we bridge to. The SIP user agent's causes map as:
//! remote hangup → `caller_hangup`, local hangup → `callee_hangup`, store failure → `failed`,
//! the others by name.

use crate::InvalidTransition;
use serde::{Deserialize, Serialize};

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndCause {
    /// The caller sent BYE.
    CallerHangup,
    /// Our side (the application or call control) hung up.
    CalleeHangup,
    /// The agent the caller was bridged to hung up.
    AgentHangup,
    /// The caller cancelled before we answered.
    Cancelled,
    /// Refused because of a limit (concurrent calls, rate): 486.
    Busy,
    /// Not answered in time: 480.
    NoAnswer,
    /// Refused for another reason (no route, no codec): the status is in the history.
    Rejected,
    /// No RTP from the caller for the media timeout.
    MediaTimeout,
    /// The call reached the configured maximum duration.
    MaxDuration,
    /// Our 200 OK was never acknowledged (RFC 3261 Timer H).
    NoAck,
    /// The gateway shut down.
    Shutdown,
    /// An internal, storage or transport failure.
    Failed,
    /// The gateway that ran the call stopped without ending it (a crash); found live at
    /// the next start-up and ended then.
    Interrupted,
}

impl EndCause {
    /// Every cause.
    pub const ALL: [EndCause; 13] = [
        EndCause::CallerHangup,
        EndCause::CalleeHangup,
        EndCause::AgentHangup,
        EndCause::Cancelled,
        EndCause::Busy,
        EndCause::NoAnswer,
        EndCause::Rejected,
        EndCause::MediaTimeout,
        EndCause::MaxDuration,
        EndCause::NoAck,
        EndCause::Shutdown,
        EndCause::Failed,
        EndCause::Interrupted,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndCause::CallerHangup => "caller_hangup",
            EndCause::CalleeHangup => "callee_hangup",
            EndCause::AgentHangup => "agent_hangup",
            EndCause::Cancelled => "cancelled",
            EndCause::Busy => "busy",
            EndCause::NoAnswer => "no_answer",
            EndCause::Rejected => "rejected",
            EndCause::MediaTimeout => "media_timeout",
            EndCause::MaxDuration => "max_duration",
            EndCause::NoAck => "no_ack",
            EndCause::Shutdown => "shutdown",
            EndCause::Failed => "failed",
            EndCause::Interrupted => "interrupted",
        }
    }

    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<EndCause> {
        EndCause::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the call was a normal clearing (a hangup by either side).
    pub fn is_normal_clearing(self) -> bool {
        matches!(
            self,
            EndCause::CallerHangup | EndCause::CalleeHangup | EndCause::AgentHangup
        )
    }
}

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum CallState {
    /// INVITE received, not answered yet.
    Ringing,
    /// Answered; the application has the call.
    Answered,
    /// Put on hold by the caller.
    OnHold {
        /// Whether it was bridged to an agent (resume goes back there).
        bridged: bool,
    },
    /// A leg to an agent is being set up; the application still has the caller.
    Transferring,
    /// The caller talks to an agent through our B2BUA.
    Bridged,
    /// Over (terminal).
    Ended {
        /// Why.
        cause: EndCause,
    },
}

impl CallState {
    /// Every state except `ended`, which takes a cause (see [`CallState::all`]).
    pub const LIVE: [CallState; 6] = [
        CallState::Ringing,
        CallState::Answered,
        CallState::OnHold { bridged: false },
        CallState::OnHold { bridged: true },
        CallState::Transferring,
        CallState::Bridged,
    ];

    /// Every state, each `ended` cause included.
    pub fn all() -> Vec<CallState> {
        let mut v = CallState::LIVE.to_vec();
        v.extend(EndCause::ALL.map(|cause| CallState::Ended { cause }));
        v
    }

    /// The stable name stored in the database and events (`ended` carries its cause apart).
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Ringing => "ringing",
            CallState::Answered => "answered",
            CallState::OnHold { bridged: false } => "on_hold",
            CallState::OnHold { bridged: true } => "on_hold_bridged",
            CallState::Transferring => "transferring",
            CallState::Bridged => "bridged",
            CallState::Ended { .. } => "ended",
        }
    }

    /// The end cause, when ended.
    pub fn cause(self) -> Option<EndCause> {
        match self {
            CallState::Ended { cause } => Some(cause),
            _ => None,
        }
    }

    /// Parses a stored (name, cause) pair; `ended` needs a cause, the others none.
    pub fn parse(name: &str, cause: Option<&str>) -> Option<CallState> {
        match (name, cause) {
            ("ended", Some(c)) => EndCause::parse(c).map(|cause| CallState::Ended { cause }),
            (_, None) => CallState::LIVE.into_iter().find(|s| s.as_str() == name),
            _ => None,
        }
    }

    /// `ended` never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(self, CallState::Ended { .. })
    }
}

/// What can happen to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEvent {
    /// We answer: the 200 OK goes out once this transition is committed.
    Answer,
    /// CANCEL from the caller.
    Cancel,
    /// A limit refuses the call.
    Busy,
    /// The no-answer timer fired.
    NoAnswer,
    /// We refuse the call with this SIP status (no route 404, no codec 488, ...).
    Reject {
        /// The final status sent.
        status: u16,
    },
    /// A re-INVITE with a `sendonly`/`inactive` offer.
    Hold,
    /// A re-INVITE with `sendrecv` again.
    Resume,
    /// The application (or a REFER) asks to transfer to an agent.
    Transfer,
    /// The agent leg answered.
    TransferAnswered,
    /// The agent leg failed (busy, no answer, error).
    TransferFailed,
    /// BYE from the caller.
    CallerHangup,
    /// The application (or call control) hangs up.
    CalleeHangup,
    /// BYE from the bridged agent.
    AgentHangup,
    /// Timer H fired: the caller never acknowledged our 200 OK.
    NoAck,
    /// The gateway is shutting down.
    Shutdown,
    /// The media session reported no RTP for its timeout.
    MediaTimeout,
    /// The max-duration timer fired.
    MaxDuration,
    /// A failure we cannot recover from.
    Fail,
    /// At start-up: the call was left live by a gateway that stopped without ending it.
    /// Nothing of the call runs any more, so this ends it with no effect but the change.
    Interrupt,
}

impl CallEvent {
    /// The stable name of the event.
    pub fn name(self) -> &'static str {
        match self {
            CallEvent::Answer => "answer",
            CallEvent::Cancel => "cancel",
            CallEvent::Busy => "busy",
            CallEvent::NoAnswer => "no_answer",
            CallEvent::Reject { .. } => "reject",
            CallEvent::Hold => "hold",
            CallEvent::Resume => "resume",
            CallEvent::Transfer => "transfer",
            CallEvent::TransferAnswered => "transfer_answered",
            CallEvent::TransferFailed => "transfer_failed",
            CallEvent::CallerHangup => "caller_hangup",
            CallEvent::CalleeHangup => "callee_hangup",
            CallEvent::AgentHangup => "agent_hangup",
            CallEvent::NoAck => "no_ack",
            CallEvent::Shutdown => "shutdown",
            CallEvent::MediaTimeout => "media_timeout",
            CallEvent::MaxDuration => "max_duration",
            CallEvent::Fail => "fail",
            CallEvent::Interrupt => "interrupt",
        }
    }
}

/// What the runtime must do after a step, besides what it does on its own.
///
/// The machine decides the state and, for a call refused before it was answered, the final
/// status of its INVITE. Timers, media, the agent leg and BYEs belong to the SIP user agent
/// (`voice::ua`), which drives them from SIP and RTP and reports what happened as events;
/// effects for them were once listed here, but nothing acted on them, so they went (issue 9:
/// one vocabulary, and no effect a newcomer would expect to be carried out that is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEffect {
    /// Persist the new state and publish `dartwing.call.state_changed.v1`.
    Changed {
        /// Before.
        from: CallState,
        /// After.
        to: CallState,
    },
    /// Send this final status to the INVITE.
    RejectInvite {
        /// 4xx/5xx/6xx.
        status: u16,
    },
}

/// The first state of an inbound call and its effects (none: ringing is where it starts).
pub fn start() -> (CallState, Vec<CallEffect>) {
    (CallState::Ringing, Vec::new())
}

/// One step of the call machine.
pub fn step(
    state: CallState,
    event: CallEvent,
) -> Result<(CallState, Vec<CallEffect>), InvalidTransition> {
    use CallEffect::{Changed, RejectInvite};
    use CallEvent as E;
    use CallState::*;
    let invalid = || InvalidTransition {
        machine: "call",
        state: state.as_str(),
        event: event.name(),
    };
    let mut effects = Vec::new();
    let next = match (state, event) {
        (Ended { .. }, _) => return Err(invalid()),
        // The runtime that held the call is gone.
        (_, E::Interrupt) => Ended {
            cause: EndCause::Interrupted,
        },
        (Ringing, E::Answer) => Answered,
        (Ringing, E::Cancel | E::Busy | E::NoAnswer | E::Reject { .. } | E::Fail | E::Shutdown) => {
            let (cause, status) = match event {
                E::Cancel => (EndCause::Cancelled, 487),
                E::Busy => (EndCause::Busy, 486),
                E::NoAnswer => (EndCause::NoAnswer, 480),
                E::Reject { status } => (EndCause::Rejected, status),
                E::Shutdown => (EndCause::Shutdown, 503),
                _ => (EndCause::Failed, 500),
            };
            effects.push(RejectInvite { status });
            Ended { cause }
        }
        (Ringing, _) => return Err(invalid()),
        (Answered, E::Hold) => OnHold { bridged: false },
        (Bridged, E::Hold) => OnHold { bridged: true },
        (OnHold { .. }, E::Hold) => state,
        (OnHold { bridged }, E::Resume) => {
            if bridged {
                Bridged
            } else {
                Answered
            }
        }
        (Answered | Bridged, E::Resume) => state,
        (Answered, E::Transfer) => Transferring,
        (Transferring, E::TransferAnswered) => Bridged,
        // The agent did not answer (or the ring timer ran out): back to the application.
        (Transferring, E::TransferFailed) => Answered,
        (Answered, E::NoAck)
        | (Bridged | OnHold { bridged: true }, E::AgentHangup)
        | (
            _,
            E::CallerHangup
            | E::CalleeHangup
            | E::MediaTimeout
            | E::MaxDuration
            | E::Fail
            | E::Shutdown,
        ) => {
            let cause = match event {
                E::CallerHangup => EndCause::CallerHangup,
                E::CalleeHangup => EndCause::CalleeHangup,
                E::AgentHangup => EndCause::AgentHangup,
                E::NoAck => EndCause::NoAck,
                E::MediaTimeout => EndCause::MediaTimeout,
                E::MaxDuration => EndCause::MaxDuration,
                E::Shutdown => EndCause::Shutdown,
                _ => EndCause::Failed,
            };
            Ended { cause }
        }
        _ => return Err(invalid()),
    };
    if next != state {
        effects.insert(
            0,
            Changed {
                from: state,
                to: next,
            },
        );
    }
    Ok((next, effects))
}

#[cfg(test)]
mod tests;
