//! What counts as an acknowledgement in a reply: `1`, `YES`, `Y`, `OK`, `ACK`, `CONFIRM`…,
//! case and punctuation tolerant (`yes!`, ` Ok. `, `"Confirmed"`), the whole reply and
//! nothing else — "yes but not tonight" is a message for a person, not a confirmation.

const WORDS: [&str; 10] = [
    "1",
    "y",
    "yes",
    "yep",
    "ok",
    "okay",
    "ack",
    "confirm",
    "confirmed",
    "received",
];

/// Whether a reply acknowledges.
pub fn is_ack(body: &str) -> bool {
    let word: String = body
        .trim()
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase();
    WORDS.contains(&word.as_str())
}

#[cfg(test)]
mod tests {
    use super::is_ack;

    #[test]
    fn tolerant_of_case_and_punctuation_not_of_sentences() {
        for yes in [
            "1",
            "YES",
            "yes!",
            " Ok. ",
            "\"Confirmed\"",
            "ACK",
            "y",
            "okay!!",
            "1.",
        ] {
            assert!(is_ack(yes), "{yes:?}");
        }
        for no in [
            "",
            "no",
            "2",
            "yes but not tonight",
            "STOP",
            "11",
            "o k",
            "yess",
        ] {
            assert!(!is_ack(no), "{no:?}");
        }
    }
}
