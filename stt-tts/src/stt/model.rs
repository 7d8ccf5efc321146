//! Structural check of a whisper.cpp ggml model file, before whisper.cpp reads it.
//!
//! whisper.cpp trusts the sizes a file declares: a file cut inside its last tensor loads
//! with garbage weights, and some damaged headers make it allocate absurd amounts. This
//! walk reads every header and skips every tensor's data, so a truncated or corrupt file
//! becomes a [`ModelProblem`] with the offset where it broke, and a sound file costs one
//! pass over its headers (no data is read).

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{ModelProblem, SpeechError};

const GGML_MAGIC: u32 = 0x6767_6d6c;

/// Header numbers of a whisper model, as the file declares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInfo {
    /// Vocabulary size (51864 for English-only models, 51865+ for multilingual).
    pub n_vocab: i32,
    /// Encoder context in frames (1500 = 30 s).
    pub n_audio_ctx: i32,
    /// Encoder layers.
    pub n_audio_layer: i32,
    /// Decoder layers.
    pub n_text_layer: i32,
    /// Mel bands.
    pub n_mels: i32,
    /// Tensors in the file.
    pub n_tensors: usize,
}

impl ModelInfo {
    /// Whether the model knows languages other than English.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51_865
    }
}

struct Walker<R> {
    r: R,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Walker<R> {
    fn need(&self, part: &'static str, n: u64) -> Result<(), ModelProblem> {
        let needed = self.pos.saturating_add(n);
        if needed > self.len {
            return Err(ModelProblem::Truncated {
                part,
                needed,
                actual: self.len,
            });
        }
        Ok(())
    }

    fn i32(&mut self, part: &'static str) -> Result<i32, ModelProblem> {
        self.need(part, 4)?;
        let mut b = [0u8; 4];
        // The length check above makes a short read an I/O fault; report it as truncation.
        self.r
            .read_exact(&mut b)
            .map_err(|_| ModelProblem::Truncated {
                part,
                needed: self.pos + 4,
                actual: self.len,
            })?;
        self.pos += 4;
        Ok(i32::from_le_bytes(b))
    }

    fn skip(&mut self, part: &'static str, n: u64) -> Result<(), ModelProblem> {
        self.need(part, n)?;
        let n_i64 = i64::try_from(n).map_err(|_| ModelProblem::Truncated {
            part,
            needed: u64::MAX,
            actual: self.len,
        })?;
        self.r
            .seek(SeekFrom::Current(n_i64))
            .map_err(|_| ModelProblem::Truncated {
                part,
                needed: self.pos + n,
                actual: self.len,
            })?;
        self.pos += n;
        Ok(())
    }
}

fn bounded(field: &'static str, value: i32, lo: i32, hi: i32) -> Result<i32, ModelProblem> {
    if (lo..=hi).contains(&value) {
        Ok(value)
    } else {
        Err(ModelProblem::BadHeader {
            field,
            value: i64::from(value),
        })
    }
}

/// Bytes of `n` elements of ggml type `ftype`, or `None` for an unknown type.
fn tensor_bytes(ftype: i32, n: u64) -> Option<u64> {
    let (block, bytes) = match ftype {
        0 => (1, 4),   // f32
        1 => (1, 2),   // f16
        2 => (32, 18), // q4_0
        3 => (32, 20), // q4_1
        6 => (32, 22), // q5_0
        7 => (32, 24), // q5_1
        8 => (32, 34), // q8_0
        _ => return None,
    };
    Some(n.div_ceil(block) * bytes)
}

fn walk<R: Read + Seek>(w: &mut Walker<R>) -> Result<ModelInfo, ModelProblem> {
    w.need("magic", 4)?;
    let magic = w.i32("magic")? as u32;
    if magic != GGML_MAGIC {
        return Err(ModelProblem::BadMagic { found: magic });
    }
    let n_vocab = bounded("n_vocab", w.i32("header")?, 1, 1_000_000)?;
    let n_audio_ctx = bounded("n_audio_ctx", w.i32("header")?, 1, 100_000)?;
    for field in ["n_audio_state", "n_audio_head"] {
        bounded(field, w.i32("header")?, 1, 100_000)?;
    }
    let n_audio_layer = bounded("n_audio_layer", w.i32("header")?, 1, 256)?;
    for field in ["n_text_ctx", "n_text_state", "n_text_head"] {
        bounded(field, w.i32("header")?, 1, 100_000)?;
    }
    let n_text_layer = bounded("n_text_layer", w.i32("header")?, 1, 256)?;
    let n_mels = bounded("n_mels", w.i32("header")?, 1, 512)?;
    bounded("ftype", w.i32("header")?, 0, 100_000)?;
    let filt_mels = bounded("filters.n_mel", w.i32("mel filters")?, 1, 512)?;
    let filt_fft = bounded("filters.n_fft", w.i32("mel filters")?, 1, 1 << 16)?;
    w.skip("mel filters", 4 * filt_mels as u64 * filt_fft as u64)?;
    let n_tokens = bounded("vocab size", w.i32("vocabulary")?, 0, 1_000_000)?;
    for _ in 0..n_tokens {
        let len = bounded("token length", w.i32("vocabulary")?, 0, 1 << 16)?;
        w.skip("vocabulary", len as u64)?;
    }
    let mut n_tensors = 0;
    while w.pos < w.len {
        let n_dims = bounded("tensor n_dims", w.i32("tensor header")?, 1, 4)?;
        let name_len = bounded("tensor name length", w.i32("tensor header")?, 1, 1_024)?;
        let ftype = w.i32("tensor header")?;
        let mut elements: u64 = 1;
        for _ in 0..n_dims {
            let d = bounded("tensor dimension", w.i32("tensor header")?, 1, 1 << 24)?;
            elements = elements.saturating_mul(d as u64);
        }
        w.skip("tensor name", name_len as u64)?;
        let bytes = tensor_bytes(ftype, elements).ok_or(ModelProblem::UnknownTensorType {
            index: n_tensors,
            ftype,
        })?;
        w.skip("tensor data", bytes)?;
        n_tensors += 1;
    }
    if n_tensors == 0 {
        return Err(ModelProblem::Truncated {
            part: "tensors",
            needed: w.pos + 1,
            actual: w.len,
        });
    }
    Ok(ModelInfo {
        n_vocab,
        n_audio_ctx,
        n_audio_layer,
        n_text_layer,
        n_mels,
        n_tensors,
    })
}

/// Checks that `path` is a complete ggml whisper model; returns its header numbers.
pub fn check_model(path: &Path) -> Result<ModelInfo, SpeechError> {
    let file = std::fs::File::open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => SpeechError::ModelMissing {
            path: path.to_owned(),
        },
        _ => SpeechError::Io {
            path: path.to_owned(),
            source,
        },
    })?;
    let len = file
        .metadata()
        .map_err(|source| SpeechError::Io {
            path: path.to_owned(),
            source,
        })?
        .len();
    let mut w = Walker {
        r: BufReader::with_capacity(1 << 16, file),
        pos: 0,
        len,
    };
    walk(&mut w).map_err(|problem| SpeechError::ModelInvalid {
        path: path.to_owned(),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        let put = |v: i32, b: &mut Vec<u8>| b.extend_from_slice(&v.to_le_bytes());
        put(GGML_MAGIC as i32, &mut b);
        for v in [51_864, 1_500, 384, 6, 4, 448, 384, 6, 4, 80, 1] {
            put(v, &mut b);
        }
        put(2, &mut b);
        put(3, &mut b);
        b.extend_from_slice(&[0u8; 24]);
        put(2, &mut b);
        for tok in [&b"hi"[..], b"there"] {
            put(tok.len() as i32, &mut b);
            b.extend_from_slice(tok);
        }
        // One f16 tensor 2x3 named "w".
        for v in [2, 1, 1, 3, 2] {
            put(v, &mut b);
        }
        b.push(b'w');
        b.extend_from_slice(&[0u8; 12]);
        b
    }

    fn write(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("stt-tts-model-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn sound_file_passes() {
        let p = write("ok.bin", &model_bytes());
        let info = check_model(&p).unwrap();
        assert_eq!(info.n_tensors, 1);
        assert!(!info.is_multilingual());
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn every_truncation_is_caught() {
        let full = model_bytes();
        for cut in 0..full.len() {
            let p = write("cut.bin", &full[..cut]);
            let err = check_model(&p).unwrap_err();
            assert!(
                matches!(err, SpeechError::ModelInvalid { .. }),
                "cut at {cut}: {err}"
            );
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn bad_magic_and_missing_file() {
        let mut b = model_bytes();
        b[0] = b'X';
        let p = write("magic.bin", &b);
        assert!(matches!(
            check_model(&p),
            Err(SpeechError::ModelInvalid {
                problem: ModelProblem::BadMagic { .. },
                ..
            })
        ));
        std::fs::remove_file(p).unwrap();
        assert!(matches!(
            check_model(Path::new("/no/such/model.bin")),
            Err(SpeechError::ModelMissing { .. })
        ));
    }
}
