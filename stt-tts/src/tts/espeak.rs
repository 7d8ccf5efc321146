//! [`TextToSpeech`] over libespeak-ng, through a small direct FFI.
//!
//! libespeak-ng runs in synchronous mode: `espeak_Synth` returns when the text is spoken,
//! and meanwhile calls our callback with every few milliseconds of 22.05 kHz audio. The
//! callback resamples to the output rate and cuts 20 ms frames, so the first frame leaves
//! after the first buffer, long before the sentence is done; returning "abort" from the
//! callback stops synthesis at once (barge-in).
//!
//! The library keeps one global engine, so every call holds one process-wide lock. That
//! is fine here: a sentence takes a few milliseconds.

use std::ffi::{c_char, c_int, c_short, c_uint, c_void, CString};
use std::ops::ControlFlow;
use std::sync::{Mutex, OnceLock};

use super::{SynthOutcome, TextToSpeech};
use crate::error::SpeechError;
use audio::pcm::{frame_len, Framer};
use audio::resample::Resampler;

/// `espeak_EVENT` from `speak_lib.h`; only `user_data` is read.
#[repr(C)]
struct EspeakEvent {
    kind: c_int,
    unique_identifier: c_uint,
    text_position: c_int,
    length: c_int,
    audio_position: c_int,
    sample: c_int,
    user_data: *mut c_void,
    id: *const c_char,
}

type SynthCallback = unsafe extern "C" fn(*mut c_short, c_int, *mut EspeakEvent) -> c_int;

const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
const INITIALIZE_DONT_EXIT: c_int = 0x8000;
const POS_CHARACTER: c_int = 1;
const CHARS_UTF8: c_uint = 1;
const PARAM_RATE: c_int = 1;
const PARAM_PITCH: c_int = 3;
const EE_OK: c_int = 0;
/// Milliseconds of audio per callback: small, so the first frame leaves early.
const CALLBACK_MS: c_int = 20;

#[link(name = "espeak-ng")]
extern "C" {
    fn espeak_Initialize(
        output: c_int,
        buflength: c_int,
        path: *const c_char,
        options: c_int,
    ) -> c_int;
    fn espeak_SetSynthCallback(cb: SynthCallback);
    fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
    fn espeak_SetParameter(parameter: c_int, value: c_int, relative: c_int) -> c_int;
    #[cfg(feature = "piper")]
    fn espeak_TextToPhonemes(
        textptr: *mut *const c_void,
        textmode: c_int,
        phonememode: c_int,
    ) -> *const c_char;
    fn espeak_Synth(
        text: *const c_void,
        size: usize,
        position: c_uint,
        position_type: c_int,
        end_position: c_uint,
        flags: c_uint,
        unique_identifier: *mut c_uint,
        user_data: *mut c_void,
    ) -> c_int;
}

/// Settings of the espeak-ng voice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspeakConfig {
    /// espeak-ng voice name, e.g. `en-us`.
    pub voice: String,
    /// Speaking rate, words per minute (80–450).
    pub words_per_minute: u32,
    /// Base pitch, 0–100.
    pub pitch: u32,
    /// Output rate; 8000 for the phone line.
    pub out_rate: u32,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        Self {
            voice: "en-us".into(),
            words_per_minute: 175,
            pitch: 50,
            out_rate: 8_000,
        }
    }
}

/// The engine's global state: its native rate, and the settings last applied.
struct Engine {
    native_rate: u32,
    applied: Option<EspeakConfig>,
}

fn engine() -> Result<&'static Mutex<Engine>, SpeechError> {
    static ENGINE: OnceLock<Result<Mutex<Engine>, c_int>> = OnceLock::new();
    let init = ENGINE.get_or_init(|| {
        // SAFETY: called once, before any other espeak function; a null path selects the
        // installed data directory; DONT_EXIT makes failure a return code, not exit().
        let rate = unsafe {
            espeak_Initialize(
                AUDIO_OUTPUT_SYNCHRONOUS,
                CALLBACK_MS,
                std::ptr::null(),
                INITIALIZE_DONT_EXIT,
            )
        };
        if rate <= 0 {
            return Err(rate);
        }
        // SAFETY: `on_audio` has the signature libespeak-ng expects and never unwinds.
        unsafe { espeak_SetSynthCallback(on_audio) };
        Ok(Mutex::new(Engine {
            native_rate: rate as u32,
            applied: None,
        }))
    });
    init.as_ref()
        .map_err(|&code| SpeechError::EspeakInit { code })
}

