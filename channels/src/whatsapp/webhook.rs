//! Meta's webhook for WhatsApp, as plain functions over bytes.
//!
//! - `GET` is the verification handshake: `hub.mode=subscribe`, `hub.verify_token`,
//!   `hub.challenge` → 200 with the challenge when the token matches, 403 otherwise.
//! - `POST` is a delivery: signature first (over the raw bytes), then
//!   `entry[].changes[].value` with `messages[]` and `statuses[]`. One delivery may carry
//!   many items, for several numbers of the business account; items that are not ours or
//!   cannot be used are skipped and reported, the rest is stored, and the answer is 200 —
//!   Meta retries non-2xx answers for days and may disable the webhook.

use super::{inbound, signature, WhatsAppConfig};
use crate::{Handled, InboundEvent, StatusUpdate, WebhookError, WebhookReply, WebhookRequest};
use serde_json::Value;
use state_machines::DeliveryState;

/// The hooks WhatsApp claims: `/webhooks/whatsapp/{org}` itself.
pub const HOOKS: &[&str] = &[""];

/// Verifies and parses one request.
pub fn handle(
    config: &WhatsAppConfig,
    hook: &str,
    req: &WebhookRequest<'_>,
) -> Result<Handled, WebhookError> {
    if !HOOKS.contains(&hook) {
        return Err(WebhookError::UnknownHook(hook.to_string()));
    }
    match req.method {
        "GET" => verify_subscription(config, req),
        "POST" => delivery(config, req),
        other => Err(WebhookError::Method(other.to_string())),
    }
}

fn verify_subscription(
    config: &WhatsAppConfig,
    req: &WebhookRequest<'_>,
) -> Result<Handled, WebhookError> {
    let q = req.query_pairs();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("hub.mode") != Some("subscribe") {
        return Err(WebhookError::Forbidden(
            "hub.mode must be `subscribe`".into(),
        ));
    }
    let token_ok = get("hub.verify_token").is_some_and(|t| {
        // Constant time: the token is a shared secret.
        let (a, b) = (t.as_bytes(), config.verify_token.expose().as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    });
    if !token_ok {
        return Err(WebhookError::Forbidden(
            "hub.verify_token does not match".into(),
        ));
    }
    let challenge = get("hub.challenge")
        .filter(|c| !c.is_empty() && c.len() <= 256)
        .ok_or_else(|| WebhookError::malformed("hub.challenge", "is required"))?;
    Ok(Handled {
        events: Vec::new(),
        skipped: Vec::new(),
        reply: WebhookReply {
            content_type: "text/plain",
            body: challenge.to_string(),
        },
    })
}

fn delivery(config: &WhatsAppConfig, req: &WebhookRequest<'_>) -> Result<Handled, WebhookError> {
    let sig = req
        .header("x-hub-signature-256")
        .ok_or(WebhookError::BadSignature)?;
    if !signature::verify(config.app_secret.expose(), req.body, sig) {
        return Err(WebhookError::BadSignature);
    }
    let root: Value = serde_json::from_slice(req.body)
        .map_err(|e| WebhookError::malformed("body", format!("not JSON: {e}")))?;
    if root.get("object").and_then(Value::as_str) != Some("whatsapp_business_account") {
        return Err(WebhookError::malformed(
            "object",
            "must be `whatsapp_business_account`",
        ));
    }
    let entries = root
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| WebhookError::malformed("entry", "must be an array"))?;
    let mut out = Handled {
        events: Vec::new(),
        skipped: Vec::new(),
        reply: WebhookReply::empty(),
    };
    for entry in entries {
        let changes = entry.get("changes").and_then(Value::as_array);
        for change in changes.into_iter().flatten() {
            read_change(config, change, &mut out);
        }
    }
    Ok(out)
}

fn read_change(config: &WhatsAppConfig, change: &Value, out: &mut Handled) {
    let field = change.get("field").and_then(Value::as_str).unwrap_or("");
    if field != "messages" {
        out.skipped
            .push(format!("change field `{field}` is not handled"));
        return;
    }
    let Some(value) = change.get("value") else {
        out.skipped.push("change without a value".into());
        return;
    };
    let metadata = value.get("metadata");
    let number_id = metadata
        .and_then(|m| m.get("phone_number_id"))
        .and_then(Value::as_str);
    if number_id != Some(config.phone_number_id.as_str()) {
        out.skipped.push(format!(
            "change for phone number id {number_id:?}, not this account's"
        ));
        return;
    }
    let display = metadata
        .and_then(|m| m.get("display_phone_number"))
        .and_then(Value::as_str)
        .unwrap_or(&config.phone_number_id);
    let to = crate::address::normalize_e164(display).unwrap_or_else(|_| display.to_string());
    let names = inbound::profile_names(value);
    for msg in value
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match inbound::message(msg, &to, &names) {
            Ok(m) => out.events.push(InboundEvent::Message(m)),
            Err(reason) => out.skipped.push(reason),
        }
    }
    for st in value
        .get("statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match status(st) {
            Ok(Some(s)) => out.events.push(InboundEvent::Status(s)),
            Ok(None) => {}
            Err(reason) => out.skipped.push(reason),
        }
    }
}

/// WhatsApp's message statuses mapped onto the delivery machine; `None` for the ones that
/// say nothing about delivery (`deleted`, `warning`).
pub fn map_status(status: &str) -> Option<DeliveryState> {
    Some(match status {
        "sent" => DeliveryState::Sent,
        "delivered" => DeliveryState::Delivered,
        "read" => DeliveryState::Read,
        "failed" => DeliveryState::Failed,
        _ => return None,
    })
}

fn status(st: &Value) -> Result<Option<StatusUpdate>, String> {
    let id = st
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or("status without an id")?;
    let word = st
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("status {id} without a status"))?;
    let Some(state) = map_status(word) else {
        return match word {
            "deleted" | "warning" => Ok(None),
            other => Err(format!("status {id}: unknown status `{other}`")),
        };
    };
    let mut update = StatusUpdate::new(id, state, word);
    if let Some(err) = st
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        update.error_code = err.get("code").map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        update.error_message = err
            .get("title")
            .or_else(|| err.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    let mut details = serde_json::Map::new();
    for key in ["pricing", "conversation", "recipient_id", "timestamp"] {
        if let Some(v) = st.get(key) {
            details.insert(key.to_string(), v.clone());
        }
    }
    if !details.is_empty() {
        update.details = Some(Value::Object(details));
    }
    Ok(Some(update))
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
