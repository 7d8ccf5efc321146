//! The handle call control holds for a call leg's media, and the workers that drive legs.
//!
//! Lifecycle: [`MediaSession::bind`] takes a port (its number goes into the SDP answer or
//! offer); [`BoundMedia::start`] runs the leg on a worker task of its own, or
//! [`MediaWorkers::start`] adds it to one of a few shared workers (what a busy gateway wants:
//! a thread per worker, one timer and four wake-ups per worker per 20 ms, however many
//! calls); [`MediaHandle::stop`]
//! ends the leg and returns its final [`MediaStats`]. Dropping the handle ends the leg too.
//! The port goes back to the pool when the leg ends.
//!
//! ```text
//!  MediaHandle ──commands (bounded, try_send)──▶ worker: every 20 ms, for each leg (in 4 phases):
//!  MediaHandle ◀──events (bounded, try_send)───     commands → drain socket → play out → app → send
//! ```
//!
//! Commands are applied at the next tick (within 20 ms). A worker never awaits anything
//! but its timer and its intake of new legs.

use super::jitter::{JitterConfig, JitterStats};
use super::leg::Leg;
use super::port_pool::{PortLease, PortPool, PortPoolError, RtpSockets};
use crate::app::{Action, CallApp, CallContext};
use crate::sdp::Negotiated;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Settings of a media session.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// No RTP from the remote for this long (while it should be sending) reports
    /// [`MediaEvent::MediaTimeout`]. Default 30 s.
    pub inactivity_timeout: Duration,
    /// Jitter buffer bounds.
    pub jitter: JitterConfig,
    /// Capacity of the event channel; events beyond it are dropped and counted. Default 64.
    pub events_capacity: usize,
    /// How often a [`MediaEvent::Stats`] is emitted; `None` for never. Default 5 s.
    pub stats_interval: Option<Duration>,
    /// Where [`Action::StartRecording`] writes; `None` refuses recording. Default `None`.
    pub recording_path: Option<PathBuf>,
    /// Length of an outgoing DTMF press, in 20 ms packets. Default 5 (100 ms).
    pub dtmf_frames: u16,
    /// How often RTCP reports are sent (randomised ±50% as RFC 3550 §6.3.1 asks);
    /// `None` sends none. Default 5 s.
    pub rtcp_interval: Option<Duration>,
    /// The CNAME in our RTCP SDES. Default `dartwing`.
    pub cname: String,
    /// The IP the call's signalling came from. `Some`: RTP and RTCP go to the SDP address
    /// only when it is this IP; anywhere else only once RTP came from there (latching), so
    /// an SDP naming a third party cannot aim our stream at it. `None`: the SDP address as
    /// given (a leg we called out on ourselves). Default `None`.
    pub signalling_ip: Option<IpAddr>,
    /// Start muted: nothing is sent (RTP or RTCP) until [`MediaHandle::release_sending`]
    /// (the user agent releases on the caller's ACK). Default `false`.
    pub muted_until_released: bool,
}

impl Default for MediaConfig {
    fn default() -> MediaConfig {
        MediaConfig {
            inactivity_timeout: Duration::from_secs(30),
            jitter: JitterConfig::default(),
            events_capacity: 64,
            stats_interval: Some(Duration::from_secs(5)),
            recording_path: None,
            dtmf_frames: 5,
            rtcp_interval: Some(Duration::from_secs(5)),
            cname: "dartwing".to_string(),
            signalling_ip: None,
            muted_until_released: false,
        }
    }
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MediaStats {
    /// The inbound stream, as the jitter buffer saw it.
    pub jitter: JitterStats,
    /// RTP packets sent (audio and telephone-event).
    pub packets_sent: u64,
    /// Packets the socket refused (buffer full): dropped, not retried.
    pub send_dropped: u64,
    /// Datagrams from a source other than the latched one, ignored.
    pub foreign: u64,
    /// Datagrams that are not RTP.
    pub malformed: u64,
    /// RTP packets with a payload type not negotiated (comfort noise included).
    pub other_payload: u64,
    /// DTMF presses received.
    pub dtmf_received: u64,
    /// Events dropped because the event channel was full.
    pub events_dropped: u64,
    /// Recording frames dropped because the writer lagged.
    pub recording_dropped: u64,
    /// Ticks that ran more than 5 ms after their due time (the worker was starved).
    pub late_ticks: u64,
    /// RTP payload octets sent.
    pub octets_sent: u64,
    /// RTCP compound packets sent.
    pub rtcp_sent: u64,
    /// RTCP packets received (and parsed).
    pub rtcp_received: u64,
    /// The far end's last RTCP report on our stream.
    pub remote_report: Option<RemoteReport>,
}

/// What the far end's RTCP says about the stream we send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteReport {
    /// Fraction lost since its previous report, in 1/256.
    pub fraction_lost: u8,
    /// Its interarrival jitter of our stream, in milliseconds.
    pub jitter_ms: f64,
}

