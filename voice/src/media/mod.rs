//! RTP media for one call leg: a [`MediaSession`] per leg, running as its own tokio task.
//!
//! ```text
//!            UDP (port from the PortPool)                         bounded, try_send
//!  caller ──RTP──▶ latch source ─▶ telephone-event? ─▶ DtmfReceiver ─▶ app.on_dtmf ─▶ events
//!                                └▶ audio ─▶ JitterBuffer
//!  every 20 ms tick: JitterBuffer.pop ─▶ G.711 decode ─▶ app.on_audio ─▶ actions
//!                    Playback.read (or DTMF out) ─▶ G.711 encode ─▶ RTP ─▶ caller
//! ```
//!
//! Pure parts: [`rtp`], [`g711`], [`dtmf`], [`jitter`], [`wav`], [`playback`]. Effects live in
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
//! counted as activity and otherwise ignored. RTCP is not sent or read yet.

pub mod dtmf;
pub mod g711;
pub mod jitter;
mod leg;
pub mod playback;
pub mod port_pool;
pub mod recorder;
pub mod rtp;
pub mod session;
pub mod wav;
mod worker;

pub use jitter::{JitterConfig, JitterStats};
pub use port_pool::{PortLease, PortPool, PortPoolError};
pub use session::{
    BoundMedia, MediaConfig, MediaError, MediaEvent, MediaHandle, MediaSession, MediaStats,
    MediaWorkers,
};
