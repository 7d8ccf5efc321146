//! The bulk inbound path (`db::ingest_bulk`) on both backends: it stores exactly what the
//! one-at-a-time path stores — rows, conversations, windows, events — answers duplicates as
//! that path does, new contacts included, and hands back what only that path may do (a saved
//! contact's first conversation, reopened conversations). Then through the committer: concurrent webhooks, duplicates among them,
//! every one stored once with its event.

use channels::sms::keywords::Keyword;
use channels::InboundMessage;
use gateway::db::ingest::{self, Ingested};
use gateway::db::{ingest_bulk, Db};
use integration_tests::both_backends;
use integration_tests::env::{count, create_org, saved_contact, Backend, TestDb, TestOrg, World};
use integration_tests::twilio::inbound_sms;
use serde_json::Value;
use sqlx::{AnyConnection, Connection, Row};
use state_machines::Channel;

const T0: i64 = 1_800_000_000_000;
const T1: i64 = T0 + 60_000;
const A: &str = "+15550000001";
const B: &str = "+15550000002";
const C: &str = "+15550000003";
const D: &str = "+15550000004";
const E: &str = "+15550000005";
const OURS: &str = "+15550001111";

fn sms(pid: &str, from: &str, body: &str) -> InboundMessage {
    InboundMessage::text(Channel::Sms, pid, from, OURS, body)
}

fn whatsapp(pid: &str, from: &str, body: &str) -> InboundMessage {
    let mut m = InboundMessage::text(Channel::Whatsapp, pid, from, OURS, body);
    m.opens_window = Some(channels::whatsapp::SERVICE_WINDOW);
    m
}

