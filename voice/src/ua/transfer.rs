//! Transfer to a registered agent as a B2BUA: the caller's leg stays with us, a second leg
//! calls the agent, and the two are bridged. Started by a REFER from the caller (202, then
//! NOTIFYs carrying the agent leg's progress as `message/sipfrag`, RFC 3515) or by the
//! application (`CallInput::Transfer`).
//!
//! ```text
//! REFER ─► transfer committed ─► 202 ─► NOTIFY 100 ─► INVITE agent
//!    agent 2xx ─► ACK ─► NOTIFY 200 ─► transfer_answered committed ─► bridged until a BYE
//!    agent fails ─► NOTIFY <status> ─► transfer_failed committed (the caller stays with us)
//! bridged: BYE from one leg ─► its hangup committed ─► 200 to it, BYE to the other
//! ```
//!
//! A step the store refuses ends the call (`failed`, BYE to every leg that is up).
//!
//! Media: the agent leg gets a port and an offer of its own; when the agent answers, its
//! leg starts and both legs run the two sides of a bridge (`CallMedia::bridge_to`): the
//! caller hears the agent and the other way round, DTMF included.

use super::agent_leg::is_bye;
use super::agent_leg::{call_agent, AgentLeg, LegContext};
use super::call::{Call, CallInput};
use super::client::{next_hop_peer, send_bytes};
use super::dialog::{uri_of, Dialog};
use super::dispatcher::{random_token, Command, DialogKey, TxKey};
use super::lifecycle::StepError;
use super::media_leg::{AgentMedia, CallMedia};
use super::ports::CallEvent as E;
use crate::app::CallContext;
use crate::media::MediaEvent;
use crate::sip::message::Inbound;
use crate::sip::response::{build_response, ResponseParts};
use crate::sip::transport::Peer;
use tokio::time::{sleep_until, Instant};

impl Call {
    /// Answers a REFER and runs the transfer it asks for. Returns the event that ended the
    /// call when it did, None when it goes on with the caller alone.
    pub(super) async fn on_refer(
        &mut self,
        refer: &Inbound,
        peer: &Peer,
        tx: &TxKey,
        dialog: &mut Dialog,
        media: &mut CallMedia,
        deadline: Instant,
    ) -> Option<E> {
        let agent = refer
            .head
            .get("Refer-To")
            .map(uri_of)
            .and_then(|uri| rsip::Uri::try_from(uri.as_str()).ok())
            .and_then(|uri| uri.user().map(str::to_owned));
        let Some(agent) = agent else {
            let reply = ResponseParts::new(400, "Bad Request (Refer-To)");
            let bytes = build_response(&refer.head, peer.addr, &reply);
            self.core.respond(tx, bytes, true).await;
            return None;
        };
        dialog.accept_remote_cseq(refer.cseq);
        if !self.route.as_ref().is_some_and(|r| r.allow_refer) {
            let refused = ResponseParts::new(403, "Forbidden (transfer not allowed on this route)");
            self.core
                .respond(tx, build_response(&refer.head, peer.addr, &refused), true)
                .await;
            return None;
        }
        // The 202 acknowledges a transfer that is committed.
        match self.begin_transfer(dialog).await {
            Ok(()) => {}
            Err(ended) => {
                let refused = ResponseParts::new(403, "Forbidden (no transfer now)");
                self.core
                    .respond(tx, build_response(&refer.head, peer.addr, &refused), true)
                    .await;
                return ended;
            }
        }
        let bytes = build_response(&refer.head, peer.addr, &ResponseParts::new(202, "Accepted"));
        self.core.respond(tx, bytes, true).await;
        self.notify(dialog, "SIP/2.0 100 Trying", true).await;
        self.run_transfer(&agent, dialog, media, deadline, true, None)
            .await
    }

    /// Commits the start of a transfer. `Err(None)`: the machine takes no transfer now (the
    /// call goes on); `Err(Some(event))`: the store refused and the call has ended.
    async fn begin_transfer(&mut self, dialog: &mut Dialog) -> Result<(), Option<E>> {
        match self.life.step(E::Transfer, None).await {
            Ok(_) => Ok(()),
            Err(StepError::Refused(refused)) => {
                tracing::info!(%refused, "transfer refused in this state");
                Err(None)
            }
            Err(StepError::Store(e)) => {
                self.life.end(E::Fail, Some(e.to_string())).await;
                self.hangup(dialog).await;
                Err(Some(E::Fail))
            }
        }
    }

    /// Commits a step of a transfer in progress; a refusing store ends the call (BYE to the
    /// caller, and to the agent when its leg is up).
    async fn transfer_step(
        &mut self,
        event: E,
        dialog: &mut Dialog,
        agent: Option<&mut AgentLeg>,
    ) -> Option<E> {
        match self.life.step(event, None).await {
            Ok(_) | Err(StepError::Refused(_)) => None,
            Err(StepError::Store(e)) => {
                self.life.end(E::Fail, Some(e.to_string())).await;
                self.hangup(dialog).await;
                if let Some(agent) = agent {
                    self.hangup_agent(agent).await;
                }
                Some(E::Fail)
            }
        }
    }

