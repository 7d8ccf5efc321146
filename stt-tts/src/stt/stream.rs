//! The streaming front end: VAD on the caller's side, whisper on a worker thread.
//!
//! [`StreamingTranscriber::push`] costs a VAD decision and a copy; it never waits. Audio is
//! kept (at 16 kHz) from a short pre-roll before the turn to the end of the hangover; when
//! the VAD ends the turn, that audio goes to the worker through a bounded queue. If the
//! queue is full (inference slower than speech), the turn is dropped and reported as
//! [`StreamEvent::TurnDropped`]: the media path stays real-time, as DESIGN.md requires.
//!
//! **Speculation.** The hangover (silence that ends a turn, 500 ms by default) is dead
//! time for the caller. As soon as `post_roll_ms` of silence has followed the last voice,
//! the turn's audio is already final *if* the caller stays silent, so it is sent to the
//! worker then. When the hangover confirms the end, that result is used (often already
//! finished); if the caller speaks again, the speculative result is discarded.
//!
//! ```text
//!  voice ████████████▏                      end decided (hangover)
//!                    ├─post_roll─┤ speculative job ───────────▶ result ready
//!                    ├──────────── hangover ─────────────┤ ▶ transcript (no wait left)
//! ```
//!
//! **Ending early.** The hangover cannot tell a finished sentence from a pause for breath;
//! the words can. While the speculative result waits for the hangover,
//! [`StreamingTranscriber::tentative`] shows it once, and a caller that judges those words
//! a whole turn (the receptionist: understood, not trailing off on "and…") calls
//! [`StreamingTranscriber::end_turn_now`]: the turn ends at once with that result, up to
//! `hangover − post_roll − inference` sooner. Speech that resumed in between makes the
//! result stale, and then nothing ends.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{SpeechToText, Transcript, STT_RATE};
use crate::error::SpeechError;
use crate::vad::{BargeIn, Vad, VadConfig, VadEvent};
use audio::resample::Resampler;

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
    /// Jobs that may wait for the worker before new turns are dropped.
    pub queue: usize,
    /// Start transcribing after `post_roll_ms` of silence, before the hangover ends.
    pub speculate: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            vad: VadConfig::default(),
            pre_roll_ms: 200,
            post_roll_ms: 200,
            max_turn_ms: 25_000,
            queue: 2,
            speculate: true,
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
    /// A turn ended; its transcript will follow.
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
    /// When the transcript was ready (may precede `ended_at` when speculation won).
    pub ready_at: Instant,
    /// Whether the transcript came from the speculative job.
    pub speculative: bool,
    /// The recognition result.
    pub transcript: Transcript,
}

impl TurnTranscript {
    /// From the end-of-turn decision to the transcript (zero if it was ready first).
    pub fn latency(&self) -> Duration {
        self.ready_at.saturating_duration_since(self.ended_at)
    }
}

struct Job {
    turn: u64,
    start_ms: u64,
    end_ms: u64,
    speculative: bool,
    audio: Vec<f32>,
}

struct Done {
    turn: u64,
    start_ms: u64,
    end_ms: u64,
    speculative: bool,
    ready_at: Instant,
    result: Result<Transcript, SpeechError>,
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
    next_turn: u64,
    /// The turn in progress: its number and start, ms.
    open_turn: Option<(u64, u64)>,
    /// End (ms) covered by the speculative job sent for the open turn.
    speculated_end: Option<u64>,
    /// Turns whose end was decided, waiting for their speculative result: end ms, when.
    awaiting: HashMap<u64, (u64, Instant)>,
    /// Speculative results that came back before their turn's end was decided.
    early: HashMap<u64, Done>,
    ready: VecDeque<Result<TurnTranscript, SpeechError>>,
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Done>,
    worker: Option<JoinHandle<()>>,
    /// When each non-speculative turn was ended, for its latency.
    ended_at: HashMap<u64, Instant>,
    /// The speculative result last shown by [`Self::tentative`]: turn and end ms.
    shown: Option<(u64, u64)>,
}

/// A speculative transcript of the turn still open (see [`StreamingTranscriber::tentative`]).
#[derive(Debug, Clone)]
pub struct Tentative {
    /// Turn number.
    pub turn: u64,
    /// Stream time of the last voiced audio it covers, ms.
    pub end_ms: u64,
    /// The recognition result, as final if the caller stays silent.
    pub transcript: Transcript,
}

