//! Band-limited sample-rate conversion: a streaming rational polyphase resampler.
//!
//! Any rational ratio works (8 k ↔ 16 k is 2/1, 16 k → 22.05 k is 441/320, 22.05 k → 8 k
//! is 160/441). The filter is a Kaiser-windowed sinc whose cutoff sits just under the
//! lower of the two Nyquist frequencies, so downsampling removes what would alias instead
//! of dropping samples. One polyphase table is computed at construction; the per-sample
//! cost is one dot product of `2 * half` taps.
//!
//! The filter is centred (zero group delay): output sample `n` is the input signal at time
//! `n * in_rate / out_rate`. Centring needs `half` input samples of look-ahead, which is
//! why output lags input by a few milliseconds until [`Resampler::flush`].

/// A rate the resampler refuses (zero, or above 384 kHz).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported sample rate {rate} Hz")]
pub struct RateError {
    /// The rejected rate.
    pub rate: u32,
}

/// Zero crossings of the sinc on each side of the centre (quality knob).
const ZERO_CROSSINGS: f64 = 16.0;
/// Passband edge as a fraction of the lower Nyquist frequency.
const ROLLOFF: f64 = 0.92;
/// Kaiser window shape; 8.6 gives about 90 dB stopband attenuation.
const KAISER_BETA: f64 = 8.6;

/// A streaming resampler from one fixed rate to another.
#[derive(Debug, Clone)]
pub struct Resampler {
    in_rate: u32,
    out_rate: u32,
    /// Upsampling factor (output rate / gcd).
    up: u64,
    /// Downsampling factor (input rate / gcd).
    down: u64,
    /// Taps on each side of the centre, in input samples.
    half: usize,
    /// `up` phases of `2 * half` taps each.
    table: Vec<f32>,
    /// Input samples not yet consumed; `buf[0]` is input sample number `base`.
    buf: Vec<f32>,
    base: i64,
    /// Next output sample number.
    next_out: u64,
    /// Input samples pushed so far.
    consumed: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Zeroth-order modified Bessel function of the first kind (series), for the Kaiser window.
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..64 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-12 {
            break;
        }
    }
    sum
}

impl Resampler {
    /// A resampler from `in_rate` to `out_rate` Hz.
    pub fn new(in_rate: u32, out_rate: u32) -> Result<Self, RateError> {
        if in_rate == 0 || out_rate == 0 || in_rate > 384_000 || out_rate > 384_000 {
            let rate = if in_rate == 0 || in_rate > 384_000 {
                in_rate
            } else {
                out_rate
            };
            return Err(RateError { rate });
        }
        let g = gcd(u64::from(in_rate), u64::from(out_rate));
        let (up, down) = (u64::from(out_rate) / g, u64::from(in_rate) / g);
        // Cutoff in cycles per input sample.
        let cutoff = 0.5 * (up as f64 / down as f64).min(1.0) * ROLLOFF;
        let half = (ZERO_CROSSINGS / (2.0 * cutoff)).ceil() as usize;
        let taps = 2 * half;
        let mut table = vec![0f32; up as usize * taps];
        let i0_beta = bessel_i0(KAISER_BETA);
        for phase in 0..up as usize {
            let frac = phase as f64 / up as f64;
            let row = &mut table[phase * taps..(phase + 1) * taps];
            for (m, tap) in row.iter_mut().enumerate() {
                // Tap m multiplies input sample (i - half + 1 + m); its distance from the
                // output instant i + frac is d.
                let d = frac + (half as f64 - 1.0 - m as f64);
                let x = 2.0 * cutoff * d;
                let sinc = if x.abs() < 1e-12 {
                    1.0
                } else {
                    (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
                };
                let r = d / half as f64;
                let window = if r.abs() >= 1.0 {
                    0.0
                } else {
                    bessel_i0(KAISER_BETA * (1.0 - r * r).sqrt()) / i0_beta
                };
                *tap = (2.0 * cutoff * sinc * window) as f32;
            }
        }
        Ok(Self {
            in_rate,
            out_rate,
            up,
            down,
            half,
            table,
            // Samples before the start of the stream are silence.
            buf: vec![0.0; half - 1],
            base: -(half as i64 - 1),
            next_out: 0,
            consumed: 0,
        })
    }

    /// Input rate in Hz.
    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    /// Output rate in Hz.
    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    /// Pushes input samples, appending every output sample that can now be computed.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.consumed += input.len() as u64;
        self.buf.extend_from_slice(input);
        self.drain(out, None);
    }

