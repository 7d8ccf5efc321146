//! The inbox page at `/`: plain HTML, JavaScript and CSS embedded in the binary with
//! `include_str!` — no build step, nothing to install beside the gateway. The page logs in
//! (`POST /api/v1/login`), loads the conversation list and `head_seq`, then lives on the
//! WebSocket from that seq, reconnecting with its last seq so nothing is missed.
//!
//! The page is served with a Content-Security-Policy that allows only its own script, style,
//! API and socket (`'self'`), blob/data media for voicemails, and nothing inline; it may not be
//! framed by another site (`frame-ancestors 'none'`). Customer content (an email's HTML) is
//! shown in a sandboxed frame that inherits this policy and narrows it further.

use axum::http::header;
use axum::response::IntoResponse;

/// The page's policy (see the module docs).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; \
     frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Headers every asset of the page carries.
fn headers(content_type: &'static str) -> [(header::HeaderName, &'static str); 4] {
    [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

/// `GET /`.
pub async fn index() -> impl IntoResponse {
    (
        headers("text/html; charset=utf-8"),
        include_str!("assets/index.html"),
    )
}

/// `GET /inbox.js`.
pub async fn script() -> impl IntoResponse {
    (
        headers("text/javascript; charset=utf-8"),
        include_str!("assets/inbox.js"),
    )
}

/// `GET /inbox.css`.
pub async fn style() -> impl IntoResponse {
    (
        headers("text/css; charset=utf-8"),
        include_str!("assets/inbox.css"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_page_carries_its_policy_and_nothing_inline_needs_an_exception() {
        let r = index().await.into_response();
        let h = r.headers();
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        // The policy forbids inline script, handlers and style attributes: the page has none.
        let html = include_str!("assets/index.html");
        for inline in ["<script>", " onclick=", " onload=", " style="] {
            assert!(!html.contains(inline), "index.html has {inline}");
        }
    }
}