/// What a session tells call control.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A DTMF press from the remote.
    Dtmf(char),
    /// No RTP for the configured timeout; reported once until RTP flows again.
    MediaTimeout,
    /// An action the media worker cannot carry out itself: `Transfer` or `Hangup`.
    AppAction(Action),
    /// Periodic counters.
    Stats(MediaStats),
    /// The session latched onto this source (symmetric RTP) and now sends there.
    Latched(SocketAddr),
    /// A recording was written.
    RecordingSaved {
        /// The file.
        path: PathBuf,
        /// Its length.
        seconds: f64,
    },
    /// A recording could not be started or written.
    RecordingFailed {
        /// The file (empty when no recording path is configured).
        path: PathBuf,
        /// The I/O error kind.
        kind: std::io::ErrorKind,
    },
}

/// Why a media operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// No port could be bound.
    #[error(transparent)]
    Port(#[from] PortPoolError),
    /// The socket's address could not be read.
    #[error("cannot use the RTP socket: {source}")]
    Socket {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A worker thread or its runtime could not be started.
    #[error("cannot start a media worker: {source}")]
    Worker {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The session has ended.
    #[error("the media session has ended")]
    Closed,
    /// The session's command queue is full (it is starved); try again.
    #[error("the media session is busy")]
    Busy,
}

impl MediaError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            MediaError::Port(e) => e.is_transient(),
            MediaError::Busy => true,
            MediaError::Socket { .. } | MediaError::Worker { .. } | MediaError::Closed => false,
        }
    }
}

/// What call control asks of a running leg.
pub(crate) enum Command {
    Update(Box<Negotiated>),
    SetRemote(Option<SocketAddr>),
    ReleaseSending,
    Act(Action),
    Dtmf(char),
    Notice(crate::app::Notice),
    SetApp(Box<dyn CallApp>, CallContext),
    Stop,
}

/// Entry point; see the module docs.
#[derive(Debug)]
pub struct MediaSession;

/// A bound port waiting for negotiation to finish.
#[derive(Debug)]
pub struct BoundMedia {
    sockets: RtpSockets,
    lease: PortLease,
}

impl MediaSession {
    /// Takes a port from the pool.
    pub fn bind(pool: &PortPool) -> Result<BoundMedia, MediaError> {
        let (sockets, lease) = pool.bind()?;
        Ok(BoundMedia { sockets, lease })
    }
}

/// The handle call control keeps for a running leg.
#[derive(Debug)]
pub struct MediaHandle {
    commands: mpsc::Sender<Command>,
    pending: Arc<AtomicBool>,
    done: oneshot::Receiver<MediaStats>,
    local: SocketAddr,
}

/// A leg as a worker holds it.
pub(crate) struct Entry {
    pub(crate) leg: Leg,
    /// Taken when the worker starts the application.
    pub(crate) ctx: Option<CallContext>,
    pub(crate) commands: mpsc::Receiver<Command>,
    /// Set by the handle after each command, so the worker reads the channel only then.
    pub(crate) pending: Arc<AtomicBool>,
    /// Ticks until the channel is read regardless (to notice a dropped handle).
    pub(crate) until_check: u32,
    pub(crate) done: oneshot::Sender<MediaStats>,
}

type Started = (MediaHandle, mpsc::Receiver<MediaEvent>);

impl BoundMedia {
    /// The bound RTP port, for the SDP.
    pub fn port(&self) -> u16 {
        self.lease.port()
    }

    fn into_entry(
        self,
        negotiated: &Negotiated,
        app: Box<dyn CallApp>,
        ctx: CallContext,
        config: MediaConfig,
    ) -> Result<(Entry, Started), MediaError> {
        let local = self
            .sockets
            .rtp
            .local_addr()
            .map_err(|source| MediaError::Socket { source })?;
        let (events_tx, events_rx) = mpsc::channel(config.events_capacity.max(1));
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (done_tx, done_rx) = oneshot::channel();
        let pending = Arc::new(AtomicBool::new(false));
        let leg = Leg::new(self.sockets, self.lease, negotiated, app, config, events_tx);
        let entry = Entry {
            leg,
            ctx: Some(ctx),
            commands: cmd_rx,
            pending: Arc::clone(&pending),
            until_check: 0,
            done: done_tx,
        };
        let handle = MediaHandle {
            commands: cmd_tx,
            pending,
            done: done_rx,
            local,
        };
        Ok((entry, (handle, events_rx)))
    }

