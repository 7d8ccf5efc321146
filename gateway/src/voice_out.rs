//! Outbound calls as a channel: the `voice` plugin the send worker uses for a message of
//! channel `voice` (a broadcast's voice rung, or `POST /api/v1/messages` with `"channel":
//! "voice"`). Its `send` speaks the message's text (espeak-ng, 8 kHz), places a call through
//! the configured SIP trunk (`sip.trunk`, see `voice::ua::outbound`) and returns once the
//! call is answered: the message is then `sent`, its provider id the call's id. The call goes
//! on after that: the text is said (twice at most, 3 s apart), and when the message's content
//! names a confirm key (`{"type": "call", "confirm_key": "1"}`, a rung with `require_ack`)
//! that key confirms the broadcast's recipient at once (`dartwing.broadcast.confirmed.v1`
//! with `"via": "voice"`), then a thank-you and a hang-up.
//!
//! ```text
//!  send ─▶ speak ─▶ INVITE trunk ─▶ answered ─▶ Ok(receipt: call id)   … the call runs on
//!                                   486/600 busy, no answer, other refusal ─▶ Rejected (permanent:
//!                                               the ladder's next rung goes at once)
//!                                   no response (trunk down), no RTP port ─▶ Unavailable (retried)
//!  during the call: confirm key ─▶ BroadcastOp::ConfirmCall { message_id } (committed) ─▶ thanks ─▶ BYE
//! ```
//!
//! Why not a provider in `channels`' registry: a call is placed by this process's SIP stack,
//! not by an HTTP API with an account, so the plugin is built here from the gateway's
//! configuration (one trunk for every org; an org's caller id is its first voice route
//! number). The send worker's rules still hold: the rate (`sip.calls_per_second`) per
//! caller id, the circuit breaker per trunk, and a ringing call holds a send slot (its send
//! may take `sip.ring_secs` + 5 s, [`ChannelPlugin::send_timeout`]).

use crate::commit::{Committer, WriteOp};
use crate::db::broadcasts::BroadcastOp;
use channels::{
    ChannelPlugin, Handled, OutboundMessage, OutboundRules, SendError, SendFuture, SendReceipt,
    WebhookError, WebhookRequest,
};
use state_machines::Channel;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use voice::app::Confirm;
use voice::receptionist::Speech;
use voice::ua::outbound::{Dial, Placed};
use voice::ua::SipServer;

/// What is said after the key press.
const THANKS: &str = "Thank you. Your confirmation is recorded. Goodbye.";
/// Plays of the message before the call ends unconfirmed, and the pause between them.
const PLAYS: u32 = 2;
const GAP_SECS: u32 = 3;

/// The calls side shared by every org's plugin.
pub struct Dialer {
    pub sip: Arc<SipServer>,
    pub speech: Arc<dyn Speech>,
    pub committer: Committer,
    /// Where INVITEs go.
    pub trunk: SocketAddr,
    /// How long a call rings before it counts as not answered.
    pub ring: Duration,
    /// The longest a placed call lasts.
    pub max_call: Duration,
    /// Calls per second per caller id.
    pub calls_per_second: f64,
    /// Our account at the trunk, for its digest challenges.
    pub account: Option<voice::sip::answer_challenge::Account>,
    /// The thank-you, spoken once and kept (it is the same on every call).
    pub thanks: std::sync::OnceLock<voice::app::Audio>,
}

/// One org's outbound calls (see the module docs).
pub struct CallPlugin {
    pub dialer: Arc<Dialer>,
    pub org_id: String,
    /// The org's number, shown to the people it calls.
    pub caller_id: String,
}

impl ChannelPlugin for CallPlugin {
    fn provider(&self) -> &'static str {
        "sip"
    }

    fn channel(&self) -> Channel {
        Channel::Voice
    }

    fn account_key(&self) -> String {
        format!("sip:{}", self.dialer.trunk)
    }

    fn sender_key(&self) -> String {
        format!("sip:{}", self.caller_id)
    }

    fn sender_address(&self) -> String {
        self.caller_id.clone()
    }

    fn rate_limit_per_second(&self) -> f64 {
        self.dialer.calls_per_second
    }

    fn normalize_recipient(&self, to: &str) -> Result<String, String> {
        channels::address::normalize_e164(to)
    }

    fn check_outbound(
        &self,
        body: &str,
        content: Option<&serde_json::Value>,
    ) -> Result<OutboundRules, String> {
        if body.trim().is_empty() {
            return Err("a call needs words to say".into());
        }
        confirm_key(content)?;
        Ok(OutboundRules {
            needs_service_window: false,
        })
    }

    fn handle_webhook(
        &self,
        hook: &str,
        _req: &WebhookRequest<'_>,
    ) -> Result<Handled, WebhookError> {
        Err(WebhookError::UnknownHook(hook.to_owned()))
    }

    fn send<'a>(&'a self, msg: &'a OutboundMessage) -> SendFuture<'a> {
        Box::pin(self.call(msg))
    }

    fn send_timeout(&self) -> Option<Duration> {
        // Ringing, and a moment to synthesize the words first.
        Some(self.dialer.ring + Duration::from_secs(5))
    }
}

