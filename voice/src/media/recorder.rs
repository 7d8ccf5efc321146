//! Recording a call to a two-channel WAV: left is what the caller sent us, right is what we
//! sent the caller, both 8 kHz PCM16, aligned on the 20 ms tick.
//!
//! The media worker hands each tick's pair of frames to a writer thread over a bounded channel
//! with `try_send`: if the disk is slow, frames are dropped (and counted), the call never
//! waits. Dropped frames are replaced by nothing, so a recording with drops is shorter than the
//! call; the count is reported in [`super::MediaStats::recording_dropped`].

use super::MediaEvent;
use audio::wav::header;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use tokio::sync::mpsc;

/// Frames the writer may lag behind (5 s).
const QUEUE: usize = 250;

/// A recording in progress.
#[derive(Debug)]
pub struct Recorder {
    frames: SyncSender<Box<[i16]>>,
    dropped: u64,
}

impl Recorder {
    /// Starts a writer thread for `path`; it reports the outcome on `events`.
    pub fn start(path: PathBuf, events: mpsc::Sender<MediaEvent>) -> Recorder {
        let (tx, rx) = sync_channel::<Box<[i16]>>(QUEUE);
        std::thread::spawn(move || {
            let result = (|| -> std::io::Result<u64> {
                let mut out = BufWriter::new(File::create(&path)?);
                out.write_all(&header(8000, 2, 0))?;
                let mut samples = 0u64;
                for frame in rx {
                    for s in frame.iter() {
                        out.write_all(&s.to_le_bytes())?;
                    }
                    samples += frame.len() as u64;
                }
                let data_len = u32::try_from(samples * 2).unwrap_or(u32::MAX);
                out.seek(SeekFrom::Start(0))?;
                out.write_all(&header(8000, 2, data_len))?;
                out.flush()?;
                Ok(samples / 2)
            })();
            let event = match result {
                Ok(frames) => MediaEvent::RecordingSaved {
                    path,
                    seconds: frames as f64 / 8000.0,
                },
                Err(e) => MediaEvent::RecordingFailed {
                    path,
                    kind: e.kind(),
                },
            };
            let _ = events.try_send(event);
        });
        Recorder {
            frames: tx,
            dropped: 0,
        }
    }

    /// Queues one tick: `heard` (from the caller) and `sent` (to the caller), interleaved.
    pub fn push(&mut self, heard: &[i16], sent: &[i16]) {
        let n = heard.len().max(sent.len());
        let mut frame = Vec::with_capacity(2 * n);
        for i in 0..n {
            frame.push(heard.get(i).copied().unwrap_or(0));
            frame.push(sent.get(i).copied().unwrap_or(0));
        }
        match self.frames.try_send(frame.into_boxed_slice()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped += 1,
        }
    }

    /// Frames dropped because the writer lagged.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
