//! The conversation machine: one conversation per contact, across channels.
//!
//! ```text
//!            MarkPending            Resolve
//!   open ─────────────▶ pending ─────────────▶ resolved
//!    ▲  ◀───Inbound─────┘                         │
//!    └────────────── Inbound / Reopen ────────────┘   (Reopened effect)
//! ```
//!
//! New inbound from the contact always brings the conversation back to `open`; an outbound
//! message never changes its state.

use crate::InvalidTransition;
use serde::{Deserialize, Serialize};

/// Where a conversation stands for the agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversationState {
    /// Needs an agent.
    Open,
    /// Waiting on the contact or a third party.
    Pending,
    /// Done, until the contact writes again.
    Resolved,
}

impl ConversationState {
    /// Every state, for exhaustive tests and parsing.
    pub const ALL: [ConversationState; 3] = [
        ConversationState::Open,
        ConversationState::Pending,
        ConversationState::Resolved,
    ];

    /// The stable name used in the database, the API and events.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationState::Open => "open",
            ConversationState::Pending => "pending",
            ConversationState::Resolved => "resolved",
        }
    }

    /// Parses a stable name; `None` for anything else.
    pub fn parse(s: &str) -> Option<ConversationState> {
        ConversationState::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// What can happen to a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationEvent {
    /// The contact sent a message.
    Inbound,
    /// The organization sent a message.
    Outbound,
    /// An agent is waiting on someone.
    MarkPending,
    /// An agent closed it.
    Resolve,
    /// An agent reopened it.
    Reopen,
    /// The contact's side sent an automatic message (an out-of-office, a list's mail): kept
    /// in the conversation, but it changes no status: a resolved conversation stays resolved.
    AutoReply,
}

impl ConversationEvent {
    /// The stable name of the event.
    pub fn name(self) -> &'static str {
        match self {
            ConversationEvent::Inbound => "inbound",
            ConversationEvent::Outbound => "outbound",
            ConversationEvent::MarkPending => "mark_pending",
            ConversationEvent::Resolve => "resolve",
            ConversationEvent::Reopen => "reopen",
            ConversationEvent::AutoReply => "auto_reply",
        }
    }
}

/// What the runtime must do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationEffect {
    /// Persist the new state and publish `dartwing.conversation.status_changed.v1`.
    Changed {
        /// The state before.
        from: ConversationState,
        /// The state after.
        to: ConversationState,
    },
    /// A resolved conversation came back to life (for metrics and agent notification).
    Reopened,
}

/// One step of the conversation machine.
pub fn step(
    state: ConversationState,
    event: ConversationEvent,
) -> Result<(ConversationState, Vec<ConversationEffect>), InvalidTransition> {
    use ConversationEvent as E;
    use ConversationState::*;
    let next = match (state, event) {
        (s, E::Outbound | E::AutoReply) => s,
        (Open, E::Inbound) => Open,
        (Pending, E::Inbound) => Open,
        (Resolved, E::Inbound | E::Reopen) => Open,
        (Open, E::MarkPending) => Pending,
        (Open | Pending, E::Resolve) => Resolved,
        _ => {
            return Err(InvalidTransition {
                machine: "conversation",
                state: state.as_str(),
                event: event.name(),
            })
        }
    };
    let mut effects = Vec::new();
    if next != state {
        effects.push(ConversationEffect::Changed {
            from: state,
            to: next,
        });
        if state == Resolved {
            effects.push(ConversationEffect::Reopened);
        }
    }
    Ok((next, effects))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConversationEvent as E;
    use ConversationState::*;

    const EVENTS: [ConversationEvent; 6] = [
        E::Inbound,
        E::Outbound,
        E::MarkPending,
        E::Resolve,
        E::Reopen,
        E::AutoReply,
    ];

    #[test]
    fn every_state_event_pair_matches_the_table() {
        // (state, event, expected next state or None for invalid)
        let table = [
            (Open, E::Inbound, Some(Open)),
            (Open, E::Outbound, Some(Open)),
            (Open, E::MarkPending, Some(Pending)),
            (Open, E::Resolve, Some(Resolved)),
            (Open, E::Reopen, None),
            (Open, E::AutoReply, Some(Open)),
            (Pending, E::Inbound, Some(Open)),
            (Pending, E::Outbound, Some(Pending)),
            (Pending, E::MarkPending, None),
            (Pending, E::Resolve, Some(Resolved)),
            (Pending, E::Reopen, None),
            (Pending, E::AutoReply, Some(Pending)),
            (Resolved, E::Inbound, Some(Open)),
            (Resolved, E::Outbound, Some(Resolved)),
            (Resolved, E::MarkPending, None),
            (Resolved, E::Resolve, None),
            (Resolved, E::Reopen, Some(Open)),
            (Resolved, E::AutoReply, Some(Resolved)),
        ];
        assert_eq!(table.len(), ConversationState::ALL.len() * EVENTS.len());
        for (s, e, want) in table {
            match (step(s, e), want) {
                (Ok((next, effects)), Some(w)) => {
                    assert_eq!(next, w, "{s:?} + {e:?}");
                    let changed = effects
                        .iter()
                        .any(|f| matches!(f, ConversationEffect::Changed { .. }));
                    assert_eq!(changed, w != s);
                    let reopened = effects.contains(&ConversationEffect::Reopened);
                    assert_eq!(reopened, s == Resolved && w == Open);
                }
                (Err(err), None) => assert_eq!(err.machine, "conversation"),
                (got, want) => panic!("{s:?} + {e:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in ConversationState::ALL {
            assert_eq!(ConversationState::parse(s.as_str()), Some(s));
        }
        assert_eq!(ConversationState::parse("snoozed"), None);
    }

    /// Event names are persisted and published (`cause` of status changes): written out.
    #[test]
    fn event_names_are_the_stored_vocabulary() {
        let names: Vec<&str> = EVENTS.iter().map(|e| e.name()).collect();
        assert_eq!(
            names,
            [
                "inbound",
                "outbound",
                "mark_pending",
                "resolve",
                "reopen",
                "auto_reply"
            ]
        );
    }
}
