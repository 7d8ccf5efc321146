//! The machine of one broadcast recipient, walking the broadcast's channel ladder.
//!
//! ```text
//!            Send(0)            Send(n+1) (escalation: not confirmed in time)
//!  pending ──────────▶ sent ─────────┐
//!     │                 │  ▲─────────┘
//!     │                 ├── Confirm ──────────────▶ confirmed
//!     │                 ├── Exhaust(delivered) ───▶ not_confirmed ─┐
//!     ├── Exhaust ──────┴── Exhaust(nothing) ─────▶ unreachable  ─┴─ Confirm: late, counted apart
//!     └── OptOut ───────┴── OptOut ───────────────▶ opted_out
//! ```
//!
//! The step index (which rung of the ladder was sent last) is data beside the state, not a
//! state: `Send(n)` only moves forward (`n` above the last step sent). `confirmed`,
//! `not_confirmed`, `unreachable` and `opted_out` are terminal; a confirmation that arrives
//! after `not_confirmed` or `unreachable` leaves the state as it is and is reported as
//! [`RecipientEffect::LateConfirmation`], so the runtime counts it apart.

use crate::InvalidTransition;
use serde::{Deserialize, Serialize};

/// Where a recipient of a broadcast is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    /// Expanded, nothing sent yet (or held by quiet hours).
    Pending,
    /// A step of the ladder went out; waiting for an acknowledgement or the next step.
    Sent,
    /// The recipient acknowledged (terminal).
    Confirmed,
    /// Every step went out, at least one was delivered, nobody acknowledged (terminal).
    NotConfirmed,
    /// No step could be delivered: no address, every send failed (terminal).
    Unreachable,
    /// The recipient opted out (STOP) before or during the broadcast (terminal).
    OptedOut,
}

impl RecipientState {
    /// Every state, for exhaustive tests, parsing and counts.
    pub const ALL: [RecipientState; 6] = [
        RecipientState::Pending,
        RecipientState::Sent,
        RecipientState::Confirmed,
        RecipientState::NotConfirmed,
        RecipientState::Unreachable,
        RecipientState::OptedOut,
    ];

    /// No event moves it again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RecipientState::Pending | RecipientState::Sent)
    }

    /// The stable name used in the database, the API and events.
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientState::Pending => "pending",
            RecipientState::Sent => "sent",
            RecipientState::Confirmed => "confirmed",
            RecipientState::NotConfirmed => "not_confirmed",
            RecipientState::Unreachable => "unreachable",
            RecipientState::OptedOut => "opted_out",
        }
    }

    /// Parses a stable name; `None` for anything else.
    pub fn parse(s: &str) -> Option<RecipientState> {
        RecipientState::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What can happen to a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientEvent {
    /// Step `step` of the ladder was queued for sending. `last` is the step sent before
    /// (`None` when nothing was sent).
    Send {
        /// The step now sent.
        step: u32,
        /// The step sent before, if any.
        last: Option<u32>,
    },
    /// An acknowledgement arrived (SMS reply, button, email link, keypress).
    Confirm,
    /// No step is left (or acknowledgement is not required and the ladder is done).
    /// `delivered`: whether any step reached the recipient.
    Exhaust {
        /// Whether any step's message was not a failure.
        delivered: bool,
    },
    /// The recipient opted out of the channel it is reached on.
    OptOut,
}

impl RecipientEvent {
    /// The stable name of the event, for history and errors.
    pub fn name(self) -> &'static str {
        match self {
            RecipientEvent::Send { .. } => "send",
            RecipientEvent::Confirm => "confirm",
            RecipientEvent::Exhaust { .. } => "exhaust",
            RecipientEvent::OptOut => "opt_out",
        }
    }
}

/// What the runtime must do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientEffect {
    /// The state changed: persist it, move the broadcast's counts, publish.
    Changed {
        /// The state before.
        from: RecipientState,
        /// The state after.
        to: RecipientState,
    },
    /// A step was sent: store its index (the state may not have changed: `sent` → `sent`).
    StepSent(u32),
    /// A confirmation after the recipient was given up on: count it apart.
    LateConfirmation,
    /// Nothing moves (a second confirmation, an opt-out after the end).
    HistoryOnly,
}

