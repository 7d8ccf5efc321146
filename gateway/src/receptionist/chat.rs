//! [`OpenAiChat`]: the receptionist's remote model (`voice::receptionist::model::ChatModel`)
//! over any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp's server,
//! Ollama, LiteLLM…), streaming.
//!
//! One request per caller turn: `POST {url}/chat/completions` with `"stream": true`, the
//! system instructions and the call's history as messages, and the receptionist's five
//! tools (see [`voice::receptionist::model::tools`]). The reply is read as server-sent
//! events: each `data:` line a `chat.completion.chunk` whose `delta.content` fragments are
//! passed on as they arrive and whose `delta.tool_calls` fragments are joined by index and
//! passed on, typed, at `data: [DONE]` (or the end of the body).
//!
//! Bounded everywhere: the first words (or tool call) must come within `timeout` of the
//! request, and every later chunk within `timeout` of the one before; a reply over 256 KiB,
//! a status other than 2xx, an `error` object or a malformed chunk ends it with an error.
//! Each endpoint URL has a circuit breaker (the senders' [`Breakers`]): three failures in a
//! row open it for 30 s, during which calls go straight to the local responder without
//! waiting on a dead endpoint.

use crate::sender::limits::Breakers;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use voice::receptionist::jiff::civil::DateTime;
use voice::receptionist::model::{
    tools, ChatModel, ChatTurn, Endpoint, ModelEvent, ModelFailure, ToolCall,
};
use voice::receptionist::Speaker;
use voice::ua::BoxFuture;

/// The most of one reply read before it is refused.
const MAX_REPLY_BYTES: usize = 256 * 1024;
/// Failures in a row that open an endpoint's breaker, and for how long.
const BREAKER_THRESHOLD: u32 = 3;
const BREAKER_COOLDOWN: Duration = Duration::from_secs(30);

/// See the module docs.
pub struct OpenAiChat {
    http: reqwest::Client,
    timeout: Duration,
    breakers: Breakers,
}

impl OpenAiChat {
    /// An adapter waiting at most `timeout` for the first words and between chunks.
    pub fn new(timeout: Duration) -> reqwest::Result<OpenAiChat> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_max_idle_per_host(8)
            .build()?;
        Ok(OpenAiChat {
            http,
            timeout,
            breakers: Breakers::new(BREAKER_THRESHOLD, BREAKER_COOLDOWN),
        })
    }

    async fn run(
        &self,
        endpoint: &Endpoint,
        turn: ChatTurn,
        out: &mpsc::Sender<ModelEvent>,
    ) -> Result<(), String> {
        let mut deadline = Instant::now() + self.timeout;
        let mut request = self
            .http
            .post(completions_url(&endpoint.url))
            .json(&request_body(&endpoint.model, &turn));
        if let Some(key) = &endpoint.key {
            request = request.bearer_auth(key);
        }
        let mut response = tokio::time::timeout_at(deadline, request.send())
            .await
            .map_err(|_| "no answer in time".to_owned())?
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = tokio::time::timeout_at(deadline, response.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            return Err(format!("status {status}: {body}"));
        }
        let mut sse = SseLines::default();
        let mut calls = PartialCalls::default();
        let mut read = 0;
        'body: loop {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .map_err(|_| "the reply stalled".to_owned())?
                .map_err(|e| format!("reading the reply: {e}"))?;
            let Some(chunk) = chunk else { break };
            read += chunk.len();
            if read > MAX_REPLY_BYTES {
                return Err("reply over 256 KiB".into());
            }
            for data in sse.push(&chunk) {
                if data.trim() == "[DONE]" {
                    break 'body;
                }
                let chunk: Value = serde_json::from_str(&data)
                    .map_err(|e| format!("malformed chunk ({e}): {data:.120}"))?;
                if let Some(error) = chunk.get("error") {
                    return Err(format!("the endpoint reported an error: {error}"));
                }
                let Some(delta) = chunk.pointer("/choices/0/delta") else {
                    continue;
                };
                let mut progressed = calls.add(delta);
                if let Some(text) = delta.get("content").and_then(Value::as_str) {
                    if !text.is_empty() {
                        progressed = true;
                        if out.send(ModelEvent::Text(text.to_owned())).await.is_err() {
                            return Ok(()); // the call stopped listening (barge-in)
                        }
                    }
                }
                // Role-only and empty chunks do not count as the reply arriving.
                if progressed {
                    deadline = Instant::now() + self.timeout;
                }
            }
        }
        for call in calls.finish()? {
            if out.send(ModelEvent::Tool(call)).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

impl ChatModel for OpenAiChat {
    fn stream<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        turn: ChatTurn,
        out: mpsc::Sender<ModelEvent>,
    ) -> BoxFuture<'a, Result<(), ModelFailure>> {
        Box::pin(async move {
            let key = endpoint.url.as_str();
            if let Err(wait) = self.breakers.allow(key) {
                return Err(ModelFailure {
                    reason: format!("circuit open for another {} s", wait.as_secs() + 1),
                });
            }
            match self.run(endpoint, turn, &out).await {
                Ok(()) => {
                    self.breakers.success(key);
                    Ok(())
                }
                Err(reason) => {
                    self.breakers.failure(key);
                    metrics::counter!("receptionist_model_failures_total").increment(1);
                    Err(ModelFailure { reason })
                }
            }
        })
    }
}

