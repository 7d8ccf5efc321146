//! Voice: SIP (rsip parsing; transactions, dialogs, digest auth), SDP offer/answer, RTP with a
//! jitter buffer, RFC 4733 DTMF, WebRTC, and the AI receptionist's call flow.
//!
//! It will depend on `state-machines` (the call lifecycle) and reach storage and the event
//! log only through ports that `gateway` implements.
//!
//! Media half: [`sdp`] parses and negotiates session descriptions (pure); [`media`] runs the
//! RTP of each call leg on a few worker threads (port pool, jitter buffer, G.711, DTMF,
//! symmetric RTP, inactivity timeout, recording); [`app`] is the interface the call's
//! application (echo, WAV player, DTMF menu, later the AI receptionist) implements: frames and
//! digits in, actions out. The call lifecycle is `state_machines::call`. [`receptionist`] is
//! the AI receptionist application, reaching speech, storage and its responder through ports.
//!
//! Signalling: [`sip`] is SIP below the dialog (framing, rsip parsing, writing, UDP/TCP
//! listeners, RFC 3261 timers); [`ua`] is the user agent above it (transaction table,
//! dialogs, one task per call, limits) and its two ports, [`ua::CallRouter`] (dialled number →
//! organisation and application) and [`ua::CallStore`] (every call transition, acknowledged
//! before SIP acknowledges anything). `gateway` implements both and calls [`ua::start`].

pub mod app;
pub mod media;
pub mod receptionist;
pub mod sdp;
pub mod sip;
pub mod ua;