impl std::fmt::Debug for StreamingTranscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingTranscriber")
            .field("cfg", &self.cfg)
            .field("next_turn", &self.next_turn)
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
        let (done_tx, results) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("stt-worker".into())
            .spawn(move || {
                for job in job_rx {
                    let result = stt.transcribe(&job.audio);
                    let done = Done {
                        turn: job.turn,
                        start_ms: job.start_ms,
                        end_ms: job.end_ms,
                        speculative: job.speculative,
                        ready_at: Instant::now(),
                        result,
                    };
                    if done_tx.send(done).is_err() {
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
            next_turn: 0,
            open_turn: None,
            speculated_end: None,
            awaiting: HashMap::new(),
            early: HashMap::new(),
            ready: VecDeque::new(),
            jobs: Some(jobs),
            results,
            worker: Some(worker),
            ended_at: HashMap::new(),
            shown: None,
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
            Some(r) => r.process(&audio::pcm::to_f32(samples), &mut self.scratch),
            None => self
                .scratch
                .extend(samples.iter().map(|&s| audio::pcm::i16_to_f32(s))),
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
                    self.open_turn = Some((self.next_turn, at_ms));
                    self.next_turn += 1;
                    self.speculated_end = None;
                    out.push(StreamEvent::SpeechStart { at_ms });
                }
                VadEvent::SpeechEnd { start_ms, end_ms } => {
                    // A turn cut for length continues from where it was cut.
                    let (turn, start_ms) =
                        self.open_turn.take().unwrap_or((self.next_turn, start_ms));
                    out.push(self.end_turn(turn, start_ms, end_ms));
                }
            }
        }
        if let Some((turn, start_ms)) = self.open_turn {
            self.maybe_speculate(turn, start_ms);
            let now = self.vad.now_ms();
            if now.saturating_sub(start_ms) > self.cfg.max_turn_ms {
                out.push(self.submit(turn, start_ms, now, 0, false));
                self.trim_to(now * u64::from(STT_RATE) / 1000);
                self.open_turn = Some((self.next_turn, now));
                self.next_turn += 1;
                self.speculated_end = None;
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

    fn maybe_speculate(&mut self, turn: u64, start_ms: u64) {
        let Some(end_ms) = self.vad.tentative_end_ms() else {
            return;
        };
        if !self.cfg.speculate || self.speculated_end == Some(end_ms) {
            return;
        }
        if self.vad.now_ms() >= end_ms + self.cfg.post_roll_ms {
            // Only mark it speculated if the job was accepted; a full queue retries later.
            if matches!(
                self.submit(turn, start_ms, end_ms, self.cfg.post_roll_ms, true),
                StreamEvent::TurnEnded { .. }
            ) {
                self.speculated_end = Some(end_ms);
            }
        }
    }

    fn end_turn(&mut self, turn: u64, start_ms: u64, end_ms: u64) -> StreamEvent {
        let now = Instant::now();
        if self.speculated_end.take() == Some(end_ms) {
            // The speculative job already covers exactly this turn.
            self.trim_to((end_ms + self.cfg.post_roll_ms) * u64::from(STT_RATE) / 1000);
            match self.early.remove(&turn) {
                Some(done) if done.end_ms == end_ms => self.deliver(done, now),
                _ => {
                    self.awaiting.insert(turn, (end_ms, now));
                }
            }
            return StreamEvent::TurnEnded {
                turn,
                start_ms,
                end_ms,
            };
        }
        self.early.remove(&turn);
        let ev = self.submit(turn, start_ms, end_ms, self.cfg.post_roll_ms, false);
        self.trim_to((end_ms + self.cfg.post_roll_ms) * u64::from(STT_RATE) / 1000);
        if matches!(ev, StreamEvent::TurnEnded { .. }) {
            self.ended_at.insert(turn, now);
        }
        ev
    }

    /// Forgets audio before 16 kHz sample `to`.
    fn trim_to(&mut self, to: u64) {
        let n = (to.saturating_sub(self.audio_base) as usize).min(self.audio.len());
        self.audio.drain(..n);
        self.audio_base += n as u64;
    }

    /// Sends the audio of `[start - pre_roll, end + post_roll]` to the worker.
    fn submit(
        &mut self,
        turn: u64,
        start_ms: u64,
        end_ms: u64,
        post_roll_ms: u64,
        speculative: bool,
    ) -> StreamEvent {
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
        let job = Job {
            turn,
            start_ms,
            end_ms,
            speculative,
            audio,
        };
        match self.jobs.as_ref().map(|j| j.try_send(job)) {
            Some(Ok(())) => StreamEvent::TurnEnded {
                turn,
                start_ms,
                end_ms,
            },
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => {
                if !speculative {
                    tracing::warn!(turn, "speech worker behind; turn dropped");
                }
                StreamEvent::TurnDropped { turn }
            }
        }
    }

    fn deliver(&mut self, done: Done, ended_at: Instant) {
        let Done {
            turn,
            start_ms,
            end_ms,
            speculative,
            ready_at,
            result,
        } = done;
        self.ready
            .push_back(result.map(|transcript| TurnTranscript {
                turn,
                start_ms,
                end_ms,
                ended_at,
                ready_at,
                speculative,
                transcript,
            }));
    }

    /// Sorts one finished job: deliver it, keep it for its turn's end, or drop it as stale.
    fn sort(&mut self, done: Done) {
        if !done.speculative {
            let ended_at = self.ended_at.remove(&done.turn).unwrap_or(done.ready_at);
            self.deliver(done, ended_at);
            return;
        }
        match self.awaiting.get(&done.turn) {
            Some(&(end_ms, ended_at)) if end_ms == done.end_ms => {
                self.awaiting.remove(&done.turn);
                self.deliver(done, ended_at);
            }
            _ => {
                let still_open = self.open_turn.is_some_and(|(t, _)| t == done.turn);
                if still_open && self.speculated_end == Some(done.end_ms) {
                    self.early.insert(done.turn, done);
                }
                // Otherwise the caller spoke again after the speculation: stale.
            }
        }
    }

    /// The open turn's speculative result, once, if it is in and still covers the turn
    /// (no speech since). Never blocks.
    pub fn tentative(&mut self) -> Option<Tentative> {
        self.sort_finished();
        let (turn, end_ms) = self.current_speculation()?;
        if self.shown == Some((turn, end_ms)) {
            return None;
        }
        let transcript = self.early.get(&turn)?.result.as_ref().ok()?.clone();
        self.shown = Some((turn, end_ms));
        Some(Tentative {
            turn,
            end_ms,
            transcript,
        })
    }

    /// Ends the open turn now with its speculative result, if that result is in and the
    /// caller has not spoken since; the transcript is then ready for [`Self::try_next`].
    /// Returns the events caused (`TurnEnded`), or none when there was nothing to end.
    pub fn end_turn_now(&mut self) -> Vec<StreamEvent> {
        if self.current_speculation().is_none() {
            return Vec::new();
        }
        let events = self.vad.end_now();
        self.handle(events)
    }

    /// The open turn and the end its speculative result covers, when that result is in,
    /// succeeded, and the VAD's tentative end is still that end.
    fn current_speculation(&self) -> Option<(u64, u64)> {
        let (turn, _) = self.open_turn?;
        let end_ms = self.speculated_end?;
        let done = self.early.get(&turn)?;
        (done.result.is_ok()
            && done.end_ms == end_ms
            && self.vad.tentative_end_ms() == Some(end_ms))
        .then_some((turn, end_ms))
    }

    /// Sorts every job the worker has finished so far. Never blocks.
    fn sort_finished(&mut self) {
        while let Ok(done) = self.results.try_recv() {
            self.sort(done);
        }
    }

    /// A finished transcript, if one is ready. Never blocks.
    pub fn try_next(&mut self) -> Option<Result<TurnTranscript, SpeechError>> {
        self.sort_finished();
        self.ready.pop_front()
    }

    /// Waits up to `timeout` for the next transcript (`None` on timeout).
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Option<Result<TurnTranscript, SpeechError>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.try_next() {
                return Some(r);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.results.recv_timeout(left) {
                Ok(done) => self.sort(done),
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => return Some(Err(SpeechError::WorkerGone)),
            }
        }
    }
}

impl Drop for StreamingTranscriber {
    fn drop(&mut self) {
        // Closing the queue ends the worker after the job it is on.
        self.jobs.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
