//! Email against real peers: Dovecot (IMAP in) and aiosmtpd (SMTP out), both started per
//! test, on both backends. Covers: inbound mail in the API with `\Seen` set after the commit;
//! a reply thread of 20 messages from two mail clients staying one thread in one
//! conversation (a forward from someone else starting its own); an agent's reply arriving
//! with the right In-Reply-To/References; a DSN bounce failing the right message; an
//! auto-reply flagged and not answered; a hostile-MIME corpus that never stalls the mailbox;
//! SIGKILL of the real binary while 1,000 messages are appended (each stored once); HTML
//! replies (multipart/alternative, sanitised) DKIM-signed and verified by dkimpy;
//! attachments out; and stored mail moved to another folder (with and without MOVE).

use integration_tests::both_backends;
use integration_tests::env::{
    count, create_org, eventually, free_port, gateway_binary, test_config, Backend, ChildGateway,
    TestDb, TestGateway, TestOrg,
};
use integration_tests::mail::{self, mail, Dovecot, SmtpReceiver, ADDRESS};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

struct EmailWorld {
    db: gateway::db::Db,
    org: TestOrg,
    imap: Dovecot,
    smtp: SmtpReceiver,
    gw: TestGateway,
    client: reqwest::Client,
    tdb: TestDb,
}

impl EmailWorld {
    async fn new(backend: Backend) -> EmailWorld {
        Self::with_account(backend, "", |_| {}).await
    }

    /// With `dovecot` lines in the IMAP server's configuration and the account's
    /// configuration changed by `edit` (a DKIM key, a folder to move mail to).
    async fn with_account(
        backend: Backend,
        dovecot: &str,
        edit: impl FnOnce(&mut Value),
    ) -> EmailWorld {
        let tdb = TestDb::new(backend).await;
        let db = tdb.connect().await;
        let org = create_org(&db, "acme", "http://127.0.0.1:9", 10.0).await;
        let imap = Dovecot::start_with(dovecot);
        let smtp = SmtpReceiver::start();
        let mut cfg = mail::account_config(&imap, &smtp);
        edit(&mut cfg);
        gateway::db::orgs::upsert_channel_account(
            &db.pool,
            &org.id,
            "email",
            "email",
            &cfg.to_string(),
        )
        .await
        .expect("email account");
        let mut config = test_config(&tdb.url);
        config.email.scan_ms = 100;
        config.email.retry_base_ms = 50;
        config.email.retry_max_ms = 500;
        let gw = TestGateway::start(config).await;
        EmailWorld {
            db,
            org,
            imap,
            smtp,
            gw,
            client: reqwest::Client::new(),
            tdb,
        }
    }

    async fn get(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path}", self.gw.base))
            .bearer_auth(&self.org.key)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }

    async fn send(&self, body: Value) -> Value {
        let r = self
            .client
            .post(format!("{}/api/v1/messages", self.gw.base))
            .bearer_auth(&self.org.key)
            .json(&body)
            .send()
            .await
            .expect("send");
        let status = r.status();
        let v: Value = r.json().await.expect("json");
        assert_eq!(status, 202, "{v}");
        v
    }

    /// The email conversation of `address` and its messages, once it has `n` of them.
    async fn conversation_of(&self, address: &str, n: usize) -> (String, Vec<Value>) {
        eventually(WAIT, || async {
            let convs = self.get("/api/v1/conversations").await;
            let conv = convs.as_array()?.iter().find(|c| {
                c["identities"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|i| i["address"] == address))
            })?;
            let id = conv["id"].as_str()?.to_string();
            let msgs = self
                .get(&format!("/api/v1/conversations/{id}/messages?limit=1000"))
                .await;
            let msgs = msgs.as_array()?.clone();
            (msgs.len() >= n).then_some((id, msgs))
        })
        .await
    }

    async fn message(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/messages/{id}")).await
    }

    /// Message `id` once it is no longer queued or sending.
    async fn settled(&self, id: &str) -> Value {
        eventually(WAIT, || async {
            let m = self.message(id).await;
            (m["status"] != "queued" && m["status"] != "sending").then_some(m)
        })
        .await
    }
}

async fn inbound_mail_appears_in_the_api(backend: Backend) {
    let w = EmailWorld::new(backend).await;
    w.imap
        .append(&[
            mail("Jane Doe <Jane@Example.com>", "j1@example.com", "Order 42", "Where is my order?", None, &[]),
            b"From: jane@example.com\r\nTo: support@acme.test\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\
Message-ID: <j2@example.com>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=A\r\n\r\n--A\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Gr=FC=DFe aus K=F6ln\r\n--A\r\nContent-Type: text/html\r\n\r\n<p>ignored</p>\r\n--A--\r\n"
                .to_vec(),
        ])
        .await;
    let (_, msgs) = w.conversation_of("jane@example.com", 2).await;
    assert_eq!(msgs[0]["channel"], "email");
    assert_eq!(msgs[0]["direction"], "inbound");
    assert_eq!(msgs[0]["subject"], "Order 42");
    assert_eq!(
        msgs[0]["body"].as_str().unwrap().trim(),
        "Where is my order?"
    );
    assert_eq!(msgs[0]["from"], "jane@example.com");
    assert_eq!(msgs[0]["to"], ADDRESS);
    assert_eq!(msgs[1]["subject"], "Grüße");
    assert_eq!(msgs[1]["body"].as_str().unwrap().trim(), "Grüße aus Köln");
    // \Seen only after the commit: both are flagged once stored.
    eventually(WAIT, || async {
        w.imap.unseen().await.is_empty().then_some(())
    })
    .await;
    assert!(w.imap.flags(1).await.iter().any(|f| f.contains("Seen")));
    assert_eq!(count(&w.db, "messages", &w.org.id).await, 2);
}
both_backends!(inbound_mail_appears_in_the_api);

