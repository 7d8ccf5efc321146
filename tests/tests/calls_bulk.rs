//! Call transitions in bulk (`db::calls_bulk`) on both backends: the same transitions
//! recorded one at a time in one org and in bulk in another leave the same calls, history,
//! conversations and events, new callers' contacts included; what bulk may not do (a saved
//! contact's first call, a call's second step in a run, another org's call) it hands back, a start reported
//! again changes nothing, and a late event is refused as the one-at-a-time path refuses it.

use gateway::db::calls::{self, CallRecorded, CallTransition};
use gateway::db::{calls_bulk, Db};
use integration_tests::both_backends;
use integration_tests::env::{create_org, saved_contact, Backend, TestDb, TestOrg};
use serde_json::Value;
use sqlx::{Connection, Row};
use state_machines::call::{CallEvent, CallState};

const T0: i64 = 1_800_000_000_000;
const T1: i64 = T0 + 5_000;

fn transition(org: &TestOrg, call: &str, event: Option<CallEvent>) -> CallTransition {
    CallTransition {
        call_id: format!("{}-{call}", org.slug),
        org_id: org.id.clone(),
        sip_call_id: format!("sip-{call}"),
        from: format!("<sip:+1555000{}@127.0.0.1>", call.len()),
        to: number(org).into(),
        outbound: false,
        event,
        detail: None,
        node: Some("n1".into()),
    }
}

/// The org's number, routed to the receptionist.
fn number(org: &TestOrg) -> &'static str {
    match org.slug.as_str() {
        "one" => "+15550001111",
        _ => "+15550002222",
    }
}

/// A call we place to `to`.
fn placed(org: &TestOrg, call: &str, to: &str) -> CallTransition {
    CallTransition {
        from: number(org).into(),
        to: to.into(),
        outbound: true,
        ..transition(org, call, None)
    }
}

