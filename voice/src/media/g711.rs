//! G.711 (ITU-T) µ-law and A-law companding: 8-bit codes ⇄ 16-bit linear samples.
//!
//! Decoding goes through 256-entry tables built at compile time; encoding through 64 KiB
//! tables built on first use from the reference functions. `stt-tts` has its own G.711 for its pipeline; `voice` does not
//! depend on `stt-tts` (its whisper.cpp build is slow), so the two are duplicated for now —
//! follow-up: move both into a tiny shared codec crate.

use crate::sdp::Codec;
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

static ULAW: [i16; 256] = table(false);
static ALAW: [i16; 256] = table(true);

/// Decodes one µ-law byte.
pub fn decode_ulaw(code: u8) -> i16 {
    ULAW[usize::from(code)]
}

/// Decodes one A-law byte.
pub fn decode_alaw(code: u8) -> i16 {
    ALAW[usize::from(code)]
}

/// Decodes a payload, appending to `out`.
pub fn decode(codec: Codec, payload: &[u8], out: &mut Vec<i16>) {
    let t = match codec {
        Codec::Pcmu => &ULAW,
        Codec::Pcma => &ALAW,
    };
    out.extend(payload.iter().map(|&b| t[usize::from(b)]));
}

/// Full 16-bit → code tables (64 KiB each), built on first use: one load per sample on the
/// media path instead of the segment search.
fn encode_table(codec: Codec) -> &'static [u8] {
    static ULAW_ENC: OnceLock<Box<[u8]>> = OnceLock::new();
    static ALAW_ENC: OnceLock<Box<[u8]>> = OnceLock::new();
    let (cell, f): (_, fn(i16) -> u8) = match codec {
        Codec::Pcmu => (&ULAW_ENC, encode_ulaw),
        Codec::Pcma => (&ALAW_ENC, encode_alaw),
    };
    cell.get_or_init(|| (i16::MIN..=i16::MAX).map(f).collect())
}

/// Encodes samples, appending to `out`.
pub fn encode(codec: Codec, samples: &[i16], out: &mut Vec<u8>) {
    let table = encode_table(codec);
    out.extend(
        samples
            .iter()
            .map(|&s| table[(i32::from(s) - i32::from(i16::MIN)) as usize]),
    );
}

/// The code for digital silence.
pub fn silence(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => 0xFF,
        Codec::Pcma => 0xD5,
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
        assert_eq!(silence(Codec::Pcmu), encode_ulaw(0));
        assert_eq!(silence(Codec::Pcma), encode_alaw(0));
    }

    #[test]
    fn tables_match_the_arithmetic_for_every_sample() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut out = Vec::new();
            encode(codec, &all, &mut out);
            let f = if codec == Codec::Pcmu {
                encode_ulaw
            } else {
                encode_alaw
            };
            assert!(all.iter().zip(&out).all(|(&s, &c)| f(s) == c), "{codec:?}");
            let mut back = Vec::new();
            decode(codec, &out, &mut back);
            let g = if codec == Codec::Pcmu {
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
}
