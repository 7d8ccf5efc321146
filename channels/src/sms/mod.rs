//! SMS: the keyword rules every SMS provider shares, the text checks, and one folder per
//! provider.
//!
//! Providers: [`twilio`] (Twilio's Messaging webhooks and REST API) and [`telnyx`] (Telnyx
//! Messaging v2: Ed25519-signed JSON webhooks, `POST /v2/messages`). Each has the same shape:
//! `config`, `signature`, `webhook` parsing, `rest` client.

pub mod keywords;
pub mod telnyx;
pub mod twilio;

use crate::OutboundRules;

/// Longest SMS body the providers accept (Twilio and Telnyx both split into at most ten
/// segments; 1,600 characters is Twilio's documented limit).
pub const MAX_BODY_CHARS: usize = 1600;

/// The send checks every SMS provider shares: text only, not empty, not too long.
pub fn check_outbound(
    body: &str,
    content: Option<&serde_json::Value>,
) -> Result<OutboundRules, String> {
    if content.is_some() {
        return Err("field `content`: SMS carries text only".into());
    }
    if body.trim().is_empty() {
        return Err("field `body`: must not be empty".into());
    }
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(format!(
            "field `body`: longer than {MAX_BODY_CHARS} characters"
        ));
    }
    Ok(OutboundRules {
        needs_service_window: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_only_not_empty_and_at_most_1600_characters() {
        let at_limit = "é".repeat(MAX_BODY_CHARS);
        let rules = check_outbound(&at_limit, None).unwrap();
        assert!(!rules.needs_service_window);
        let over = "é".repeat(MAX_BODY_CHARS + 1);
        assert_eq!(
            check_outbound(&over, None).unwrap_err(),
            "field `body`: longer than 1600 characters"
        );
        assert!(check_outbound(" \n ", None).unwrap_err().contains("empty"));
        let content = serde_json::json!({"x": 1});
        assert!(check_outbound("hi", Some(&content))
            .unwrap_err()
            .contains("content"));
        assert!(check_outbound("a", None).is_ok());
    }
}
