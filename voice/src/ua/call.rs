//! One task per call, owning its dialog from the INVITE to the end. Its life, in order:
//!
//! ```text
//! route the dialled number ──none──► 404        (no call recorded)
//! record Ringing ──► 180 Ringing ──► [ring for answer_delay; CANCEL ─► 487]
//! record Answered (the store acknowledges) ──► 200 OK with SDP
//! retransmit 200 (Timer G, T1 doubling to T2) until ACK; Timer H ─► BYE, NoAck
//! confirmed: BYE ─► 200, RemoteHangup · INFO ─► DTMF · re-INVITE ─► 200
//!            max duration / application hangup ─► BYE (Timers E/F)
//! record Ended with its cause ──► tell the dispatcher
//! ```
//!
//! Non-2xx finals to the INVITE (404, 487, 488, 500) are retransmitted over UDP with
//! Timer G until the ACK or Timer H, then the task ends.

use super::client::{send_request, Outcome};
use super::dialog::Dialog;
use super::dispatcher::{random_token, Command, CoreHandle, DialogKey, TxKey, ALLOW};
use super::dtmf_info;
use super::media_leg::CallMedia;
use super::ports::{CallState, CallTransition, EndCause, Route};
use super::Shared;
use crate::app::{Action, CallContext};
use crate::media::MediaEvent;
use crate::sip::message::Inbound;
use crate::sip::response::{build_response, ResponseParts};
use crate::sip::transport::Peer;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};

/// What the dispatcher (or, later, the media side) tells a call.
#[derive(Debug)]
pub enum CallEvent {
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
    /// End the call from our side (application hangup, media timeout).
    Hangup(EndCause),
    /// Transfer the caller to this registered agent (application action).
    Transfer { agent: String },
    /// The caller's BYE arrived while the call waited on a request of its own, and was
    /// answered then.
    RemoteBye,
}

/// Everything a new call task starts from.
pub struct CallSetup {
    pub invite: Inbound,
    pub peer: Peer,
    pub tx: TxKey,
    pub local_tag: String,
    pub events: mpsc::Receiver<CallEvent>,
    /// The sending side of `events`, for legs this call opens (the agent's dialog).
    pub control: mpsc::Sender<CallEvent>,
    pub core: CoreHandle,
    pub shared: Arc<Shared>,
}

/// The identity of a routed call, as reported to the store.
struct Record {
    id: String,
    org: String,
    from: String,
    to: String,
}

pub(super) struct Call {
    pub(super) invite: Inbound,
    pub(super) peer: Peer,
    tx: TxKey,
    local_tag: String,
    pub(super) events: mpsc::Receiver<CallEvent>,
    pub(super) control: mpsc::Sender<CallEvent>,
    pub(super) core: CoreHandle,
    pub(super) shared: Arc<Shared>,
    record: Option<Record>,
    /// A hangup asked for before the ACK: sent once the dialog is confirmed (§15).
    pending_hangup: Option<EndCause>,
    /// Events that arrived while a client transaction was waiting; handled first.
    pub(super) deferred: std::collections::VecDeque<CallEvent>,
}

/// How the wait for the ACK of our 2xx ended.
enum AckWait {
    Acked {
        body: Vec<u8>,
    },
    /// Timer H fired, or the user agent is shutting down.
    NoAck,
    /// The caller sent BYE before its ACK (answered already).
    RemoteBye,
}

/// Runs one call to its end.
pub async fn run(setup: CallSetup) {
    let dialog = DialogKey {
        call_id: setup.invite.call_id.clone(),
        local_tag: setup.local_tag.clone(),
    };
    let commands = setup.core.commands.clone();
    let mut call = Call {
        invite: setup.invite,
        peer: setup.peer,
        tx: setup.tx,
        local_tag: setup.local_tag,
        events: setup.events,
        control: setup.control,
        core: setup.core,
        shared: setup.shared,
        record: None,
        pending_hangup: None,
        deferred: Default::default(),
    };
    if let Some(cause) = call.drive().await {
        call.report(CallState::Ended, Some(cause)).await.ok();
    }
    let _ = commands.send(Command::Ended { dialog }).await;
}

impl Call {
    /// Returns the end cause of a call that was recorded (None when it never rang).
    async fn drive(&mut self) -> Option<EndCause> {
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
        self.record = Some(self.record_for(&route, number));
        if self.report(CallState::Ringing, None).await.is_err() {
            self.reject(500, "Server Internal Error").await;
            return Some(EndCause::StoreFailed);
        }
        let ip = self.shared.advertised_ip(self.peer.addr);
        let ctx = self.context();
        let started = CallMedia::start(
            &self.invite.body,
            &self.shared.rtp_pool,
            &self.shared.media_workers,
            ip,
            &route.app,
            ctx,
            self.shared.config.media.clone(),
        );
        let mut media = match started {
            Ok(media) => media,
            Err(e) => {
                tracing::info!(error = %e, "no media for the call");
                let (status, reason) = e.status();
                self.reject(status, reason).await;
                return Some(EndCause::Rejected { status });
            }
        };
        let cause = self.answer(&mut dialog, &mut media).await;
        media.stop().await;
        Some(cause)
    }

