//! Word error rate per voice family and model on telephone audio (issue 10's accuracy
//! goal: ≤ 5 % for natural voices, ≤ 20 % for espeak's). Run through
//! `scripts/wer-bench.sh` (release, with Piper); alone:
//!
//! ```text
//! cargo run --release -p stt-tts --features piper --example wer_bench -- [--threads N]
//! ```
//!
//! Audio: 30 caller utterances a receptionist hears, none of them in the test suites
//! (held out, so nothing here was tuned on them), spoken by three espeak-ng voices and,
//! with the `piper` feature, Piper's neural `joe-medium`; each through 8 kHz µ-law and back,
//! then whisper at 16 kHz, with and without the vocabulary prompt a receptionist gives it
//! (the org's name, its knowledge-base questions, the requests it knows). WER uses the
//! suites' normaliser (numbers, ordinals, `a.m.`).

#[path = "../tests/common/mod.rs"]
mod common;

use audio::g711::G711Law;
use std::sync::Arc;
use stt_tts::models::{ensure_model, WhisperModel};
use stt_tts::stt::{WhisperConfig, WhisperStt};
use stt_tts::tts::synthesize_to_vec;
use stt_tts::{SpeechError, TextToSpeech};

/// Held out: not in `tests/common/sentences.rs` nor in the receptionist suites.
const HELD_OUT: [&str; 30] = [
    "Hi, I'd like to make an appointment for a cleaning.",
    "Can I come in on Thursday afternoon?",
    "Is there anything available next Monday at nine?",
    "I need to cancel my appointment for tomorrow.",
    "Could you move my visit to Friday at two thirty?",
    "What time do you close on Saturdays?",
    "Are you open on Sunday?",
    "Do you take walk-in patients?",
    "How much does a filling cost?",
    "My tooth has been hurting since last night.",
    "Can I speak to the receptionist, please?",
    "I'd like to talk to Doctor Patel.",
    "Please have someone call me back this afternoon.",
    "My number is five five five, two one four, three three nine eight.",
    "I'm running about fifteen minutes late.",
    "Where exactly is your office?",
    "Is there a bus stop near the clinic?",
    "Do you have wheelchair access?",
    "Can my daughter come with me to the appointment?",
    "I was there last week and left my glasses.",
    "Yes, that time works for me.",
    "No, that's too early for me.",
    "Actually, make it the twelfth instead.",
    "Do you accept Delta Dental insurance?",
    "I'd like to leave a message for the billing office.",
    "That's all, thank you very much.",
    "What's the earliest slot you have this week?",
    "Could you repeat that, please?",
    "I need a check-up before my trip in December.",
    "Goodbye, have a nice day.",
];

/// What a receptionist tells whisper to expect (cf. `voice::receptionist::responder::vocabulary`).
const VOCABULARY: &str = "Harbour Dental. Do you have parking? Do you accept insurance? \
    Where are you located? I'd like to book an appointment. What are your opening hours? \
    What is your address? I'd like to leave a message. Please call me back. Can I talk to a \
    person? Operator. Tomorrow at ten thirty in the morning. Next Tuesday at three PM. \
    Yes, that's right. No. That's all, have a nice day. Goodbye.";

/// The same vocabulary as a short glossary (names and key words only, no sentences).
const GLOSSARY: &str = "Harbour Dental: appointment, cleaning, check-up, parking, insurance, \
    opening hours, address, message, call back, person, operator.";

fn threads() -> usize {
    let mut args = std::env::args().skip(1);
    let mut threads = 1;
    while let Some(a) = args.next() {
        if a == "--threads" {
            threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
        }
    }
    threads
}

/// Each held-out utterance in `tts`'s voice, through µ-law, at 16 kHz (Piper's).
#[cfg_attr(not(feature = "piper"), allow(dead_code))]
fn spoken(tts: &dyn TextToSpeech) -> Result<Vec<Vec<f32>>, SpeechError> {
    HELD_OUT
        .iter()
        .map(|text| {
            let pcm = synthesize_to_vec(tts, text)?;
            let line = G711Law::Ulaw.decode(&G711Law::Ulaw.encode(&pcm));
            Ok(common::to_16k(&line))
        })
        .collect()
}

