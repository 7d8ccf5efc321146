use super::*;

#[test]
fn challenges_are_answered_once_and_again_only_when_stale() {
    let account = Account {
        username: "acme".into(),
        password: "pw".into(),
    };
    let fresh = r#"Digest realm="trunk", nonce="n1", qop="auth""#;
    let stale = r#"Digest realm="trunk", nonce="n2", qop="auth", stale=true"#;
    let uri = "sip:+15550001@127.0.0.1:5060";
    assert_eq!(answer(None, 407, fresh, uri, 0), None, "no account");
    let (name, value) = answer(Some(&account), 407, fresh, uri, 0).unwrap();
    assert_eq!(name, "Proxy-Authorization");
    assert!(value.contains("username=\"acme\"") && value.contains("nonce=\"n1\""));
    assert_eq!(
        answer(Some(&account), 401, fresh, uri, 0).unwrap().0,
        "Authorization"
    );
    assert_eq!(answer(Some(&account), 401, fresh, uri, 1), None, "refused");
    assert!(
        answer(Some(&account), 401, stale, uri, 1).is_some(),
        "stale"
    );
    assert_eq!(answer(Some(&account), 401, stale, uri, 2), None);
    assert_eq!(answer(Some(&account), 401, "Basic realm=x", uri, 0), None);
    assert_eq!(
        refusal(
            &LegError::Challenged {
                status: 407,
                challenge: fresh.into()
            },
            "c1".into()
        ),
        (
            E::Reject { status: 407 },
            Placed::Refused {
                call_id: "c1".into(),
                status: 407
            }
        )
    );
}

#[test]
fn refusals_map_to_the_machine_and_the_report() {
    let id = || "c1".to_owned();
    let busy = refusal(&LegError::Refused { status: 486 }, id());
    assert_eq!(
        busy,
        (
            E::Busy,
            Placed::Busy {
                call_id: id(),
                status: 486
            }
        )
    );
    let declined = refusal(&LegError::Refused { status: 600 }, id());
    assert_eq!(declined.0, E::Busy);
    for status in [408, 480, 487] {
        let r = refusal(&LegError::Refused { status }, id());
        assert_eq!(r, (E::NoAnswer, Placed::NoAnswer { call_id: id() }));
    }
    assert_eq!(refusal(&LegError::NoAnswer, id()).0, E::NoAnswer);
    assert_eq!(
        refusal(&LegError::Timeout, id()),
        (
            E::Reject { status: 408 },
            Placed::Unreachable { call_id: id() }
        )
    );
    assert_eq!(
        refusal(&LegError::Refused { status: 407 }, id()),
        (
            E::Reject { status: 407 },
            Placed::Refused {
                call_id: id(),
                status: 407
            }
        )
    );
    assert!(matches!(
        refusal(&LegError::BadAnswer, id()),
        (E::Fail, Placed::Failed { .. })
    ));
    // Every one of them is a step the machine takes from ringing.
    for event in [
        E::Busy,
        E::NoAnswer,
        E::Reject { status: 408 },
        E::Fail,
        E::Cancel,
    ] {
        let (ringing, _) = state_machines::call::start();
        assert!(
            state_machines::call::step(ringing, event).is_ok(),
            "{event:?}"
        );
    }
}
