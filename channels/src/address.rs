//! Address checks shared by the phone-number channels (SMS, WhatsApp).

/// Accepts an E.164 number (`+` and 7 to 15 digits) and returns it unchanged; a bare digit
/// string of that length gets its `+` (WhatsApp ids are numbers without it).
pub fn normalize_e164(s: &str) -> Result<String, String> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(format!("+{digits}"))
    } else {
        Err("must be an E.164 number like +15551234567".to_string())
    }
}

/// Whether a provider-sent address is safe to store: short, no control characters.
pub fn is_storable(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        assert_eq!(normalize_e164("+15551234567").unwrap(), "+15551234567");
        assert_eq!(normalize_e164("15551234567").unwrap(), "+15551234567");
        for bad in [
            "",
            "+",
            "+1555",
            "+1555123456789012",
            "+1555-123-4567",
            "+0551234567",
        ] {
            assert!(normalize_e164(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn storable() {
        assert!(is_storable("+15551234567"));
        assert!(!is_storable(""));
        assert!(!is_storable("a\nb"));
        assert!(!is_storable(&"1".repeat(65)));
    }
}
