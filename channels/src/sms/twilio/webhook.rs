//! Twilio's messaging webhooks as plain functions over bytes: the incoming-message webhook
//! (`sms`) and the status callback (`status`), with Twilio's exact field names.

use super::{signature, TwilioSmsConfig};
use crate::sms::keywords;
use crate::{
    address, Handled, InboundEvent, InboundMedia, InboundMessage, StatusUpdate, WebhookError,
    WebhookReply, WebhookRequest,
};
use state_machines::{Channel, DeliveryState};

/// The hooks this plugin claims under `/webhooks/twilio/{org}/`.
pub const HOOKS: &[&str] = &["sms", "status"];

/// Empty TwiML: acknowledged, no automatic reply.
pub const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// The most media attachments Twilio sends on one message.
const MAX_MEDIA: usize = 10;

/// Decodes a form body into its (name, value) pairs, in order.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, WebhookError> {
    serde_urlencoded::from_bytes(body).map_err(|e| WebhookError::Malformed {
        field: "body",
        reason: format!("not application/x-www-form-urlencoded: {e}"),
    })
}

/// Verifies and parses one webhook.
pub fn handle(
    config: &TwilioSmsConfig,
    hook: &str,
    req: &WebhookRequest<'_>,
) -> Result<Handled, WebhookError> {
    if !HOOKS.contains(&hook) {
        return Err(WebhookError::UnknownHook(hook.to_string()));
    }
    if req.method != "POST" {
        return Err(WebhookError::Method(req.method.to_string()));
    }
    let params = parse_form(req.body)?;
    let sig = req
        .header("x-twilio-signature")
        .ok_or(WebhookError::BadSignature)?;
    if !signature::verify(config.auth_token.expose(), req.url, &params, sig) {
        return Err(WebhookError::BadSignature);
    }
    let form = Form(&params);
    let account = form.required("AccountSid")?;
    if account != config.account_sid {
        return Err(malformed(
            "AccountSid",
            "does not match the configured account",
        ));
    }
    let event = match hook {
        "sms" => InboundEvent::Message(parse_message(&form)?),
        _ => InboundEvent::Status(parse_status(&form)?),
    };
    Ok(Handled {
        events: vec![event],
        skipped: Vec::new(),
        reply: WebhookReply {
            content_type: "text/xml",
            body: EMPTY_TWIML.to_string(),
        },
    })
}

fn parse_message(form: &Form<'_>) -> Result<InboundMessage, WebhookError> {
    let sid = form
        .get("MessageSid")
        .or_else(|| form.get("SmsMessageSid"))
        .or_else(|| form.get("SmsSid"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("MessageSid", "is required"))?;
    let num_media: usize = match form.get("NumMedia") {
        None | Some("") => 0,
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| *n <= MAX_MEDIA)
            .ok_or_else(|| malformed("NumMedia", "must be a number from 0 to 10"))?,
    };
    let mut media = Vec::with_capacity(num_media);
    for i in 0..num_media {
        let url = form
            .get(&format!("MediaUrl{i}"))
            .ok_or_else(|| WebhookError::Malformed {
                field: "MediaUrl",
                reason: format!("MediaUrl{i} is missing but NumMedia is {num_media}"),
            })?;
        let kind = form.get(&format!("MediaContentType{i}")).unwrap_or("");
        media.push(InboundMedia::link(url, kind));
    }
    let body = form.get("Body").unwrap_or("").to_string();
    let mut msg = InboundMessage::text(
        Channel::Sms,
        sid,
        phone(form, "From")?,
        phone(form, "To")?,
        body,
    );
    msg.keyword = keywords::classify(&msg.body);
    if !media.is_empty() && msg.body.is_empty() {
        msg.kind = "media".into();
    }
    msg.media = media;
    Ok(msg)
}

