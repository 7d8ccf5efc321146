//! The streaming front end: VAD on the caller's side, whisper on a worker thread.
//!
//! [`StreamingTranscriber::push`] costs a VAD decision and a copy; it never waits. Audio is
//! kept (at 16 kHz) from a short pre-roll before the turn to the end of the hangover; when
//! the VAD ends the turn, that audio goes to the worker through a bounded queue. If the
//! queue is full (inference slower than speech), the turn is dropped and reported as
//! [`StreamEvent::TurnDropped`]: the media path stays real-time, as DESIGN.md requires.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{SpeechToText, Transcript, STT_RATE};
use crate::error::SpeechError;
use crate::resample::Resampler;
use crate::vad::{BargeIn, Vad, VadConfig, VadEvent};

/// Settings of a [`StreamingTranscriber`].
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Turn detection; its `rate` is the rate of the pushed audio (8 or 16 kHz).
    pub vad: VadConfig,
    /// Audio kept before the detected start of speech, ms.
    pub pre_roll_ms: u64,
    /// Audio kept after the detected end of speech, ms (at most the hangover).
    pub post_roll_ms: u64,
    /// A turn longer than this is cut and transcribed, ms.
    pub max_turn_ms: u64,
    /// Finished turns that may wait for the worker before new ones are dropped.
    pub queue: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            vad: VadConfig::default(),
            pre_roll_ms: 200,
            post_roll_ms: 200,
            max_turn_ms: 25_000,
            queue: 2,
        }
    }
}

/// What a push caused, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent {
    /// The caller started speaking: stop playback (barge-in).
    SpeechStart {
        /// Stream time of the first voiced audio, ms.
        at_ms: u64,
    },
    /// A turn ended and was queued for transcription.
    TurnEnded {
        /// Turn number, from 0.
        turn: u64,
        /// Stream time of the first voiced audio, ms.
        start_ms: u64,
        /// Stream time of the last voiced audio, ms.
        end_ms: u64,
    },
    /// A turn ended but the worker was too far behind; it will not be transcribed.
    TurnDropped {
        /// Turn number.
        turn: u64,
    },
}

/// The final transcript of one turn.
#[derive(Debug, Clone)]
pub struct TurnTranscript {
    /// Turn number, matching [`StreamEvent::TurnEnded`].
    pub turn: u64,
    /// Stream time of the first voiced audio, ms.
    pub start_ms: u64,
    /// Stream time of the last voiced audio, ms.
    pub end_ms: u64,
    /// When the VAD decided the turn was over.
    pub ended_at: Instant,
    /// When the transcript was ready.
    pub ready_at: Instant,
    /// The recognition result.
    pub transcript: Transcript,
}

impl TurnTranscript {
    /// From the end-of-turn decision to the transcript.
    pub fn latency(&self) -> Duration {
        self.ready_at.saturating_duration_since(self.ended_at)
    }
}

struct Job {
    turn: u64,
    start_ms: u64,
    end_ms: u64,
    ended_at: Instant,
    audio: Vec<f32>,
}

/// Feeds live audio through the VAD and transcribes each finished turn on a worker thread.
pub struct StreamingTranscriber {
    cfg: StreamConfig,
    vad: Vad,
    to_16k: Option<Resampler>,
    scratch: Vec<f32>,
    /// 16 kHz audio; `audio[0]` is stream sample `audio_base`.
    audio: VecDeque<f32>,
    audio_base: u64,
    turn: u64,
    /// Start of the turn in progress, ms.
    open_turn: Option<u64>,
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Result<TurnTranscript, SpeechError>>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StreamingTranscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingTranscriber")
            .field("cfg", &self.cfg)
            .field("turn", &self.turn)
            .finish_non_exhaustive()
    }
}

impl StreamingTranscriber {
    /// Starts the worker thread that will run `stt`.
    pub fn new(stt: Arc<dyn SpeechToText>, cfg: StreamConfig) -> Result<Self, SpeechError> {
        let vad = Vad::new(cfg.vad.clone())?;
        let to_16k = match cfg.vad.rate {
            STT_RATE => None,
            rate => Some(Resampler::new(rate, STT_RATE)?),
        };
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(cfg.queue.max(1));
        let (result_tx, results) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("stt-worker".into())
            .spawn(move || {
                for job in job_rx {
                    let result = stt.transcribe(&job.audio).map(|transcript| TurnTranscript {
                        turn: job.turn,
                        start_ms: job.start_ms,
                        end_ms: job.end_ms,
                        ended_at: job.ended_at,
                        ready_at: Instant::now(),
                        transcript,
                    });
                    if result_tx.send(result).is_err() {
                        break;
                    }
                }
            })
            .map_err(|_| SpeechError::WorkerGone)?;
        Ok(Self {
            cfg,
            vad,
            to_16k,
            scratch: Vec::new(),
            audio: VecDeque::new(),
            audio_base: 0,
            turn: 0,
            open_turn: None,
            jobs: Some(jobs),
            results,
            worker: Some(worker),
        })
    }

