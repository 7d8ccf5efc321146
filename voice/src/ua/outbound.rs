//! Calls we place (UAC): an INVITE with our SDP offer to a SIP trunk or proxy, and, once
//! answered, the call's application on its media (a broadcast's "say it, press 1"). The
//! call is one of the user agent's calls: stepped through the one call machine
//! (`state_machines::call`) and committed by the [`super::CallStore`] like an answered
//! INVITE, hung up on shutdown, ended by [`super::SipServer::hang_up`].
//!
//! ```text
//! begin (ringing, committed) ─▶ INVITE ─▶ 1xx … ─▶ 2xx ─▶ ACK ─▶ answer committed ─▶ media + app
//!        486/600 ─▶ busy · 408/480/487, rings past ring_timeout (CANCEL) ─▶ no_answer
//!        no response at all (Timer B) ─▶ reject 408 · other final ─▶ reject <status>
//! answered: their BYE ─▶ caller_hangup committed ─▶ 200 · INFO ─▶ DTMF to the app
//!           the app hangs up / max duration / media timeout / shutdown ─▶ committed ─▶ BYE
//! ```
//!
//! The machine's words are the inbound call's: on a call we place, `caller_hangup` is the
//! far party hanging up and `callee_hangup` is our side (the application) doing so, so
//! every call, whichever way it was set up, reads the same in `calls` and its events. The
//! call's `from` is our caller id, its `to` the number dialled.
//!
//! A trunk that challenges the INVITE (401 `WWW-Authenticate`, 407 `Proxy-Authenticate`)
//! gets it again, CSeq one higher and on a new branch, with our credentials
//! ([`crate::sip::answer_challenge`]); a second challenge is answered only when it says the
//! nonce was stale. Without an account, after a refused answer, or for a challenge we cannot
//! answer, the call is refused with the trunk's status.
//!
//! Not yet: TCP toward the trunk, and re-INVITEs from the far end (answered 488: the session
//! stays as answered).