/// The calls, history and call events of an org, with its slug taken out of the call ids.
async fn snapshot(db: &Db, org: &TestOrg) -> Vec<String> {
    let strip = |s: String| s.replace(&format!("{}-", org.slug), "");
    let mut out = Vec::new();
    let rows = sqlx::query(
        "SELECT id, state, COALESCE(cause, ''), app, started_at, COALESCE(answered_at, 0), \
         COALESCE(ended_at, 0), updated_at FROM calls WHERE org_id = $1 ORDER BY id",
    )
    .bind(&org.id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for r in rows {
        let texts: Vec<String> = (0..4).map(|i| strip(r.get::<String, _>(i))).collect();
        let times: Vec<i64> = (4..8).map(|i| r.get::<i64, _>(i)).collect();
        out.push(format!("call {texts:?} {times:?}"));
    }
    let history = sqlx::query(
        "SELECT call_id, state, event, COALESCE(cause, ''), at FROM call_history \
         WHERE org_id = $1 ORDER BY call_id, at, id",
    )
    .bind(&org.id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for h in history {
        let texts: Vec<String> = (0..4).map(|i| strip(h.get::<String, _>(i))).collect();
        out.push(format!("history {texts:?} {}", h.get::<i64, _>(4)));
    }
    let events = sqlx::query(
        "SELECT data FROM outbox WHERE org_id = $1 AND type = 'dartwing.call.state_changed.v1' \
         ORDER BY id",
    )
    .bind(&org.id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut per_call: Vec<(String, String)> = Vec::new();
    for e in events {
        let mut data: Value = serde_json::from_str(&e.get::<String, _>(0)).unwrap();
        let fields = data.as_object_mut().unwrap();
        fields.remove("conversation_id");
        // The org's own number.
        if fields["direction"] == "inbound" {
            fields.remove("to");
        } else {
            fields.remove("from");
        }
        let call = strip(data["call_id"].as_str().unwrap().to_owned());
        data["call_id"] = Value::String(call.clone());
        per_call.push((call, data.to_string()));
    }
    // Each call's events in order (a stable sort by call).
    per_call.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(per_call.into_iter().map(|(_, d)| format!("event {d}")));
    let conversations = sqlx::query(
        "SELECT ci.address, c.status, c.updated_at, c.last_message_at FROM conversations c \
         JOIN contact_identities ci ON ci.contact_id = c.contact_id AND ci.org_id = c.org_id \
         WHERE c.org_id = $1 ORDER BY ci.address",
    )
    .bind(&org.id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for c in conversations {
        let (address, status): (String, String) = (c.get(0), c.get(1));
        let times: (i64, i64) = (c.get(2), c.get(3));
        out.push(format!("conversation {address} {status} {times:?}"));
    }
    let other: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE org_id = $1 AND type LIKE 'dartwing.conversation.%'",
    )
    .bind(&org.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    out.push(format!("conversation events {other}"));
    out
}

async fn bulk_steps_what_one_at_a_time_steps(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let one = create_org(&db, "one", "http://127.0.0.1:9", 10.0).await;
    let bulk = create_org(&db, "bulk", "http://127.0.0.1:9", 10.0).await;
    for org in [&one, &bulk] {
        let route = calls::Route {
            number: number(org).into(),
            org_id: org.id.clone(),
            app: "receptionist".into(),
            agent: None,
            allow_refer: false,
        };
        assert!(calls::add_route(&db.pool, &route, T0).await.unwrap());
    }
    let mut conn = db.pool.acquire().await.unwrap();
    for org in [&one, &bulk] {
        saved_contact(&mut conn, org, "voice", "+15550009", T0).await;
        for call in ["c1", "c2", "c3", "c4x", "c7"] {
            calls::record(&mut conn, &transition(org, call, None), T0)
                .await
                .unwrap();
        }
        let hung_up = transition(org, "c4x", Some(CallEvent::Cancel));
        calls::record(&mut conn, &hung_up, T0).await.unwrap();
    }
    let run = |org: &TestOrg| {
        vec![
            transition(org, "c1", Some(CallEvent::Answer)), // 0: bulk
            transition(org, "c2", Some(CallEvent::Answer)), // 1: bulk
            transition(org, "c1", Some(CallEvent::CallerHangup)), // 2: c1's second: after
            transition(org, "c5", None),                    // 3: a known caller's start: bulk
            transition(org, "c5", Some(CallEvent::Answer)), // 4: follows its start: after
            transition(org, "c3", Some(CallEvent::Cancel)), // 5: bulk, ended
            transition(org, "c4x", Some(CallEvent::Answer)), // 6: ended already: refused
            transition(org, "c2", Some(CallEvent::Hold)),   // 7: c2's second: after
            transition(org, "c6-new", None),                // 8: a caller never seen: made in bulk
            transition(org, "c7", None), // 9: a start reported again: nothing new
            placed(org, "o1", "+15550002"), // 10: a call placed to a known contact: bulk
            transition(org, "c8", None), // 11: a known caller's start: bulk
            transition(org, "c9-saved!", None), // 12: a saved contact's first call: after
        ]
    };
    for t in run(&one) {
        calls::record(&mut conn, &t, T1).await.unwrap();
    }
    let mut ours = run(&bulk);
    // Another org's call reported under this org's id: never stepped here.
    let mut foreign = transition(&one, "c3", Some(CallEvent::CallerHangup));
    foreign.org_id = bulk.id.clone();
    ours.push(foreign);
    let refs: Vec<&CallTransition> = ours.iter().collect();
    let mut tx = conn.begin().await.unwrap();
    let answers = calls_bulk::record_many(&mut tx, &refs, T1).await.unwrap();
    use CallRecorded::{Refused, Stored};
    let ended = |s: &Option<CallRecorded>| {
        matches!(
            s,
            Some(Stored {
                state: CallState::Ended { .. }
            })
        )
    };
    assert_eq!(
        answers[0],
        Some(Stored {
            state: CallState::Answered
        })
    );
    assert_eq!(
        answers[1],
        Some(Stored {
            state: CallState::Answered
        })
    );
    assert!(ended(&answers[5]), "{:?}", answers[5]);
    for i in [3, 8, 9, 10, 11] {
        let ringing = Some(Stored {
            state: CallState::Ringing,
        });
        assert_eq!(answers[i], ringing, "transition {i}");
    }
    assert!(
        matches!(
            answers[6],
            Some(Refused {
                state: CallState::Ended { .. }
            })
        ),
        "{:?}",
        answers[6]
    );
    for i in [2, 4, 7, 12, 13] {
        assert_eq!(answers[i], None, "transition {i}");
    }
    for (t, answer) in ours.iter().zip(&answers).take(13) {
        if answer.is_none() {
            calls::record(&mut tx, t, T1).await.unwrap();
        }
    }
    let foreign = calls::record(&mut tx, &ours[13], T1).await;
    assert!(foreign.is_err(), "{foreign:?}");
    tx.commit().await.unwrap();
    drop(conn);
    let (want, got) = (snapshot(&db, &one).await, snapshot(&db, &bulk).await);
    assert!(want.iter().any(|l| l.contains("\"on_hold\"")), "{want:#?}");
    assert!(
        want.iter().any(|l| l.contains("\"receptionist\"")),
        "{want:#?}"
    );
    assert!(want.iter().any(|l| l.contains("\"outbound\"")), "{want:#?}");
    assert!(
        want.iter().any(|l| l.contains(&format!("{T1}, {T1}"))),
        "{want:#?}"
    );
    assert_eq!(got, want);
}
both_backends!(bulk_steps_what_one_at_a_time_steps);
