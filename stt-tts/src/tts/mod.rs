//! Text-to-speech: the [`TextToSpeech`] boundary, espeak-ng behind it, and a playback
//! helper that synthesises on its own thread and hands out 20 ms frames.
//!
//! ```text
//!  text ──▶ TextToSpeech::synthesize ──sink(20 ms frame)──▶ bounded queue ──▶ RTP pacer
//!                     ▲                                                         │
//!                     └──── stop flag (barge-in) ◀──────────────────────────────┘
//! ```

mod espeak;
#[cfg(feature = "piper")]
mod piper;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use espeak::{EspeakConfig, EspeakTts};
#[cfg(feature = "piper")]
pub use piper::{PiperConfig, PiperTts};

use crate::error::SpeechError;

/// How a synthesis ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthOutcome {
    /// All text was spoken; `frames` 20 ms frames were produced.
    Completed {
        /// Frames handed to the sink.
        frames: usize,
    },
    /// The sink asked to stop (barge-in) after `frames` frames.
    Stopped {
        /// Frames handed to the sink.
        frames: usize,
    },
}

/// A speech synthesiser producing 20 ms frames of mono PCM16.
pub trait TextToSpeech: Send + Sync {
    /// Rate of the frames handed to the sink (8000 for the phone line).
    fn out_rate(&self) -> u32;

    /// Speaks `text`, calling `sink` with each 20 ms frame as soon as it exists. The sink
    /// returns `ControlFlow::Break(())` to stop early. Blocking: run it off the media path.
    fn synthesize(
        &self,
        text: &str,
        sink: &mut dyn FnMut(&[i16]) -> ControlFlow<()>,
    ) -> Result<SynthOutcome, SpeechError>;

    /// A short name for logs and metrics.
    fn name(&self) -> &str;
}

/// Speaks `text` into one buffer (for files and tests).
pub fn synthesize_to_vec(tts: &dyn TextToSpeech, text: &str) -> Result<Vec<i16>, SpeechError> {
    let mut out = Vec::new();
    tts.synthesize(text, &mut |f| {
        out.extend_from_slice(f);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Speech being synthesised on its own thread; frames arrive on [`Playback::frames`].
#[derive(Debug)]
pub struct Playback {
    /// 20 ms frames, in order; the channel closes when synthesis ends or stops.
    pub frames: Receiver<Vec<i16>>,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<Result<SynthOutcome, SpeechError>>>,
}

impl Playback {
    /// Starts speaking `text`; at most `queue` frames wait unread (synthesis pauses, the
    /// reader never waits for more than a frame's synthesis).
    pub fn start(
        tts: Arc<dyn TextToSpeech>,
        text: String,
        queue: usize,
    ) -> Result<Self, SpeechError> {
        let (tx, frames): (SyncSender<Vec<i16>>, _) = std::sync::mpsc::sync_channel(queue.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_w = stop.clone();
        let worker = std::thread::Builder::new()
            .name("tts".into())
            .spawn(move || {
                tts.synthesize(&text, &mut |frame| {
                    if stop_w.load(Ordering::Acquire) || tx.send(frame.to_vec()).is_err() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
            })
            .map_err(|_| SpeechError::WorkerGone)?;
        Ok(Self {
            frames,
            stop,
            worker: Some(worker),
        })
    }

    /// Stops synthesis (barge-in); frames already queued can still be read or dropped.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Stops synthesis if it is still running (frames not yet read are dropped), waits
    /// for its thread, and returns how it ended. Read `frames` to the end first to hear
    /// the whole text.
    pub fn join(mut self) -> Result<SynthOutcome, SpeechError> {
        self.stop();
        // Unblock a worker waiting on a full queue.
        while self.frames.try_recv().is_ok() {}
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) | None => Err(SpeechError::WorkerGone),
        }
    }
}

impl Drop for Playback {
    fn drop(&mut self) {
        self.stop();
    }
}
