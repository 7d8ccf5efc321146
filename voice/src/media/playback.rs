//! The outgoing audio queue: clips queued by [`crate::app::Action::Play`], read 160 samples
//! at a time by the pacing tick. Clips are shared (`Arc`), never copied into the queue.

use crate::app::Audio;
use std::collections::VecDeque;

/// Queued clips and the read position in the first one.
#[derive(Debug, Default)]
pub struct Playback {
    clips: VecDeque<Audio>,
    offset: usize,
}

impl Playback {
    /// Queues a clip after the others.
    pub fn push(&mut self, clip: Audio) {
        if !clip.is_empty() {
            self.clips.push_back(clip);
        }
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.clips.clear();
        self.offset = 0;
    }

    /// Whether anything is queued.
    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }

    /// Fills `out` from the queue, padding with silence; returns whether any audio was read.
    pub fn read(&mut self, out: &mut [i16]) -> bool {
        let mut filled = 0;
        while filled < out.len() {
            let Some(clip) = self.clips.front() else {
                break;
            };
            let n = (clip.len() - self.offset).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&clip[self.offset..self.offset + n]);
            filled += n;
            self.offset += n;
            if self.offset == clip.len() {
                self.clips.pop_front();
                self.offset = 0;
            }
        }
        out[filled..].fill(0);
        filled > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_across_clips_and_pads_with_silence() {
        let mut p = Playback::default();
        p.push(vec![1; 100].into());
        p.push(Vec::new().into());
        p.push(vec![2; 100].into());
        let mut frame = [9i16; 160];
        assert!(p.read(&mut frame));
        assert_eq!(
            (&frame[..100], &frame[100..]),
            (&[1; 100][..], &[2; 60][..])
        );
        assert!(p.read(&mut frame));
        assert_eq!((&frame[..40], &frame[40..]), (&[2; 40][..], &[0; 120][..]));
        assert!(p.is_empty());
        assert!(!p.read(&mut frame));
        p.push(vec![3; 10].into());
        p.clear();
        assert!(!p.read(&mut frame));
    }
}
