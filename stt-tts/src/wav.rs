//! WAV files for tests, recordings and the command line.
//!
//! Reading accepts what people and tools produce: PCM 8/16/24/32-bit, float, any rate,
//! any channel count (downmixed to mono), and G.711 µ-law/A-law WAV (what `sox -e u-law`
//! writes), which hound does not read. Writing is always 16-bit PCM mono.

use std::path::Path;

use crate::error::SpeechError;
use crate::g711::G711Law;

/// A mono clip: 16-bit samples and their rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// Mono samples.
    pub samples: Vec<i16>,
    /// Sample rate in Hz.
    pub rate: u32,
}

impl Clip {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate)
    }
}

fn wav_err(path: &Path) -> impl FnOnce(hound::Error) -> SpeechError + '_ {
    move |source| SpeechError::Wav {
        path: path.to_owned(),
        source,
    }
}

/// Reads a WAV file to mono 16-bit.
pub fn read_wav(path: &Path) -> Result<Clip, SpeechError> {
    match hound::WavReader::open(path) {
        Ok(reader) => read_hound(path, reader),
        Err(hound::Error::Unsupported) => read_g711(path),
        Err(hound::Error::IoError(source)) => Err(SpeechError::Io {
            path: path.to_owned(),
            source,
        }),
        Err(e) => Err(wav_err(path)(e)),
    }
}

fn read_hound<R: std::io::Read>(
    path: &Path,
    reader: hound::WavReader<R>,
) -> Result<Clip, SpeechError> {
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(wav_err(path))?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(wav_err(path))?
        }
    };
    let samples = interleaved
        .chunks(channels)
        .map(|frame| crate::pcm::f32_to_i16(frame.iter().sum::<f32>() / channels as f32))
        .collect();
    Ok(Clip {
        samples,
        rate: spec.sample_rate,
    })
}

/// Minimal RIFF walk for format tags 6 (A-law) and 7 (µ-law).
fn read_g711(path: &Path) -> Result<Clip, SpeechError> {
    let bytes = std::fs::read(path).map_err(|source| SpeechError::Io {
        path: path.to_owned(),
        source,
    })?;
    let bad = |format_tag, bits| SpeechError::WavEncoding {
        path: path.to_owned(),
        format_tag,
        bits,
    };
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad(0, 0));
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at =
        |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    let mut off = 12;
    while off + 8 <= bytes.len() {
        let id = &bytes[off..off + 4];
        let len = u32_at(off + 4) as usize;
        let body = off + 8;
        let end = body.saturating_add(len).min(bytes.len());
        if id == b"fmt " && len >= 16 && body + 16 <= bytes.len() {
            fmt = Some((
                u16_at(body),
                u16_at(body + 2),
                u32_at(body + 4),
                u16_at(body + 14),
            ));
        } else if id == b"data" {
            let (tag, channels, rate, bits) = fmt.ok_or_else(|| bad(0, 0))?;
            let law = match (tag, bits) {
                (7, 8) => G711Law::Ulaw,
                (6, 8) => G711Law::Alaw,
                _ => return Err(bad(tag, bits)),
            };
            let linear = law.decode(&bytes[body..end]);
            let ch = usize::from(channels.max(1));
            let samples = linear
                .chunks(ch)
                .map(|f| (f.iter().map(|&s| i32::from(s)).sum::<i32>() / ch as i32) as i16)
                .collect();
            return Ok(Clip { samples, rate });
        }
        off = body + len + (len & 1);
    }
    Err(match fmt {
        Some((tag, _, _, bits)) => bad(tag, bits),
        None => bad(0, 0),
    })
}

/// Writes mono 16-bit PCM.
pub fn write_wav(path: &Path, samples: &[i16], rate: u32) -> Result<(), SpeechError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(wav_err(path))?;
    {
        let mut w16 = w.get_i16_writer(samples.len() as u32);
        for &s in samples {
            w16.write_sample(s);
        }
        w16.flush().map_err(wav_err(path))?;
    }
    w.finalize().map_err(wav_err(path))
}

/// Reads a WAV file and converts it to 16 kHz mono f32, the input whisper expects.
pub fn read_wav_16k(path: &Path) -> Result<Vec<f32>, SpeechError> {
    let clip = read_wav(path)?;
    crate::resample::resample(&crate::pcm::to_f32(&clip.samples), clip.rate, 16_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("stt-tts-wav-{}-{name}", std::process::id()))
    }

    #[test]
    fn pcm16_round_trip() {
        let p = tmp("rt.wav");
        let samples: Vec<i16> = (0..1_000)
            .map(|i| (i * 37 % 2_000 - 1_000) as i16)
            .collect();
        write_wav(&p, &samples, 8_000).unwrap();
        let clip = read_wav(&p).unwrap();
        assert_eq!(
            clip,
            Clip {
                samples,
                rate: 8_000
            }
        );
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn stereo_is_downmixed() {
        let p = tmp("stereo.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        for _ in 0..10 {
            w.write_sample(1_000i16).unwrap();
            w.write_sample(3_000i16).unwrap();
        }
        w.finalize().unwrap();
        let clip = read_wav(&p).unwrap();
        assert_eq!(clip.samples, vec![2_000; 10]);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn ulaw_wav_is_read() {
        // A hand-built WAVE_FORMAT_MULAW file, as sox writes it.
        let codes = G711Law::Ulaw.encode(&[0, 1_000, -1_000, 30_000]);
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(4 + 8 + 18 + 8 + codes.len() as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&18u32.to_le_bytes());
        for v in [7u16, 1] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&8_000u32.to_le_bytes());
        b.extend_from_slice(&8_000u32.to_le_bytes());
        for v in [1u16, 8, 0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(codes.len() as u32).to_le_bytes());
        b.extend_from_slice(&codes);
        let p = tmp("ulaw.wav");
        std::fs::write(&p, &b).unwrap();
        let clip = read_wav(&p).unwrap();
        assert_eq!(clip.rate, 8_000);
        assert_eq!(clip.samples, G711Law::Ulaw.decode(&codes));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn missing_and_garbage_files_are_errors() {
        assert!(matches!(
            read_wav(Path::new("/nonexistent/x.wav")),
            Err(SpeechError::Io { .. })
        ));
        let p = tmp("garbage.wav");
        std::fs::write(&p, b"this is not a wav file at all").unwrap();
        assert!(read_wav(&p).is_err());
        std::fs::remove_file(&p).unwrap();
    }
}
