//! Call transitions in bulk (`db::calls_bulk`) on both backends: the same transitions
//! recorded one at a time in one org and in bulk in another leave the same calls, history
//! and events; what bulk may not do (starts, a call's second step in a run, another org's
//! call) it hands back, and a late event is refused as the one-at-a-time path refuses it.

use gateway::db::calls::{self, CallRecorded, CallTransition};
use gateway::db::{calls_bulk, Db};
use integration_tests::both_backends;
use integration_tests::env::{create_org, Backend, TestDb, TestOrg};
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
        to: "+15550001111".into(),
        outbound: false,
        event,
        detail: None,
        node: Some("n1".into()),
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
        data.as_object_mut().unwrap().remove("conversation_id");
        let call = strip(data["call_id"].as_str().unwrap().to_owned());
        data["call_id"] = Value::String(call.clone());
        per_call.push((call, data.to_string()));
    }
    // Each call's events in order (a stable sort by call).
    per_call.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(per_call.into_iter().map(|(_, d)| format!("event {d}")));
    out
}

async fn bulk_steps_what_one_at_a_time_steps(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let one = create_org(&db, "one", "http://127.0.0.1:9", 10.0).await;
    let bulk = create_org(&db, "bulk", "http://127.0.0.1:9", 10.0).await;
    let mut conn = db.pool.acquire().await.unwrap();
    for org in [&one, &bulk] {
        for call in ["c1", "c2", "c3", "c4x"] {
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
            transition(org, "c5", None),                    // 3: a start: after
            transition(org, "c5", Some(CallEvent::Answer)), // 4: follows its start
            transition(org, "c3", Some(CallEvent::Cancel)), // 5: bulk, ended
            transition(org, "c4x", Some(CallEvent::Answer)), // 6: ended already: refused
            transition(org, "c2", Some(CallEvent::Hold)),   // 7: c2's second: after
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
    for i in [2, 3, 4, 7, 8] {
        assert_eq!(answers[i], None, "transition {i}");
    }
    for (t, answer) in ours.iter().zip(&answers).take(8) {
        if answer.is_none() {
            calls::record(&mut tx, t, T1).await.unwrap();
        }
    }
    let foreign = calls::record(&mut tx, &ours[8], T1).await;
    assert!(foreign.is_err(), "{foreign:?}");
    tx.commit().await.unwrap();
    drop(conn);
    let (want, got) = (snapshot(&db, &one).await, snapshot(&db, &bulk).await);
    assert!(want.iter().any(|l| l.contains("\"on_hold\"")), "{want:#?}");
    assert_eq!(got, want);
}
both_backends!(bulk_steps_what_one_at_a_time_steps);