fn parse_status(form: &Form<'_>) -> Result<StatusUpdate, WebhookError> {
    let sid = form
        .get("MessageSid")
        .or_else(|| form.get("SmsSid"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("MessageSid", "is required"))?;
    let status = form
        .get("MessageStatus")
        .or_else(|| form.get("SmsStatus"))
        .ok_or_else(|| malformed("MessageStatus", "is required"))?;
    let state = map_status(status).ok_or_else(|| WebhookError::Malformed {
        field: "MessageStatus",
        reason: format!("unknown status `{status}`"),
    })?;
    let mut update = StatusUpdate::new(sid, state, status);
    update.error_code = form
        .get("ErrorCode")
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    update.error_message = form
        .get("ErrorMessage")
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    Ok(update)
}

/// Twilio's outbound message statuses mapped onto the delivery machine.
pub fn map_status(status: &str) -> Option<DeliveryState> {
    Some(match status {
        "accepted" | "scheduled" | "queued" => DeliveryState::Queued,
        "sending" => DeliveryState::Sending,
        "sent" => DeliveryState::Sent,
        "delivered" => DeliveryState::Delivered,
        "read" => DeliveryState::Read,
        "undelivered" | "failed" | "canceled" => DeliveryState::Failed,
        _ => return None,
    })
}

fn phone(form: &Form<'_>, field: &'static str) -> Result<String, WebhookError> {
    let v = form.required(field)?;
    if !address::is_storable(v) {
        return Err(malformed(field, "is not a valid address"));
    }
    Ok(v.to_string())
}

fn malformed(field: &'static str, reason: &str) -> WebhookError {
    WebhookError::Malformed {
        field,
        reason: reason.to_string(),
    }
}

struct Form<'a>(&'a [(String, String)]);

