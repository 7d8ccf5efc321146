//! Webhooks shaped as Telnyx's messaging webhook reference shows them.

use super::*;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::json;

const NOW: i64 = 1_750_000_000;

fn keypair() -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[42u8; 32]).unwrap()
}

fn post(body: &[u8], headers: Vec<(String, String)>, now: i64) -> Result<Handled, WebhookError> {
    let kp = keypair();
    handle(
        kp.public_key().as_ref(),
        "sms",
        &WebhookRequest {
            method: "POST",
            url: "http://127.0.0.1/webhooks/telnyx/acme/sms",
            query: "",
            headers: &headers,
            body,
            received_at: now,
        },
    )
}

fn signed_headers(body: &[u8], ts: i64) -> Vec<(String, String)> {
    let msg = [ts.to_string().as_bytes(), b"|", body].concat();
    let sig = base64::engine::general_purpose::STANDARD.encode(keypair().sign(&msg).as_ref());
    vec![
        ("telnyx-signature-ed25519".into(), sig),
        ("telnyx-timestamp".into(), ts.to_string()),
    ]
}

fn signed(v: &serde_json::Value) -> Result<Handled, WebhookError> {
    let body = serde_json::to_vec(v).unwrap();
    post(&body, signed_headers(&body, NOW), NOW)
}

fn received() -> serde_json::Value {
    json!({
      "data": {
        "event_type": "message.received",
        "id": "b301ed3f-1490-491f-995f-6e64e69674d4",
        "occurred_at": "2025-06-15T15:27:24.000+00:00",
        "payload": {
          "direction": "inbound",
          "from": {"carrier": "T-Mobile USA", "line_type": "long_code", "phone_number": "+13125550001"},
          "id": "84cca175-9755-4859-b67f-4730d7f58aa3",
          "media": [{"content_type": "image/jpeg", "url": "https://media.telnyx.com/a.jpg", "size": 1024}],
          "messaging_profile_id": "740572b6-099c-44a1-89b9-6c92163bc68d",
          "record_type": "message",
          "text": "STOP",
          "to": [{"carrier": "Telnyx", "line_type": "Wireless", "phone_number": "+17735550002", "status": "webhook_delivered"}],
          "type": "MMS"
        },
        "record_type": "event"
      },
      "meta": {"attempt": 1, "delivered_to": "https://example.com/webhooks"}
    })
}

fn report(event: &str, status: &str, errors: serde_json::Value) -> serde_json::Value {
    json!({
      "data": {
        "event_type": event,
        "id": "4ee8c3a6-4995-4309-a3c6-38e3db9ea4be",
        "payload": {
          "id": "40385f64-5717-4562-b3fc-2c963f66afa6",
          "direction": "outbound",
          "from": {"phone_number": "+17735550002"},
          "to": [{"phone_number": "+13125550001", "status": status, "carrier": "T-Mobile USA"}],
          "text": "Hello",
          "errors": errors,
          "parts": 1,
          "cost": {"amount": "0.0040", "currency": "USD"},
          "completed_at": null
        },
        "record_type": "event"
      },
      "meta": {"attempt": 1}
    })
}

#[test]
fn an_inbound_message_parses_with_its_keyword_and_media() {
    let h = signed(&received()).unwrap();
    let [InboundEvent::Message(m)] = &h.events[..] else {
        panic!("{:?}", h.events)
    };
    assert_eq!(
        m.provider_message_id,
        "84cca175-9755-4859-b67f-4730d7f58aa3"
    );
    assert_eq!(m.from, "+13125550001");
    assert_eq!(m.to, "+17735550002");
    assert_eq!(m.body, "STOP");
    assert_eq!(m.keyword, Some(keywords::Keyword::OptOut));
    assert_eq!(
        m.media,
        vec![InboundMedia::link(
            "https://media.telnyx.com/a.jpg",
            "image/jpeg"
        )]
    );
    assert_eq!(m.opens_window, None);
}

#[test]
fn reports_map_per_recipient_status_and_errors() {
    let cases = [
        ("message.sent", "sent", DeliveryState::Sent),
        ("message.finalized", "delivered", DeliveryState::Delivered),
        (
            "message.finalized",
            "delivery_unconfirmed",
            DeliveryState::Sent,
        ),
        ("message.finalized", "sending_failed", DeliveryState::Failed),
    ];
    for (event, status, state) in cases {
        let h = signed(&report(event, status, json!([]))).unwrap();
        let [InboundEvent::Status(s)] = &h.events[..] else {
            panic!("{:?}", h.events)
        };
        assert_eq!(
            s.provider_message_id,
            "40385f64-5717-4562-b3fc-2c963f66afa6"
        );
        assert_eq!(s.state, state, "{status}");
        assert_eq!(s.provider_status, status);
        assert_eq!(s.details.as_ref().unwrap()["parts"], 1);
    }
    let errors = json!([{"code": "40001", "title": "Not routable", "detail": "The destination is not routable"}]);
    let h = signed(&report("message.finalized", "delivery_failed", errors)).unwrap();
    let [InboundEvent::Status(s)] = &h.events[..] else {
        panic!()
    };
    assert_eq!(s.state, DeliveryState::Failed);
    assert_eq!(s.error_code.as_deref(), Some("40001"));
    assert_eq!(s.error_message.as_deref(), Some("Not routable"));
}

