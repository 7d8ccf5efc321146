use super::*;
use proptest::prelude::*;
use std::collections::HashSet;
use CallEvent as E;

const EVENTS: [CallEvent; 18] = [
    E::Answer,
    E::Cancel,
    E::Busy,
    E::NoAnswer,
    E::Reject { status: 404 },
    E::Hold,
    E::Resume,
    E::Transfer,
    E::TransferAnswered,
    E::TransferFailed,
    E::CallerHangup,
    E::CalleeHangup,
    E::MediaTimeout,
    E::MaxDuration,
    E::Fail,
    E::AgentHangup,
    E::NoAck,
    E::Shutdown,
];

/// The table written out by hand, one row per live state, one column per event in the order
/// of `EVENTS`: the next state's stable name (`ended:<cause>` for ended), `-` for invalid.
/// Columns: answer cancel busy no_answer reject hold resume transfer transfer_answered
/// transfer_failed caller_hangup callee_hangup media_timeout max_duration fail agent_hangup
/// no_ack shutdown.
#[rustfmt::skip]
const TABLE: [(&str, [&str; 18]); 6] = [
    ("ringing", ["answered", "ended:cancelled", "ended:busy", "ended:no_answer", "ended:rejected",
        "-", "-", "-", "-", "-", "-", "-", "-", "-", "ended:failed",
        "-", "-", "ended:shutdown"]),
    ("answered", ["-", "-", "-", "-", "-", "on_hold", "answered", "transferring", "-", "-",
        "ended:caller_hangup", "ended:callee_hangup", "ended:media_timeout", "ended:max_duration", "ended:failed",
        "-", "ended:no_ack", "ended:shutdown"]),
    ("on_hold", ["-", "-", "-", "-", "-", "on_hold", "answered", "-", "-", "-",
        "ended:caller_hangup", "ended:callee_hangup", "ended:media_timeout", "ended:max_duration", "ended:failed",
        "-", "-", "ended:shutdown"]),
    ("on_hold_bridged", ["-", "-", "-", "-", "-", "on_hold_bridged", "bridged", "-", "-", "-",
        "ended:caller_hangup", "ended:callee_hangup", "ended:media_timeout", "ended:max_duration", "ended:failed",
        "ended:agent_hangup", "-", "ended:shutdown"]),
    ("transferring", ["-", "-", "-", "-", "-", "-", "-", "-", "bridged", "answered",
        "ended:caller_hangup", "ended:callee_hangup", "ended:media_timeout", "ended:max_duration", "ended:failed",
        "-", "-", "ended:shutdown"]),
    ("bridged", ["-", "-", "-", "-", "-", "on_hold_bridged", "bridged", "-", "-", "-",
        "ended:caller_hangup", "ended:callee_hangup", "ended:media_timeout", "ended:max_duration", "ended:failed",
        "ended:agent_hangup", "-", "ended:shutdown"]),
];

fn name(s: CallState) -> String {
    match s.cause() {
        Some(c) => format!("ended:{}", c.as_str()),
        None => s.as_str().to_string(),
    }
}

