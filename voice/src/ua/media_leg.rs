//! A call's media, through the media side's API: the INVITE's offer is answered with
//! [`crate::sdp::answer`], an RTP session from the port pool runs the route's application
//! (an [`AppSpec`] parsed once per route, see `ua::apps`), and what the session reports (media timeout, the
//! application's Hangup and Transfer) comes back to the call as [`MediaEvent`]s.
//!
//! A re-INVITE is answered from the same local media with the session version bumped, and
//! the session is updated (hold and resume). DTMF received by SIP INFO is handed to the
//! application as if it came in RTP. An agent leg of a transfer gets a port and an offer of
//! its own; once the agent answers, both legs run the two sides of [`crate::app::bridge`].

use crate::app::{bridge, AppSpec, AppSpecError, CallContext};
use crate::media::{
    BoundMedia, MediaConfig, MediaError, MediaEvent, MediaHandle, MediaSession, MediaWorkers,
    PortPool,
};
use crate::sdp::{
    accept_answer, answer, offer, Direction, LocalMedia, NegotiationError, SdpError,
    SessionDescription,
};
use std::net::IpAddr;
use tokio::sync::mpsc;

/// Why media could not be set up; each maps to the status the INVITE is refused with.
#[derive(Debug, thiserror::Error)]
pub enum MediaSetupError {
    #[error("no SDP where one was needed")]
    NoOffer,
    #[error("the offer is not UTF-8")]
    NotUtf8,
    #[error("malformed offer")]
    Sdp(#[from] SdpError),
    #[error(transparent)]
    Negotiation(#[from] NegotiationError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("the route's application cannot start")]
    App(#[from] AppSpecError),
}

impl MediaSetupError {
    /// The final response to the INVITE.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::NoOffer | Self::NotUtf8 | Self::Sdp(_) | Self::Negotiation(_) => {
                (488, "Not Acceptable Here")
            }
            Self::Media(e) if e.is_transient() => (503, "Service Unavailable"),
            Self::Media(_) | Self::App(_) => (500, "Server Internal Error"),
        }
    }
}

/// An agent leg's port and offer, before the agent answers.
pub struct AgentOffer {
    bound: BoundMedia,
    local: LocalMedia,
    pub sdp: Vec<u8>,
}

impl AgentOffer {
    /// The far end answered this offer with `answer_sdp`: the leg's media starts running
    /// `app` on its own (a call we placed, see `ua::outbound`).
    pub fn start_app(
        self,
        answer_sdp: &[u8],
        workers: &MediaWorkers,
        app: Box<dyn crate::app::CallApp>,
        ctx: CallContext,
        config: MediaConfig,
    ) -> Result<AgentMedia, MediaSetupError> {
        let answered = parse_offer(answer_sdp)?;
        let negotiated = accept_answer(&self.local, Direction::SendRecv, &answered)?;
        let (handle, events) = workers.start(self.bound, &negotiated, app, ctx, config)?;
        Ok(AgentMedia {
            handle: Some(handle),
            events,
        })
    }
}

/// The running media of an agent leg (bridged to the caller's), or of a call we placed.
pub struct AgentMedia {
    handle: Option<MediaHandle>,
    pub events: mpsc::Receiver<MediaEvent>,
}

impl AgentMedia {
    /// A DTMF digit received by SIP INFO: to the leg's application, as if it came in RTP.
    pub fn info_dtmf(&self, digit: char) {
        if let Some(handle) = &self.handle {
            if let Err(e) = handle.dtmf(digit) {
                tracing::debug!(error = %e, %digit, "INFO digit not delivered");
            }
        }
    }

    pub async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let stats = handle.stop().await;
            tracing::debug!(?stats, "agent media stopped");
        }
    }
}

/// A late-offer call's media, waiting for the answer in the ACK.
struct Pending {
    bound: BoundMedia,
    app: Box<dyn crate::app::CallApp>,
    ctx: CallContext,
    config: MediaConfig,
}

/// The running media of one call.
pub struct CallMedia {
    handle: Option<MediaHandle>,
    pending: Option<Pending>,
    pub events: mpsc::Receiver<MediaEvent>,
    /// Our current SDP (the answer to the last offer).
    pub answer: Vec<u8>,
    local: LocalMedia,
}

fn parse_offer(offer: &[u8]) -> Result<SessionDescription, MediaSetupError> {
    if offer.is_empty() {
        return Err(MediaSetupError::NoOffer);
    }
    let text = std::str::from_utf8(offer).map_err(|_| MediaSetupError::NotUtf8)?;
    Ok(SessionDescription::parse(text)?)
}

