//! STOP / START / HELP: the carrier-mandated SMS keywords, as Twilio recognizes them by default.
//!
//! A message whose whole body (trimmed, any case, trailing punctuation ignored) is one of these
//! words is a keyword; a sentence that merely contains "stop" is not.

/// A recognized keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// The contact no longer wants messages from this organization.
    OptOut,
    /// The contact wants messages again.
    OptIn,
    /// The contact asks what this is.
    Help,
}

impl Keyword {
    /// The stable name used in events and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::OptOut => "opt_out",
            Keyword::OptIn => "opt_in",
            Keyword::Help => "help",
        }
    }
}

const OPT_OUT: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "OPTOUT",
    "REVOKE",
];
const OPT_IN: &[&str] = &["START", "YES", "UNSTOP"];
const HELP: &[&str] = &["HELP", "INFO"];

/// Classifies a message body.
pub fn classify(body: &str) -> Option<Keyword> {
    let word = body
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_punctuation())
        .trim();
    if word.is_empty() || word.len() > 16 {
        return None;
    }
    let upper = word.to_ascii_uppercase();
    let is = |list: &[&str]| list.contains(&upper.as_str());
    if is(OPT_OUT) {
        Some(Keyword::OptOut)
    } else if is(OPT_IN) {
        Some(Keyword::OptIn)
    } else if is(HELP) {
        Some(Keyword::Help)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_body_keywords_in_any_case() {
        assert_eq!(classify("STOP"), Some(Keyword::OptOut));
        assert_eq!(classify("  stop. "), Some(Keyword::OptOut));
        assert_eq!(classify("Unsubscribe!"), Some(Keyword::OptOut));
        assert_eq!(classify("start"), Some(Keyword::OptIn));
        assert_eq!(classify("Unstop"), Some(Keyword::OptIn));
        assert_eq!(classify("help?"), Some(Keyword::Help));
        assert_eq!(classify("INFO"), Some(Keyword::Help));
    }

    #[test]
    fn keyword_names_are_stable() {
        // Persisted in events and the database: a rename is a migration.
        assert_eq!(Keyword::OptOut.as_str(), "opt_out");
        assert_eq!(Keyword::OptIn.as_str(), "opt_in");
        assert_eq!(Keyword::Help.as_str(), "help");
    }

    #[test]
    fn sentences_are_not_keywords() {
        assert_eq!(classify("please stop calling me at work"), None);
        assert_eq!(classify("stopped"), None);
        assert_eq!(classify(""), None);
        assert_eq!(classify("!!!"), None);
    }
}
