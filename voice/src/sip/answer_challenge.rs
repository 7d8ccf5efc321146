//! Digest authentication from the client's side (RFC 3261 §22.2 with RFC 2617's MD5): a SIP
//! trunk answers our INVITE 401 (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`), and we
//! send it again with `Authorization` or `Proxy-Authorization` computed from our username
//! and password. The response arithmetic is the server side's ([`super::digest`]), so the
//! two cannot disagree.
//!
//! Only MD5 (or no `algorithm`) and `qop=auth` (or no qop) are answered: a challenge that
//! asks for anything else (`auth-int`, SHA-256) is reported as unanswerable, and the call as
//! refused with the trunk's status, rather than sent with credentials it would refuse anyway.

use super::digest::{expected_response, ha1, params_of, Credentials};

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// The server offered `qop=auth` (alone or among others).
    pub qop_auth: bool,
    /// The nonce was stale: the same credentials are good with the new one.
    pub stale: bool,
}

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("not a Digest challenge")]
    NotDigest,
    #[error("challenge without {0}")]
    Missing(&'static str),
    #[error("unsupported algorithm {0}")]
    Algorithm(String),
    #[error("unsupported qop {0}")]
    Qop(String),
}

/// Parses `Digest realm="..", nonce="..", qop="auth", opaque="..", stale=TRUE`.
pub fn parse_challenge(value: &str) -> Result<Challenge, ChallengeError> {
    let rest = value.trim();
    let (scheme, params) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(ChallengeError::NotDigest);
    }
    let mut c = Challenge::default();
    let mut qop = None;
    for (name, value) in params_of(params) {
        match name.to_ascii_lowercase().as_str() {
            "realm" => c.realm = value,
            "nonce" => c.nonce = value,
            "opaque" => c.opaque = Some(value),
            "stale" => c.stale = value.eq_ignore_ascii_case("true"),
            "qop" => qop = Some(value),
            "algorithm" if !value.eq_ignore_ascii_case("MD5") => {
                return Err(ChallengeError::Algorithm(value));
            }
            _ => {}
        }
    }
    if c.nonce.is_empty() {
        return Err(ChallengeError::Missing("nonce"));
    }
    if let Some(qop) = qop {
        c.qop_auth = qop
            .split(',')
            .any(|q| q.trim().eq_ignore_ascii_case("auth"));
        if !c.qop_auth {
            return Err(ChallengeError::Qop(qop));
        }
    }
    Ok(c)
}

/// Our account at the trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    pub password: String,
}

/// The `Authorization` / `Proxy-Authorization` value answering `challenge` for a request
/// `method` to `uri`; `cnonce` is the client's random nonce, `nc` how many times this
/// nonce has been used by us (1 for the first).
pub fn authorization(
    account: &Account,
    challenge: &Challenge,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let mut c = Credentials {
        username: account.username.clone(),
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: uri.to_owned(),
        algorithm: Some("MD5".into()),
        ..Credentials::default()
    };
    if challenge.qop_auth {
        c.qop = Some("auth".into());
        c.nc = Some(format!("{nc:08x}"));
        c.cnonce = Some(cnonce.to_owned());
    }
    let secret = ha1(&account.username, &challenge.realm, &account.password);
    let response = expected_response(&secret, method, &c);
    let quoted = |s: &str| s.replace(['"', '\\', '\r', '\n'], "");
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", \
         algorithm=MD5",
        quoted(&c.username),
        quoted(&c.realm),
        quoted(&c.nonce),
        quoted(uri),
    );
    if let (Some(nc), Some(cnonce)) = (&c.nc, &c.cnonce) {
        out.push_str(&format!(
            ", qop=auth, nc={nc}, cnonce=\"{}\"",
            quoted(cnonce)
        ));
    }
    if let Some(opaque) = &challenge.opaque {
        out.push_str(&format!(", opaque=\"{}\"", quoted(opaque)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::digest::{parse_authorization, verify};

    fn mufasa() -> Account {
        Account {
            username: "Mufasa".into(),
            password: "Circle Of Life".into(),
        }
    }

    /// RFC 2617 §3.5's worked example, from the client's side.
    #[test]
    fn answers_rfc2617s_example() {
        let c = parse_challenge(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int",
               nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
               opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert!(c.qop_auth && !c.stale);
        let header = authorization(&mufasa(), &c, "GET", "/dir/index.html", "0a4f113b", 1);
        assert!(
            header.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{header}"
        );
        assert!(header.contains("nc=00000001") && header.contains("opaque=\"5ccc"));
        // The server side accepts what the client side made.
        let parsed = parse_authorization(&header).unwrap();
        let stored = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert!(verify(&stored, "GET", &parsed));
        assert!(!verify(&stored, "INVITE", &parsed), "bound to the method");
    }

    #[test]
    fn without_qop_the_rfc2069_response_is_sent() {
        let c = parse_challenge(r#"Digest realm="sip.example", nonce="abc", stale=TRUE"#).unwrap();
        assert!(c.stale && !c.qop_auth);
        let header = authorization(&mufasa(), &c, "INVITE", "sip:1@h", "x", 1);
        assert!(
            !header.contains("qop") && !header.contains("cnonce"),
            "{header}"
        );
        let parsed = parse_authorization(&header).unwrap();
        assert!(verify(
            &ha1("Mufasa", "sip.example", "Circle Of Life"),
            "INVITE",
            &parsed
        ));
    }

    #[test]
    fn challenges_we_cannot_answer_are_refused() {
        let e = |v: &str| parse_challenge(v).unwrap_err();
        assert_eq!(e("Basic realm=\"x\""), ChallengeError::NotDigest);
        assert_eq!(e("Digest realm=\"x\""), ChallengeError::Missing("nonce"));
        assert_eq!(
            e("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-256"),
            ChallengeError::Algorithm("SHA-256".into())
        );
        assert_eq!(
            e("Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\""),
            ChallengeError::Qop("auth-int".into())
        );
    }

    #[test]
    fn a_hostile_challenge_cannot_break_the_header() {
        let c = Challenge {
            realm: "r\"\r\nX-Evil: 1".into(),
            nonce: "n".into(),
            ..Challenge::default()
        };
        let header = authorization(&mufasa(), &c, "INVITE", "sip:1@h", "x", 1);
        assert!(!header.contains('\r') && !header.contains('\n'));
        assert_eq!(header.matches('"').count() % 2, 0, "{header}");
    }
}
