//! What the API may send on WhatsApp, and the JSON Meta's `/messages` endpoint takes for it.
//!
//! A send is `body` alone (a text message) or a `content` object in Meta's own shape — its
//! `type` and the object of that type — so anything Meta documents can be sent without a
//! translation table here:
//!
//! ```json
//! {"type": "image", "image": {"link": "https://…/a.jpg", "caption": "Your receipt"}}
//! {"type": "interactive", "interactive": {"type": "button", "body": {"text": "Confirm?"},
//!   "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Yes"}}]}}}
//! {"type": "template", "template": {"name": "appointment", "language": "en_US",
//!   "parameters": ["Tuesday", "3:30 pm"]}}
//! ```
//!
//! Templates may name their body parameters as a plain list (made into Meta's `components`)
//! and the language as a plain code. Only templates may be sent outside the customer-service
//! window.

use crate::OutboundRules;
use serde_json::{json, Value};

/// Longest text body Meta accepts.
pub const MAX_TEXT_CHARS: usize = 4096;

/// The message types the API accepts in `content`.
const TYPES: &[&str] = &[
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "interactive",
    "template",
    "location",
    "contacts",
];

/// Checks a send request; says which rules apply.
pub fn check(body: &str, content: Option<&Value>) -> Result<OutboundRules, String> {
    let Some(content) = content else {
        if body.trim().is_empty() {
            return Err("field `body`: must not be empty".into());
        }
        if body.chars().count() > MAX_TEXT_CHARS {
            return Err(format!(
                "field `body`: longer than {MAX_TEXT_CHARS} characters"
            ));
        }
        return Ok(OutboundRules {
            needs_service_window: true,
        });
    };
    let kind = content
        .get("type")
        .and_then(Value::as_str)
        .ok_or("field `content.type`: required")?;
    if !TYPES.contains(&kind) {
        return Err(format!(
            "field `content.type`: `{kind}` is not one of {}",
            TYPES.join(", ")
        ));
    }
    let part = content
        .get(kind)
        .filter(|p| p.is_object() || p.is_array())
        .ok_or_else(|| format!("field `content.{kind}`: required for type `{kind}`"))?;
    match kind {
        "text" if part.get("body").and_then(Value::as_str).is_none() => {
            return Err("field `content.text.body`: required".into())
        }
        "image" | "audio" | "video" | "document" | "sticker"
            if part.get("link").is_none() && part.get("id").is_none() =>
        {
            return Err(format!("field `content.{kind}`: needs `link` or `id`"))
        }
        "interactive" if part.get("action").is_none() || part.get("type").is_none() => {
            return Err("field `content.interactive`: needs `type` and `action`".into())
        }
        "template" => {
            if part.get("name").and_then(Value::as_str).is_none() {
                return Err("field `content.template.name`: required".into());
            }
            if language(part).is_none() {
                return Err("field `content.template.language`: required (e.g. `en_US`)".into());
            }
        }
        _ => {}
    }
    Ok(OutboundRules {
        needs_service_window: kind != "template",
    })
}

fn language(template: &Value) -> Option<Value> {
    match template.get("language")? {
        Value::String(code) => Some(json!({"code": code})),
        obj @ Value::Object(_) if obj.get("code").is_some() => Some(obj.clone()),
        _ => None,
    }
}

/// The request body for `POST /{version}/{phone-number-id}/messages`.
pub fn payload(to: &str, body: &str, content: Option<&Value>) -> Value {
    let to = to.trim_start_matches('+');
    let mut out = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
    });
    let (kind, part) = match content {
        None => ("text", json!({"body": body, "preview_url": false})),
        Some(c) => {
            let kind = c.get("type").and_then(Value::as_str).unwrap_or("text");
            let mut part = c.get(kind).cloned().unwrap_or(Value::Null);
            if kind == "template" {
                part = template(&part);
            }
            (kind, part)
        }
    };
    out["type"] = json!(kind);
    out[kind] = part;
    out
}