    /// A BYE from the caller waiting among the deferred inputs: committed and answered.
    async fn deferred_caller_bye(&mut self) -> Option<E> {
        let at = self.deferred.iter().position(is_bye)?;
        let Some(CallInput::Request { message, peer, tx }) = self.deferred.remove(at) else {
            return None;
        };
        self.answer_bye(&message, &peer, &tx).await;
        Some(E::CallerHangup)
    }

    /// A transfer asked by the application or call control: committed, then run.
    /// `summary`: the application's one line for the agent's phone.
    pub(super) async fn transfer(
        &mut self,
        agent: &str,
        dialog: &mut Dialog,
        caller_media: &mut CallMedia,
        deadline: Instant,
        notify: bool,
        summary: Option<&str>,
    ) -> Option<E> {
        if let Err(ended) = self.begin_transfer(dialog).await {
            if ended.is_none() {
                caller_media.notify(crate::app::Notice::TransferFailed { status: 403 });
            }
            return ended;
        }
        self.run_transfer(agent, dialog, caller_media, deadline, notify, summary)
            .await
    }

    /// Calls the agent and bridges (the transfer is committed); `notify` when a REFER
    /// subscription is to be told.
    async fn run_transfer(
        &mut self,
        agent: &str,
        dialog: &mut Dialog,
        caller_media: &mut CallMedia,
        deadline: Instant,
        notify: bool,
        summary: Option<&str>,
    ) -> Option<E> {
        let caller_user = self
            .invite
            .head
            .get("From")
            .map(uri_of)
            .and_then(|uri| rsip::Uri::try_from(uri.as_str()).ok())
            .and_then(|uri| uri.user().map(str::to_owned))
            .unwrap_or_else(|| "caller".to_owned());
        let ip = self.shared.advertised_ip(self.peer.addr);
        let agent_offer = match CallMedia::agent_offer(&self.shared.rtp_pool, ip) {
            Ok(offer) => offer,
            Err(e) => {
                tracing::warn!(error = %e, "no port for the agent leg");
                return self.transfer_step(E::TransferFailed, dialog, None).await;
            }
        };
        if let Some(ended) = self.deferred_caller_bye().await {
            return Some(ended);
        }
        let org = self.route.as_ref().map_or("", |r| r.org.as_str());
        let call_id = self
            .life
            .identity()
            .map(|r| r.id.clone())
            .unwrap_or_default();
        let cx = LegContext {
            org,
            agent,
            caller_user: &caller_user,
            call_id: &call_id,
            summary,
            offer: &agent_offer.sdp,
            core: &self.core,
            shared: &self.shared,
            call_events: &self.control,
        };
        let leg = call_agent(&cx, &mut self.events, &mut self.deferred).await;
        match leg {
            Ok(mut leg) => {
                if notify {
                    self.notify(dialog, "SIP/2.0 200 OK", false).await;
                }
                let ctx = CallContext {
                    call_id: self.invite.call_id.clone(),
                    from: caller_user.clone(),
                    to: agent.to_owned(),
                    ..CallContext::default()
                };
                let media_config = self.shared.config.media.clone();
                let bridged_media = caller_media.bridge_to(
                    agent_offer,
                    &leg.answer_sdp,
                    &self.shared.media_workers,
                    ctx,
                    media_config,
                );
                let mut agent_media = match bridged_media {
                    Ok(media) => Some(media),
                    Err(e) => {
                        tracing::warn!(error = %e, "agent leg media not bridged");
                        None
                    }
                };
                if let Some(ended) = self
                    .transfer_step(E::TransferAnswered, dialog, Some(&mut leg))
                    .await
                {
                    return Some(ended);
                }
                let cause = self
                    .bridged(
                        dialog,
                        &mut leg,
                        caller_media,
                        agent_media.as_mut(),
                        deadline,
                    )
                    .await;
                if let Some(media) = agent_media.as_mut() {
                    media.stop().await;
                }
                let key = DialogKey {
                    call_id: leg.dialog.call_id.clone(),
                    local_tag: leg.dialog.local_tag.clone(),
                };
                let _ = self.core.commands.send(Command::DropDialog { key }).await;
                let branch = leg.invite_branch.clone();
                let _ = self
                    .core
                    .commands
                    .send(Command::ClientTx { branch, call: None })
                    .await;
                Some(cause)
            }
            Err(super::agent_leg::LegError::CallerGone) => match self.deferred_caller_bye().await {
                Some(ended) => Some(ended),
                None => {
                    // Call control hung up while the agent rang (or the user agent stops).
                    let asked = self.deferred.iter().find_map(|input| match input {
                        CallInput::Hangup(event) => Some(*event),
                        _ => None,
                    });
                    Some(self.end_ours(asked.unwrap_or(E::Shutdown), dialog).await)
                }
            },
            Err(e) => {
                tracing::info!(error = %e, agent, "transfer failed");
                let (status, reason) = e.status();
                if notify {
                    self.notify(dialog, &format!("SIP/2.0 {status} {reason}"), false)
                        .await;
                }
                let ended = self.transfer_step(E::TransferFailed, dialog, None).await;
                if ended.is_none() {
                    // The caller is still ours: the application takes it back (the
                    // receptionist offers voicemail).
                    caller_media.notify(crate::app::Notice::TransferFailed { status });
                }
                ended
            }
        }
    }

