//! One task per call, owning its dialog from the INVITE to the end. The call's state is
//! its [`Lifecycle`] (the `state_machines::call` machine, each step committed by the store
//! before the task acts on it); the task holds the SIP and media around it. Its life:
//!
//! ```text
//! route the dialled number ──none──► 404        (no call recorded)
//! begin (ringing, committed) ──► 180 Ringing ──► [ring for answer_delay; CANCEL ─► cancel ─► 487]
//! step answer (committed) ──► 200 OK with SDP    (refused by the store ─► 500, failed)
//! retransmit 200 (Timer G, T1 doubling to T2) until ACK; Timer H ─► BYE, no_ack
//! confirmed: BYE ─► caller_hangup committed ─► 200 · INFO ─► DTMF
//!            re-INVITE ─► hold/resume committed ─► 200
//!            max duration / application hangup / media timeout ─► BYE (Timers E/F), its cause
//! the end committed ──► tell the dispatcher
//! ```
//!
//! A non-2xx final to the INVITE (404, 487, 488, 500) ends the task at once: the
//! dispatcher's transaction answers the INVITE's retransmissions and absorbs the ACK.

use super::client::{send_request, Outcome};
use super::dialog::Dialog;
use super::dispatcher::{random_token, Command, CoreHandle, DialogKey, TxKey, ALLOW};
use super::lifecycle::{reject_status, Identity, Lifecycle};
use super::media_leg::CallMedia;
use super::ports::{CallEvent as E, Route};
use super::Shared;
use crate::app::{Action, CallContext};
use crate::media::MediaEvent;
use crate::sip::message::Inbound;
use crate::sip::response::{build_response, ResponseParts};
use crate::sip::transport::Peer;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};

/// What the dispatcher (or, later, the media side) tells a call.
#[derive(Debug)]
pub enum CallInput {
    /// An ACK: to our 2xx (matched by dialog) or to our non-2xx final (matched by transaction).
    Ack {
        /// The SDP answer when our 2xx carried the offer (late offer); empty otherwise.
        body: Vec<u8>,
    },
    /// The caller cancelled the INVITE (the dispatcher has answered the CANCEL).
    Cancel,
    /// A request inside the dialog, on its own server transaction.
    Request {
        message: Box<Inbound>,
        peer: Peer,
        tx: TxKey,
    },
    /// A response to a request this call sent.
    Response(Box<Inbound>),
    /// End the call from our side with this event (`callee_hangup`, `shutdown`).
    Hangup(E),
    /// Transfer the caller to this registered agent (application action).
    Transfer { agent: String },
}

/// Everything a new call task starts from.
pub struct CallSetup {
    pub invite: Inbound,
    pub peer: Peer,
    pub tx: TxKey,
    pub local_tag: String,
    pub events: mpsc::Receiver<CallInput>,
    /// The sending side of `events`, for legs this call opens (the agent's dialog).
    pub control: mpsc::Sender<CallInput>,
    pub core: CoreHandle,
    pub shared: Arc<Shared>,
}

pub(super) struct Call {
    pub(super) invite: Inbound,
    pub(super) peer: Peer,
    tx: TxKey,
    local_tag: String,
    pub(super) events: mpsc::Receiver<CallInput>,
    pub(super) control: mpsc::Sender<CallInput>,
    pub(super) core: CoreHandle,
    pub(super) shared: Arc<Shared>,
    /// The call's one state, committed step by step.
    pub(super) life: Lifecycle,
    /// The dialled number's route, once routed (its agent and REFER policy).
    pub(super) route: Option<Route>,
    /// A hangup asked for before the ACK: sent once the dialog is confirmed (§15).
    pending_hangup: Option<E>,
    /// Events that arrived while a client transaction was waiting; handled first.
    pub(super) deferred: std::collections::VecDeque<CallInput>,
}

/// How the wait for the ACK of our 2xx ended.
enum AckWait {
    Acked {
        body: Vec<u8>,
    },
    /// Timer H fired, or the user agent is shutting down.
    NoAck,
    /// The caller sent BYE before its ACK (its end committed, the BYE answered).
    CallerBye,
}

