//! G.711 (ITU-T) µ-law (PCMU, RTP payload 0) and A-law (PCMA, RTP payload 8) companding:
//! 8-bit codes ⇄ 16-bit linear samples at 8 kHz.
//!
//! Decoding goes through 256-entry tables built at compile time; encoding through 64 KiB
//! tables built on first use from the reference functions below, so the media path does
//! one load per sample instead of a segment search.

use std::sync::OnceLock;

/// Encodes one linear sample to µ-law.
pub fn encode_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut magnitude = i32::from(sample);
    let sign: u8 = if magnitude < 0 { 0x80 } else { 0 };
    if magnitude < 0 {
        magnitude = -magnitude;
    }
    let biased = magnitude.min(32_635) + BIAS;
    // Segment: how many bits above bit 7 the biased magnitude reaches (0..=7).
    let segment = (31 - biased.leading_zeros() as i32 - 7).clamp(0, 7);
    let step = ((biased >> (segment + 3)) & 0x0F) as u8;
    !(sign | ((segment as u8) << 4) | step)
}

const fn decode_ulaw_const(code: u8) -> i16 {
    let u = !code;
    let segment = ((u >> 4) & 0x07) as i32;
    let step = (u & 0x0F) as i32;
    let magnitude = (((step << 3) + 0x84) << segment) - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes one linear sample to A-law.
pub fn encode_alaw(sample: i16) -> u8 {
    let s = i32::from(sample) >> 3; // 13-bit
    let (sign, magnitude) = if s >= 0 {
        (0xD5u8, s)
    } else {
        (0x55u8, -s - 1)
    };
    let magnitude = magnitude.min(0x0FFF);
    let code = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        let segment = 31 - magnitude.leading_zeros() as i32 - 4; // 1..=7
        ((segment as u8) << 4) | ((magnitude >> segment) & 0x0F) as u8
    };
    code ^ sign
}