/// One step of the recipient machine.
pub fn step(
    state: RecipientState,
    event: RecipientEvent,
) -> Result<(RecipientState, Vec<RecipientEffect>), InvalidTransition> {
    use RecipientState::*;
    let invalid = || InvalidTransition {
        machine: "recipient",
        state: state.as_str(),
        event: event.name(),
    };
    let changed = |to: RecipientState| RecipientEffect::Changed { from: state, to };
    Ok(match (state, event) {
        (Pending, RecipientEvent::Send { step, last: None }) => {
            (Sent, vec![changed(Sent), RecipientEffect::StepSent(step)])
        }
        (
            Sent,
            RecipientEvent::Send {
                step,
                last: Some(l),
            },
        ) if step > l => (Sent, vec![RecipientEffect::StepSent(step)]),
        (_, RecipientEvent::Send { .. }) => return Err(invalid()),
        (Sent, RecipientEvent::Confirm) => (Confirmed, vec![changed(Confirmed)]),
        (NotConfirmed | Unreachable, RecipientEvent::Confirm) => {
            (state, vec![RecipientEffect::LateConfirmation])
        }
        (Confirmed, RecipientEvent::Confirm) => (state, vec![RecipientEffect::HistoryOnly]),
        (Pending | OptedOut, RecipientEvent::Confirm) => return Err(invalid()),
        (Sent, RecipientEvent::Exhaust { delivered: true }) => {
            (NotConfirmed, vec![changed(NotConfirmed)])
        }
        (Pending | Sent, RecipientEvent::Exhaust { .. }) => {
            (Unreachable, vec![changed(Unreachable)])
        }
        (_, RecipientEvent::Exhaust { .. }) => return Err(invalid()),
        (Pending | Sent, RecipientEvent::OptOut) => (OptedOut, vec![changed(OptedOut)]),
        (_, RecipientEvent::OptOut) => (state, vec![RecipientEffect::HistoryOnly]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use RecipientState::*;

    fn all_events() -> Vec<RecipientEvent> {
        let mut v = vec![
            RecipientEvent::Confirm,
            RecipientEvent::Exhaust { delivered: true },
            RecipientEvent::Exhaust { delivered: false },
            RecipientEvent::OptOut,
        ];
        for last in [None, Some(0), Some(1), Some(2)] {
            for step in 0..3 {
                v.push(RecipientEvent::Send { step, last });
            }
        }
        v
    }

    /// The whole table, written out independently of `step`: (state, event) → expected
    /// (state, effects); `None` means invalid.
    fn expected(
        s: RecipientState,
        e: RecipientEvent,
    ) -> Option<(RecipientState, Vec<RecipientEffect>)> {
        let ch = |to| RecipientEffect::Changed { from: s, to };
        match (s, e) {
            (Pending, RecipientEvent::Send { step, last: None }) => {
                Some((Sent, vec![ch(Sent), RecipientEffect::StepSent(step)]))
            }
            (
                Sent,
                RecipientEvent::Send {
                    step: 1,
                    last: Some(0),
                },
            ) => Some((Sent, vec![RecipientEffect::StepSent(1)])),
            (
                Sent,
                RecipientEvent::Send {
                    step: 2,
                    last: Some(0 | 1),
                },
            ) => Some((Sent, vec![RecipientEffect::StepSent(2)])),
            (_, RecipientEvent::Send { .. }) => None,
            (Sent, RecipientEvent::Confirm) => Some((Confirmed, vec![ch(Confirmed)])),
            (NotConfirmed, RecipientEvent::Confirm) => {
                Some((NotConfirmed, vec![RecipientEffect::LateConfirmation]))
            }
            (Unreachable, RecipientEvent::Confirm) => {
                Some((Unreachable, vec![RecipientEffect::LateConfirmation]))
            }
            (Confirmed, RecipientEvent::Confirm) => {
                Some((Confirmed, vec![RecipientEffect::HistoryOnly]))
            }
            (Pending | OptedOut, RecipientEvent::Confirm) => None,
            (Sent, RecipientEvent::Exhaust { delivered: true }) => {
                Some((NotConfirmed, vec![ch(NotConfirmed)]))
            }
            (Sent, RecipientEvent::Exhaust { delivered: false }) => {
                Some((Unreachable, vec![ch(Unreachable)]))
            }
            (Pending, RecipientEvent::Exhaust { .. }) => Some((Unreachable, vec![ch(Unreachable)])),
            (_, RecipientEvent::Exhaust { .. }) => None,
            (Pending, RecipientEvent::OptOut) => Some((OptedOut, vec![ch(OptedOut)])),
            (Sent, RecipientEvent::OptOut) => Some((OptedOut, vec![ch(OptedOut)])),
            (t, RecipientEvent::OptOut) => Some((t, vec![RecipientEffect::HistoryOnly])),
        }
    }

    #[test]
    fn every_state_event_pair_matches_the_table() {
        for s in RecipientState::ALL {
            for e in all_events() {
                let got = step(s, e);
                match expected(s, e) {
                    None => {
                        let err = got.expect_err(&format!("{s:?} {e:?} must be invalid"));
                        assert_eq!((err.state, err.event), (s.as_str(), e.name()));
                    }
                    Some(want) => assert_eq!(got.expect("valid"), want, "{s:?} + {e:?}"),
                }
            }
        }
    }

    #[test]
    fn names_round_trip_and_terminals_are_the_documented_four() {
        for s in RecipientState::ALL {
            assert_eq!(RecipientState::parse(s.as_str()), Some(s));
            let documented = ["confirmed", "not_confirmed", "unreachable", "opted_out"];
            assert_eq!(s.is_terminal(), documented.contains(&s.as_str()));
        }
        assert_eq!(RecipientState::parse("lost"), None);
    }

    /// Event names are persisted with each recipient step: written out.
    #[test]
    fn event_names_are_the_stored_vocabulary() {
        let names: Vec<&str> = [
            RecipientEvent::Send {
                step: 1,
                last: None,
            },
            RecipientEvent::Confirm,
            RecipientEvent::Exhaust { delivered: true },
            RecipientEvent::OptOut,
        ]
        .iter()
        .map(|e| e.name())
        .collect();
        assert_eq!(names, ["send", "confirm", "exhaust", "opt_out"]);
    }

    #[test]
    fn no_event_leaves_a_terminal_state() {
        for s in RecipientState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for e in all_events() {
                if let Ok((next, _)) = step(s, e) {
                    assert_eq!(next, s, "{s:?} + {e:?}");
                }
            }
        }
    }
}
