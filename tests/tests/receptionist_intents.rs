//! Intent accuracy of the receptionist on spoken callers: each utterance is spoken by an
//! espeak-ng voice, put through a phone line (sox, 8 kHz µ-law), and heard as a call's turn
//! is: 20 ms frames through the streaming transcriber (VAD, pre/post-roll, speculative
//! decoding) with whisper tiny.en biased by the org's vocabulary; then understood by the
//! local responder. Accuracy is
//! printed per voice and in total, and must be at least 90 %.
//!
//! `RECEPTIONIST_INTENT_VOICES` (comma-separated espeak-ng voices) narrows the run, e.g.
//! to one voice for a quicker pass; the assertion holds for any set.

use gateway::receptionist::stream_config;
use integration_tests::env::TempDir;
use integration_tests::speech::{phone_speech, silence, tiny};
use std::sync::Arc;
use std::time::Duration;
use stt_tts::stt::{StreamEvent, StreamingTranscriber, WhisperStt};
use stt_tts::{SpeechError, SpeechToText, Transcript};
use voice::receptionist::responder::{
    understand, vocabulary, Entry, Hours, Intent, Knowledge, Profile,
};

/// The org the callers ring: a dental practice with a small knowledge base.
fn profile() -> Profile {
    let e = |q: &str, a: &str| Entry {
        question: q.into(),
        answer: a.into(),
    };
    Profile {
        name: "Harbour Dental".into(),
        greeting: None,
        hours: Some(Hours::parse("Mon-Fri 09:00-17:00").unwrap()),
        knowledge: Knowledge::new(vec![
            e(
                "Where are you located?",
                "We are at 12 Harbour Street, next to the library.",
            ),
            e(
                "Do you have parking?",
                "Yes, free parking is behind the building.",
            ),
            e(
                "How much does a cleaning cost?",
                "A standard cleaning costs 90 dollars.",
            ),
            e(
                "Do you accept insurance?",
                "We accept most dental insurance plans.",
            ),
            e(
                "Do you take walk-in patients?",
                "We see walk-in patients until noon.",
            ),
        ]),
        appointment_minutes: 30,
    }
}

/// (what the caller says, the intent it means: a name, or `kb:N` for knowledge entry N).
const UTTERANCES: &[(&str, &str)] = &[
    ("I'd like to talk to a person, please.", "person"),
    ("Can I speak with someone?", "person"),
    ("Let me speak to a real person.", "person"),
    ("Could you transfer me to the receptionist?", "person"),
    ("I want to talk to a human.", "person"),
    ("Operator, please.", "person"),
    ("I would like to leave a message.", "message"),
    ("Can I leave a message for the doctor?", "message"),
    ("Please ask them to call me back.", "message"),
    ("Could you take a message?", "message"),
    ("I'd like to book an appointment.", "book"),
    (
        "Can I make an appointment for next Tuesday at three thirty?",
        "book",
    ),
    ("I need to schedule a cleaning for Friday.", "book"),
    ("Do you have an appointment tomorrow morning?", "book"),
    ("I want to book a visit on Monday at ten.", "book"),
    ("Can I come in on Thursday afternoon?", "book"),
    ("What are your opening hours?", "hours"),
    ("When are you open?", "hours"),
    ("Are you open on Saturday?", "hours"),
    ("What time do you close today?", "hours"),
    ("What are your business hours?", "hours"),
    ("Where are you located?", "kb:0"),
    ("What is your address?", "kb:0"),
    ("How do I get to your office?", "kb:0"),
    ("Do you have parking?", "kb:1"),
    ("Is there somewhere to park my car?", "kb:1"),
    ("How much does a cleaning cost?", "kb:2"),
    ("What is the price of a teeth cleaning?", "kb:2"),
    ("Do you accept insurance?", "kb:3"),
    ("Which insurance plans do you take?", "kb:3"),
    ("Do you take walk-in patients?", "kb:4"),
    ("Can I just walk in?", "kb:4"),
    ("No thanks, that's all. Goodbye.", "goodbye"),
    ("That is all, thank you. Bye.", "goodbye"),
    ("Nothing else, have a nice day.", "goodbye"),
    ("Yes, that's right.", "yes"),
    ("Yes please.", "yes"),
    ("That sounds good.", "yes"),
    ("Correct.", "yes"),
    ("No, that's wrong.", "no"),
    ("No, not that day.", "no"),
    ("Nope.", "no"),
];

