//! What the caller wants, from the words of one turn: keyword and phrase cues per intent,
//! scored, forgiving whisper's near-miss spellings of long words.
//!
//! A phrase cue (`talk to`, `leave a message`) scores 2, a word cue 1; the highest total
//! wins, ties going to the earlier intent in [`CUES`]. Confidence is 0.9 for a phrase-backed
//! winner, 0.7 for a word-backed one. Yes/no are scored here too; the dialog decides
//! whether a yes/no means anything at this point of the call.

use super::words::{sounds_like, stem, tokens};

/// An intent the local responder recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    /// Talk to a person (hand-over).
    Person,
    /// Leave a message.
    Message,
    /// Book an appointment.
    Book,
    /// Cancel the caller's appointment.
    Cancel,
    /// Move the caller's appointment to another time.
    Reschedule,
    /// Opening hours.
    Hours,
    /// Where the business is.
    Address,
    /// The call is done.
    Goodbye,
    /// Agreement (to a confirmation).
    Yes,
    /// Refusal (of a confirmation).
    No,
    /// A question the org's knowledge base answers (its entry index).
    Knowledge(usize),
    /// Nothing understood.
    Unknown,
}

impl Intent {
    /// A stable name for logs, tests and the transcript.
    pub fn name(&self) -> &'static str {
        match self {
            Intent::Person => "person",
            Intent::Message => "message",
            Intent::Book => "book",
            Intent::Cancel => "cancel",
            Intent::Reschedule => "reschedule",
            Intent::Hours => "hours",
            Intent::Address => "address",
            Intent::Goodbye => "goodbye",
            Intent::Yes => "yes",
            Intent::No => "no",
            Intent::Knowledge(_) => "knowledge",
            Intent::Unknown => "unknown",
        }
    }
}

/// Cues per intent: phrases (several words, matched in order) and single words (stemmed).
pub const CUES: &[(Intent, &[&str], &[&str])] = &[
    (
        Intent::Person,
        &[
            "talk to",
            "speak to",
            "speak with",
            "talk with",
            "real person",
            "live person",
            "a human",
            "someone",
            "somebody",
            "transfer me",
            "connect me",
            "put me through",
        ],
        &[
            "person",
            "human",
            "operator",
            "representative",
            "agent",
            "receptionist",
            "staff",
        ],
    ),
    (
        Intent::Message,
        &[
            "leave a message",
            "take a message",
            "pass on",
            "pass along",
            "call me back",
            "call back",
            "leave a note",
            "let them know",
        ],
        &["message", "voicemail", "callback", "note"],
    ),
    (
        Intent::Cancel,
        &[
            "cancel my",
            "cancel the",
            "cancel an",
            "cancel it",
            "can't make it",
            "cannot make it",
            "won't make it",
            "call off",
        ],
        &["cancel", "cancellation"],
    ),
    (
        Intent::Reschedule,
        &[
            "move my",
            "change my appointment",
            "change the appointment",
            "another time",
            "different time",
            "different day",
            "push back",
        ],
        &["reschedule", "postpone", "rebook"],
    ),
    (
        Intent::Book,
        &[
            "make an appointment",
            "book an",
            "schedule an",
            "set up an",
            "come in",
            "see the doctor",
            "get an appointment",
        ],
        &[
            "appointment",
            "book",
            "schedule",
            "reserve",
            "reservation",
            "booking",
            "slot",
            "visit",
        ],
    ),
    (
        Intent::Hours,
        &[
            "what time do you",
            "when do you",
            "when are you",
            "are you open",
            "opening hours",
            "business hours",
            "what are your hours",
            "open today",
            "open on",
        ],
        &["hour", "open", "close", "closing", "opening", "closed"],
    ),
    (
        Intent::Address,
        &[
            "where are you",
            "how do i get",
            "how do you get",
            "get there",
            "how to get",
            "find you",
            "your location",
            "what is your address",
            "where is your",
            "which street",
        ],
        &[
            "address",
            "located",
            "location",
            "directions",
            "street",
            "where",
        ],
    ),
    (
        Intent::Goodbye,
        &[
            "that is all",
            "that's all",
            "nothing else",
            "no thanks",
            "no thank you",
            "that's it",
            "that is it",
            "hang up",
            "have a nice day",
            "have a good day",
            "all set",
        ],
        &["bye", "goodbye", "farewell"],
    ),
    (
        Intent::Yes,
        &[
            "that is right",
            "that's right",
            "sounds good",
            "go ahead",
            "please do",
            "that works",
            "yes please",
        ],
        &[
            "yes",
            "yeah",
            "yep",
            "yup",
            "correct",
            "right",
            "sure",
            "ok",
            "okay",
            "perfect",
            "absolutely",
            "great",
            "fine",
        ],
    ),
    (
        Intent::No,
        &[
            "that is wrong",
            "not right",
            "that's wrong",
            "not correct",
            "different time",
            "another time",
        ],
        &["no", "nope", "nah", "wrong", "incorrect", "not"],
    ),
];

