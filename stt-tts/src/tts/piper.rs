//! [`TextToSpeech`] with a Piper voice (VITS, ONNX) through onnxruntime — the better voice,
//! behind the `piper` cargo feature.
//!
//! ```text
//!  text ─split into sentences─▶ espeak-ng IPA phonemes ─phoneme_id_map─▶ ids
//!       ─onnxruntime (VITS)─▶ 22.05 kHz audio ─resample─▶ 20 ms frames at out_rate
//! ```
//!
//! Clauses are synthesised one at a time, so the first frame leaves after the first
//! clause, not the whole reply. onnxruntime is loaded at run time from the library the
//! installer extracts from the PyPI `onnxruntime` wheel (`ort`'s own download does not work
//! here); `PiperConfig::onnxruntime` points at it.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::value::Tensor;

use super::{SynthOutcome, TextToSpeech};
use crate::error::SpeechError;
use audio::pcm::{frame_len, Framer};
use audio::resample::Resampler;

/// Settings of a Piper voice.
#[derive(Debug, Clone, PartialEq)]
pub struct PiperConfig {
    /// The voice `.onnx`; its `.onnx.json` must sit beside it.
    pub voice: PathBuf,
    /// onnxruntime's shared library (`libonnxruntime.so.*`).
    pub onnxruntime: PathBuf,
    /// Output rate; 8000 for the phone line.
    pub out_rate: u32,
    /// onnxruntime intra-op threads.
    pub threads: usize,
}

impl PiperConfig {
    /// The installed voice and library in `models_dir`.
    pub fn installed(models_dir: &Path) -> Self {
        Self {
            voice: models_dir.join("en_US-joe-medium.onnx"),
            onnxruntime: models_dir.join("libonnxruntime.so.1.28.0"),
            out_rate: 8_000,
            threads: crate::stt::default_threads(),
        }
    }
}

#[derive(serde::Deserialize)]
struct VoiceJson {
    audio: AudioJson,
    espeak: EspeakJson,
    inference: InferenceJson,
    phoneme_id_map: HashMap<String, Vec<i64>>,
}

#[derive(serde::Deserialize)]
struct AudioJson {
    sample_rate: u32,
}

#[derive(serde::Deserialize)]
struct EspeakJson {
    voice: String,
}

#[derive(serde::Deserialize)]
struct InferenceJson {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

/// A loaded Piper voice.
pub struct PiperTts {
    cfg: PiperConfig,
    name: String,
    voice: VoiceJson,
    session: Mutex<Session>,
}

impl std::fmt::Debug for PiperTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiperTts")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl PiperTts {
    /// Loads onnxruntime and the voice.
    pub fn new(cfg: PiperConfig) -> Result<Self, SpeechError> {
        let json_path = PathBuf::from(format!("{}.json", cfg.voice.display()));
        let text = std::fs::read_to_string(&json_path).map_err(|source| SpeechError::Io {
            path: json_path.clone(),
            source,
        })?;
        let voice: VoiceJson =
            serde_json::from_str(&text).map_err(|source| SpeechError::PiperConfig {
                path: json_path,
                source,
            })?;
        if !cfg.voice.is_file() {
            return Err(SpeechError::ModelMissing {
                path: cfg.voice.clone(),
            });
        }
        let env = ort::init_from(&cfg.onnxruntime)?
            .with_name("dartwing-piper")
            .build()?;
        // A thread setting the library refuses falls back to its default.
        let session = Session::builder(&env)?
            .with_intra_threads(cfg.threads.max(1))
            .unwrap_or_else(|e| e.recover())
            .commit_from_file(&cfg.voice)?;
        let name = format!(
            "piper:{}",
            cfg.voice
                .file_stem()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
        Ok(Self {
            cfg,
            name,
            voice,
            session: Mutex::new(session),
        })
    }

    /// Phoneme ids of one sentence: `^`, each phoneme followed by the pad `_`, then `$`.
    fn ids(&self, sentence: &str) -> Result<Vec<i64>, SpeechError> {
        let map = &self.voice.phoneme_id_map;
        let id = |c: &str| map.get(c).and_then(|v| v.first().copied());
        let pad = id("_").unwrap_or(0);
        let mut ids = vec![id("^").unwrap_or(1), pad];
        let clauses = super::espeak::phonemize_ipa(sentence, &self.voice.espeak.voice)?;
        for (i, clause) in clauses.iter().enumerate() {
            if i > 0 {
                ids.extend(id(",").into_iter().chain(id(" ")).flat_map(|x| [x, pad]));
            }
            for ch in clause.chars() {
                let mut buf = [0u8; 4];
                // Phonemes the voice does not know are skipped, as Piper itself does.
                if let Some(x) = id(ch.encode_utf8(&mut buf)) {
                    ids.extend([x, pad]);
                }
            }
        }
        let end = if sentence.trim_end().ends_with('?') {
            "?"
        } else {
            "."
        };
        ids.extend(id(end).into_iter().flat_map(|x| [x, pad]));
        ids.push(id("$").unwrap_or(2));
        Ok(ids)
    }

    /// Runs the voice on one sentence; 22.05 kHz samples.
    fn infer(&self, ids: Vec<i64>) -> Result<Vec<f32>, SpeechError> {
        let n = ids.len();
        let inf = &self.voice.inference;
        let input = Tensor::from_array(([1usize, n], ids))?;
        let lengths = Tensor::from_array(([1usize], vec![n as i64]))?;
        let scales = Tensor::from_array((
            [3usize],
            vec![inf.noise_scale, inf.length_scale, inf.noise_w],
        ))?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales])?;
        let (_, audio) = outputs[0].try_extract_tensor::<f32>()?;
        Ok(audio.to_vec())
    }
}

