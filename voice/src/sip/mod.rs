//! SIP over UDP and TCP: framing, parsing, writing, transports and server/client
//! transaction timers. Everything a call needs from SIP below the dialog; dialogs, calls
//! and limits live in [`crate::ua`].
//!
//! The path of one inbound message, written once here and followed by the code:
//!
//! ```text
//! socket bytes ──► framing (Content-Length, limits; NeedsMoreData on a stream)
//!     │  error ──► 400/513 when addressable (Via, Call-ID, CSeq), else drop
//!     ▼
//! message::parse (rsip) ──► message::check_request (Max-Forwards, Via loop)
//!     │  error ──► 400 / 483 when addressable, else drop
//!     ▼
//! ua dispatcher: transaction match (retransmission absorbed, ACK/CANCEL matched)
//!     ▼
//! dialog match (Call-ID + our To tag) ──► per-call task
//! ```
//!
//! Why an own transaction layer and not rsipstack: rsipstack (read for this decision) is a
//! full stack whose transaction objects own timers and sockets and whose states mix events
//! and states; what a user agent answering calls needs is small — a table of server
//! transactions keyed by branch, sent-by and method that absorbs retransmissions, the INVITE
//! final-response retransmission (Timer G until ACK, Timer H) and one client non-INVITE
//! transaction for BYE (Timers E and F). Written here on top of rsip's parser it is a few
//! hundred lines, its timer rules are pure functions in [`timers`], and its cost per call can
//! be measured against SIPp directly.

pub mod answer_challenge;
pub mod digest;
pub mod framing;
pub mod message;
pub mod response;
pub mod timers;
pub mod transport;

pub use framing::{FrameLimits, Head};
pub use message::Inbound;