    /// Ends the stream: emits the remaining output, as if silence followed the input.
    /// Total output is `ceil(total_input * out_rate / in_rate)` samples.
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        let total = (self.consumed * self.up).div_ceil(self.down);
        self.buf.extend(std::iter::repeat_n(0.0, self.half + 1));
        self.drain(out, Some(total));
        self.buf.clear();
        self.buf.resize(self.half - 1, 0.0);
        self.base = -(self.half as i64 - 1);
        self.next_out = 0;
        self.consumed = 0;
    }

    fn drain(&mut self, out: &mut Vec<f32>, limit: Option<u64>) {
        let taps = 2 * self.half;
        let end = self.base + self.buf.len() as i64;
        loop {
            if limit.is_some_and(|l| self.next_out >= l) {
                break;
            }
            let pos = self.next_out * self.down;
            let i = (pos / self.up) as i64;
            let phase = (pos % self.up) as usize;
            let first = i - self.half as i64 + 1;
            if first + taps as i64 > end {
                break;
            }
            let start = (first - self.base) as usize;
            let x = &self.buf[start..start + taps];
            let h = &self.table[phase * taps..(phase + 1) * taps];
            out.push(x.iter().zip(h).map(|(a, b)| a * b).sum());
            self.next_out += 1;
        }
        // Forget input that no future output sample can reach.
        let pos = self.next_out * self.down;
        let keep_from = (pos / self.up) as i64 - self.half as i64 + 1;
        let drop = (keep_from - self.base).clamp(0, self.buf.len() as i64) as usize;
        self.buf.drain(..drop);
        self.base += drop as i64;
    }

    /// Pushes 16-bit samples, appending 16-bit output.
    pub fn process_i16(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let mut tmp = Vec::with_capacity(input.len() * self.up as usize / self.down as usize + 2);
        self.process(&crate::pcm::to_f32(input), &mut tmp);
        out.extend(tmp.iter().map(|&s| crate::pcm::f32_to_i16(s)));
    }

    /// Ends a 16-bit stream (see [`Resampler::flush`]).
    pub fn flush_i16(&mut self, out: &mut Vec<i16>) {
        let mut tmp = Vec::new();
        self.flush(&mut tmp);
        out.extend(tmp.iter().map(|&s| crate::pcm::f32_to_i16(s)));
    }
}

/// Resamples a whole clip at once.
pub fn resample(input: &[f32], in_rate: u32, out_rate: u32) -> Result<Vec<f32>, RateError> {
    if in_rate == out_rate {
        return Ok(input.to_vec());
    }
    let mut r = Resampler::new(in_rate, out_rate)?;
    let mut out = Vec::with_capacity(input.len() * out_rate as usize / in_rate as usize + 1);
    r.process(input, &mut out);
    r.flush(&mut out);
    Ok(out)
}

