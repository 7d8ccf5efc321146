//! Test helpers that are real code: a phone (a UDP socket that speaks RTP as SIPp or baresip
//! does) and a media session started through the real SDP answer path.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use voice::app::{parse_app_spec, CallContext};
use voice::media::rtp::RtpPacket;
use voice::media::{MediaConfig, MediaEvent, MediaHandle, MediaSession, PortPool};
use voice::sdp::{answer, Codec, LocalMedia, SessionDescription};

pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A phone: one UDP socket that sends RTP as a SIPp or baresip leg would.
pub struct Phone {
    pub socket: UdpSocket,
    pub seq: u16,
    pub ts: u32,
}

impl Phone {
    pub async fn new() -> Phone {
        Phone {
            socket: UdpSocket::bind((LOCAL, 0)).await.unwrap(),
            seq: 1000,
            ts: 50_000,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    pub fn offer(&self, direction: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na={direction}\r\n",
            self.addr().port()
        )
    }

    pub fn packet(&self, pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        RtpPacket {
            marker,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc: 0x1234_5678,
            payload,
        }
        .write(&mut buf);
        buf
    }

    /// The next audio packet (20 ms of `code`), not yet sent.
    pub fn next_audio(&mut self, code: u8) -> Vec<u8> {
        let p = self.packet(0, self.seq, self.ts, false, &[code; 160]);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
        p
    }

    pub async fn send_audio(&mut self, code: u8, to: SocketAddr) {
        let p = self.next_audio(code);
        self.send(&p, to).await;
    }

    pub async fn send(&self, bytes: &[u8], to: SocketAddr) {
        self.socket.send_to(bytes, to).await.unwrap();
    }

    /// Receives RTP for `dur`, returning (payload type, marker, seq, ts, payload) of each.
    pub async fn collect(&self, dur: Duration) -> Vec<(u8, bool, u16, u32, Vec<u8>)> {
        let end = Instant::now() + dur;
        let mut out = Vec::new();
        let mut buf = [0u8; 1500];
        while let Ok(Ok((n, _))) = timeout(
            end.saturating_duration_since(Instant::now()),
            self.socket.recv_from(&mut buf),
        )
        .await
        {
            let p = RtpPacket::parse(&buf[..n]).unwrap();
            out.push((
                p.payload_type,
                p.marker,
                p.sequence,
                p.timestamp,
                p.payload.to_vec(),
            ));
        }
        out
    }
}

pub async fn start(
    phone: &Phone,
    direction: &str,
    app: &str,
    config: MediaConfig,
) -> (MediaHandle, mpsc::Receiver<MediaEvent>, SocketAddr) {
    let pool = PortPool::new(LOCAL, 42000..=42999).unwrap();
    let bound = MediaSession::bind(&pool).unwrap();
    let local = LocalMedia::new(LOCAL, bound.port(), 1);
    let offer = SessionDescription::parse(&phone.offer(direction)).unwrap();
    let (_, negotiated) = answer(&offer, &local).unwrap();
    assert_eq!(negotiated.codec, Codec::Pcmu);
    let (handle, events) = bound
        .start(
            &negotiated,
            parse_app_spec(app).unwrap(),
            CallContext::default(),
            config,
        )
        .unwrap();
    let addr = handle.local_addr();
    (handle, events, addr)
}

pub fn quiet() -> MediaConfig {
    MediaConfig {
        stats_interval: None,
        ..MediaConfig::default()
    }
}

/// Codes whose decode → encode round trip is exact and distinct (positive µ-law codes).
pub fn code(i: usize) -> u8 {
    0x80 + (i % 0x7F) as u8
}

/// Waits up to `dur` for the first event `pick` accepts.
pub async fn wait_for<T>(
    events: &mut mpsc::Receiver<MediaEvent>,
    dur: Duration,
    mut pick: impl FnMut(MediaEvent) -> Option<T>,
) -> Option<T> {
    timeout(dur, async {
        loop {
            if let Some(t) = pick(events.recv().await?) {
                return Some(t);
            }
        }
    })
    .await
    .ok()
    .flatten()
}