/// What is wrong with a remote responder's URL and model (`url` empty: local, fine).
pub fn endpoint_problems(url: Option<&String>, model: Option<&String>) -> Vec<String> {
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2_000 {
        problems.push(format!(
            "responder URL `{url}` is not an http(s) URL (or `local`)"
        ));
    }
    if model.is_none_or(|m| m.trim().is_empty()) {
        problems.push("a remote responder needs --responder-model".to_owned());
    }
    problems
}

/// `{base}/chat/completions`, unless the URL names that path already.
fn completions_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/chat/completions") {
        base.to_owned()
    } else {
        format!("{base}/chat/completions")
    }
}

/// The request: instructions, history, tools, streaming.
fn request_body(model: &str, turn: &ChatTurn) -> Value {
    let mut messages = vec![json!({"role": "system", "content": turn.instructions})];
    messages.extend(turn.history.iter().map(|(speaker, text)| {
        let role = match speaker {
            Speaker::Caller => "user",
            Speaker::Receptionist => "assistant",
        };
        json!({"role": role, "content": text})
    }));
    let tool = |name: &str, description: &str, parameters: Value| {
        json!({"type": "function", "function": {
            "name": name, "description": description, "parameters": parameters}})
    };
    let none = json!({"type": "object", "properties": {}});
    json!({
        "model": model,
        "stream": true,
        "temperature": 0.3,
        "max_tokens": 300,
        "messages": messages,
        "tools": [
            tool(tools::BOOK, "Book the caller's appointment (after they confirmed the time).",
                json!({"type": "object", "required": ["start"], "properties": {
                    "start": {"type": "string", "description": "Local start, YYYY-MM-DDTHH:MM"},
                    "reschedule": {"type": "boolean", "description": "Moves the caller's existing appointment"}}})),
            tool(tools::CANCEL, "Cancel the caller's upcoming appointment (after they confirmed).", none.clone()),
            tool(tools::TRANSFER, "Hand the call to a person.",
                json!({"type": "object", "properties": {
                    "summary": {"type": "string", "description": "Why, in one short line, for the person"}}})),
            tool(tools::MESSAGE, "Record a voicemail message from the caller.", none.clone()),
            tool(tools::HANGUP, "End the call after saying goodbye.", none),
        ],
    })
}

/// Server-sent events: the `data` of each event, as complete events arrive (lines may be
/// split anywhere between chunks, UTF-8 included; `\r\n` and comments allowed).
#[derive(Default)]
struct SseLines {
    pending: Vec<u8>,
    data: Vec<String>,
}

impl SseLines {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(std::mem::take(&mut self.data).join("\n"));
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                self.data
                    .push(value.strip_prefix(' ').unwrap_or(value).to_owned());
            }
            // `event:`, `id:`, `retry:` and `:` comments carry nothing a reply needs.
        }
        events
    }
}

/// Tool calls as their fragments arrive (`delta.tool_calls[i]` by `index`).
#[derive(Default)]
struct PartialCalls {
    calls: BTreeMap<u64, (String, String)>,
}

impl PartialCalls {
    /// Takes a delta's tool-call fragments; whether there were any.
    fn add(&mut self, delta: &Value) -> bool {
        let Some(parts) = delta.get("tool_calls").and_then(Value::as_array) else {
            return false;
        };
        for part in parts {
            let index = part.get("index").and_then(Value::as_u64).unwrap_or(0);
            let (name, arguments) = self.calls.entry(index).or_default();
            if let Some(n) = part.pointer("/function/name").and_then(Value::as_str) {
                name.push_str(n);
            }
            if let Some(a) = part.pointer("/function/arguments").and_then(Value::as_str) {
                arguments.push_str(a);
            }
        }
        !parts.is_empty()
    }