#[test]
fn every_state_event_pair_matches_the_table() {
    let mut checked = 0;
    for state in CallState::all() {
        let row = TABLE.iter().find(|(n, _)| *n == state.as_str());
        for (i, event) in EVENTS.into_iter().enumerate() {
            let want = row.map_or("-", |(_, cols)| cols[i]);
            match step(state, event) {
                Ok((next, effects)) => {
                    assert_eq!(name(next), want, "{state:?} + {event:?}");
                    let changed = effects.contains(&CallEffect::Changed {
                        from: state,
                        to: next,
                    });
                    assert_eq!(changed, next != state, "{state:?} + {event:?}: {effects:?}");
                }
                Err(err) => {
                    assert_eq!(want, "-", "{state:?} + {event:?} refused");
                    assert_eq!(
                        (err.machine, err.state, err.event),
                        ("call", state.as_str(), event.name())
                    );
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, (6 + 13) * 18);
}

#[test]
fn interrupt_ends_every_live_state_with_no_effect_but_the_change() {
    for state in CallState::all() {
        match step(state, E::Interrupt) {
            Ok((next, effects)) => {
                assert!(!state.is_terminal(), "{state:?}");
                let to = CallState::Ended {
                    cause: EndCause::Interrupted,
                };
                assert_eq!(next, to);
                assert_eq!(effects, vec![CallEffect::Changed { from: state, to }]);
            }
            Err(_) => assert!(state.is_terminal(), "{state:?} refused interrupt"),
        }
    }
}

#[test]
fn key_transitions_have_exact_effects() {
    use CallEffect::*;
    assert_eq!(
        start(),
        (CallState::Ringing, vec![StartTimer(CallTimer::NoAnswer)])
    );
    let (s, fx) = step(CallState::Ringing, E::Answer).unwrap();
    assert_eq!(
        fx,
        vec![
            Changed {
                from: CallState::Ringing,
                to: s
            },
            CancelTimer(CallTimer::NoAnswer),
            StartTimer(CallTimer::MaxDuration),
            StartMedia,
        ]
    );
    let (_, fx) = step(CallState::Ringing, E::Reject { status: 488 }).unwrap();
    assert!(fx.contains(&RejectInvite { status: 488 }));
    let (_, fx) = step(CallState::Ringing, E::NoAnswer).unwrap();
    assert!(
        !fx.contains(&CancelTimer(CallTimer::NoAnswer)),
        "a fired timer is not cancelled"
    );
    assert!(fx.contains(&RejectInvite { status: 480 }));
    // The agent hangs up a bridged call: BYE to the caller only.
    let (s, fx) = step(CallState::Bridged, E::AgentHangup).unwrap();
    assert_eq!(
        s,
        CallState::Ended {
            cause: EndCause::AgentHangup
        }
    );
    assert!(fx.contains(&SendBye(Leg::Caller)) && !fx.contains(&SendBye(Leg::Agent)));
    // Our side hangs up a bridged call: BYE to both.
    let (_, fx) = step(CallState::Bridged, E::CalleeHangup).unwrap();
    assert!(fx.contains(&SendBye(Leg::Caller)) && fx.contains(&SendBye(Leg::Agent)));
    // Shutdown while ringing answers the INVITE with 503.
    let (_, fx) = step(CallState::Ringing, E::Shutdown).unwrap();
    assert!(fx.contains(&RejectInvite { status: 503 }));
    // The caller hangs up a bridged call: BYE to the agent only.
    let (_, fx) = step(CallState::Bridged, E::CallerHangup).unwrap();
    assert!(!fx.contains(&SendBye(Leg::Caller)) && fx.contains(&SendBye(Leg::Agent)));
    // Media timeout while the agent still rings: cancel that leg, BYE the caller.
    let (_, fx) = step(CallState::Transferring, E::MediaTimeout).unwrap();
    assert!(fx.contains(&CancelAgentLeg) && fx.contains(&SendBye(Leg::Caller)));
    assert!(EndCause::CallerHangup.is_normal_clearing());
    assert!(!EndCause::MediaTimeout.is_normal_clearing());
}

#[test]
fn names_round_trip() {
    for s in CallState::all() {
        assert_eq!(
            CallState::parse(s.as_str(), s.cause().map(EndCause::as_str)),
            Some(s)
        );
    }
    assert_eq!(CallState::parse("ended", None), None);
    assert_eq!(CallState::parse("ended", Some("eaten")), None);
    assert_eq!(CallState::parse("ringing", Some("busy")), None);
    let names: HashSet<&str> = CallState::LIVE.iter().map(|s| s.as_str()).collect();
    assert_eq!(names.len(), CallState::LIVE.len());
}

/// Event names are persisted in `call_history` and published: written out, in the order of
/// `EVENTS`, then `interrupt`.
#[test]
fn event_names_are_the_stored_vocabulary() {
    let mut names: Vec<&str> = EVENTS.iter().map(|e| e.name()).collect();
    names.push(E::Interrupt.name());
    assert_eq!(
        names,
        [
            "answer",
            "cancel",
            "busy",
            "no_answer",
            "reject",
            "hold",
            "resume",
            "transfer",
            "transfer_answered",
            "transfer_failed",
            "caller_hangup",
            "callee_hangup",
            "media_timeout",
            "max_duration",
            "fail",
            "agent_hangup",
            "no_ack",
            "shutdown",
            "interrupt"
        ]
    );
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum AgentLeg {
    None,
    Ringing,
    Up,
}

/// What the runtime holds for a call, driven only by the effects.
#[derive(Debug)]
struct Model {
    timers: HashSet<CallTimer>,
    media: bool,
    agent: AgentLeg,
    invite_final: bool,
}

impl Model {
    fn apply(&mut self, fx: &[CallEffect]) -> Result<(), TestCaseError> {
        for f in fx {
            match *f {
                CallEffect::StartTimer(t) => prop_assert!(self.timers.insert(t), "{:?} twice", t),
                CallEffect::CancelTimer(t) => {
                    prop_assert!(self.timers.remove(&t), "{:?} not running", t)
                }
                CallEffect::StartMedia => {
                    prop_assert!(!self.media);
                    self.media = true;
                }
                CallEffect::StopMedia => {
                    prop_assert!(self.media);
                    self.media = false;
                }
                CallEffect::StartAgentLeg => {
                    prop_assert_eq!(self.agent, AgentLeg::None);
                    self.agent = AgentLeg::Ringing;
                }
                CallEffect::BridgeMedia => {
                    prop_assert_eq!(self.agent, AgentLeg::Ringing);
                    self.agent = AgentLeg::Up;
                }
                CallEffect::ResumeApp | CallEffect::CancelAgentLeg => {
                    prop_assert_eq!(self.agent, AgentLeg::Ringing);
                    self.agent = AgentLeg::None;
                }
                CallEffect::SendBye(Leg::Agent) => {
                    prop_assert_eq!(self.agent, AgentLeg::Up);
                    self.agent = AgentLeg::None;
                }
                CallEffect::SendBye(Leg::Caller) => prop_assert!(self.invite_final),
                CallEffect::RejectInvite { .. } => {
                    prop_assert!(!self.invite_final);
                    self.invite_final = true;
                }
                CallEffect::Changed { .. } => {}
            }
        }
        Ok(())
    }
}

proptest! {
    /// Random event sequences (without `Interrupt`, which happens to a call whose runtime is
    /// gone, so it releases nothing) against a model of the runtime's resources: every timer started
    /// is cancelled or fires exactly once, media starts once and stops once, the agent leg is
    /// always ended, and an ended call holds nothing.
    #[test]
    fn resources_are_balanced(events in proptest::collection::vec(0usize..18, 0..40)) {
        let (mut state, fx) = start();
        let mut m = Model { timers: HashSet::new(), media: false, agent: AgentLeg::None, invite_final: false };
        m.apply(&fx)?;
        for i in events {
            let event = EVENTS[i];
            // Timer events only happen while their timer runs; firing consumes it.
            let fired = match event {
                E::NoAnswer => Some(CallTimer::NoAnswer),
                E::MaxDuration => Some(CallTimer::MaxDuration),
                _ => None,
            };
            if let Some(t) = fired {
                if !m.timers.contains(&t) { continue; }
            }
            let Ok((next, fx)) = step(state, event) else { continue };
            if let Some(t) = fired { m.timers.remove(&t); }
            if state == CallState::Ringing && next == CallState::Answered { m.invite_final = true; }
            // An agent that hangs up sends its own BYE.
            if event == E::AgentHangup { m.agent = AgentLeg::None; }
            m.apply(&fx)?;
            state = next;
            let has_media = matches!(state, CallState::Answered | CallState::OnHold { .. } | CallState::Transferring | CallState::Bridged);
            prop_assert_eq!(m.media, has_media, "{:?}", state);
            let want_agent = match state {
                CallState::Transferring => AgentLeg::Ringing,
                CallState::Bridged | CallState::OnHold { bridged: true } => AgentLeg::Up,
                _ => AgentLeg::None,
            };
            prop_assert_eq!(m.agent, want_agent, "{:?}", state);
            if state.is_terminal() {
                prop_assert!(m.timers.is_empty(), "{:?} left running", m.timers);
                prop_assert!(m.invite_final);
            }
        }
    }
}
