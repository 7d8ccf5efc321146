//! The delivery machine of one message.
//!
//! ```text
//!   queued ──Dispatch──▶ sending ──Accepted──▶ sent ──▶ delivered ──▶ read
//!      │                   │                    │          │
//!      └───────────────────┴──── Fail / Report(failed) ────┴──────▶ failed
//! ```
//!
//! Provider callbacks ([`DeliveryEvent::Report`]) arrive late, twice and out of order. The
//! state only moves forward by [`DeliveryState::rank`]; a report that ranks at or below the
//! current state (or arrives after a terminal state) is still recorded in the history by the
//! runtime, but leaves the state as it is ([`DeliveryEffect::HistoryOnly`]). `read` and
//! `failed` are terminal: whichever of them is reached first stays.
//!
//! A retry with backoff keeps the message in `sending` (the runtime stores when the next
//! attempt is due); nothing here ever moves backwards.

use crate::InvalidTransition;
use serde::{Deserialize, Serialize};

/// Where a message is on its way to the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Stored, waiting for a worker.
    Queued,
    /// A worker is sending it (or waiting to retry a transient failure).
    Sending,
    /// The provider accepted it.
    Sent,
    /// The provider reports it reached the handset or inbox.
    Delivered,
    /// The recipient read it (terminal).
    Read,
    /// It will not be delivered (terminal).
    Failed,
}

impl DeliveryState {
    /// Every state, for exhaustive tests and parsing.
    pub const ALL: [DeliveryState; 6] = [
        DeliveryState::Queued,
        DeliveryState::Sending,
        DeliveryState::Sent,
        DeliveryState::Delivered,
        DeliveryState::Read,
        DeliveryState::Failed,
    ];

    /// How far along the state is. Only a higher rank replaces a lower one. The two terminal
    /// states share the top rank, so neither replaces the other.
    pub fn rank(self) -> u8 {
        match self {
            DeliveryState::Queued => 0,
            DeliveryState::Sending => 1,
            DeliveryState::Sent => 2,
            DeliveryState::Delivered => 3,
            DeliveryState::Read | DeliveryState::Failed => 4,
        }
    }

    /// `read` and `failed` never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, DeliveryState::Read | DeliveryState::Failed)
    }

    /// The stable name used in the database, the API and events.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Read => "read",
            DeliveryState::Failed => "failed",
        }
    }

    /// Parses a stable name; `None` for anything else.
    pub fn parse(s: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// What can happen to a message on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryEvent {
    /// A worker claimed the queued message and is about to call the provider.
    Dispatch,
    /// The provider's API accepted the message (its id is stored by the runtime).
    Accepted,
    /// A provider status callback, already mapped onto our states.
    Report(DeliveryState),
    /// The send failed permanently or ran out of retries.
    Fail,
}

impl DeliveryEvent {
    /// The stable name of the event, for history rows and errors.
    pub fn name(self) -> &'static str {
        match self {
            DeliveryEvent::Dispatch => "dispatch",
            DeliveryEvent::Accepted => "accepted",
            DeliveryEvent::Report(_) => "report",
            DeliveryEvent::Fail => "fail",
        }
    }
}

/// What the runtime must do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryEffect {
    /// The state changed: persist it and publish `dartwing.message.status_changed.v1`.
    Changed {
        /// The state before.
        from: DeliveryState,
        /// The state after.
        to: DeliveryState,
    },
    /// The event is kept in the history but does not move the state (late, duplicate or
    /// lower-ranked).
    HistoryOnly,
}

