//! `confirm`: the application of a call we place to deliver a message and ask for a key
//! press (a broadcast's voice rung: "…water main burst on Elm Street. Press 1 to confirm").
//!
//! ```text
//!  answered ─▶ prompt ─▶ wait `gap` ─▶ prompt again … (`plays` times in all) ─▶ wait ─▶ Hangup
//!     any time: digit ─▶ reported (try_send, never awaited)
//!               the confirm digit ─▶ StopPlayback, thanks ─▶ Hangup once it has played
//! ```
//!
//! The digits go out through a bounded channel the placing side reads while the call runs,
//! so a confirmation is recorded when the key is pressed, not when the call ends.

use super::{Action, Audio, CallApp, CallContext};
use tokio::sync::mpsc;

/// 20 ms frames per second.
const FRAMES_PER_SECOND: u32 = 50;

/// See the module docs.
#[derive(Debug)]
pub struct Confirm {
    prompt: Audio,
    thanks: Audio,
    confirm_digit: Option<char>,
    digits: mpsc::Sender<char>,
    /// Plays of the prompt left.
    plays_left: u32,
    /// Frames of silence after a prompt before the next (or the hangup).
    gap_frames: u32,
    /// Frames counted down while waiting; `None` while something plays.
    waiting: Option<u32>,
    confirmed: bool,
}

impl Confirm {
    /// Plays `prompt` up to `plays` times (at least once), `gap_secs` apart, and reports every
    /// digit on `digits`; `confirm_digit`, if any, ends the call after `thanks`.
    pub fn new(
        prompt: Audio,
        thanks: Audio,
        confirm_digit: Option<char>,
        plays: u32,
        gap_secs: u32,
        digits: mpsc::Sender<char>,
    ) -> Confirm {
        Confirm {
            prompt,
            thanks,
            confirm_digit,
            digits,
            plays_left: plays.max(1),
            gap_frames: gap_secs.max(1) * FRAMES_PER_SECOND,
            waiting: None,
            confirmed: false,
        }
    }

    fn play_prompt(&mut self) -> Vec<Action> {
        self.plays_left -= 1;
        self.waiting = None;
        vec![Action::Play(self.prompt.clone())]
    }
}

impl CallApp for Confirm {
    fn on_start(&mut self, _ctx: &CallContext) -> Vec<Action> {
        self.play_prompt()
    }

    fn on_audio(&mut self, _frame: &[i16]) -> Vec<Action> {
        let Some(left) = self.waiting.as_mut() else {
            return Vec::new();
        };
        *left = left.saturating_sub(1);
        if *left > 0 {
            return Vec::new();
        }
        if self.plays_left > 0 && !self.confirmed {
            self.play_prompt()
        } else {
            self.waiting = None;
            vec![Action::Hangup]
        }
    }

    fn on_dtmf(&mut self, digit: char) -> Vec<Action> {
        // Never awaited on the media thread: a full channel drops the report.
        let _ = self.digits.try_send(digit);
        if self.confirmed || Some(digit) != self.confirm_digit {
            return Vec::new();
        }
        self.confirmed = true;
        self.waiting = None;
        vec![Action::StopPlayback, Action::Play(self.thanks.clone())]
    }

    fn on_playback_finished(&mut self) -> Vec<Action> {
        if self.confirmed {
            return vec![Action::Hangup];
        }
        self.waiting = Some(self.gap_frames);
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(plays: u32) -> (Confirm, mpsc::Receiver<char>) {
        let (tx, rx) = mpsc::channel(4);
        let prompt: Audio = vec![1; 160].into();
        let thanks: Audio = vec![2; 160].into();
        (Confirm::new(prompt, thanks, Some('1'), plays, 1, tx), rx)
    }

    fn silence(app: &mut Confirm, frames: u32) -> Vec<Action> {
        let mut out = Vec::new();
        for _ in 0..frames {
            out.extend(app.on_audio(&[0; 160]));
        }
        out
    }

    #[test]
    fn the_prompt_repeats_then_the_call_ends() {
        let (mut a, _rx) = app(2);
        assert!(matches!(&a.on_start(&CallContext::default())[..], [Action::Play(p)] if p[0] == 1));
        // Nothing happens while it plays, however long.
        assert!(silence(&mut a, 500).is_empty());
        assert!(a.on_playback_finished().is_empty());
        assert!(silence(&mut a, 49).is_empty(), "the gap is one second");
        assert!(matches!(&silence(&mut a, 1)[..], [Action::Play(p)] if p[0] == 1));
        a.on_playback_finished();
        assert!(silence(&mut a, 49).is_empty());
        assert_eq!(
            silence(&mut a, 1),
            vec![Action::Hangup],
            "two plays, then goodbye"
        );
        assert!(silence(&mut a, 100).is_empty(), "hangs up once");
    }

    #[test]
    fn the_confirm_digit_thanks_and_hangs_up_and_every_digit_is_reported() {
        let (mut a, mut rx) = app(3);
        a.on_start(&CallContext::default());
        assert!(a.on_dtmf('5').is_empty(), "another digit changes nothing");
        let acts = a.on_dtmf('1');
        assert!(matches!(&acts[..], [Action::StopPlayback, Action::Play(t)] if t[0] == 2));
        assert!(a.on_dtmf('1').is_empty(), "thanked once");
        assert!(
            silence(&mut a, 200).is_empty(),
            "no prompt after the confirmation"
        );
        assert_eq!(a.on_playback_finished(), vec![Action::Hangup]);
        assert_eq!(
            (rx.try_recv(), rx.try_recv(), rx.try_recv()),
            (Ok('5'), Ok('1'), Ok('1'))
        );
    }

    #[test]
    fn without_a_confirm_digit_keys_are_only_reported() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut a = Confirm::new(vec![1; 8].into(), vec![2; 8].into(), None, 1, 1, tx);
        a.on_start(&CallContext::default());
        assert!(a.on_dtmf('1').is_empty());
        assert_eq!(rx.try_recv(), Ok('1'));
        assert!(a.on_playback_finished().is_empty());
        assert_eq!(silence(&mut a, 50), vec![Action::Hangup]);
    }

    #[test]
    fn a_full_report_channel_never_blocks() {
        let (tx, _rx) = mpsc::channel(1);
        let mut a = Confirm::new(vec![1; 8].into(), vec![2; 8].into(), Some('1'), 0, 0, tx);
        assert_eq!(a.plays_left, 1, "played at least once");
        a.on_start(&CallContext::default());
        a.on_dtmf('2');
        a.on_dtmf('3');
        assert_eq!(
            a.on_dtmf('1').len(),
            2,
            "still confirms with the channel full"
        );
    }
}
