//! [`SpeechToText`] over whisper.cpp (whisper-rs), tuned for short telephone turns.
//!
//! Three things make it fit a phone call:
//! - **Reduced encoder context.** Whisper always encodes a 30 s window (1500 frames);
//!   `audio_ctx` is set to the utterance's own length (plus a margin), which measured
//!   several times faster on tiny.en for 1–5 s turns with the same text.
//! - **No hallucinated text on silence.** Audio quieter than a floor is not decoded at
//!   all; segments whisper itself flags as no-speech, or decodes with low confidence,
//!   or that are only a non-speech marker (`[BLANK_AUDIO]`, `(music)`), are dropped.
//! - **Checked model.** The file is walked by [`check_model`](super::check_model) before
//!   whisper.cpp sees it, so a truncated download is an error, not a crash or garbage.
//!
//! The context (weights) is shared; each concurrent call takes a decoding state from a
//! small pool, so two calls can transcribe at once without reloading anything.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::{Segment, SpeechToText, Transcript, STT_RATE};
use crate::error::SpeechError;

/// Settings of the whisper engine.
#[derive(Debug, Clone, PartialEq)]
pub struct WhisperConfig {
    /// The ggml model file.
    pub model: PathBuf,
    /// CPU threads per transcription.
    pub threads: usize,
    /// Spoken language (`"en"`); ignored by English-only models.
    pub language: String,
    /// Size the encoder context to the utterance instead of 30 s (much faster).
    pub reduced_audio_ctx: bool,
    /// Frames of encoder context (20 ms each) added after the utterance when
    /// `reduced_audio_ctx` is on. Measured on tiny.en: with under ~150 frames of margin,
    /// short turns often decode as a loop ("No. No. No. ..."); 192 removed the loops.
    pub audio_ctx_margin: usize,
    /// Audio whose loudest 20 ms is quieter than this (dBFS) is not decoded at all.
    pub silence_dbfs: f32,
    /// A segment whose no-speech probability exceeds this ...
    pub no_speech_threshold: f32,
    /// ... and whose confidence is under this, is dropped as not speech.
    pub no_speech_confidence: f32,
    /// Any segment with confidence under this is dropped.
    pub min_confidence: f32,
    /// Beams searched while decoding; 1 decodes greedily (the default: see BENCHMARKS.md,
    /// "decoding choices", for what a wider beam buys on each voice and costs).
    pub beam_size: usize,
}

impl WhisperConfig {
    /// Defaults for `model`: English, reduced context, [`default_threads`] threads.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        let threads = default_threads();
        Self {
            model: model.into(),
            threads,
            language: "en".to_owned(),
            reduced_audio_ctx: true,
            audio_ctx_margin: 192,
            silence_dbfs: -50.0,
            no_speech_threshold: 0.6,
            no_speech_confidence: 0.6,
            min_confidence: 0.15,
            beam_size: 1,
        }
    }
}

/// Inference threads that leave one core to the media path and the rest of the gateway:
/// cores − 1, at least 1, at most 4. whisper.cpp's threads spin while they wait for each
/// other, so when they outnumber free cores it slows down several-fold (measured here:
/// tiny.en RTF 0.13 with 2 threads on 2 idle cores, 1.9–4.3 with 2 threads on 2 busy
/// cores, 0.20 with 1 thread on the same busy cores).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).clamp(1, 4))
}

/// Whisper needs at least one second of input; shorter turns are padded with silence.
const MIN_INPUT_MS: usize = 1_100;
/// Silence appended after every utterance so the last word is not cut by the window.
const TAIL_PAD_MS: usize = 200;
/// Encoder frames per second of audio.
const ENCODER_FRAMES_PER_SEC: usize = 50;
/// Token budget per segment: a base plus a rate well above fast speech (digits with
/// punctuation run about 5 tokens a second).
const MAX_TOKENS_BASE: usize = 16;
const MAX_TOKENS_PER_SEC: usize = 8;
/// The full encoder window.
const FULL_AUDIO_CTX: usize = 1_500;

/// How one utterance is decoded (see [`WhisperStt::plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodePlan {
    /// Samples after silence padding.
    pub padded_len: usize,
    /// Encoder context, or `None` for the full 30 s window.
    pub audio_ctx: Option<usize>,
    /// Token cap per segment.
    pub max_tokens: usize,
}

