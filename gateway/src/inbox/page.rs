//! The inbox page at `/`: plain HTML, JavaScript and CSS embedded in the binary with
//! `include_str!` — no build step, nothing to install beside the gateway. The page logs in
//! (`POST /api/v1/login`), loads the conversation list and `head_seq`, then lives on the
//! WebSocket from that seq, reconnecting with its last seq so nothing is missed.

use axum::http::header;
use axum::response::IntoResponse;

/// `GET /`.
pub async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("assets/index.html"),
    )
}

/// `GET /inbox.js`.
pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/inbox.js"),
    )
}

/// `GET /inbox.css`.
pub async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/inbox.css"),
    )
}
