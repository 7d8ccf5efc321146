//! Voice: SIP (rsip parsing; transactions, dialogs, digest auth), SDP offer/answer, RTP with a
//! jitter buffer, RFC 4733 DTMF, WebRTC, and the AI receptionist's call flow.
//!
//! It will depend on `state-machines` (the call lifecycle) and reach storage and the event
//! log only through ports that `gateway` implements.
//!
//! Media half: [`sdp`] parses and negotiates session descriptions (pure); [`media`] runs one
//! RTP session per call leg as its own task (port pool, jitter buffer, G.711, DTMF, latching,
//! inactivity timeout); [`app`] is the interface the call's application (echo, WAV player,
//! DTMF menu, later the AI receptionist) implements: frames and digits in, actions out.

pub mod app;
pub mod media;
pub mod sdp;
