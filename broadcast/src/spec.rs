//! What an org asks for: the request of `POST /api/v1/broadcasts`, checked field by field
//! into a [`Spec`] (the ladder and its rules, stored with the broadcast) and a recipient
//! list. Every problem is reported with the field it is about; nothing is stored before the
//! whole request is valid.

use crate::quiet::QuietHours;
use serde::{Deserialize, Serialize};
use state_machines::Channel;
use std::collections::{BTreeMap, HashSet};

/// Most steps in a ladder.
pub const MAX_STEPS: usize = 6;
/// Longest escalation offset: a week.
pub const MAX_AFTER_SECS: u64 = 7 * 24 * 3600;
/// Longest text of one step.
pub const MAX_TEXT: usize = 4096;
/// Longest text over a WhatsApp reply button (Meta's limit for an interactive body).
pub const MAX_BUTTON_BODY_CHARS: usize = 1024;
/// Longest reply-button title (Meta's limit).
pub const MAX_BUTTON_TITLE_CHARS: usize = 20;
/// The id of the reply button an `ack_button` step sends; what it answers with when tapped.
pub const ACK_BUTTON_ID: &str = "ack";
/// Default wait for an acknowledgement after the last step.
pub const DEFAULT_ACK_WINDOW_SECS: u64 = 300;

/// The request body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    /// A name people recognise ("water main burst on Elm St").
    pub name: String,
    /// Explicit recipients.
    #[serde(default)]
    pub recipients: Vec<Recipient>,
    /// Recipients as CSV text with a header row (`phone,email,name,tz`, other columns become
    /// variables).
    #[serde(default)]
    pub recipients_csv: Option<String>,
    /// Contacts carrying any of these tags. The runtime, which holds the contacts, adds
    /// them to `recipients` before [`BroadcastRequest::check`].
    #[serde(default)]
    pub tags: Vec<String>,
    /// The channel ladder.
    pub steps: Vec<Step>,
    /// Whether recipients must acknowledge (else only the first reachable step is sent).
    #[serde(default = "yes")]
    pub require_ack: bool,
    /// Sent during quiet hours too.
    #[serde(default)]
    pub critical: bool,
    /// How long to wait for an acknowledgement after the last step.
    #[serde(default)]
    pub ack_window_secs: Option<u64>,
    /// Local hours in which non-critical steps are held, e.g. `{"start":"21:00","end":"08:00"}`.
    #[serde(default)]
    pub quiet_hours: Option<QuietHoursRequest>,
    /// The time zone of recipients that name none (IANA, default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
}

fn yes() -> bool {
    true
}

/// Quiet hours as asked for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursRequest {
    /// `HH:MM`, local.
    pub start: String,
    /// `HH:MM`, local.
    pub end: String,
}

/// One person to reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    /// E.164 phone number (SMS, WhatsApp, voice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Display name (`{{name}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// IANA time zone for quiet hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// Further template variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
}

/// One rung of the ladder as asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// `sms`, `whatsapp`, `email` or `voice`.
    pub channel: String,
    /// Offset of this step on the ladder's timeline, seconds after the first step.
    #[serde(default)]
    pub after_secs: u64,
    /// The text (SMS, WhatsApp, email body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Email subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// What a voice call says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub say: Option<String>,
    /// A WhatsApp template (`{"name":…,"language":…}`), for recipients outside the 24-hour
    /// window. Its strings are rendered per recipient like a body (`{{name}}` in a
    /// parameter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<serde_json::Value>,
    /// WhatsApp, with a body and `require_ack`: the title of a reply button sent under the
    /// text (1 to 20 characters, Meta's limit). One tap confirms exactly this broadcast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_button: Option<String>,
}

/// A checked ladder step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSpec {
    /// The channel.
    pub channel: Channel,
    /// Timeline offset, seconds.
    pub after_secs: u64,
    /// The step as asked (texts are templates rendered per recipient).
    pub content: Step,
}

