//! Threading keys and mail classification, as pure functions over header values.
//!
//! A reply names its parents by Message-ID (`In-Reply-To`, then `References` oldest first);
//! the runtime looks those ids up among the same contact's messages, nearest parent first
//! ([`reference_chain`]). Clients that drop the headers still keep the subject, so the
//! runtime falls back to [`normalize_subject`] — only within the same contact and a time
//! window, never across contacts.

/// Longest Message-ID kept; a longer one is not an id (it is a hostile header).
pub const MAX_ID_LEN: usize = 250;

/// Most ancestors kept in `References` (first and last ones are what clients need).
pub const MAX_REFERENCES: usize = 20;

/// A Message-ID without its angle brackets and whitespace, or `None` when it is empty,
/// too long, or holds characters no id has.
pub fn normalize_id(raw: &str) -> Option<String> {
    let id = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>'));
    ok.then(|| id.to_string())
}

/// The ids a reply names, nearest parent first: `In-Reply-To`, then `References` from the
/// newest ancestor back to the root. Duplicates and malformed ids are dropped.
pub fn reference_chain(in_reply_to: &[String], references: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in in_reply_to.iter().chain(references.iter().rev()) {
        if let Some(id) = normalize_id(id) {
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

/// `References` for a reply to a message with `parent_id` and the parent's own references:
/// the parent's chain plus the parent, the root kept when it has to be shortened.
pub fn references_for_reply(parent_references: &[String], parent_id: &str) -> Vec<String> {
    let mut refs: Vec<String> = parent_references
        .iter()
        .filter_map(|r| normalize_id(r))
        .collect();
    refs.push(parent_id.to_string());
    refs.dedup();
    if refs.len() > MAX_REFERENCES {
        let tail = refs.split_off(refs.len() - (MAX_REFERENCES - 1));
        refs.truncate(1);
        refs.extend(tail);
    }
    refs
}

/// Reply and forward prefixes of the common clients and languages (`Re`, `Fwd`, `AW`, `SV`…).
const PREFIXES: &[&str] = &[
    "re", "fw", "fwd", "aw", "wg", "sv", "vs", "antw", "doorst", "tr", "rif", "ref", "odp", "r",
    "enc", "res",
];

/// The subject with reply/forward prefixes (`Re:`, `RE[2]:`, `Fwd:`, `AW:`), list tags
/// (`[list]`) and extra whitespace removed, lowercased: equal for every message of a thread.
pub fn normalize_subject(subject: &str) -> String {
    let mut s = subject.trim();
    loop {
        let before = s;
        if let Some(rest) = s.strip_prefix('[') {
            if let Some(end) = rest.find(']') {
                s = rest[end + 1..].trim_start();
            }
        }
        if let Some(colon) = s.find(':') {
            let word = s[..colon].trim();
            let base = word.split('[').next().unwrap_or(word).trim();
            if PREFIXES.iter().any(|p| base.eq_ignore_ascii_case(p)) {
                s = s[colon + 1..].trim_start();
            }
        }
        if s == before {
            break;
        }
    }
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether the subject carries a reply prefix (`Re:` and its translations).
pub fn is_reply_subject(subject: &str) -> bool {
    let s = subject.trim_start();
    s.find(':').is_some_and(|colon| {
        let word = s[..colon].trim();
        let base = word.split('[').next().unwrap_or(word).trim();
        ["re", "aw", "sv", "vs", "antw", "r", "res", "odp", "rif"]
            .iter()
            .any(|p| base.eq_ignore_ascii_case(p))
    })
}

/// The subject of our reply to a message with `subject`: `Re: ` once, never `Re: Re:`.
pub fn reply_subject(subject: &str) -> String {
    let s = subject.trim();
    if s.is_empty() {
        "Re: (no subject)".into()
    } else if is_reply_subject(s) {
        s.to_string()
    } else {
        format!("Re: {s}")
    }
}

/// Why a message is an automatic one, from its headers (RFC 3834 `Auto-Submitted`, the
/// de-facto `X-Autoreply`/`X-Autorespond`, `Precedence: bulk|junk|list|auto_reply`), or
/// `None` for a message a person wrote. `header` answers a header's raw value by name.
pub fn auto_reply_reason<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
    if let Some(v) = header("Auto-Submitted") {
        let v = v.trim().to_ascii_lowercase();
        if !v.is_empty() && !v.starts_with("no") {
            return Some(format!("Auto-Submitted: {v}"));
        }
    }
    for name in ["X-Autoreply", "X-Autorespond"] {
        if let Some(v) = header(name) {
            let v = v.trim().to_ascii_lowercase();
            if !v.is_empty() && v != "no" {
                return Some(format!("{name}: {v}"));
            }
        }
    }
    if let Some(v) = header("Precedence") {
        let v = v.trim().to_ascii_lowercase();
        if matches!(v.as_str(), "bulk" | "junk" | "list" | "auto_reply") {
            return Some(format!("Precedence: {v}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(normalize_id(" <a.b@c> ").as_deref(), Some("a.b@c"));
        assert_eq!(normalize_id("a@c").as_deref(), Some("a@c"));
        assert_eq!(normalize_id("<>"), None);
        assert_eq!(normalize_id("<a b@c>"), None);
        assert_eq!(normalize_id(&"x".repeat(300)), None);
    }

    #[test]
    fn chains_nearest_parent_first() {
        let chain = reference_chain(
            &["<p@x>".into()],
            &[
                "<root@x>".into(),
                "<mid@x>".into(),
                "<p@x>".into(),
                "bad id".into(),
            ],
        );
        assert_eq!(chain, vec!["p@x", "mid@x", "root@x"]);
    }

    #[test]
    fn reply_references_keep_the_root() {
        let parents: Vec<String> = (0..30).map(|i| format!("m{i}@x")).collect();
        let refs = references_for_reply(&parents, "p@x");
        assert_eq!(refs.len(), MAX_REFERENCES);
        assert_eq!(refs[0], "m0@x");
        assert_eq!(refs.last().unwrap(), "p@x");
        assert_eq!(references_for_reply(&[], "p@x"), vec!["p@x"]);
    }

    #[test]
    fn subjects() {
        for s in [
            "Order 42",
            "Re: Order 42",
            "RE: re: Order  42",
            "AW: Order 42",
            "Fwd: Re: Order 42",
            "[support] Re: Order 42",
            "Re[2]: Order 42",
            "SV:Order 42",
        ] {
            assert_eq!(normalize_subject(s), "order 42", "{s}");
        }
        assert_eq!(normalize_subject("Re: Regarding: x"), "regarding: x");
        assert_eq!(normalize_subject(""), "");
        assert!(is_reply_subject("Re: x") && is_reply_subject("AW: x"));
        assert!(!is_reply_subject("Fwd: x") && !is_reply_subject("Regarding x"));
        assert_eq!(reply_subject("Re: x"), "Re: x");
        assert_eq!(reply_subject("x"), "Re: x");
    }

    #[test]
    fn auto_replies() {
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| *v)
            }
        };
        assert!(auto_reply_reason(h(&[("Auto-Submitted", "auto-replied")])).is_some());
        assert!(auto_reply_reason(h(&[("Auto-Submitted", "no")])).is_none());
        assert!(auto_reply_reason(h(&[("X-Autoreply", "yes")])).is_some());
        assert!(auto_reply_reason(h(&[("Precedence", "bulk")])).is_some());
        assert!(auto_reply_reason(h(&[("Precedence", "auto_reply")])).is_some());
        assert!(auto_reply_reason(h(&[("Precedence", "first-class")])).is_none());
        assert!(auto_reply_reason(h(&[])).is_none());
        assert!(auto_reply_reason(h(&[("X-Autorespond", " No ")])).is_none());
        assert!(auto_reply_reason(h(&[("X-Autoreply", " ")])).is_none());
        assert!(auto_reply_reason(h(&[("Auto-Submitted", " ")])).is_none());
        assert_eq!(
            auto_reply_reason(h(&[("X-Autorespond", "Yes")])).as_deref(),
            Some("X-Autorespond: yes")
        );
    }
}