impl CallMedia {
    /// Answers the offer and starts the session running a fresh `app`.
    pub fn start(
        offer_sdp: &[u8],
        pool: &PortPool,
        workers: &MediaWorkers,
        advertised: IpAddr,
        app: &AppSpec,
        ctx: CallContext,
        config: MediaConfig,
    ) -> Result<Self, MediaSetupError> {
        let app = app.build();
        let bound = MediaSession::bind(pool)?;
        let local = LocalMedia::new(advertised, bound.port(), u64::from(fastrand::u32(..)));
        if offer_sdp.is_empty() {
            // Late offer: our 2xx carries the offer, the ACK the answer.
            let sdp = offer(&local, Direction::SendRecv).to_string().into_bytes();
            let (_unused, events) = mpsc::channel(1);
            let pending = Pending {
                bound,
                app,
                ctx,
                config,
            };
            return Ok(Self {
                handle: None,
                pending: Some(pending),
                events,
                answer: sdp,
                local,
            });
        }
        let offered = parse_offer(offer_sdp)?;
        let (answer_sdp, negotiated) = answer(&offered, &local)?;
        let (handle, events) = workers.start(bound, &negotiated, app, ctx, config)?;
        Ok(Self {
            handle: Some(handle),
            pending: None,
            events,
            answer: answer_sdp.to_string().into_bytes(),
            local,
        })
    }

    /// For a late offer, starts the media on the answer the ACK carried; nothing to do for
    /// a call whose INVITE had the offer.
    pub fn complete_late_offer(
        &mut self,
        ack_body: &[u8],
        workers: &MediaWorkers,
    ) -> Result<(), MediaSetupError> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let answered = parse_offer(ack_body)?;
        let negotiated = accept_answer(&self.local, Direction::SendRecv, &answered)?;
        let (handle, events) = workers.start(
            pending.bound,
            &negotiated,
            pending.app,
            pending.ctx,
            pending.config,
        )?;
        self.handle = Some(handle);
        self.events = events;
        Ok(())
    }

    /// Answers a re-INVITE's offer and moves the session to what it agreed (hold, resume,
    /// a new remote). Returns our answer and whether the offer puts the call on hold
    /// (`sendonly`, `inactive` or no address), `None` for an empty offer (the current SDP
    /// is sent back, nothing changes).
    pub fn reoffer(
        &mut self,
        offer_sdp: &[u8],
    ) -> Result<(Vec<u8>, Option<bool>), MediaSetupError> {
        if offer_sdp.is_empty() {
            return Ok((self.answer.clone(), None));
        }
        let offered = parse_offer(offer_sdp)?;
        self.local.session_version += 1;
        let (answer_sdp, negotiated) = answer(&offered, &self.local)?;
        let hold = negotiated.remote_rtp.is_none()
            || matches!(
                negotiated.remote_direction,
                Direction::SendOnly | Direction::Inactive
            );
        if let Some(handle) = &self.handle {
            handle.update(negotiated)?;
        }
        self.answer = answer_sdp.to_string().into_bytes();
        Ok((self.answer.clone(), Some(hold)))
    }

    /// The caller's ACK came: the session (started muted) may send, to the latched source
    /// or the signalling host only (see `MediaConfig::signalling_ip`).
    pub fn release_sending(&self) {
        if let Some(handle) = &self.handle {
            if let Err(e) = handle.release_sending() {
                tracing::debug!(error = %e, "media gone before it was released");
            }
        }
    }

    /// A DTMF digit received by SIP INFO: to the application, as if it came in RTP.
    pub fn info_dtmf(&self, digit: char) {
        if let Some(handle) = &self.handle {
            if let Err(e) = handle.dtmf(digit) {
                tracing::debug!(error = %e, %digit, "INFO digit not delivered");
            }
        }
    }

    /// Tells the caller's application what call control learned (a failed transfer).
    pub fn notify(&self, notice: crate::app::Notice) {
        if let Some(handle) = &self.handle {
            if let Err(e) = handle.notify(notice) {
                tracing::debug!(error = %e, ?notice, "notice not delivered");
            }
        }
    }

    /// A port and an SDP offer for an agent leg (see the module docs).
    pub fn agent_offer(pool: &PortPool, advertised: IpAddr) -> Result<AgentOffer, MediaSetupError> {
        let bound = MediaSession::bind(pool)?;
        let local = LocalMedia::new(advertised, bound.port(), u64::from(fastrand::u32(..)));
        let sdp = offer(&local, Direction::SendRecv).to_string().into_bytes();
        Ok(AgentOffer { bound, local, sdp })
    }

    /// The agent answered `offer` with `answer_sdp`: starts the agent leg's media and
    /// switches both legs to the two sides of a bridge.
    pub fn bridge_to(
        &self,
        offer: AgentOffer,
        answer_sdp: &[u8],
        workers: &MediaWorkers,
        ctx: CallContext,
        config: MediaConfig,
    ) -> Result<AgentMedia, MediaSetupError> {
        let answered = parse_offer(answer_sdp)?;
        let negotiated = accept_answer(&offer.local, Direction::SendRecv, &answered)?;
        let (caller_side, agent_side) = bridge::pair();
        let (handle, events) = workers.start(
            offer.bound,
            &negotiated,
            Box::new(agent_side),
            ctx.clone(),
            config,
        )?;
        if let Some(caller) = &self.handle {
            caller.set_app(Box::new(caller_side), ctx)?;
        }
        Ok(AgentMedia {
            handle: Some(handle),
            events,
        })
    }

    /// Stops the session (its port goes back to the pool).
    pub async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let stats = handle.stop().await;
            tracing::debug!(?stats, "media stopped");
        }
    }
}