impl StepSpec {
    /// The structured `content` of this rung's message, the channel plugin's shape: an
    /// email's subject, a WhatsApp template with its strings rendered, or a WhatsApp text
    /// with its acknowledgement button. `body` is the rung's text, already rendered.
    pub fn message_content(
        &self,
        body: &str,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Option<serde_json::Value> {
        use serde_json::json;
        let c = &self.content;
        match self.channel {
            Channel::Email => {
                let subject = render(c.subject.as_deref().unwrap_or_default(), vars);
                Some(json!({"type": "email", "subject": subject}))
            }
            Channel::Whatsapp => match (&c.template, &c.ack_button) {
                (Some(t), _) => Some(json!({"type": "template", "template": render_json(t, vars)})),
                (None, Some(title)) => Some(json!({"type": "interactive", "interactive": {
                    "type": "button",
                    "body": {"text": body},
                    "action": {"buttons": [{"type": "reply",
                        "reply": {"id": ACK_BUTTON_ID, "title": title}}]},
                }})),
                (None, None) => None,
            },
            _ => None,
        }
    }
}

/// A checked broadcast: everything the engine needs besides the recipients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// The ladder.
    pub steps: Vec<StepSpec>,
    /// Whether acknowledgements are asked for.
    pub require_ack: bool,
    /// Ignores quiet hours.
    pub critical: bool,
    /// Wait after the last step, seconds.
    pub ack_window_secs: u64,
    /// Quiet hours, if any.
    pub quiet: Option<QuietHours>,
    /// Zone of recipients without one.
    pub timezone: String,
}

/// A request, checked.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The name.
    pub name: String,
    /// The rules.
    pub spec: Spec,
    /// The recipients, duplicates (same phone and email) removed.
    pub recipients: Vec<Recipient>,
    /// How many duplicates were dropped.
    pub duplicates: usize,
}

/// A request problem, naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    /// What is wrong, and where.
    pub message: String,
    /// The request is valid but has more recipients than the org may reach at once.
    pub over_cap: bool,
}

impl SpecError {
    /// A malformed or invalid field.
    pub fn invalid(message: impl Into<String>) -> SpecError {
        SpecError {
            message: message.into(),
            over_cap: false,
        }
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError::invalid(msg))
}

impl BroadcastRequest {
    /// Checks everything; `max_recipients` is the org's cap.
    pub fn check(self, max_recipients: usize) -> Result<Checked, SpecError> {
        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 {
            return err("field `name`: 1 to 200 characters");
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return err(format!("field `steps`: 1 to {MAX_STEPS} steps"));
        }
        let mut steps = Vec::with_capacity(self.steps.len());
        let mut prev = 0;
        for (i, s) in self.steps.into_iter().enumerate() {
            if s.ack_button.is_some() && !self.require_ack {
                return err(format!(
                    "field `steps[{i}].ack_button`: only with `require_ack`"
                ));
            }
            let step = check_step(i, s)?;
            if step.after_secs < prev {
                return err(format!(
                    "field `steps[{i}].after_secs`: steps must be in order of their offsets"
                ));
            }
            prev = step.after_secs;
            steps.push(step);
        }
        let timezone = self.timezone.unwrap_or_else(|| "UTC".into());
        crate::quiet::zone(&timezone)
            .map_err(|e| SpecError::invalid(format!("field `timezone`: {e}")))?;
        let quiet = match self.quiet_hours {
            None => None,
            Some(q) => Some(
                QuietHours::parse(&q.start, &q.end)
                    .map_err(|e| SpecError::invalid(format!("field `quiet_hours`: {e}")))?,
            ),
        };
        let ack_window_secs = self.ack_window_secs.unwrap_or(DEFAULT_ACK_WINDOW_SECS);
        if ack_window_secs == 0 || ack_window_secs > MAX_AFTER_SECS {
            return err(format!(
                "field `ack_window_secs`: 1 to {MAX_AFTER_SECS} seconds"
            ));
        }
        let mut all = self.recipients;
        if let Some(csv) = self.recipients_csv {
            all.extend(
                crate::csv::recipients(&csv)
                    .map_err(|e| SpecError::invalid(format!("field `recipients_csv`: {e}")))?,
            );
        }
        if all.is_empty() {
            return err("field `recipients`: at least one recipient");
        }
        if all.len() > max_recipients {
            return Err(SpecError {
                over_cap: true,
                message: format!(
                "field `recipients`: {} recipients, this organization may reach at most {max_recipients} in one broadcast",
                    all.len()
                ),
            });
        }
        let channels: Vec<Channel> = steps.iter().map(|s| s.channel).collect();
        let total = all.len();
        let mut seen = HashSet::new();
        let mut recipients = Vec::with_capacity(all.len());
        for (i, r) in all.into_iter().enumerate() {
            let r = check_recipient(i, r, &channels)?;
            if seen.insert((r.phone.clone(), r.email.clone())) {
                recipients.push(r);
            }
        }
        Ok(Checked {
            duplicates: total - recipients.len(),
            name,
            spec: Spec {
                steps,
                require_ack: self.require_ack,
                critical: self.critical,
                ack_window_secs,
                quiet,
                timezone,
            },
            recipients,
        })
    }
}

