//! espeak-ng through the FFI: 20 ms frames at 8 kHz, early first frame, stopping on
//! barge-in, the playback thread, and clear errors.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stt_tts::tts::{synthesize_to_vec, EspeakConfig, EspeakTts, Playback, SynthOutcome};
use stt_tts::{SpeechError, TextToSpeech};

const SENTENCE: &str =
    "Thank you for calling. How can I help you today? I can book, move or cancel an appointment.";

#[test]
fn frames_are_20_ms_at_8_khz_and_carry_speech() {
    let tts = EspeakTts::new(EspeakConfig::default()).unwrap();
    assert_eq!(tts.out_rate(), 8_000);
    let mut frames = 0;
    let mut loud = 0;
    let outcome = tts
        .synthesize(SENTENCE, &mut |f| {
            assert_eq!(f.len(), 160);
            frames += 1;
            if audio::pcm::rms_dbfs(f) > -40.0 {
                loud += 1;
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(outcome, SynthOutcome::Completed { frames });
    // About 5 s of speech at espeak's default rate.
    assert!((150..400).contains(&frames), "{frames} frames");
    assert!(loud * 2 > frames, "{loud} of {frames} frames carry sound");
}

#[test]
fn first_frame_leaves_before_the_sentence_is_done() {
    let tts = EspeakTts::new(EspeakConfig::default()).unwrap();
    synthesize_to_vec(&tts, "Warm up.").unwrap();
    let started = Instant::now();
    let mut first = None;
    tts.synthesize(SENTENCE, &mut |_| {
        first.get_or_insert_with(|| started.elapsed());
        ControlFlow::Continue(())
    })
    .unwrap();
    let total = started.elapsed();
    let first = first.unwrap();
    println!("first frame after {first:?}, whole sentence {total:?}");
    assert!(
        first * 3 < total,
        "first frame {first:?} vs whole {total:?}: not streaming"
    );
}

#[test]
fn sink_can_stop_synthesis_at_once() {
    let tts = EspeakTts::new(EspeakConfig::default()).unwrap();
    let mut n = 0;
    let outcome = tts
        .synthesize(SENTENCE, &mut |_| {
            n += 1;
            if n == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(outcome, SynthOutcome::Stopped { frames: 3 });
    assert_eq!(n, 3);
    // The engine is usable again right after a stop.
    assert!(synthesize_to_vec(&tts, "Hello.").unwrap().len() > 1_600);
}

#[test]
fn playback_thread_streams_and_stops_on_barge_in() {
    let tts: Arc<dyn TextToSpeech> = Arc::new(EspeakTts::new(EspeakConfig::default()).unwrap());
    let whole = Playback::start(tts.clone(), SENTENCE.into(), 8).unwrap();
    let all: Vec<Vec<i16>> = whole.frames.iter().collect();
    assert!(
        matches!(whole.join().unwrap(), SynthOutcome::Completed { frames } if frames == all.len())
    );

    let cut = Playback::start(tts, SENTENCE.into(), 4).unwrap();
    for _ in 0..5 {
        cut.frames.recv_timeout(Duration::from_secs(5)).unwrap();
    }
    cut.stop();
    match cut.join().unwrap() {
        SynthOutcome::Stopped { frames } => {
            assert!(frames < all.len(), "{frames} of {}", all.len())
        }
        other => panic!("expected a stop, got {other:?}"),
    }
}

#[test]
fn other_rates_and_clear_errors() {
    let wide = EspeakTts::new(EspeakConfig {
        out_rate: 16_000,
        ..EspeakConfig::default()
    })
    .unwrap();
    let mut sizes = Vec::new();
    wide.synthesize("Hello.", &mut |f| {
        sizes.push(f.len());
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(sizes.iter().all(|&s| s == 320));

    let err = EspeakTts::new(EspeakConfig {
        voice: "no-such-voice".into(),
        ..EspeakConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, SpeechError::EspeakVoice { .. }), "{err}");
    let ok = EspeakTts::new(EspeakConfig::default()).unwrap();
    assert!(matches!(
        synthesize_to_vec(&ok, "bad\0text"),
        Err(SpeechError::TextHasNul { position: 3 })
    ));
    assert!(matches!(
        EspeakTts::new(EspeakConfig {
            out_rate: 0,
            ..EspeakConfig::default()
        }),
        Err(SpeechError::UnsupportedRate { rate: 0 })
    ));
}
