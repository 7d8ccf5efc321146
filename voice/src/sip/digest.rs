//! HTTP Digest authentication for SIP (RFC 2617 with MD5, as RFC 8760 keeps for SIP):
//! parsing `Authorization`, computing and checking responses from a stored HA1 (a
//! password is never stored), and stateless nonces that carry their issue time and an MD5
//! signature with a server secret, so that no nonce table is needed. Pure.

use md5::{Digest, Md5};

/// MD5 of `parts` joined by `:`, as lowercase hex.
fn md5_hex(parts: &[&str]) -> String {
    let mut hasher = Md5::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update(b":");
        }
        hasher.update(part.as_bytes());
    }
    format!("{:x}", hasher.finalize())
}

/// HA1 = MD5(username:realm:password), what a credential store keeps.
pub fn ha1(username: &str, realm: &str, password: &str) -> String {
    md5_hex(&[username, realm, password])
}

/// The parameters of a `Digest` Authorization header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
}

/// Why an Authorization header was refused before checking it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("not a Digest authorization")]
    NotDigest,
    #[error("missing {param}")]
    Missing { param: &'static str },
    #[error("unsupported algorithm {algorithm}")]
    Algorithm { algorithm: String },
    #[error("unsupported qop {qop}")]
    Qop { qop: String },
}

/// Parses `Digest username="..", realm="..", ...`.
pub fn parse_authorization(value: &str) -> Result<Credentials, DigestError> {
    let rest = value.trim();
    let (scheme, params) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(DigestError::NotDigest);
    }
    let mut c = Credentials::default();
    for (name, value) in params_of(params) {
        let slot = match name.to_ascii_lowercase().as_str() {
            "username" => &mut c.username,
            "realm" => &mut c.realm,
            "nonce" => &mut c.nonce,
            "uri" => &mut c.uri,
            "response" => &mut c.response,
            "algorithm" => c.algorithm.insert(String::new()),
            "qop" => c.qop.insert(String::new()),
            "nc" => c.nc.insert(String::new()),
            "cnonce" => c.cnonce.insert(String::new()),
            _ => continue,
        };
        *slot = value;
    }
    for (param, value) in [
        ("username", &c.username),
        ("realm", &c.realm),
        ("nonce", &c.nonce),
        ("uri", &c.uri),
        ("response", &c.response),
    ] {
        if value.is_empty() {
            return Err(DigestError::Missing { param });
        }
    }
    if let Some(algorithm) = &c.algorithm {
        if !algorithm.eq_ignore_ascii_case("MD5") {
            return Err(DigestError::Algorithm {
                algorithm: algorithm.clone(),
            });
        }
    }
    if let Some(qop) = &c.qop {
        if !qop.eq_ignore_ascii_case("auth") {
            return Err(DigestError::Qop { qop: qop.clone() });
        }
        if c.nc.is_none() || c.cnonce.is_none() {
            return Err(DigestError::Missing { param: "nc/cnonce" });
        }
    }
    Ok(c)
}

/// `name=value` pairs separated by commas, values optionally quoted.
fn params_of(input: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = input.trim();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((name.trim().to_owned(), value.trim().to_owned()));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// The response the client should have sent for `method`, given the stored HA1.
pub fn expected_response(ha1: &str, method: &str, c: &Credentials) -> String {
    let ha2 = md5_hex(&[method, &c.uri]);
    match (&c.qop, &c.nc, &c.cnonce) {
        (Some(qop), Some(nc), Some(cnonce)) => md5_hex(&[ha1, &c.nonce, nc, cnonce, qop, &ha2]),
        _ => md5_hex(&[ha1, &c.nonce, &ha2]),
    }
}

/// Whether the credentials prove knowledge of the password behind `ha1`.
pub fn verify(ha1: &str, method: &str, c: &Credentials) -> bool {
    let expected = expected_response(ha1, method, c);
    let given = c.response.to_ascii_lowercase();
    // Compare every byte, so the time taken does not say where they differ.
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// What a nonce check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Ours, but older than allowed: challenge again with `stale=true`.
    Stale,
    /// Not ours.
    Invalid,
}

/// Issues and checks stateless nonces: `<issued at, hex seconds>.<MD5(secret:issued)>`.
#[derive(Debug, Clone)]
pub struct Nonces {
    secret: String,
    max_age_secs: u64,
}

impl Nonces {
    pub fn new(secret: String, max_age_secs: u64) -> Self {
        Self {
            secret,
            max_age_secs,
        }
    }

    pub fn issue(&self, now_secs: u64) -> String {
        let issued = format!("{now_secs:x}");
        let signature = md5_hex(&[&self.secret, &issued]);
        format!("{issued}.{signature}")
    }

    pub fn check(&self, nonce: &str, now_secs: u64) -> NonceCheck {
        let Some((issued, signature)) = nonce.split_once('.') else {
            return NonceCheck::Invalid;
        };
        if md5_hex(&[&self.secret, issued]) != signature {
            return NonceCheck::Invalid;
        }
        match u64::from_str_radix(issued, 16) {
            Ok(at) if now_secs.saturating_sub(at) <= self.max_age_secs && at <= now_secs + 5 => {
                NonceCheck::Valid
            }
            Ok(_) => NonceCheck::Stale,
            Err(_) => NonceCheck::Invalid,
        }
    }
}

/// The `WWW-Authenticate` value of a challenge.
pub fn challenge(realm: &str, nonce: &str, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"{stale}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5's worked example.
    #[test]
    fn rfc2617_example_verifies() {
        let header = r#"Digest username="Mufasa", realm="testrealm@host.com",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth,
            nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1",
            opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let c = parse_authorization(header).unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        let stored = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(stored, "939e7578ed9e3c518a452acee763bce9");
        assert!(verify(&stored, "GET", &c));
        assert!(!verify(&stored, "POST", &c));
        let wrong = ha1("Mufasa", "testrealm@host.com", "circle of life");
        assert!(!verify(&wrong, "GET", &c));
    }

    #[test]
    fn refuses_what_it_cannot_check() {
        assert_eq!(
            parse_authorization("Basic abc"),
            Err(DigestError::NotDigest)
        );
        assert_eq!(
            parse_authorization(r#"Digest username="a", realm="r", nonce="n", uri="u""#),
            Err(DigestError::Missing { param: "response" })
        );
        let sha = r#"Digest username="a", realm="r", nonce="n", uri="u", response="x", algorithm=SHA-256"#;
        assert!(matches!(
            parse_authorization(sha),
            Err(DigestError::Algorithm { .. })
        ));
    }

    #[test]
    fn nonces_are_signed_and_expire() {
        let n = Nonces::new("secret".into(), 300);
        let nonce = n.issue(1_000);
        assert_eq!(n.check(&nonce, 1_100), NonceCheck::Valid);
        assert_eq!(n.check(&nonce, 1_301), NonceCheck::Stale);
        let forged = nonce.replace(&nonce[..3], "3e9");
        assert_eq!(n.check(&forged, 1_000), NonceCheck::Invalid);
        assert_eq!(
            Nonces::new("other".into(), 300).check(&nonce, 1_000),
            NonceCheck::Invalid
        );
        assert_eq!(n.check("garbage", 1_000), NonceCheck::Invalid);
    }
}
