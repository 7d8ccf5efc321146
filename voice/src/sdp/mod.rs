//! SDP (RFC 4566) as real phones send it, and the offer/answer model (RFC 3264) for G.711.
//!
//! What lives here: [`SessionDescription`], a faithful parse of the `v o s c t m a b` lines
//! (anything else is kept verbatim so a parse → serialize round trip loses nothing), and the
//! negotiation in [`negotiate`]: answer an offer ([`answer`]), build an offer for a B2BUA leg
//! ([`offer`]) and read the answer to it ([`accept_answer`]). What does not: any I/O, SIP, or
//! codecs other than PCMU, PCMA and telephone-event (RFC 4733).
//!
//! ```text
//!   offer text ──parse──▶ SessionDescription ──answer(local)──▶ (answer SDP, Negotiated)
//!                                                                  │            │
//!                                               to_string() ◀──────┘            └──▶ MediaSession
//! ```
//!
//! The parser is a pure function over text; it never panics on any input (see the split and
//! garbage tests) and rejects oversized bodies and too many media sections with a typed error.

pub mod negotiate;
mod parse;

pub use negotiate::{
    accept_answer, answer, offer, Codec, Direction, LocalMedia, Negotiated, NegotiationError,
};
pub use parse::{Attribute, Connection, MediaDescription, Origin, SdpError, SessionDescription};

#[cfg(test)]
mod tests;
