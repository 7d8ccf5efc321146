//! `echo`: plays back what it hears.

use super::{Action, CallApp, CallContext};

/// Sends every heard frame back.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl CallApp for Echo {
    fn on_start(&mut self, _ctx: &CallContext) -> Vec<Action> {
        Vec::new()
    }

    fn on_audio(&mut self, frame: &[i16]) -> Vec<Action> {
        vec![Action::Play(frame.into())]
    }

    fn on_dtmf(&mut self, _digit: char) -> Vec<Action> {
        Vec::new()
    }
}
