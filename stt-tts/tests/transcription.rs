//! whisper tiny.en on telephone audio: accuracy over receptionist sentences, TTS round
//! trip, silence and noise, damaged models, and the streaming front end.
//!
//! Needs the tiny.en model: found in DARTWING_MODELS_DIR (default ~/.cache/dartwing/models)
//! or installed by scripts/install-models.sh on first use. Never skipped.

mod common;
#[path = "common/sentences.rs"]
mod sentences;

use std::sync::Arc;
use std::time::{Duration, Instant};

use audio::g711::G711Law;
use stt_tts::stt::{StreamConfig, StreamEvent, StreamingTranscriber, WhisperConfig, WhisperStt};
use stt_tts::tts::{synthesize_to_vec, EspeakConfig, EspeakTts};
use stt_tts::{ModelProblem, SpeechError, SpeechToText};

/// Word error rate bound for espeak-ng speech over 8 kHz µ-law with tiny.en. Measured
/// 0.250–0.277 (55–61 errors / 220 words) with the shipped settings on 1 and 2 threads;
/// nearly all errors are words the robotic espeak voice makes ambiguous ("Tuesday" heard
/// as "to make", "five" as "time"); Piper's voice measured 0.08 on the same kind of text.
/// The bound leaves room for thread-count nondeterminism and fails on real regressions:
/// the encoder margin at 64 frames (decoding loops) measured 0.78.
const WER_BOUND: f64 = 0.35;

#[test]
fn receptionist_sentences_over_ulaw_stay_under_the_wer_bound() {
    let dir = common::scratch("wer");
    let stt = common::tiny();
    let (mut errors, mut words) = (0, 0);
    for text in sentences::SENTENCES {
        let audio = common::to_16k(&common::phone_speech(&dir, text));
        let got = stt.transcribe(&audio).expect("transcribe");
        let (e, n) = common::word_errors(text, &got.text());
        println!("{e}/{n}  {text:?} -> {:?}", got.text());
        errors += e;
        words += n;
    }
    let wer = errors as f64 / words as f64;
    println!(
        "WER {errors}/{words} = {wer:.3} over {} sentences",
        sentences::SENTENCES.len()
    );
    assert!(sentences::SENTENCES.len() >= 30);
    assert!(wer <= WER_BOUND, "WER {wer:.3} above {WER_BOUND}");
}

#[test]
fn segments_carry_timestamps_and_confidence() {
    let dir = common::scratch("segments");
    let got = common::tiny()
        .transcribe(&common::to_16k(&common::phone_speech(
            &dir,
            "I want to talk to a person.",
        )))
        .unwrap();
    assert!(!got.segments.is_empty());
    for s in &got.segments {
        assert!(
            s.start_ms <= s.end_ms && s.end_ms <= got.audio_ms,
            "{s:?} in {} ms",
            got.audio_ms
        );
        assert!(
            (0.0..=1.0).contains(&s.confidence) && s.confidence > 0.3,
            "{s:?}"
        );
    }
    assert!(got.segments.last().unwrap().end_ms > 1_000);
}

#[test]
fn our_tts_transcribes_back_to_its_text() {
    let tts = EspeakTts::new(EspeakConfig::default()).unwrap();
    let stt = common::tiny();
    let (mut errors, mut words) = (0, 0);
    for text in [
        "I can book you for Monday at ten in the morning.",
        "Please hold while I transfer you to a person.",
        "Your appointment is confirmed. Goodbye.",
    ] {
        let pcm = synthesize_to_vec(&tts, text).unwrap();
        // Through the phone line and back, with our own codec.
        let line = G711Law::Ulaw.decode(&G711Law::Ulaw.encode(&pcm));
        let got = stt.transcribe(&common::to_16k(&line)).unwrap();
        let (e, n) = common::word_errors(text, &got.text());
        println!("{e}/{n}  {text:?} -> {:?}", got.text());
        errors += e;
        words += n;
    }
    let wer = errors as f64 / words as f64;
    // Same robotic voice as the sentence test, without the sox step; same bound.
    assert!(wer <= WER_BOUND, "TTS round trip WER {wer:.3}");
}

#[test]
fn silence_and_noise_give_empty_transcripts() {
    let stt = common::tiny();
    let silence = vec![0.0f32; 16_000 * 3];
    assert!(stt.transcribe(&silence).unwrap().is_empty());
    for (level, seed) in [(-60.0, 1), (-40.0, 2), (-30.0, 3), (-20.0, 4)] {
        let mut noise = vec![0i16; 8_000 * 3];
        common::add_noise(&mut noise, level, seed);
        let line = G711Law::Ulaw.decode(&G711Law::Ulaw.encode(&noise));
        let got = stt.transcribe(&common::to_16k(&line)).unwrap();
        assert!(
            got.is_empty(),
            "noise at {level} dBFS gave {:?} {:?}",
            got.text(),
            got.segments
        );
    }
}

