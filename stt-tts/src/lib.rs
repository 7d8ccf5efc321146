//! Speech for telephone audio, entirely local: speech-to-text (whisper.cpp), text-to-speech
//! (espeak-ng; Piper with the `piper` feature), voice activity and end-of-turn detection, and the audio plumbing between a
//! phone line and those engines come from the `audio` crate (G.711, band-limited
//! resampling, 20 ms framing, WAV), shared with `voice`.
//!
//! ```text
//!  RTP PCMU/PCMA ─▶ audio::g711 ─▶ 8 kHz PCM16 ─▶ stt::StreamingTranscriber ─(VAD: turn ended)─▶ whisper (worker) ─▶ text
//!                                              └─ SpeechStart = barge-in: stop playback
//!  text ─▶ tts::TextToSpeech (espeak-ng 22.05 kHz ─audio::resample─▶ 8 kHz) ─▶ 20 ms frames ─▶ audio::g711 ─▶ RTP
//! ```
//!
//! The crate knows nothing of SIP, sockets or the gateway: `voice` drives it with frames.
//! Nothing here blocks the caller's media path: inference runs on worker threads fed by
//! bounded queues, and a full queue drops work rather than waiting. Models are installed
//! ahead of time by `scripts/install-models.sh` (see [`models`]); the engines never fetch.

pub mod cli;
pub mod error;
pub mod models;
pub mod stt;
pub mod tts;
pub mod vad;
pub mod wav;

pub use error::{ModelProblem, SpeechError};
pub use stt::{SpeechToText, Transcript};
pub use tts::TextToSpeech;
