//! One call leg's media, as plain state a worker drives: no task, no timer of its own.
//!
//! Per tick: drain the non-blocking socket (latching, telephone-events to the app, audio to
//! the jitter buffer), play out one packet to the app, apply its actions, send one packet
//! (playback, silence or a DTMF event). Arrival times are the tick's time, so the RFC 3550
//! jitter figure is an upper bound at 20 ms resolution: a stream whose packets arrive right
//! at the tick boundary shows more jitter and gets a deeper buffer, which is what such a
//! phase needs anyway. Sends are non-blocking: a full socket buffer drops the packet.

use super::dtmf::{DtmfReceiver, DtmfSender};
use super::jitter::{JitterBuffer, Playout};
use super::playback::Playback;
use super::port_pool::{PortLease, RtpSockets};
use super::recorder::Recorder;
use super::rtcp::{self, ReportBlock, RtcpPacket, SenderInfo};
use super::rtp::RtpPacket;
use super::session::{Command, MediaConfig, MediaEvent, MediaStats, RemoteReport};
use crate::app::{Action, CallApp, CallContext, FRAME_SAMPLES};
use crate::sdp::Negotiated;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Datagrams read per tick at most (a 20 ms stream sends one).
const MAX_PER_TICK: usize = 32;
/// The RTCP socket is read every this many ticks (0.5 s): reports come every few seconds.
const RTCP_READ_EVERY: u32 = 25;

/// `interval` times a random factor in [0.5, 1.5), so legs started together spread out.
fn randomised(interval: std::time::Duration) -> std::time::Duration {
    interval.mul_f64(0.5 + f64::from(random_u32()) / f64::from(u32::MAX))
}

fn random_u32() -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish() as u32
}

/// One call leg's media state; driven by a worker once per tick.
pub(crate) struct Leg {
    socket: UdpSocket,
    rtcp: UdpSocket,
    _lease: PortLease,
    config: MediaConfig,
    negotiated: Negotiated,
    remote: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    /// False while muted until released (before the caller's ACK).
    sending: bool,
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
    stats_at: Option<Instant>,
    /// Where RTCP goes: the source RTCP came from, else the remote RTP port + 1.
    rtcp_remote: Option<SocketAddr>,
    rtcp_due: Option<Instant>,
    ticks: u32,
    /// The far end's last SR: the middle of its NTP time, and when it arrived.
    last_sr: Option<(u32, Instant)>,
    /// (expected, received) at the last report, for the fraction lost since.
    reported: (u64, u64),
    epoch: Instant,
    last_rx: Instant,
    timed_out: bool,
    stats: MediaStats,
    heard: Vec<i16>,
    out_pcm: [i16; FRAME_SAMPLES],
    out_buf: Vec<u8>,
    payload: Vec<u8>,
}

impl Leg {
    /// A leg for `sockets`, not started yet.
    pub(crate) fn new(
        sockets: RtpSockets,
        lease: PortLease,
        negotiated: &Negotiated,
        app: Box<dyn CallApp>,
        config: MediaConfig,
        events: mpsc::Sender<MediaEvent>,
    ) -> Leg {
        let now = Instant::now();
        let sending = !config.muted_until_released;
        Leg {
            socket: sockets.rtp,
            rtcp: sockets.rtcp,
            rtcp_remote: None,
            rtcp_due: config.rtcp_interval.map(|i| now + randomised(i)),
            ticks: 0,
            last_sr: None,
            reported: (0, 0),
            _lease: lease,
            jitter: JitterBuffer::new(config.jitter),
            stats_at: config.stats_interval.map(|i| now + i),
            config,
            negotiated: negotiated.clone(),
            remote: negotiated.remote_rtp,
            latched: None,
            sending,
            app,
            events,
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
        }
    }

    /// The worker took the leg on: the application starts.
    pub(crate) fn start(&mut self, ctx: &CallContext, now: Instant) {
        self.last_rx = now;
        let actions = self.app.on_start(ctx);
        self.apply(actions);
    }

    /// One 20 ms tick: read what arrived, play out, call the app, send.
    pub(crate) fn tick(&mut self, now: Instant, late: bool, buf: &mut [u8]) {
        if late {
            self.stats.late_ticks += 1;
        }
        self.drain(buf, now);
        self.on_tick(now);
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks.is_multiple_of(RTCP_READ_EVERY) {
            self.read_rtcp(buf, now);
        }
        if self.rtcp_due.is_some_and(|due| now >= due) {
            self.send_rtcp(now);
        }
        if let (Some(at), Some(every)) = (self.stats_at, self.config.stats_interval) {
            if now >= at {
                self.emit(MediaEvent::Stats(self.snapshot()));
                self.stats_at = Some(at + every);
            }
        }
    }