use super::agent_leg::{header_text, AgentLeg, InviteTx, LegError};
use super::call::CallInput;
use super::client::send_request;
use super::dialog::Dialog;
use super::dispatcher::{random_token, Command, CoreHandle, DialogKey, ALLOW};
use super::lifecycle::{Identity, Lifecycle};
use super::media_leg::{AgentMedia, CallMedia};
use super::ports::{CallEvent as E, CallState};
use super::Shared;
use crate::app::{Action, CallApp, CallContext};
use crate::media::MediaEvent;
use crate::sip::answer_challenge::{authorization, parse_challenge, Account};
use crate::sip::message::Inbound;
use crate::sip::response::{build_response, RequestParts, ResponseParts};
use crate::sip::transport::{Conn, Peer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

/// A call to place.
pub struct Dial {
    /// The organisation the call is for (recorded with it).
    pub org: String,
    /// The number dialled: the user part of the Request-URI (`sip:{number}@{trunk}`).
    pub number: String,
    /// Our caller id: the user part of From.
    pub caller_id: String,
    /// Where the INVITE goes (UDP): the trunk or proxy.
    pub trunk: SocketAddr,
    /// How long it may ring before we CANCEL (capped by Timer B, 64·T1).
    pub ring_timeout: Duration,
    /// The longest the answered call may last.
    pub max_duration: Duration,
    /// What runs on the answered call's media.
    pub app: Box<dyn CallApp>,
    /// Further headers of the INVITE (`X-Dartwing-Message-Id`), made safe and bounded.
    pub headers: Vec<(&'static str, String)>,
    /// Our account at the trunk, for its digest challenges.
    pub account: Option<Account>,
}

/// How a call we placed went, up to its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// Answered; the application runs. `ended` resolves with the event that ended it.
    Answered {
        /// Our id of the call.
        call_id: String,
    },
    /// Busy (486, 600).
    Busy { call_id: String, status: u16 },
    /// Rang unanswered (we CANCELled it), or the far end said so (408, 480, 487).
    NoAnswer { call_id: String },
    /// Nothing answered the INVITE at all (Timer B): the trunk is unreachable.
    Unreachable { call_id: String },
    /// Refused with another final status (403, 404, 407, 503, …).
    Refused { call_id: String, status: u16 },
    /// We could not place it (no RTP port, the store refused, shutting down).
    Failed { reason: String },
}

/// A placed call: how it went up to the answer, and, when answered, how it ended.
pub struct Outcome {
    pub placed: Placed,
    /// The state an answered call ended in (`caller_hangup`: they hung up), once it has.
    pub ended: Option<oneshot::Receiver<CallState>>,
}

/// Places the call and waits for its answer (or why there was none); an answered call goes
/// on in its own task.
pub async fn place(shared: Arc<Shared>, core: CoreHandle, dial: Dial) -> Outcome {
    let (placed_tx, placed_rx) = oneshot::channel();
    let (ended_tx, ended_rx) = oneshot::channel();
    tokio::spawn(run(shared, core, dial, placed_tx, ended_tx));
    let placed = placed_rx.await.unwrap_or_else(|_| Placed::Failed {
        reason: "the call task stopped".into(),
    });
    let ended = matches!(placed, Placed::Answered { .. }).then_some(ended_rx);
    Outcome { placed, ended }
}

/// The machine's event for a refused INVITE, and how it is reported.
fn refusal(error: &LegError, call_id: String) -> (E, Placed) {
    match error {
        LegError::Refused {
            status: status @ (486 | 600),
        } => (
            E::Busy,
            Placed::Busy {
                call_id,
                status: *status,
            },
        ),
        LegError::Refused {
            status: 408 | 480 | 487,
        }
        | LegError::NoAnswer => (E::NoAnswer, Placed::NoAnswer { call_id }),
        LegError::Timeout => (E::Reject { status: 408 }, Placed::Unreachable { call_id }),
        LegError::Refused { status } | LegError::Challenged { status, .. } => (
            E::Reject { status: *status },
            Placed::Refused {
                call_id,
                status: *status,
            },
        ),
        other => (
            E::Fail,
            Placed::Failed {
                reason: other.to_string(),
            },
        ),
    }
}

async fn run(
    shared: Arc<Shared>,
    core: CoreHandle,
    dial: Dial,
    placed: oneshot::Sender<Placed>,
    ended: oneshot::Sender<CallState>,
) {
    let peer = Peer {
        addr: dial.trunk,
        conn: Conn::Udp,
    };
    let via = shared.via_addr(peer.addr);
    let local_tag = random_token();
    let sip_call_id = format!("{}@{}", random_token(), via.ip());
    let key = DialogKey {
        call_id: sip_call_id.clone(),
        local_tag: local_tag.clone(),
    };
    let (control, mut events) = mpsc::channel(64);
    let _ = core
        .commands
        .send(Command::AddCall {
            key: key.clone(),
            call: control.clone(),
        })
        .await;
    let mut life = Lifecycle::new(Arc::clone(&shared.store));
    let call_id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let identity = Identity {
        id: call_id.clone(),
        sip_call_id: sip_call_id.clone(),
        org: dial.org.clone(),
        from: format!("sip:{}@{via}", dial.caller_id),
        to: dial.number.clone(),
        outbound: true,
    };
    let event = match life.begin(identity).await {
        Err(e) => {
            let _ = placed.send(Placed::Failed {
                reason: format!("the call store refused the call: {e}"),
            });
            None
        }
        Ok(()) => {
            let mut call = Placing {
                shared: &shared,
                core: &core,
                peer,
                life: &mut life,
                control,
                events: &mut events,
                deferred: Default::default(),
            };
            call.drive(dial, via, &local_tag, &sip_call_id, placed)
                .await
        }
    };
    if let Some(event) = event {
        life.end(event, None).await;
    }
    let _ = ended.send(life.state());
    let _ = core
        .commands
        .send(Command::DropDialog { key: key.clone() })
        .await;
    let _ = core.commands.send(Command::Ended { dialog: key }).await;
}

struct Placing<'a> {
    shared: &'a Arc<Shared>,
    core: &'a CoreHandle,
    peer: Peer,
    life: &'a mut Lifecycle,
    control: mpsc::Sender<CallInput>,
    events: &'a mut mpsc::Receiver<CallInput>,
    deferred: std::collections::VecDeque<CallInput>,
}

