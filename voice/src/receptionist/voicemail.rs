//! Voicemail: the caller's message, recorded after a tone until they stop talking, press a
//! key, reach the length cap or hang up; then transcribed whole and stored with its audio.
//!
//! ```text
//!  prompt + tone played ─▶ Recording ─┬─ speech, then `end_silence` of quiet ─▶ Done
//!  caller talks over the prompt ──────┤  a key (`#`) · the length cap · hang-up ─▶ Done
//!     (starts at once, with the last   └─ no speech within `give_up` ─▶ Nothing
//!      second heard: the first word kept)
//! ```
//!
//! The session feeds every caller frame to [`PreRoll`] and, while recording, to the
//! [`Recording`]; speech and silence come from the same VAD the conversation listens with
//! (the listener's `SpeechStart` and turns), so what counts as "talking" is one notion.

use std::collections::VecDeque;
use std::time::Duration;

/// Caller audio kept from before a recording starts (one second).
const PRE_ROLL_SAMPLES: usize = 8_000;
/// Samples per 20 ms frame.
const FRAME: u64 = 160;
/// Speech this long without its turn ending (a turn the listener dropped) counts as over.
const MAX_TALK_FRAMES: u64 = 30 * 50;

/// The last second of the caller's audio, always kept: a message started over the prompt
/// (barge-in) begins before the recording does.
#[derive(Debug, Default)]
pub(super) struct PreRoll {
    samples: VecDeque<i16>,
}

impl PreRoll {
    /// Keeps `frame`, dropping what is older than a second.
    pub(super) fn push(&mut self, frame: &[i16]) {
        self.samples.extend(frame.iter().copied());
        let over = self.samples.len().saturating_sub(PRE_ROLL_SAMPLES);
        self.samples.drain(..over);
    }
}

/// Why a recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The caller spoke and then fell silent.
    Silence,
    /// The length cap.
    Full,
    /// Nothing was said.
    Nothing,
}

/// A voicemail being recorded.
#[derive(Debug)]
pub(super) struct Recording {
    pcm: Vec<i16>,
    max_samples: usize,
    end_silence_frames: u64,
    give_up_frames: u64,
    /// The caller has spoken.
    spoke: bool,
    /// Speech in progress (between the VAD's start and the turn it ends).
    talking: bool,
    /// Frames without speech since the last speech (or the start).
    quiet: u64,
    /// Frames since the speech in progress began.
    talk: u64,
    /// What the listener transcribed turn by turn (a fallback for the whole transcript).
    turns: Vec<String>,
}

impl Recording {
    /// A recording of at most `max`, ended by `end_silence` after speech or `give_up`
    /// without any. With `pre_roll`, it starts with the second before now.
    pub(super) fn start(
        max: Duration,
        end_silence: Duration,
        give_up: Duration,
        pre_roll: Option<&PreRoll>,
    ) -> Recording {
        let frames = |d: Duration| (d.as_millis() as u64 / 20).max(1);
        let max_samples = (max.as_millis() as usize * 8).max(PRE_ROLL_SAMPLES);
        let mut pcm = Vec::with_capacity(max_samples.min(8_000 * 30));
        if let Some(p) = pre_roll {
            pcm.extend(p.samples.iter().copied());
        }
        Recording {
            pcm,
            max_samples,
            end_silence_frames: frames(end_silence),
            give_up_frames: frames(give_up),
            spoke: pre_roll.is_some(),
            talking: pre_roll.is_some(),
            quiet: 0,
            talk: 0,
            turns: Vec::new(),
        }
    }

    /// The caller started talking.
    pub(super) fn speech_started(&mut self) {
        self.spoke = true;
        self.talking = true;
        self.quiet = 0;
        self.talk = 0;
    }

    /// The listener finished a turn of the message.
    pub(super) fn turn(&mut self, text: &str) {
        self.talking = false;
        self.quiet = 0;
        let text = text.trim();
        if !text.is_empty() {
            self.turns.push(text.to_owned());
        }
    }

