//! Voice: SIP (rsip parsing; transactions, dialogs, digest auth), SDP offer/answer, RTP with a
//! jitter buffer, RFC 4733 DTMF, WebRTC, and the AI receptionist's call flow.
//!
//! It will depend on `state-machines` (the call lifecycle) and reach storage and the event
//! log only through ports that `gateway` implements.
//!
//! Signalling: [`sip`] is SIP below the dialog (framing, rsip parsing, writing, UDP/TCP
//! listeners, RFC 3261 timers); [`ua`] is the user agent above it (transaction table,
//! dialogs, one task per call, limits) and its two ports, [`ua::CallRouter`] (dialled number →
//! organisation and application) and [`ua::CallStore`] (every call transition, acknowledged
//! before SIP acknowledges anything). `gateway` implements both and calls [`ua::start`].

pub mod sip;
pub mod ua;