/// What the callback works on during one `espeak_Synth` call.
struct SynthCtx<'a> {
    resampler: Option<Resampler>,
    framer: Framer,
    scratch: Vec<f32>,
    pcm: Vec<i16>,
    sink: &'a mut dyn FnMut(&[i16]) -> ControlFlow<()>,
    frames: usize,
    stopped: bool,
}

impl SynthCtx<'_> {
    /// Resamples and frames `samples` (native rate); `flush` ends the stream.
    fn feed(&mut self, samples: &[i16], flush: bool) {
        self.pcm.clear();
        match &mut self.resampler {
            Some(r) => {
                self.scratch.clear();
                r.process(&audio::pcm::to_f32(samples), &mut self.scratch);
                if flush {
                    r.flush(&mut self.scratch);
                }
                self.pcm
                    .extend(self.scratch.iter().map(|&s| audio::pcm::f32_to_i16(s)));
            }
            None => self.pcm.extend_from_slice(samples),
        }
        let (sink, frames, stopped) = (&mut *self.sink, &mut self.frames, &mut self.stopped);
        let mut emit = |frame: &[i16]| {
            if !*stopped {
                *frames += 1;
                if sink(frame).is_break() {
                    *stopped = true;
                }
            }
        };
        self.framer.push(&self.pcm, &mut emit);
        if flush {
            self.framer.flush(&mut emit);
        }
    }
}

unsafe extern "C" fn on_audio(wav: *mut c_short, n: c_int, events: *mut EspeakEvent) -> c_int {
    if events.is_null() {
        return 0;
    }
    // SAFETY: libespeak-ng passes an event list whose first entry carries the user_data
    // given to espeak_Synth, which is a live `SynthCtx` for the duration of that call.
    let ctx = unsafe { (*events).user_data as *mut SynthCtx<'_> };
    if ctx.is_null() {
        return 0;
    }
    // SAFETY: see above; the context is used by this thread only, inside espeak_Synth.
    let ctx = unsafe { &mut *ctx };
    if ctx.stopped {
        return 1;
    }
    let samples: &[i16] = if wav.is_null() || n <= 0 {
        &[]
    } else {
        // SAFETY: libespeak-ng hands `n` valid samples at `wav` for this call.
        unsafe { std::slice::from_raw_parts(wav, n as usize) }
    };
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.feed(samples, false)));
    if ok.is_err() {
        ctx.stopped = true;
    }
    c_int::from(ctx.stopped)
}

/// `phonememode` bit 1: phonemes as IPA (UTF-8) rather than espeak mnemonics.
#[cfg(feature = "piper")]
const PHONEMES_IPA: c_int = 0x02;

/// The IPA phonemes of `text` in `voice`, one string per clause (what Piper voices are
/// trained on). Shares the engine lock with synthesis.
#[cfg(feature = "piper")]
pub(crate) fn phonemize_ipa(text: &str, voice: &str) -> Result<Vec<String>, SpeechError> {
    let text = CString::new(text).map_err(|e| SpeechError::TextHasNul {
        position: e.nul_position(),
    })?;
    let mut engine = engine()?.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = EspeakConfig {
        voice: voice.to_owned(),
        ..EspeakConfig::default()
    };
    apply(&mut engine, &cfg)?;
    let mut clauses = Vec::new();
    let mut ptr: *const c_void = text.as_ptr().cast();
    while !ptr.is_null() {
        // SAFETY: the engine is initialised and locked; `ptr` points into `text`, which
        // outlives the loop; libespeak-ng advances it clause by clause and sets it to
        // null at the end, and returns a string valid until its next call.
        let out = unsafe { espeak_TextToPhonemes(&mut ptr, CHARS_UTF8 as c_int, PHONEMES_IPA) };
        if out.is_null() {
            break;
        }
        // SAFETY: a NUL-terminated string owned by libespeak-ng, copied at once.
        let clause = unsafe { std::ffi::CStr::from_ptr(out) }
            .to_string_lossy()
            .trim()
            .to_owned();
        if !clause.is_empty() {
            clauses.push(clause);
        }
    }
    Ok(clauses)
}

