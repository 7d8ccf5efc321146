//! Bridging two call legs (the B2BUA of a transfer): each leg runs a [`Bridge`] app, and the
//! two pass frames and digits to each other.
//!
//! ```text
//!   caller leg: on_audio(heard) ──try_send──▶ [bounded] ──try_recv──▶ agent leg: Play
//!   caller leg: Play ◀──try_recv── [bounded] ◀──try_send── agent leg: on_audio(heard)
//!   on_dtmf(d) on one side ──▶ SendDtmf(d) on the other (RFC 4733 out)
//! ```
//!
//! The channels hold 5 frames (100 ms); a full channel drops the newest frame. Each side
//! plays at most the frames waiting each tick, so the legs' 20 ms clocks need not be in
//! phase. Silence frames are passed too: the far end hears exactly what this side heard.

use super::{Action, Audio, CallApp, CallContext};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Frames in flight each way, at most.
const DEPTH: usize = 5;

enum Message {
    Audio(Audio),
    Dtmf(char),
}

/// One side of a bridge. Make both with [`pair`].
pub struct Bridge {
    to_peer: SyncSender<Message>,
    from_peer: Receiver<Message>,
    dropped: u64,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("dropped", &self.dropped)
            .finish()
    }
}

/// Two connected sides: give one to each leg.
pub fn pair() -> (Bridge, Bridge) {
    let (a_tx, a_rx) = sync_channel(DEPTH);
    let (b_tx, b_rx) = sync_channel(DEPTH);
    (
        Bridge {
            to_peer: a_tx,
            from_peer: b_rx,
            dropped: 0,
        },
        Bridge {
            to_peer: b_tx,
            from_peer: a_rx,
            dropped: 0,
        },
    )
}

impl Bridge {
    /// Frames this side could not hand over (the peer lagged or is gone).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn send(&mut self, m: Message) {
        if self.to_peer.try_send(m).is_err() {
            self.dropped += 1;
        }
    }

    fn receive(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Ok(m) = self.from_peer.try_recv() {
            actions.push(match m {
                Message::Audio(a) => Action::Play(a),
                Message::Dtmf(d) => Action::SendDtmf(d),
            });
        }
        actions
    }
}

impl CallApp for Bridge {
    fn on_start(&mut self, _ctx: &CallContext) -> Vec<Action> {
        // Whatever piled up before this leg joined is stale.
        while self.from_peer.try_recv().is_ok() {}
        Vec::new()
    }

    fn on_audio(&mut self, frame: &[i16]) -> Vec<Action> {
        self.send(Message::Audio(frame.into()));
        self.receive()
    }

    fn on_dtmf(&mut self, digit: char) -> Vec<Action> {
        self.send(Message::Dtmf(digit));
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_digits_cross_and_a_lagging_peer_drops_not_blocks() {
        let (mut a, mut b) = pair();
        assert!(a.on_audio(&[1; 160]).is_empty());
        assert_eq!(
            b.on_audio(&[2; 160]),
            vec![Action::Play(vec![1; 160].into())]
        );
        assert_eq!(
            a.on_audio(&[3; 160]),
            vec![Action::Play(vec![2; 160].into())]
        );
        assert!(a.on_dtmf('9').is_empty());
        let got = b.on_audio(&[4; 160]);
        assert_eq!(got[1], Action::SendDtmf('9'));
        // b stops reading: a keeps going, drops beyond the depth.
        for _ in 0..20 {
            a.on_audio(&[5; 160]);
        }
        assert!(a.dropped() >= 20 - DEPTH as u64);
        drop(b);
        a.on_audio(&[6; 160]);
        assert!(a.dropped() >= 21 - DEPTH as u64);
    }
}