    /// The leg ends: the recording (if any) is finished, the counters returned.
    pub(crate) fn finish(mut self) -> MediaStats {
        let stats = self.snapshot();
        self.recorder = None; // closes the channel: the writer finishes the file
        stats
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

    pub(crate) fn on_command(&mut self, c: Command) {
        match c {
            Command::Update(n) => {
                self.remote = n.remote_rtp;
                self.latched = None;
                self.rtcp_remote = None;
                self.negotiated = *n;
            }
            Command::SetRemote(addr) => {
                self.remote = addr;
                self.latched = None;
                self.rtcp_remote = None;
            }
            Command::ReleaseSending => self.sending = true,
            Command::Act(a) => self.apply(vec![a]),
            Command::Dtmf(digit) => {
                let actions = self.app.on_dtmf(digit);
                self.apply(actions);
            }
            Command::Notice(notice) => {
                let actions = self.app.on_notice(notice);
                self.apply(actions);
            }
            Command::SetApp(app, ctx) => {
                self.app = app;
                self.playback.clear();
                let actions = self.app.on_start(&ctx);
                self.apply(actions);
            }
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

    fn read_rtcp(&mut self, buf: &mut [u8], now: Instant) {
        for _ in 0..MAX_PER_TICK {
            let Ok((n, from)) = self.rtcp.recv_from(buf) else {
                break;
            };
            let Ok(packets) = rtcp::parse(&buf[..n]) else {
                self.stats.malformed += 1;
                continue;
            };
            // Symmetric RTCP, like RTP: answer where it comes from, from the RTP source's host
            // (before latching: only from the signalling host, when that is restricted).
            let host = self
                .latched
                .map(|rtp| rtp.ip())
                .or(self.config.signalling_ip);
            if host.is_none_or(|ip| ip == from.ip()) {
                self.rtcp_remote = Some(from);
            }
            self.stats.rtcp_received += 1;
            for p in packets {
                let blocks = match p {
                    RtcpPacket::SenderReport { info, blocks, .. } => {
                        self.last_sr = Some((rtcp::ntp_middle(info.ntp), now));
                        blocks
                    }
                    RtcpPacket::ReceiverReport { blocks, .. } => blocks,
                    _ => continue,
                };
                if let Some(b) = blocks.iter().find(|b| b.ssrc == self.ssrc) {
                    self.stats.remote_report = Some(RemoteReport {
                        fraction_lost: b.fraction_lost,
                        jitter_ms: f64::from(b.jitter) / 8.0,
                    });
                }
            }
        }
    }

    fn send_rtcp(&mut self, now: Instant) {
        let Some(interval) = self.config.rtcp_interval else {
            self.rtcp_due = None;
            return;
        };
        self.rtcp_due = Some(now + randomised(interval));
        let target = self.rtcp_remote.or_else(|| {
            self.target()
                .map(|r| SocketAddr::new(r.ip(), r.port().wrapping_add(1)))
        });
        let Some(target) = target.filter(|_| self.sending) else {
            return;
        };
        let j = self.jitter.stats();
        let block = j.ssrc.map(|ssrc| {
            let (prev_expected, prev_received) = self.reported;
            let expected = j.expected.saturating_sub(prev_expected);
            let received = j.received.saturating_sub(prev_received);
            self.reported = (j.expected, j.received);
            let fraction = if expected == 0 || received >= expected {
                0
            } else {
                ((expected - received) * 256 / expected).min(255) as u8
            };
            let (last_sr, delay) = self.last_sr.map_or((0, 0), |(middle, at)| {
                let d = now.duration_since(at).as_secs_f64() * 65536.0;
                (middle, d as u32)
            });
            ReportBlock {
                ssrc,
                fraction_lost: fraction,
                cumulative_lost: j.lost.clamp(-0x80_0000, 0x7F_FFFF) as i32,
                highest_seq: j.highest_seq,
                jitter: (j.jitter_ms * 8.0) as u32,
                last_sr,
                delay_since_last_sr: delay,
            }
        });
        let info = (self.stats.packets_sent > 0).then(|| SenderInfo {
            ntp: rtcp::ntp_from(std::time::SystemTime::now()),
            rtp_timestamp: self.timestamp,
            packets: self.stats.packets_sent as u32,
            octets: self.stats.octets_sent as u32,
        });
        self.out_buf.clear();
        rtcp::write_report(&mut self.out_buf, self.ssrc, info, block);
        rtcp::write_sdes_cname(&mut self.out_buf, self.ssrc, &self.config.cname);
        if self.rtcp.send_to(&self.out_buf, target).is_ok() {
            self.stats.rtcp_sent += 1;
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
                self.negotiated.codec.law().decode_into(&p, &mut self.heard);
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

    /// Where our RTP may go now: nowhere while muted; the latched source; else the SDP
    /// address when it is the signalling host (or no host is set).
    fn target(&self) -> Option<SocketAddr> {
        if !self.sending {
            return None;
        }
        if self.latched.is_some() {
            return self.latched;
        }
        let remote = self.remote?;
        match self.config.signalling_ip {
            Some(ip) if ip != remote.ip() => None,
            _ => Some(remote),
        }
    }

    fn send_tick(&mut self) {
        let Some(remote) = self.target() else { return };
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
            Ok(_) => {
                self.stats.packets_sent += 1;
                self.stats.octets_sent += self.payload.len() as u64;
            }
            Err(_) => self.stats.send_dropped += 1,
        }
    }

    fn audio_payload(&mut self) -> (u8, bool, u32) {
        self.negotiated
            .codec
            .law()
            .encode_into(&self.out_pcm, &mut self.payload);
        let marker = std::mem::take(&mut self.marker);
        (self.negotiated.payload_type, marker, self.timestamp)
    }
}
