//! Deliveries shaped as Meta's webhook reference shows them, one per message type.

use super::*;
use crate::whatsapp::SERVICE_WINDOW;
use crate::{InboundMessage, Secret};
use serde_json::json;

fn config() -> WhatsAppConfig {
    WhatsAppConfig {
        phone_number_id: "106540352242922".into(),
        access_token: Secret::new("EAAtoken"),
        app_secret: Secret::new("appsecret"),
        verify_token: Secret::new("verify-me"),
        api_base: "http://127.0.0.1:9".into(),
        api_version: "v21.0".into(),
        messages_per_second: 80.0,
    }
}

fn envelope(messages: Value, statuses: Value) -> Value {
    json!({
      "object": "whatsapp_business_account",
      "entry": [{
        "id": "102290129340398",
        "changes": [{
          "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
            "messages": messages,
            "statuses": statuses
          },
          "field": "messages"
        }]
      }]
    })
}

fn post(body: &[u8], sig: Option<String>) -> Result<Handled, WebhookError> {
    let headers: Vec<(String, String)> = sig
        .map(|s| vec![("X-Hub-Signature-256".to_string(), s)])
        .unwrap_or_default();
    handle(
        &config(),
        "",
        &WebhookRequest {
            method: "POST",
            url: "http://127.0.0.1/webhooks/whatsapp/acme",
            query: "",
            headers: &headers,
            body,
            received_at: 0,
        },
    )
}

fn signed(v: &Value) -> Handled {
    let body = serde_json::to_vec(v).unwrap();
    post(&body, Some(signature::compute("appsecret", &body))).unwrap()
}

fn one_message(msg: Value) -> InboundMessage {
    let h = signed(&envelope(json!([msg]), json!([])));
    assert!(h.skipped.is_empty(), "{:?}", h.skipped);
    match &h.events[..] {
        [InboundEvent::Message(m)] => m.clone(),
        other => panic!("{other:?}"),
    }
}

fn base(kind: &str, part: Value) -> Value {
    let mut m = json!({"from": "16505551234", "id": format!("wamid.{kind}"),
                       "timestamp": "1749416383", "type": kind});
    m[kind] = part;
    m
}

#[test]
fn handshake_answers_the_challenge_only_for_the_right_token() {
    let get = |query: &str| {
        handle(
            &config(),
            "",
            &WebhookRequest {
                method: "GET",
                url: "",
                query,
                headers: &[],
                body: b"",
                received_at: 0,
            },
        )
    };
    let ok = get("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=verify-me").unwrap();
    assert_eq!(ok.reply.body, "1158201444");
    assert!(ok.events.is_empty());
    for bad in [
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong",
        "hub.mode=subscribe&hub.challenge=1",
        "hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=verify-me",
        "",
        // A prefix, an extension, one byte off, and two bytes off by the same bit.
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=verify",
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=verify-me-too",
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=verify-mX",
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=wdrify-me",
    ] {
        assert!(matches!(get(bad), Err(WebhookError::Forbidden(_))), "{bad}");
    }
    let with_challenge = |c: &str| {
        get(&format!(
            "hub.mode=subscribe&hub.challenge={c}&hub.verify_token=verify-me"
        ))
    };
    assert_eq!(
        with_challenge(&"7".repeat(256)).unwrap().reply.body.len(),
        256
    );
    for bad in [String::new(), "7".repeat(257)] {
        assert!(
            matches!(with_challenge(&bad), Err(WebhookError::Malformed { .. })),
            "{}",
            bad.len()
        );
    }
}

#[test]
fn signature_is_over_the_raw_bytes() {
    let v = envelope(json!([base("text", json!({"body": "hi"}))]), json!([]));
    let body = serde_json::to_vec(&v).unwrap();
    let sig = signature::compute("appsecret", &body);
    assert!(post(&body, Some(sig.clone())).is_ok());
    assert_eq!(post(&body, None), Err(WebhookError::BadSignature));
    let pretty = serde_json::to_vec_pretty(&v).unwrap();
    assert_eq!(post(&pretty, Some(sig)), Err(WebhookError::BadSignature));
    let forged = signature::compute("not-the-secret", &body);
    assert_eq!(post(&body, Some(forged)), Err(WebhookError::BadSignature));
}

