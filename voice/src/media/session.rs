//! The media task of one call leg and the handle call control holds.
//!
//! Lifecycle: [`MediaSession::bind`] takes a port (its number goes into the SDP answer or
//! offer), [`BoundMedia::start`] spawns the task with the negotiated parameters and the
//! application, and [`MediaHandle::stop`] ends it and returns the final [`MediaStats`].
//! Dropping the handle ends the task too. The port goes back to the pool when the task ends.
//!
//! The task wakes once per 20 ms tick (and for commands): it drains the non-blocking socket,
//! plays out one packet, calls the app, sends one packet. Arrival times are therefore known
//! to the tick (20 ms), which makes the RFC 3550 jitter figure an upper bound: a stream whose
//! packets arrive right at the tick boundary shows up to ~20 ms of jitter and gets a deeper
//! buffer, which is what such a phase needs anyway. Sends are non-blocking: a full socket
//! buffer drops the packet (`send_dropped`).

use super::dtmf::{DtmfReceiver, DtmfSender};
use super::g711;
use super::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
use super::playback::Playback;
use super::port_pool::{PortLease, PortPool, PortPoolError};
use super::recorder::Recorder;
use super::rtp::RtpPacket;
use crate::app::{Action, CallApp, CallContext, FRAME_SAMPLES};
use crate::sdp::Negotiated;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// The packetization interval.
const PTIME: Duration = Duration::from_millis(20);
/// Datagrams read per tick at most (a 20 ms stream sends one).
const MAX_PER_TICK: usize = 32;

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
    /// Ticks that ran more than 5 ms after their due time (the task was starved).
    pub late_ticks: u64,
}

/// What a session tells call control.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A DTMF press from the remote.
    Dtmf(char),
    /// No RTP for the configured timeout; reported once until RTP flows again.
    MediaTimeout,
    /// An action the media task cannot carry out itself: `Transfer` or `Hangup`.
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
    /// The socket could not be handed to tokio.
    #[error("cannot register the RTP socket: {source}")]
    Socket {
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
            MediaError::Socket { .. } | MediaError::Closed => false,
        }
    }
}

enum Command {
    Update(Box<Negotiated>),
    SetRemote(Option<SocketAddr>),
    Act(Action),
    Stop,
}

/// Entry point; see the module docs.
#[derive(Debug)]
pub struct MediaSession;

/// A bound port waiting for negotiation to finish.
#[derive(Debug)]
pub struct BoundMedia {
    socket: std::net::UdpSocket,
    lease: PortLease,
}

impl MediaSession {
    /// Takes a port from the pool.
    pub fn bind(pool: &PortPool) -> Result<BoundMedia, MediaError> {
        let (socket, lease) = pool.bind()?;
        Ok(BoundMedia { socket, lease })
    }
}

/// The handle call control keeps for a running session.
#[derive(Debug)]
pub struct MediaHandle {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<MediaStats>,
    local: SocketAddr,
}

impl BoundMedia {
    /// The bound RTP port, for the SDP.
    pub fn port(&self) -> u16 {
        self.lease.port()
    }

    /// Starts the media task (inside a tokio runtime). Events arrive on the returned receiver.
    pub fn start(
        self,
        negotiated: &Negotiated,
        app: Box<dyn CallApp>,
        ctx: CallContext,
        config: MediaConfig,
    ) -> Result<(MediaHandle, mpsc::Receiver<MediaEvent>), MediaError> {
        let local = self
            .socket
            .local_addr()
            .map_err(|source| MediaError::Socket { source })?;
        let socket = self.socket;
        let (events_tx, events_rx) = mpsc::channel(config.events_capacity.max(1));
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let now = Instant::now();
        let task = Task {
            socket,
            _lease: self.lease,
            jitter: JitterBuffer::new(config.jitter),
            config,
            negotiated: negotiated.clone(),
            remote: negotiated.remote_rtp,
            latched: None,
            app,
            events: events_tx,
            playback: Playback::default(),
            dtmf_in: DtmfReceiver::default(),
            dtmf_out: None,
            recorder: None,
            ssrc: random_u32(),
            seq: random_u32() as u16,
            timestamp: random_u32(),
            marker: true,
            epoch: now,
            last_rx: now,
            timed_out: false,
            stats: MediaStats::default(),
            heard: Vec::with_capacity(FRAME_SAMPLES),
            out_pcm: [0; FRAME_SAMPLES],
            out_buf: Vec::with_capacity(12 + FRAME_SAMPLES),
            payload: Vec::with_capacity(FRAME_SAMPLES),
        };
        let task = tokio::spawn(task.run(cmd_rx, ctx));
        Ok((
            MediaHandle {
                commands: cmd_tx,
                task,
                local,
            },
            events_rx,
        ))
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
        })
    }

    /// A re-INVITE moved the remote (or put it on hold with `None`): send there, and latch
    /// again onto the first packet that arrives.
    pub fn set_remote(&self, addr: Option<SocketAddr>) -> Result<(), MediaError> {
        self.send(Command::SetRemote(addr))
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

    /// Stops the task and returns its final counters.
    pub async fn stop(self) -> MediaStats {
        let _ = self.commands.send(Command::Stop).await;
        self.task.await.unwrap_or_default()
    }
}

