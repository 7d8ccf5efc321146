//! The receptionist's remote-model adapter (`gateway::receptionist::chat::OpenAiChat`)
//! against a local OpenAI-compatible stand-in that streams SSE: words and tool calls arrive
//! as they are sent, the key and the request are what such endpoints expect, and a
//! failing endpoint (error status, stall, malformed stream, wrong key) ends the reply with
//! an error — after three in a row the breaker answers at once without a request. The calls
//! through a real SIP phone are in `receptionist.rs`.

use gateway::receptionist::chat::OpenAiChat;
use integration_tests::chat::{ChatStandin, Reply, Step};
use std::time::Duration;
use tokio::sync::mpsc;
use voice::receptionist::jiff::civil::date;
use voice::receptionist::model::{
    ChatModel, ChatTurn, Endpoint, ModelEvent, ModelFailure, ToolCall,
};
use voice::receptionist::Speaker;

fn turn(said: &str) -> ChatTurn {
    ChatTurn {
        instructions: "You are the receptionist of Harbour Dental.".into(),
        history: vec![
            (Speaker::Receptionist, "How can I help you?".into()),
            (Speaker::Caller, said.into()),
        ],
    }
}

/// Runs one request; the events in order and how it ended (bounded by a test deadline far
/// beyond the adapter's own timeouts).
async fn ask(
    chat: &OpenAiChat,
    endpoint: &Endpoint,
    said: &str,
) -> (Vec<ModelEvent>, Result<(), ModelFailure>) {
    let (tx, mut rx) = mpsc::channel(64);
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        chat.stream(endpoint, turn(said), tx),
    )
    .await
    .expect("the adapter gives up by itself");
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (events, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_streams_words_and_tool_calls_and_gives_up_on_a_failing_endpoint() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let standin = ChatStandin::start().await;
    let chat = OpenAiChat::new(Duration::from_millis(800)).unwrap();
    let endpoint = Endpoint {
        url: standin.base.clone(),
        model: "tiny-chat".into(),
        key: Some(standin.key.clone()),
    };
    let start = r#"{"start":"2026-12-08T15:30","reschedule":true}"#.to_owned();
    standin.script([
        Reply::Stream(vec![
            Step::Text("Sure, "),
            Step::Text("Tuesday at half past three. "),
            Step::Text("Booking it."),
            Step::Tool("book_appointment", start),
        ]),
        Reply::Status(503),
        Reply::Stall,
        Reply::Stream(vec![
            Step::Text("fine"),
            Step::Tool("end_call", "{oops".into()),
        ]),
    ]);

    // Words as fragments, in order, then the typed tool call.
    let (events, result) = ask(&chat, &endpoint, "Can I come Tuesday at three thirty?").await;
    result.expect("a complete reply");
    let words: String = events
        .iter()
        .filter_map(|e| match e {
            ModelEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(words, "Sure, Tuesday at half past three. Booking it.");
    assert_eq!(
        events.last(),
        Some(&ModelEvent::Tool(ToolCall::Book {
            start: date(2026, 12, 8).at(15, 30, 0, 0),
            reschedule: true
        }))
    );
    let sent = &standin.received()[0];
    assert!(sent.authorized, "the key is sent as a bearer token");
    assert_eq!(sent.body["model"], "tiny-chat");
    assert_eq!(sent.body["stream"], true);
    let messages = sent.body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(
        messages[0]["content"],
        "You are the receptionist of Harbour Dental."
    );
    assert_eq!(messages[2]["role"], "user");
    assert_eq!(
        messages[2]["content"],
        "Can I come Tuesday at three thirty?"
    );
    assert_eq!(sent.body["tools"].as_array().unwrap().len(), 5);

    // Three failures in a row: an error status, a stall, a malformed tool call.
    let (_, result) = ask(&chat, &endpoint, "hello?").await;
    let e = result.unwrap_err();
    assert!(e.reason.contains("503"), "{e}");
    let (events, result) = ask(&chat, &endpoint, "hello?").await;
    let e = result.unwrap_err();
    assert!(e.reason.contains("stalled"), "{e}");
    assert!(
        events.is_empty(),
        "a role-only chunk is not a reply: {events:?}"
    );
    let (_, result) = ask(&chat, &endpoint, "hello?").await;
    let e = result.unwrap_err();
    assert!(e.reason.contains("not JSON"), "{e}");
    assert_eq!(standin.received().len(), 4);

    // The breaker is open: the next turn fails at once and the endpoint hears nothing.
    let (_, result) = ask(&chat, &endpoint, "hello?").await;
    let e = result.unwrap_err();
    assert!(e.reason.contains("circuit open"), "{e}");
    assert_eq!(
        standin.received().len(),
        4,
        "no request while the circuit is open"
    );

    // Another endpoint has its own breaker; a wrong key is refused there.
    let wrong = Endpoint {
        url: format!("{}/", standin.base),
        key: Some("sk-wrong".into()),
        ..endpoint.clone()
    };
    let (events, result) = ask(&chat, &wrong, "hello?").await;
    let e = result.unwrap_err();
    assert!(e.reason.contains("401"), "{e}");
    assert!(events.is_empty());
    assert!(!standin.received()[4].authorized);
}
