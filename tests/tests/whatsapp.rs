//! WhatsApp Cloud API end to end on both backends, against the Graph API stand-in: the
//! verification handshake, signed deliveries of every message type, attachments downloaded
//! and served, statuses out of order and before their send's acceptance, the 24-hour window,
//! Meta's rate-limit and permanent errors.

use integration_tests::both_backends;
use integration_tests::env::{count, eventually, Backend, World};
use integration_tests::whatsapp::{
    delivery, post_signed, status, text, GraphStandin, Scripted, WhatsAppAccount, PHONE_NUMBER_ID,
};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);
const CUSTOMER: &str = "+16505551234";

struct Wa {
    w: World,
    graph: GraphStandin,
    acct: WhatsAppAccount,
}

async fn setup(backend: Backend) -> Wa {
    let w = World::new(backend).await;
    let graph = GraphStandin::start().await;
    let acct = graph.add_account(&w.db, &w.org.id).await;
    Wa { w, graph, acct }
}

impl Wa {
    async fn deliver(&self, v: &Value) -> reqwest::Response {
        let body = serde_json::to_vec(v).unwrap();
        self.deliver_bytes(&body).await
    }

    async fn deliver_bytes(&self, body: &[u8]) -> reqwest::Response {
        post_signed(
            &self.w.client,
            &self.w.gw.base,
            "acme",
            &self.acct.app_secret,
            body,
        )
        .await
    }

    async fn messages(&self) -> i64 {
        count(&self.w.db, "messages", &self.w.org.id).await
    }

