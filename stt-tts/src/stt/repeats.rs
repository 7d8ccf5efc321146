//! Whisper's repetition loops, collapsed: without temperature fallback a small model can
//! repeat a phrase, a sentence, or a cycle of two or three sentences until its token budget
//! runs out ("I would like to talk to a person. Please. I would like to talk to a person.
//! Please. Please."). Each segment is collapsed as it is decoded, and text joined from
//! several segments (a transcript turn, a voicemail) again: each loop is kept once.
//!
//! A model given an initial prompt also *restarts*: once the audio's words are out it
//! begins the utterance again and the token cap cuts it off ("Do you have wheelchair
//! access? Do you have"). Measured on 30 held-out utterances of a neural voice, tiny.en
//! with the receptionist's prompt: 25 % WER, nearly all restarts, against 2.3 % without
//! the prompt (BENCHMARKS.md). A tail after a sentence end that begins like the utterance
//! itself and is no longer than what came before is such a restart and is dropped.

/// The longest cycle of sentences looked for.
const MAX_CYCLE: usize = 3;

/// `text` with every run of a repeated sentence, or of a repeated cycle of up to three
/// sentences, kept once, then, if what is left is one phrase over and over, that phrase
/// once. Sentences end at `.`, `?` or `!`; they compare case-insensitively and without
/// their punctuation. Text without repeats comes back unchanged.
pub fn collapse_repeats(text: &str) -> String {
    restart(&one_phrase_loop(&sentence_loops(text)))
}

/// Words compared case-insensitively, without punctuation.
fn word_key(w: &str) -> String {
    w.trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// `text` without a restart (see the module docs): after a sentence end at word `k`
/// (k ≥ 2), the rest has at most `k + 1` words, and its first two or more words are the
/// utterance's first words, all of it or all but its last word matching. A caller's own
/// restart ("I'd like to book. I'd like to book an appointment for Tuesday.") goes on past
/// what it repeats and is kept.
fn restart(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let key: Vec<String> = words.iter().map(|w| word_key(w)).collect();
    for k in 2..words.len() {
        if !words[k - 1].ends_with(['.', '?', '!']) {
            continue;
        }
        let tail = &key[k..];
        if tail.len() > k + 1 {
            continue;
        }
        let same = tail.iter().zip(&key).take_while(|(a, b)| a == b).count();
        if same >= 2 && same + 1 >= tail.len() {
            return words[..k].join(" ");
        }
    }
    text.to_owned()
}

fn sentence_loops(text: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut dropped = false;
    for sentence in sentences(text) {
        kept.push(sentence);
        while let Some(k) = (1..=MAX_CYCLE).find(|&k| repeats(&kept, k)) {
            kept.truncate(kept.len() - k);
            dropped = true;
        }
    }
    if dropped {
        kept.join(" ")
    } else {
        text.to_owned()
    }
}

/// A text that is one phrase over and over is a decoding loop (the token cap may cut the
/// last repetition short); keep the phrase once. People do repeat short words ("no no
/// no", "five five five"), so a phrase under three words must fill at least four
/// repetitions to count as a loop, a longer one two.
fn one_phrase_loop(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let key: Vec<String> = words.iter().map(|w| word_key(w)).collect();
    for period in 1..=key.len() / 2 {
        let min_reps = if period >= 3 { 2 } else { 4 };
        if key.len() >= min_reps * period && (period..key.len()).all(|i| key[i] == key[i - period])
        {
            return words[..period].join(" ");
        }
    }
    text.to_owned()
}

/// Whether the last `k` sentences repeat the `k` before them.
fn repeats(kept: &[&str], k: usize) -> bool {
    let n = kept.len();
    n >= 2 * k && (0..k).all(|i| same(kept[n - k + i], kept[n - 2 * k + i]))
}

fn same(a: &str, b: &str) -> bool {
    let key = |s: &str| {
        s.chars()
            .filter(|c| c.is_alphanumeric() || c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    key(a).split_whitespace().eq(key(b).split_whitespace())
}

/// The sentences of `text`, each with its closing punctuation, trimmed: a sentence ends at
/// `.`, `?` or `!` followed by a space or the end (so "3.5" and "a.m." stay whole).
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let at_break = chars.peek().is_none_or(|&(_, next)| next.is_whitespace());
        if matches!(c, '.' | '?' | '!') && at_break {
            out.push(text[start..i + c.len_utf8()].trim());
            start = i + c.len_utf8();
        }
    }
    out.push(text[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::collapse_repeats;

    #[test]
    fn a_phrase_over_and_over_is_kept_once_and_real_text_stays() {
        assert_eq!(collapse_repeats("No No No No"), "No");
        assert_eq!(
            collapse_repeats("Thank you. Thank you. Thank you. Thank you."),
            "Thank you."
        );
        assert_eq!(
            collapse_repeats("I want a person. I want a person."),
            "I want a person."
        );
        assert_eq!(collapse_repeats("five five five"), "five five five");
        assert_eq!(
            collapse_repeats("thank you thank you"),
            "thank you thank you"
        );
        assert_eq!(
            collapse_repeats("Yes, that works for me."),
            "Yes, that works for me."
        );
        assert_eq!(collapse_repeats("no no maybe"), "no no maybe");
        assert_eq!(
            collapse_repeats("I'm eating here, I'm eating here, I'm eating"),
            "I'm eating here,"
        );
    }

    #[test]
    fn loops_of_one_two_or_three_sentences_are_kept_once() {
        assert_eq!(
            collapse_repeats(
                "I would like to talk to a person. Please. I would like to talk to a person. \
                 Please. I would like to talk to a person. Please. Please. Please. Please"
            ),
            "I would like to talk to a person. Please."
        );
        assert_eq!(collapse_repeats("Yes. yes! Yes."), "Yes.");
        assert_eq!(collapse_repeats("A. B. C. A. B. C. A. B. C."), "A. B. C.");
    }

    #[test]
    fn a_restart_cut_off_by_the_token_cap_is_dropped() {
        for (heard, meant) in [
            ("Do you have wheelchair access? Do you have", "Do you have wheelchair access?"),
            (
                "Is there a bus stop near the clinic? Is there a bus stop near",
                "Is there a bus stop near the clinic?",
            ),
            (
                "Do you accept Delta dental insurance? Do you accept Delta dental insurance insurance?",
                "Do you accept Delta dental insurance?",
            ),
            (
                "could you repeat that, please? Please. Could you",
                "could you repeat that, please? Please.",
            ),
        ] {
            assert_eq!(collapse_repeats(heard), meant, "{heard}");
        }
    }

    #[test]
    fn a_callers_own_restart_or_answer_is_kept() {
        for text in [
            "I'd like to book. I'd like to book an appointment for Tuesday.",
            "Yes. Yes, that's right.",
            "Tuesday. Tuesday at three.",
            "No, not Monday. No, Tuesday.",
        ] {
            assert_eq!(collapse_repeats(text), text);
        }
    }

    #[test]
    fn text_without_a_loop_is_unchanged() {
        for text in [
            "Please call me back about my crown tomorrow morning.",
            "No. Yes. No.",
            "At ten thirty. Ten thirty in the morning.",
            "It is 3.5  miles,  at 9 a.m. sharp.",
            "",
        ] {
            assert_eq!(collapse_repeats(text), text);
        }
    }
}
