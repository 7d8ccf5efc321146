//! Speech-to-text: the [`SpeechToText`] boundary, its whisper.cpp implementation, and the
//! streaming front end that turns a live call's audio into one transcript per turn.
//!
//! ```text
//!  RTP frames ──push()──▶ StreamingTranscriber ──VAD──▶ turn audio ──bounded queue──▶ worker thread
//!  (never blocks)              │ SpeechStart (barge-in)                     │ SpeechToText::transcribe
//!                              ▼                                            ▼
//!                          events to the caller                   TurnTranscript on a channel
//! ```
//!
//! `SpeechToText` itself is the blocking, utterance-level engine: it gets one finished
//! turn and returns its text. Only the worker thread calls it, so the media path never
//! waits on inference; a full queue drops the turn and says so instead of stalling.

mod model;
mod repeats;
mod stream;
mod whisper;

use std::time::Duration;

pub use model::{check_model, ModelInfo};
pub use repeats::collapse_repeats;
pub use stream::{StreamConfig, StreamEvent, StreamingTranscriber, Tentative, TurnTranscript};
pub use whisper::{default_threads, DecodePlan, WhisperConfig, WhisperStt};

use crate::error::SpeechError;

/// The rate every [`SpeechToText`] takes its input at.
pub const STT_RATE: u32 = 16_000;

/// One stretch of recognised speech.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start, ms from the start of the utterance.
    pub start_ms: u64,
    /// End, ms from the start of the utterance.
    pub end_ms: u64,
    /// The words, trimmed.
    pub text: String,
    /// Mean probability of the segment's text tokens, 0–1.
    pub confidence: f32,
    /// The model's probability that the window held no speech, 0–1.
    pub no_speech_prob: f32,
}

/// The result of transcribing one utterance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcript {
    /// Kept segments, in order. Empty for silence and noise.
    pub segments: Vec<Segment>,
    /// Duration of the audio transcribed, ms.
    pub audio_ms: u64,
    /// Wall time the engine spent.
    pub elapsed: Duration,
}

impl Transcript {
    /// The text of all kept segments, joined by single spaces.
    pub fn text(&self) -> String {
        let parts: Vec<&str> = self
            .segments
            .iter()
            .map(|s| s.text.as_str())
            .filter(|t| !t.is_empty())
            .collect();
        parts.join(" ")
    }

    /// Whether nothing was recognised.
    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.text.is_empty())
    }

    /// Wall time over audio time (below 1 is faster than real time).
    pub fn real_time_factor(&self) -> f64 {
        if self.audio_ms == 0 {
            return 0.0;
        }
        self.elapsed.as_secs_f64() * 1000.0 / self.audio_ms as f64
    }
}

/// A speech recogniser for complete utterances.
///
/// Blocking and CPU-heavy: call it from a worker thread (as [`StreamingTranscriber`]
/// does), never from the media path or an async task.
pub trait SpeechToText: Send + Sync {
    /// Transcribes mono f32 audio at [`STT_RATE`].
    fn transcribe(&self, audio: &[f32]) -> Result<Transcript, SpeechError>;

    /// A short name for logs and metrics, e.g. `whisper:ggml-tiny.en.bin`.
    fn name(&self) -> &str;
}
