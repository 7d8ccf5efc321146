//! DTMF carried in SIP INFO bodies: `application/dtmf-relay` (`Signal=5` / `Duration=160`)
//! and `application/dtmf` (the bare digit). Pure.

/// An INFO request's digit (if its body carries one) and our answer to it: 200, or 415
/// naming the bodies we read. Shared by every call that takes INFO in its dialog.
pub fn answer(
    message: &crate::sip::message::Inbound,
) -> (Option<char>, crate::sip::response::ResponseParts<'static>) {
    use crate::sip::response::ResponseParts;
    let content_type = message.head.get("Content-Type").unwrap_or_default();
    match digit(content_type, &message.body) {
        Some(d) => (Some(d), ResponseParts::new(200, "OK")),
        None => (
            None,
            ResponseParts::new(415, "Unsupported Media Type")
                .header("Accept", "application/dtmf-relay, application/dtmf"),
        ),
    }
}

/// The digit of an INFO body of this content type, if it carries one.
pub fn digit(content_type: &str, body: &[u8]) -> Option<char> {
    let body = std::str::from_utf8(body).ok()?;
    let content_type = content_type.split(';').next()?.trim().to_ascii_lowercase();
    let raw = match content_type.as_str() {
        "application/dtmf-relay" => body.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| value.trim())
        })?,
        "application/dtmf" => body.trim(),
        _ => return None,
    };
    match raw {
        "10" => Some('*'),
        "11" => Some('#'),
        s if s.len() == 1 => {
            let c = s.chars().next()?.to_ascii_uppercase();
            matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::digit;

    #[test]
    fn reads_dtmf_relay_and_plain_dtmf() {
        assert_eq!(
            digit("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(digit("Application/DTMF-Relay", b"Signal= #\r\n"), Some('#'));
        assert_eq!(digit("application/dtmf", b"11"), Some('#'));
        assert_eq!(digit("application/dtmf", b"x"), None);
        assert_eq!(digit("text/plain", b"Signal=5"), None);
        assert_eq!(digit("application/dtmf-relay", b"Duration=160"), None);
    }
}
