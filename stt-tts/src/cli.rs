//! The `speech` subcommands of `dartwing-gateway`, for trying the engines by hand and for
//! outside checks:
//!
//! ```text
//! dartwing-gateway speech models install [--dir DIR]
//! dartwing-gateway speech transcribe FILE.wav [--model PATH] [--threads N]
//! dartwing-gateway speech say "TEXT" OUT.wav [--voice en-us] [--rate 8000]
//! ```
//!
//! `transcribe` prints one line per segment (`[start-end s] (confidence) text`) and then
//! the whole transcript alone on the last line (an empty line for silence).

use std::io::Write;
use std::path::PathBuf;

use crate::error::SpeechError;
use crate::models::{install_models, models_dir, WhisperModel};
use crate::stt::{SpeechToText, WhisperConfig, WhisperStt};
use crate::tts::{synthesize_to_vec, EspeakConfig, EspeakTts};

/// `speech` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum SpeechCommand {
    /// Manage the local speech models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Transcribe a WAV file (any rate; stereo is mixed down; PCM, float or G.711).
    Transcribe {
        /// The WAV file.
        file: PathBuf,
        /// ggml whisper model (default: ggml-tiny.en.bin in the models folder).
        #[arg(long)]
        model: Option<PathBuf>,
        /// CPU threads (default: cores - 1, 1 to 4).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Speak TEXT into a mono 16-bit WAV file.
    Say {
        /// What to say.
        text: String,
        /// The WAV file to write.
        out: PathBuf,
        /// espeak-ng voice.
        #[arg(long, default_value = "en-us")]
        voice: String,
        /// Output sample rate in Hz.
        #[arg(long, default_value_t = 8_000)]
        rate: u32,
    },
}

/// `speech models` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum ModelsCommand {
    /// Fetch, convert and verify the models (idempotent).
    Install {
        /// Target folder (default: $DARTWING_MODELS_DIR or ~/.cache/dartwing/models).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs one `speech` subcommand, writing its output to stdout.
pub fn run(cmd: SpeechCommand) -> Result<(), SpeechError> {
    match cmd {
        SpeechCommand::Models(ModelsCommand::Install { dir }) => {
            install_models(&dir.unwrap_or_else(models_dir))
        }
        SpeechCommand::Transcribe {
            file,
            model,
            threads,
        } => {
            let mut cfg = WhisperConfig::new(model.unwrap_or_else(|| WhisperModel::TinyEn.path()));
            if let Some(t) = threads {
                cfg.threads = t.max(1);
            }
            let stt = WhisperStt::load(cfg)?;
            let audio = crate::wav::read_wav_16k(&file)?;
            let transcript = stt.transcribe(&audio)?;
            let mut out = std::io::stdout().lock();
            let io = |source| SpeechError::Io {
                path: PathBuf::from("<stdout>"),
                source,
            };
            for s in &transcript.segments {
                writeln!(
                    out,
                    "[{:.2}-{:.2} s] ({:.2}) {}",
                    s.start_ms as f64 / 1000.0,
                    s.end_ms as f64 / 1000.0,
                    s.confidence,
                    s.text
                )
                .map_err(io)?;
            }
            writeln!(out, "{}", transcript.text()).map_err(io)
        }
        SpeechCommand::Say {
            text,
            out,
            voice,
            rate,
        } => {
            let tts = EspeakTts::new(EspeakConfig {
                voice,
                out_rate: rate,
                ..EspeakConfig::default()
            })?;
            let pcm = synthesize_to_vec(&tts, &text)?;
            crate::wav::write_wav(&out, &pcm, rate)
        }
    }
}