fn check_step(i: usize, s: Step) -> Result<StepSpec, SpecError> {
    let f = |field: &str| format!("field `steps[{i}].{field}`");
    let Some(channel) = Channel::parse(&s.channel) else {
        return err(format!(
            "{}: `{}` is not one of sms, whatsapp, email, voice",
            f("channel"),
            s.channel
        ));
    };
    if s.after_secs > MAX_AFTER_SECS {
        return err(format!("{}: at most {MAX_AFTER_SECS}", f("after_secs")));
    }
    for (field, v) in [("body", &s.body), ("subject", &s.subject), ("say", &s.say)] {
        if v.as_ref().is_some_and(|t| t.len() > MAX_TEXT) {
            return err(format!("{}: longer than {MAX_TEXT} bytes", f(field)));
        }
    }
    let has = |v: &Option<String>| v.as_ref().is_some_and(|t| !t.trim().is_empty());
    match channel {
        Channel::Sms if !has(&s.body) => return err(format!("{}: required for sms", f("body"))),
        Channel::Whatsapp if !has(&s.body) && s.template.is_none() => {
            return err(format!(
                "{}: whatsapp needs a body or a template",
                f("body")
            ))
        }
        Channel::Email if !has(&s.subject) || !has(&s.body) => {
            return err(format!(
                "{}: email needs a subject and a body",
                f("subject")
            ))
        }
        Channel::Voice if !has(&s.say) => return err(format!("{}: required for voice", f("say"))),
        _ => {}
    }
    if s.template.is_some() && channel != Channel::Whatsapp {
        return err(format!("{}: templates are for whatsapp", f("template")));
    }
    if let Some(title) = &s.ack_button {
        check_ack_button(&f("ack_button"), channel, &s, title)?;
    }
    if let Some(t) = &s.template {
        let ok = t.get("name").and_then(|v| v.as_str()).is_some()
            && t.get("language").and_then(|v| v.as_str()).is_some();
        if !ok {
            return err(format!("{}: needs `name` and `language`", f("template")));
        }
    }
    Ok(StepSpec {
        channel,
        after_secs: s.after_secs,
        content: s,
    })
}

/// A reply button goes under a WhatsApp text: a template's buttons are fixed when Meta
/// approves it (give its quick reply the payload `ACK` instead).
fn check_ack_button(field: &str, channel: Channel, s: &Step, title: &str) -> Result<(), SpecError> {
    if channel != Channel::Whatsapp {
        return err(format!("{field}: buttons are for whatsapp"));
    }
    if s.template.is_some() {
        return err(format!(
            "{field}: a template's buttons are its own; give its quick reply the payload ACK"
        ));
    }
    let chars = title.trim().chars().count();
    if chars == 0 || chars > MAX_BUTTON_TITLE_CHARS || title.chars().any(char::is_control) {
        return err(format!(
            "{field}: 1 to {MAX_BUTTON_TITLE_CHARS} characters, no control characters"
        ));
    }
    let body = s.body.as_deref().unwrap_or_default().chars().count();
    if body > MAX_BUTTON_BODY_CHARS {
        return err(format!(
            "field `body`: at most {MAX_BUTTON_BODY_CHARS} characters above a button"
        ));
    }
    Ok(())
}