    async fn send(&self, body: Value) -> reqwest::Response {
        self.w
            .client
            .post(format!("{}/api/v1/messages", self.w.gw.base))
            .bearer_auth(&self.w.org.key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The customer's conversation's messages.
    async fn thread(&self) -> Vec<Value> {
        let convs = self.w.get_json(&self.w.org, "/api/v1/conversations").await;
        let conv = convs
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["identities"].to_string().contains(CUSTOMER))
            .expect("the customer's conversation")
            .clone();
        let path = format!(
            "/api/v1/conversations/{}/messages",
            conv["id"].as_str().unwrap()
        );
        self.w
            .get_json(&self.w.org, &path)
            .await
            .as_array()
            .unwrap()
            .clone()
    }
}

async fn handshake(backend: Backend) {
    let wa = setup(backend).await;
    let url = |token: &str| {
        format!(
            "{}/webhooks/whatsapp/acme?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={token}",
            wa.w.gw.base
        )
    };
    let r =
        wa.w.client
            .get(url(&wa.acct.verify_token))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1158201444");
    let r = wa.w.client.get(url("wrong")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let known = r.text().await.unwrap();
    // An org that does not exist answers exactly as a real org answers a wrong token: a
    // stranger cannot tell which orgs exist.
    let r =
        wa.w.client
            .get(url("wrong").replace("/whatsapp/acme", "/whatsapp/nosuchorg"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), known);
    wa.w.gw.stop().await;
}
both_backends!(handshake);

async fn bad_signatures_store_nothing(backend: Backend) {
    let wa = setup(backend).await;
    let v = delivery(json!([text("wamid.A1", "16505551234", "hello")]), json!([]));
    let body = serde_json::to_vec(&v).unwrap();
    let url = format!("{}/webhooks/whatsapp/acme", wa.w.gw.base);
    // Missing, forged (another secret), and over a body re-serialised by a proxy.
    let missing =
        wa.w.client
            .post(&url)
            .body(body.clone())
            .send()
            .await
            .unwrap();
    assert_eq!(missing.status(), 401);
    let forged = post_signed(&wa.w.client, &wa.w.gw.base, "acme", "not-the-secret", &body).await;
    assert_eq!(forged.status(), 401);
    let forged_text = forged.text().await.unwrap();
    // The same forgery to an org that does not exist: the same answer.
    let stranger = post_signed(
        &wa.w.client,
        &wa.w.gw.base,
        "nosuchorg",
        "not-the-secret",
        &body,
    )
    .await;
    assert_eq!(stranger.status(), 401);
    assert_eq!(stranger.text().await.unwrap(), forged_text);
    let sig = channels::whatsapp::signature::compute(&wa.acct.app_secret, &body);
    let pretty = serde_json::to_vec_pretty(&v).unwrap();
    let reserialised =
        wa.w.client
            .post(&url)
            .header("X-Hub-Signature-256", sig)
            .body(pretty)
            .send()
            .await
            .unwrap();
    assert_eq!(reserialised.status(), 401);
    assert_eq!(wa.messages().await, 0);
    // Signed but not JSON: 400, nothing stored.
    assert_eq!(wa.deliver_bytes(b"{not json").await.status(), 400);
    assert_eq!(wa.messages().await, 0);
    // The genuine one is stored once, and Meta's redelivery changes nothing.
    assert_eq!(wa.deliver_bytes(&body).await.status(), 200);
    assert_eq!(wa.deliver_bytes(&body).await.status(), 200);
    assert_eq!(wa.messages().await, 1);
    wa.w.gw.stop().await;
}
both_backends!(bad_signatures_store_nothing);

async fn every_message_type_is_stored_and_shown(backend: Backend) {
    let wa = setup(backend).await;
    let jpeg: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    wa.graph
        .add_media("1003383421387256", "image/jpeg", jpeg.clone());
    let from = "16505551234";
    let m = |id: &str, kind: &str, part: Value| {
        let mut v = json!({"from": from, "id": id, "timestamp": "1749416383", "type": kind});
        v[kind] = part;
        v
    };
    let mut reply = text("wamid.T2", from, "Yes, that one");
    reply["context"] = json!({"from": "15550783881", "id": "wamid.T1"});
    let messages = json!([
        text("wamid.T1", from, "Is the blue one in stock?"),
        reply,
        m("wamid.I1", "image", json!({"mime_type": "image/jpeg", "id": "1003383421387256", "caption": "this one"})),
        m("wamid.L1", "location", json!({"latitude": 37.48, "longitude": -122.14, "name": "Philz"})),
        m("wamid.C1", "contacts", json!([{"name": {"formatted_name": "Barbara Johnson"}, "phones": [{"phone": "+19405551234", "wa_id": "19405551234"}]}])),
        m("wamid.B1", "interactive", json!({"type": "button_reply", "button_reply": {"id": "confirm", "title": "Confirm"}})),
        m("wamid.Q1", "button", json!({"payload": "promo_stop", "text": "Stop promotions"})),
        m("wamid.R1", "reaction", json!({"message_id": "wamid.T1", "emoji": "👍"})),
        {"from": from, "id": "wamid.U1", "timestamp": "1", "type": "unsupported",
         "errors": [{"code": 131051, "title": "Message type unknown"}]}
    ]);
    let r = wa.deliver(&delivery(messages, json!([]))).await;
    assert_eq!(
        r.status(),
        200,
        "one unusable item does not refuse the delivery"
    );
    assert_eq!(wa.messages().await, 8);
    let thread = wa.thread().await;
    let by_id = |pid: &str| {
        thread
            .iter()
            .find(|m| m["provider_message_id"] == pid)
            .unwrap_or_else(|| panic!("{pid} stored"))
            .clone()
    };
    assert_eq!(by_id("wamid.T1")["channel"], "whatsapp");
    assert_eq!(by_id("wamid.T1")["from"], CUSTOMER);
    assert_eq!(
        by_id("wamid.T2")["reply_to_message_id"],
        by_id("wamid.T1")["id"]
    );
    assert_eq!(by_id("wamid.L1")["kind"], "location");
    assert_eq!(by_id("wamid.L1")["content"]["location"]["name"], "Philz");
    assert_eq!(by_id("wamid.C1")["body"], "[contacts: Barbara Johnson]");
    assert_eq!(by_id("wamid.B1")["content"]["interactive"]["id"], "confirm");
    assert_eq!(by_id("wamid.Q1")["body"], "Stop promotions");
    assert_eq!(by_id("wamid.R1")["kind"], "reaction");
    assert_eq!(
        by_id("wamid.R1")["reply_to_message_id"],
        by_id("wamid.T1")["id"]
    );

    // The image is downloaded through the media endpoint and served with its hash.
    let image = by_id("wamid.I1");
    assert_eq!(image["body"], "this one");
    let path = format!("/api/v1/messages/{}", image["id"].as_str().unwrap());
    let attachment = eventually(WAIT, || async {
        let v = wa.w.get_json(&wa.w.org, &path).await;
        let a = v["attachments"][0].clone();
        (a["status"] == "stored").then_some(a)
    })
    .await;
    assert_eq!(attachment["size"], jpeg.len());
    let expected = {
        use sha2::Digest;
        hex_string(&sha2::Sha256::digest(&jpeg))
    };
    assert_eq!(attachment["sha256"], expected.as_str());
    let url = format!("{}{}", wa.w.gw.base, attachment["url"].as_str().unwrap());
    let r =
        wa.w.client
            .get(&url)
            .bearer_auth(&wa.w.org.key)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.bytes().await.unwrap().to_vec(), jpeg);
    // Another org cannot read it.
    let other = integration_tests::env::create_org(&wa.w.db, "other", &wa.w.twilio.base, 1.0).await;
    let r =
        wa.w.client
            .get(&url)
            .bearer_auth(&other.key)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 404);
    integration_tests::schema::assert_org_events_valid(&wa.w, &wa.w.org).await;
    wa.w.gw.stop().await;
}
both_backends!(every_message_type_is_stored_and_shown);

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn oversized_media_is_kept_as_too_large(backend: Backend) {
    let w = World::with_config(backend, |c| c.max_media_bytes = 1000).await;
    let graph = GraphStandin::start().await;
    let acct = graph.add_account(&w.db, &w.org.id).await;
    graph.add_media("555", "video/mp4", vec![0u8; 5000]);
    let msg = json!({"from": "16505551234", "id": "wamid.V1", "timestamp": "1", "type": "video",
                     "video": {"mime_type": "video/mp4", "id": "555"}});
    let body = serde_json::to_vec(&delivery(json!([msg]), json!([]))).unwrap();
    let r = post_signed(&w.client, &w.gw.base, "acme", &acct.app_secret, &body).await;
    assert_eq!(r.status(), 200);
    let row: (String, Option<i64>) = eventually(WAIT, || async {
        let row: (String, Option<i64>) =
            sqlx::query_as("SELECT status, size FROM media WHERE org_id = $1")
                .bind(&w.org.id)
                .fetch_one(&w.db.pool)
                .await
                .unwrap();
        (row.0 != "pending").then_some(row)
    })
    .await;
    assert_eq!(row, ("too_large".to_string(), None));
    assert_eq!(
        graph.media_downloads(),
        0,
        "refused by its declared size, not downloaded"
    );
    w.gw.stop().await;
}
both_backends!(oversized_media_is_kept_as_too_large);

