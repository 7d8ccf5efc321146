use super::*;
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
    assert_eq!(start(), (CallState::Ringing, vec![]));
    let (s, fx) = step(CallState::Ringing, E::Answer).unwrap();
    assert_eq!(
        fx,
        vec![Changed {
            from: CallState::Ringing,
            to: s
        }]
    );
    // A call refused before its answer: the INVITE's final status, per cause.
    for (event, status) in [
        (E::Reject { status: 488 }, 488),
        (E::NoAnswer, 480),
        (E::Busy, 486),
        (E::Cancel, 487),
        (E::Shutdown, 503),
        (E::Fail, 500),
    ] {
        let (s, fx) = step(CallState::Ringing, event).unwrap();
        assert_eq!(
            fx,
            vec![
                Changed {
                    from: CallState::Ringing,
                    to: s
                },
                RejectInvite { status }
            ],
            "{event:?}"
        );
    }
    // An answered call's end is only a change (the SIP side sends its BYEs itself).
    let (s, fx) = step(CallState::Bridged, E::AgentHangup).unwrap();
    assert_eq!(
        s,
        CallState::Ended {
            cause: EndCause::AgentHangup
        }
    );
    assert_eq!(
        fx,
        vec![Changed {
            from: CallState::Bridged,
            to: s
        }]
    );
    assert!(EndCause::CallerHangup.is_normal_clearing());
    assert!(!EndCause::MediaTimeout.is_normal_clearing());
}

/// No step but one refusing a ringing call answers the INVITE.
#[test]
fn only_a_ringing_call_is_rejected() {
    for state in CallState::all() {
        for event in EVENTS {
            if let Ok((_, fx)) = step(state, event) {
                let rejects = fx
                    .iter()
                    .any(|f| matches!(f, CallEffect::RejectInvite { .. }));
                let refused_ringing = state == CallState::Ringing && event != E::Answer;
                assert_eq!(rejects, refused_ringing, "{state:?} + {event:?}");
            }
        }
    }
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