const fn decode_alaw_const(code: u8) -> i16 {
    let a = code ^ 0x55;
    let segment = ((a >> 4) & 0x07) as i32;
    let step = (a & 0x0F) as i32;
    let magnitude = if segment == 0 {
        (step << 4) + 8
    } else {
        ((step << 4) + 0x108) << (segment - 1)
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            decode_alaw_const(i as u8)
        } else {
            decode_ulaw_const(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW_DEC: [i16; 256] = table(false);
static ALAW_DEC: [i16; 256] = table(true);

/// Decodes one µ-law byte.
pub fn decode_ulaw(code: u8) -> i16 {
    ULAW_DEC[usize::from(code)]
}

/// Decodes one A-law byte.
pub fn decode_alaw(code: u8) -> i16 {
    ALAW_DEC[usize::from(code)]
}

/// Which G.711 law a byte stream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711Law {
    /// PCMU, RTP payload type 0 (North America, Japan).
    Ulaw,
    /// PCMA, RTP payload type 8 (elsewhere).
    Alaw,
}

impl G711Law {
    fn decode_table(self) -> &'static [i16; 256] {
        match self {
            G711Law::Ulaw => &ULAW_DEC,
            G711Law::Alaw => &ALAW_DEC,
        }
    }

    /// Full 16-bit → code table (64 KiB), built on first use.
    fn encode_table(self) -> &'static [u8] {
        static ULAW_ENC: OnceLock<Box<[u8]>> = OnceLock::new();
        static ALAW_ENC: OnceLock<Box<[u8]>> = OnceLock::new();
        let (cell, f): (_, fn(i16) -> u8) = match self {
            G711Law::Ulaw => (&ULAW_ENC, encode_ulaw),
            G711Law::Alaw => (&ALAW_ENC, encode_alaw),
        };
        cell.get_or_init(|| (i16::MIN..=i16::MAX).map(f).collect())
    }

    /// Decodes bytes, appending one linear sample per byte to `out`.
    pub fn decode_into(self, codes: &[u8], out: &mut Vec<i16>) {
        let t = self.decode_table();
        out.extend(codes.iter().map(|&b| t[usize::from(b)]));
    }

    /// Encodes linear samples, appending one byte per sample to `out`.
    pub fn encode_into(self, samples: &[i16], out: &mut Vec<u8>) {
        let table = self.encode_table();
        out.extend(
            samples
                .iter()
                .map(|&s| table[(i32::from(s) - i32::from(i16::MIN)) as usize]),
        );
    }

    /// Decodes bytes to a new buffer.
    pub fn decode(self, codes: &[u8]) -> Vec<i16> {
        let mut out = Vec::with_capacity(codes.len());
        self.decode_into(codes, &mut out);
        out
    }

    /// Encodes linear samples to a new buffer.
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        let mut out = Vec::with_capacity(samples.len());
        self.encode_into(samples, &mut out);
        out
    }

    /// The code for digital silence.
    pub fn silence(self) -> u8 {
        match self {
            G711Law::Ulaw => 0xFF,
            G711Law::Alaw => 0xD5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        // G.711 reference points: silence, full scale.
        assert_eq!(encode_ulaw(0), 0xFF);
        assert_eq!(decode_ulaw(0xFF), 0);
        assert_eq!(decode_ulaw(0x00), -32_124);
        assert_eq!(decode_ulaw(0x80), 32_124);
        assert_eq!(encode_alaw(0), 0xD5);
        assert_eq!(decode_alaw(0xD5), 8);
        assert_eq!(decode_alaw(0x2A), -32_256);
        assert_eq!(decode_alaw(0xAA), 32_256);
        assert_eq!(G711Law::Ulaw.silence(), encode_ulaw(0));
        assert_eq!(G711Law::Alaw.silence(), encode_alaw(0));
    }

    /// A-law as the reference C implementation (Sun Microsystems' public-domain `g711.c`)
    /// computes it — a segment search over end points instead of bit counting — written out
    /// here as an independent oracle.
    fn reference_alaw(pcm: i16) -> u8 {
        const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
        let mut v = i32::from(pcm) >> 3;
        let mask = if v >= 0 {
            0xD5
        } else {
            v = -v - 1;
            0x55
        };
        let Some(seg) = SEG_END.iter().position(|&end| v <= end) else {
            return 0x7F ^ mask;
        };
        let quant = if seg < 2 { v >> 1 } else { v >> seg };
        (((seg as u8) << 4) | (quant & 0x0F) as u8) ^ mask
    }

    /// µ-law as the CCITT reference computes it: an exponent lookup table over the biased,
    /// clipped magnitude, sign taken from the sample's high byte.
    fn reference_ulaw(pcm: i16) -> u8 {
        let exp_lut: Vec<u8> = (0..256u32)
            .map(|i| {
                if i == 0 {
                    0
                } else {
                    (31 - i.leading_zeros()) as u8
                }
            })
            .collect();
        let mut x = i32::from(pcm);
        let sign = ((x >> 8) & 0x80) as u8;
        if sign != 0 {
            x = -x;
        }
        x = x.min(32_635) + 0x84;
        let exponent = exp_lut[((x >> 7) & 0xFF) as usize];
        let mantissa = ((x >> (i32::from(exponent) + 3)) & 0x0F) as u8;
        !(sign | (exponent << 4) | mantissa)
    }

    #[test]
    fn every_sample_encodes_as_the_reference_implementations_do() {
        for pcm in i16::MIN..=i16::MAX {
            assert_eq!(encode_alaw(pcm), reference_alaw(pcm), "A-law of {pcm}");
            assert_eq!(encode_ulaw(pcm), reference_ulaw(pcm), "µ-law of {pcm}");
        }
    }

    #[test]
    fn tables_match_the_arithmetic_for_every_sample() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        for law in [G711Law::Ulaw, G711Law::Alaw] {
            let out = law.encode(&all);
            let f = if law == G711Law::Ulaw {
                encode_ulaw
            } else {
                encode_alaw
            };
            assert!(all.iter().zip(&out).all(|(&s, &c)| f(s) == c), "{law:?}");
            let back = law.decode(&out);
            let g = if law == G711Law::Ulaw {
                decode_ulaw
            } else {
                decode_alaw
            };
            assert!(out.iter().zip(&back).all(|(&c, &s)| g(c) == s));
        }
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            let u = decode_ulaw(code);
            // 0x7F and 0xFF both decode to 0 (µ-law has two zeros).
            let back = encode_ulaw(u);
            assert!(back == code || u == 0, "ulaw {code:#x} -> {u} -> {back:#x}");
            assert_eq!(encode_alaw(decode_alaw(code)), code, "alaw {code:#x}");
        }
    }

    #[test]
    fn quantisation_error_is_bounded_and_monotonic() {
        let mut last_u = i16::MIN;
        let mut last_a = i16::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = decode_ulaw(encode_ulaw(s));
            let a = decode_alaw(encode_alaw(s));
            // Log companding: the error stays under 1/16 of the sample plus a small floor.
            let bound = i32::from(s).abs() / 16 + 40;
            assert!((i32::from(u) - i32::from(s)).abs() <= bound, "u {s} {u}");
            assert!((i32::from(a) - i32::from(s)).abs() <= bound, "a {s} {a}");
            assert!(u >= last_u && a >= last_a, "monotonic at {s}");
            last_u = u;
            last_a = a;
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