/// `text` in espeak-ng voice `voice` (the program), through sox's 8 kHz µ-law; 8 kHz PCM.
fn espeak_program(dir: &std::path::Path, voice: &str, text: &str) -> Vec<i16> {
    let (wav, ulaw) = (dir.join("espeak.wav"), dir.join("ulaw.wav"));
    let run = |cmd: &mut std::process::Command| {
        let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "{cmd:?} failed (run scripts/speech-test-deps.sh)");
    };
    run(std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-w"])
        .arg(&wav)
        .arg(text));
    run(std::process::Command::new("sox")
        .arg(&wav)
        // `-R`: sox dithers when it narrows to µ-law, from a random seed unless told
        // otherwise; without it the same sentence was different audio on every run, and
        // whisper's transcript of it changed from run to run (seen in CI).
        .args(["-R", "-r", "8000", "-e", "u-law"])
        .arg(&ulaw));
    stt_tts::wav::read_wav(&ulaw)
        .expect("read the µ-law WAV")
        .samples
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads = threads();
    let mut voices: Vec<(String, Vec<Vec<f32>>)> = Vec::new();
    // espeak-ng's program and sox, as the receptionist suites make caller speech (the
    // variants `en-gb` and `+f3` are the program's voice names).
    let dir = common::scratch("wer-bench");
    for voice in ["en-us", "en-gb", "en-us+f3"] {
        let clips = HELD_OUT
            .iter()
            .map(|text| common::to_16k(&espeak_program(&dir, voice, text)))
            .collect();
        voices.push((format!("espeak-ng {voice}"), clips));
    }
    #[cfg(feature = "piper")]
    {
        let mut cfg = stt_tts::tts::PiperConfig::installed(&stt_tts::models::models_dir());
        cfg.threads = threads;
        let piper = stt_tts::tts::PiperTts::new(cfg)?;
        voices.push(("piper joe-medium (neural)".into(), spoken(&piper)?));
    }
    println!(
        "machine: load {}; {threads} whisper thread(s); {} utterances per voice",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        HELD_OUT.len()
    );
    if std::env::args().any(|a| a == "--decoding") {
        return decoding_choices(threads, &voices);
    }
    println!("| voice | model | prompt | WER | words | real-time factor |");
    println!("|---|---|---|---|---|---|");
    for model in [WhisperModel::TinyEn, WhisperModel::Base] {
        let mut cfg = WhisperConfig::new(ensure_model(model)?);
        cfg.threads = threads;
        let stt = Arc::new(WhisperStt::load(cfg)?);
        for (voice, clips) in &voices {
            for (name, prompt) in [
                ("none", None),
                ("vocabulary", Some(VOCABULARY)),
                ("glossary", Some(GLOSSARY)),
            ] {
                let (wer, words, rtf) = wer(&stt, voice, clips, prompt.map(|p| (name, p)))?;
                println!(
                    "| {voice} | {} | {name} | {:.1} % | {words} | {rtf:.3} |",
                    model.file_name(),
                    100.0 * wer
                );
            }
        }
    }
    Ok(())
}

/// WER, words and real-time factor of `stt` over one voice's held-out clips.
fn wer(
    stt: &WhisperStt,
    voice: &str,
    clips: &[Vec<f32>],
    prompt: Option<(&str, &str)>,
) -> Result<(f64, usize, f64), SpeechError> {
    let (mut errors, mut words, mut wall, mut audio) = (0, 0, 0.0, 0.0);
    for (text, clip) in HELD_OUT.iter().zip(clips) {
        let t = stt.transcribe_with_prompt(clip, prompt.map(|(_, p)| p))?;
        let heard = stt_tts::stt::collapse_repeats(&t.text());
        let (e, n) = common::word_errors(text, &heard);
        if e > 0 && std::env::var_os("WER_SHOW").is_some() {
            let name = prompt.map_or("none", |(n, _)| n);
            eprintln!("{voice} prompt={name}: {text:?} → {heard:?}");
            if std::env::var_os("WER_SEGMENTS").is_some() {
                for seg in &t.segments {
                    eprintln!(
                        "    [{}–{} of {} ms] {:?}",
                        seg.start_ms, seg.end_ms, t.audio_ms, seg.text
                    );
                }
            }
        }
        errors += e;
        words += n;
        wall += t.elapsed.as_secs_f64();
        audio += t.audio_ms as f64 / 1000.0;
    }
    Ok((errors as f64 / words as f64, words, wall / audio))
}

/// `--decoding`: tiny.en's decoding choices side by side — greedy (shipped) against a
/// 5-wide beam — per voice, without and with the vocabulary prompt.
fn decoding_choices(
    threads: usize,
    voices: &[(String, Vec<Vec<f32>>)],
) -> Result<(), Box<dyn std::error::Error>> {
    println!("| voice | decoding | prompt | WER | words | real-time factor |");
    println!("|---|---|---|---|---|---|");
    for (label, beam_size) in [("greedy (shipped)", 1), ("beam search, 5 wide", 5)] {
        let mut cfg = WhisperConfig::new(ensure_model(WhisperModel::TinyEn)?);
        cfg.threads = threads;
        cfg.beam_size = beam_size;
        let stt = WhisperStt::load(cfg)?;
        for (voice, clips) in voices {
            for prompt in [None, Some(("vocabulary", VOCABULARY))] {
                let (wer, words, rtf) = wer(&stt, voice, clips, prompt)?;
                let name = prompt.map_or("none", |(n, _)| n);
                println!(
                    "| {voice} | {label} | {name} | {:.1} % | {words} | {rtf:.3} |",
                    100.0 * wer
                );
            }
        }
    }
    Ok(())
}