    /// The barge-in flag, raised whenever the caller starts speaking.
    pub fn barge_in(&self) -> BargeIn {
        self.vad.barge_in()
    }

    /// Pushes audio at the VAD's rate. Never blocks.
    pub fn push(&mut self, samples: &[i16]) -> Vec<StreamEvent> {
        self.scratch.clear();
        match &mut self.to_16k {
            Some(r) => r.process(&crate::pcm::to_f32(samples), &mut self.scratch),
            None => self
                .scratch
                .extend(samples.iter().map(|&s| crate::pcm::i16_to_f32(s))),
        }
        self.audio.extend(self.scratch.iter().copied());
        let events = self.vad.push(samples);
        self.handle(events)
    }

    /// Ends the stream: a turn still open is queued now.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        if let Some(r) = &mut self.to_16k {
            self.scratch.clear();
            r.flush(&mut self.scratch);
            self.audio.extend(self.scratch.iter().copied());
        }
        let events = self.vad.finish();
        self.handle(events)
    }

    fn handle(&mut self, events: Vec<VadEvent>) -> Vec<StreamEvent> {
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            match ev {
                VadEvent::SpeechStart { at_ms } => {
                    self.open_turn = Some(at_ms);
                    out.push(StreamEvent::SpeechStart { at_ms });
                }
                VadEvent::SpeechEnd { start_ms, end_ms } => {
                    // A turn cut for length continues from where it was cut.
                    let start_ms = self.open_turn.take().unwrap_or(start_ms);
                    out.push(self.queue_turn(start_ms, end_ms, self.cfg.post_roll_ms));
                }
            }
        }
        if let Some(start_ms) = self.open_turn {
            let now = self.vad.now_ms();
            if now.saturating_sub(start_ms) > self.cfg.max_turn_ms {
                out.push(self.queue_turn(start_ms, now, 0));
                self.open_turn = Some(now);
            }
        } else {
            // Outside a turn, keep only the pre-roll.
            let keep = (self.cfg.pre_roll_ms * u64::from(STT_RATE) / 1000) as usize;
            let excess = self.audio.len().saturating_sub(keep);
            self.audio.drain(..excess);
            self.audio_base += excess as u64;
        }
        out
    }

    fn queue_turn(&mut self, start_ms: u64, end_ms: u64, post_roll_ms: u64) -> StreamEvent {
        let turn = self.turn;
        self.turn += 1;
        let rate = u64::from(STT_RATE);
        let from =
            (start_ms.saturating_sub(self.cfg.pre_roll_ms) * rate / 1000).max(self.audio_base);
        let to =
            ((end_ms + post_roll_ms) * rate / 1000).min(self.audio_base + self.audio.len() as u64);
        let audio: Vec<f32> = if to > from {
            self.audio
                .range((from - self.audio_base) as usize..(to - self.audio_base) as usize)
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        // Everything up to the end of this turn has been handed over.
        let consumed = (to.saturating_sub(self.audio_base) as usize).min(self.audio.len());
        self.audio.drain(..consumed);
        self.audio_base += consumed as u64;
        let job = Job {
            turn,
            start_ms,
            end_ms,
            ended_at: Instant::now(),
            audio,
        };
        match self.jobs.as_ref().map(|j| j.try_send(job)) {
            Some(Ok(())) => StreamEvent::TurnEnded {
                turn,
                start_ms,
                end_ms,
            },
            Some(Err(TrySendError::Full(_))) | Some(Err(TrySendError::Disconnected(_))) | None => {
                tracing::warn!(turn, "speech worker behind; turn dropped");
                StreamEvent::TurnDropped { turn }
            }
        }
    }

    /// A finished transcript, if one is ready.
    pub fn try_next(&self) -> Option<Result<TurnTranscript, SpeechError>> {
        self.results.try_recv().ok()
    }

    /// Waits up to `timeout` for the next transcript (`None` on timeout).
    pub fn next_timeout(&self, timeout: Duration) -> Option<Result<TurnTranscript, SpeechError>> {
        match self.results.recv_timeout(timeout) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Err(SpeechError::WorkerGone)),
        }
    }
}

impl Drop for StreamingTranscriber {
    fn drop(&mut self) {
        // Closing the queue ends the worker after the turn it is on.
        self.jobs.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