    /// The complete calls, typed; an unknown tool is skipped (logged), malformed arguments
    /// of a known one are an error.
    fn finish(self) -> Result<Vec<ToolCall>, String> {
        let mut out = Vec::new();
        for (name, arguments) in self.calls.into_values() {
            let args: Value = match arguments.trim() {
                "" => json!({}),
                a => serde_json::from_str(a)
                    .map_err(|e| format!("{name}: arguments are not JSON ({e})"))?,
            };
            let text = |key: &str| args.get(key).and_then(Value::as_str).map(str::trim);
            let call = match name.as_str() {
                tools::BOOK => {
                    let start = text("start").ok_or(format!("{name}: no start"))?;
                    let start = start.parse::<DateTime>().map_err(|e| {
                        format!("{name}: start `{start}` is not a local date-time ({e})")
                    })?;
                    let reschedule = args.get("reschedule").and_then(Value::as_bool) == Some(true);
                    ToolCall::Book { start, reschedule }
                }
                tools::CANCEL => ToolCall::Cancel,
                tools::TRANSFER => ToolCall::Transfer {
                    summary: text("summary")
                        .filter(|s| !s.is_empty())
                        .unwrap_or("the caller asked for a person")
                        .chars()
                        .take(200)
                        .collect(),
                },
                tools::MESSAGE => ToolCall::Message,
                tools::HANGUP => ToolCall::Hangup,
                other => {
                    tracing::warn!(
                        tool = other,
                        "the model called a tool the receptionist does not have"
                    );
                    continue;
                }
            };
            out.push(call);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voice::receptionist::jiff::civil::date;

    #[test]
    fn events_are_joined_across_chunks_and_lines() {
        let mut sse = SseLines::default();
        assert!(sse.push(b": keep-alive\n\ndata: {\"a\"").is_empty());
        assert_eq!(sse.push(b":1}\r\n\r\ndata: x\n"), ["{\"a\":1}"]);
        assert_eq!(
            sse.push(b"data: y\n\nevent: e\ndata:[DONE]\n\n"),
            ["x\ny", "[DONE]"]
        );
        // A multi-byte character split between chunks survives.
        let text = "data: é\n\n".as_bytes();
        assert!(sse.push(&text[..7]).is_empty());
        assert_eq!(sse.push(&text[7..]), ["é"]);
    }

    #[test]
    fn tool_call_fragments_become_typed_calls() {
        let mut calls = PartialCalls::default();
        let part = |v: Value| json!({ "tool_calls": [v] });
        assert!(
            calls.add(&part(json!({"index": 0, "id": "c1", "type": "function",
            "function": {"name": "book_appointment", "arguments": "{\"start\":\"2026-12-"}})))
        );
        assert!(calls.add(&part(
            json!({"index": 0, "function": {"arguments": "08T15:30\"}"}})
        )));
        assert!(calls.add(&part(
            json!({"index": 1, "function": {"name": "dance", "arguments": "{}"}})
        )));
        assert!(calls.add(&part(
            json!({"index": 2, "function": {"name": "transfer_to_person"}})
        )));
        assert!(!calls.add(&json!({"content": "hi"})));
        assert_eq!(
            calls.finish().unwrap(),
            [
                ToolCall::Book {
                    start: date(2026, 12, 8).at(15, 30, 0, 0),
                    reschedule: false
                },
                ToolCall::Transfer {
                    summary: "the caller asked for a person".into()
                }
            ]
        );
        let mut bad = PartialCalls::default();
        bad.add(&part(json!({"index": 0, "function": {"name": "book_appointment", "arguments": "{\"start\":\"next Tuesday\"}"}})));
        assert!(bad.finish().unwrap_err().contains("not a local date-time"));
        let mut bad = PartialCalls::default();
        bad.add(&part(
            json!({"index": 0, "function": {"name": "end_call", "arguments": "{nope"}}),
        ));
        assert!(bad.finish().unwrap_err().contains("not JSON"));
    }

    #[test]
    fn the_request_names_the_model_streams_and_maps_the_speakers() {
        let turn = ChatTurn {
            instructions: "be brief".into(),
            history: vec![
                (Speaker::Receptionist, "Hello.".into()),
                (Speaker::Caller, "Hi there.".into()),
            ],
        };
        let body = request_body("small", &turn);
        assert_eq!(body["model"], "small");
        assert_eq!(body["stream"], true);
        let roles: Vec<&str> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "assistant", "user"]);
        assert_eq!(body["messages"][2]["content"], "Hi there.");
        let names: Vec<&str> = body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                tools::BOOK,
                tools::CANCEL,
                tools::TRANSFER,
                tools::MESSAGE,
                tools::HANGUP
            ]
        );
        assert_eq!(
            completions_url("http://h/v1/"),
            "http://h/v1/chat/completions"
        );
        assert_eq!(
            completions_url("http://h/v1/chat/completions"),
            "http://h/v1/chat/completions"
        );
    }
}