/// Resamples a whole 16-bit clip at once.
pub fn resample_i16(input: &[i16], in_rate: u32, out_rate: u32) -> Result<Vec<i16>, RateError> {
    let out = resample(&crate::pcm::to_f32(input), in_rate, out_rate)?;
    Ok(crate::pcm::to_i16(&out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(freq: f64, rate: u32, secs: f64, amp: f64) -> Vec<f32> {
        let n = (rate as f64 * secs) as usize;
        (0..n)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / rate as f64).sin()) as f32)
            .collect()
    }

    /// Amplitude of `freq` in `x` (single-bin DFT), ignoring the first and last 10 %.
    fn tone_amplitude(x: &[f32], rate: u32, freq: f64) -> f64 {
        let skip = x.len() / 10;
        let x = &x[skip..x.len() - skip];
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in x.iter().enumerate() {
            let ph = 2.0 * PI * freq * i as f64 / rate as f64;
            re += f64::from(s) * ph.cos();
            im += f64::from(s) * ph.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    #[test]
    fn lengths_follow_the_ratio() {
        for (a, b) in [
            (8_000, 16_000),
            (16_000, 8_000),
            (16_000, 22_050),
            (22_050, 8_000),
            (24_000, 8_000),
            (8_000, 24_000),
        ] {
            let out = resample(&vec![0.0; 12_345], a, b).unwrap();
            let expect = (12_345u64 * b as u64).div_ceil(a as u64) as usize;
            assert_eq!(out.len(), expect, "{a} -> {b}");
        }
    }

    #[test]
    fn passband_tone_survives_every_ratio() {
        for (a, b) in [
            (8_000, 16_000),
            (16_000, 8_000),
            (16_000, 22_050),
            (22_050, 8_000),
            (24_000, 8_000),
            (22_050, 16_000),
        ] {
            let x = sine(1_000.0, a, 1.0, 0.5);
            let y = resample(&x, a, b).unwrap();
            let amp = tone_amplitude(&y, b, 1_000.0);
            assert!((amp - 0.5).abs() < 0.01, "{a} -> {b}: amplitude {amp}");
        }
    }

    #[test]
    fn downsampling_removes_what_would_alias() {
        // 6 kHz at 16 kHz would fold to 2 kHz at 8 kHz if samples were dropped.
        let x = sine(6_000.0, 16_000, 1.0, 0.5);
        let y = resample(&x, 16_000, 8_000).unwrap();
        let alias = tone_amplitude(&y, 8_000, 2_000.0);
        assert!(alias < 0.5 * 1e-3, "alias at 2 kHz: {alias}");
        // Same for 22.05 kHz -> 8 kHz: 7 kHz would fold to 1 kHz.
        let x = sine(7_000.0, 22_050, 1.0, 0.5);
        let y = resample(&x, 22_050, 8_000).unwrap();
        assert!(tone_amplitude(&y, 8_000, 1_000.0) < 0.5 * 1e-3);
    }

    #[test]
    fn streaming_equals_one_shot_for_any_chunking() {
        let x = sine(440.0, 22_050, 0.3, 0.7);
        let whole = resample(&x, 22_050, 8_000).unwrap();
        for chunk in [1, 7, 160, 441, 1_000] {
            let mut r = Resampler::new(22_050, 8_000).unwrap();
            let mut out = Vec::new();
            for c in x.chunks(chunk) {
                r.process(c, &mut out);
            }
            r.flush(&mut out);
            assert_eq!(out, whole, "chunk {chunk}");
        }
    }

    #[test]
    fn timing_is_preserved() {
        // An impulse at input sample 800 (100 ms at 8 kHz) peaks at output sample 1600.
        let mut x = vec![0.0f32; 1_600];
        x[800] = 1.0;
        let y = resample(&x, 8_000, 16_000).unwrap();
        let peak = y
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(peak, 1_600);
    }

    #[test]
    fn a_flushed_resampler_takes_a_new_stream_as_if_new() {
        let first = sine(300.0, 22_050, 0.2, 0.6);
        let second = sine(900.0, 22_050, 0.25, 0.4);
        let mut r = Resampler::new(22_050, 8_000).unwrap();
        assert_eq!((r.in_rate(), r.out_rate()), (22_050, 8_000));
        let mut out = Vec::new();
        r.process(&first, &mut out);
        r.flush(&mut out);
        assert_eq!(out, resample(&first, 22_050, 8_000).unwrap());
        let mut again = Vec::new();
        r.process(&second, &mut again);
        r.flush(&mut again);
        assert_eq!(again, resample(&second, 22_050, 8_000).unwrap());
    }

    #[test]
    fn the_window_and_the_ratio_are_computed_exactly() {
        // I0 from tables (Abramowitz and Stegun, 9.8).
        for (x, want) in [
            (0.0, 1.0),
            (1.0, 1.266_065_877_752_008_4),
            (2.0, 2.279_585_302_336_067_3),
            (5.0, 27.239_871_823_604_442),
        ] {
            let got = bessel_i0(x);
            assert!(
                (got - want).abs() < 1e-9 * want,
                "I0({x}) = {got}, want {want}"
            );
        }
        assert_eq!(gcd(48_000, 8_000), 8_000);
        assert_eq!(gcd(22_050, 8_000), 50);
        assert_eq!(gcd(8_000, 22_050), 50);
        assert_eq!(gcd(7, 0), 7);
        // The reduced ratio sizes the filter table: one row of taps per output phase.
        let r = Resampler::new(48_000, 8_000).unwrap();
        assert_eq!((r.up, r.down), (1, 6));
        assert_eq!(r.table.len(), 2 * r.half);
    }

    #[test]
    fn sixteen_bit_streaming_equals_one_shot_and_memory_stays_bounded() {
        let x: Vec<i16> = sine(500.0, 16_000, 2.0, 0.5)
            .iter()
            .map(|&s| crate::pcm::f32_to_i16(s))
            .collect();
        let whole = resample_i16(&x, 16_000, 8_000).unwrap();
        let mut r = Resampler::new(16_000, 8_000).unwrap();
        let mut out = Vec::new();
        let mut most = 0;
        for c in x.chunks(160) {
            r.process_i16(c, &mut out);
            most = most.max(r.buf.len());
        }
        r.flush_i16(&mut out);
        assert_eq!(out, whole);
        // Only the input a future output sample can still reach is kept: about one filter
        // length plus a chunk, however long the stream.
        assert!(most <= 2 * r.half + 160, "kept {most} input samples");
    }

    #[test]
    fn rejects_zero_rate() {
        assert!(Resampler::new(0, 8_000).is_err());
    }
}
