//! One inbound WhatsApp message, of any type Meta sends, to an [`InboundMessage`]: the text
//! it shows in the inbox (`body`), its structured part (`content`), its attachments (fetched
//! later through the media endpoint), and the message it answers (`context`) or reacts to.

use super::SERVICE_WINDOW;
use crate::{address, InboundMedia, InboundMessage};
use serde_json::{json, Value};
use state_machines::Channel;
use std::collections::HashMap;

/// The attachment types, each an object with `id`, `mime_type`, `sha256` and perhaps
/// `caption` and `filename`.
const MEDIA_TYPES: &[&str] = &["image", "audio", "video", "document", "sticker"];

/// The contacts' profile names in a change, by WhatsApp id.
pub fn profile_names(value: &Value) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for c in value
        .get("contacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = c.get("wa_id").and_then(Value::as_str);
        let name = c.pointer("/profile/name").and_then(Value::as_str);
        if let (Some(id), Some(name)) = (id, name) {
            names.insert(id.to_string(), name.to_string());
        }
    }
    names
}

fn s<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// Parses one element of `messages[]`; the reason when it cannot be used.
pub fn message(
    msg: &Value,
    to: &str,
    names: &HashMap<String, String>,
) -> Result<InboundMessage, String> {
    let id = s(msg, "/id")
        .filter(|id| !id.is_empty() && id.len() <= 256)
        .ok_or("message without an id")?;
    let wa_id = s(msg, "/from").ok_or_else(|| format!("message {id} without `from`"))?;
    let from = address::normalize_e164(wa_id).map_err(|e| format!("message {id}: `from` {e}"))?;
    let kind = s(msg, "/type").ok_or_else(|| format!("message {id} without `type`"))?;
    let (body, mut content, media) =
        by_type(msg, kind).map_err(|e| format!("message {id}: {e}"))?;
    if let Some(name) = names.get(wa_id) {
        content
            .get_or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|o| o.insert("profile_name".into(), json!(name)));
    }
    let mut out = InboundMessage::text(Channel::Whatsapp, id, from, to, body);
    out.kind = kind.to_string();
    out.content = content;
    out.media = media;
    out.reply_to = match kind {
        "reaction" => s(msg, "/reaction/message_id"),
        _ => s(msg, "/context/id"),
    }
    .map(str::to_string);
    out.opens_window = Some(SERVICE_WINDOW);
    Ok(out)
}

type Parsed = (String, Option<Value>, Vec<InboundMedia>);

fn by_type(msg: &Value, kind: &str) -> Result<Parsed, String> {
    let part = msg
        .get(kind)
        .ok_or_else(|| format!("type `{kind}` without its `{kind}` object"))?;
    Ok(match kind {
        "text" => {
            let body = s(part, "/body").ok_or("text without a body")?;
            (body.to_string(), None, Vec::new())
        }
        k if MEDIA_TYPES.contains(&k) => {
            let media_id = s(part, "/id").ok_or_else(|| format!("{k} without a media id"))?;
            let caption = s(part, "/caption").map(str::to_string);
            let filename = s(part, "/filename").map(str::to_string);
            let media = InboundMedia {
                reference: media_id.to_string(),
                content_type: s(part, "/mime_type")
                    .unwrap_or("application/octet-stream")
                    .into(),
                caption: caption.clone(),
                filename: filename.clone(),
                provider_sha256: s(part, "/sha256").map(str::to_string),
                fetch: true,
            };
            let shown = caption.or(filename).unwrap_or_else(|| format!("[{k}]"));
            (shown, None, vec![media])
        }
        "location" => {
            let lat = part.get("latitude").and_then(Value::as_f64);
            let lon = part.get("longitude").and_then(Value::as_f64);
            let (Some(lat), Some(lon)) = (lat, lon) else {
                return Err("location without latitude and longitude".into());
            };
            let label = [s(part, "/name"), s(part, "/address")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
            let shown = if label.is_empty() {
                format!("[location {lat}, {lon}]")
            } else {
                format!("[location {label} ({lat}, {lon})]")
            };
            (shown, Some(json!({"location": part})), Vec::new())
        }
        "contacts" => {
            let cards = part.as_array().ok_or("contacts must be an array")?;
            let names: Vec<&str> = cards
                .iter()
                .filter_map(|c| s(c, "/name/formatted_name"))
                .collect();
            (
                format!("[contacts: {}]", names.join(", ")),
                Some(json!({"contacts": part})),
                Vec::new(),
            )
        }
        "interactive" => {
            let reply_type = s(part, "/type").ok_or("interactive without a type")?;
            let reply = part
                .get(reply_type)
                .filter(|_| matches!(reply_type, "button_reply" | "list_reply"))
                .ok_or_else(|| format!("interactive type `{reply_type}` is not handled"))?;
            let id = s(reply, "/id").ok_or("interactive reply without an id")?;
            let title = s(reply, "/title").unwrap_or(id);
            (
                title.to_string(),
                Some(
                    json!({"interactive": {"type": reply_type, "id": id, "title": title,
                    "description": s(reply, "/description")}}),
                ),
                Vec::new(),
            )
        }
        "button" => {
            let text = s(part, "/text").ok_or("button without text")?;
            (
                text.to_string(),
                Some(json!({"button": {"text": text, "payload": s(part, "/payload")}})),
                Vec::new(),
            )
        }
        "reaction" => {
            let target = s(part, "/message_id").ok_or("reaction without a message_id")?;
            // An empty emoji removes an earlier reaction.
            let emoji = s(part, "/emoji").unwrap_or("");
            (
                emoji.to_string(),
                Some(json!({"reaction": {"message_id": target, "emoji": emoji}})),
                Vec::new(),
            )
        }
        other => return Err(format!("type `{other}` is not handled")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_required_and_bounded() {
        let msg = |id: &str| json!({"id": id, "from": "15551234567", "type": "text", "text": {"body": "hi"}});
        let names = HashMap::new();
        let ok = message(&msg(&"w".repeat(256)), "15550001111", &names).unwrap();
        assert_eq!(ok.provider_message_id.len(), 256);
        for bad in [String::new(), "w".repeat(257)] {
            assert_eq!(
                message(&msg(&bad), "15550001111", &names).unwrap_err(),
                "message without an id"
            );
        }
    }
}
