//! PCM16 helpers and 20 ms framing.
//!
//! Telephone media moves in 20 ms packets (160 samples at 8 kHz); whisper wants f32 in
//! [-1, 1] at 16 kHz. These are the small conversions between the two worlds, plus a
//! [`Framer`] that turns arbitrarily sized chunks into exact frames.

/// The packet duration every part of the media path agrees on.
pub const FRAME_MS: u32 = 20;

/// Samples in one 20 ms frame at `rate` Hz (160 at 8 kHz, 320 at 16 kHz).
pub const fn frame_len(rate: u32) -> usize {
    (rate * FRAME_MS / 1000) as usize
}

/// Converts a 16-bit sample to f32 in [-1, 1).
pub fn i16_to_f32(s: i16) -> f32 {
    f32::from(s) / 32_768.0
}

/// Converts an f32 sample to 16 bits, clamping instead of wrapping.
pub fn f32_to_i16(s: f32) -> i16 {
    (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

/// Converts a slice of 16-bit samples to f32.
pub fn to_f32(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| i16_to_f32(s)).collect()
}

/// Converts a slice of f32 samples to 16 bits.
pub fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples.iter().map(|&s| f32_to_i16(s)).collect()
}

/// Root-mean-square level of 16-bit samples in dBFS (full-scale sine is about -3 dBFS);
/// `-inf` for digital silence.
pub fn rms_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return f32::NEG_INFINITY;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    let rms = (sum / samples.len() as f64).sqrt();
    (20.0 * (rms / 32_768.0).log10()) as f32
}

/// Duration of `samples` at `rate` in milliseconds.
pub fn duration_ms(samples: usize, rate: u32) -> u64 {
    samples as u64 * 1000 / u64::from(rate)
}

/// Averages interleaved frames of `channels` samples to mono (1 channel: a copy).
pub fn downmix(interleaved: &[i16], channels: usize) -> Vec<i16> {
    let ch = channels.max(1);
    interleaved
        .chunks_exact(ch)
        .map(|f| (f.iter().map(|&s| i32::from(s)).sum::<i32>() / ch as i32) as i16)
        .collect()
}

/// Cuts a stream of arbitrarily sized chunks into fixed-size frames.
///
/// Holds back at most one partial frame; `flush` pads it with silence.
#[derive(Debug, Clone)]
pub struct Framer {
    frame: usize,
    pending: Vec<i16>,
}

impl Framer {
    /// A framer that yields frames of `frame` samples (see [`frame_len`]).
    pub fn new(frame: usize) -> Self {
        assert!(frame > 0, "frame size must be positive");
        Self {
            frame,
            pending: Vec::with_capacity(frame),
        }
    }

    /// Samples per frame.
    pub fn frame_size(&self) -> usize {
        self.frame
    }

    /// Adds samples and calls `emit` for every complete frame.
    pub fn push(&mut self, mut samples: &[i16], mut emit: impl FnMut(&[i16])) {
        if !self.pending.is_empty() {
            let need = self.frame - self.pending.len();
            let take = need.min(samples.len());
            self.pending.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.pending.len() < self.frame {
                return;
            }
            emit(&self.pending);
            self.pending.clear();
        }
        let mut chunks = samples.chunks_exact(self.frame);
        for frame in &mut chunks {
            emit(frame);
        }
        self.pending.extend_from_slice(chunks.remainder());
    }

    /// Emits the held-back partial frame, padded with zeros, if there is one.
    pub fn flush(&mut self, mut emit: impl FnMut(&[i16])) {
        if !self.pending.is_empty() {
            self.pending.resize(self.frame, 0);
            emit(&self.pending);
            self.pending.clear();
        }
    }

    /// Samples held back, waiting for the rest of their frame.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_channels() {
        assert_eq!(downmix(&[1_000, 3_000, -2, 4], 2), vec![2_000, 1]);
        assert_eq!(downmix(&[5, 6, 7], 1), vec![5, 6, 7]);
    }

    #[test]
    fn durations_and_frame_sizes() {
        assert_eq!(duration_ms(8_000, 8_000), 1_000);
        assert_eq!(duration_ms(160, 8_000), 20);
        assert_eq!(duration_ms(441, 44_100), 10);
        assert_eq!(
            duration_ms(159, 8_000),
            19,
            "whole milliseconds, rounded down"
        );
        assert_eq!(duration_ms(0, 16_000), 0);
        assert_eq!(Framer::new(160).frame_size(), 160);
        assert_eq!(Framer::new(7).frame_size(), 7);
    }

    #[test]
    fn frame_lengths() {
        assert_eq!(frame_len(8_000), 160);
        assert_eq!(frame_len(16_000), 320);
        assert_eq!(frame_len(24_000), 480);
    }

    #[test]
    fn f32_round_trip_is_exact_and_clamps() {
        for s in [i16::MIN, -1, 0, 1, 12_345, i16::MAX] {
            assert_eq!(f32_to_i16(i16_to_f32(s)), s);
        }
        assert_eq!(f32_to_i16(2.0), i16::MAX);
        assert_eq!(f32_to_i16(-2.0), i16::MIN);
    }

    #[test]
    fn rms_levels() {
        assert_eq!(rms_dbfs(&[0; 10]), f32::NEG_INFINITY);
        let square = [16_384i16, -16_384].repeat(50);
        assert!((rms_dbfs(&square) + 6.02).abs() < 0.01);
    }

    #[test]
    fn framer_splits_at_every_chunk_size() {
        let input: Vec<i16> = (0..1_000).map(|i| i as i16).collect();
        for chunk in 1..=400 {
            let mut framer = Framer::new(160);
            let mut out = Vec::new();
            for c in input.chunks(chunk) {
                framer.push(c, |f| {
                    assert_eq!(f.len(), 160);
                    out.extend_from_slice(f);
                });
            }
            assert_eq!(framer.pending(), 1_000 % 160);
            framer.flush(|f| out.extend_from_slice(f));
            assert_eq!(out.len(), 1_120);
            assert_eq!(&out[..1_000], &input[..]);
            assert!(out[1_000..].iter().all(|&s| s == 0));
        }
    }
}