/// A scored guess at the caller's intent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guess {
    /// The intent.
    pub intent: Intent,
    /// 0–1.
    pub confidence: f32,
    /// The raw cue score (0: nothing matched).
    pub score: u32,
}

fn has_phrase(words: &[String], phrase: &str) -> bool {
    let want: Vec<String> = tokens(phrase);
    if want.is_empty() || want.len() > words.len() {
        return false;
    }
    words.windows(want.len()).any(|w| {
        w.iter()
            .zip(&want)
            .all(|(a, b)| a == b || sounds_like(a, b))
    })
}

/// Cue scores of every intent that matched, best first.
pub fn scores(text: &str) -> Vec<(Intent, u32, bool)> {
    let words = tokens(text);
    let stems: Vec<String> = words.iter().map(|w| stem(w)).collect();
    let mut out = Vec::new();
    for (intent, phrases, cues) in CUES {
        let phrase_hits = phrases.iter().filter(|p| has_phrase(&words, p)).count() as u32;
        let word_hits = cues
            .iter()
            .filter(|c| {
                let c = stem(c);
                stems.iter().any(|s| sounds_like(s, &c))
            })
            .count() as u32;
        let score = 2 * phrase_hits + word_hits;
        if score > 0 {
            out.push((*intent, score, phrase_hits > 0));
        }
    }
    // Stable: equal scores keep the order of CUES.
    out.sort_by_key(|s| std::cmp::Reverse(s.1));
    out
}

/// The best intent among the cues (Knowledge is decided by the responder, not here).
pub fn classify(text: &str) -> Guess {
    match scores(text).first() {
        Some(&(intent, score, phrase)) => Guess {
            intent,
            confidence: if phrase { 0.9 } else { 0.7 },
            score,
        },
        None => Guess {
            intent: Intent::Unknown,
            confidence: 0.0,
            score: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_requests() {
        for (said, want) in [
            ("I'd like to talk to a person please", Intent::Person),
            ("Can I speak with someone?", Intent::Person),
            ("operator", Intent::Person),
            ("Get me a representative", Intent::Person),
            ("I want to leave a message", Intent::Message),
            ("Could you ask them to call me back?", Intent::Message),
            ("I'd like to book an appointment", Intent::Book),
            ("Can I schedule a visit for next Tuesday?", Intent::Book),
            ("I need to make an appointment", Intent::Book),
            ("I need to cancel my appointment", Intent::Cancel),
            ("I can't make it tomorrow, please cancel", Intent::Cancel),
            ("Can I reschedule my appointment?", Intent::Reschedule),
            (
                "I'd like to move my appointment to Friday",
                Intent::Reschedule,
            ),
            ("What are your hours?", Intent::Hours),
            ("Are you open on Saturday?", Intent::Hours),
            ("When do you close today?", Intent::Hours),
            ("What's your address?", Intent::Address),
            ("Where are you located?", Intent::Address),
            ("How do I get to your office?", Intent::Address),
            ("No thanks, that's all. Goodbye.", Intent::Goodbye),
            ("Bye", Intent::Goodbye),
            ("Yes, that's right", Intent::Yes),
            ("Yeah", Intent::Yes),
            ("Correct.", Intent::Yes),
            ("No, that's wrong", Intent::No),
            ("Nope", Intent::No),
        ] {
            assert_eq!(classify(said).intent, want, "{said}: {:?}", scores(said));
        }
    }

    #[test]
    fn misheard_long_words_still_count() {
        assert_eq!(classify("I'd like an appointmint").intent, Intent::Book);
        assert_eq!(classify("what is your adress").intent, Intent::Address);
        assert_eq!(classify("represenative please").intent, Intent::Person);
    }

    #[test]
    fn nothing_known_is_unknown_with_no_confidence() {
        let g = classify("the quick brown fox");
        assert_eq!((g.intent, g.confidence, g.score), (Intent::Unknown, 0.0, 0));
        assert_eq!(classify("").intent, Intent::Unknown);
    }

    #[test]
    fn phrases_outweigh_stray_words() {
        let g = classify("can I talk to someone about my appointment");
        assert_eq!(g.intent, Intent::Person);
        assert!(g.confidence > 0.8);
    }
}
