//! WAV (RIFF, PCM16) as bytes: read any mono/stereo PCM16 clip, convert it to 8 kHz mono,
//! and write headers. Pure; the caller does the file I/O.
//!
//! `stt-tts` has a WAV reader too (for its models); see the duplication note in `g711`.

/// A decoded clip: interleaved samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// Samples per second.
    pub rate: u32,
    /// 1 or 2.
    pub channels: u16,
    /// Interleaved PCM16 samples.
    pub samples: Vec<i16>,
}

/// Why bytes are not a WAV we can play.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    /// Not RIFF/WAVE, or cut short.
    #[error("not a RIFF/WAVE file")]
    NotWav,
    /// No `fmt ` or `data` chunk.
    #[error("missing `{chunk}` chunk")]
    MissingChunk {
        /// The chunk id.
        chunk: &'static str,
    },
    /// A format other than 16-bit PCM, or more than two channels, or a silly rate.
    #[error("unsupported WAV format {format} with {channels} channels, {bits} bits, {rate} Hz (want PCM16 mono or stereo)")]
    Unsupported {
        /// Format tag (1 = PCM).
        format: u16,
        /// Channel count.
        channels: u16,
        /// Bits per sample.
        bits: u16,
        /// Sample rate.
        rate: u32,
    },
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// Parses a WAV file's bytes.
pub fn parse_wav(bytes: &[u8]) -> Result<Clip, WavError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotWav);
    }
    let mut fmt = None;
    let mut pos = 12;
    while let (Some(id), Some(len)) = (bytes.get(pos..pos + 4), u32_at(bytes, pos + 4)) {
        let body = pos + 8;
        let len = len as usize;
        if id == b"fmt " {
            let f = (
                u16_at(bytes, body).ok_or(WavError::NotWav)?,
                u16_at(bytes, body + 2).ok_or(WavError::NotWav)?,
                u32_at(bytes, body + 4).ok_or(WavError::NotWav)?,
                u16_at(bytes, body + 14).ok_or(WavError::NotWav)?,
            );
            fmt = Some(f);
        } else if id == b"data" {
            let (format, channels, rate, bits) =
                fmt.ok_or(WavError::MissingChunk { chunk: "fmt " })?;
            // 0xFFFE is WAVE_FORMAT_EXTENSIBLE, which sox writes for PCM16 too.
            if !(format == 1 || format == 0xFFFE)
                || bits != 16
                || !(1..=2).contains(&channels)
                || !(4000..=192_000).contains(&rate)
            {
                return Err(WavError::Unsupported {
                    format,
                    channels,
                    bits,
                    rate,
                });
            }
            // Streamed WAVs leave the length at 0 or 0xFFFFFFFF: take what is there.
            let end = body.saturating_add(len).min(bytes.len());
            let data = bytes.get(body..end).unwrap_or_default();
            let samples = data
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Ok(Clip {
                rate,
                channels,
                samples,
            });
        }
        pos = body.saturating_add(len + (len & 1));
    }
    Err(WavError::MissingChunk { chunk: "data" })
}

impl Clip {
    /// Mono 8 kHz: channels averaged, then resampled by linear interpolation. Good enough for
    /// prompts and tests (no anti-alias filter: feed it speech, not wideband music).
    pub fn to_mono_8k(&self) -> Vec<i16> {
        let ch = usize::from(self.channels.max(1));
        let mono: Vec<i16> = self
            .samples
            .chunks_exact(ch)
            .map(|f| (f.iter().map(|&s| i32::from(s)).sum::<i32>() / ch as i32) as i16)
            .collect();
        if self.rate == 8000 || mono.is_empty() {
            return mono;
        }
        let out_len = (mono.len() as u64 * 8000 / u64::from(self.rate)) as usize;
        let step = f64::from(self.rate) / 8000.0;
        (0..out_len)
            .map(|i| {
                let x = i as f64 * step;
                let j = x as usize;
                let frac = x - j as f64;
                let a = f64::from(mono[j.min(mono.len() - 1)]);
                let b = f64::from(mono[(j + 1).min(mono.len() - 1)]);
                (a + (b - a) * frac).round() as i16
            })
            .collect()
    }
}

/// A 44-byte PCM16 header for `data_len` bytes of samples.
pub fn header(rate: u32, channels: u16, data_len: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    let block = channels * 2;
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data_len.saturating_add(36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * u32::from(block)).to_le_bytes());
    h[32..34].copy_from_slice(&block.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

/// A whole WAV file in memory.
pub fn encode_wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
    let mut out = header(rate, channels, (samples.len() * 2) as u32).to_vec();
    out.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_resamples_16k_stereo() {
        let stereo: Vec<i16> = (0..3200).flat_map(|i| [i as i16, i as i16 + 2]).collect();
        let clip = parse_wav(&encode_wav(16_000, 2, &stereo)).unwrap();
        assert_eq!((clip.rate, clip.channels), (16_000, 2));
        assert_eq!(clip.samples, stereo);
        let mono = clip.to_mono_8k();
        assert_eq!(mono.len(), 1600);
        assert_eq!(&mono[..3], &[1, 3, 5]);
    }

    #[test]
    fn skips_unknown_chunks_and_refuses_other_formats() {
        let mut bytes = encode_wav(8000, 1, &[1, 2, 3]);
        // Insert a LIST chunk of odd length (padded) before `data`.
        let list = [b"LIST".as_slice(), &3u32.to_le_bytes(), &[9, 9, 9, 0]].concat();
        bytes.splice(36..36, list);
        assert_eq!(parse_wav(&bytes).unwrap().samples, vec![1, 2, 3]);
        let mut eight_bit = encode_wav(8000, 1, &[0]);
        eight_bit[34] = 8;
        assert!(matches!(
            parse_wav(&eight_bit),
            Err(WavError::Unsupported { bits: 8, .. })
        ));
        assert_eq!(
            parse_wav(b"RIFF\0\0\0\0WAVE"),
            Err(WavError::MissingChunk { chunk: "data" })
        );
        assert_eq!(parse_wav(b"OggS"), Err(WavError::NotWav));
    }

    proptest! {
        #[test]
        fn truncated_or_garbled_never_panics(cut in 0usize..80, at in 0usize..80, byte in any::<u8>()) {
            let mut bytes = encode_wav(16_000, 1, &[5; 10]);
            let at = at % bytes.len();
            bytes[at] = byte;
            bytes.truncate(cut);
            if let Ok(clip) = parse_wav(&bytes) { let _ = clip.to_mono_8k(); }
        }
    }
}