fn load_err(path: &std::path::Path) -> SpeechError {
    WhisperStt::load(WhisperConfig::new(path)).expect_err("damaged model must not load")
}

#[test]
fn damaged_models_are_clear_errors() {
    let good = stt_tts::models::ensure_model(stt_tts::models::WhisperModel::TinyEn).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let dir = common::scratch("corrupt");

    let truncated = dir.join("truncated.bin");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(&truncated);
    assert!(
        matches!(
            err,
            SpeechError::ModelInvalid {
                problem: ModelProblem::Truncated { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");

    // Cut one byte short: whisper.cpp alone would load this with a damaged last tensor.
    let short = dir.join("short.bin");
    std::fs::write(&short, &bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(load_err(&short), SpeechError::ModelInvalid { .. }));

    let garbage = dir.join("garbage.bin");
    std::fs::write(&garbage, b"<html>404 Not Found</html>").unwrap();
    assert!(matches!(
        load_err(&garbage),
        SpeechError::ModelInvalid {
            problem: ModelProblem::BadMagic { .. },
            ..
        }
    ));

    let empty = dir.join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(load_err(&empty), SpeechError::ModelInvalid { .. }));

    // Structurally whole but wrong inside: a tensor name whisper.cpp does not know.
    let renamed = dir.join("renamed.bin");
    let mut b = bytes.clone();
    let at = b
        .windows(20)
        .position(|w| w == b"encoder.conv1.weight")
        .expect("tensor name");
    b[at..at + 7].copy_from_slice(b"ENCODER");
    std::fs::write(&renamed, &b).unwrap();
    assert!(matches!(
        load_err(&renamed),
        SpeechError::WhisperLoad { .. }
    ));

    assert!(matches!(
        load_err(&dir.join("missing.bin")),
        SpeechError::ModelMissing { .. }
    ));
}

#[test]
fn streaming_gives_one_transcript_per_turn_without_blocking() {
    let dir = common::scratch("stream");
    let first = "I would like to schedule an appointment.";
    let second = "I want to talk to a person.";
    let mut call = vec![0i16; 8 * 400];
    let s1 = call.len();
    call.extend(common::phone_speech(&dir, first));
    call.extend(vec![0i16; 8 * 1_200]);
    let s2 = call.len();
    call.extend(common::phone_speech(&dir, second));
    call.extend(vec![0i16; 8 * 1_000]);

    let stt: Arc<dyn SpeechToText> = common::tiny();
    // No speculation here: each job starts exactly when its TurnEnded push runs.
    let cfg = StreamConfig {
        speculate: false,
        ..StreamConfig::default()
    };
    let mut stream = StreamingTranscriber::new(stt, cfg).unwrap();
    let mut events = Vec::new();
    // When each TurnEnded push returned: if push waited for whisper, the transcript
    // would be ready by then. Causal, so it holds on a loaded machine too.
    let mut returned = Vec::new();
    for frame in call.chunks(160) {
        let evs = stream.push(frame);
        let now = Instant::now();
        returned.extend(
            evs.iter()
                .filter(|e| matches!(e, StreamEvent::TurnEnded { .. }))
                .map(|_| now),
        );
        events.extend(evs);
    }
    events.extend(stream.finish());
    println!("{events:?}");

    let starts: Vec<u64> = events
        .iter()
        .filter_map(|e| {
            if let StreamEvent::SpeechStart { at_ms } = e {
                Some(*at_ms)
            } else {
                None
            }
        })
        .collect();
    let ends = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::TurnEnded { .. }))
        .count();
    assert_eq!((starts.len(), ends), (2, 2), "{events:?}");
    for (got, truth) in starts.iter().zip([s1, s2]) {
        let truth_ms = truth as u64 / 8;
        assert!(
            got.abs_diff(truth_ms) <= 60,
            "speech start {got} ms, truth {truth_ms} ms"
        );
    }

    for (i, want) in [first, second].into_iter().enumerate() {
        let turn = stream
            .next_timeout(Duration::from_secs(30))
            .expect("transcript in time")
            .unwrap();
        // The push that ended the turn returned before whisper had its transcript: the
        // push did not wait for the transcription.
        assert!(
            returned[i] < turn.ready_at,
            "turn {i}: push returned {:?} after the transcript was ready",
            returned[i].saturating_duration_since(turn.ready_at)
        );
        let (e, n) = common::word_errors(want, &turn.transcript.text());
        println!(
            "turn {} {:?} latency {:?}",
            turn.turn,
            turn.transcript.text(),
            turn.latency()
        );
        assert!(e * 3 <= n, "{want:?} -> {:?}", turn.transcript.text());
    }
}

#[test]
fn a_worker_that_falls_behind_drops_turns_instead_of_blocking() {
    let dir = common::scratch("backpressure");
    let mut turn = common::phone_speech(&dir, "Yes, that works for me.");
    turn.extend(vec![0i16; 8 * 700]);
    let stt: Arc<dyn SpeechToText> = common::tiny();
    let cfg = StreamConfig {
        queue: 1,
        ..StreamConfig::default()
    };
    let mut stream = StreamingTranscriber::new(stt, cfg).unwrap();
    // Six turns pushed as fast as possible: far faster than real time, so the single
    // queue slot fills and later turns must be dropped, not waited for.
    let started = Instant::now();
    let mut events = Vec::new();
    for _ in 0..6 {
        for frame in turn.chunks(160) {
            events.extend(stream.push(frame));
        }
    }
    let ended = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::TurnEnded { .. }))
        .count();
    let dropped = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::TurnDropped { .. }))
        .count();
    println!(
        "ended {ended}, dropped {dropped}, pushing took {:?}",
        started.elapsed()
    );
    assert_eq!(ended + dropped, 6, "{events:?}");
    // A push that waited for the worker could never drop a turn.
    assert!(dropped >= 1, "{events:?}");
    for _ in 0..ended {
        let t = stream
            .next_timeout(Duration::from_secs(30))
            .expect("queued turn transcribed")
            .unwrap();
        assert!(!t.transcript.is_empty());
    }
}

