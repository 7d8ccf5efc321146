//! G.711 companding (ITU-T G.711): µ-law (PCMU, North America/Japan) and A-law (PCMA,
//! elsewhere), the two codecs every SIP trunk speaks.
//!
//! One byte per sample at 8 kHz. Both are pure functions over single samples plus slice
//! helpers; no state, no allocation on the per-sample path.

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32_635;

/// Encodes one 16-bit linear sample to µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0x00 };
    if s < 0 {
        s = -s;
    }
    s = s.min(ULAW_CLIP) + ULAW_BIAS;
    // The segment is the position of the highest set bit above bit 7.
    let exponent = (31 - (s >> 7).max(1).leading_zeros()) as i32;
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Decodes one µ-law byte to a 16-bit linear sample.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Upper ends of the eight A-law segments, on the 13-bit magnitude.
const ALAW_SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

/// Encodes one 16-bit linear sample to A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut v = i32::from(sample) >> 3;
    let mask = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let segment = ALAW_SEG_END.iter().position(|&end| v <= end);
    match segment {
        None => 0x7F ^ mask,
        Some(seg) => {
            let quant = if seg < 2 {
                (v >> 1) & 0x0F
            } else {
                (v >> seg) & 0x0F
            };
            (((seg as i32) << 4) | quant) as u8 ^ mask
        }
    }
}

/// Decodes one A-law byte to a 16-bit linear sample.
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let seg = u32::from((a & 0x70) >> 4);
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

/// Which G.711 law a byte stream uses (RTP payload type 0 is µ-law, 8 is A-law).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711Law {
    /// PCMU, RTP payload type 0.
    Ulaw,
    /// PCMA, RTP payload type 8.
    Alaw,
}

impl G711Law {
    /// Encodes linear samples, appending one byte per sample to `out`.
    pub fn encode_into(self, samples: &[i16], out: &mut Vec<u8>) {
        match self {
            G711Law::Ulaw => out.extend(samples.iter().map(|&s| linear_to_ulaw(s))),
            G711Law::Alaw => out.extend(samples.iter().map(|&s| linear_to_alaw(s))),
        }
    }

    /// Decodes bytes, appending one linear sample per byte to `out`.
    pub fn decode_into(self, codes: &[u8], out: &mut Vec<i16>) {
        match self {
            G711Law::Ulaw => out.extend(codes.iter().map(|&c| ulaw_to_linear(c))),
            G711Law::Alaw => out.extend(codes.iter().map(|&c| alaw_to_linear(c))),
        }
    }

    /// Encodes linear samples to a new buffer.
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        let mut out = Vec::with_capacity(samples.len());
        self.encode_into(samples, &mut out);
        out
    }

    /// Decodes bytes to a new buffer.
    pub fn decode(self, codes: &[u8]) -> Vec<i16> {
        let mut out = Vec::with_capacity(codes.len());
        self.decode_into(codes, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(ulaw_to_linear(0x80), 32_124);
        assert_eq!(ulaw_to_linear(0x00), -32_124);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32_256);
        assert_eq!(alaw_to_linear(0x2A), -32_256);
    }

    #[test]
    fn decode_then_encode_is_identity_on_every_code() {
        for code in 0..=255u8 {
            let lin = ulaw_to_linear(code);
            // 0x7F and 0xFF both decode to 0 (negative and positive zero).
            if code != 0x7F {
                assert_eq!(linear_to_ulaw(lin), code, "ulaw code {code:#x}");
            }
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "alaw code {code:#x}"
            );
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_to_linear(linear_to_ulaw(s));
            let a = alaw_to_linear(linear_to_alaw(s));
            assert!(u >= prev_u && a >= prev_a, "not monotonic at {s}");
            prev_u = u;
            prev_a = a;
        }
    }

    fn snr_db(law: G711Law, amplitude: f64) -> f64 {
        let samples: Vec<i16> = (0..8000)
            .map(|n| {
                (amplitude * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 8000.0).sin()) as i16
            })
            .collect();
        let back = law.decode(&law.encode(&samples));
        let (mut sig, mut err) = (0.0, 0.0);
        for (&a, &b) in samples.iter().zip(&back) {
            sig += f64::from(a).powi(2);
            err += (f64::from(a) - f64::from(b)).powi(2);
        }
        10.0 * (sig / err).log10()
    }

    #[test]
    fn sine_round_trip_keeps_telephone_snr() {
        // G.711 gives roughly 38 dB SNR over a wide range of levels.
        for law in [G711Law::Ulaw, G711Law::Alaw] {
            for amp in [1_000.0, 8_000.0, 30_000.0] {
                let snr = snr_db(law, amp);
                assert!(snr > 33.0, "{law:?} at {amp}: {snr:.1} dB");
            }
        }
    }
}