/// Runs one call to its end.
pub async fn run(setup: CallSetup) {
    let dialog = DialogKey {
        call_id: setup.invite.call_id.clone(),
        local_tag: setup.local_tag.clone(),
    };
    let commands = setup.core.commands.clone();
    let life = Lifecycle::new(Arc::clone(&setup.shared.store));
    let mut call = Call {
        invite: setup.invite,
        peer: setup.peer,
        tx: setup.tx,
        local_tag: setup.local_tag,
        events: setup.events,
        control: setup.control,
        core: setup.core,
        shared: setup.shared,
        life,
        route: None,
        pending_hangup: None,
        deferred: Default::default(),
    };
    if let Some(event) = call.drive().await {
        let detail = match event {
            E::Reject { status } => Some(format!("status {status}")),
            _ => None,
        };
        call.life.end(event, detail).await;
    }
    call.answer_leftover_byes().await;
    let _ = commands.send(Command::Ended { dialog }).await;
}

impl Call {
    /// Returns the event that ended a recorded call (None when it never rang).
    async fn drive(&mut self) -> Option<E> {
        let number = self.invite.request_user().unwrap_or_default().to_owned();
        let route = match self.shared.router.route(&number).await {
            Ok(Some(route)) => route,
            Ok(None) => {
                self.reject(404, "Not Found").await;
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "routing failed");
                self.reject(503, "Service Unavailable").await;
                return None;
            }
        };
        let mut dialog = match Dialog::from_invite(&self.invite, &self.local_tag) {
            Ok(d) => d,
            Err(e) => {
                self.reject(400, &format!("Bad Request ({e})")).await;
                return None;
            }
        };
        let identity = self.identity_for(&route, number);
        self.route = Some(route.clone());
        if self.life.begin(identity).await.is_err() {
            self.reject(500, "Server Internal Error").await;
            return Some(E::Fail);
        }
        let ip = self.shared.advertised_ip(self.peer.addr);
        let ctx = self.context();
        // No RTP before the ACK, and only to the signalling host or a latched source: an
        // INVITE whose SDP names a third party cannot aim a stream at it.
        let mut media_config = self.shared.config.media.clone();
        media_config.signalling_ip = Some(self.peer.addr.ip());
        media_config.muted_until_released = true;
        let app = match self.shared.apps.get(&route.app).await {
            Ok(app) => app,
            Err(e) => {
                tracing::warn!(error = %e, app = %route.app, "the route's application cannot start");
                return Some(
                    self.refuse(E::Reject { status: 500 }, "Server Internal Error")
                        .await,
                );
            }
        };
        let started = CallMedia::start(
            &self.invite.body,
            &self.shared.rtp_pool,
            &self.shared.media_workers,
            ip,
            &app,
            ctx,
            media_config,
        );
        let mut media = match started {
            Ok(media) => media,
            Err(e) => {
                tracing::info!(error = %e, "no media for the call");
                let (status, reason) = e.status();
                return Some(self.refuse(E::Reject { status }, reason).await);
            }
        };
        let cause = self.answer(&mut dialog, &mut media).await;
        media.stop().await;
        Some(cause)
    }

    fn context(&self) -> CallContext {
        let who = self.life.identity();
        CallContext {
            call_id: who.map(|r| r.id.clone()).unwrap_or_default(),
            from: who.map(|r| r.from.clone()).unwrap_or_default(),
            to: who.map(|r| r.to.clone()).unwrap_or_default(),
            org: who.map(|r| r.org.clone()).unwrap_or_default(),
            agent: self.route.as_ref().and_then(|r| r.agent.clone()),
        }
    }

    /// Ends a ringing call with a refusing event: committed first, then the INVITE gets the
    /// status the machine's `RejectInvite` effect names.
    async fn refuse(&mut self, event: E, reason: &str) -> E {
        let status = match self.life.step(event, None).await {
            Ok(effects) => reject_status(&effects),
            Err(e) => {
                tracing::warn!(error = %e, ?event, "refusing the call as failed");
                self.life.end(E::Fail, Some(e.to_string())).await;
                None
            }
        };
        match status {
            Some(status) => self.reject(status, reason).await,
            None => self.reject(500, "Server Internal Error").await,
        }
        event
    }

    /// From ringing to the end of an answered call, with its media running.
    async fn answer(&mut self, dialog: &mut Dialog, media: &mut CallMedia) -> E {
        self.respond_invite(180, "Ringing", None).await;
        if let Some(event) = self.ring().await {
            return event;
        }
        if self.cancel_pending() {
            return self.refuse(E::Cancel, "Request Terminated").await;
        }
        if let Err(e) = self.life.step(E::Answer, None).await {
            self.life.end(E::Fail, Some(e.to_string())).await;
            self.reject(500, "Server Internal Error").await;
            return E::Fail;
        }
        if self.cancel_pending() {
            // The answer is committed but its 200 not sent: the caller left before it heard
            // us, which the machine (answered) records as the caller hanging up.
            let detail = Some("cancelled while the answer was being committed".to_owned());
            self.life.end(E::CallerHangup, detail).await;
            self.reject(487, "Request Terminated").await;
            return E::CallerHangup;
        }
        let answer = media.answer.clone();
        let ok = self.respond_invite(200, "OK", Some(&answer)).await;
        match self.await_ack(&ok, dialog).await {
            AckWait::Acked { body } => {
                if let Err(e) = media.complete_late_offer(&body, &self.shared.media_workers) {
                    tracing::info!(error = %e, "late offer: unusable answer in the ACK");
                    let detail = Some(format!("unusable SDP answer in the ACK: {e}"));
                    self.life.end(E::Fail, detail).await;
                    self.hangup(dialog).await;
                    return E::Fail;
                }
            }
            AckWait::NoAck => return self.end_ours(E::NoAck, dialog).await,
            AckWait::CallerBye => return E::CallerHangup,
        }
        media.release_sending();
        if let Some(event) = self.pending_hangup.take() {
            return self.end_ours(event, dialog).await;
        }
        self.confirmed(dialog, media).await
    }

    fn identity_for(&self, route: &Route, number: String) -> Identity {
        let from = self
            .invite
            .head
            .get("From")
            .map(super::dialog::uri_of)
            .unwrap_or_default();
        Identity {
            id: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            sip_call_id: self.invite.call_id.clone(),
            org: route.org.clone(),
            from,
            to: number,
            outbound: false,
        }
    }

    /// Rings for the configured delay; a CANCEL or hangup in that time ends the call.
    async fn ring(&mut self) -> Option<E> {
        let until = Instant::now() + self.shared.config.answer_delay;
        loop {
            tokio::select! {
                _ = sleep_until(until) => return None,
                event = self.next_event() => match event {
                    Some(CallInput::Cancel) => {
                        return Some(self.refuse(E::Cancel, "Request Terminated").await);
                    }
                    Some(CallInput::Hangup(E::Shutdown)) | None => {
                        return Some(self.refuse(E::Shutdown, "Service Unavailable").await);
                    }
                    Some(CallInput::Hangup(_)) => {
                        // Our side hangs up a call it has not answered: 480, recorded as such.
                        let event = E::Reject { status: 480 };
                        return Some(self.refuse(event, "Temporarily Unavailable").await);
                    }
                    Some(_) => {}
                },
            }
        }
    }

    /// Whether a CANCEL arrived while the store was being written (a hangup that arrived
    /// then is kept for after the ACK).
    fn cancel_pending(&mut self) -> bool {
        while let Ok(event) = self.events.try_recv() {
            match event {
                CallInput::Cancel => return true,
                CallInput::Hangup(event) => self.pending_hangup = Some(event),
                transfer @ CallInput::Transfer { .. } => self.deferred.push_back(transfer),
                _ => {}
            }
        }
        false
    }

    /// Sends a response on the INVITE transaction; returns the bytes sent.
    async fn respond_invite(&self, status: u16, reason: &str, sdp: Option<&[u8]>) -> Vec<u8> {
        let contact = self.contact();
        let record_routes: Vec<&str> = self.invite.head.all("Record-Route").collect();
        let mut parts = ResponseParts::new(status, reason).to_tag(&self.local_tag);
        if (101..300).contains(&status) {
            parts = parts.header("Contact", contact);
            for rr in record_routes {
                parts = parts.header("Record-Route", rr);
            }
        }
        if status == 200 {
            parts = parts.header("Allow", ALLOW);
        }
        if let Some(sdp) = sdp {
            parts = parts.body("application/sdp", sdp);
        }
        let bytes = build_response(&self.invite.head, self.peer.addr, &parts);
        self.core
            .respond(&self.tx, bytes.clone(), status >= 200)
            .await;
        bytes
    }

    pub(super) fn contact(&self) -> String {
        let via = self.shared.via_addr(self.peer.addr);
        match self.peer.is_reliable() {
            true => format!("<sip:{via};transport=tcp>"),
            false => format!("<sip:{via}>"),
        }
    }

    /// Sends a non-2xx final response to the INVITE. The call then ends at once and frees
    /// its admission slot: the dispatcher's transaction keeps the response (64·T1) and
    /// sends it again to every retransmission of the INVITE, which is how a lost final
    /// reaches the caller; its ACK is absorbed there. A flood of refused INVITEs holds no
    /// call task and no slot.
    async fn reject(&mut self, status: u16, reason: &str) {
        self.respond_invite(status, reason, None).await;
    }

    /// Retransmits the 2xx (§13.3.1.4, over every transport) until the ACK or Timer H. A
    /// BYE before the ACK is answered and ends the call; a hangup of ours waits for the ACK.
    async fn await_ack(&mut self, ok: &[u8], dialog: &mut Dialog) -> AckWait {
        let timers = self.shared.config.timers;
        let give_up = Instant::now() + timers.give_up();
        let mut n = 0;
        loop {
            tokio::select! {
                _ = sleep_until(give_up) => return AckWait::NoAck,
                _ = sleep(timers.retransmit_interval(n)) => {
                    self.core.transport.send(&self.peer, ok.to_vec());
                    n += 1;
                }
                event = self.events.recv() => match event {
                    Some(CallInput::Ack { body }) => return AckWait::Acked { body },
                    Some(CallInput::Request { message, peer, tx }) => {
                        // Requests before the ACK (a BYE racing it) are handled as confirmed.
                        if self.in_dialog(&message, &peer, &tx, dialog, None).await.is_some() {
                            return AckWait::CallerBye;
                        }
                    }
                    Some(CallInput::Hangup(event)) => self.pending_hangup = Some(event),
                    // A transfer asked before the ACK runs once the dialog is confirmed.
                    Some(transfer @ CallInput::Transfer { .. }) => self.deferred.push_back(transfer),
                    None => return AckWait::NoAck,
                    Some(_) => {}
                },
            }
        }
    }

    /// The confirmed dialog, until someone hangs up.
    async fn confirmed(&mut self, dialog: &mut Dialog, media: &mut CallMedia) -> E {
        let deadline = Instant::now() + self.shared.config.max_call_duration;
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => return self.end_ours(E::MaxDuration, dialog).await,
                Some(event) = media.events.recv() => match event {
                    MediaEvent::MediaTimeout => return self.end_ours(E::MediaTimeout, dialog).await,
                    MediaEvent::AppAction(Action::Hangup) => {
                        return self.end_ours(E::CalleeHangup, dialog).await;
                    }
                    MediaEvent::AppAction(Action::Transfer { target, summary }) => {
                        // The application's transfer goes to the route's agent, or nowhere
                        // (and the application is told, so the caller is not left waiting).
                        match self.route.as_ref().and_then(|r| r.agent.clone()) {
                            None => {
                                tracing::info!(%target, "the route names no agent: no transfer");
                                media.notify(crate::app::Notice::TransferFailed { status: 480 });
                            }
                            Some(agent) => {
                                let warm = summary.as_deref();
                                let ended = self.transfer(&agent, dialog, media, deadline, false, warm);
                                if let Some(event) = ended.await {
                                    return event;
                                }
                            }
                        }
                    }
                    _ => {}
                },
                event = self.next_event() => match event {
                    Some(CallInput::Request { message, peer, tx })
                        if message.method() == Some(&rsip::Method::Refer) =>
                    {
                        let ended = self.on_refer(&message, &peer, &tx, dialog, media, deadline);
                        if let Some(event) = ended.await {
                            return event;
                        }
                    }
                    Some(CallInput::Request { message, peer, tx }) => {
                        if let Some(event) =
                            self.in_dialog(&message, &peer, &tx, dialog, Some(media)).await
                        {
                            return event;
                        }
                    }
                    Some(CallInput::Transfer { agent }) => {
                        if let Some(event) =
                            self.transfer(&agent, dialog, media, deadline, false, None).await
                        {
                            return event;
                        }
                    }
                    Some(CallInput::Hangup(event)) => return self.end_ours(event, dialog).await,
                    None => return self.end_ours(E::Shutdown, dialog).await,
                    Some(_) => {}
                },
            }
        }
    }

    /// The next event: deferred ones first, then the queue.
    pub(super) async fn next_event(&mut self) -> Option<CallInput> {
        match self.deferred.pop_front() {
            Some(event) => Some(event),
            None => self.events.recv().await,
        }
    }

    /// Sends BYE and waits for its final response (or Timer F).
    pub(super) async fn hangup(&mut self, dialog: &mut Dialog) {
        let branch = format!("z9hG4bK{}", random_token());
        let outcome = send_request(
            "BYE",
            &branch,
            dialog,
            &self.peer,
            &self.core,
            &self.shared,
            &mut self.events,
        )
        .await;
        if let Outcome::TimedOut = outcome.outcome {
            tracing::debug!(call_id = %dialog.call_id, "BYE unanswered (Timer F)");
        }
    }
}