/// Twenty replies between Jane (two mail clients: one sends full References, one only
/// In-Reply-To and an `AW:` subject; one reply lost its headers and keeps only the subject)
/// and us, plus a forward from Bob quoting the thread's ids.
async fn a_reply_thread_stays_one_conversation(backend: Backend) {
    let w = EmailWorld::new(backend).await;
    let mut ids: Vec<String> = vec!["t0@example.com".into()];
    let mut batch = vec![mail(
        "jane@example.com",
        "t0@example.com",
        "Invoice 7",
        "first",
        None,
        &[],
    )];
    for i in 1..20 {
        let id = format!(
            "t{i}@{}",
            if i % 2 == 0 {
                "example.com"
            } else {
                "laptop.example.com"
            }
        );
        let parent = ids.last().unwrap().clone();
        let m = match i % 3 {
            // Client A: In-Reply-To and the full References chain.
            0 => {
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                mail(
                    "jane@example.com",
                    &id,
                    "Re: Invoice 7",
                    &format!("reply {i}"),
                    Some(&parent),
                    &refs,
                )
            }
            // Client B: only In-Reply-To, a German prefix.
            1 => mail(
                "Jane <jane@example.com>",
                &id,
                "AW: Invoice 7",
                &format!("reply {i}"),
                Some(&parent),
                &[],
            ),
            // A client that dropped the headers: the subject alone threads it.
            _ => mail(
                "jane@example.com",
                &id,
                "RE: invoice 7",
                &format!("reply {i}"),
                None,
                &[],
            ),
        };
        batch.push(m);
        ids.push(id);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    batch.push(mail(
        "bob@example.org",
        "fwd1@example.org",
        "Fwd: Invoice 7",
        "FYI",
        None,
        &refs,
    ));
    w.imap.append(&batch).await;
    let (conv, msgs) = w.conversation_of("jane@example.com", 20).await;
    assert_eq!(msgs.len(), 20, "all of Jane's mail in her one conversation");
    let thread = |m: &Value| m["content"]["thread_id"].as_str().unwrap().to_string();
    for m in &msgs {
        assert_eq!(thread(m), "t0@example.com", "{}", m["content"]);
    }
    let (bob_conv, bob) = w.conversation_of("bob@example.org", 1).await;
    assert_ne!(
        conv, bob_conv,
        "a forward from someone else is their own conversation"
    );
    assert_eq!(thread(&bob[0]), "fwd1@example.org");
    assert_eq!(bob[0]["content"]["threaded_by"], "new");
}
both_backends!(a_reply_thread_stays_one_conversation);

fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .replace("\r\n ", " ");
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

async fn an_agent_reply_is_threaded(backend: Backend) {
    let w = EmailWorld::new(backend).await;
    w.imap
        .append(&[mail(
            "jane@example.com",
            "j2@example.com",
            "Re: Order 42",
            "Still waiting",
            Some("r0@example.com"),
            &["r0@example.com"],
        )])
        .await;
    w.conversation_of("jane@example.com", 1).await;
    let sent = w
        .send(serde_json::json!({"channel": "email", "to": "Jane@example.com", "body": "It ships today."}))
        .await;
    let id = sent["id"].as_str().unwrap().to_string();
    let msg = eventually(WAIT, || async {
        let m = w.message(&id).await;
        (m["status"] == "sent").then_some(m)
    })
    .await;
    let ours = format!("{id}@acme.test");
    assert_eq!(msg["provider_message_id"], ours.as_str());
    let raw = eventually(WAIT, || async { w.smtp.messages().into_iter().next() }).await;
    assert_eq!(
        header(&raw, "Message-ID").as_deref(),
        Some(format!("<{ours}>").as_str())
    );
    assert_eq!(
        header(&raw, "In-Reply-To").as_deref(),
        Some("<j2@example.com>")
    );
    assert_eq!(
        header(&raw, "References").as_deref(),
        Some("<r0@example.com> <j2@example.com>")
    );
    assert_eq!(header(&raw, "Subject").as_deref(), Some("Re: Order 42"));
    assert_eq!(header(&raw, "To").as_deref(), Some("jane@example.com"));
    assert!(String::from_utf8_lossy(&raw).contains("It ships today."));
    // Jane answers our reply: the same thread.
    w.imap
        .append(&[mail(
            "jane@example.com",
            "j3@example.com",
            "Re: Order 42",
            "Thanks!",
            Some(&ours),
            &[],
        )])
        .await;
    let (_, msgs) = w.conversation_of("jane@example.com", 3).await;
    let threads: Vec<&str> = msgs
        .iter()
        .map(|m| m["content"]["thread_id"].as_str().unwrap_or("?"))
        .collect();
    // Jane's first mail named a parent we never had: the thread is named by her mail.
    assert_eq!(threads, vec!["j2@example.com"; 3], "{threads:?}");
    // A new subject to a new address needs a subject.
    let r = w
        .client
        .post(format!("{}/api/v1/messages", w.gw.base))
        .bearer_auth(&w.org.key)
        .json(&serde_json::json!({"channel": "email", "to": "new@example.com", "body": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
both_backends!(an_agent_reply_is_threaded);

fn dsn(original: &str, rcpt: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.net\r\nTo: {ADDRESS}\r\n\
Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-{original}>\r\n\
Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: User unknown\r\n\r\n\
--B\r\nContent-Type: message/rfc822\r\n\r\nFrom: {ADDRESS}\r\nTo: {rcpt}\r\n\
Message-ID: <{original}>\r\nSubject: hello\r\n\r\nhello\r\n--B--\r\n"
    )
    .into_bytes()
}

async fn a_bounce_marks_the_right_message_failed(backend: Backend) {
    let w = EmailWorld::new(backend).await;
    let mut ids = Vec::new();
    for to in ["nobody@example.net", "somebody@example.net"] {
        let v = w
            .send(
                serde_json::json!({"channel": "email", "to": to, "subject": "Hello", "body": "Hi"}),
            )
            .await;
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        eventually(WAIT, || async {
            (w.message(id).await["status"] == "sent").then_some(())
        })
        .await;
    }
    let original = format!("{}@acme.test", ids[0]);
    w.imap.append(&[dsn(&original, "nobody@example.net")]).await;
    let failed = eventually(WAIT, || async {
        let m = w.message(&ids[0]).await;
        (m["status"] == "failed").then_some(m)
    })
    .await;
    assert_eq!(failed["error_code"], "5.1.1");
    assert!(
        failed["error_message"]
            .as_str()
            .unwrap()
            .contains("User unknown"),
        "{failed}"
    );
    // The other message is untouched, and the bounce is no conversation message.
    eventually(WAIT, || async {
        w.imap.unseen().await.is_empty().then_some(())
    })
    .await;
    assert_eq!(w.message(&ids[1]).await["status"], "sent");
    assert_eq!(count(&w.db, "messages", &w.org.id).await, 2);
}
both_backends!(a_bounce_marks_the_right_message_failed);

async fn an_auto_reply_is_flagged_and_not_answered(backend: Backend) {
    let w = EmailWorld::new(backend).await;
    // Jane writes, and the agent resolves her conversation.
    w.imap
        .append(&[mail(
            "jane@example.com",
            "j1@example.com",
            "Question",
            "Do you ship abroad?",
            None,
            &[],
        )])
        .await;
    let (jane, _) = w.conversation_of("jane@example.com", 1).await;
    let resolved = w
        .client
        .post(format!("{}/api/v1/conversations/{jane}/status", w.gw.base))
        .bearer_auth(&w.org.key)
        .json(&serde_json::json!({"status": "resolved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resolved.status(), 200);
    let status_of = |id: String| {
        let w = &w;
        async move {
            let convs = w.get("/api/v1/conversations").await;
            convs
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == id.as_str())
                .map(|c| c["status"].as_str().unwrap().to_owned())
        }
    };
    assert_eq!(status_of(jane.clone()).await.as_deref(), Some("resolved"));
    let ooo = b"From: jane@example.com\r\nTo: support@acme.test\r\nSubject: Out of office\r\n\
Message-ID: <ooo1@example.com>\r\nAuto-Submitted: auto-replied\r\nX-Autoreply: yes\r\n\r\n\
I am away until Monday.\r\n"
        .to_vec();
    let bulk = b"From: news@example.com\r\nTo: support@acme.test\r\nSubject: Newsletter\r\n\
Message-ID: <n1@example.com>\r\nPrecedence: bulk\r\n\r\nNews.\r\n"
        .to_vec();
    w.imap.append(&[ooo, bulk]).await;
    let (_, msgs) = w.conversation_of("jane@example.com", 2).await;
    let msgs: Vec<&Value> = msgs.iter().filter(|m| m["kind"] == "auto_reply").collect();
    assert_eq!(msgs.len(), 1);
    // The out-of-office is kept, but the resolved conversation stays resolved.
    assert_eq!(status_of(jane.clone()).await.as_deref(), Some("resolved"));
    assert!(msgs[0]["content"]["auto_reply"]
        .as_str()
        .unwrap()
        .contains("Auto-Submitted"));
    let (_, news) = w.conversation_of("news@example.com", 1).await;
    assert_eq!(news[0]["kind"], "auto_reply");
    // A person's mail after them is read too: the mailbox has moved past both, and nothing
    // was sent or queued in answer.
    w.imap
        .append(&[mail(
            "jane@example.com",
            "j9@example.com",
            "Back",
            "I am back",
            None,
            &[],
        )])
        .await;
    w.conversation_of("jane@example.com", 3).await;
    // A person writing reopens it.
    assert_eq!(status_of(jane).await.as_deref(), Some("open"));
    let outbound: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM messages WHERE org_id = $1 AND direction = 'outbound'",
    )
    .bind(&w.org.id)
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(outbound.0, 0);
    assert!(w.smtp.messages().is_empty());
}
both_backends!(an_auto_reply_is_flagged_and_not_answered);

/// Hostile MIME: each message is stored or refused with its reason; none stalls the mailbox.
fn hostile_corpus() -> Vec<Vec<u8>> {
    let mut corpus = Vec::new();
    let head = |id: &str| {
        format!("From: evil@example.com\r\nTo: {ADDRESS}\r\nMessage-ID: <{id}@example.com>\r\nSubject: hostile {id}\r\n")
    };
    // 1. Deep nesting: 2,000 multiparts inside each other.
    let mut deep = head("deep");
    deep.push_str("Content-Type: multipart/mixed; boundary=b0\r\n\r\n");
    for i in 0..2000 {
        deep.push_str(&format!(
            "--b{i}\r\nContent-Type: multipart/mixed; boundary=b{}\r\n\r\n",
            i + 1
        ));
    }
    deep.push_str("--b2000\r\nContent-Type: text/plain\r\n\r\nbottom\r\n");
    corpus.push(deep.into_bytes());
    // 2. Broken boundaries: declared, never used; and a part that never ends.
    corpus.push(format!("{}Content-Type: multipart/mixed; boundary=\"nope\"\r\n\r\n--other\r\nContent-Type: text/plain\r\n\r\nlost\r\n", head("broken")).into_bytes());
    corpus.push(format!("{}Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nunterminated", head("unterminated")).into_bytes());
    // 3. A 1 MB header line.
    corpus.push(
        format!(
            "{}X-Huge: {}\r\n\r\nbody\r\n",
            head("hugeheader"),
            "A".repeat(1024 * 1024)
        )
        .into_bytes(),
    );
    corpus.push(format!("From: evil@example.com\r\nMessage-ID: <hugesubject@example.com>\r\nSubject: {}\r\n\r\nbody\r\n", "S".repeat(1024 * 1024)).into_bytes());
    // 4. Bad base64 and bad quoted-printable.
    corpus.push(format!("{}Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not*base64@@@===\r\n", head("badb64")).into_bytes());
    corpus.push(format!("{}Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=4=\r\n=E2=82\r\n", head("badqp")).into_bytes());
    // 5. Unknown charsets, in the body and in an encoded word.
    corpus.push("From: evil@example.com\r\nMessage-ID: <charset@example.com>\r\nSubject: =?x-klingon?B?SGVsbG8=?=\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\nqapla\r\n".as_bytes().to_vec());
    // 6. NUL bytes in headers and body.
    let mut nul = head("nul").into_bytes();
    nul.extend_from_slice(b"X-Nul: a\0b\r\nContent-Type: text/plain\r\n\r\nbefore\0after\0\r\n");
    corpus.push(nul);
    // 7. No sender at all, and binary garbage.
    corpus.push(b"Subject: nobody\r\nMessage-ID: <nosender@example.com>\r\n\r\nwho?\r\n".to_vec());
    corpus.push((0..4096u32).map(|i| (i * 7 % 256) as u8).collect());
    // 8. An attachment with a hostile name and a lying type.
    corpus.push(format!("{}Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: text/plain\r\n\r\nsee\r\n--z\r\nContent-Type: image/png; name=\"../../etc/passwd\0.png\"\r\nContent-Disposition: attachment; filename=\"../../etc/passwd\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--z--\r\n", head("attach")).into_bytes());
    corpus
}

async fn hostile_mime_never_stalls_the_mailbox(backend: Backend) {
    let w = EmailWorld::new(backend).await;
    let corpus = hostile_corpus();
    let n = corpus.len() as i64;
    w.imap.append(&corpus).await;
    // A well-formed message after the corpus is stored: the mailbox is not stalled.
    w.imap
        .append(&[mail(
            "jane@example.com",
            "after@example.com",
            "After",
            "still here",
            None,
            &[],
        )])
        .await;
    w.conversation_of("jane@example.com", 1).await;
    // The cursor passes a UID only once its message is committed or refused.
    eventually(WAIT, || async {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT last_uid FROM email_mailboxes WHERE org_id = $1")
                .bind(&w.org.id)
                .fetch_optional(&w.db.pool)
                .await
                .unwrap();
        row.filter(|r| r.0 > n).map(|_| ())
    })
    .await;
    let stored = count(&w.db, "messages", &w.org.id).await - 1;
    let rejects: Vec<(i64, String)> =
        sqlx::query_as("SELECT uid, reason FROM email_rejects WHERE org_id = $1 ORDER BY uid")
            .bind(&w.org.id)
            .fetch_all(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(
        stored + rejects.len() as i64,
        n,
        "each hostile message is stored or refused with its reason: {rejects:?}"
    );
    for (_, reason) in &rejects {
        assert!(!reason.is_empty());
    }
    let health = w
        .client
        .get(format!("{}/health", w.gw.base))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
    eprintln!(
        "hostile corpus: {stored} stored, {} refused: {rejects:?}",
        rejects.len()
    );
}
both_backends!(hostile_mime_never_stalls_the_mailbox);

/// `dartwing-gateway channel add email` for the test account, with `extra` arguments; the
/// IMAP password comes from its environment variable.
fn channel_add_email(
    db_url: &str,
    imap: &Dovecot,
    smtp: &SmtpReceiver,
    extra: &[&std::ffi::OsStr],
) -> std::process::Output {
    let (imap_port, smtp_port) = (imap.port.to_string(), smtp.port.to_string());
    std::process::Command::new(gateway_binary())
        .args([
            "channel",
            "add",
            "email",
            "--org",
            "acme",
            "--address",
            ADDRESS,
        ])
        .args(["--imap-host", "127.0.0.1", "--imap-port", &imap_port])
        .args(["--imap-tls", "none", "--imap-username", &imap.user])
        .args(["--smtp-host", "127.0.0.1", "--smtp-port", &smtp_port])
        .args(["--smtp-tls", "none"])
        .args(extra)
        .env("DARTWING_DATABASE_URL", db_url)
        .env("DARTWING_EMAIL_IMAP_PASSWORD", &imap.password)
        .env("DARTWING_LOG", "warn")
        .output()
        .expect("channel add email")
}

/// 1,000 messages (the size) appended while the real binary runs and is SIGKILLed
/// mid-ingest, then restarted: each is stored exactly once and every one ends up `\Seen`. The
/// account is added through the CLI, with the IMAP password from its environment variable.
const CRASH_N: usize = 1_000;

async fn sigkill_mid_ingest_stores_each_mail_once(backend: Backend) {
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 10.0).await;
    let imap = Dovecot::start();
    let smtp = SmtpReceiver::start();
    let out = channel_add_email(&tdb.url, &imap, &smtp, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = [("DARTWING_EMAIL_SCAN_MS", "100")];
    let port = free_port();
    let mut gw = ChildGateway::spawn_with(&tdb.url, port, &env).await;
    let mails: Vec<Vec<u8>> = (0..CRASH_N)
        .map(|i| {
            let from = format!("c{}@example.com", i % 17);
            mail(
                &from,
                &format!("crash-{i}@example.com"),
                "load",
                &format!("n {i}"),
                None,
                &[],
            )
        })
        .collect();
    let stored =
        |db: gateway::db::Db, org: String| async move { count(&db, "messages", &org).await };
    // Append in small batches while the gateway reads; kill it once a quarter is stored.
    let appender = {
        let mails = mails.clone();
        let imap = imap.login();
        tokio::spawn(async move {
            for batch in mails.chunks(10) {
                imap.append(batch).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    eventually(WAIT, || {
        let (db, org) = (db.clone(), org.id.clone());
        async move { (stored(db, org).await >= (CRASH_N / 4) as i64).then_some(()) }
    })
    .await;
    gw.kill();
    let at_kill = count(&db, "messages", &org.id).await;
    appender.await.unwrap();
    assert!(
        (at_kill as usize) < CRASH_N,
        "killed mid-run ({at_kill} of {CRASH_N} stored)"
    );
    let _gw = ChildGateway::spawn_with(&tdb.url, port, &env).await;
    eventually(Duration::from_secs(120), || {
        let (db, org) = (db.clone(), org.id.clone());
        async move { (stored(db, org).await >= CRASH_N as i64).then_some(()) }
    })
    .await;
    eventually(WAIT, || async {
        imap.unseen().await.is_empty().then_some(())
    })
    .await;
    let distinct: (i64,) = sqlx::query_as(
        "SELECT COUNT(DISTINCT provider_message_id) FROM messages WHERE org_id = $1",
    )
    .bind(&org.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        count(&db, "messages", &org.id).await as usize,
        CRASH_N,
        "none twice"
    );
    assert_eq!(distinct.0 as usize, CRASH_N, "none lost");
    assert_eq!(imap.all().await.len(), CRASH_N);
    assert_eq!(count(&db, "conversations", &org.id).await, 17);
    eprintln!("killed with {at_kill} of {CRASH_N} stored; all {CRASH_N} stored once after restart");
}
both_backends!(sigkill_mid_ingest_stores_each_mail_once);

/// Two nodes on one PostgreSQL: one reads the mailbox (one advisory lock holder, the other
/// waits), and when the reader is SIGKILLed the other takes the mailbox over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_one_reader_taken_over_when_it_dies() {
    let tdb = TestDb::new(Backend::Postgres).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 10.0).await;
    let imap = Dovecot::start();
    let smtp = SmtpReceiver::start();
    mail::add_account(&db, &org.id, &imap, &smtp).await;
    let key = gateway::db::mailboxes::lock_key(
        &org.id,
        &format!("{}@127.0.0.1:{}/INBOX", imap.user, imap.port),
    );
    let holders = || {
        let db = db.clone();
        async move {
            let row: (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND classid::bigint = $1 AND objid::bigint = $2",
            )
            .bind((key >> 32) & 0xffff_ffff)
            .bind(key & 0xffff_ffff)
            .fetch_one(&db.pool)
            .await
            .unwrap();
            row.0
        }
    };
    let env = [("DARTWING_EMAIL_SCAN_MS", "100")];
    let mut a = ChildGateway::spawn_with(&tdb.url, free_port(), &env).await;
    let batch = |from: usize| -> Vec<Vec<u8>> {
        (from..from + 10)
            .map(|i| {
                mail(
                    "jane@example.com",
                    &format!("n{i}@example.com"),
                    "x",
                    "y",
                    None,
                    &[],
                )
            })
            .collect()
    };
    imap.append(&batch(0)).await;
    eventually(WAIT, || async {
        (count(&db, "messages", &org.id).await == 10).then_some(())
    })
    .await;
    assert_eq!(holders().await, 1, "node A reads the mailbox");
    let _b = ChildGateway::spawn_with(&tdb.url, free_port(), &env).await;
    imap.append(&batch(10)).await;
    eventually(WAIT, || async {
        (count(&db, "messages", &org.id).await == 20).then_some(())
    })
    .await;
    assert_eq!(holders().await, 1, "one reader with two nodes up");
    a.kill();
    imap.append(&batch(20)).await;
    eventually(WAIT, || async {
        (count(&db, "messages", &org.id).await == 30).then_some(())
    })
    .await;
    assert_eq!(holders().await, 1, "node B took the mailbox over");
    eventually(WAIT, || async {
        imap.unseen().await.is_empty().then_some(())
    })
    .await;
}

/// 1,000 messages waiting in the folder when the gateway starts: every one stored once, and
/// the figures printed — messages/s end to end (committed and `\Seen`), and the parse step
/// (ours, and mail-parser alone) over the same messages.
async fn a_full_mailbox_is_read_once_and_measured(backend: Backend) {
    const N: usize = 1000;
    let tdb = TestDb::new(backend).await;
    let db = tdb.connect().await;
    let org = create_org(&db, "acme", "http://127.0.0.1:9", 10.0).await;
    let imap = Dovecot::start();
    let smtp = SmtpReceiver::start();
    let corpus: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let from = format!("c{}@example.com", i % 50);
            let body = format!(
                "message {i}\r\n\r\n{}",
                "Some text of a usual length. ".repeat(20)
            );
            mail(
                &from,
                &format!("bulk-{i}@example.com"),
                &format!("Subject {}", i % 50),
                &body,
                None,
                &[],
            )
        })
        .collect();
    imap.append(&corpus).await;
    let started = std::time::Instant::now();
    for m in &corpus {
        std::hint::black_box(channels::email::parse::parse(m, ADDRESS, 1 << 20));
    }
    let ours = started.elapsed();
    let started = std::time::Instant::now();
    for m in &corpus {
        std::hint::black_box(mail_parser_alone(m));
    }
    let alone = started.elapsed();
    mail::add_account(&db, &org.id, &imap, &smtp).await;
    let mut config = test_config(&tdb.url);
    config.email.scan_ms = 50;
    let started = std::time::Instant::now();
    let gw = TestGateway::start(config).await;
    eventually(Duration::from_secs(300), || async {
        (count(&db, "messages", &org.id).await as usize >= N).then_some(())
    })
    .await;
    let committed = started.elapsed();
    eventually(WAIT, || async {
        imap.unseen().await.is_empty().then_some(())
    })
    .await;
    assert_eq!(count(&db, "messages", &org.id).await as usize, N);
    assert_eq!(count(&db, "conversations", &org.id).await, 50);
    eprintln!(
        "email ingest {backend:?}: {N} messages committed in {committed:.2?} ({:.0}/s end to end); \
         parse {:.1} µs/message (mail-parser alone {:.1} µs, ratio {:.2})",
        N as f64 / committed.as_secs_f64(),
        ours.as_secs_f64() * 1e6 / N as f64,
        alone.as_secs_f64() * 1e6 / N as f64,
        ours.as_secs_f64() / alone.as_secs_f64(),
    );
    gw.stop().await;
}
both_backends!(a_full_mailbox_is_read_once_and_measured);

fn mail_parser_alone(raw: &[u8]) -> Option<String> {
    let msg = mail_parser::MessageParser::default().parse(raw)?;
    Some(msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default())
}

/// An agent answering an email conversation in the inbox (WebSocket `reply`) sends a
/// threaded email, like the API does.
async fn an_inbox_reply_is_threaded(backend: Backend) {
    use integration_tests::agent::{create_agent, login, AgentSocket};
    let w = EmailWorld::new(backend).await;
    create_agent(&w.db, &w.org.id, "ann@acme.test", "a long secret", "agent").await;
    let token = login(&w.client, &w.gw.base, "ann@acme.test", "a long secret").await;
    w.imap
        .append(&[mail(
            "jane@example.com",
            "q1@example.com",
            "Refund",
            "Where is it?",
            None,
            &[],
        )])
        .await;
    let (conv, _) = w.conversation_of("jane@example.com", 1).await;
    let mut a = AgentSocket::connect(&w.gw.base, &token, 0).await;
    a.replay().await;
    let reply = serde_json::json!({"type": "reply", "id": "r-1", "conversation_id": conv, "body": "Sent today"});
    let (ack, _) = a.command(reply).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let id = ack["message_id"].as_str().unwrap().to_string();
    let m = w.settled(&id).await;
    assert_eq!(m["status"], "sent", "{m}");
    let raw = eventually(WAIT, || async { w.smtp.messages().into_iter().next() }).await;
    assert_eq!(
        header(&raw, "In-Reply-To").as_deref(),
        Some("<q1@example.com>")
    );
    assert_eq!(
        header(&raw, "References").as_deref(),
        Some("<q1@example.com>")
    );
    assert_eq!(header(&raw, "Subject").as_deref(), Some("Re: Refund"));
}
both_backends!(an_inbox_reply_is_threaded);

/// An HTML reply goes out as multipart/alternative (text first, the sanitised HTML second)
/// and DKIM-signed with the account's RSA key (PKCS#8, as `openssl genpkey` writes it); dkimpy
/// verifies the signature on what the SMTP receiver got, and refuses it once the body is
/// changed. A bad key is refused when the account is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_reply_is_multipart_and_dkim_signed() {
    let (private, public) = mail::rsa_key_pair();
    let dkim = serde_json::json!({"selector": "mail2026", "private_key": private});
    let w = EmailWorld::with_account(Backend::Sqlite, "", |c| c["dkim"] = dkim).await;
    let html = "<p>It <b>ships</b> today.</p><script>alert(1)</script>\
                <img src=\"https://track.test/p.gif\" alt=\"\">";
    let sent = w
        .send(
            serde_json::json!({"channel": "email", "to": "jane@example.com",
            "subject": "Your order", "body": "It ships today.", "html": html}),
        )
        .await;
    let id = sent["id"].as_str().unwrap().to_string();
    let m = w.settled(&id).await;
    assert_eq!(m["status"], "sent", "{m}");
    let raw = eventually(WAIT, || async { w.smtp.messages().into_iter().next() }).await;
    let parsed = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("MIME");
    assert!(
        header(&raw, "Content-Type").is_some_and(|t| t.starts_with("multipart/alternative")),
        "{:?}",
        header(&raw, "Content-Type")
    );
    assert_eq!(parsed.body_text(0).unwrap().trim(), "It ships today.");
    let sent_html = parsed.body_html(0).unwrap().to_string();
    assert!(sent_html.contains("<b>ships</b>"), "{sent_html}");
    assert!(
        !sent_html.contains("script") && !sent_html.contains("track.test"),
        "sanitised: {sent_html}"
    );
    let record = format!("v=DKIM1; k=rsa; p={public}");
    assert!(
        mail::dkim_verifies(&raw, "mail2026", "acme.test", &record),
        "dkimpy verifies the signature:\n{}",
        String::from_utf8_lossy(&raw)
    );
    let text = String::from_utf8_lossy(&raw).replace("It ships today.", "It ships tomorrow.");
    assert!(
        !mail::dkim_verifies(text.as_bytes(), "mail2026", "acme.test", &record),
        "a changed body fails verification"
    );
    // A plain-text message (one part) is signed as well.
    let plain = w
        .send(
            serde_json::json!({"channel": "email", "to": "jane@example.com",
            "subject": "Your order", "body": "Plain words."}),
        )
        .await;
    let plain_id = plain["id"].as_str().unwrap().to_string();
    let raw_plain = eventually(WAIT, || async {
        w.smtp
            .messages()
            .into_iter()
            .find(|m| header(m, "Message-ID").is_some_and(|h| h.contains(&plain_id)))
    })
    .await;
    assert!(
        mail::dkim_verifies(&raw_plain, "mail2026", "acme.test", &record),
        "dkimpy verifies the plain message:\n{}",
        String::from_utf8_lossy(&raw_plain)
    );
    let (_, wrong_public) = mail::rsa_key_pair();
    assert!(
        !mail::dkim_verifies(
            &raw,
            "mail2026",
            "acme.test",
            &format!("v=DKIM1; k=rsa; p={wrong_public}")
        ),
        "another key's record fails verification"
    );
    // A key that is not one is refused by `channel add`, with the reason.
    let dir = integration_tests::env::TempDir::new();
    let bad = dir.0.join("bad.pem");
    std::fs::write(
        &bad,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let dkim = [
        "--dkim-selector".as_ref(),
        "s2".as_ref(),
        "--dkim-key-file".as_ref(),
        bad.as_os_str(),
    ];
    let out = channel_add_email(&w.tdb.url, &w.imap, &w.smtp, &dkim);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad key is refused");
    assert!(stderr.contains("dkim.private_key"), "{stderr}");
}

/// Jane writes from two addresses; once the contacts are merged, her reply from the second
/// address to a mail of the first stays in that thread, in her one conversation.
async fn a_reply_from_another_address_of_the_contact_stays_in_the_thread(backend: Backend) {
    let w = EmailWorld::new(backend).await;
    w.imap
        .append(&[
            mail(
                "jane@work.example",
                "w1@work.example",
                "Contract",
                "Draft attached",
                None,
                &[],
            ),
            mail(
                "jane@home.example",
                "h0@home.example",
                "Hello",
                "from home",
                None,
                &[],
            ),
        ])
        .await;
    let contact = |m: &Value| m["contact_id"].as_str().unwrap_or("").to_string();
    let convs = eventually(WAIT, || async {
        let c = w.get("/api/v1/conversations").await;
        (c.as_array()?.len() == 2).then_some(c)
    })
    .await;
    let of = |addr: &str| {
        convs
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["identities"][0]["address"] == addr)
            .map(contact)
            .unwrap()
    };
    let (work, home) = (of("jane@work.example"), of("jane@home.example"));
    let r = w
        .client
        .post(format!("{}/api/v1/contacts/merge", w.gw.base))
        .bearer_auth(&w.org.key)
        .json(&serde_json::json!({"from": home, "into": work}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    w.imap
        .append(&[mail(
            "jane@home.example",
            "h1@home.example",
            "Re: Contract",
            "Signed",
            Some("w1@work.example"),
            &["w1@work.example"],
        )])
        .await;
    let (_, msgs) = w.conversation_of("jane@work.example", 3).await;
    let reply = msgs
        .iter()
        .find(|m| m["provider_message_id"] == "h1@home.example")
        .expect("the reply is in the merged conversation");
    assert_eq!(reply["content"]["thread_id"], "w1@work.example");
    assert_eq!(reply["content"]["threaded_by"], "references");
}
both_backends!(a_reply_from_another_address_of_the_contact_stays_in_the_thread);

/// An attachment is stored by the media worker with its hash, name and type, and served.
async fn attachments_are_stored_with_their_hash(backend: Backend) {
    let w = EmailWorld::new(backend).await;
    let raw = format!(
        "From: jane@example.com\r\nTo: {ADDRESS}\r\nSubject: Scan\r\nMessage-ID: <a1@example.com>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=Z\r\n\r\n--Z\r\n\
Content-Type: text/plain\r\n\r\nSee the scan.\r\n--Z\r\n\
Content-Type: application/pdf; name=\"scan.pdf\"\r\nContent-Disposition: attachment; filename=\"scan.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IK\r\n--Z--\r\n"
    );
    w.imap.append(&[raw.into_bytes()]).await;
    let (_, msgs) = w.conversation_of("jane@example.com", 1).await;
    let id = msgs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(msgs[0]["body"].as_str().unwrap().trim(), "See the scan.");
    let att = eventually(WAIT, || async {
        let m = w.message(&id).await;
        let a = m["attachments"][0].clone();
        (a["status"] == "stored").then_some(a)
    })
    .await;
    let bytes = b"%PDF-1.4\n%\xc7\xec\x8f\xa2\n";
    assert_eq!(att["filename"], "scan.pdf");
    assert_eq!(att["content_type"], "application/pdf");
    assert_eq!(att["size"], bytes.len());
    use sha2::Digest;
    assert_eq!(att["sha256"], hex_lower(&sha2::Sha256::digest(bytes)));
    let served = w
        .client
        .get(format!(
            "{}/api/v1/media/{}",
            w.gw.base,
            att["id"].as_str().unwrap()
        ))
        .bearer_auth(&w.org.key)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap().as_ref(), bytes);
}
both_backends!(attachments_are_stored_with_their_hash);

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// With `imap.move_to`, stored mail leaves the folder read for that folder (created by the
/// gateway), `\Seen`; mail that cannot be stored stays behind, unseen. Both ways: `UID MOVE`,
/// and on a server that does not offer MOVE, COPY + `\Deleted` + `UID EXPUNGE`.
async fn handled_mail_is_moved(dovecot: &str, offers_move: bool) {
    let w = EmailWorld::with_account(Backend::Sqlite, dovecot, |c| {
        c["imap"]["move_to"] = "Handled".into()
    })
    .await;
    let mut s = w.imap.session().await;
    let caps = s.capabilities().await.expect("capabilities");
    assert_eq!(
        caps.has_str("MOVE"),
        offers_move,
        "the server offers MOVE or not, as meant"
    );
    assert!(caps.has_str("UIDPLUS"));
    let _ = s.logout().await;
    let mails: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            mail(
                "jane@example.com",
                &format!("mv{i}@example.com"),
                "Move",
                &format!("n {i}"),
                None,
                &[],
            )
        })
        .chain([b"Subject: no sender\r\n\r\nnobody\r\n".to_vec()])
        .collect();
    w.imap.append(&mails).await;
    w.conversation_of("jane@example.com", 3).await;
    let moved = eventually(WAIT, || async {
        let seen = w.imap.search_in("Handled", "SEEN").await;
        (seen.len() == 3).then_some(seen)
    })
    .await;
    assert_eq!(w.imap.search_in("Handled", "ALL").await, moved);
    // Only the refused mail is left in INBOX (expunged, not just flagged), unseen.
    let left = eventually(WAIT, || async {
        let all = w.imap.search_in("INBOX", "ALL").await;
        (all.len() == 1).then_some(all)
    })
    .await;
    assert_eq!(w.imap.search_in("INBOX", "UNSEEN").await, left);
    assert!(w.imap.search_in("INBOX", "DELETED").await.is_empty());
    assert_eq!(count(&w.db, "messages", &w.org.id).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handled_mail_is_moved_with_uid_move() {
    handled_mail_is_moved("", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handled_mail_is_moved_by_copy_and_expunge_without_move() {
    handled_mail_is_moved(
        "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ UIDPLUS",
        false,
    )
    .await;
}

/// A folder the server will not create or move to (Dovecot's maildir takes no `/`): the
/// mail is stored and flagged `\Seen` where it is, and later mail is still read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_move_leaves_mail_seen_and_reading_goes_on() {
    let w = EmailWorld::with_account(Backend::Sqlite, "", |c| {
        c["imap"]["move_to"] = "No/Such".into()
    })
    .await;
    let one = |i: usize| {
        mail(
            "jane@example.com",
            &format!("st{i}@example.com"),
            "Stay",
            &format!("n {i}"),
            None,
            &[],
        )
    };
    w.imap.append(&[one(0), one(1)]).await;
    w.conversation_of("jane@example.com", 2).await;
    w.imap.append(&[one(2)]).await;
    w.conversation_of("jane@example.com", 3).await;
    let all = w.imap.search_in("INBOX", "ALL").await;
    assert_eq!(all.len(), 3);
    eventually(WAIT, || async {
        (w.imap.search_in("INBOX", "SEEN").await == all).then_some(())
    })
    .await;
}

/// Files attached through the API go out as multipart/mixed with their bytes intact, are
/// kept as the message's media (with their SHA-256), and a bad one is refused with the reason
/// before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_are_sent_kept_and_checked() {
    use base64::Engine;
    use mail_parser::MimeHeaders;
    let w = EmailWorld::new(Backend::Sqlite).await;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let pdf: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sent = w
        .send(serde_json::json!({"channel": "email", "to": "jane@example.com",
            "subject": "Invoice", "body": "Attached.", "attachments": [
                {"filename": "invoice 42.pdf", "content_type": "application/pdf", "content_base64": b64(&pdf)},
                {"filename": "notes.txt", "content_type": "text/plain", "content_base64": b64(b"line one\n")}]}))
        .await;
    let id = sent["id"].as_str().unwrap().to_string();
    assert_eq!(w.settled(&id).await["status"], "sent");
    let raw = eventually(WAIT, || async { w.smtp.messages().into_iter().next() }).await;
    let parsed = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("MIME");
    assert_eq!(parsed.body_text(0).unwrap().trim(), "Attached.");
    let files: Vec<(String, Vec<u8>)> = parsed
        .attachments()
        .map(|a| {
            (
                a.attachment_name().unwrap_or("").to_string(),
                a.contents().to_vec(),
            )
        })
        .collect();
    assert_eq!(
        files,
        vec![
            ("invoice 42.pdf".to_string(), pdf.clone()),
            ("notes.txt".to_string(), b"line one\n".to_vec())
        ]
    );
    let m = w.message(&id).await;
    let hashes: Vec<&str> = m["attachments"]
        .as_array()
        .expect("the message lists its media")
        .iter()
        .filter_map(|x| x["sha256"].as_str())
        .collect();
    use sha2::Digest;
    assert!(
        hashes.contains(&hex_lower(&sha2::Sha256::digest(&pdf)).as_str()),
        "{m}"
    );
    // Refused before anything is stored.
    let before = count(&w.db, "messages", &w.org.id).await;
    for (bad, why) in [
        (
            serde_json::json!({"filename": "a.pdf", "content_type": "application/pdf", "content_base64": "%%%"}),
            "base64",
        ),
        (
            serde_json::json!({"filename": "../a.pdf", "content_type": "application/pdf", "content_base64": "QQ=="}),
            "path",
        ),
        (
            serde_json::json!({"filename": "a.pdf", "content_type": "pdf", "content_base64": "QQ=="}),
            "content_type",
        ),
    ] {
        let r = w
            .client
            .post(format!("{}/api/v1/messages", w.gw.base))
            .bearer_auth(&w.org.key)
            .json(
                &serde_json::json!({"channel": "email", "to": "jane@example.com",
                "subject": "x", "body": "x", "attachments": [bad]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let text = r.text().await.unwrap();
        assert!(text.contains(why), "{text}");
    }
    assert_eq!(count(&w.db, "messages", &w.org.id).await, before);
}
