//! Tests of the shared send and download helpers against a scripted HTTP server: error
//! classification at its boundaries, `Retry-After`, the JSON send request, and the caps on
//! what a provider's answer may hold.

use super::*;
use crate::test_http::{client, serve, Reply};

#[test]
fn classification_boundaries() {
    let class = |status, transient_code| {
        SendError::from_status(status, None, String::new(), None, transient_code).is_transient()
    };
    assert!(class(429, false), "429 is throttling");
    assert!(
        !class(428, false) && !class(430, false),
        "other 4xx are permanent"
    );
    assert!(!class(499, false));
    assert!(class(500, false) && class(503, false) && class(599, false));
    assert!(
        class(400, true),
        "a documented temporary code is transient at any status"
    );
    let e = SendError::from_status(400, Some("21211".into()), "bad To".into(), None, false);
    match &e {
        SendError::Rejected {
            status,
            code,
            message,
        } => {
            assert_eq!(
                (*status, code.as_deref(), message.as_str()),
                (400, Some("21211"), "bad To")
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(e.code(), Some("21211"));
    let wait = Some(Duration::from_secs(7));
    match SendError::from_status(503, Some("x".into()), String::new(), wait, false) {
        SendError::Unavailable {
            status,
            code,
            retry_after,
        } => assert_eq!(
            (status, code.as_deref(), retry_after),
            (503, Some("x"), wait)
        ),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(SendError::BadResponse("x".into()).is_transient());
    assert_eq!(SendError::BadResponse("x".into()).code(), None);
    assert!(MediaError::Transient("x".into()).is_transient());
    assert!(!MediaError::TooLarge { limit: 1 }.is_transient());
    assert!(!MediaError::Unsupported("x".into()).is_transient());
    let refused = MediaError::Refused {
        status: 404,
        message: "gone".into(),
    };
    assert!(!refused.is_transient());
}

#[test]
fn retry_after_is_read_in_seconds() {
    let mut headers = reqwest::header::HeaderMap::new();
    assert_eq!(retry_after(&headers), None);
    headers.insert("retry-after", " 12 ".parse().unwrap());
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(12)));
    headers.insert(
        "retry-after",
        "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
    );
    assert_eq!(
        retry_after(&headers),
        None,
        "a date is not taken for seconds"
    );
}

#[tokio::test]
async fn post_json_sends_the_token_and_body_and_returns_the_answer() {
    let reply = Reply::json(429, r#"{"error":"slow down"}"#).header("Retry-After", "3");
    let (base, seen) = serve(vec![reply]).await;
    let body = serde_json::json!({"to": "+15550001111", "text": "hi"});
    let (status, retry, bytes) = post_json(&client(), &format!("{base}/v1/send"), "tok", &body)
        .await
        .unwrap();
    assert_eq!(status, 429);
    assert_eq!(retry, Some(Duration::from_secs(3)));
    assert_eq!(bytes, br#"{"error":"slow down"}"#);
    let req = &seen.await.unwrap()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/send")
    );
    assert_eq!(req.header("authorization"), Some("Bearer tok"));
    assert_eq!(req.json(), body);
}

#[tokio::test]
async fn answers_are_read_up_to_the_cap() {
    let declared = Reply::json(200, "0123456789");
    let mut undeclared = Reply::json(200, "0123456789");
    undeclared.no_length = true;
    let (base, _seen) = serve(vec![
        declared.clone(),
        undeclared.clone(),
        declared,
        undeclared,
    ])
    .await;
    let http = client();
    let get = |http: &reqwest::Client| http.get(format!("{base}/")).send();
    // Exactly the cap is read whole, declared or not.
    let r = get(&http).await.unwrap();
    assert_eq!(read_capped(r, 10).await.unwrap(), b"0123456789");
    let r = get(&http).await.unwrap();
    assert_eq!(read_capped(r, 10).await.unwrap(), b"0123456789");
    // One byte over is refused, by the declared length or by counting.
    for _ in 0..2 {
        let r = get(&http).await.unwrap();
        match read_capped(r, 9).await {
            Err(MediaError::TooLarge { limit: 9 }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_oversized_send_answer_is_a_bad_response() {
    assert_eq!(MAX_PROVIDER_RESPONSE_BYTES, 1024 * 1024);
    let big = "x".repeat(MAX_PROVIDER_RESPONSE_BYTES as usize + 1);
    let (base, _seen) = serve(vec![Reply::json(200, &big), Reply::json(200, "ok")]).await;
    let http = client();
    let r = http.get(format!("{base}/")).send().await.unwrap();
    match read_send_response(r).await {
        Err(SendError::BadResponse(m)) => assert!(m.contains("reading the answer"), "{m}"),
        other => panic!("expected BadResponse, got {other:?}"),
    }
    let r = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(read_send_response(r).await.unwrap(), b"ok");
}

#[test]
fn constructors_fill_the_defaults() {
    let m = InboundMedia::link("https://x/y", "image/png");
    assert_eq!(
        (m.reference.as_str(), m.content_type.as_str()),
        ("https://x/y", "image/png")
    );
    assert!(!m.fetch && m.caption.is_none() && m.filename.is_none());
    let t = InboundMessage::text(Channel::Sms, "id", "+1", "+2", "hi");
    assert_eq!(t.kind, "text");
    assert!(t.media.is_empty() && t.keyword.is_none() && t.opens_window.is_none());
    let s = StatusUpdate::new("id", DeliveryState::Delivered, "delivered");
    assert_eq!(s.provider_status, "delivered");
    assert!(s.error_code.is_none() && s.details.is_none());
}
