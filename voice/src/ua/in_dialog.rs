//! Requests inside a call's dialog (BYE, INFO, re-INVITE, OPTIONS) and the two ways a call
//! ends from here: the caller's BYE (its end committed, then 200) and our own hangup (the
//! end committed, then BYE). REFER lives in `transfer`.

use super::call::{Call, CallInput};
use super::dialog::Dialog;
use super::dispatcher::{TxKey, ALLOW};
use super::dtmf_info;
use super::lifecycle::StepError;
use super::media_leg::CallMedia;
use super::ports::CallEvent as E;
use crate::sip::message::Inbound;
use crate::sip::response::{build_response, ResponseParts};
use crate::sip::transport::Peer;

impl Call {
    /// Answers one in-dialog request; returns the event that ended the call when it did
    /// (a BYE: its end is committed before the 200 goes out).
    pub(super) async fn in_dialog(
        &mut self,
        message: &Inbound,
        peer: &Peer,
        tx: &TxKey,
        dialog: &mut Dialog,
        media: Option<&mut CallMedia>,
    ) -> Option<E> {
        let reply = |parts: ResponseParts<'_>| build_response(&message.head, peer.addr, &parts);
        if !dialog.accept_remote_cseq(message.cseq) {
            let bytes = reply(ResponseParts::new(
                500,
                "Server Internal Error (CSeq out of order)",
            ));
            self.core.respond(tx, bytes, true).await;
            return None;
        }
        let bytes = match message.method() {
            Some(rsip::Method::Bye) => {
                self.answer_bye(message, peer, tx).await;
                return Some(E::CallerHangup);
            }
            Some(rsip::Method::Info) => {
                let (digit, parts) = dtmf_info::answer(message);
                if let (Some(digit), Some(media)) = (digit, media) {
                    media.info_dtmf(digit);
                }
                reply(parts)
            }
            Some(rsip::Method::Invite) => {
                // Re-INVITE (hold, resume, refresh): a new offer/answer on the same session.
                let answered = match media {
                    Some(media) => media.reoffer(&message.body),
                    None => Err(super::media_leg::MediaSetupError::NoOffer),
                };
                match answered {
                    Ok((answer, hold)) => {
                        let step = hold.map(|hold| if hold { E::Hold } else { E::Resume });
                        if let Some(ended) = self.hold_step(step, dialog).await {
                            let parts = ResponseParts::new(500, "Server Internal Error");
                            self.core.respond(tx, reply(parts), true).await;
                            return Some(ended);
                        }
                        let parts = ResponseParts::new(200, "OK")
                            .header("Contact", self.contact())
                            .header("Allow", ALLOW)
                            .body("application/sdp", &answer);
                        reply(parts)
                    }
                    Err(e) => {
                        let (status, reason) = e.status();
                        reply(ResponseParts::new(status, reason))
                    }
                }
            }
            Some(rsip::Method::Options) => {
                reply(ResponseParts::new(200, "OK").header("Allow", ALLOW))
            }
            _ => reply(ResponseParts::new(501, "Not Implemented")),
        };
        self.core.respond(tx, bytes, true).await;
        None
    }

    /// Commits a hold or resume; a refusing store ends the call (BYE, `failed`), which is
    /// returned. A step the machine refuses in this state (a hold while an agent rings)
    /// changes nothing.
    async fn hold_step(&mut self, step: Option<E>, dialog: &mut Dialog) -> Option<E> {
        let step = step?;
        match self.life.step(step, None).await {
            Ok(_) => None,
            Err(StepError::Refused(refused)) => {
                tracing::debug!(%refused, "re-INVITE not recorded as hold/resume");
                None
            }
            Err(StepError::Store(e)) => {
                self.life.end(E::Fail, Some(e.to_string())).await;
                self.hangup(dialog).await;
                Some(E::Fail)
            }
        }
    }

    /// The caller's BYE: the end is committed, then answered 200.
    pub(super) async fn answer_bye(&mut self, bye: &Inbound, peer: &Peer, tx: &TxKey) {
        self.life.end(E::CallerHangup, None).await;
        let bytes = build_response(&bye.head, peer.addr, &ResponseParts::new(200, "OK"));
        self.core.respond(tx, bytes, true).await;
    }

    /// Ends the call from our side: the end (with its own cause) is committed, then BYE.
    pub(super) async fn end_ours(&mut self, event: E, dialog: &mut Dialog) -> E {
        self.life.end(event, None).await;
        self.hangup(dialog).await;
        event
    }

    /// BYEs that arrived while our own BYE was in flight: the end is committed by now.
    pub(super) async fn answer_leftover_byes(&mut self) {
        while let Some(input) = self.deferred.pop_front() {
            if let CallInput::Request { message, peer, tx } = input {
                if message.method() == Some(&rsip::Method::Bye) {
                    let ok = ResponseParts::new(200, "OK");
                    let bytes = build_response(&message.head, peer.addr, &ok);
                    self.core.respond(&tx, bytes, true).await;
                }
            }
        }
    }
}
