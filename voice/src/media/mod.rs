//! RTP media of call legs: one leg per call side, driven every 20 ms by a media worker.
//!
//! ```text
//!            UDP (port from the PortPool)                         bounded, try_send
//!  caller ──RTP──▶ latch source ─▶ telephone-event? ─▶ DtmfReceiver ─▶ app.on_dtmf ─▶ events
//!                                └▶ audio ─▶ JitterBuffer
//!  every 20 ms tick: JitterBuffer.pop ─▶ audio::G711Law decode ─▶ app.on_audio ─▶ actions
//!                    Playback.read (or DTMF out) ─▶ audio::G711Law encode ─▶ RTP ─▶ caller
//! ```
//!
//! Pure parts: [`rtp`], [`dtmf`], [`jitter`], [`playback`] (G.711 and WAV come from the
//! `audio` crate, shared with `stt-tts`). Effects live in
//! [`session`] (handles and workers), `leg` (one leg's state, driven per tick), `worker` (the
//! 20 ms loop over many legs), [`port_pool`] (sockets) and [`recorder`] (a writer thread). A
//! worker never awaits anything but its timer and its intake: the app is called
//! synchronously, events and recordings go through bounded channels with `try_send`,
//! sockets are non-blocking (a full send buffer drops the packet).
//!
//! Silence policy: when the app has nothing queued, the session still sends a packet every
//! 20 ms, of G.711 silence. Continuous RTP keeps NAT bindings open and keeps carriers' and
//! phones' own RTP timeouts quiet; it costs ~8 kB/s per call. While our direction is
//! `recvonly` or `inactive` (hold) nothing is sent. Comfort noise (payload 13) received is
//! counted as activity and otherwise ignored.
//!
//! RTCP: every leg sends a compound SR (or RR) + SDES CNAME about every 5 s to the remote's
//! RTCP port (RTP port + 1, or the source its RTCP came from), and reads the far end's
//! reports twice a second into [`MediaStats`] (its view of our stream's loss and jitter).
//!
//! Use from call control (an INVITE with an SDP offer, answered by the `echo` application):
//!
//! ```no_run
//! # async fn example(offer_body: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use voice::app::{parse_app_spec, Action, CallContext};
//! use voice::media::{MediaConfig, MediaEvent, MediaSession, MediaWorkers, PortPool};
//! use voice::sdp::{answer, LocalMedia, SessionDescription};
//!
//! // Once, at start-up: the port range from config and one worker per core.
//! let ip = "192.0.2.10".parse()?;
//! let pool = PortPool::new(ip, 20000..=29999)?;
//! let workers = MediaWorkers::new(2)?;
//!
//! // Per INVITE: take a port, answer the offer (a NegotiationError is a 488), start media.
//! let bound = MediaSession::bind(&pool)?;
//! let local = LocalMedia::new(ip, bound.port(), 42);
//! let offer = SessionDescription::parse(offer_body)?;
//! let (answer_sdp, negotiated) = answer(&offer, &local)?;
//! let _body_of_200_ok = answer_sdp.to_string();
//! let app = parse_app_spec("echo")?;
//! let ctx = CallContext { call_id: "c1".into(), from: "alice".into(), to: "100".into(), ..Default::default() };
//! let (media, mut events) = workers.start(bound, &negotiated, app, ctx, MediaConfig::default())?;
//!
//! // Call control reacts to media events; a re-INVITE goes through `answer` and `update`.
//! while let Some(event) = events.recv().await {
//!     match event {
//!         MediaEvent::AppAction(Action::Hangup) | MediaEvent::MediaTimeout => break, // send BYE
//!         MediaEvent::AppAction(Action::Transfer { target: _ }) => { /* call the agent */ }
//!         _ => {}
//!     }
//! }
//! let stats = media.stop().await;
//! # let _ = stats; Ok(())
//! # }
//! ```

pub mod dtmf;
pub mod jitter;
mod leg;
pub mod playback;
pub mod port_pool;
pub mod recorder;
pub mod rtcp;
pub mod rtp;
pub mod session;
mod worker;

pub use jitter::{JitterConfig, JitterStats};
pub use port_pool::{PortLease, PortPool, PortPoolError, RtpSockets};
pub use session::{
    BoundMedia, MediaConfig, MediaError, MediaEvent, MediaHandle, MediaSession, MediaStats,
    MediaWorkers, RemoteReport,
};