    /// Starts the leg on a worker task of its own (inside a tokio runtime). Events arrive on
    /// the returned receiver.
    pub fn start(
        self,
        negotiated: &Negotiated,
        app: Box<dyn CallApp>,
        ctx: CallContext,
        config: MediaConfig,
    ) -> Result<Started, MediaError> {
        let (entry, started) = self.into_entry(negotiated, app, ctx, config)?;
        tokio::spawn(super::worker::run(None, vec![entry], 1));
        Ok(started)
    }
}

/// A few long-lived workers that each drive many legs on one 20 ms timer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MediaWorkers {
    intake: Arc<[mpsc::Sender<Entry>]>,
    next: Arc<AtomicUsize>,
}

impl MediaWorkers {
    /// Starts `count` workers, each on an OS thread of its own running a single-threaded
    /// tokio runtime (one per core is a good start). Media then never waits behind the
    /// gateway's other tasks, and the workers are spread over the cores by construction. A
    /// worker runs until every clone of this value is dropped and its legs have ended.
    pub fn new(count: usize) -> Result<MediaWorkers, MediaError> {
        let mut intake = Vec::with_capacity(count.max(1));
        for i in 0..count.max(1) {
            let (tx, rx) = mpsc::channel(1024);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(|source| MediaError::Worker { source })?;
            std::thread::Builder::new()
                .name(format!("media-worker-{i}"))
                .spawn(move || {
                    runtime.block_on(super::worker::run(
                        Some(rx),
                        Vec::new(),
                        super::worker::PHASES,
                    ))
                })
                .map_err(|source| MediaError::Worker { source })?;
            intake.push(tx);
        }
        Ok(MediaWorkers {
            intake: intake.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Starts a leg on the next worker (round robin).
    pub fn start(
        &self,
        bound: BoundMedia,
        negotiated: &Negotiated,
        app: Box<dyn CallApp>,
        ctx: CallContext,
        config: MediaConfig,
    ) -> Result<Started, MediaError> {
        let (entry, started) = bound.into_entry(negotiated, app, ctx, config)?;
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.intake.len();
        self.intake[i].try_send(entry).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => MediaError::Busy,
            mpsc::error::TrySendError::Closed(_) => MediaError::Closed,
        })?;
        Ok(started)
    }
}

impl MediaHandle {
    /// The local RTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn send(&self, c: Command) -> Result<(), MediaError> {
        self.commands.try_send(c).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => MediaError::Busy,
            mpsc::error::TrySendError::Closed(_) => MediaError::Closed,
        })?;
        self.pending.store(true, Ordering::Release);
        Ok(())
    }

    /// A re-INVITE moved the remote (or put it on hold with `None`): send there, and latch
    /// again onto the first packet that arrives.
    pub fn set_remote(&self, addr: Option<SocketAddr>) -> Result<(), MediaError> {
        self.send(Command::SetRemote(addr))
    }

    /// Lets a session started with `muted_until_released` send (the caller's ACK came).
    pub fn release_sending(&self) -> Result<(), MediaError> {
        self.send(Command::ReleaseSending)
    }

    /// A new offer/answer completed: codec, payload types, remote and direction all change.
    pub fn update(&self, negotiated: Negotiated) -> Result<(), MediaError> {
        self.send(Command::Update(Box::new(negotiated)))
    }

    /// Carries out an action as if the application had returned it (play a prompt from call
    /// control, send DTMF on a bridged leg, start recording on request).
    pub fn act(&self, action: Action) -> Result<(), MediaError> {
        self.send(Command::Act(action))
    }

    /// A DTMF digit that arrived by signalling (SIP INFO): the application gets it as if it
    /// came in RTP. No [`MediaEvent::Dtmf`] is emitted: call control already knows.
    pub fn dtmf(&self, digit: char) -> Result<(), MediaError> {
        self.send(Command::Dtmf(digit))
    }

    /// Tells the leg's application something call control learned (see
    /// [`crate::app::Notice`]).
    pub fn notify(&self, notice: crate::app::Notice) -> Result<(), MediaError> {
        self.send(Command::Notice(notice))
    }

    /// Replaces the leg's application (what was queued to play is dropped; the new one's
    /// `on_start` runs). Call control uses it to bridge a leg to an agent
    /// ([`crate::app::bridge`]) when a transfer is answered.
    pub fn set_app(&self, app: Box<dyn CallApp>, ctx: CallContext) -> Result<(), MediaError> {
        self.send(Command::SetApp(app, ctx))
    }

    /// Stops the leg (at its next tick) and returns its final counters.
    pub async fn stop(self) -> MediaStats {
        let _ = self.commands.send(Command::Stop).await;
        self.pending.store(true, Ordering::Release);
        self.done.await.unwrap_or_default()
    }
}