/// espeak-ng speech synthesis.
#[derive(Debug)]
pub struct EspeakTts {
    cfg: EspeakConfig,
    name: String,
}

impl EspeakTts {
    /// Initialises libespeak-ng (once per process) and checks that the voice exists.
    pub fn new(cfg: EspeakConfig) -> Result<Self, SpeechError> {
        if cfg.out_rate == 0 || cfg.out_rate > 48_000 {
            return Err(SpeechError::UnsupportedRate { rate: cfg.out_rate });
        }
        let mut engine = engine()?.lock().unwrap_or_else(|p| p.into_inner());
        apply(&mut engine, &cfg)?;
        let name = format!("espeak-ng:{}", cfg.voice);
        Ok(Self { cfg, name })
    }

    /// The engine's native rate (22050 Hz for the stock voices).
    pub fn native_rate(&self) -> Result<u32, SpeechError> {
        Ok(engine()?
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .native_rate)
    }
}

fn apply(engine: &mut Engine, cfg: &EspeakConfig) -> Result<(), SpeechError> {
    if engine.applied.as_ref() == Some(cfg) {
        return Ok(());
    }
    let voice = CString::new(cfg.voice.as_str()).map_err(|e| SpeechError::EspeakVoice {
        voice: cfg.voice.clone(),
        code: e.nul_position() as i32,
    })?;
    // SAFETY: the engine is initialised and locked; `voice` is a valid C string.
    let code = unsafe { espeak_SetVoiceByName(voice.as_ptr()) };
    if code != EE_OK {
        engine.applied = None;
        return Err(SpeechError::EspeakVoice {
            voice: cfg.voice.clone(),
            code,
        });
    }
    // SAFETY: as above; out-of-range values are clamped by the library.
    unsafe {
        espeak_SetParameter(PARAM_RATE, cfg.words_per_minute as c_int, 0);
        espeak_SetParameter(PARAM_PITCH, cfg.pitch as c_int, 0);
    }
    engine.applied = Some(cfg.clone());
    Ok(())
}

impl TextToSpeech for EspeakTts {
    fn out_rate(&self) -> u32 {
        self.cfg.out_rate
    }

    fn synthesize(
        &self,
        text: &str,
        sink: &mut dyn FnMut(&[i16]) -> ControlFlow<()>,
    ) -> Result<SynthOutcome, SpeechError> {
        let text = CString::new(text).map_err(|e| SpeechError::TextHasNul {
            position: e.nul_position(),
        })?;
        let mut engine = engine()?.lock().unwrap_or_else(|p| p.into_inner());
        apply(&mut engine, &self.cfg)?;
        let resampler = match engine.native_rate {
            r if r == self.cfg.out_rate => None,
            r => Some(Resampler::new(r, self.cfg.out_rate)?),
        };
        let mut ctx = SynthCtx {
            resampler,
            framer: Framer::new(frame_len(self.cfg.out_rate)),
            scratch: Vec::new(),
            pcm: Vec::new(),
            sink,
            frames: 0,
            stopped: false,
        };
        let bytes = text.as_bytes_with_nul();
        // SAFETY: the engine is initialised and locked for the whole call; `text` outlives
        // it; `ctx` outlives it and is only touched by `on_audio` on this thread.
        let code = unsafe {
            espeak_Synth(
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                POS_CHARACTER,
                0,
                CHARS_UTF8,
                std::ptr::null_mut(),
                (&mut ctx as *mut SynthCtx<'_>).cast(),
            )
        };
        drop(engine);
        if code != EE_OK && !ctx.stopped {
            return Err(SpeechError::EspeakSynth { code });
        }
        if ctx.stopped {
            return Ok(SynthOutcome::Stopped { frames: ctx.frames });
        }
        ctx.feed(&[], true);
        Ok(if ctx.stopped {
            SynthOutcome::Stopped { frames: ctx.frames }
        } else {
            SynthOutcome::Completed { frames: ctx.frames }
        })
    }

    fn name(&self) -> &str {
        &self.name
    }
}