/// The key that confirms, from a message's `content`: `{"type": "call", "confirm_key": "1"}`
/// (a broadcast's voice rung with `require_ack`); none without content.
pub fn confirm_key(content: Option<&serde_json::Value>) -> Result<Option<char>, String> {
    let Some(c) = content else { return Ok(None) };
    if c.get("type").and_then(|t| t.as_str()) != Some("call") {
        return Err(
            "content: a call's content is {\"type\": \"call\", \"confirm_key\": \"1\"}".into(),
        );
    }
    match c.get("confirm_key") {
        None => Ok(None),
        Some(serde_json::Value::String(k)) if k.len() == 1 && k.as_bytes()[0].is_ascii_digit() => {
            Ok(k.chars().next())
        }
        Some(_) => Err("content.confirm_key: one digit, 0-9".into()),
    }
}

fn unavailable(status: u16, code: &str) -> SendError {
    SendError::Unavailable {
        status,
        code: Some(code.to_owned()),
        retry_after: None,
    }
}

impl CallPlugin {
    async fn call(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let d = &self.dialer;
        let key = confirm_key(msg.content.as_ref()).map_err(|message| SendError::Rejected {
            status: 400,
            code: Some("content".into()),
            message,
        })?;
        let (speech, text) = (Arc::clone(&d.speech), msg.body.clone());
        let kept = d.thanks.get().cloned();
        let spoken = tokio::task::spawn_blocking(move || {
            let thanks: voice::app::Audio = match (key, kept) {
                (None, _) => Vec::new().into(),
                (Some(_), Some(kept)) => kept,
                (Some(_), None) => speech.speak(THANKS).map_err(|e| e.to_string())?.into(),
            };
            let prompt: voice::app::Audio = speech.speak(&text).map_err(|e| e.to_string())?.into();
            Ok::<_, String>((prompt, thanks))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        let (prompt, thanks) = match spoken {
            Ok((prompt, thanks)) => {
                if key.is_some() {
                    let _ = d.thanks.set(Arc::clone(&thanks));
                }
                (prompt, thanks)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot speak the message; the call is not placed");
                return Err(unavailable(503, "speech"));
            }
        };
        let (digits_tx, mut digits) = tokio::sync::mpsc::channel(16);
        let app = Confirm::new(prompt, thanks, key, PLAYS, GAP_SECS, digits_tx);
        let outcome = d
            .sip
            .dial(Dial {
                org: self.org_id.clone(),
                number: msg.to.clone(),
                caller_id: self.caller_id.clone(),
                trunk: d.trunk,
                ring_timeout: d.ring,
                max_duration: d.max_call,
                app: Box::new(app),
                headers: vec![("X-Dartwing-Message-Id", msg.message_id.clone())],
                account: d.account.clone(),
            })
            .await;
        let rejected = |status: u16, code: &str, message: String| SendError::Rejected {
            status,
            code: Some(code.to_owned()),
            message,
        };
        match outcome.placed {
            Placed::Answered { call_id } => {
                let committer = d.committer.clone();
                let message_id = msg.message_id.clone();
                // The key press is recorded while the call goes on; the task ends with it.
                tokio::spawn(async move {
                    while let Some(digit) = digits.recv().await {
                        if Some(digit) != key {
                            continue;
                        }
                        let op = WriteOp::Broadcast(BroadcastOp::ConfirmCall {
                            message_id: message_id.clone(),
                        });
                        if let Err(e) = committer.submit_wait(op).await {
                            tracing::error!(%message_id, error = %e, "a confirmation by phone was not recorded");
                        }
                        break;
                    }
                });
                Ok(SendReceipt {
                    provider_message_id: call_id,
                    provider_status: "answered".into(),
                })
            }
            Placed::Busy { call_id, status } => Err(rejected(
                status,
                "busy",
                format!("call {call_id}: the line is busy"),
            )),
            Placed::NoAnswer { call_id } => Err(rejected(
                480,
                "no_answer",
                format!("call {call_id}: nobody answered"),
            )),
            Placed::Refused {
                call_id,
                status: status @ (401 | 407),
            } => Err(rejected(
                status,
                "trunk_auth_failed",
                format!(
                    "call {call_id}: the trunk wants credentials ({status}) and had none or \
                     refused ours (sip.trunk_username, sip.trunk_password)"
                ),
            )),
            Placed::Refused { call_id, status } => Err(rejected(
                status,
                "refused",
                format!("call {call_id}: the trunk refused it ({status})"),
            )),
            Placed::Unreachable { call_id } => {
                tracing::warn!(%call_id, trunk = %d.trunk, "the SIP trunk did not answer the INVITE");
                Err(unavailable(408, "trunk_unreachable"))
            }
            Placed::Failed { reason } => {
                tracing::warn!(%reason, "the call could not be placed");
                Err(unavailable(503, "not_placed"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::confirm_key;
    use serde_json::json;

    #[test]
    fn the_confirm_key_comes_from_the_content_or_is_refused() {
        assert_eq!(confirm_key(None), Ok(None));
        let c = json!({"type": "call", "confirm_key": "1"});
        assert_eq!(confirm_key(Some(&c)), Ok(Some('1')));
        assert_eq!(confirm_key(Some(&json!({"type": "call"}))), Ok(None));
        for bad in [
            json!({"type": "template"}),
            json!({"type": "call", "confirm_key": "12"}),
            json!({"type": "call", "confirm_key": "#"}),
            json!({"type": "call", "confirm_key": 1}),
        ] {
            assert!(confirm_key(Some(&bad)).is_err(), "{bad}");
        }
    }
}
