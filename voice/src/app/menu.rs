//! `menu`: a DTMF menu.
//!
//! ```text
//!   prompt ──1──▶ Transfer { target: "agent" }
//!     │  ──2──▶ echo mode ──*──▶ prompt again
//!     │  ──3──▶ StartRecording (a short beep confirms)    ──4──▶ StopRecording (beep)
//!     │  ──#──▶ Hangup (in any mode)
//!     └─ other digit ─▶ prompt again
//! ```

use super::{tone, Action, Audio, CallApp, CallContext, Notice};

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Menu {
    prompt: Audio,
    beep: Audio,
    echoing: bool,
}

impl Menu {
    /// A menu with `prompt`, or two 440 Hz beeps when `None`.
    pub fn new(prompt: Option<Audio>) -> Menu {
        let prompt = prompt.unwrap_or_else(|| {
            let mut p = tone(440.0, 200, 8000);
            p.extend(std::iter::repeat_n(0, 800));
            p.extend(tone(440.0, 200, 8000));
            p.into()
        });
        Menu {
            prompt,
            beep: tone(880.0, 100, 6000).into(),
            echoing: false,
        }
    }

    fn prompt(&self) -> Vec<Action> {
        vec![Action::StopPlayback, Action::Play(self.prompt.clone())]
    }
}

impl CallApp for Menu {
    fn on_start(&mut self, _ctx: &CallContext) -> Vec<Action> {
        self.prompt()
    }

    /// The transfer (key 1) reached nobody: back to the menu, its prompt again.
    fn on_notice(&mut self, notice: Notice) -> Vec<Action> {
        match notice {
            Notice::TransferFailed { .. } => {
                self.echoing = false;
                self.prompt()
            }
        }
    }

    fn on_audio(&mut self, frame: &[i16]) -> Vec<Action> {
        if self.echoing {
            vec![Action::Play(frame.into())]
        } else {
            Vec::new()
        }
    }

    fn on_dtmf(&mut self, digit: char) -> Vec<Action> {
        match (self.echoing, digit) {
            (_, '#') => vec![Action::StopPlayback, Action::Hangup],
            (true, '*') => {
                self.echoing = false;
                self.prompt()
            }
            (true, _) => Vec::new(),
            (false, '1') => vec![
                Action::StopPlayback,
                Action::Transfer {
                    target: "agent".to_string(),
                    summary: Some("Menu: the caller pressed 1 for a person".to_string()),
                },
            ],
            (false, '2') => {
                self.echoing = true;
                vec![Action::StopPlayback]
            }
            (false, '3') => vec![Action::StartRecording, Action::Play(self.beep.clone())],
            (false, '4') => vec![Action::StopRecording, Action::Play(self.beep.clone())],
            (false, _) => self.prompt(),
        }
    }
}