    fn context(&self) -> CallContext {
        let record = self.record.as_ref();
        CallContext {
            call_id: record.map(|r| r.id.clone()).unwrap_or_default(),
            from: record.map(|r| r.from.clone()).unwrap_or_default(),
            to: record.map(|r| r.to.clone()).unwrap_or_default(),
        }
    }

    /// From ringing to the end of an answered call, with its media running.
    async fn answer(&mut self, dialog: &mut Dialog, media: &mut CallMedia) -> EndCause {
        self.respond_invite(180, "Ringing", None).await;
        if let Some(cause) = self.ring().await {
            return cause;
        }
        if self.report(CallState::Answered, None).await.is_err() {
            self.reject(500, "Server Internal Error").await;
            return EndCause::StoreFailed;
        }
        if self.cancel_pending() {
            self.reject(487, "Request Terminated").await;
            return EndCause::Cancelled;
        }
        let answer = media.answer.clone();
        let ok = self.respond_invite(200, "OK", Some(&answer)).await;
        match self.await_ack(&ok, dialog).await {
            AckWait::Acked { body } => {
                if let Err(e) = media.complete_late_offer(&body, &self.shared.media_workers) {
                    tracing::info!(error = %e, "late offer: unusable answer in the ACK");
                    self.hangup(dialog).await;
                    return EndCause::Rejected { status: 488 };
                }
            }
            AckWait::NoAck => {
                self.hangup(dialog).await;
                return EndCause::NoAck;
            }
            AckWait::RemoteBye => return EndCause::RemoteHangup,
        }
        if let Some(cause) = self.pending_hangup.take() {
            self.hangup(dialog).await;
            return cause;
        }
        self.confirmed(dialog, media).await
    }

    fn record_for(&self, route: &Route, number: String) -> Record {
        let from = self
            .invite
            .head
            .get("From")
            .map(super::dialog::uri_of)
            .unwrap_or_default();
        Record {
            id: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            org: route.org.clone(),
            from,
            to: number,
        }
    }

