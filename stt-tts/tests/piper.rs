//! The optional Piper voice (`--features piper`): frames, first-frame time, barge-in stop,
//! and that whisper understands what it says over a phone line. Installs onnxruntime's
//! library with the models when missing (DARTWING_WITH_PIPER=1 installer run).
#![cfg(feature = "piper")]

mod common;

use std::ops::ControlFlow;
use std::time::Instant;

use audio::g711::G711Law;
use stt_tts::models::{install_models, models_dir};
use stt_tts::tts::{synthesize_to_vec, PiperConfig, PiperTts, SynthOutcome};
use stt_tts::{SpeechToText, TextToSpeech};

fn piper() -> PiperTts {
    let cfg = PiperConfig::installed(&models_dir());
    if !cfg.onnxruntime.is_file() || !cfg.voice.is_file() {
        std::env::set_var("DARTWING_WITH_PIPER", "1");
        install_models(&models_dir()).expect("installer");
    }
    PiperTts::new(cfg).expect("load Piper voice")
}

#[test]
fn piper_speech_is_understood_over_the_phone_line() {
    let tts = piper();
    let stt = common::tiny();
    let (mut errors, mut words) = (0, 0);
    for text in [
        "I can book you for Monday at ten in the morning.",
        "Please hold while I transfer you to a person.",
        "Your appointment is confirmed. Goodbye.",
    ] {
        let pcm = synthesize_to_vec(&tts, text).unwrap();
        let line = G711Law::Ulaw.decode(&G711Law::Ulaw.encode(&pcm));
        let got = stt.transcribe(&common::to_16k(&line)).unwrap();
        let (e, n) = common::word_errors(text, &got.text());
        println!("{e}/{n}  {text:?} -> {:?}", got.text());
        errors += e;
        words += n;
    }
    // A natural voice: far clearer than espeak-ng (whose bound is 0.35).
    assert!(errors as f64 / words as f64 <= 0.15, "WER {errors}/{words}");
}

#[test]
fn piper_streams_frames_and_stops() {
    let tts = piper();
    let two = "Thank you for calling. How can I help you today?";
    let started = Instant::now();
    let mut first = None;
    let mut n = 0;
    let outcome = tts
        .synthesize(two, &mut |f| {
            assert_eq!(f.len(), 160);
            first.get_or_insert_with(|| started.elapsed());
            n += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    let total = started.elapsed();
    println!(
        "first frame {:?}, whole {total:?}, {n} frames",
        first.unwrap()
    );
    assert_eq!(outcome, SynthOutcome::Completed { frames: n });
    assert!(n > 100, "{n} frames");
    assert!(first.unwrap() < total, "first frame only at the end");
    let stopped = tts
        .synthesize(two, &mut |_| ControlFlow::Break(()))
        .unwrap();
    assert_eq!(stopped, SynthOutcome::Stopped { frames: 1 });
}
