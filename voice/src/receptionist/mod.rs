//! The AI receptionist: a call application that greets, listens, understands, answers,
//! books, takes messages and hands over to a person, all on this machine.
//!
//! ```text
//!  media worker (20 ms tick)            session task (tokio)                      ports
//!  ReceptionistApp.on_audio ──frames──▶ Listener.push (VAD, whisper on its thread) ◀─ Speech
//!        ▲  (try_send, drops if full)    │ SpeechStart while speaking ─▶ StopPlayback (barge-in)
//!        │                               │ Turn(text) ─▶ Responder.respond ─▶ Speech.speak
//!        └──── actions (Play, Stop, ◀────┘ transcript turns, bookings ─────────▶ ReceptionistStore
//!              Transfer, Hangup)
//! ```
//!
//! The media side only forwards frames and digits and returns queued actions: it never
//! waits (see [`crate::app`]'s contract). The session owns the conversation: the greeting
//! (per org, naming the hours when closed), silence → one reprompt → goodbye and hang-up,
//! DTMF 0 → hand-over to the route's agent, voicemail when nobody takes the call (see
//! [`voicemail`]), and every turn of both sides written to the caller's conversation
//! through [`ReceptionistStore`].
//!
//! Three ports keep the heavy and the stateful outside this crate: [`Speech`] (whisper and
//! espeak live in `stt-tts`, wired by `gateway`, so `voice` builds without them),
//! [`ReceptionistStore`] (org settings, knowledge base, transcript, appointments) and
//! [`responder::Responder`] (the local rule-based one). An org may also name a remote chat
//! model ([`model`]): its turns then stream from that model through the
//! [`model::ChatModel`] port, and the local responder answers whenever it fails.

mod app;
pub mod model;
pub mod responder;
mod session;
mod voicemail;

pub use app::ReceptionistApp;
/// The date and time library the receptionist's types use (for adapters).
pub use jiff;

use crate::ua::BoxFuture;
use jiff::civil::DateTime;
use responder::{Profile, Responder};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Something the listener noticed in the caller's audio.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    /// The caller started speaking (barge-in).
    SpeechStart,
    /// A finished turn's transcript.
    Turn(Turn),
}

/// One transcribed caller turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// The words (empty: noise).
    pub text: String,
    /// Stream time of its start, ms since the call's media began.
    pub start_ms: u64,
    /// Stream time of its end, ms.
    pub end_ms: u64,
    /// Mean token probability, 0–1.
    pub confidence: f32,
    /// When the end of the turn was decided (for the turn latency).
    pub ended_at: Instant,
}

/// Why speech failed.
#[derive(Debug, thiserror::Error)]
#[error("speech engine: {source}")]
pub struct SpeechFailure {
    /// The engine's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// One call's ear: 8 kHz frames in, [`Heard`] out. `push` never blocks.
pub trait Listener: Send {
    /// Takes 20 ms of the caller's audio; returns what is known so far.
    fn push(&mut self, frame: &[i16]) -> Vec<Heard>;
    /// The words of the turn still open, once each time they change, when they are what
    /// the turn will be if the caller stays silent (a speculative transcript, ready before
    /// the silence that ends the turn has run out). `None` by default.
    fn tentative(&mut self) -> Option<String> {
        None
    }
    /// Ends the open turn now with the words [`Listener::tentative`] showed, if the caller
    /// has not spoken since; returns what that caused (its [`Heard::Turn`]).
    fn end_turn(&mut self) -> Vec<Heard> {
        Vec::new()
    }
}

/// The speech engines. Both methods block (model load, synthesis): the session calls them
/// on blocking threads.
pub trait Speech: Send + Sync + 'static {
    /// A listener for one call, biased toward `vocabulary` (see
    /// [`responder::vocabulary`]).
    fn listener(&self, vocabulary: &str) -> Result<Box<dyn Listener>, SpeechFailure>;
    /// `text` spoken as 8 kHz mono PCM.
    fn speak(&self, text: &str) -> Result<Vec<i16>, SpeechFailure>;
    /// The words of a whole recording (8 kHz mono PCM, a voicemail), biased toward
    /// `vocabulary` like [`Speech::listener`].
    fn transcribe(&self, pcm: &[i16], vocabulary: &str) -> Result<String, SpeechFailure>;
}

/// An org's receptionist settings.
#[derive(Debug, Clone)]
pub struct OrgSettings {
    /// What the responder knows.
    pub profile: Profile,
    /// The org's time zone (hours and dates are local to it).
    pub timezone: jiff::tz::TimeZone,
    /// The org's remote model; `None`: the local responder answers every turn.
    pub model: Option<model::Endpoint>,
}

impl Default for OrgSettings {
    fn default() -> Self {
        OrgSettings {
            profile: Profile {
                appointment_minutes: 30,
                ..Profile::default()
            },
            timezone: jiff::tz::TimeZone::UTC,
            model: None,
        }
    }
}

/// Who said a transcript turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// The caller (an inbound message).
    Caller,
    /// The receptionist (an outbound message).
    Receptionist,
}

/// One turn of the transcript, for the caller's conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptTurn {
    /// Our call id.
    pub call_id: String,
    /// The org.
    pub org: String,
    /// Who spoke.
    pub speaker: Speaker,
    /// What was said.
    pub text: String,
    /// Start and end, ms since the call's media began (the caller's turns).
    pub span_ms: Option<(u64, u64)>,
    /// Recognition confidence (the caller's turns).
    pub confidence: Option<f32>,
    /// What the responder understood (the caller's turns).
    pub intent: Option<&'static str>,
}