/// One step of the delivery machine.
pub fn step(
    state: DeliveryState,
    event: DeliveryEvent,
) -> Result<(DeliveryState, Vec<DeliveryEffect>), InvalidTransition> {
    use DeliveryState::*;
    let invalid = || InvalidTransition {
        machine: "delivery",
        state: state.as_str(),
        event: event.name(),
    };
    let target = match event {
        DeliveryEvent::Dispatch if state == Queued => Sending,
        DeliveryEvent::Dispatch => return Err(invalid()),
        DeliveryEvent::Accepted if state == Queued => return Err(invalid()),
        DeliveryEvent::Accepted => Sent,
        DeliveryEvent::Fail if state.is_terminal() => return Err(invalid()),
        DeliveryEvent::Fail => Failed,
        DeliveryEvent::Report(reported) => reported,
    };
    if state.is_terminal() || target.rank() <= state.rank() {
        return Ok((state, vec![DeliveryEffect::HistoryOnly]));
    }
    Ok((
        target,
        vec![DeliveryEffect::Changed {
            from: state,
            to: target,
        }],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use DeliveryState::*;

    fn all_events() -> Vec<DeliveryEvent> {
        let mut v = vec![
            DeliveryEvent::Dispatch,
            DeliveryEvent::Accepted,
            DeliveryEvent::Fail,
        ];
        v.extend(DeliveryState::ALL.into_iter().map(DeliveryEvent::Report));
        v
    }

    /// The whole table, written out independently of `step`: (state, event) → expected.
    /// `None` means invalid; `Some(s)` the resulting state.
    fn expected(state: DeliveryState, event: DeliveryEvent) -> Option<DeliveryState> {
        match (state, event) {
            (Queued, DeliveryEvent::Dispatch) => Some(Sending),
            (_, DeliveryEvent::Dispatch) => None,
            (Queued, DeliveryEvent::Accepted) => None,
            (Sending, DeliveryEvent::Accepted) => Some(Sent),
            (s, DeliveryEvent::Accepted) => Some(s),
            (Read | Failed, DeliveryEvent::Fail) => None,
            (_, DeliveryEvent::Fail) => Some(Failed),
            (Read, DeliveryEvent::Report(_)) => Some(Read),
            (Failed, DeliveryEvent::Report(_)) => Some(Failed),
            (Queued, DeliveryEvent::Report(r)) => Some(if r == Queued { Queued } else { r }),
            (Sending, DeliveryEvent::Report(Queued | Sending)) => Some(Sending),
            (Sending, DeliveryEvent::Report(r)) => Some(r),
            (Sent, DeliveryEvent::Report(Queued | Sending | Sent)) => Some(Sent),
            (Sent, DeliveryEvent::Report(r)) => Some(r),
            (Delivered, DeliveryEvent::Report(Read)) => Some(Read),
            (Delivered, DeliveryEvent::Report(Failed)) => Some(Failed),
            (Delivered, DeliveryEvent::Report(_)) => Some(Delivered),
        }
    }

    #[test]
    fn every_state_event_pair_matches_the_table() {
        for s in DeliveryState::ALL {
            for e in all_events() {
                let got = step(s, e);
                match expected(s, e) {
                    None => {
                        let err = got.expect_err(&format!("{s:?} {e:?} must be invalid"));
                        assert_eq!(err.state, s.as_str());
                        assert_eq!(err.event, e.name());
                    }
                    Some(want) => {
                        let (next, effects) = got.expect("valid transition");
                        assert_eq!(next, want, "{s:?} + {e:?}");
                        if want == s {
                            assert_eq!(effects, vec![DeliveryEffect::HistoryOnly]);
                        } else {
                            assert_eq!(
                                effects,
                                vec![DeliveryEffect::Changed { from: s, to: want }]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryState::parse("lost"), None);
    }

    /// Event names are persisted in the message history: written out.
    #[test]
    fn event_names_are_the_stored_vocabulary() {
        let names: Vec<&str> = [
            DeliveryEvent::Dispatch,
            DeliveryEvent::Accepted,
            DeliveryEvent::Report(DeliveryState::Delivered),
            DeliveryEvent::Fail,
        ]
        .iter()
        .map(|e| e.name())
        .collect();
        assert_eq!(names, ["dispatch", "accepted", "report", "fail"]);
    }

    /// The documented order of delivery states, written out here independently of
    /// [`DeliveryState::rank`] so that a wrong rank fails the property below.
    fn documented_order(s: DeliveryState) -> u8 {
        ["queued", "sending", "sent", "delivered", "read|failed"]
            .iter()
            .position(|names| names.split('|').any(|n| n == s.as_str()))
            .expect("every state is documented") as u8
    }

    /// The documented terminal states, independently of [`DeliveryState::is_terminal`].
    fn documented_terminal(s: DeliveryState) -> bool {
        ["read", "failed"].contains(&s.as_str())
    }

    proptest! {
        /// Random callback orders (after a dispatch and acceptance) never move a message
        /// backwards, and end in the state of the highest-ranked report seen; when that rank
        /// is terminal, in the first terminal report seen.
        #[test]
        fn callbacks_only_move_forward(reports in proptest::collection::vec(0usize..6, 0..12)) {
            let mut state = Queued;
            state = step(state, DeliveryEvent::Dispatch).unwrap().0;
            state = step(state, DeliveryEvent::Accepted).unwrap().0;
            let mut highest = Sent;
            let mut first_terminal = None;
            for i in reports {
                let r = DeliveryState::ALL[i];
                let before = state;
                state = step(state, DeliveryEvent::Report(r)).unwrap().0;
                prop_assert!(documented_order(state) >= documented_order(before), "{before:?} -> {state:?}");
                if documented_order(r) > documented_order(highest) { highest = r; }
                if documented_terminal(r) && first_terminal.is_none() { first_terminal = Some(r); }
            }
            prop_assert_eq!(documented_order(state), documented_order(highest));
            if let Some(t) = first_terminal { prop_assert_eq!(state, t); }
            else { prop_assert_eq!(state, highest); }
        }
    }
}
