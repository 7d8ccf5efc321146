//! The receptionist's media-side half: forwards the caller's frames and digits to the call's
//! session task and hands back the actions the session queued. Nothing here waits: frames
//! go through a bounded channel with `try_send` (a full channel drops the frame and counts
//! it), actions come back on a channel read with `try_recv`.

use super::{session, Host};
use crate::app::{Action, CallApp, CallContext, Notice};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Frames buffered toward the session (4 s): it falls this far behind only when starved.
const INPUT_FRAMES: usize = 200;

/// What the media side tells the session.
#[derive(Debug)]
pub(super) enum Input {
    /// 20 ms of the caller's audio.
    Audio(Box<[i16]>),
    /// A DTMF digit.
    Dtmf(char),
    /// Playback drained; `plays` clips had been handed to the media side by then.
    PlaybackDone { plays: u64 },
    /// The hand-over did not reach the agent (SIP status).
    TransferFailed { status: u16 },
}

/// See the module docs.
pub struct ReceptionistApp {
    host: Arc<Host>,
    input: Option<mpsc::Sender<Input>>,
    actions: Option<std_mpsc::Receiver<Action>>,
    /// Clips handed to the media side so far.
    plays: u64,
    /// Frames dropped because the session lagged.
    dropped: u64,
}

impl ReceptionistApp {
    /// An app whose session will run on `host`.
    pub fn new(host: Arc<Host>) -> ReceptionistApp {
        ReceptionistApp {
            host,
            input: None,
            actions: None,
            plays: 0,
            dropped: 0,
        }
    }

    fn send(&mut self, input: Input) {
        if let Some(tx) = &self.input {
            if tx.try_send(input).is_err() {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.dropped,
                        "receptionist session behind; input dropped"
                    );
                }
            }
        }
    }

    fn drain(&mut self) -> Vec<Action> {
        let Some(rx) = &self.actions else {
            return Vec::new();
        };
        let actions: Vec<Action> = rx.try_iter().collect();
        self.plays += actions
            .iter()
            .filter(|a| matches!(a, Action::Play(_)))
            .count() as u64;
        actions
    }
}

impl CallApp for ReceptionistApp {
    fn on_start(&mut self, ctx: &CallContext) -> Vec<Action> {
        let (input_tx, input_rx) = mpsc::channel(INPUT_FRAMES);
        let (actions_tx, actions_rx) = std_mpsc::channel();
        self.input = Some(input_tx);
        self.actions = Some(actions_rx);
        let host = Arc::clone(&self.host);
        self.host
            .runtime
            .spawn(session::run(host, ctx.clone(), input_rx, actions_tx));
        Vec::new()
    }

    fn on_audio(&mut self, frame: &[i16]) -> Vec<Action> {
        self.send(Input::Audio(frame.into()));
        self.drain()
    }

    fn on_dtmf(&mut self, digit: char) -> Vec<Action> {
        self.send(Input::Dtmf(digit));
        self.drain()
    }

    fn on_playback_finished(&mut self) -> Vec<Action> {
        let plays = self.plays;
        self.send(Input::PlaybackDone { plays });
        self.drain()
    }

    fn on_notice(&mut self, notice: Notice) -> Vec<Action> {
        match notice {
            Notice::TransferFailed { status } => self.send(Input::TransferFailed { status }),
        }
        self.drain()
    }
}
