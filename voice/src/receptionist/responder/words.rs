//! Words as the responder compares them: lower case, punctuation gone (but `3:30` kept),
//! `p.m.` as `pm`, a light stem, and a forgiving comparison for words that whisper tends to
//! misspell by a letter.

/// The words of `text`, lower-cased, split on anything but letters, digits, `'` and a `:`
/// between digits. `a.m.`/`p.m.` become `am`/`pm`; `o'clock` stays one word.
pub fn tokens(text: &str) -> Vec<String> {
    let lower = text
        .to_lowercase()
        .replace("a.m.", " am ")
        .replace("p.m.", " pm ")
        .replace("a.m", " am ")
        .replace("p.m", " pm ")
        .replace(['’', '‘'], "'");
    let chars: Vec<char> = lower.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let digit_colon = (c == ':' || c == '.')
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if c.is_alphanumeric() || c == '\'' || digit_colon {
            word.push(if c == '.' { ':' } else { c });
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out.into_iter()
        .map(|w| w.trim_matches('\'').to_owned())
        .filter(|w| !w.is_empty())
        .flat_map(split_suffix)
        .collect()
}

/// `3pm` → `3`, `pm`; `8th` stays (an ordinal); `what's` → `what`, `is`.
fn split_suffix(w: String) -> Vec<String> {
    for suffix in ["am", "pm"] {
        if let Some(num) = w.strip_suffix(suffix) {
            if !num.is_empty() && num.chars().all(|c| c.is_ascii_digit() || c == ':') {
                return vec![num.to_owned(), suffix.to_owned()];
            }
        }
    }
    if let Some(head) = w.strip_suffix("'s") {
        if matches!(
            head,
            "what" | "that" | "it" | "there" | "where" | "who" | "let"
        ) {
            return vec![head.to_owned(), "is".to_owned()];
        }
        return vec![head.to_owned()];
    }
    if let Some(head) = w.strip_suffix("'re") {
        return vec![head.to_owned(), "are".to_owned()];
    }
    if let Some(head) = w.strip_suffix("'d") {
        return vec![head.to_owned(), "would".to_owned()];
    }
    if let Some(head) = w.strip_suffix("'ll") {
        return vec![head.to_owned(), "will".to_owned()];
    }
    vec![w]
}

/// A crude stem: plural and verb endings off, so `appointments`/`booking`/`opened` meet
/// `appointment`/`book`/`open`.
pub fn stem(word: &str) -> String {
    let w = word;
    for (suffix, min) in [
        ("ings", 5),
        ("ing", 5),
        ("ies", 4),
        ("ed", 5),
        ("es", 5),
        ("s", 4),
    ] {
        if w.len() >= min + suffix.len() - 1 && w.ends_with(suffix) && !w.ends_with("ss") {
            let head = &w[..w.len() - suffix.len()];
            return match suffix {
                "ies" => format!("{head}y"),
                _ => head.to_owned(),
            };
        }
    }
    w.to_owned()
}

/// Words that carry no topic.
pub fn is_stopword(w: &str) -> bool {
    const STOP: &[&str] = &[
        "a", "an", "the", "i", "me", "my", "you", "your", "we", "our", "us", "is", "are", "am",
        "was", "be", "do", "does", "did", "to", "of", "in", "on", "at", "for", "and", "or", "it",
        "this", "that", "can", "could", "would", "will", "there", "what", "how", "please", "hi",
        "hello", "hey", "um", "uh", "so", "just", "like", "with", "about", "any", "have", "has",
        "get", "want", "need", "know", "tell", "if", "some", "im", "id", "yes", "no", "okay", "ok",
        "well", "oh", "then", "thank", "thanks", "is", "s", "may", "should",
    ];
    STOP.contains(&w)
}

/// The content words of `text`, stemmed.
pub fn content_words(text: &str) -> Vec<String> {
    tokens(text)
        .iter()
        .filter(|w| !is_stopword(w))
        .map(|w| stem(w))
        .collect()
}

/// Edit distance, capped: returns `cap + 1` once it is certain to exceed `cap`.
pub fn distance(a: &str, b: &str, cap: usize) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > cap {
        return cap + 1;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        if cur.iter().min().is_some_and(|&m| m > cap) {
            return cap + 1;
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Whether a heard word is `want`, forgiving one wrong letter in words of six or more
/// letters and two in words of ten or more (whisper's typical slips on robotic voices).
pub fn sounds_like(heard: &str, want: &str) -> bool {
    if heard == want {
        return true;
    }
    let cap = match want.chars().count() {
        0..=5 => return false,
        6..=9 => 1,
        _ => 2,
    };
    distance(heard, want, cap) <= cap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_times_and_fold_meridiem() {
        assert_eq!(
            tokens("Next Tuesday at 3:30 p.m., please!"),
            ["next", "tuesday", "at", "3:30", "pm", "please"]
        );
        assert_eq!(tokens("at 3pm"), ["at", "3", "pm"]);
        assert_eq!(tokens("3.30 PM"), ["3:30", "pm"]);
        assert_eq!(
            tokens("What's your address?"),
            ["what", "is", "your", "address"]
        );
        assert_eq!(tokens("four o'clock"), ["four", "o'clock"]);
        assert_eq!(tokens("the 8th."), ["the", "8th"]);
        assert!(tokens("  ...  ").is_empty());
    }

    #[test]
    fn stems_meet() {
        assert_eq!(stem("appointments"), "appointment");
        assert_eq!(stem("booking"), "book");
        assert_eq!(stem("hours"), "hour");
        assert_eq!(stem("address"), "address");
        assert_eq!(stem("deliveries"), "delivery");
        assert_eq!(stem("is"), "is");
    }

    #[test]
    fn near_misses_are_forgiven_only_in_long_words() {
        assert!(sounds_like("appointmint", "appointment"));
        assert!(sounds_like("adress", "address"));
        assert!(!sounds_like("hours", "house"));
        assert!(!sounds_like("cat", "car"));
        assert_eq!(distance("kitten", "sitting", 5), 3);
        assert_eq!(distance("a", "abcdef", 2), 3);
    }
}
