//! Voice: SIP (rsip parsing; transactions, dialogs, digest auth), SDP offer/answer, RTP with a
//! jitter buffer, RFC 4733 DTMF, WebRTC, and the AI receptionist's call flow.
//!
//! Not built yet: this crate only reserves its place in the workspace. It will depend on
//! `state-machines` (the call lifecycle) and `stt-tts` (speech), and reach storage and the event
//! log only through ports that `gateway` implements.