async fn window_rules_sends(backend: Backend) {
    let wa = setup(backend).await;
    // Nobody wrote yet: free-form is refused and names the template route; a template goes.
    let r = wa
        .send(json!({"channel": "whatsapp", "to": CUSTOMER, "body": "Hi"}))
        .await;
    assert_eq!(r.status(), 422);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "outside_customer_service_window");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("template"));
    let template = json!({"channel": "whatsapp", "to": CUSTOMER, "content": {"type": "template",
        "template": {"name": "appointment_reminder", "language": "en_US", "parameters": ["Tuesday", "3:30 pm"]}}});
    let r = wa.send(template).await;
    assert_eq!(r.status(), 202);
    let sent = eventually(WAIT, || async {
        let got = wa.graph.received();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert!(sent[0].authorized);
    assert_eq!(sent[0].phone_number_id, PHONE_NUMBER_ID);
    assert_eq!(sent[0].body["to"], "16505551234");
    assert_eq!(sent[0].body["type"], "template");
    assert_eq!(sent[0].body["template"]["language"]["code"], "en_US");
    assert_eq!(
        sent[0].body["template"]["components"][0]["parameters"][1]["text"],
        "3:30 pm"
    );

    // The customer answers the template: the window opens, in the same conversation.
    let r = wa
        .deliver(&delivery(
            json!([text("wamid.in1", "16505551234", "Yes please")]),
            json!([]),
        ))
        .await;
    assert_eq!(r.status(), 200);
    let thread = wa.thread().await;
    assert_eq!(
        thread.len(),
        2,
        "the reply to a template stays in its conversation"
    );
    let convs = wa.w.get_json(&wa.w.org, "/api/v1/conversations").await;
    let closes = convs[0]["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["channel"] == "whatsapp")
        .unwrap()["service_window_closes_at"]
        .as_i64()
        .expect("the window's closing time is shown");
    let day = 24 * 3600 * 1000;
    let now = gateway::db::now_ms();
    assert!(
        closes > now + day - 60_000 && closes <= now + day,
        "{closes} vs {now}"
    );

    let r = wa
        .send(json!({"channel": "whatsapp", "to": CUSTOMER, "body": "See you Tuesday"}))
        .await;
    assert_eq!(r.status(), 202);
    let image = json!({"channel": "whatsapp", "to": CUSTOMER, "content": {"type": "image",
        "image": {"link": "https://example.com/map.png", "caption": "How to find us"}}});
    assert_eq!(wa.send(image).await.status(), 202);
    let buttons = json!({"channel": "whatsapp", "to": CUSTOMER, "content": {"type": "interactive",
        "interactive": {"type": "button", "body": {"text": "Confirm?"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Yes"}}]}}}});
    assert_eq!(wa.send(buttons).await.status(), 202);
    let got = eventually(WAIT, || async {
        let got = wa.graph.received();
        (got.len() == 4).then_some(got)
    })
    .await;
    let kinds: Vec<&str> = got
        .iter()
        .map(|r| r.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "text").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"image") && kinds.contains(&"interactive"),
        "{kinds:?}"
    );
    let text_sent = got.iter().find(|r| r.body["type"] == "text").unwrap();
    assert_eq!(text_sent.body["text"]["body"], "See you Tuesday");

    // Bad requests change nothing.
    let before = wa.messages().await;
    for bad in [
        json!({"channel": "whatsapp", "to": "12", "body": "x"}),
        json!({"channel": "whatsapp", "to": CUSTOMER, "content": {"type": "fax"}}),
        json!({"channel": "whatsapp", "to": CUSTOMER, "content": {"type": "image", "image": {}}}),
        json!({"channel": "whatsapp", "to": CUSTOMER, "body": "x".repeat(5000)}),
    ] {
        assert_eq!(wa.send(bad).await.status(), 400);
    }
    assert_eq!(wa.messages().await, before);
    wa.w.gw.stop().await;
}
both_backends!(window_rules_sends);

/// The window as the clock moves: checked with explicit times through the store itself.
async fn window_closes_after_24_hours(backend: Backend) {
    use gateway::db::ingest;
    use gateway::db::messages::{create_outbound, Created, NewOutbound};
    let w = World::new(backend).await;
    let mut conn = w.db.pool.acquire().await.unwrap();
    let t0 = 1_800_000_000_000i64;
    let mut msg = channels::InboundMessage::text(
        state_machines::Channel::Whatsapp,
        "wamid.clock",
        CUSTOMER,
        "+15550783881",
        "hi",
    );
    msg.opens_window = Some(channels::whatsapp::SERVICE_WINDOW);
    ingest::message(&mut conn, &w.org.id, "whatsapp", &msg, t0)
        .await
        .unwrap();
    let req = |needs: bool| NewOutbound {
        channel: state_machines::Channel::Whatsapp,
        from: PHONE_NUMBER_ID.into(),
        to: CUSTOMER.into(),
        body: "hello".into(),
        content: None,
        needs_service_window: needs,
        idempotency_key: None,
        bulk: false,
        daily_cap: None,
        attachments: Vec::new(),
    };
    let hour = 3_600_000i64;
    for (at, open) in [
        (t0 + hour, true),
        (t0 + 24 * hour - 1, true),
        (t0 + 24 * hour, false),
        (t0 + 30 * hour, false),
    ] {
        let created = create_outbound(&mut conn, &w.org.id, &req(true), at)
            .await
            .unwrap();
        assert_eq!(
            matches!(created, Created::Queued { .. }),
            open,
            "at +{} ms: {created:?}",
            at - t0
        );
        if !open {
            assert_eq!(
                created,
                Created::OutsideWindow {
                    closed_at: Some(t0 + 24 * hour)
                }
            );
        }
    }
    // A template does not need the window; a new inbound message reopens it.
    let late = t0 + 30 * hour;
    assert!(matches!(
        create_outbound(&mut conn, &w.org.id, &req(false), late)
            .await
            .unwrap(),
        Created::Queued { .. }
    ));
    msg.provider_message_id = "wamid.clock2".into();
    ingest::message(&mut conn, &w.org.id, "whatsapp", &msg, late)
        .await
        .unwrap();
    assert!(matches!(
        create_outbound(&mut conn, &w.org.id, &req(true), late + hour)
            .await
            .unwrap(),
        Created::Queued { .. }
    ));
    // An older message delivered late never shortens the window.
    msg.provider_message_id = "wamid.clock0".into();
    ingest::message(&mut conn, &w.org.id, "whatsapp", &msg, t0)
        .await
        .unwrap();
    assert!(matches!(
        create_outbound(&mut conn, &w.org.id, &req(true), late + 23 * hour)
            .await
            .unwrap(),
        Created::Queued { .. }
    ));
    drop(conn);
    w.gw.stop().await;
}
both_backends!(window_closes_after_24_hours);

async fn open_window(wa: &Wa) {
    let r = wa
        .deliver(&delivery(
            json!([text("wamid.open", "16505551234", "hi")]),
            json!([]),
        ))
        .await;
    assert_eq!(r.status(), 200);
}

async fn wait_status(wa: &Wa, id: &str, want: &str) -> Value {
    let path = format!("/api/v1/messages/{id}");
    eventually(WAIT, || async {
        let m = wa.w.get_json(&wa.w.org, &path).await;
        (m["status"] == want).then_some(m)
    })
    .await
}

async fn statuses_out_of_order_and_before_acceptance(backend: Backend) {
    let wa = setup(backend).await;
    open_window(&wa).await;
    // A report for an id we have not recorded yet is acknowledged and kept …
    let early = delivery(json!([]), json!([status("wamid.early", "delivered")]));
    assert_eq!(wa.deliver(&early).await.status(), 200);
    // … and applied when the send that gets that id is accepted.
    wa.graph
        .script([Scripted::Accept(Some("wamid.early".into()))]);
    let r = wa
        .send(json!({"channel": "whatsapp", "to": CUSTOMER, "body": "one"}))
        .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let m = wait_status(&wa, &id, "delivered").await;
    assert_eq!(m["provider_message_id"], "wamid.early");

    // Out of order, twice, with pricing kept: read wins, then nothing moves it back.
    let r = wa
        .send(json!({"channel": "whatsapp", "to": CUSTOMER, "body": "two"}))
        .await;
    let id2 = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let m = wait_status(&wa, &id2, "sent").await;
    let wamid = m["provider_message_id"].as_str().unwrap().to_string();
    let mut delivered = status(&wamid, "delivered");
    delivered["pricing"] = json!({"billable": true, "pricing_model": "PMP", "category": "service"});
    let batch = delivery(
        json!([]),
        json!([
            status(&wamid, "read"),
            delivered,
            status(&wamid, "sent"),
            status(&wamid, "read")
        ]),
    );
    assert_eq!(wa.deliver(&batch).await.status(), 200);
    let m = wait_status(&wa, &id2, "read").await;
    let reports = m["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"].as_str().unwrap().starts_with("report"))
        .count();
    assert_eq!(reports, 4, "{m}");

    // A failure with Meta's error code and title.
    let r = wa
        .send(json!({"channel": "whatsapp", "to": CUSTOMER, "body": "three"}))
        .await;
    let id3 = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let m = wait_status(&wa, &id3, "sent").await;
    let mut failed = status(m["provider_message_id"].as_str().unwrap(), "failed");
    failed["errors"] = json!([{"code": 131026, "title": "Message undeliverable"}]);
    assert_eq!(
        wa.deliver(&delivery(json!([]), json!([failed])))
            .await
            .status(),
        200
    );
    let m = wait_status(&wa, &id3, "failed").await;
    assert_eq!(m["error_code"], "131026");
    assert_eq!(m["error_message"], "Message undeliverable");
    integration_tests::schema::assert_org_events_valid(&wa.w, &wa.w.org).await;
    wa.w.gw.stop().await;
}
both_backends!(statuses_out_of_order_and_before_acceptance);

async fn rate_limits_retry_permanent_errors_fail(backend: Backend) {
    let wa = setup(backend).await;
    open_window(&wa).await;
    wa.graph.script([
        Scripted::Fail {
            status: 400,
            code: 130429,
        },
        Scripted::Fail {
            status: 400,
            code: 131056,
        },
    ]);
    let r = wa
        .send(json!({"channel": "whatsapp", "to": CUSTOMER, "body": "retry me"}))
        .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&wa, &id, "sent").await;
    assert_eq!(
        wa.graph.received().len(),
        3,
        "two throttled attempts, then accepted"
    );

    wa.graph.script([Scripted::Fail {
        status: 400,
        code: 131026,
    }]);
    let r = wa
        .send(json!({"channel": "whatsapp", "to": CUSTOMER, "body": "undeliverable"}))
        .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let m = wait_status(&wa, &id, "failed").await;
    assert_eq!(m["error_code"], "131026");
    assert_eq!(
        wa.graph.received().len(),
        4,
        "a permanent error is not retried"
    );
    let dl = wa.w.get_json(&wa.w.org, "/api/v1/dead-letters").await;
    assert_eq!(dl.as_array().unwrap().len(), 1);
    wa.w.gw.stop().await;
}
both_backends!(rate_limits_retry_permanent_errors_fail);