/// The same history in an org: A has an open SMS conversation, B a resolved one, D an open
/// WhatsApp one, E is a saved contact with no conversation; C is unknown.
async fn seed(conn: &mut AnyConnection, org: &TestOrg) {
    saved_contact(conn, org, "sms", E, T0).await;
    for m in [
        sms("A0", A, "first"),
        sms("B0", B, "first"),
        whatsapp("W0", D, "hi"),
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
}

/// What an org holds, without our ids: messages, conversations, windows, and events as a
/// sorted list (with the order of each sender's events checked apart).
async fn snapshot(db: &Db, org: &TestOrg) -> Vec<String> {
    let mut out = Vec::new();
    let rows = sqlx::query(
        "SELECT m.channel, m.direction, m.provider_message_id, m.from_addr, m.to_addr, m.body, \
         m.media, m.status, m.kind, COALESCE(m.content, ''), m.created_at, m.updated_at, \
         COALESCE(m.reply_to_provider_id, ''), COALESCE(m.reply_to_message_id, ''), \
         c.status, c.updated_at, c.last_message_at \
         FROM messages m JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.org_id = $1 ORDER BY m.provider_message_id",
    )
    .bind(&org.id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for r in rows {
        let texts: Vec<String> = (0..10).map(|i| r.get::<String, _>(i)).collect();
        let times: Vec<i64> = [10, 11, 15, 16].map(|i| r.get::<i64, _>(i)).to_vec();
        let tail: Vec<String> = (12..15).map(|i| r.get::<String, _>(i)).collect();
        out.push(format!("message {texts:?} {times:?} {tail:?}"));
    }
    let windows = sqlx::query(
        "SELECT channel, address, closes_at FROM service_windows WHERE org_id = $1 ORDER BY address",
    )
    .bind(&org.id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for w in windows {
        let (ch, addr, at): (String, String, i64) = (w.get(0), w.get(1), w.get(2));
        out.push(format!("window {ch} {addr} {at}"));
    }
    for table in [
        "contacts",
        "contact_identities",
        "conversations",
        "messages",
        "outbox",
    ] {
        out.push(format!("{table} {}", count(db, table, &org.id).await));
    }
    let events = sqlx::query("SELECT type, data FROM outbox WHERE org_id = $1 ORDER BY id")
        .bind(&org.id)
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let mut shown = Vec::new();
    let mut per_sender: Vec<(String, String)> = Vec::new();
    for e in events {
        let (kind, data): (String, String) = (e.get(0), e.get(1));
        let mut data: Value = serde_json::from_str(&data).unwrap();
        let obj = data.as_object_mut().unwrap();
        for id in [
            "message_id",
            "conversation_id",
            "contact_id",
            "reply_to_message_id",
        ] {
            obj.remove(id);
        }
        if let (Some(from), Some(pid)) = (obj.get("from"), obj.get("provider_message_id")) {
            per_sender.push((from.to_string(), pid.to_string()));
        }
        shown.push(format!("event {kind} {data}"));
    }
    shown.sort();
    out.extend(shown);
    // One sender's events keep the order its messages came in (a stable sort by sender).
    per_sender.sort_by(|a, b| a.0.cmp(&b.0));
    out.push(format!("order {per_sender:?}"));
    out
}

async fn bulk_writes_what_one_at_a_time_writes(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let one = create_org(&db, "one", "http://127.0.0.1:9", 10.0).await;
    let bulk = create_org(&db, "bulk", "http://127.0.0.1:9", 10.0).await;
    let mut help = sms("A3", A, "HELP");
    help.keyword = Some(Keyword::Help);
    let mut auto = sms("A4", A, "I am away");
    auto.kind = channels::AUTO_REPLY_KIND.into();
    let items = [
        sms("A1", A, "hello"),       // 0: stored in bulk
        sms("B1", B, "again"),       // 1: reopens B's conversation: one at a time
        sms("C1", C, "new here"),    // 2: a new contact: made in bulk
        sms("A1", A, "hello"),       // 3: repeats 0
        sms("A0", A, "first"),       // 4: stored before
        whatsapp("W1", D, "thanks"), // 5: in bulk, moves D's window
        sms("C1", C, "new here"),    // 6: repeats 2
        help,                        // 7: a keyword that writes nothing more
        auto,                        // 8: an automatic reply keeps the conversation open
        sms("B2", B, "hello?"),      // 9: B again, after 1
        sms("E1", E, "saw your ad"), // 10: a saved contact's first conversation: one at a time
    ];
    let mut conn = db.pool.acquire().await.unwrap();
    seed(&mut conn, &one).await;
    seed(&mut conn, &bulk).await;
    for m in &items {
        ingest::message(&mut conn, &one.id, "test", m, T1)
            .await
            .unwrap();
    }
    let plain: Vec<ingest_bulk::Plain<'_>> = items.iter().map(|m| (bulk.id.as_str(), m)).collect();
    assert!(items.iter().all(ingest_bulk::is_plain));
    let mut tx = conn.begin().await.unwrap();
    let answers = ingest_bulk::messages(&mut tx, &plain, T1).await.unwrap();
    let shape: Vec<&str> = answers
        .iter()
        .map(|a| match a {
            None => "one",
            Some(Ingested {
                duplicate: true, ..
            }) => "dup",
            Some(_) => "bulk",
        })
        .collect();
    assert_eq!(
        shape,
        ["bulk", "one", "bulk", "dup", "dup", "bulk", "dup", "bulk", "bulk", "one", "one"]
    );
    let first = answers[0].clone().unwrap();
    assert_eq!(answers[3].as_ref().unwrap().message_id, first.message_id);
    let new_contact = answers[2].clone().unwrap();
    assert_eq!(
        answers[6].as_ref().unwrap().message_id,
        new_contact.message_id
    );
    assert_eq!(answers[7].as_ref().unwrap().keyword, Some(Keyword::Help));
    let a0: String =
        sqlx::query("SELECT id FROM messages WHERE org_id = $1 AND provider_message_id = 'A0'")
            .bind(&bulk.id)
            .fetch_one(&mut *tx)
            .await
            .unwrap()
            .get(0);
    assert_eq!(answers[4].as_ref().unwrap().message_id, a0);
    let mut after = Vec::new();
    for (m, answer) in items.iter().zip(&answers) {
        if answer.is_none() {
            let stored = ingest::message(&mut tx, &bulk.id, "test", m, T1)
                .await
                .unwrap();
            after.push((m.provider_message_id.as_str(), stored.duplicate));
        }
    }
    assert_eq!(after, [("B1", false), ("B2", false), ("E1", false)]);
    tx.commit().await.unwrap();
    drop(conn);
    let (want, got) = (snapshot(&db, &one).await, snapshot(&db, &bulk).await);
    assert!(
        want.iter().any(|l| l.starts_with("window whatsapp")),
        "{want:#?}"
    );
    assert_eq!(got, want);
}
both_backends!(bulk_writes_what_one_at_a_time_writes);

/// Many webhooks at once, from known and new senders, each delivered twice: the committer's
/// batches hold runs of them (stored in bulk), and every message is stored once, in its
/// sender's conversation, with one event.
async fn concurrent_webhooks_are_stored_once_each(backend: Backend) {
    let w = World::new(backend).await;
    let senders: Vec<String> = (0..8).map(|i| format!("+1555010{i:04}")).collect();
    for (i, from) in senders.iter().take(6).enumerate() {
        let p = inbound_sms(&w.org, &format!("SM{i:032}"), from, "first");
        assert_eq!(w.webhook(&w.org, "sms", &p).await.status(), 200);
    }
    let mut posts = Vec::new();
    for k in 0..80 {
        let from = &senders[k % senders.len()];
        let p = inbound_sms(
            &w.org,
            &format!("SM{:032}", 1000 + k),
            from,
            &format!("m{k}"),
        );
        posts.push(p.clone());
        posts.push(p);
    }
    let sent =
        futures_util::future::join_all(posts.iter().map(|p| w.webhook(&w.org, "sms", p))).await;
    assert!(sent.iter().all(|r| r.status() == 200));
    assert_eq!(count(&w.db, "messages", &w.org.id).await, 86);
    assert_eq!(count(&w.db, "conversations", &w.org.id).await, 8);
    let received: i64 = sqlx::query(
        "SELECT COUNT(*) FROM outbox WHERE org_id = $1 AND type = 'dartwing.message.received.v1'",
    )
    .bind(&w.org.id)
    .fetch_one(&w.db.pool)
    .await
    .unwrap()
    .get(0);
    assert_eq!(received, 86);
    // Each message in its sender's conversation.
    let misplaced: i64 = sqlx::query(
        "SELECT COUNT(*) FROM messages m JOIN contact_identities ci ON ci.org_id = m.org_id \
         AND ci.address = m.from_addr JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.org_id = $1 AND c.contact_id <> ci.contact_id",
    )
    .bind(&w.org.id)
    .fetch_one(&w.db.pool)
    .await
    .unwrap()
    .get(0);
    assert_eq!(misplaced, 0);
    w.gw.stop().await;
}
both_backends!(concurrent_webhooks_are_stored_once_each);
