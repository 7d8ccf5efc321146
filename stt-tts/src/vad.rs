//! Streaming voice activity detection and end-of-turn.
//!
//! WebRTC's GMM voice detector (libfvad via `webrtc-vad`) classifies 10 ms frames; this
//! module turns those decisions into turn events:
//!
//! ```text
//!  silence ──(start_ms of voiced audio)──▶ speech ──(hangover_ms of unvoiced)──▶ silence
//!            emits SpeechStart{at}                   emits SpeechEnd{start, end}
//!            and raises the barge-in flag
//! ```
//!
//! Reported times are stream times of the first and last voiced audio, not of the moment
//! the decision was made: `SpeechStart` is decided `start_ms` after speech began (that is
//! the barge-in latency), `SpeechEnd` `hangover_ms` after it ended. The GMM detector keeps
//! saying "voice" for a few frames after speech stops (its own overhang), so a frame only
//! counts as voiced when its energy is also above a tracked noise floor; that keeps the
//! reported end within a frame or two of the real one. Conversely it misses unvoiced
//! edges (a leading "f", a final "s"), so loud frames adjoining voice move the reported
//! start and end outward by up to 150 ms.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::SpeechError;

/// How far loud-but-unvoiced audio may move a turn's start earlier or its end later, ms.
const EDGE_EXTENSION_MS: u64 = 150;
/// Frames (10 ms) over which the quietest frame is taken as the noise floor.
const NOISE_WINDOW_FRAMES: usize = 150;
/// GMM-voiced 10 ms frames a run needs before it can become speech (any more and an
/// unvoiced onset like "f" delays barge-in past 100 ms).
const MIN_VOICED_FRAMES: u32 = 1;
/// Quiet 10 ms frames tolerated inside a run of loud ones.
const MAX_RUN_GAP_FRAMES: u32 = 1;

/// How eager the GMM detector is to call a frame voice (libfvad modes 0–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggressiveness {
    /// Mode 0: calls most things voice.
    Quality,
    /// Mode 1.
    LowBitrate,
    /// Mode 2: a good default for telephone audio.
    Aggressive,
    /// Mode 3: rejects the most noise, may clip soft speech.
    VeryAggressive,
}

/// VAD settings.
#[derive(Debug, Clone, PartialEq)]
pub struct VadConfig {
    /// Input rate: 8000 or 16000 Hz.
    pub rate: u32,
    /// GMM mode.
    pub aggressiveness: Aggressiveness,
    /// Voiced audio needed before speech is declared (barge-in latency), in ms.
    pub start_ms: u32,
    /// Unvoiced audio that ends a turn (the hangover), in ms.
    pub hangover_ms: u32,
    /// Frames quieter than this are never voice, whatever the GMM says (dBFS).
    pub floor_dbfs: f32,
    /// A voiced frame must be this far above the noise floor (dB), the quietest frame of
    /// the last 1.5 s.
    pub snr_db: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            rate: 8_000,
            aggressiveness: Aggressiveness::Aggressive,
            start_ms: 40,
            hangover_ms: 500,
            floor_dbfs: -50.0,
            snr_db: 6.0,
        }
    }
}

/// A turn boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began at `at_ms` (stream time). Stop any playback: this is barge-in.
    SpeechStart {
        /// Stream time of the first voiced audio, ms.
        at_ms: u64,
    },
    /// The turn that began at `start_ms` ended at `end_ms` (last voiced audio).
    SpeechEnd {
        /// Stream time of the first voiced audio, ms.
        start_ms: u64,
        /// Stream time just after the last voiced audio, ms.
        end_ms: u64,
    },
}

/// A flag raised when the caller starts speaking; the playback side polls and clears it.
#[derive(Debug, Clone, Default)]
pub struct BargeIn(Arc<AtomicBool>);

impl BargeIn {
    /// Takes the flag: true once per detected speech start.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }

    /// Whether the flag is raised, without clearing it.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// libfvad's state is plain heap memory owned by this value, with no thread affinity.
struct Fvad(webrtc_vad::Vad);

// SAFETY: `webrtc_vad::Vad` holds a pointer to a libfvad instance that it alone owns and
// frees on drop; libfvad keeps no thread-local or global state, so moving the owner to
// another thread is sound. `&self` methods are not exposed, so no sharing happens.
unsafe impl Send for Fvad {}

/// The streaming detector. Feed it any chunk size; it works in 10 ms frames internally.
pub struct Vad {
    cfg: VadConfig,
    fvad: Fvad,
    framer: audio::pcm::Framer,
    frame_ms: u64,
    /// Stream time of the next frame's start, ms.
    now_ms: u64,
    in_speech: bool,
    /// Start of the current run of voiced frames, ms.
    run_start: Option<u64>,
    run_len_ms: u64,
    /// Unvoiced frames since the current run's last voiced frame.
    run_gap: u32,
    /// GMM-voiced frames in the current run.
    run_voiced: u32,
    /// Whether every frame since the last voiced one was loud (the end may still grow).
    tail_open: bool,
    speech_start_ms: u64,
    last_voiced_end_ms: u64,
    /// Energies of the last `NOISE_WINDOW_FRAMES` frames; their minimum is the noise floor.
    recent_energy: std::collections::VecDeque<f32>,
    barge_in: BargeIn,
}

impl std::fmt::Debug for Vad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vad")
            .field("cfg", &self.cfg)
            .field("now_ms", &self.now_ms)
            .field("in_speech", &self.in_speech)
            .finish()
    }
}