    /// One 20 ms frame; `Some` when the recording is over.
    pub(super) fn push(&mut self, frame: &[i16]) -> Option<Stop> {
        let room = self.max_samples.saturating_sub(self.pcm.len());
        self.pcm.extend_from_slice(&frame[..frame.len().min(room)]);
        if self.pcm.len() >= self.max_samples {
            return Some(Stop::Full);
        }
        if self.talking {
            // A turn whose transcript never comes must not hold the recording open.
            self.talk += 1;
            if self.talk < MAX_TALK_FRAMES {
                return None;
            }
            self.talking = false;
        }
        self.quiet += 1;
        match self.spoke {
            true if self.quiet >= self.end_silence_frames => Some(Stop::Silence),
            false if self.quiet >= self.give_up_frames => Some(Stop::Nothing),
            _ => None,
        }
    }

    /// Whether anything was said.
    pub(super) fn spoke(&self) -> bool {
        self.spoke
    }

    /// The audio (trailing silence that ended it trimmed) and the turn-by-turn transcript.
    pub(super) fn finish(mut self) -> (Vec<i16>, String) {
        if self.spoke && !self.talking {
            // Keep half a second of the silence that ended it.
            let trailing = (self.quiet.saturating_sub(25) * FRAME) as usize;
            let keep = self.pcm.len().saturating_sub(trailing);
            self.pcm
                .truncate(keep.max(PRE_ROLL_SAMPLES.min(self.pcm.len())));
        }
        (self.pcm, self.turns.join(" "))
    }
}

/// The tone after the voicemail prompt: 300 ms of quiet, then 400 ms at 1 kHz.
pub(super) fn beep() -> Vec<i16> {
    let mut out = vec![0; 2_400];
    out.extend(crate::app::tone(1_000.0, 400, 8_000));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn rec() -> Recording {
        Recording::start(10 * SEC, 2 * SEC, 5 * SEC, None)
    }

    #[test]
    fn speech_then_silence_ends_it_and_the_silence_is_trimmed() {
        let mut r = rec();
        let loud = [1_000i16; 160];
        r.speech_started();
        for _ in 0..100 {
            assert_eq!(r.push(&loud), None, "speech never ends it");
        }
        r.turn(" Call me back. ");
        let mut stop = None;
        let mut quiet_frames = 0;
        while stop.is_none() {
            stop = r.push(&[0; 160]);
            quiet_frames += 1;
        }
        assert_eq!(stop, Some(Stop::Silence));
        assert_eq!(quiet_frames, 100, "two seconds of quiet after the turn");
        let (pcm, text) = r.finish();
        assert_eq!(text, "Call me back.");
        // Two seconds of speech plus half a second of the silence.
        assert_eq!(pcm.len(), 100 * 160 + 25 * 160);
    }

    #[test]
    fn nothing_said_gives_up_and_the_cap_stops_a_long_message() {
        let mut r = rec();
        let frames = (1..).find(|_| r.push(&[0; 160]).is_some()).unwrap();
        assert_eq!(frames, 250);
        assert!(!r.spoke());
        let mut r = rec();
        r.speech_started();
        let frames = (1..).find(|_| r.push(&[500; 160]).is_some()).unwrap();
        assert_eq!(frames, 500, "ten seconds at most");
        assert_eq!(r.finish().0.len(), 80_000);
    }

    #[test]
    fn a_message_started_over_the_prompt_keeps_its_last_second() {
        let mut pre = PreRoll::default();
        for i in 0..100i16 {
            pre.push(&[i; 160]);
        }
        let r = Recording::start(10 * SEC, 2 * SEC, 5 * SEC, Some(&pre));
        assert!(r.spoke());
        let (pcm, _) = r.finish();
        assert_eq!(pcm.len(), 8_000);
        assert_eq!(pcm[0], 50, "the second before now, oldest first");
        assert_eq!(pcm[7_999], 99);
    }

    #[test]
    fn the_beep_is_a_tone_after_a_pause() {
        let b = beep();
        assert_eq!(b.len(), 2_400 + 3_200);
        assert!(b[..2_400].iter().all(|&s| s == 0));
        assert!(b[2_400..].iter().any(|&s| s > 7_000));
    }
}
