//! The email step's confirm link: `{recipient}.{expires}.{mac}`, an HMAC-SHA256 over the
//! recipient id and expiry with the broadcast's own key (random, stored with it). A link
//! works once (the recipient is confirmed; a second click only says so), and not after it
//! expires.

use ring::hmac;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three parts, not hex, not a number.
    #[error("the link is malformed")]
    Malformed,
    /// The signature does not match.
    #[error("the link's signature is not valid")]
    BadSignature,
    /// Past its expiry.
    #[error("the link has expired")]
    Expired,
}

fn mac(key: &[u8], recipient: &str, expires: i64) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, format!("{recipient}.{expires}").as_bytes())
}

/// A signed token for `recipient`, valid until `expires` (Unix ms).
pub fn sign(key: &[u8], recipient: &str, expires: i64) -> String {
    format!(
        "{recipient}.{expires}.{}",
        hex::encode(mac(key, recipient, expires))
    )
}

/// The recipient id a token names, without checking it (to find its broadcast's key).
pub fn recipient_of(token: &str) -> Result<&str, TokenError> {
    let (r, _) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if r.is_empty() || r.len() > 64 || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(TokenError::Malformed);
    }
    Ok(r)
}

/// Checks a token with its broadcast's key at `now` (Unix ms); the recipient id.
pub fn verify<'t>(key: &[u8], token: &'t str, now: i64) -> Result<&'t str, TokenError> {
    let mut parts = token.split('.');
    let (Some(r), Some(e), Some(m), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let expires: i64 = e.parse().map_err(|_| TokenError::Malformed)?;
    let tag = hex::decode(m).map_err(|_| TokenError::Malformed)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::verify(&key, format!("{r}.{expires}").as_bytes(), &tag)
        .map_err(|_| TokenError::BadSignature)?;
    if now > expires {
        return Err(TokenError::Expired);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_until_they_expire() {
        let t = sign(b"k1", "r-1", 1_000);
        assert_eq!(recipient_of(&t), Ok("r-1"));
        assert_eq!(verify(b"k1", &t, 999), Ok("r-1"));
        assert_eq!(verify(b"k1", &t, 1_001), Err(TokenError::Expired));
        assert_eq!(verify(b"k2", &t, 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampering_is_refused() {
        let t = sign(b"k1", "r-1", 1_000);
        let longer = t.replace(".1000.", ".9999.");
        assert_eq!(verify(b"k1", &longer, 0), Err(TokenError::BadSignature));
        let other = t.replacen("r-1", "r-2", 1);
        assert_eq!(verify(b"k1", &other, 0), Err(TokenError::BadSignature));
        for bad in ["", "a.b", "r.1.zz", "r.x.00", "r.1.00.extra"] {
            assert!(verify(b"k1", bad, 0).is_err(), "{bad}");
        }
        assert_eq!(recipient_of("../etc.1.00"), Err(TokenError::Malformed));
    }
}