    /// Both legs up: relays hangups between them; RTP silence on either leg ends both.
    async fn bridged(
        &mut self,
        caller: &mut Dialog,
        agent: &mut AgentLeg,
        caller_media: &mut CallMedia,
        mut agent_media: Option<&mut AgentMedia>,
        deadline: Instant,
    ) -> E {
        loop {
            let agent_events = async {
                match agent_media.as_mut() {
                    Some(media) => media.events.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep_until(deadline) => return self.end_both(E::MaxDuration, caller, agent).await,
                Some(MediaEvent::MediaTimeout) = caller_media.events.recv() => {
                    return self.end_both(E::MediaTimeout, caller, agent).await;
                }
                Some(MediaEvent::MediaTimeout) = agent_events => {
                    return self.end_both(E::MediaTimeout, caller, agent).await;
                }
                event = self.next_event() => match event {
                    Some(CallInput::Request { message, peer, tx }) => {
                        let from_agent = message.call_id == agent.dialog.call_id;
                        let is_bye = message.method() == Some(&rsip::Method::Bye);
                        if is_bye && !from_agent {
                            self.answer_bye(&message, &peer, &tx).await;
                            self.hangup_agent(agent).await;
                            return E::CallerHangup;
                        }
                        if is_bye {
                            self.life.end(E::AgentHangup, None).await;
                        }
                        // BYE, and whatever else arrives on a bridged leg (INFO, OPTIONS): 200.
                        let bytes =
                            build_response(&message.head, peer.addr, &ResponseParts::new(200, "OK"));
                        self.core.respond(&tx, bytes, true).await;
                        if is_bye {
                            self.hangup(caller).await;
                            return E::AgentHangup;
                        }
                    }
                    // The agent retransmits its 2xx: our ACK was lost.
                    Some(CallInput::Response(_)) => {
                        let to = Peer { addr: agent.dialog.next_hop(agent.peer.addr), conn: agent.peer.conn.clone() };
                        self.core.transport.send(&to, agent.ack.clone());
                    }
                    Some(CallInput::Hangup(event)) => return self.end_both(event, caller, agent).await,
                    None => return self.end_both(E::Shutdown, caller, agent).await,
                    Some(_) => {}
                },
            }
        }
    }

    /// Ends a bridged call from our side: committed, then BYE to both legs.
    async fn end_both(&mut self, event: E, caller: &mut Dialog, agent: &mut AgentLeg) -> E {
        self.life.end(event, None).await;
        self.hangup(caller).await;
        self.hangup_agent(agent).await;
        event
    }

    async fn hangup_agent(&mut self, agent: &mut AgentLeg) {
        let branch = format!("z9hG4bK{}", random_token());
        let peer = next_hop_peer(&agent.dialog, &agent.peer);
        let sent_by = self.shared.via_addr(peer.addr);
        let bytes = agent.dialog.request("BYE", "UDP", sent_by, &branch);
        let sent = send_bytes(
            bytes,
            &branch,
            &peer,
            &self.core,
            &self.shared,
            &mut self.events,
        )
        .await;
        self.deferred.extend(sent.deferred);
    }

    /// Sends a NOTIFY of the REFER subscription with a sipfrag status line.
    async fn notify(&mut self, dialog: &mut Dialog, status_line: &str, active: bool) {
        let branch = format!("z9hG4bK{}", random_token());
        let peer = next_hop_peer(dialog, &self.peer);
        let sent_by = self.shared.via_addr(peer.addr);
        let state = if active {
            "active;expires=60"
        } else {
            "terminated;reason=noresource"
        };
        let body = format!("{status_line}\r\n");
        let headers = vec![
            ("Event", "refer".to_owned()),
            ("Subscription-State", state.to_owned()),
            ("Contact", format!("<sip:{sent_by}>")),
        ];
        let bytes = dialog.request_with(
            "NOTIFY",
            peer.transport_name(),
            sent_by,
            &branch,
            headers,
            Some(("message/sipfrag;version=2.0", body.as_bytes())),
        );
        let sent = send_bytes(
            bytes,
            &branch,
            &peer,
            &self.core,
            &self.shared,
            &mut self.events,
        )
        .await;
        self.deferred.extend(sent.deferred);
    }
}