/// whisper with the org's vocabulary as its prompt, as the gateway's listener runs it.
struct Prompted {
    whisper: Arc<WhisperStt>,
    prompt: String,
}

impl SpeechToText for Prompted {
    fn transcribe(&self, audio: &[f32]) -> Result<Transcript, SpeechError> {
        self.whisper
            .transcribe_with_prompt(audio, Some(&self.prompt))
    }

    fn name(&self) -> &str {
        "prompted tiny.en"
    }
}

/// What a call's listener hears of `pcm` (8 kHz), said after a short pause.
fn hear(ear: &mut StreamingTranscriber, pcm: &[i16]) -> String {
    let mut audio = silence(0.4);
    audio.extend_from_slice(pcm);
    audio.extend(silence(1.2));
    let mut turns = 0;
    for frame in audio.chunks(160) {
        for event in ear.push(frame) {
            if matches!(event, StreamEvent::TurnEnded { .. }) {
                turns += 1;
            }
        }
    }
    let mut text = Vec::new();
    for _ in 0..turns {
        let turn = ear
            .next_timeout(Duration::from_secs(60))
            .expect("a transcript within 60 s")
            .expect("transcribed");
        text.push(turn.transcript.text());
    }
    text.join(" ")
}

fn label(intent: Intent) -> String {
    match intent {
        Intent::Knowledge(i) => format!("kb:{i}"),
        other => other.name().to_owned(),
    }
}

#[test]
fn intent_accuracy_on_spoken_utterances_is_at_least_90_percent() {
    let voices: Vec<String> = std::env::var("RECEPTIONIST_INTENT_VOICES")
        .unwrap_or_else(|_| "en-us,en-gb,en-us+f3".into())
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    let dir = TempDir::new();
    let profile = profile();
    // As a receptionist call does: whisper biased toward the org's vocabulary.
    let stt = Arc::new(Prompted {
        whisper: tiny(),
        prompt: vocabulary(&profile),
    });
    let (mut total, mut right) = (0usize, 0usize);
    let mut misses = Vec::new();
    let started = std::time::Instant::now();
    for voice in &voices {
        let mut voice_right = 0;
        let mut ear = StreamingTranscriber::new(stt.clone(), stream_config()).unwrap();
        for (said, want) in UTTERANCES {
            let heard = hear(&mut ear, &phone_speech(&dir.0, voice, said));
            let (intent, _) = understand(&profile, &heard);
            total += 1;
            if label(intent) == *want {
                right += 1;
                voice_right += 1;
            } else {
                misses.push(format!(
                    "[{voice}] {said:?} heard {heard:?} → {} (want {want})",
                    label(intent)
                ));
            }
        }
        println!(
            "intent accuracy [{voice}]: {voice_right}/{} = {:.1} %",
            UTTERANCES.len(),
            100.0 * voice_right as f64 / UTTERANCES.len() as f64
        );
    }
    for m in &misses {
        println!("miss: {m}");
    }
    let accuracy = right as f64 / total as f64;
    println!(
        "intent accuracy: {right}/{total} = {:.1} % over {} voices ({:.0} s)",
        100.0 * accuracy,
        voices.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(total >= UTTERANCES.len(), "utterances were spoken");
    assert!(
        accuracy >= 0.9,
        "intent accuracy {:.1} % < 90 %",
        100.0 * accuracy
    );
}