#[test]
fn malformed_but_signed_is_400() {
    for body in [
        &b"not json"[..],
        br#"{"object":"page","entry":[]}"#,
        br#"{"object":"whatsapp_business_account"}"#,
    ] {
        let sig = signature::compute("appsecret", body);
        assert!(matches!(
            post(body, Some(sig)),
            Err(WebhookError::Malformed { .. })
        ));
    }
}

#[test]
fn text_with_context_opens_the_window() {
    let mut msg = base("text", json!({"body": "Is it still available?"}));
    msg["context"] = json!({"from": "15550783881", "id": "wamid.earlier"});
    let m = one_message(msg);
    assert_eq!(m.provider_message_id, "wamid.text");
    assert_eq!(m.from, "+16505551234");
    assert_eq!(m.to, "+15550783881");
    assert_eq!(m.body, "Is it still available?");
    assert_eq!(m.kind, "text");
    assert_eq!(m.reply_to.as_deref(), Some("wamid.earlier"));
    assert_eq!(m.opens_window, Some(SERVICE_WINDOW));
    assert_eq!(m.content, Some(json!({"profile_name": "Sheena Nelson"})));
    assert_eq!(m.keyword, None);
}

#[test]
fn every_media_type_is_fetched_by_id() {
    for kind in ["image", "audio", "video", "document", "sticker"] {
        let m = one_message(base(
            kind,
            json!({"mime_type": "image/jpeg", "sha256": "abc=", "id": "1003383421387256",
                   "caption": "the receipt", "filename": "r.pdf"}),
        ));
        assert_eq!(m.kind, kind);
        assert_eq!(m.body, "the receipt");
        let media = &m.media[0];
        assert_eq!(media.reference, "1003383421387256");
        assert_eq!(media.content_type, "image/jpeg");
        assert_eq!(media.provider_sha256.as_deref(), Some("abc="));
        assert_eq!(media.filename.as_deref(), Some("r.pdf"));
        assert!(media.fetch);
    }
    let m = one_message(base(
        "audio",
        json!({"mime_type": "audio/ogg; codecs=opus", "id": "77"}),
    ));
    assert_eq!(m.body, "[audio]");
}

#[test]
fn location_contacts_interactive_button_reaction() {
    let m = one_message(base(
        "location",
        json!({"latitude": 37.4, "longitude": -122.1, "name": "Philz", "address": "1 Main St"}),
    ));
    assert_eq!(m.body, "[location Philz, 1 Main St (37.4, -122.1)]");
    assert_eq!(m.content.as_ref().unwrap()["location"]["latitude"], 37.4);

    let m = one_message(base(
        "contacts",
        json!([{"name": {"formatted_name": "Barbara Johnson", "first_name": "Barbara"},
                "phones": [{"phone": "+1 (940) 555-1234", "wa_id": "19405551234", "type": "MOBILE"}]}]),
    ));
    assert_eq!(m.body, "[contacts: Barbara Johnson]");
    assert_eq!(
        m.content.as_ref().unwrap()["contacts"][0]["phones"][0]["wa_id"],
        "19405551234"
    );

    let m = one_message(base(
        "interactive",
        json!({"type": "button_reply", "button_reply": {"id": "confirm", "title": "Confirm"}}),
    ));
    assert_eq!(m.body, "Confirm");
    assert_eq!(m.content.as_ref().unwrap()["interactive"]["id"], "confirm");
    let m = one_message(base(
        "interactive",
        json!({"type": "list_reply", "list_reply": {"id": "slot-2", "title": "3:30 pm", "description": "Tue"}}),
    ));
    assert_eq!(
        m.content.as_ref().unwrap()["interactive"]["type"],
        "list_reply"
    );

    let mut msg = base(
        "button",
        json!({"payload": "STOP_PROMOS", "text": "Stop promotions"}),
    );
    msg["context"] = json!({"from": "15550783881", "id": "wamid.template"});
    let m = one_message(msg);
    assert_eq!(m.body, "Stop promotions");
    assert_eq!(m.reply_to.as_deref(), Some("wamid.template"));

    let m = one_message(base(
        "reaction",
        json!({"message_id": "wamid.ours", "emoji": "👍"}),
    ));
    assert_eq!(m.body, "👍");
    assert_eq!(m.reply_to.as_deref(), Some("wamid.ours"));
}

