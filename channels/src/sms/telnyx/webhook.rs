//! Telnyx's messaging webhooks as plain functions over bytes. Every event arrives at one
//! URL as `{"data": {"event_type", "id", "occurred_at", "payload": {…}}, "meta": {…}}`:
//!
//! - `message.received`: an inbound SMS/MMS — `payload.id`, `from.phone_number`,
//!   `to[].phone_number`, `text`, `media[]` (`url`, `content_type`).
//! - `message.sent` and `message.finalized`: a report on one of ours — `payload.id` (the id
//!   `POST /v2/messages` returned), per-recipient `to[].status` (`queued`, `sending`, `sent`,
//!   `delivered`, `sending_failed`, `delivery_failed`, `delivery_unconfirmed`), `errors[]`.
//!
//! Other event types are acknowledged and reported as skipped.

use super::signature;
use crate::sms::keywords;
use crate::{
    address, Handled, InboundEvent, InboundMedia, InboundMessage, StatusUpdate, WebhookError,
    WebhookReply, WebhookRequest,
};
use serde_json::Value;
use state_machines::{Channel, DeliveryState};

/// The hooks this plugin claims under `/webhooks/telnyx/{org}/`.
pub const HOOKS: &[&str] = &["sms"];

/// Verifies and parses one webhook.
pub fn handle(
    public_key: &[u8],
    hook: &str,
    req: &WebhookRequest<'_>,
) -> Result<Handled, WebhookError> {
    if !HOOKS.contains(&hook) {
        return Err(WebhookError::UnknownHook(hook.to_string()));
    }
    if req.method != "POST" {
        return Err(WebhookError::Method(req.method.to_string()));
    }
    let sig = req
        .header("telnyx-signature-ed25519")
        .ok_or(WebhookError::BadSignature)?;
    let ts = req
        .header("telnyx-timestamp")
        .ok_or(WebhookError::BadSignature)?;
    if !signature::verify(public_key, ts, req.body, sig, req.received_at) {
        return Err(WebhookError::BadSignature);
    }
    let root: Value = serde_json::from_slice(req.body)
        .map_err(|e| WebhookError::malformed("body", format!("not JSON: {e}")))?;
    let data = root
        .get("data")
        .ok_or_else(|| WebhookError::malformed("data", "is required"))?;
    let event_type = data
        .get("event_type")
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::malformed("data.event_type", "is required"))?;
    let payload = data
        .get("payload")
        .ok_or_else(|| WebhookError::malformed("data.payload", "is required"))?;
    let mut out = Handled {
        events: Vec::new(),
        skipped: Vec::new(),
        reply: WebhookReply::empty(),
    };
    match event_type {
        "message.received" => out.events.push(InboundEvent::Message(received(payload)?)),
        "message.sent" | "message.finalized" => {
            out.events.push(InboundEvent::Status(report(payload)?))
        }
        other => out
            .skipped
            .push(format!("event type `{other}` is not handled")),
    }
    Ok(out)
}

fn text<'a>(v: &'a Value, pointer: &'static str) -> Result<&'a str, WebhookError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| WebhookError::malformed(field(pointer), "is required"))
}

/// The field name errors report, from a JSON pointer.
fn field(pointer: &'static str) -> &'static str {
    match pointer {
        "/id" => "data.payload.id",
        "/from/phone_number" => "data.payload.from.phone_number",
        "/to/0/phone_number" => "data.payload.to[0].phone_number",
        "/to/0/status" => "data.payload.to[0].status",
        _ => "data.payload",
    }
}

fn phone(v: &Value, pointer: &'static str) -> Result<String, WebhookError> {
    let raw = text(v, pointer)?;
    if !address::is_storable(raw) {
        return Err(WebhookError::malformed(
            field(pointer),
            "is not a valid address",
        ));
    }
    Ok(raw.to_string())
}

fn received(p: &Value) -> Result<InboundMessage, WebhookError> {
    let id = text(p, "/id")?;
    let body = p.get("text").and_then(Value::as_str).unwrap_or("");
    let mut msg = InboundMessage::text(
        Channel::Sms,
        id,
        phone(p, "/from/phone_number")?,
        phone(p, "/to/0/phone_number")?,
        body,
    );
    msg.keyword = keywords::classify(body);
    for m in p
        .get("media")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(10)
    {
        if let Some(url) = m.get("url").and_then(Value::as_str) {
            let kind = m.get("content_type").and_then(Value::as_str).unwrap_or("");
            msg.media.push(InboundMedia::link(url, kind));
        }
    }
    if body.is_empty() && !msg.media.is_empty() {
        msg.kind = "media".into();
    }
    Ok(msg)
}

/// Telnyx's per-recipient statuses mapped onto the delivery machine.
pub fn map_status(status: &str) -> Option<DeliveryState> {
    Some(match status {
        "queued" => DeliveryState::Queued,
        "sending" => DeliveryState::Sending,
        // Sent to the carrier, which did not confirm delivery: as far as we can know, sent.
        "sent" | "delivery_unconfirmed" => DeliveryState::Sent,
        "delivered" => DeliveryState::Delivered,
        "sending_failed" | "delivery_failed" => DeliveryState::Failed,
        _ => return None,
    })
}

fn report(p: &Value) -> Result<StatusUpdate, WebhookError> {
    let id = text(p, "/id")?;
    let status = text(p, "/to/0/status")?;
    let Some(state) = map_status(status) else {
        return Err(WebhookError::malformed(
            "data.payload.to[0].status",
            format!("unknown status `{status}`"),
        ));
    };
    let mut update = StatusUpdate::new(id, state, status);
    if let Some(err) = p
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
            .or_else(|| err.get("detail"))
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    let mut details = serde_json::Map::new();
    for key in ["cost", "parts", "completed_at", "sent_at"] {
        if let Some(v) = p.get(key).filter(|v| !v.is_null()) {
            details.insert(key.to_string(), v.clone());
        }
    }
    if !details.is_empty() {
        update.details = Some(Value::Object(details));
    }
    Ok(update)
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
