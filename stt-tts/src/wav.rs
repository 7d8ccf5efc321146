//! WAV files on disk for tests, recordings and the command line: file I/O around
//! [`audio::wav`], which does the parsing (PCM of any width, float, G.711, any channel
//! count) and the writing (16-bit PCM).

use std::path::Path;

use crate::error::SpeechError;
use audio::wav::{encode_wav, parse_wav};
pub use audio::Clip;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpeechError + '_ {
    move |source| SpeechError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads a WAV file to a mono clip (channels averaged).
pub fn read_wav(path: &Path) -> Result<Clip, SpeechError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let clip = parse_wav(&bytes).map_err(|source| SpeechError::Wav {
        path: path.to_owned(),
        source,
    })?;
    Ok(clip.to_mono())
}

/// Writes mono 16-bit PCM.
pub fn write_wav(path: &Path, samples: &[i16], rate: u32) -> Result<(), SpeechError> {
    std::fs::write(path, encode_wav(rate, 1, samples)).map_err(io_err(path))
}

/// Reads a WAV file and converts it to 16 kHz mono f32, the input whisper expects.
pub fn read_wav_16k(path: &Path) -> Result<Vec<f32>, SpeechError> {
    let clip = read_wav(path)?;
    Ok(audio::resample::resample(
        &audio::pcm::to_f32(&clip.samples),
        clip.rate,
        16_000,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("stt-tts-wav-{}-{name}", std::process::id()))
    }

    #[test]
    fn written_files_read_back_as_mono() {
        let p = tmp("rt.wav");
        let samples: Vec<i16> = (0..1_000)
            .map(|i| (i * 37 % 2_000 - 1_000) as i16)
            .collect();
        write_wav(&p, &samples, 8_000).unwrap();
        assert_eq!(read_wav(&p).unwrap(), Clip::mono(8_000, samples));
        assert_eq!(read_wav_16k(&p).unwrap().len(), 2_000);
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
        assert!(matches!(read_wav(&p), Err(SpeechError::Wav { .. })));
        std::fs::remove_file(&p).unwrap();
    }
}
