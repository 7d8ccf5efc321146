//! Helpers for the speech integration tests: real espeak-ng and sox, the real tiny.en
//! model (installed by the project's installer when missing, never skipped), and WER.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use stt_tts::models::{ensure_model, WhisperModel};
use stt_tts::stt::{WhisperConfig, WhisperStt};

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stt-tts-it-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

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

/// `text` spoken by the espeak-ng program and passed through a phone line: sox converts
/// it to 8 kHz µ-law, which is decoded back to PCM16. Returns 8 kHz samples.
pub fn phone_speech(dir: &Path, text: &str) -> Vec<i16> {
    let wav = dir.join("espeak.wav");
    let ulaw = dir.join("ulaw.wav");
    run(Command::new("espeak-ng")
        .arg("-v")
        .arg("en-us")
        .arg("-w")
        .arg(&wav)
        .arg(text));
    run(Command::new("sox")
        .arg(&wav)
        // `-R`: sox dithers when it narrows to µ-law, from a random seed unless told
        // otherwise; without it the same sentence was different audio on every run, and
        // whisper's transcript of it changed from run to run (seen in CI).
        .args(["-R", "-r", "8000", "-e", "u-law"])
        .arg(&ulaw));
    let clip = stt_tts::wav::read_wav(&ulaw).expect("read u-law wav");
    assert_eq!(clip.rate, 8_000);
    clip.samples
}

/// The tiny.en engine, loaded once per test binary.
pub fn tiny() -> Arc<WhisperStt> {
    static STT: OnceLock<Arc<WhisperStt>> = OnceLock::new();
    STT.get_or_init(|| {
        let path = ensure_model(WhisperModel::TinyEn).expect("tiny.en model (installer failed)");
        let mut cfg = WhisperConfig::new(path);
        // One thread: nextest runs several whisper tests at once on small machines, and
        // whisper.cpp's spinning threads collapse when they outnumber free cores.
        cfg.threads = 1;
        Arc::new(WhisperStt::load(cfg).expect("load tiny.en"))
    })
    .clone()
}

/// 8 kHz PCM16 to the 16 kHz f32 whisper takes.
pub fn to_16k(samples: &[i16]) -> Vec<f32> {
    audio::resample::resample(&audio::pcm::to_f32(samples), 8_000, 16_000).unwrap()
}

/// Ordinals as whisper writes them.
fn ordinal(w: &str) -> Option<&'static str> {
    const ORD: [(&str, &str); 15] = [
        ("first", "1st"),
        ("second", "2nd"),
        ("third", "3rd"),
        ("fourth", "4th"),
        ("fifth", "5th"),
        ("sixth", "6th"),
        ("seventh", "7th"),
        ("eighth", "8th"),
        ("ninth", "9th"),
        ("tenth", "10th"),
        ("eleventh", "11th"),
        ("twelfth", "12th"),
        ("thirteenth", "13th"),
        ("fifteenth", "15th"),
        ("twentieth", "20th"),
    ];
    ORD.iter().find(|(a, _)| *a == w).map(|(_, b)| *b)
}

fn number_word(w: &str) -> Option<u32> {
    const UNITS: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = [
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    if w == "oh" {
        return Some(0);
    }
    if let Some(i) = UNITS.iter().position(|&u| u == w) {
        return Some(i as u32);
    }
    TENS.iter()
        .position(|&t| t == w)
        .map(|i| 20 + 10 * i as u32)
}

/// Normalises a transcript for WER: lower case, punctuation dropped, `a.m.`/`p.m.` as
/// `am`/`pm`, number words under 100 as digits (`twenty five` = `25`), ordinals as
/// `5th`, `Dr` as `doctor`, and every digit run split into single digits so `555-0123`,
/// `5550123` and `five five five ...` agree.
pub fn normalize(text: &str) -> Vec<String> {
    let lower = text
        .to_lowercase()
        .replace("a.m.", " am ")
        .replace("p.m.", " pm ")
        .replace("o'clock", " oclock ");
    let cleaned: String = lower
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c
            } else if c == '\'' {
                '\0'
            } else {
                ' '
            }
        })
        .filter(|&c| c != '\0')
        .collect();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let mut numbers: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        match number_word(w) {
            Some(n)
                if n >= 20
                    && n % 10 == 0
                    && i + 1 < words.len()
                    && number_word(words[i + 1]).is_some_and(|u| (1..10).contains(&u)) =>
            {
                numbers.push((n + number_word(words[i + 1]).unwrap()).to_string());
                i += 2;
            }
            Some(n) => {
                numbers.push(n.to_string());
                i += 1;
            }
            None => {
                let w = match w {
                    "dr" => "doctor",
                    "okay" => "ok",
                    _ => ordinal(w).unwrap_or(w),
                };
                numbers.push(w.to_owned());
                i += 1;
            }
        }
    }
    let mut out = Vec::new();
    for w in numbers {
        if w.chars().all(|c| c.is_ascii_digit()) {
            out.extend(w.chars().map(|c| c.to_string()));
        } else {
            out.push(w);
        }
    }
    out
}

/// Word-level edit distance between normalised reference and hypothesis.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalize(reference);
    let h = normalize(hypothesis);
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    (prev[h.len()], r.len())
}

/// Adds uniform white noise whose RMS is `noise_dbfs`, from a fixed seed.
pub fn add_noise(samples: &mut [i16], noise_dbfs: f32, seed: u64) {
    let amp = 32_768.0 * 10f32.powf(noise_dbfs / 20.0) * 3f32.sqrt();
    let mut x = seed | 1;
    for s in samples.iter_mut() {
        // xorshift64: deterministic noise without a dependency.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let u = (x >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0;
        *s = (f32::from(*s) + u * amp).clamp(-32_768.0, 32_767.0) as i16;
    }
}
