//! `play:FILE.wav`: plays a clip once, then asks to hang up.
//!
//! Hanging up at the end (rather than keeping the line) makes the application usable as a
//! complete call scenario for SIPp and baresip tests: the call ends on its own.

use super::{Action, Audio, CallApp, CallContext};

/// Plays its clip, then [`Action::Hangup`].
#[derive(Debug, Clone)]
pub struct Play {
    clip: Audio,
    done: bool,
}

impl Play {
    /// Plays `clip` (8 kHz mono).
    pub fn new(clip: Audio) -> Play {
        Play { clip, done: false }
    }
}

impl CallApp for Play {
    fn on_start(&mut self, _ctx: &CallContext) -> Vec<Action> {
        if self.clip.is_empty() {
            self.done = true;
            return vec![Action::Hangup];
        }
        vec![Action::Play(self.clip.clone())]
    }

    fn on_audio(&mut self, _frame: &[i16]) -> Vec<Action> {
        Vec::new()
    }

    fn on_dtmf(&mut self, _digit: char) -> Vec<Action> {
        Vec::new()
    }

    fn on_playback_finished(&mut self) -> Vec<Action> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        vec![Action::Hangup]
    }
}
