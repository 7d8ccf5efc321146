//! An inbox agent as a test drives it: created in the database like the CLI does, logged in
//! over `POST /api/v1/login`, and speaking the WebSocket protocol over a real socket
//! (tokio-tungstenite). Every wait has a deadline and fails there.

use futures_util::{SinkExt, StreamExt};
use gateway::db::{agents, Db};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait for a frame may take.
pub const FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// Creates an agent of `org_id` (argon2-hashed, as the CLI stores it).
pub async fn create_agent(db: &Db, org_id: &str, email: &str, password: &str, role: &str) {
    let hash = gateway::inbox::auth::hash_password(password.to_string())
        .await
        .expect("hash");
    agents::create(
        &db.pool,
        org_id,
        email,
        &hash,
        agents::Role::parse(role).expect("role"),
        5,
    )
    .await
    .expect("create agent")
    .expect("new email");
}

/// Logs in; the token (panics on anything but 200).
pub async fn login(client: &reqwest::Client, base: &str, email: &str, password: &str) -> String {
    let r = client
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login request");
    assert_eq!(r.status(), 200, "login of {email}");
    let v: Value = r.json().await.expect("json");
    v["token"].as_str().expect("token").to_string()
}

/// A connected agent socket.
pub struct AgentSocket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// `http://…` → `ws://…/api/v1/ws`.
pub fn ws_url(base: &str) -> String {
    format!("{}/api/v1/ws", base.replacen("http://", "ws://", 1))
}

impl AgentSocket {
    /// Opens the socket (no hello yet).
    pub async fn open(base: &str) -> AgentSocket {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url(base))
            .await
            .expect("websocket connects");
        AgentSocket { ws }
    }

    /// Opens the socket over a TCP stream the test prepared (e.g. a tiny receive buffer).
    pub async fn open_on(base: &str, tcp: TcpStream) -> AgentSocket {
        let (ws, _) = tokio_tungstenite::client_async(ws_url(base), MaybeTlsStream::Plain(tcp))
            .await
            .expect("websocket handshake");
        AgentSocket { ws }
    }

    /// Opens, says hello and expects `welcome`.
    pub async fn connect(base: &str, token: &str, last_seq: i64) -> AgentSocket {
        let mut s = AgentSocket::open(base).await;
        s.send(json!({"type": "hello", "token": token, "last_seq": last_seq}))
            .await;
        let w = s.next_json().await.expect("a frame after hello");
        assert_eq!(w["type"], "welcome", "hello answered: {w}");
        s
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send frame");
    }

    /// The next JSON frame, `None` when the socket closed; panics at the deadline.
    pub async fn next_json(&mut self) -> Option<Value> {
        loop {
            let m = tokio::time::timeout(FRAME_DEADLINE, self.ws.next())
                .await
                .expect("a frame within the deadline");
            match m {
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(&t).expect("JSON frame"))
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The close code the server sent (reading past any other frames), within the deadline.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            let m = tokio::time::timeout(FRAME_DEADLINE, self.ws.next())
                .await
                .expect("the server closes within the deadline");
            match m {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads frames until one satisfies `pred`; returns it and the event frames seen before.
    pub async fn until(&mut self, mut pred: impl FnMut(&Value) -> bool) -> (Value, Vec<Value>) {
        let mut events = Vec::new();
        loop {
            let f = self.next_json().await.expect("socket open");
            if pred(&f) {
                return (f, events);
            }
            if f["type"] == "event" {
                events.push(f);
            }
        }
    }

    /// Event frames until the server says it caught up; (events, caught-up seq).
    pub async fn replay(&mut self) -> (Vec<Value>, i64) {
        let (f, events) = self.until(|f| f["type"] == "caught_up").await;
        (events, f["seq"].as_i64().expect("seq"))
    }

    /// Sends a command and waits for its answer (`ack` or `error` with the same id); events
    /// read meanwhile are returned too.
    pub async fn command(&mut self, cmd: Value) -> (Value, Vec<Value>) {
        let id = cmd["id"].clone();
        self.send(cmd).await;
        self.until(|f| (f["type"] == "ack" || f["type"] == "error") && f["id"] == id)
            .await
    }

    /// Closes from the client side.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
