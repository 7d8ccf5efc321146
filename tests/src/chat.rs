//! A local stand-in for an OpenAI-compatible chat-completions endpoint
//! (`POST /v1/chat/completions` with `"stream": true`): it checks the bearer key, keeps every
//! request, and answers each with the next scripted reply as server-sent events the way such
//! endpoints stream them — a role-only first chunk, `delta.content` fragments, tool calls
//! whose JSON arguments arrive in pieces, a `finish_reason` chunk and `data: [DONE]` — or
//! with a stall or an error status.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// One step of a streamed reply.
#[derive(Clone)]
pub enum Step {
    /// A `delta.content` fragment.
    Text(&'static str),
    /// A tool call (name, JSON arguments), its arguments sent in two fragments.
    Tool(&'static str, String),
    /// Waits until the test says go (the rest of the reply is held back).
    Hold(Arc<Notify>),
}

/// What the stand-in answers one request with.
#[derive(Clone)]
pub enum Reply {
    /// 200, these steps as SSE, then `[DONE]`.
    Stream(Vec<Step>),
    /// 200 and a role-only chunk, then nothing for a minute.
    Stall,
    /// This status with an OpenAI-style error body.
    Status(u16),
}

/// A request the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Whether the bearer key matched.
    pub authorized: bool,
    /// The JSON body.
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    key: String,
    script: VecDeque<Reply>,
    received: Vec<Received>,
}

/// The running stand-in.
#[derive(Clone)]
pub struct ChatStandin {
    /// Its base URL, `http://127.0.0.1:PORT/v1` (what an org's responder URL is set to).
    pub base: String,
    /// The bearer key it accepts.
    pub key: String,
    inner: Arc<Mutex<Inner>>,
}

impl ChatStandin {
    /// Starts it on a free loopback port.
    pub async fn start() -> ChatStandin {
        let key = format!("sk-test-{}", uuid::Uuid::new_v4().simple());
        let inner = Arc::new(Mutex::new(Inner {
            key: key.clone(),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("stand-in serves") });
        ChatStandin { base, key, inner }
    }

    /// Queues the replies to the next requests, in order (unscripted requests get 500).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }
}

/// One SSE event carrying a `chat.completion.chunk` with this delta.
fn chunk(delta: Value, finish: Option<&str>) -> Bytes {
    let event = json!({
        "id": "chatcmpl-standin",
        "object": "chat.completion.chunk",
        "created": 1_764_460_800,
        "model": "standin",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    Bytes::from(format!("data: {event}\n\n"))
}

async fn complete(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = {
        let mut inner = inner.lock().unwrap();
        let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {}", inner.key).as_str());
        inner.received.push(Received {
            authorized,
            body: body.clone(),
        });
        if !authorized {
            Some(Reply::Status(401))
        } else {
            inner.script.pop_front()
        }
    };
    let steps = match reply.unwrap_or(Reply::Status(500)) {
        Reply::Status(status) => {
            let error = json!({"error": {"message": "scripted failure", "type": "server_error", "code": status}});
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, axum::Json(error)).into_response();
        }
        Reply::Stall => None,
        Reply::Stream(steps) => Some(steps),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let _ = tx
            .send(Ok(chunk(json!({"role": "assistant", "content": ""}), None)))
            .await;
        let Some(steps) = steps else {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        };
        let mut tools = 0;
        for step in steps {
            let bytes = match step {
                Step::Text(t) => vec![chunk(json!({"content": t}), None)],
                Step::Tool(name, arguments) => {
                    let half = arguments.len() / 2;
                    let (a, b) = arguments.split_at(half);
                    let index = tools;
                    tools += 1;
                    vec![
                        chunk(
                            json!({"tool_calls": [{"index": index, "id": format!("call_{index}"), "type": "function",
                                "function": {"name": name, "arguments": a}}]}),
                            None,
                        ),
                        chunk(
                            json!({"tool_calls": [{"index": index, "function": {"arguments": b}}]}),
                            None,
                        ),
                    ]
                }
                Step::Hold(go) => {
                    go.notified().await;
                    Vec::new()
                }
            };
            for b in bytes {
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
            }
        }
        let finish = if tools > 0 { "tool_calls" } else { "stop" };
        let _ = tx.send(Ok(chunk(json!({}), Some(finish)))).await;
        let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .expect("response")
}
