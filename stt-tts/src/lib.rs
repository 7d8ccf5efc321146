//! Speech for telephone audio: `SpeechToText` (whisper), `TextToSpeech` (espeak-ng, Piper),
//! voice activity detection, resampling and G.711.
//!
//! Not built yet: this crate only reserves its place in the workspace.