#[test]
fn forged_stale_missing_or_reserialised_is_refused() {
    let v = received();
    let body = serde_json::to_vec(&v).unwrap();
    assert!(post(&body, signed_headers(&body, NOW), NOW).is_ok());
    // Missing headers.
    assert_eq!(post(&body, vec![], NOW), Err(WebhookError::BadSignature));
    let mut only_sig = signed_headers(&body, NOW);
    only_sig.pop();
    assert_eq!(post(&body, only_sig, NOW), Err(WebhookError::BadSignature));
    // Stale: signed six minutes ago, or six minutes ahead.
    let old = signed_headers(&body, NOW - 360);
    assert_eq!(post(&body, old, NOW), Err(WebhookError::BadSignature));
    let ahead = signed_headers(&body, NOW + 360);
    assert_eq!(post(&body, ahead, NOW), Err(WebhookError::BadSignature));
    // Re-serialised by a proxy: same JSON, other bytes.
    let pretty = serde_json::to_vec_pretty(&v).unwrap();
    assert_eq!(
        post(&pretty, signed_headers(&body, NOW), NOW),
        Err(WebhookError::BadSignature)
    );
    // Forged with another key.
    let other = Ed25519KeyPair::from_seed_unchecked(&[1u8; 32]).unwrap();
    let msg = [NOW.to_string().as_bytes(), b"|", &body[..]].concat();
    let forged = vec![
        (
            "telnyx-signature-ed25519".into(),
            base64::engine::general_purpose::STANDARD.encode(other.sign(&msg).as_ref()),
        ),
        ("telnyx-timestamp".into(), NOW.to_string()),
    ];
    assert_eq!(post(&body, forged, NOW), Err(WebhookError::BadSignature));
}

#[test]
fn malformed_signed_bodies_name_the_field() {
    let mut v = received();
    v["data"]["payload"]["from"] = json!({});
    assert!(matches!(
        signed(&v),
        Err(WebhookError::Malformed {
            field: "data.payload.from.phone_number",
            ..
        })
    ));
    let v = report("message.finalized", "teleported", json!([]));
    assert!(matches!(
        signed(&v),
        Err(WebhookError::Malformed {
            field: "data.payload.to[0].status",
            ..
        })
    ));
    let body = b"not json";
    assert!(matches!(
        post(body, signed_headers(body, NOW), NOW),
        Err(WebhookError::Malformed { field: "body", .. })
    ));
    let named = |v: &serde_json::Value| match signed(v) {
        Err(WebhookError::Malformed { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    let mut v = received();
    v["data"]["payload"]["id"] = json!("");
    assert_eq!(named(&v), "data.payload.id");
    let mut v = received();
    v["data"]["payload"]["to"] = json!([{}]);
    assert_eq!(named(&v), "data.payload.to[0].phone_number");
    let mut v = report("message.finalized", "delivered", json!([]));
    v["data"]["payload"]["to"][0]
        .as_object_mut()
        .unwrap()
        .remove("status");
    assert_eq!(named(&v), "data.payload.to[0].status");
}

#[test]
fn a_message_without_text_is_a_media_message_only_when_it_has_media() {
    let kind = |text: &str, media: serde_json::Value| {
        let mut v = received();
        v["data"]["payload"]["text"] = json!(text);
        v["data"]["payload"]["media"] = media;
        let h = signed(&v).unwrap();
        let [InboundEvent::Message(m)] = &h.events[..] else {
            panic!("{:?}", h.events)
        };
        m.kind.clone()
    };
    let one = json!([{"content_type": "image/jpeg", "url": "https://media.telnyx.com/a.jpg"}]);
    assert_eq!(kind("", one.clone()), "media");
    assert_eq!(kind("look", one), "text");
    assert_eq!(kind("", json!([])), "text");
}

#[test]
fn other_event_types_are_acknowledged_and_skipped() {
    let v = json!({"data": {"event_type": "number_order.complete", "payload": {}}});
    let h = signed(&v).unwrap();
    assert!(h.events.is_empty());
    assert_eq!(h.skipped.len(), 1);
}

#[test]
fn every_telnyx_status_has_its_state() {
    use state_machines::DeliveryState as D;
    for (word, state) in [
        ("queued", Some(D::Queued)),
        ("sending", Some(D::Sending)),
        ("sent", Some(D::Sent)),
        ("delivery_unconfirmed", Some(D::Sent)),
        ("delivered", Some(D::Delivered)),
        ("sending_failed", Some(D::Failed)),
        ("delivery_failed", Some(D::Failed)),
        ("webhook_delivered", None),
    ] {
        assert_eq!(super::map_status(word), state, "{word}");
    }
}