fn check_recipient(i: usize, mut r: Recipient, ladder: &[Channel]) -> Result<Recipient, SpecError> {
    let f = |field: &str| format!("recipient {i}: field `{field}`");
    r.phone = r
        .phone
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty());
    r.email = r
        .email
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty());
    if let Some(p) = &r.phone {
        if !is_e164(p) {
            return err(format!(
                "{}: `{p}` is not an E.164 number (+ and 7 to 15 digits)",
                f("phone")
            ));
        }
    }
    if let Some(e) = &r.email {
        if !is_email(e) {
            return err(format!("{}: `{e}` is not an email address", f("email")));
        }
    }
    if let Some(tz) = &r.tz {
        crate::quiet::zone(tz).map_err(|e| SpecError::invalid(format!("{}: {e}", f("tz"))))?;
    }
    if r.name.as_ref().is_some_and(|n| n.len() > 200) {
        return err(format!("{}: longer than 200 bytes", f("name")));
    }
    for (k, v) in &r.vars {
        let key_ok = !k.is_empty()
            && k.len() <= 64
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key_ok || v.len() > 1024 {
            return err(format!(
                "{}: `{k}`: names are letters, digits and _, values up to 1024 bytes",
                f("vars")
            ));
        }
    }
    let reachable = ladder.iter().any(|c| match c {
        Channel::Email => r.email.is_some(),
        _ => r.phone.is_some(),
    });
    if !reachable {
        return err(format!(
            "recipient {i}: no address for any step of the ladder (needs `phone` or `email`)"
        ));
    }
    Ok(r)
}

/// `+` and 7 to 15 digits, the first not 0.
pub fn is_e164(p: &str) -> bool {
    let Some(d) = p.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
}

/// One `@` with something on each side, a dot in the domain, no spaces, at most 254 bytes.
pub fn is_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    e.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Fills `{{var}}` placeholders; unknown ones become empty.
pub fn render(template: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                out.push_str(&vars(after[..close].trim()).unwrap_or_default());
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// [`render`] applied to every string inside a JSON value (a template's parameters).
pub fn render_json(
    value: &serde_json::Value,
    vars: &dyn Fn(&str) -> Option<String>,
) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(render(s, vars)),
        Value::Array(items) => Value::Array(items.iter().map(|v| render_json(v, vars)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render_json(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(v: serde_json::Value) -> StepSpec {
        let s: Step = serde_json::from_value(v).unwrap();
        check_step(0, s).unwrap()
    }

    fn vars(key: &str) -> Option<String> {
        (key == "name").then(|| "Ann".to_string())
    }

    #[test]
    fn templates_are_rendered_per_recipient() {
        let s = step(json!({"channel": "whatsapp", "template": {"name": "outage",
            "language": "en_US", "parameters": ["{{name}}", "Elm St", 3]}}));
        let c = s.message_content("", &vars).unwrap();
        assert_eq!(c["template"]["parameters"], json!(["Ann", "Elm St", 3]));
        assert_eq!(c["template"]["name"], "outage");
    }

    #[test]
    fn an_ack_button_goes_under_the_text() {
        let s = step(json!({"channel": "whatsapp", "body": "Hi {{name}}", "ack_button": "Got it"}));
        let c = s.message_content("Hi Ann", &vars).unwrap();
        assert_eq!(c["interactive"]["body"]["text"], "Hi Ann");
        let reply = &c["interactive"]["action"]["buttons"][0]["reply"];
        assert_eq!(
            (reply["id"].as_str(), reply["title"].as_str()),
            (Some("ack"), Some("Got it"))
        );
        let plain = step(json!({"channel": "whatsapp", "body": "Hi"}));
        assert!(plain.message_content("Hi", &vars).is_none());
    }

    #[test]
    fn bad_ack_buttons_name_the_problem() {
        let bad = |v: serde_json::Value| {
            check_step(0, serde_json::from_value(v).unwrap())
                .unwrap_err()
                .message
        };
        assert!(
            bad(json!({"channel": "sms", "body": "x", "ack_button": "OK"})).contains("whatsapp")
        );
        assert!(
            bad(json!({"channel": "whatsapp", "body": "x", "ack_button": ""})).contains("1 to 20")
        );
        assert!(
            bad(json!({"channel": "whatsapp", "body": "x", "ack_button": "x".repeat(21)}))
                .contains("1 to 20")
        );
        assert!(
            bad(json!({"channel": "whatsapp", "body": "x".repeat(1025), "ack_button": "OK"}))
                .contains("1024")
        );
        let tpl = json!({"channel": "whatsapp", "ack_button": "OK",
            "template": {"name": "t", "language": "en"}});
        assert!(bad(tpl).contains("payload ACK"));
        let req: BroadcastRequest =
            serde_json::from_value(json!({"name": "n", "require_ack": false,
            "recipients": [{"phone": "+15555550100"}],
            "steps": [{"channel": "whatsapp", "body": "x", "ack_button": "OK"}]}))
            .unwrap();
        assert!(req.check(10).unwrap_err().message.contains("require_ack"));
    }
}
