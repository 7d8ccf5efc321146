//! The crate's one error type. Every variant carries typed fields; callers decide retry or
//! give-up from [`SpeechError::is_transient`], not from message text.

use std::path::PathBuf;

/// What is wrong with a model file, found before whisper.cpp ever reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelProblem {
    /// The first four bytes are not the ggml magic.
    #[error("not a ggml whisper model (magic {found:#010x})")]
    BadMagic {
        /// The magic number found.
        found: u32,
    },
    /// The file ends before a part it declares.
    #[error("truncated: {part} needs bytes up to {needed}, file has {actual}")]
    Truncated {
        /// Which part of the file was cut.
        part: &'static str,
        /// Offset the part needs.
        needed: u64,
        /// Actual file length.
        actual: u64,
    },
    /// A header field has a value no whisper model has.
    #[error("implausible header field {field} = {value}")]
    BadHeader {
        /// Field name.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// A tensor uses a data type this checker does not know.
    #[error("tensor {index} has unknown data type {ftype}")]
    UnknownTensorType {
        /// Tensor number in file order.
        index: usize,
        /// The ggml type code.
        ftype: i32,
    },
}

/// Errors of the speech engines and audio plumbing.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// A sample rate outside what the component supports.
    #[error("unsupported sample rate {rate} Hz")]
    UnsupportedRate {
        /// The rejected rate.
        rate: u32,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A WAV file could not be parsed.
    #[error("{path}: WAV error: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        source: audio::WavError,
    },
    /// No model file where one was expected.
    #[error("model not found at {path}; run `dartwing-gateway speech models install`")]
    ModelMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The model file is corrupt or truncated.
    #[error("model {path} is unusable: {problem}")]
    ModelInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: ModelProblem,
    },
    /// whisper.cpp refused to load a model that passed the structural check.
    #[error("whisper could not load {path}: {source}")]
    WhisperLoad {
        /// The file.
        path: PathBuf,
        /// whisper-rs's error.
        source: whisper_rs::WhisperError,
    },
    /// whisper.cpp failed while transcribing.
    #[error("whisper inference failed: {0}")]
    Whisper(#[from] whisper_rs::WhisperError),
    /// libespeak-ng failed to initialise (missing data files, usually).
    #[error("espeak-ng initialisation failed (code {code})")]
    EspeakInit {
        /// The return code.
        code: i32,
    },
    /// libespeak-ng has no voice of that name.
    #[error("espeak-ng has no voice {voice:?} (code {code})")]
    EspeakVoice {
        /// The voice asked for.
        voice: String,
        /// The return code.
        code: i32,
    },
    /// libespeak-ng failed while synthesising.
    #[error("espeak-ng synthesis failed (code {code})")]
    EspeakSynth {
        /// The return code.
        code: i32,
    },
    /// Text to speak contained a NUL byte.
    #[error("text contains a NUL byte at {position}")]
    TextHasNul {
        /// Byte offset.
        position: usize,
    },
    /// onnxruntime failed (loading the library or the voice, or running it).
    #[cfg(feature = "piper")]
    #[error("onnxruntime: {0}")]
    Onnx(#[from] ort::Error),
    /// onnxruntime's shared library could not be loaded.
    #[cfg(feature = "piper")]
    #[error("cannot load onnxruntime: {0}")]
    OnnxLibrary(#[from] ort::LoadDynamicError),
    /// A Piper voice's `.onnx.json` is missing or malformed.
    #[cfg(feature = "piper")]
    #[error("Piper voice config {path}: {source}")]
    PiperConfig {
        /// The config file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The recognition worker thread is gone (it panicked or was shut down).
    #[error("speech worker has stopped")]
    WorkerGone,
    /// The model installer could not be started.
    #[error("could not run installer {script}: {source}")]
    InstallerSpawn {
        /// The script.
        script: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The model installer ran and failed.
    #[error("installer {script} failed with {status}")]
    InstallerFailed {
        /// The script.
        script: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
}

impl SpeechError {
    /// Whether retrying the same operation later may succeed. Corrupt models, bad input
    /// and missing voices never fix themselves; a failed inference or installer run may.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SpeechError::Whisper(_) | SpeechError::InstallerFailed { .. } | SpeechError::Io { .. }
        )
    }
}

impl From<audio::RateError> for SpeechError {
    fn from(e: audio::RateError) -> Self {
        SpeechError::UnsupportedRate { rate: e.rate }
    }
}