fn random_u32() -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish() as u32
}

struct Task {
    socket: UdpSocket,
    _lease: PortLease,
    config: MediaConfig,
    negotiated: Negotiated,
    remote: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    app: Box<dyn CallApp>,
    events: mpsc::Sender<MediaEvent>,
    jitter: JitterBuffer,
    playback: Playback,
    dtmf_in: DtmfReceiver,
    dtmf_out: Option<DtmfSender>,
    recorder: Option<Recorder>,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    marker: bool,
    epoch: Instant,
    last_rx: Instant,
    timed_out: bool,
    stats: MediaStats,
    heard: Vec<i16>,
    out_pcm: [i16; FRAME_SAMPLES],
    out_buf: Vec<u8>,
    payload: Vec<u8>,
}

impl Task {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, ctx: CallContext) -> MediaStats {
        let actions = self.app.on_start(&ctx);
        self.apply(actions);
        let mut ticker = tokio::time::interval_at(self.epoch + PTIME, PTIME);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut stats_at = self.config.stats_interval.map(|i| self.epoch + i);
        let mut buf = [0u8; 1500];
        loop {
            // The socket is not registered with the reactor: each tick drains it. One wake-up
            // per 20 ms instead of one per packet plus one per tick, and no epoll traffic.
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Stop) => break,
                    Some(c) => self.on_command(c),
                },
                due = ticker.tick() => {
                    let now = Instant::now();
                    if now.duration_since(due) > Duration::from_millis(5) {
                        self.stats.late_ticks += 1;
                    }
                    self.drain(&mut buf, now);
                    self.on_tick(now);
                    if let (Some(at), Some(every)) = (stats_at, self.config.stats_interval) {
                        if now >= at {
                            self.emit(MediaEvent::Stats(self.snapshot()));
                            stats_at = Some(at + every);
                        }
                    }
                }
            }
        }
        self.recorder = None; // closes the channel: the writer finishes the file
        self.snapshot()
    }

    fn snapshot(&self) -> MediaStats {
        let mut s = self.stats;
        s.jitter = self.jitter.stats();
        s.recording_dropped += self.recorder.as_ref().map_or(0, Recorder::dropped);
        s
    }

    fn emit(&mut self, event: MediaEvent) {
        if self.events.try_send(event).is_err() {
            self.stats.events_dropped += 1;
        }
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Update(n) => {
                self.remote = n.remote_rtp;
                self.latched = None;
                self.negotiated = *n;
            }
            Command::SetRemote(addr) => {
                self.remote = addr;
                self.latched = None;
            }
            Command::Act(a) => self.apply(vec![a]),
            Command::Stop => {}
        }
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Play(audio) => self.playback.push(audio),
                Action::StopPlayback => self.playback.clear(),
                Action::SendDtmf(d) => {
                    if self.dtmf_out.is_none() {
                        self.dtmf_out = DtmfSender::new(d, self.timestamp, self.config.dtmf_frames);
                    }
                }
                Action::StartRecording => self.start_recording(),
                Action::StopRecording => {
                    if let Some(r) = self.recorder.take() {
                        self.stats.recording_dropped += r.dropped();
                    }
                }
                a @ (Action::Transfer { .. } | Action::Hangup) => {
                    self.emit(MediaEvent::AppAction(a));
                }
            }
        }
    }

    fn start_recording(&mut self) {
        if self.recorder.is_some() {
            return;
        }
        match &self.config.recording_path {
            Some(path) => {
                self.recorder = Some(Recorder::start(path.clone(), self.events.clone()));
            }
            None => self.emit(MediaEvent::RecordingFailed {
                path: PathBuf::new(),
                kind: std::io::ErrorKind::InvalidInput,
            }),
        }
    }

    /// Reads what arrived since the last tick (at most [`MAX_PER_TICK`] datagrams, so a flood
    /// cannot hold the worker), all stamped with the tick's time.
    fn drain(&mut self, buf: &mut [u8], now: Instant) {
        for _ in 0..MAX_PER_TICK {
            match self.socket.recv_from(buf) {
                Ok((n, from)) => self.on_datagram(&buf[..n], from, now),
                Err(_) => break,
            }
        }
    }

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr, now: Instant) {
        let Ok(packet) = RtpPacket::parse(data) else {
            self.stats.malformed += 1;
            return;
        };
        match self.latched {
            None => {
                self.latched = Some(from);
                if self.remote != Some(from) {
                    self.remote = Some(from);
                }
                self.emit(MediaEvent::Latched(from));
            }
            Some(addr) if addr != from => {
                self.stats.foreign += 1;
                return;
            }
            Some(_) => {}
        }
        self.last_rx = now;
        self.timed_out = false;
        if packet.payload_type == self.negotiated.payload_type {
            self.jitter.push(
                packet.sequence,
                packet.timestamp,
                packet.ssrc,
                packet.payload,
                now.duration_since(self.epoch),
            );
        } else if Some(packet.payload_type) == self.negotiated.telephone_event {
            if let Some(digit) = self.dtmf_in.on_packet(packet.timestamp, packet.payload) {
                self.stats.dtmf_received += 1;
                self.emit(MediaEvent::Dtmf(digit));
                let actions = self.app.on_dtmf(digit);
                self.apply(actions);
            }
        } else {
            self.stats.other_payload += 1;
        }
    }

    fn on_tick(&mut self, now: Instant) {
        let remote_sends = self.negotiated.direction.receives();
        if remote_sends
            && !self.timed_out
            && now.duration_since(self.last_rx) >= self.config.inactivity_timeout
        {
            self.timed_out = true;
            self.emit(MediaEvent::MediaTimeout);
        }

        // Inbound: one packet's worth of audio (or silence) to the application.
        self.heard.clear();
        match self.jitter.pop() {
            Playout::Packet(p) => {
                g711::decode(self.negotiated.codec, &p, &mut self.heard);
                self.jitter.recycle(p);
            }
            Playout::Lost | Playout::Waiting => self.heard.resize(FRAME_SAMPLES, 0),
        }
        let heard = std::mem::take(&mut self.heard);
        let actions = self.app.on_audio(&heard);
        self.heard = heard;
        self.apply(actions);

        // Outbound: the next 20 ms of playback (silence when empty), or a DTMF packet.
        let was_playing = !self.playback.is_empty();
        self.playback.read(&mut self.out_pcm);
        if let Some(r) = self.recorder.as_mut() {
            r.push(&self.heard, &self.out_pcm);
        }
        self.send_tick();
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        if was_playing && self.playback.is_empty() {
            let actions = self.app.on_playback_finished();
            self.apply(actions);
        }
    }

    fn send_tick(&mut self) {
        let Some(remote) = self.remote else { return };
        if !self.negotiated.direction.sends() {
            return;
        }
        self.payload.clear();
        let (pt, marker, ts) = match (self.dtmf_out.as_mut(), self.negotiated.telephone_event) {
            (Some(sender), Some(te_pt)) => match sender.next_packet() {
                Some(p) => {
                    self.payload.extend_from_slice(&p.payload.to_bytes());
                    (te_pt, p.marker, p.timestamp)
                }
                None => {
                    self.dtmf_out = None;
                    self.marker = true;
                    self.audio_payload()
                }
            },
            (Some(_), None) => {
                // The remote did not negotiate telephone-event: nothing to send it with.
                self.dtmf_out = None;
                self.audio_payload()
            }
            (None, _) => self.audio_payload(),
        };
        let packet = RtpPacket {
            marker,
            payload_type: pt,
            sequence: self.seq,
            timestamp: ts,
            ssrc: self.ssrc,
            payload: &self.payload,
        };
        packet.write(&mut self.out_buf);
        self.seq = self.seq.wrapping_add(1);
        match self.socket.send_to(&self.out_buf, remote) {
            Ok(_) => self.stats.packets_sent += 1,
            Err(_) => self.stats.send_dropped += 1,
        }
    }

    fn audio_payload(&mut self) -> (u8, bool, u32) {
        g711::encode(self.negotiated.codec, &self.out_pcm, &mut self.payload);
        let marker = std::mem::take(&mut self.marker);
        (self.negotiated.payload_type, marker, self.timestamp)
    }
}