impl Form<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &'static str) -> Result<&str, WebhookError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| malformed(name, "is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    const URL: &str = "http://127.0.0.1:8080/webhooks/twilio/acme/sms";

    fn config() -> TwilioSmsConfig {
        TwilioSmsConfig {
            account_sid: format!("AC{}", "a".repeat(32)),
            auth_token: Secret::new("token"),
            from: "+15550001111".into(),
            api_base: "http://127.0.0.1:9".into(),
            messages_per_second: 1.0,
        }
    }

    fn signed(pairs: &[(&str, &str)]) -> (Vec<u8>, Vec<(String, String)>) {
        let params: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = serde_urlencoded::to_string(&params).unwrap().into_bytes();
        let sig = signature::compute("token", URL, &params);
        (body, vec![("X-Twilio-Signature".to_string(), sig)])
    }

    fn run(
        hook: &str,
        body: &[u8],
        headers: &[(String, String)],
    ) -> Result<Vec<InboundEvent>, WebhookError> {
        handle(
            &config(),
            hook,
            &WebhookRequest {
                method: "POST",
                url: URL,
                query: "",
                headers,
                body,
                received_at: 0,
            },
        )
        .map(|h| {
            assert_eq!(h.reply.content_type, "text/xml");
            h.events
        })
    }

    fn sms_fields() -> Vec<(&'static str, &'static str)> {
        vec![
            ("ToCountry", "US"),
            ("SmsMessageSid", "SM0123"),
            ("NumMedia", "1"),
            ("MediaUrl0", "https://api.twilio.com/media/ME1"),
            ("MediaContentType0", "image/jpeg"),
            ("SmsSid", "SM0123"),
            ("SmsStatus", "received"),
            ("Body", "Hello there ✓"),
            ("To", "+15550001111"),
            ("NumSegments", "1"),
            ("MessageSid", "SM0123"),
            ("AccountSid", "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ("From", "+15557654321"),
            ("ApiVersion", "2010-04-01"),
        ]
    }

    #[test]
    fn a_signed_incoming_message_parses() {
        let (body, headers) = signed(&sms_fields());
        let events = run("sms", &body, &headers).unwrap();
        let InboundEvent::Message(m) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(m.provider_message_id, "SM0123");
        assert_eq!(m.from, "+15557654321");
        assert_eq!(m.body, "Hello there ✓");
        assert_eq!(
            m.media,
            vec![InboundMedia::link(
                "https://api.twilio.com/media/ME1",
                "image/jpeg"
            )]
        );
        assert_eq!(m.keyword, None);
    }

    #[test]
    fn bad_or_missing_signature_is_refused() {
        let (body, _) = signed(&sms_fields());
        assert_eq!(run("sms", &body, &[]), Err(WebhookError::BadSignature));
        let wrong = vec![("X-Twilio-Signature".to_string(), "AAAA".to_string())];
        assert_eq!(run("sms", &body, &wrong), Err(WebhookError::BadSignature));
    }

    #[test]
    fn missing_fields_are_named() {
        let mut fields = sms_fields();
        fields.retain(|(k, _)| !k.ends_with("Sid") || *k == "AccountSid");
        let (body, headers) = signed(&fields);
        match run("sms", &body, &headers) {
            Err(WebhookError::Malformed { field, .. }) => assert_eq!(field, "MessageSid"),
            other => panic!("{other:?}"),
        }
        let mut fields = sms_fields();
        fields.retain(|(k, _)| *k != "From");
        let (body, headers) = signed(&fields);
        assert!(matches!(
            run("sms", &body, &headers),
            Err(WebhookError::Malformed { field: "From", .. })
        ));
    }

    #[test]
    fn another_account_is_refused() {
        let mut fields = sms_fields();
        for f in fields.iter_mut() {
            if f.0 == "AccountSid" {
                f.1 = "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
            }
        }
        let (body, headers) = signed(&fields);
        assert!(matches!(
            run("sms", &body, &headers),
            Err(WebhookError::Malformed {
                field: "AccountSid",
                ..
            })
        ));
    }

    #[test]
    fn status_callbacks_map_onto_the_delivery_machine() {
        let (body, headers) = signed(&[
            ("MessageSid", "SM9"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
            ("AccountSid", "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ]);
        let events = run("status", &body, &headers).unwrap();
        assert_eq!(
            events,
            vec![InboundEvent::Status(StatusUpdate {
                error_code: Some("30003".into()),
                ..StatusUpdate::new("SM9", DeliveryState::Failed, "undelivered")
            })]
        );
        let (body, headers) = signed(&[
            ("MessageSid", "SM9"),
            ("MessageStatus", "teleported"),
            ("AccountSid", "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ]);
        assert!(matches!(
            run("status", &body, &headers),
            Err(WebhookError::Malformed {
                field: "MessageStatus",
                ..
            })
        ));
    }

    #[test]
    fn a_textless_message_is_a_media_message_only_with_media() {
        let kind = |body: &str, media: &str| {
            let mut fields = sms_fields();
            for f in fields.iter_mut() {
                match f.0 {
                    "Body" => f.1 = body,
                    "NumMedia" => f.1 = media,
                    _ => {}
                }
            }
            let (raw, headers) = signed(&fields);
            let events = run("sms", &raw, &headers).unwrap();
            let InboundEvent::Message(m) = &events[0] else {
                panic!("{events:?}")
            };
            m.kind.clone()
        };
        assert_eq!(kind("", "1"), "media");
        assert_eq!(kind("look", "1"), "text");
        assert_eq!(kind("", "0"), "text");
    }

    #[test]
    fn empty_error_fields_are_no_error() {
        let status = |code: &'static str, message: &'static str| {
            let (body, headers) = signed(&[
                ("MessageSid", "SM9"),
                ("MessageStatus", "failed"),
                ("ErrorCode", code),
                ("ErrorMessage", message),
                ("AccountSid", "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ]);
            match run("status", &body, &headers).unwrap().remove(0) {
                InboundEvent::Status(u) => (u.error_code, u.error_message),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(status("", ""), (None, None));
        assert_eq!(
            status("30003", "Unreachable"),
            (Some("30003".into()), Some("Unreachable".into()))
        );
    }

    #[test]
    fn every_twilio_status_has_its_state() {
        use DeliveryState as D;
        for (word, state) in [
            ("accepted", Some(D::Queued)),
            ("scheduled", Some(D::Queued)),
            ("queued", Some(D::Queued)),
            ("sending", Some(D::Sending)),
            ("sent", Some(D::Sent)),
            ("delivered", Some(D::Delivered)),
            ("read", Some(D::Read)),
            ("undelivered", Some(D::Failed)),
            ("failed", Some(D::Failed)),
            ("canceled", Some(D::Failed)),
            ("receiving", None),
        ] {
            assert_eq!(map_status(word), state, "{word}");
        }
    }

    #[test]
    fn unknown_hook_and_garbage_body() {
        assert!(matches!(
            run("mms", b"", &[]),
            Err(WebhookError::UnknownHook(_))
        ));
        assert!(matches!(
            run("sms", b"%zz=%", &[]),
            Err(WebhookError::Malformed { field: "body", .. }) | Err(WebhookError::BadSignature)
        ));
    }
}