#[test]
fn in_real_time_the_transcript_is_started_during_the_hangover() {
    let dir = common::scratch("realtime");
    let text = "I want to talk to a person.";
    let mut call = vec![0i16; 8 * 300];
    call.extend(common::phone_speech(&dir, text));
    call.extend(vec![0i16; 8 * 800]);
    let stt: Arc<dyn SpeechToText> = common::tiny();
    let mut stream = StreamingTranscriber::new(stt, StreamConfig::default()).unwrap();
    // Paced like RTP: one 20 ms frame every 20 ms.
    let t0 = Instant::now();
    let mut ended = false;
    for (i, frame) in call.chunks(160).enumerate() {
        let due = t0 + Duration::from_millis(20 * i as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        ended |= stream
            .push(frame)
            .iter()
            .any(|e| matches!(e, StreamEvent::TurnEnded { .. }));
    }
    assert!(ended);
    let turn = stream
        .next_timeout(Duration::from_secs(30))
        .expect("transcript")
        .unwrap();
    println!(
        "{:?} speculative {} latency after the end decision {:?}",
        turn.transcript.text(),
        turn.speculative,
        turn.latency()
    );
    assert!(
        turn.speculative,
        "the speculative job should have covered this turn"
    );
    let (e, n) = common::word_errors(text, &turn.transcript.text());
    assert!(e * 3 <= n, "{:?}", turn.transcript.text());
}

/// Pushes `call` in 20 ms frames. Once `speech_end_ms` has passed, it waits after each
/// frame (pushing nothing: stream time stands still) up to 300 ms for a speculative
/// result; a job in flight thus gets 300 ms of wall time per 20 ms of stream time, so
/// whether it beats the hangover does not depend on the machine's speed. At the first tentative
/// result it ends the turn if `end_early`. Returns the stream time (ms) when the turn
/// ended, the transcript, and whether a tentative result was shown.
fn run_frames(
    call: &[i16],
    speech_end_ms: u64,
    end_early: bool,
) -> (u64, stt_tts::stt::TurnTranscript, bool) {
    let stt: Arc<dyn SpeechToText> = common::tiny();
    let mut stream = StreamingTranscriber::new(stt, StreamConfig::default()).unwrap();
    let (mut ended_at_ms, mut shown) = (None, false);
    for (i, frame) in call.chunks(160).enumerate() {
        let now_ms = 20 * (i as u64 + 1);
        let mut events = stream.push(frame);
        let mut tentative = stream.tentative();
        let deadline = Instant::now() + Duration::from_millis(300);
        while tentative.is_none() && !shown && ended_at_ms.is_none() && now_ms > speech_end_ms {
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            tentative = stream.tentative();
        }
        if let Some(t) = tentative {
            shown = true;
            assert!(!t.transcript.text().is_empty());
            if end_early {
                let ended = stream.end_turn_now();
                assert_eq!(ended.len(), 1, "a shown result ends its turn: {ended:?}");
                events.extend(ended);
            }
        }
        if ended_at_ms.is_none()
            && events
                .iter()
                .any(|e| matches!(e, StreamEvent::TurnEnded { .. }))
        {
            ended_at_ms = Some(20 * (i as u64 + 1));
        }
    }
    let turn = stream
        .next_timeout(Duration::from_secs(30))
        .expect("transcript")
        .unwrap();
    assert!(
        stream.next_timeout(Duration::from_millis(500)).is_none(),
        "one turn, one transcript"
    );
    (ended_at_ms.expect("the turn ended"), turn, shown)
}

#[test]
fn a_turn_judged_whole_ends_before_the_hangover_with_the_speculative_words() {
    let dir = common::scratch("early-end");
    let text = "I want to talk to a person.";
    let speech = common::phone_speech(&dir, text);
    // The last loud sample: the VAD's end of the turn is at most a frame or two from it.
    let last_loud = speech
        .iter()
        .rposition(|s| s.unsigned_abs() > 1_000)
        .unwrap();
    let speech_end_ms = 300 + last_loud as u64 / 8;
    let mut call = vec![0i16; 8 * 300];
    call.extend(speech);
    call.extend(vec![0i16; 8 * 1_000]);
    let (ended_ms, turn, shown) = run_frames(&call, speech_end_ms, true);
    assert!(
        shown,
        "the speculative result is shown while the turn is open"
    );
    assert!(turn.speculative);
    let (e, n) = common::word_errors(text, &turn.transcript.text());
    assert!(e * 3 <= n, "{:?}", turn.transcript.text());
    // The hangover alone ends a turn 500 ms after its last voice (the frame that decides
    // it is counted here, so ≥ end + 500); ended now, it is sooner, and never before the
    // 200 ms of silence the speculation waits for.
    let after_voice = ended_ms - turn.end_ms;
    println!("ended {after_voice} ms after the last voice (hangover: 500)");
    assert!((200..500).contains(&after_voice), "{after_voice} ms");
    // Without the early end the same audio ends at the hangover.
    let (late_ms, late, _) = run_frames(&call, speech_end_ms, false);
    assert!(late_ms - late.end_ms >= 500, "{} ms", late_ms - late.end_ms);
}

#[test]
fn speech_after_the_tentative_result_keeps_the_turn_open() {
    let dir = common::scratch("early-stale");
    let first = common::phone_speech(&dir, "I want to book an appointment.");
    let second = common::phone_speech(&dir, "For tomorrow at ten.");
    let stt: Arc<dyn SpeechToText> = common::tiny();
    let mut stream = StreamingTranscriber::new(stt, StreamConfig::default()).unwrap();
    // The first sentence up to its last loud sample, then 300 ms of silence: long enough
    // to speculate on (200 ms), short of the 500 ms hangover.
    let last_loud = first
        .iter()
        .rposition(|s| s.unsigned_abs() > 1_000)
        .unwrap();
    let mut call = vec![0i16; 8 * 300];
    call.extend(&first[..last_loud]);
    call.extend(vec![0i16; 8 * 300]);
    let mut shown = None;
    for frame in call.chunks(160) {
        let events = stream.push(frame);
        assert!(events
            .iter()
            .all(|e| !matches!(e, StreamEvent::TurnEnded { .. })));
        shown = shown.or(stream.tentative());
    }
    // Wait (silently, pushing nothing) for the speculative result if it is still running.
    let deadline = Instant::now() + Duration::from_secs(20);
    while shown.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        shown = stream.tentative();
    }
    assert!(shown.is_some(), "the first sentence was speculated on");
    // The caller goes on before anyone acted on it: the old result no longer ends the turn.
    // (Up to the second sentence's last loud sample, so no new speculation has started:
    // only the resumed speech makes the old result stale.)
    let second_end = second
        .iter()
        .rposition(|s| s.unsigned_abs() > 1_000)
        .unwrap();
    for frame in second[..second_end].chunks(160) {
        stream.push(frame);
    }
    assert!(
        stream.end_turn_now().is_empty(),
        "a stale result ends nothing"
    );
    let mut ended = false;
    for frame in vec![0i16; 8 * 800].chunks(160) {
        ended |= stream
            .push(frame)
            .iter()
            .any(|e| matches!(e, StreamEvent::TurnEnded { .. }));
    }
    assert!(ended, "the hangover ends the longer turn");
    let turn = stream
        .next_timeout(Duration::from_secs(30))
        .expect("transcript")
        .unwrap();
    // One turn from the first sentence's start to the second's end, and whisper heard words
    // of both (its hearing of the cut-off "appointment" varies: "a point" with some dithers).
    let first_end_ms = 300 + last_loud as u64 / 8;
    assert!(
        turn.start_ms < first_end_ms && turn.end_ms > first_end_ms + 300,
        "one turn spans both sentences: {}..{} ms (first ends at {first_end_ms})",
        turn.start_ms,
        turn.end_ms
    );
    let heard = turn.transcript.text().to_lowercase();
    assert!(
        heard.contains("want") && heard.contains("tomorrow"),
        "one turn holds both sentences: {heard:?}"
    );
}