/// Splits text into the chunks synthesised one by one: after `.`, `?`, `!`, `,`, `;` or
/// `:` followed by a space. Clause-sized chunks let the first audio leave sooner; the
/// chunk's own punctuation is kept, so its intonation stays right.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(b, b'.' | b'?' | b'!')
            && bytes.get(i + 1).is_none_or(|c| c.is_ascii_whitespace())
        {
            out.push(text[start..=i].trim());
            start = i + 1;
        }
    }
    out.push(text[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

impl TextToSpeech for PiperTts {
    fn out_rate(&self) -> u32 {
        self.cfg.out_rate
    }

    fn synthesize(
        &self,
        text: &str,
        sink: &mut dyn FnMut(&[i16]) -> ControlFlow<()>,
    ) -> Result<SynthOutcome, SpeechError> {
        if let Some(position) = text.find('\0') {
            return Err(SpeechError::TextHasNul { position });
        }
        let native = self.voice.audio.sample_rate;
        let mut resampler = (native != self.cfg.out_rate)
            .then(|| Resampler::new(native, self.cfg.out_rate))
            .transpose()?;
        let mut framer = Framer::new(frame_len(self.cfg.out_rate));
        let frames = std::cell::Cell::new(0);
        let stopped = std::cell::Cell::new(false);
        let mut emit = |f: &[i16]| {
            if !stopped.get() {
                frames.set(frames.get() + 1);
                stopped.set(sink(f).is_break());
            }
        };
        let mut scratch = Vec::new();
        for sentence in sentences(text) {
            let audio = self.infer(self.ids(sentence)?)?;
            scratch.clear();
            match &mut resampler {
                Some(r) => r.process(&audio, &mut scratch),
                None => scratch.extend_from_slice(&audio),
            }
            framer.push(&audio::pcm::to_i16(&scratch), &mut emit);
            if stopped.get() {
                return Ok(SynthOutcome::Stopped {
                    frames: frames.get(),
                });
            }
        }
        scratch.clear();
        if let Some(r) = &mut resampler {
            r.flush(&mut scratch);
        }
        framer.push(&audio::pcm::to_i16(&scratch), &mut emit);
        framer.flush(&mut emit);
        let frames = frames.get();
        Ok(if stopped.get() {
            SynthOutcome::Stopped { frames }
        } else {
            SynthOutcome::Completed { frames }
        })
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sentences() {
        assert_eq!(
            sentences("Hello. How are you? Fine"),
            vec!["Hello.", "How are you?", "Fine"]
        );
        assert_eq!(sentences("Call 3.30 today."), vec!["Call 3.30 today."]);
        assert!(sentences("  ").is_empty());
    }
}