/// Meta's template object from ours: a plain language code becomes `{"code": …}`, a plain
/// `parameters` list becomes the body component.
fn template(t: &Value) -> Value {
    let mut out = json!({"name": t.get("name").cloned().unwrap_or(Value::Null)});
    if let Some(lang) = language(t) {
        out["language"] = lang;
    }
    if let Some(components) = t.get("components") {
        out["components"] = components.clone();
    } else if let Some(params) = t.get("parameters").and_then(Value::as_array) {
        let parameters: Vec<Value> = params
            .iter()
            .map(|p| match p {
                Value::String(text) => json!({"type": "text", "text": text}),
                other => other.clone(),
            })
            .collect();
        out["components"] = json!([{"type": "body", "parameters": parameters}]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_needs_the_window_templates_do_not() {
        assert!(check("hi", None).unwrap().needs_service_window);
        let t = json!({"type":"template","template":{"name":"hello_world","language":"en_US"}});
        assert!(!check("", Some(&t)).unwrap().needs_service_window);
        let img = json!({"type":"image","image":{"link":"https://x/a.jpg"}});
        assert!(check("", Some(&img)).unwrap().needs_service_window);
    }

    #[test]
    fn bad_requests_name_the_field() {
        assert!(check(" ", None).unwrap_err().contains("body"));
        assert!(check(&"x".repeat(4097), None).unwrap_err().contains("4096"));
        let cases = [
            (json!({}), "content.type"),
            (json!({"type":"fax"}), "content.type"),
            (json!({"type":"image"}), "content.image"),
            (json!({"type":"image","image":{"caption":"x"}}), "link"),
            (
                json!({"type":"template","template":{"language":"en"}}),
                "template.name",
            ),
            (
                json!({"type":"template","template":{"name":"x"}}),
                "language",
            ),
            (
                json!({"type":"interactive","interactive":{"type":"button"}}),
                "action",
            ),
            (json!({"type":"text","text":{}}), "text.body"),
        ];
        for (content, field) in cases {
            let err = check("", Some(&content)).unwrap_err();
            assert!(err.contains(field), "{content}: {err}");
        }
    }

    #[test]
    fn well_formed_content_of_each_kind_is_taken() {
        assert!(check(&"x".repeat(4096), None).is_ok(), "exactly the limit");
        for ok in [
            json!({"type":"text","text":{"body":"hi"}}),
            json!({"type":"interactive","interactive":{"type":"button","action":{"buttons":[]}}}),
            json!({"type":"template","template":{"name":"x","language":{"code":"en_US"}}}),
            json!({"type":"document","document":{"id":"123"}}),
        ] {
            assert!(check("", Some(&ok)).is_ok(), "{ok}");
        }
        let no_code = json!({"type":"template","template":{"name":"x","language":{"policy":"deterministic"}}});
        assert!(check("", Some(&no_code)).unwrap_err().contains("language"));
        let no_type = json!({"type":"interactive","interactive":{"action":{}}});
        assert!(check("", Some(&no_type)).unwrap_err().contains("type"));
    }

    #[test]
    fn payloads_are_metas_shape() {
        assert_eq!(
            payload("+15557654321", "Hello", None),
            json!({"messaging_product":"whatsapp","recipient_type":"individual",
                   "to":"15557654321","type":"text","text":{"body":"Hello","preview_url":false}})
        );
        let t = json!({"type":"template","template":{"name":"appt","language":"en_US",
                       "parameters":["Tuesday", {"type":"currency","currency":{"code":"USD"}}]}});
        let p = payload("+15557654321", "", Some(&t));
        assert_eq!(p["type"], "template");
        assert_eq!(
            p["template"],
            json!({"name":"appt","language":{"code":"en_US"},"components":[{"type":"body",
                "parameters":[{"type":"text","text":"Tuesday"},
                              {"type":"currency","currency":{"code":"USD"}}]}]})
        );
        let img = json!({"type":"image","image":{"link":"https://x/a.jpg","caption":"c"}});
        let p = payload("+15557654321", "", Some(&img));
        assert_eq!(p["image"], json!({"link":"https://x/a.jpg","caption":"c"}));
    }
}
