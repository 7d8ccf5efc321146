//! WAV (RIFF/WAVE) as bytes, for prompts, recordings, tests and the command line. Pure: the
//! caller does the file I/O.
//!
//! Reading accepts what people and tools produce: integer PCM of 8, 16, 24 or 32 bits,
//! 32/64-bit float, G.711 µ-law/A-law (what `sox -e u-law` writes) and
//! `WAVE_FORMAT_EXTENSIBLE` wrapping any of those; any channel count (kept interleaved:
//! [`Clip::to_mono`] averages them). Writing is always 16-bit PCM.
//!
//! Chunks are walked with bounds checks on every read: a truncated or garbled file is an
//! error, never a panic (a property test below garbles every byte).

use crate::g711::G711Law;
use crate::resample::RateError;

/// A decoded clip: PCM16 samples, interleaved when `channels` > 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// Samples per second.
    pub rate: u32,
    /// Channels interleaved in `samples` (1 = mono).
    pub channels: u16,
    /// Interleaved PCM16 samples.
    pub samples: Vec<i16>,
}

/// Why bytes are not a WAV we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    /// Not RIFF/WAVE, or cut short inside a header.
    #[error("not a RIFF/WAVE file")]
    NotWav,
    /// No `fmt ` or `data` chunk.
    #[error("missing `{chunk}` chunk")]
    MissingChunk {
        /// The chunk id.
        chunk: &'static str,
    },
    /// An encoding, channel count or rate this reader does not take.
    #[error(
        "unsupported WAV format tag {format} with {channels} channels, {bits} bits, {rate} Hz"
    )]
    Unsupported {
        /// Format tag (1 = PCM, 3 = float, 6 = A-law, 7 = µ-law).
        format: u16,
        /// Channel count.
        channels: u16,
        /// Bits per sample.
        bits: u16,
        /// Sample rate.
        rate: u32,
    },
    /// The clip's rate cannot be converted.
    #[error(transparent)]
    Rate(#[from] RateError),
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(i..i.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(i..i.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The `fmt ` chunk's fields that matter.
#[derive(Debug, Clone, Copy)]
struct Format {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
}

impl Format {
    fn parse(b: &[u8], body: usize, len: usize) -> Option<Format> {
        let mut f = Format {
            tag: u16_at(b, body)?,
            channels: u16_at(b, body + 2)?,
            rate: u32_at(b, body + 4)?,
            bits: u16_at(b, body + 14)?,
        };
        // WAVE_FORMAT_EXTENSIBLE: the real tag is the first two bytes of the sub-format GUID.
        if f.tag == 0xFFFE && len >= 40 {
            f.tag = u16_at(b, body + 24)?;
        }
        Some(f)
    }

    fn unsupported(self) -> WavError {
        WavError::Unsupported {
            format: self.tag,
            channels: self.channels,
            bits: self.bits,
            rate: self.rate,
        }
    }

    fn decode(self, data: &[u8]) -> Result<Vec<i16>, WavError> {
        if self.channels == 0 || !(1..=384_000).contains(&self.rate) {
            return Err(self.unsupported());
        }
        let f = |x: f64| (x * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
        Ok(match (self.tag, self.bits) {
            (1, 8) => data.iter().map(|&b| (i16::from(b) - 128) << 8).collect(),
            (1, 16) => data
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect(),
            (1, 24) => data
                .chunks_exact(3)
                .map(|c| i16::from_le_bytes([c[1], c[2]]))
                .collect(),
            (1, 32) => data
                .chunks_exact(4)
                .map(|c| i16::from_le_bytes([c[2], c[3]]))
                .collect(),
            (3, 32) => data
                .chunks_exact(4)
                .map(|c| f(f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))))
                .collect(),
            (3, 64) => data
                .chunks_exact(8)
                .map(|c| f(f64::from_le_bytes(c.try_into().expect("8 bytes"))))
                .collect(),
            (6, 8) => G711Law::Alaw.decode(data),
            (7, 8) => G711Law::Ulaw.decode(data),
            _ => return Err(self.unsupported()),
        })
    }
}

/// Parses a WAV file's bytes.
pub fn parse_wav(bytes: &[u8]) -> Result<Clip, WavError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotWav);
    }
    let mut fmt = None;
    let mut pos = 12usize;
    while let (Some(id), Some(len)) = (bytes.get(pos..pos + 4), u32_at(bytes, pos + 4)) {
        let body = pos + 8;
        let len = len as usize;
        if id == b"fmt " {
            fmt = Some(Format::parse(bytes, body, len).ok_or(WavError::NotWav)?);
        } else if id == b"data" {
            let format = fmt.ok_or(WavError::MissingChunk { chunk: "fmt " })?;
            // Streamed WAVs leave the length at 0 or 0xFFFFFFFF: take what is there.
            let end = body.saturating_add(len).min(bytes.len());
            let data = bytes.get(body..end).unwrap_or_default();
            return Ok(Clip {
                rate: format.rate,
                channels: format.channels,
                samples: format.decode(data)?,
            });
        }
        pos = body.saturating_add(len).saturating_add(len & 1);
    }
    Err(WavError::MissingChunk { chunk: "data" })
}

impl Clip {
    /// A mono clip.
    pub fn mono(rate: u32, samples: Vec<i16>) -> Clip {
        Clip {
            rate,
            channels: 1,
            samples,
        }
    }

    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.channels.max(1)) / f64::from(self.rate.max(1))
    }

    /// The same clip with its channels averaged to one.
    pub fn to_mono(&self) -> Clip {
        Clip::mono(
            self.rate,
            crate::pcm::downmix(&self.samples, usize::from(self.channels)),
        )
    }

    /// Mono samples at `rate`, through the band-limited resampler.
    pub fn to_mono_at(&self, rate: u32) -> Result<Vec<i16>, RateError> {
        let mono = self.to_mono();
        if mono.rate == rate {
            return Ok(mono.samples);
        }
        crate::resample::resample_i16(&mono.samples, mono.rate, rate)
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

/// A whole PCM16 WAV file in memory (`samples` interleaved when `channels` > 1).
pub fn encode_wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
    let mut out = header(rate, channels, (samples.len() * 2) as u32).to_vec();
    out.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
    out
}

#[cfg(test)]
mod tests;