/// Whisper through whisper.cpp.
pub struct WhisperStt {
    cfg: WhisperConfig,
    name: String,
    ctx: WhisperContext,
    eot: i32,
    multilingual: bool,
    states: Mutex<Vec<WhisperState>>,
}

impl std::fmt::Debug for WhisperStt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperStt")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl WhisperStt {
    /// Checks and loads the model. Fails with [`SpeechError::ModelMissing`] or
    /// [`SpeechError::ModelInvalid`] on a missing or damaged file.
    pub fn load(cfg: WhisperConfig) -> Result<Self, SpeechError> {
        let info = super::check_model(&cfg.model)?;
        // Route whisper.cpp's logging into nothing rather than stderr (first call only).
        whisper_rs::install_logging_hooks();
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let ctx = WhisperContext::new_with_params(&cfg.model, params).map_err(|source| {
            SpeechError::WhisperLoad {
                path: cfg.model.clone(),
                source,
            }
        })?;
        let state = ctx.create_state()?;
        let name = format!(
            "whisper:{}",
            cfg.model
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
        tracing::info!(model = %cfg.model.display(), tensors = info.n_tensors, "whisper model loaded");
        Ok(Self {
            eot: ctx.token_eot(),
            multilingual: info.is_multilingual(),
            name,
            ctx,
            states: Mutex::new(vec![state]),
            cfg,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &WhisperConfig {
        &self.cfg
    }

    /// The model file.
    pub fn model_path(&self) -> &Path {
        &self.cfg.model
    }

    fn take_state(&self) -> Result<WhisperState, SpeechError> {
        let pooled = self.states.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(s) => Ok(s),
            None => Ok(self.ctx.create_state()?),
        }
    }

    fn give_state(&self, state: WhisperState) {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(state);
    }

    fn params(&self, audio_ctx: Option<usize>, max_tokens: usize) -> FullParams<'_, '_> {
        let strategy = match self.cfg.beam_size {
            0 | 1 => SamplingStrategy::Greedy { best_of: 1 },
            n => SamplingStrategy::BeamSearch {
                beam_size: n as i32,
                patience: -1.0,
            },
        };
        let mut p = FullParams::new(strategy);
        p.set_n_threads(self.cfg.threads as i32);
        if self.multilingual {
            p.set_language(Some(&self.cfg.language));
        }
        p.set_translate(false);
        p.set_no_context(true);
        p.set_suppress_blank(true);
        p.set_suppress_nst(true);
        p.set_no_speech_thold(self.cfg.no_speech_threshold);
        p.set_temperature_inc(0.0);
        p.set_print_special(false);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_timestamps(false);
        if let Some(ctx) = audio_ctx {
            p.set_audio_ctx(ctx as i32);
        }
        // A cap on tokens per segment bounds the cost of a decoding loop.
        p.set_max_tokens(max_tokens as i32);
        p
    }

    /// How an utterance of `samples` (16 kHz) is decoded: padding, encoder context, token
    /// cap. Public so a benchmark can hand whisper.cpp exactly the same work.
    pub fn plan(&self, samples: usize) -> DecodePlan {
        let min = MIN_INPUT_MS * STT_RATE as usize / 1000;
        let pad = TAIL_PAD_MS * STT_RATE as usize / 1000;
        let padded_len = (samples + pad).max(min);
        DecodePlan {
            padded_len,
            audio_ctx: self.audio_ctx_for(padded_len),
            max_tokens: MAX_TOKENS_BASE + MAX_TOKENS_PER_SEC * padded_len / STT_RATE as usize,
        }
    }

    /// Encoder context for `samples` of (padded) input, or `None` for the full window.
    fn audio_ctx_for(&self, samples: usize) -> Option<usize> {
        if !self.cfg.reduced_audio_ctx {
            return None;
        }
        let frames = (samples * ENCODER_FRAMES_PER_SEC).div_ceil(STT_RATE as usize)
            + self.cfg.audio_ctx_margin;
        (frames < FULL_AUDIO_CTX).then_some(frames)
    }

    fn keep(&self, seg: &Segment) -> bool {
        if is_non_speech_marker(&seg.text) {
            return false;
        }
        if seg.confidence < self.cfg.min_confidence {
            return false;
        }
        !(seg.no_speech_prob > self.cfg.no_speech_threshold
            && seg.confidence < self.cfg.no_speech_confidence)
    }
}

/// Text that whisper emits for non-speech: `[BLANK_AUDIO]`, `(music)`, `*cough*`, `...`.
fn is_non_speech_marker(text: &str) -> bool {
    let t = text.trim();
    if t.chars().all(|c| !c.is_alphanumeric()) {
        return true;
    }
    let wrapped = |open, close| t.starts_with(open) && t.ends_with(close);
    wrapped('[', ']') || wrapped('(', ')') || wrapped('*', '*') || wrapped('♪', '♪')
}

/// Loudest 20 ms window of `audio`, dBFS.
fn peak_window_dbfs(audio: &[f32]) -> f32 {
    let win = (STT_RATE / 50) as usize;
    audio
        .chunks(win)
        .map(|w| {
            let ms: f32 = w.iter().map(|s| s * s).sum::<f32>() / w.len() as f32;
            10.0 * ms.max(1e-12).log10()
        })
        .fold(f32::NEG_INFINITY, f32::max)
}

impl SpeechToText for WhisperStt {
    fn transcribe(&self, audio: &[f32]) -> Result<Transcript, SpeechError> {
        self.transcribe_with_prompt(audio, None)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl WhisperStt {
    /// Transcribes like [`SpeechToText::transcribe`], biased by `prompt`: text whisper
    /// takes as what was said just before (a caller's vocabulary: the business's name, the
    /// questions it expects), which makes it prefer those words when the audio is unclear.
    pub fn transcribe_with_prompt(
        &self,
        audio: &[f32],
        prompt: Option<&str>,
    ) -> Result<Transcript, SpeechError> {
        let started = Instant::now();
        let audio_ms = audio::pcm::duration_ms(audio.len(), STT_RATE);
        if audio.is_empty() || peak_window_dbfs(audio) < self.cfg.silence_dbfs {
            return Ok(Transcript {
                segments: Vec::new(),
                audio_ms,
                elapsed: started.elapsed(),
            });
        }
        let plan = self.plan(audio.len());
        let mut input = Vec::with_capacity(plan.padded_len);
        input.extend_from_slice(audio);
        input.resize(plan.padded_len, 0.0);
        let mut params = self.params(plan.audio_ctx, plan.max_tokens);
        if let Some(prompt) = prompt.filter(|p| !p.trim().is_empty()) {
            params.set_initial_prompt(prompt);
        }

        let mut state = self.take_state()?;
        let result = state.full(params, &input);
        let segments = result.map(|()| self.collect(&state));
        self.give_state(state);
        let segments = segments?;
        let mut segments: Vec<Segment> = segments.into_iter().filter(|s| self.keep(s)).collect();
        for s in &mut segments {
            s.end_ms = s.end_ms.min(audio_ms);
            s.start_ms = s.start_ms.min(s.end_ms);
            s.text = super::collapse_repeats(&s.text);
        }
        segments.dedup_by(|b, a| a.text == b.text);
        Ok(Transcript {
            segments,
            audio_ms,
            elapsed: started.elapsed(),
        })
    }

    fn collect(&self, state: &WhisperState) -> Vec<Segment> {
        let mut out = Vec::new();
        for seg in state.as_iter() {
            let text = seg
                .to_str_lossy()
                .map(|t| t.trim().to_owned())
                .unwrap_or_default();
            let (mut sum, mut n) = (0.0f32, 0u32);
            for i in 0..seg.n_tokens() {
                if let Some(tok) = seg.get_token(i) {
                    if tok.token_id() < self.eot {
                        sum += tok.token_probability();
                        n += 1;
                    }
                }
            }
            out.push(Segment {
                // whisper reports centiseconds.
                start_ms: seg.start_timestamp().max(0) as u64 * 10,
                end_ms: seg.end_timestamp().max(0) as u64 * 10,
                text,
                confidence: if n == 0 { 0.0 } else { sum / n as f32 },
                no_speech_prob: seg.no_speech_probability(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_recognised() {
        for t in ["[BLANK_AUDIO]", " (music) ", "*cough*", "...", "♪ ♪", ""] {
            assert!(is_non_speech_marker(t), "{t}");
        }
        for t in ["Yes.", "Call me at 5 p.m.", "(555) 123-4567 please"] {
            assert!(!is_non_speech_marker(t), "{t}");
        }
    }

    #[test]
    fn peak_window_level() {
        assert!(peak_window_dbfs(&[0.0; 16_000]) < -100.0);
        let mut a = vec![0.0f32; 16_000];
        a[8_000..8_320].iter_mut().for_each(|s| *s = 0.5);
        assert!((peak_window_dbfs(&a) + 6.02).abs() < 0.1);
    }
}
