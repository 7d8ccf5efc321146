//! The org's knowledge base (question → answer) and the text similarity that picks an
//! answer for what the caller asked.
//!
//! Each entry is a bag of stemmed content words: its question's at full weight, its
//! answer's at half. A word is worth more the fewer entries use it (IDF). The score is
//! the cosine between the caller's bag and an entry's (a word no entry uses weighs 1), with near-miss spellings
//! ([`super::words::sounds_like`]) counted as matches, since whisper misspells robotic and
//! accented speech.

use super::words::{content_words, sounds_like};
use std::collections::HashMap;

/// One question and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// How a caller might ask.
    pub question: String,
    /// What the receptionist says.
    pub answer: String,
}

/// The best entry for an utterance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// Index into the entries.
    pub index: usize,
    /// Cosine similarity, 0–1.
    pub score: f32,
}

/// Entries with their word bags, built once per org.
#[derive(Debug, Clone, Default)]
pub struct Knowledge {
    entries: Vec<Entry>,
    bags: Vec<HashMap<String, f32>>,
    /// How many entries use each word.
    df: HashMap<String, usize>,
}

/// Below this an entry is not an answer.
pub const MIN_SCORE: f32 = 0.25;

impl Knowledge {
    /// Indexes `entries`.
    pub fn new(entries: Vec<Entry>) -> Knowledge {
        let mut bags = Vec::with_capacity(entries.len());
        let mut df: HashMap<String, usize> = HashMap::new();
        for e in &entries {
            let mut bag: HashMap<String, f32> = HashMap::new();
            for w in content_words(&e.answer) {
                bag.insert(w, 0.5);
            }
            for w in content_words(&e.question) {
                bag.insert(w, 1.0);
            }
            for w in bag.keys() {
                *df.entry(w.clone()).or_default() += 1;
            }
            bags.push(bag);
        }
        Knowledge { entries, bags, df }
    }

    /// The entries.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn idf(&self, word: &str) -> f32 {
        let n = self.entries.len().max(1) as f32;
        match self.df.get(word) {
            // A word no entry uses says little about which entry is meant.
            None => 1.0,
            Some(&df) => 1.0 + (n / (df as f32 + 0.5)).ln().max(0.0),
        }
    }

    /// The entry most like `text`, if any scores at least [`MIN_SCORE`].
    pub fn best(&self, text: &str) -> Option<Match> {
        let heard = content_words(text);
        if heard.is_empty() {
            return None;
        }
        let mut heard_norm = 0.0;
        for w in &heard {
            heard_norm += self.idf(w).powi(2);
        }
        let mut best: Option<Match> = None;
        for (index, bag) in self.bags.iter().enumerate() {
            let mut dot = 0.0;
            let mut norm = 0.0;
            for (word, weight) in bag {
                let w = weight * self.idf(word);
                norm += w * w;
                if heard.iter().any(|h| sounds_like(h, word)) {
                    dot += w * self.idf(word);
                }
            }
            if norm == 0.0 {
                continue;
            }
            let score = dot / (norm.sqrt() * heard_norm.sqrt());
            if best.is_none_or(|b| score > b.score) {
                best = Some(Match { index, score });
            }
        }
        best.filter(|m| m.score >= MIN_SCORE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kb() -> Knowledge {
        let e = |q: &str, a: &str| Entry {
            question: q.into(),
            answer: a.into(),
        };
        Knowledge::new(vec![
            e(
                "Where are you located?",
                "We are at 12 Harbour Street, next to the library.",
            ),
            e(
                "Do you have parking?",
                "Yes, free parking is behind the building.",
            ),
            e(
                "How much is a cleaning?",
                "A standard cleaning costs 90 dollars.",
            ),
            e(
                "Do you accept insurance?",
                "We accept most dental insurance plans.",
            ),
            e(
                "Do you take walk-ins?",
                "We see walk-in patients until noon.",
            ),
        ])
    }

    #[test]
    fn paraphrases_find_their_entry() {
        let kb = kb();
        for (asked, want) in [
            ("Is there somewhere to park my car?", 1),
            ("is there parking", 1),
            ("How much does a cleaning cost?", 2),
            ("what's the price of a teeth cleaning", 2),
            ("Which insurance plans do you accept?", 3),
            ("do you take my insurance", 3),
            ("Can I just walk in?", 4),
            ("where is your office located", 0),
            ("what street are you on", 0),
        ] {
            let got = kb.best(asked);
            assert_eq!(got.map(|m| m.index), Some(want), "{asked}: {got:?}");
        }
    }

    #[test]
    fn whisper_misspellings_still_match() {
        assert_eq!(
            kb().best("do you except insurence").map(|m| m.index),
            Some(3)
        );
    }

    #[test]
    fn unrelated_speech_finds_nothing() {
        let kb = kb();
        for asked in ["", "um", "my cat is orange", "the weather is lovely today"] {
            assert_eq!(kb.best(asked), None, "{asked}");
        }
        assert_eq!(Knowledge::default().best("parking"), None);
    }
}