#[test]
fn statuses_map_onto_the_delivery_machine_with_errors_and_pricing() {
    let statuses = json!([
      {"id": "wamid.out1", "status": "delivered", "timestamp": "1750263773", "recipient_id": "16505551234",
       "conversation": {"id": "c1", "origin": {"type": "service"}},
       "pricing": {"billable": true, "pricing_model": "PMP", "category": "service"}},
      {"id": "wamid.out2", "status": "failed", "timestamp": "1750263773", "recipient_id": "16505551234",
       "errors": [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable"}]},
      {"id": "wamid.out3", "status": "read", "timestamp": "1750263774", "recipient_id": "16505551234"},
      {"id": "wamid.out4", "status": "deleted", "timestamp": "1750263774", "recipient_id": "16505551234"}
    ]);
    let h = signed(&envelope(json!([]), statuses));
    assert!(h.skipped.is_empty(), "{:?}", h.skipped);
    let s: Vec<&StatusUpdate> = h
        .events
        .iter()
        .map(|e| match e {
            InboundEvent::Status(s) => s,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].state, DeliveryState::Delivered);
    assert_eq!(
        s[0].details.as_ref().unwrap()["pricing"]["category"],
        "service"
    );
    assert_eq!(s[1].state, DeliveryState::Failed);
    assert_eq!(s[1].error_code.as_deref(), Some("131026"));
    assert_eq!(s[1].error_message.as_deref(), Some("Message undeliverable"));
    assert_eq!(s[2].state, DeliveryState::Read);
}

#[test]
fn unusable_items_are_skipped_and_the_rest_kept() {
    let messages = json!([
        base("text", json!({"body": "one"})),
        {"from": "16505551234", "id": "wamid.u", "timestamp": "1", "type": "unsupported",
         "errors": [{"code": 131051, "title": "Message type unknown"}]},
        {"from": "not-a-number", "id": "wamid.bad", "timestamp": "1", "type": "text", "text": {"body": "x"}},
        {"id": "wamid.nofrom", "type": "text", "text": {"body": "x"}}
    ]);
    let statuses = json!([{"id": "wamid.z", "status": "teleported"}]);
    let mut v = envelope(messages, statuses);
    // A second change for another number of the same business account, and one that is
    // not about messages.
    let mut other = v["entry"][0]["changes"][0].clone();
    other["value"]["metadata"]["phone_number_id"] = json!("999");
    v["entry"][0]["changes"].as_array_mut().unwrap().push(other);
    v["entry"][0]["changes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"field": "account_update", "value": {}}));
    let h = signed(&v);
    assert_eq!(h.events.len(), 1, "{:?}", h.events);
    assert_eq!(h.skipped.len(), 6, "{:?}", h.skipped);
    assert_eq!(h.reply, WebhookReply::empty());
}

#[test]
fn several_messages_in_one_delivery_each_come_out_once() {
    let messages = json!([
        base("text", json!({"body": "a"})),
        {"from": "16505551235", "id": "wamid.2", "timestamp": "1", "type": "text", "text": {"body": "b"}}
    ]);
    let h = signed(&envelope(
        messages,
        json!([{"id": "wamid.o", "status": "sent"}]),
    ));
    assert_eq!(h.events.len(), 3);
}

#[test]
fn status_ids_are_required_and_bounded() {
    let st = |id: &str| json!({"id": id, "status": "delivered", "recipient_id": "15551234567"});
    let ok = super::status(&st(&"w".repeat(256))).unwrap().unwrap();
    assert_eq!(ok.provider_message_id.len(), 256);
    for bad in [String::new(), "w".repeat(257)] {
        assert_eq!(
            super::status(&st(&bad)).unwrap_err(),
            "status without an id"
        );
    }
}