/// A booking asked for by a caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Booking {
    /// Our call id.
    pub call_id: String,
    /// The org.
    pub org: String,
    /// The start, local to `timezone`.
    pub start: DateTime,
    /// The org's time zone.
    pub timezone: jiff::tz::TimeZone,
    /// Length, minutes.
    pub minutes: u16,
    /// The org's opening hours (the slots offered instead must fit them).
    pub hours: Option<responder::Hours>,
    /// The caller's appointment this one replaces (a reschedule).
    pub replaces: Option<String>,
}

/// A caller's next appointment, known when their call starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    /// Its id.
    pub id: String,
    /// Its start, local to the org's time zone.
    pub start: DateTime,
}

/// A caller's recorded message, to store in their conversation with its audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Voicemail {
    /// Our call id.
    pub call_id: String,
    /// The org.
    pub org: String,
    /// What the caller said (the whole recording transcribed; may be empty).
    pub text: String,
    /// The recording: 8 kHz mono PCM16.
    pub pcm: Vec<i16>,
}

/// What storing a booking did.
#[derive(Debug, Clone, PartialEq)]
pub enum Booked {
    /// Stored, with this id.
    Confirmed {
        /// The appointment's id.
        id: String,
    },
    /// The slot is someone else's; the next free one (local), if any fits.
    Taken {
        /// The next free start.
        next: Option<DateTime>,
    },
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("receptionist store unavailable")]
pub struct StoreFailure {
    /// The cause.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Org settings, transcript and appointments. Implemented by `gateway` on its database.
pub trait ReceptionistStore: Send + Sync + 'static {
    /// The org's settings (defaults when it set none).
    fn settings<'a>(&'a self, org: &'a str) -> BoxFuture<'a, Result<OrgSettings, StoreFailure>>;
    /// Commits one transcript turn to the call's conversation (and publishes it).
    fn transcript(&self, turn: TranscriptTurn) -> BoxFuture<'_, Result<(), StoreFailure>>;
    /// Books a slot, or says it is taken (with `replaces`: moves that appointment).
    fn book(&self, booking: Booking) -> BoxFuture<'_, Result<Booked, StoreFailure>>;
    /// The next appointment of the caller on `call_id` (by their number), local to `tz`.
    fn upcoming<'a>(
        &'a self,
        org: &'a str,
        call_id: &'a str,
        tz: &'a jiff::tz::TimeZone,
    ) -> BoxFuture<'a, Result<Option<Existing>, StoreFailure>>;
    /// Cancels the caller's appointment `id`; `false` when it is not theirs or not booked.
    fn cancel<'a>(
        &'a self,
        org: &'a str,
        call_id: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreFailure>>;
    /// Counts one answered caller turn against the org's cap on AI turns (the operator's
    /// `ai_turns_per_hour`); `false`, counting nothing, when the cap is reached: the
    /// receptionist then hands the caller to a person (or says goodbye) instead of answering.
    fn take_turn<'a>(&'a self, org: &'a str) -> BoxFuture<'a, Result<bool, StoreFailure>>;
    /// Commits a voicemail (a message of the call's conversation, its audio kept with it)
    /// and publishes it. Only once it returns `Ok` is the caller told it was saved.
    fn voicemail(&self, message: Voicemail) -> BoxFuture<'_, Result<(), StoreFailure>>;
}

/// Timing of the conversation.
#[derive(Debug, Clone)]
pub struct ReceptionistConfig {
    /// Silence (after the receptionist stops speaking) that earns a reprompt.
    pub reprompt_after: Duration,
    /// Reprompts before the goodbye.
    pub reprompts: u32,
    /// The longest voicemail; the recording stops there.
    pub voicemail_max: Duration,
    /// Silence after the caller's message that ends the recording.
    pub voicemail_end_silence: Duration,
    /// The longest the call waits on a remote model's next piece (a safety net behind the
    /// adapter's own timeouts); then the local responder answers, if nothing was said yet.
    pub model_wait: Duration,
    /// Answer a turn as soon as its words make it whole ([`responder::turn`]) instead of
    /// waiting out the whole silence that ends a turn.
    pub early_end: bool,
}

impl Default for ReceptionistConfig {
    fn default() -> Self {
        ReceptionistConfig {
            reprompt_after: Duration::from_secs(6),
            reprompts: 1,
            voicemail_max: Duration::from_secs(120),
            voicemail_end_silence: Duration::from_secs(3),
            model_wait: Duration::from_secs(3),
            early_end: true,
        }
    }
}

/// Everything a receptionist call needs, shared by all calls.
pub struct Host {
    /// The speech engines.
    pub speech: Arc<dyn Speech>,
    /// Settings, transcript, appointments.
    pub store: Arc<dyn ReceptionistStore>,
    /// The conversation logic.
    pub responder: Arc<dyn Responder>,
    /// The remote-model adapter, for orgs that configure an endpoint.
    pub model: Option<Arc<dyn model::ChatModel>>,
    /// Timing.
    pub config: ReceptionistConfig,
    /// Where sessions run (the media worker threads are not tokio threads).
    pub runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
