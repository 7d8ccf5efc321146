//! Outbound messages created in bulk (`db::outbound_bulk`, a broadcast round's rungs) on both
//! backends: the same rows, conversations, history and events as one `create_outbound_in`
//! per message; the same answers for keys used before, opted-out recipients and new
//! contacts; and what only the one-at-a-time path may do (a saved contact's first
//! conversation, a daily cap, a key twice in one call, even beside a request that is not
//! plain) handed back untouched.

use channels::sms::keywords::Keyword;
use channels::InboundMessage;
use gateway::db::messages::{create_outbound, create_outbound_in, Created, NewOutbound};
use gateway::db::sends::Deferred;
use gateway::db::{ingest, outbound_bulk, Db};
use integration_tests::both_backends;
use integration_tests::env::{count, create_org, saved_contact, Backend, TestDb, TestOrg};
use serde_json::Value;
use sqlx::{AnyConnection, Connection, Row};
use state_machines::Channel;

const T0: i64 = 1_800_000_000_000;
const T1: i64 = T0 + 60_000;
const OURS: &str = "+15550001111";
/// Open SMS conversation.
const A: &str = "+15550000001";
/// Resolved SMS conversation.
const B: &str = "+15550000002";
/// Never seen.
const C: &str = "+15550000003";
/// Open WhatsApp conversation.
const D: &str = "+15550000004";
/// Saved through the contacts API, no conversation.
const E: &str = "+15550000005";
/// Sent STOP.
const S: &str = "+15550000006";

fn out(channel: Channel, to: &str, body: &str, key: Option<&str>) -> NewOutbound {
    NewOutbound {
        channel,
        from: OURS.into(),
        to: to.into(),
        body: body.into(),
        content: None,
        needs_service_window: false,
        idempotency_key: key.map(str::to_owned),
        bulk: true,
        daily_cap: None,
        attachments: Vec::new(),
    }
}

async fn seed(conn: &mut AnyConnection, org: &TestOrg) {
    saved_contact(conn, org, "sms", E, T0).await;
    let mut stop = InboundMessage::text(Channel::Sms, "S0", S, OURS, "STOP");
    stop.keyword = Some(Keyword::OptOut);
    let mut whatsapp = InboundMessage::text(Channel::Whatsapp, "W0", D, OURS, "hi");
    whatsapp.opens_window = Some(channels::whatsapp::SERVICE_WINDOW);
    for m in [
        InboundMessage::text(Channel::Sms, "A0", A, OURS, "first"),
        InboundMessage::text(Channel::Sms, "B0", B, OURS, "first"),
        whatsapp,
        stop,
    ] {
        ingest::message(conn, &org.id, "test", &m, T0)
            .await
            .unwrap();
    }
    sqlx::query(
        "UPDATE conversations SET status = 'resolved' WHERE org_id = $1 AND contact_id = \
         (SELECT contact_id FROM contact_identities WHERE org_id = $1 AND address = $2)",
    )
    .bind(&org.id)
    .bind(B)
    .execute(&mut *conn)
    .await
    .unwrap();
    for (key, body) in [("used", "before"), ("used2", "before")] {
        let req = out(Channel::Sms, A, body, Some(key));
        create_outbound(conn, &org.id, &req, T0).await.unwrap();
    }
}