impl Placing<'_> {
    /// Returns the event that ended the call (None when its end is already committed).
    async fn drive(
        &mut self,
        dial: Dial,
        via: SocketAddr,
        local_tag: &str,
        sip_call_id: &str,
        placed: oneshot::Sender<Placed>,
    ) -> Option<E> {
        let call_id = self
            .life
            .identity()
            .map(|i| i.id.clone())
            .unwrap_or_default();
        let offer = match CallMedia::agent_offer(&self.shared.rtp_pool, via.ip()) {
            Ok(offer) => offer,
            Err(e) => {
                let _ = placed.send(Placed::Failed {
                    reason: format!("no media for the call: {e}"),
                });
                return Some(E::Fail);
            }
        };
        let target = format!("sip:{}@{}", dial.number, dial.trunk);
        let from = format!("<sip:{}@{via}>;tag={local_tag}", dial.caller_id);
        let to = format!("<{target}>");
        let mut headers = vec![
            ("Contact", format!("<sip:{}@{via}>", dial.caller_id)),
            ("Allow", ALLOW.to_owned()),
            ("X-Dartwing-Call-Id", call_id.clone()),
        ];
        headers.extend(
            dial.headers
                .iter()
                .map(|(name, value)| (*name, header_text(value, 200))),
        );
        let mut cseq = 1;
        let mut answered_challenges = 0;
        let outcome = loop {
            let branch = format!("z9hG4bK{}", random_token());
            let invite = InviteTx {
                core: self.core,
                shared: self.shared,
                peer: self.peer.clone(),
                parts: RequestParts {
                    method: "INVITE",
                    target: &target,
                    transport: "UDP",
                    sent_by: via,
                    branch: &branch,
                    from: &from,
                    to: &to,
                    call_id: sip_call_id,
                    cseq,
                    routes: &[],
                    headers: headers.clone(),
                    body: Some(("application/sdp", &offer.sdp)),
                },
                local_tag: local_tag.to_owned(),
                ring_timeout: dial.ring_timeout,
                call_events: &self.control,
            };
            let result = invite.run(&mut *self.events, &mut self.deferred).await;
            let Err(LegError::Challenged { status, challenge }) = &result else {
                break result;
            };
            let Some(header) = answer(
                dial.account.as_ref(),
                *status,
                challenge,
                &target,
                answered_challenges,
            ) else {
                break result;
            };
            headers.retain(|(name, _)| !name.ends_with("Authorization"));
            headers.push(header);
            answered_challenges += 1;
            cseq += 1;
        };
        let leg = match outcome {
            Ok(leg) => leg,
            Err(LegError::CallerGone) => {
                // Call control hung up (or the user agent stops) while it rang.
                let asked = self.deferred.iter().find_map(|input| match input {
                    CallInput::Hangup(E::Shutdown) => Some(E::Shutdown),
                    _ => None,
                });
                let _ = placed.send(Placed::Failed {
                    reason: "hung up by us while it rang".into(),
                });
                return Some(asked.unwrap_or(E::Cancel));
            }
            Err(e) => {
                let (event, report) = refusal(&e, call_id);
                let _ = placed.send(report);
                return Some(event);
            }
        };
        let AgentLeg {
            mut dialog,
            answer_sdp,
            ack,
            ..
        } = leg;
        if let Err(e) = self.life.step(E::Answer, None).await {
            let _ = placed.send(Placed::Failed {
                reason: format!("the call store refused the answer: {e}"),
            });
            self.bye(&mut dialog).await;
            return Some(E::Fail);
        }
        let ctx = CallContext {
            call_id: call_id.clone(),
            from: dial.caller_id.clone(),
            to: dial.number.clone(),
            org: dial.org.clone(),
            agent: None,
        };
        // A leg we called out on ourselves: the SDP address as the answer gives it (a
        // trunk's media server is often not its signalling host).
        let config = self.shared.config.media.clone();
        let workers = &self.shared.media_workers;
        let mut media = match offer.start_app(&answer_sdp, workers, dial.app, ctx, config) {
            Ok(media) => media,
            Err(e) => {
                let _ = placed.send(Placed::Failed {
                    reason: format!("the answer's media cannot start: {e}"),
                });
                self.life
                    .end(E::Fail, Some(format!("unusable SDP answer: {e}")))
                    .await;
                self.bye(&mut dialog).await;
                return None;
            }
        };
        let _ = placed.send(Placed::Answered { call_id });
        let event = self
            .answered(&ack, &mut dialog, &mut media, dial.max_duration)
            .await;
        media.stop().await;
        event
    }

    /// The answered call, until someone hangs up; returns the ending event once its BYE is
    /// answered (theirs) or sent (ours, after the end is committed).
    async fn answered(
        &mut self,
        ack: &[u8],
        dialog: &mut Dialog,
        media: &mut AgentMedia,
        max_duration: Duration,
    ) -> Option<E> {
        let deadline = Instant::now() + max_duration;
        loop {
            let input = match self.deferred.pop_front() {
                Some(input) => Some(input),
                None => tokio::select! {
                    _ = sleep_until(deadline) => return self.end_ours(E::MaxDuration, dialog).await,
                    Some(event) = media.events.recv() => match event {
                        MediaEvent::MediaTimeout => return self.end_ours(E::MediaTimeout, dialog).await,
                        MediaEvent::AppAction(Action::Hangup) => {
                            return self.end_ours(E::CalleeHangup, dialog).await;
                        }
                        _ => continue,
                    },
                    input = self.events.recv() => input,
                },
            };
            match input {
                None => return self.end_ours(E::Shutdown, dialog).await,
                Some(CallInput::Hangup(event)) => return self.end_ours(event, dialog).await,
                // A retransmitted 2xx: our ACK was lost.
                Some(CallInput::Response(_)) => {
                    let to = Peer {
                        addr: dialog.next_hop(self.peer.addr),
                        conn: Conn::Udp,
                    };
                    self.core.transport.send(&to, ack.to_vec());
                }
                Some(CallInput::Request { message, peer, tx }) => {
                    if self.in_dialog(&message, &peer, &tx, dialog, media).await {
                        return None;
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// Answers an in-dialog request; true when it was their BYE (its end committed first).
    async fn in_dialog(
        &mut self,
        message: &Inbound,
        peer: &Peer,
        tx: &super::dispatcher::TxKey,
        dialog: &mut Dialog,
        media: &AgentMedia,
    ) -> bool {
        let reply = |parts: ResponseParts<'_>| build_response(&message.head, peer.addr, &parts);
        if !dialog.accept_remote_cseq(message.cseq) {
            let parts = ResponseParts::new(500, "Server Internal Error (CSeq out of order)");
            self.core.respond(tx, reply(parts), true).await;
            return false;
        }
        let (bytes, bye) = match message.method() {
            Some(rsip::Method::Bye) => {
                self.life.end(E::CallerHangup, None).await;
                (reply(ResponseParts::new(200, "OK")), true)
            }
            Some(rsip::Method::Info) => {
                let (digit, parts) = super::dtmf_info::answer(message);
                if let Some(digit) = digit {
                    media.info_dtmf(digit);
                }
                (reply(parts), false)
            }
            Some(rsip::Method::Options) => (
                reply(ResponseParts::new(200, "OK").header("Allow", ALLOW)),
                false,
            ),
            Some(rsip::Method::Invite) => (
                reply(ResponseParts::new(
                    488,
                    "Not Acceptable Here (no re-INVITE on this call)",
                )),
                false,
            ),
            _ => (
                reply(ResponseParts::new(405, "Method Not Allowed").header("Allow", ALLOW)),
                false,
            ),
        };
        self.core.respond(tx, bytes, true).await;
        bye
    }

    /// Our side ends the call: the end committed, then BYE.
    async fn end_ours(&mut self, event: E, dialog: &mut Dialog) -> Option<E> {
        self.life.end(event, None).await;
        self.bye(dialog).await;
        None
    }

    async fn bye(&mut self, dialog: &mut Dialog) {
        let branch = format!("z9hG4bK{}", random_token());
        let sent = send_request(
            "BYE",
            &branch,
            dialog,
            &self.peer,
            self.core,
            self.shared,
            self.events,
        )
        .await;
        // Their BYE crossing ours was answered by neither: answer it now.
        for input in sent.deferred {
            if let CallInput::Request { message, peer, tx } = input {
                let bytes =
                    build_response(&message.head, peer.addr, &ResponseParts::new(200, "OK"));
                self.core.respond(&tx, bytes, true).await;
            }
        }
    }
}

/// The header answering a trunk's challenge to our INVITE, or None when we do not answer it
/// (no account; our credentials were already refused; a challenge we cannot answer).
fn answer(
    account: Option<&Account>,
    status: u16,
    challenge: &str,
    uri: &str,
    answered: u32,
) -> Option<(&'static str, String)> {
    let account = account?;
    let parsed = match parse_challenge(challenge) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(status, error = %e, "the trunk's challenge cannot be answered");
            return None;
        }
    };
    // Challenged again after answering: our credentials were refused, unless the nonce only
    // went stale (answered once more, at most).
    if answered >= 2 || (answered == 1 && !parsed.stale) {
        tracing::warn!(status, "the trunk refused our credentials");
        return None;
    }
    let name = if status == 407 {
        "Proxy-Authorization"
    } else {
        "Authorization"
    };
    let value = authorization(account, &parsed, "INVITE", uri, &random_token(), 1);
    Some((name, value))
}

#[cfg(test)]
#[path = "outbound_tests.rs"]
mod tests;