    /// Reports a transition of a routed call and waits for the store.
    pub(super) async fn report(
        &self,
        state: CallState,
        cause: Option<EndCause>,
    ) -> Result<(), super::ports::StoreError> {
        let Some(record) = &self.record else {
            return Ok(());
        };
        let transition = CallTransition {
            call_id: record.id.clone(),
            sip_call_id: self.invite.call_id.clone(),
            org: record.org.clone(),
            from: record.from.clone(),
            to: record.to.clone(),
            state,
            cause,
            at: SystemTime::now(),
        };
        let result = self.shared.store.record(transition).await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, ?state, "call store refused a transition");
        }
        result
    }

    /// Rings for the configured delay; a CANCEL or hangup in that time ends the call.
    async fn ring(&mut self) -> Option<EndCause> {
        let until = Instant::now() + self.shared.config.answer_delay;
        loop {
            tokio::select! {
                _ = sleep_until(until) => return None,
                event = self.next_event() => match event {
                    Some(CallEvent::Cancel) => {
                        self.reject(487, "Request Terminated").await;
                        return Some(EndCause::Cancelled);
                    }
                    Some(CallEvent::Hangup(cause)) => {
                        self.reject(480, "Temporarily Unavailable").await;
                        return Some(cause);
                    }
                    None => {
                        self.reject(503, "Service Unavailable").await;
                        return Some(EndCause::Shutdown);
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
                CallEvent::Cancel => return true,
                CallEvent::Hangup(cause) => self.pending_hangup = Some(cause),
                transfer @ CallEvent::Transfer { .. } => self.deferred.push_back(transfer),
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

    fn contact(&self) -> String {
        let via = self.shared.via_addr(self.peer.addr);
        match self.peer.is_reliable() {
            true => format!("<sip:{via};transport=tcp>"),
            false => format!("<sip:{via}>"),
        }
    }

    /// Sends a non-2xx final response to the INVITE and, over UDP, retransmits it (Timer G)
    /// until the ACK or Timer H.
    async fn reject(&mut self, status: u16, reason: &str) {
        let bytes = self.respond_invite(status, reason, None).await;
        if self.peer.is_reliable() {
            return;
        }
        let timers = self.shared.config.timers;
        let give_up = Instant::now() + timers.give_up();
        let mut n = 0;
        loop {
            tokio::select! {
                _ = sleep_until(give_up) => return,
                _ = sleep(timers.retransmit_interval(n)) => {
                    self.core.transport.send(&self.peer, bytes.clone());
                    n += 1;
                }
                event = self.next_event() => match event {
                    Some(CallEvent::Ack { .. }) | None => return,
                    Some(_) => {}
                },
            }
        }
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
                    Some(CallEvent::Ack { body }) => return AckWait::Acked { body },
                    Some(CallEvent::Request { message, peer, tx }) => {
                        // Requests before the ACK (a BYE racing it) are handled as confirmed.
                        if self.in_dialog(&message, &peer, &tx, dialog, None).await.is_some() {
                            return AckWait::RemoteBye;
                        }
                    }
                    Some(CallEvent::Hangup(cause)) => self.pending_hangup = Some(cause),
                    Some(CallEvent::RemoteBye) => return AckWait::RemoteBye,
                    // A transfer asked before the ACK runs once the dialog is confirmed.
                    Some(transfer @ CallEvent::Transfer { .. }) => self.deferred.push_back(transfer),
                    None => return AckWait::NoAck,
                    Some(_) => {}
                },
            }
        }
    }

    /// The confirmed dialog, until someone hangs up.
    async fn confirmed(&mut self, dialog: &mut Dialog, media: &mut CallMedia) -> EndCause {
        let deadline = Instant::now() + self.shared.config.max_call_duration;
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => {
                    self.hangup(dialog).await;
                    return EndCause::MaxDuration;
                }
                Some(event) = media.events.recv() => match event {
                    MediaEvent::MediaTimeout => {
                        self.hangup(dialog).await;
                        return EndCause::MediaTimeout;
                    }
                    MediaEvent::AppAction(Action::Hangup) => {
                        self.hangup(dialog).await;
                        return EndCause::LocalHangup;
                    }
                    MediaEvent::AppAction(Action::Transfer { target }) => {
                        if let Some(cause) =
                            self.transfer(&target, dialog, media, deadline, false).await
                        {
                            return cause;
                        }
                    }
                    _ => {}
                },
                event = self.next_event() => match event {
                    Some(CallEvent::Request { message, peer, tx })
                        if message.method() == Some(&rsip::Method::Refer) =>
                    {
                        let ended = self.on_refer(&message, &peer, &tx, dialog, media, deadline);
                        if let Some(cause) = ended.await {
                            return cause;
                        }
                    }
                    Some(CallEvent::Request { message, peer, tx }) => {
                        if let Some(cause) =
                            self.in_dialog(&message, &peer, &tx, dialog, Some(media)).await
                        {
                            return cause;
                        }
                    }
                    Some(CallEvent::Transfer { agent }) => {
                        if let Some(cause) =
                            self.transfer(&agent, dialog, media, deadline, false).await
                        {
                            return cause;
                        }
                    }
                    Some(CallEvent::Hangup(cause)) => {
                        self.hangup(dialog).await;
                        return cause;
                    }
                    Some(CallEvent::RemoteBye) => return EndCause::RemoteHangup,
                    None => {
                        self.hangup(dialog).await;
                        return EndCause::Shutdown;
                    }
                    Some(_) => {}
                },
            }
        }
    }

    /// Answers one in-dialog request; returns the end cause when it ends the call.
    async fn in_dialog(
        &mut self,
        message: &Inbound,
        peer: &Peer,
        tx: &TxKey,
        dialog: &mut Dialog,
        media: Option<&mut CallMedia>,
    ) -> Option<EndCause> {
        let reply = |parts: ResponseParts<'_>| build_response(&message.head, peer.addr, &parts);
        if !dialog.accept_remote_cseq(message.cseq) {
            let bytes = reply(ResponseParts::new(
                500,
                "Server Internal Error (CSeq out of order)",
            ));
            self.core.respond(tx, bytes, true).await;
            return None;
        }
        let (bytes, ended) = match message.method() {
            Some(rsip::Method::Bye) => (reply(ResponseParts::new(200, "OK")), true),
            Some(rsip::Method::Info) => {
                let content_type = message.head.get("Content-Type").unwrap_or_default();
                match dtmf_info::digit(content_type, &message.body) {
                    Some(digit) => {
                        if let Some(media) = media {
                            media.info_dtmf(digit);
                        }
                        (reply(ResponseParts::new(200, "OK")), false)
                    }
                    None => {
                        let parts = ResponseParts::new(415, "Unsupported Media Type")
                            .header("Accept", "application/dtmf-relay, application/dtmf");
                        (reply(parts), false)
                    }
                }
            }
            Some(rsip::Method::Invite) => {
                // Re-INVITE (hold, resume, refresh): a new offer/answer on the same session.
                let answered = match media {
                    Some(media) => media.reoffer(&message.body),
                    None => Err(super::media_leg::MediaSetupError::NoOffer),
                };
                match answered {
                    Ok(answer) => {
                        let parts = ResponseParts::new(200, "OK")
                            .header("Contact", self.contact())
                            .header("Allow", ALLOW)
                            .body("application/sdp", &answer);
                        (reply(parts), false)
                    }
                    Err(e) => {
                        let (status, reason) = e.status();
                        (reply(ResponseParts::new(status, reason)), false)
                    }
                }
            }
            Some(rsip::Method::Options) => (
                reply(ResponseParts::new(200, "OK").header("Allow", ALLOW)),
                false,
            ),
            _ => (reply(ResponseParts::new(501, "Not Implemented")), false),
        };
        self.core.respond(tx, bytes, true).await;
        ended.then_some(EndCause::RemoteHangup)
    }

    /// The next event: deferred ones first, then the queue.
    pub(super) async fn next_event(&mut self) -> Option<CallEvent> {
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