impl Vad {
    /// A detector with `cfg`.
    pub fn new(cfg: VadConfig) -> Result<Self, SpeechError> {
        let rate = match cfg.rate {
            8_000 => webrtc_vad::SampleRate::Rate8kHz,
            16_000 => webrtc_vad::SampleRate::Rate16kHz,
            rate => return Err(SpeechError::UnsupportedRate { rate }),
        };
        let mode = match cfg.aggressiveness {
            Aggressiveness::Quality => webrtc_vad::VadMode::Quality,
            Aggressiveness::LowBitrate => webrtc_vad::VadMode::LowBitrate,
            Aggressiveness::Aggressive => webrtc_vad::VadMode::Aggressive,
            Aggressiveness::VeryAggressive => webrtc_vad::VadMode::VeryAggressive,
        };
        let frame = (cfg.rate / 100) as usize;
        Ok(Self {
            fvad: Fvad(webrtc_vad::Vad::new_with_rate_and_mode(rate, mode)),
            framer: audio::pcm::Framer::new(frame),
            frame_ms: 10,
            now_ms: 0,
            in_speech: false,
            run_start: None,
            run_len_ms: 0,
            run_gap: 0,
            run_voiced: 0,
            tail_open: false,
            speech_start_ms: 0,
            last_voiced_end_ms: 0,
            recent_energy: std::collections::VecDeque::with_capacity(NOISE_WINDOW_FRAMES),
            barge_in: BargeIn::default(),
            cfg,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &VadConfig {
        &self.cfg
    }

    /// A handle to the barge-in flag, raised on every `SpeechStart`.
    pub fn barge_in(&self) -> BargeIn {
        self.barge_in.clone()
    }

    /// Whether a turn is in progress.
    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    /// Inside a turn, the stream time just after its last voiced audio so far: where the
    /// turn will end if no more speech comes before the hangover runs out.
    pub fn tentative_end_ms(&self) -> Option<u64> {
        self.in_speech.then_some(self.last_voiced_end_ms)
    }

    /// Ends the turn in progress now, before its hangover has run out, at its last voiced
    /// audio (the caller's turn is judged complete from its words: see
    /// `StreamingTranscriber::end_turn_now`). Nothing happens outside a turn.
    pub fn end_now(&mut self) -> Vec<VadEvent> {
        if !self.in_speech {
            return Vec::new();
        }
        self.in_speech = false;
        self.tail_open = false;
        vec![VadEvent::SpeechEnd {
            start_ms: self.speech_start_ms,
            end_ms: self.last_voiced_end_ms,
        }]
    }

    /// Stream time consumed so far, ms (whole frames only).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Feeds samples at the configured rate; returns the events they caused, in order.
    pub fn push(&mut self, samples: &[i16]) -> Vec<VadEvent> {
        let mut events = Vec::new();
        let mut framer = std::mem::replace(&mut self.framer, audio::pcm::Framer::new(1));
        framer.push(samples, |frame| self.frame(frame, &mut events));
        self.framer = framer;
        events
    }

    /// Ends the stream: a turn still open ends at its last voiced audio.
    pub fn finish(&mut self) -> Vec<VadEvent> {
        let mut events = Vec::new();
        let mut framer = std::mem::replace(&mut self.framer, audio::pcm::Framer::new(1));
        framer.flush(|frame| self.frame(frame, &mut events));
        self.framer = framer;
        if self.in_speech {
            self.in_speech = false;
            events.push(VadEvent::SpeechEnd {
                start_ms: self.speech_start_ms,
                end_ms: self.last_voiced_end_ms,
            });
        }
        events
    }

    fn frame(&mut self, frame: &[i16], events: &mut Vec<VadEvent>) {
        let start = self.now_ms;
        self.now_ms += self.frame_ms;
        let energy = audio::pcm::rms_dbfs(frame);
        // libfvad only fails on a bad frame length, which the framer rules out.
        let gmm = self.fvad.0.is_voice_segment(frame).unwrap_or(false);
        let floor = self.track_noise(energy);
        let loud = energy > self.cfg.floor_dbfs && energy > floor + self.cfg.snr_db;
        let voiced = gmm && loud;
        if voiced {
            self.last_voiced_end_ms = self.now_ms;
            self.tail_open = true;
        }
        // The run toward SpeechStart counts loud frames (so an unvoiced onset like the "f"
        // of "Friday" starts it) but needs some GMM voice in it (so a noise burst does not).
        if loud {
            let run_start = *self.run_start.get_or_insert(start);
            self.run_len_ms += self.frame_ms;
            self.run_voiced += u32::from(voiced);
            self.run_gap = 0;
            if !self.in_speech
                && self.run_len_ms >= u64::from(self.cfg.start_ms)
                && self.run_voiced >= MIN_VOICED_FRAMES
            {
                let at_ms = self.onset_before(run_start, floor);
                self.in_speech = true;
                self.speech_start_ms = at_ms;
                self.barge_in.raise();
                events.push(VadEvent::SpeechStart { at_ms });
            }
        }
        if voiced {
            return;
        }
        // One quiet frame inside a run (a stop consonant, a noise dip) does not restart the
        // count toward SpeechStart; two do.
        if !loud {
            self.run_gap += 1;
        }
        if self.run_gap > MAX_RUN_GAP_FRAMES {
            self.run_start = None;
            self.run_len_ms = 0;
            self.run_voiced = 0;
        }
        if !self.in_speech {
            return;
        }
        // Unvoiced sounds the GMM ignores ("s", "f", a fading nasal) still end the word:
        // loud frames straight after voice extend the turn's end, for a bounded time.
        if self.tail_open && loud && self.now_ms - self.last_voiced_end_ms <= EDGE_EXTENSION_MS {
            self.last_voiced_end_ms = self.now_ms;
        } else {
            self.tail_open = false;
        }
        if self.now_ms - self.last_voiced_end_ms >= u64::from(self.cfg.hangover_ms) {
            self.in_speech = false;
            events.push(VadEvent::SpeechEnd {
                start_ms: self.speech_start_ms,
                end_ms: self.last_voiced_end_ms,
            });
        }
    }

    /// Moves a speech start back over the loud frames just before it (a soft onset the
    /// GMM did not call voice), at most `EDGE_EXTENSION_MS`.
    fn onset_before(&self, run_start: u64, floor: f32) -> u64 {
        // recent_energy ends with the current frame, which ends at now_ms.
        let back_frames = ((self.now_ms - run_start) / self.frame_ms) as usize;
        let max_extra = (EDGE_EXTENSION_MS / self.frame_ms) as usize;
        let n = self.recent_energy.len();
        let mut at = run_start;
        for k in 0..max_extra {
            let Some(idx) = n.checked_sub(back_frames + k + 1) else {
                break;
            };
            let e = self.recent_energy[idx];
            if e > self.cfg.floor_dbfs && e > floor + self.cfg.snr_db {
                at -= self.frame_ms;
            } else {
                break;
            }
        }
        at
    }

    /// Noise floor by minimum statistics: the quietest frame of the last 1.5 s. Speech has
    /// gaps between syllables far quieter than its peaks; steady line noise does not, so
    /// noise sits near the floor and speech well above it, whatever the line's level.
    fn track_noise(&mut self, energy: f32) -> f32 {
        if self.recent_energy.len() == NOISE_WINDOW_FRAMES {
            self.recent_energy.pop_front();
        }
        self.recent_energy.push_back(energy.max(-100.0));
        self.recent_energy
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unsupported_rate() {
        let cfg = VadConfig {
            rate: 44_100,
            ..VadConfig::default()
        };
        assert!(matches!(
            Vad::new(cfg),
            Err(SpeechError::UnsupportedRate { rate: 44_100 })
        ));
    }

    #[test]
    fn digital_silence_is_never_speech() {
        let mut vad = Vad::new(VadConfig::default()).unwrap();
        assert!(vad.push(&vec![0; 8_000 * 5]).is_empty());
        assert!(vad.finish().is_empty());
        assert!(!vad.barge_in().is_raised());
    }

    #[test]
    fn finish_closes_an_open_turn() {
        let mut vad = Vad::new(VadConfig::default()).unwrap();
        let mut audio = vec![0; 8 * 300];
        audio.extend(harmonic_buzz(800));
        let mut events = vad.push(&audio);
        events.extend(vad.finish());
        assert!(
            matches!(
                events.as_slice(),
                [VadEvent::SpeechStart { .. }, VadEvent::SpeechEnd { .. }]
            ),
            "{events:?}"
        );
    }

    /// A voice-like buzz: 120 Hz fundamental with harmonics, which the GMM takes for voice.
    fn harmonic_buzz(ms: u64) -> Vec<i16> {
        (0..ms * 8)
            .map(|i| {
                let t = i as f64 / 8_000.0;
                let s: f64 = (1..20)
                    .map(|h| (2.0 * std::f64::consts::PI * 120.0 * h as f64 * t).sin() / h as f64)
                    .sum();
                (s * 4_000.0) as i16
            })
            .collect()
    }

    #[test]
    fn barge_in_flag_is_taken_once() {
        let mut vad = Vad::new(VadConfig::default()).unwrap();
        let flag = vad.barge_in();
        let mut audio = vec![0; 8 * 200];
        audio.extend(harmonic_buzz(300));
        let events = vad.push(&audio);
        assert!(
            matches!(events.first(), Some(VadEvent::SpeechStart { .. })),
            "{events:?}"
        );
        assert!(flag.take());
        assert!(!flag.take());
    }
}