/// What an org holds, without our ids: messages with their conversations, row counts, the
/// history rows, and the events as a sorted list.
async fn snapshot(db: &Db, org: &TestOrg) -> Vec<String> {
    let mut out = Vec::new();
    let rows = sqlx::query(
        "SELECT m.channel, m.direction, m.from_addr, m.to_addr, m.body, m.media, m.status, \
         m.kind, COALESCE(m.content, ''), COALESCE(m.idempotency_key, ''), ci.address, \
         c.status, m.created_at, m.updated_at, COALESCE(m.next_attempt_at, 0), m.priority, \
         c.updated_at, c.last_message_at \
         FROM messages m JOIN conversations c ON c.id = m.conversation_id \
         JOIN contact_identities ci ON ci.contact_id = m.contact_id AND ci.channel = m.channel \
         WHERE m.org_id = $1 AND m.direction = 'outbound' ORDER BY m.body, m.to_addr, m.channel, m.idempotency_key",
    )
    .bind(&org.id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for r in rows {
        let texts: Vec<String> = (0..12).map(|i| r.get::<String, _>(i)).collect();
        let times: Vec<i64> = (12..18).map(|i| r.get::<i64, _>(i)).collect();
        out.push(format!("message {texts:?} {times:?}"));
    }
    for table in [
        "contacts",
        "contact_identities",
        "conversations",
        "messages",
        "message_history",
        "outbox",
    ] {
        out.push(format!("{table} {}", count(db, table, &org.id).await));
    }
    let history = sqlx::query(
        "SELECT h.event, h.state, h.source, h.at, m.body FROM message_history h \
         JOIN messages m ON m.id = h.message_id WHERE h.org_id = $1",
    )
    .bind(&org.id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut shown: Vec<String> = history
        .iter()
        .map(|h| {
            let (e, s, src): (String, String, String) = (h.get(0), h.get(1), h.get(2));
            format!(
                "history {e} {s} {src} {} {}",
                h.get::<i64, _>(3),
                h.get::<String, _>(4)
            )
        })
        .collect();
    let events = sqlx::query("SELECT type, data FROM outbox WHERE org_id = $1")
        .bind(&org.id)
        .fetch_all(&db.pool)
        .await
        .unwrap();
    for e in events {
        let (kind, data): (String, String) = (e.get(0), e.get(1));
        let mut data: Value = serde_json::from_str(&data).unwrap();
        let obj = data.as_object_mut().unwrap();
        for id in ["message_id", "conversation_id", "contact_id"] {
            obj.remove(id);
        }
        shown.push(format!("event {kind} {data}"));
    }
    shown.sort();
    out.extend(shown);
    out
}

async fn bulk_creates_what_one_at_a_time_creates(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let one = create_org(&db, "one", "http://127.0.0.1:9", 10.0).await;
    let bulk = create_org(&db, "bulk", "http://127.0.0.1:9", 10.0).await;
    let mut capped = out(Channel::Sms, A, "capped", Some("k8"));
    capped.daily_cap = Some(1_000);
    let mut capped_first = out(Channel::Sms, A, "capped first", Some("k12"));
    capped_first.daily_cap = Some(1_000);
    let reqs = [
        out(Channel::Sms, A, "to a", Some("k0")), // 0: known contact: bulk
        out(Channel::Sms, C, "to c", Some("k1")), // 1: new contact: made in bulk
        out(Channel::Sms, E, "to e", Some("k2")), // 2: saved contact: one at a time
        out(Channel::Sms, S, "to s", Some("k3")), // 3: opted out
        out(Channel::Sms, A, "before", Some("used")), // 4: the key's own request
        out(Channel::Sms, A, "changed", Some("used2")), // 5: the key, another request
        out(Channel::Sms, C, "twice", Some("dup")), // 6: a key twice: one at a time
        out(Channel::Sms, C, "twice", Some("dup")), // 7: …and its repeat
        capped,                                   // 8: a daily cap: one at a time
        out(Channel::Sms, C, "again c", None),    // 9: C again, no key: bulk
        out(Channel::Whatsapp, D, "to d", Some("k10")), // 10: another channel: bulk
        out(Channel::Sms, B, "to b", Some("k11")), // 11: resolved stays resolved: bulk
        capped_first,                             // 12: not plain, its key first: one at a time
        out(Channel::Sms, A, "plain second", Some("k12")), // 13: so this one waits its turn
    ];
    let mut conn = db.pool.acquire().await.unwrap();
    seed(&mut conn, &one).await;
    seed(&mut conn, &bulk).await;
    let mut later = Deferred::default();
    let mut want_answers = Vec::new();
    for r in &reqs {
        let created = create_outbound_in(&mut conn, &one.id, r, T1, Some(&mut later))
            .await
            .unwrap();
        want_answers.push(created);
    }
    later.flush(&mut conn, T1).await.unwrap();

    let mut tx = conn.begin().await.unwrap();
    let mut later = Deferred::default();
    let items: Vec<outbound_bulk::Request<'_>> =
        reqs.iter().map(|r| (bulk.id.as_str(), r)).collect();
    let answers = outbound_bulk::create_many(&mut tx, &items, T1, &mut later)
        .await
        .unwrap();
    let shape: Vec<&str> = answers
        .iter()
        .map(|a| match a {
            None => "one",
            Some(Created::Queued { .. }) => "queued",
            Some(Created::Existing { .. }) => "existing",
            Some(Created::KeyReused) => "reused",
            Some(Created::OptedOut) => "opted out",
            Some(_) => "other",
        })
        .collect();
    assert_eq!(
        shape,
        [
            "queued",
            "queued",
            "one",
            "opted out",
            "existing",
            "reused",
            "one",
            "one",
            "one",
            "queued",
            "queued",
            "queued",
            "one",
            "one",
        ]
    );
    // C's two messages share the conversation made for it.
    let conv = |a: &Option<Created>| match a {
        Some(Created::Queued {
            conversation_id, ..
        }) => conversation_id.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(conv(&answers[1]), conv(&answers[9]));
    let mut got_answers = Vec::new();
    for (r, answer) in reqs.iter().zip(answers) {
        let created = match answer {
            Some(c) => c,
            None => create_outbound_in(&mut tx, &bulk.id, r, T1, Some(&mut later))
                .await
                .unwrap(),
        };
        got_answers.push(created);
    }
    later.flush(&mut tx, T1).await.unwrap();
    tx.commit().await.unwrap();
    drop(conn);
    // The same answer for every request, ids aside.
    let kind = |c: &Created| match c {
        Created::Queued { .. } => "queued".to_string(),
        Created::Existing { .. } => "existing".into(),
        other => format!("{other:?}"),
    };
    let want: Vec<String> = want_answers.iter().map(kind).collect();
    let got: Vec<String> = got_answers.iter().map(kind).collect();
    assert_eq!(got, want);
    let (want, got) = (snapshot(&db, &one).await, snapshot(&db, &bulk).await);
    assert!(
        want.iter()
            .any(|l| l.contains("dartwing.conversation.created.v1")),
        "{want:#?}"
    );
    assert_eq!(got, want);
}
both_backends!(bulk_creates_what_one_at_a_time_creates);
