//! Telephone audio plumbing, shared by `voice` (the RTP media path) and `stt-tts` (speech):
//! G.711 companding, WAV/RIFF parsing and writing with the mono [`Clip`] type, the
//! band-limited polyphase resampler, 20 ms framing and PCM16 helpers.
//!
//! ```text
//!  RTP payload ─▶ g711 decode ─▶ 8 kHz PCM16 ─▶ pcm::Framer (20 ms) ─▶ resample ─▶ 16 kHz f32 (whisper)
//!  WAV bytes   ─▶ wav::parse_wav ─▶ Clip (mono) ─▶ Clip::to_rate(8000) ─▶ g711 encode ─▶ RTP
//! ```
//!
//! Why a crate of its own: `voice` needs these without building whisper.cpp (which
//! `stt-tts` links), and both must agree bit for bit on what a frame and a code mean. Everything here is
//! pure (no file or socket I/O, no threads) and depends on nothing heavier than
//! `thiserror`; callers read and write the files.

pub mod g711;
pub mod pcm;
pub mod resample;
pub mod wav;

pub use g711::G711Law;
pub use resample::{RateError, Resampler};
pub use wav::{Clip, WavError};
