//! A scripted HTTP/1.1 server on loopback for the plugins' own REST tests: it answers each
//! connection with the next scripted reply and records what the plugin sent (method, path,
//! headers, body), so a test checks the request on the wire and the plugin's reading of the
//! answer without the integration suite's stand-ins.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Leave out `Content-Length` (the body then ends when the connection closes).
    pub no_length: bool,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            no_length: false,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Captured {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as a form (`application/x-www-form-urlencoded`).
    pub fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_bytes(&self.body).expect("form body")
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// Serves `replies`, one connection each, and returns the base URL and the requests seen.
pub async fn serve(replies: Vec<Reply>) -> (String, JoinHandle<Vec<Captured>>) {
    serve_with(|_| replies).await
}

/// As [`serve`], with replies that may name the server's own base URL.
pub async fn serve_with(
    replies: impl FnOnce(&str) -> Vec<Reply>,
) -> (String, JoinHandle<Vec<Captured>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let replies = replies(&base);
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        for reply in replies {
            let (mut sock, _) = listener.accept().await.expect("accept");
            seen.push(read_request(&mut sock).await);
            let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
            for (n, v) in &reply.headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            if !reply.no_length {
                head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
            }
            head.push_str("\r\n");
            sock.write_all(head.as_bytes()).await.expect("write head");
            let _ = sock.write_all(&reply.body).await;
            let _ = sock.shutdown().await;
        }
        seen
    });
    (base, task)
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Captured {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed before the request's head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let method = start.next().unwrap_or_default().to_owned();
    let path = start.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = sock.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    Captured {
        method,
        path,
        headers,
        body,
    }
}

/// A text message to send, as the runtime hands one to a plugin.
pub fn outbound(to: &str, body: &str, webhook_base: &str) -> crate::OutboundMessage {
    crate::OutboundMessage {
        message_id: "m1".into(),
        to: to.into(),
        body: body.into(),
        content: None,
        webhook_base: webhook_base.into(),
        attachments: Vec::new(),
    }
}

/// A client as the runtime builds one (rustls with ring installed).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
