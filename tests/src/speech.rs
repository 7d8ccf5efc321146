//! Speech for the receptionist's tests: caller turns spoken by the espeak-ng program and put
//! through a phone line by sox (8 kHz µ-law, decoded back to PCM16), and whisper tiny.en
//! (the real model, installed by the project's installer when missing) to hear what the
//! gateway said back.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use stt_tts::models::{ensure_model, WhisperModel};
use stt_tts::stt::{WhisperConfig, WhisperStt};
use stt_tts::SpeechToText;

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run scripts/speech-test-deps.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `text` in espeak-ng voice `voice`, through 8 kHz µ-law; 8 kHz PCM16 samples.
pub fn phone_speech(dir: &Path, voice: &str, text: &str) -> Vec<i16> {
    let n = fastrand::u64(..);
    let wav = dir.join(format!("espeak-{n}.wav"));
    let ulaw = dir.join(format!("ulaw-{n}.wav"));
    run(Command::new("espeak-ng")
        .args(["-v", voice, "-w"])
        .arg(&wav)
        .arg(text));
    run(Command::new("sox")
        .arg(&wav)
        // `-R`: sox dithers when it narrows to µ-law, from a random seed unless told
        // otherwise; without it the same sentence was different audio on every run, and
        // whisper's transcript of it changed from run to run (seen in CI).
        .args(["-R", "-r", "8000", "-e", "u-law"])
        .arg(&ulaw));
    let clip = stt_tts::wav::read_wav(&ulaw).expect("read the µ-law WAV");
    assert_eq!(clip.rate, 8_000);
    let _ = std::fs::remove_file(wav);
    let _ = std::fs::remove_file(ulaw);
    clip.samples
}

/// `secs` of silence at 8 kHz.
pub fn silence(secs: f64) -> Vec<i16> {
    vec![0; (secs * 8_000.0) as usize]
}

/// The tiny.en engine, loaded once per test binary, on one thread (tests run side by side).
pub fn tiny() -> Arc<WhisperStt> {
    static STT: OnceLock<Arc<WhisperStt>> = OnceLock::new();
    STT.get_or_init(|| {
        let path = ensure_model(WhisperModel::TinyEn).expect("tiny.en model (installer failed)");
        let mut cfg = WhisperConfig::new(path);
        cfg.threads = 1;
        Arc::new(WhisperStt::load(cfg).expect("load tiny.en"))
    })
    .clone()
}

/// What whisper hears in 8 kHz audio (at most ~28 s per piece; longer audio is cut into
/// pieces), lower-cased with punctuation removed.
pub fn transcribe(samples: &[i16]) -> String {
    let stt = tiny();
    let mut out = Vec::new();
    for piece in samples.chunks(8_000 * 28) {
        let pcm = audio::resample::resample(&audio::pcm::to_f32(piece), 8_000, 16_000).unwrap();
        out.push(stt.transcribe(&pcm).expect("transcribe").text());
    }
    normalize(&out.join(" "))
}

/// Lower case, letters, digits and single spaces only.
pub fn normalize(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The audio a baresip received (its sndfile module's `*-dec.wav` in `dumps`), 8 kHz mono.
pub fn received_audio(dumps: &Path) -> Vec<i16> {
    let received = std::fs::read_dir(dumps)
        .expect("dumps folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("baresip dumped no received audio in {}", dumps.display()));
    let samples = audio::wav::parse_wav(&std::fs::read(&received).expect("read dump"))
        .expect("a WAV")
        .to_mono_at(8_000)
        .expect("8 kHz mono");
    assert!(
        !samples.is_empty(),
        "{} holds no audio (was baresip stopped before it closed the file?)",
        received.display()
    );
    samples
}

/// What whisper hears in each stretch of speech of `samples` (8 kHz), split at pauses of
/// 600 ms or more: short pieces decode far better than one long recording.
pub fn transcribe_turns(samples: &[i16]) -> Vec<String> {
    const WINDOW: usize = 160;
    let loud: Vec<bool> = samples
        .chunks(WINDOW)
        .map(|w| w.iter().any(|s| s.unsigned_abs() > 1_000))
        .collect();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (i, &l) in loud.iter().enumerate() {
        if !l {
            continue;
        }
        match spans.last_mut() {
            // A pause under 600 ms (30 windows) stays inside the turn.
            Some((_, end)) if i - *end <= 30 => *end = i + 1,
            _ => spans.push((i, i + 1)),
        }
    }
    spans
        .into_iter()
        .filter(|(a, b)| b - a >= 10)
        .map(|(a, b)| {
            let from = (a * WINDOW).saturating_sub(1_600);
            let to = (b * WINDOW + 1_600).min(samples.len());
            transcribe(&samples[from..to])
        })
        .filter(|t| !t.is_empty())
        .collect()
}
