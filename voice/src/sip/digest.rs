//! HTTP Digest authentication for SIP (RFC 2617 with MD5, as RFC 8760 keeps for SIP):
//! parsing `Authorization`, computing and checking responses from a stored HA1 (a
//! password is never stored), and nonces that carry their issue time and an MD5 signature
//! over (secret, issue time, the client's IP), so a nonce is short-lived and only good from
//! the address it was issued to. Replays are refused by [`NonceCounts`]: with `qop=auth`
//! every use of a nonce carries a higher `nc`. Every comparison of secrets runs in
//! constant time. Pure: the caller passes the time and the secret (from the OS's CSPRNG).

use md5::{Digest, Md5};
use std::collections::HashMap;
use std::net::IpAddr;

/// MD5 of `parts` joined by `:`, as lowercase hex.
pub(crate) fn md5_hex(parts: &[&str]) -> String {
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
pub(crate) fn params_of(input: &str) -> Vec<(String, String)> {
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
    constant_time_eq(
        expected.as_bytes(),
        c.response.to_ascii_lowercase().as_bytes(),
    )
}

/// Compares every byte, so the time taken does not say where two secrets differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

/// Issues and checks nonces: `<issued at, hex seconds>.<MD5(secret:issued:client IP)>`.
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

    /// How long a nonce is good for.
    pub fn max_age_secs(&self) -> u64 {
        self.max_age_secs
    }

    /// A nonce for a client at `client`.
    pub fn issue(&self, now_secs: u64, client: IpAddr) -> String {
        let issued = format!("{now_secs:x}");
        let signature = md5_hex(&[&self.secret, &issued, &client.to_string()]);
        format!("{issued}.{signature}")
    }

    /// Whether `nonce` is ours, issued to `client`, and young enough.
    pub fn check(&self, nonce: &str, now_secs: u64, client: IpAddr) -> NonceCheck {
        let Some((issued, signature)) = nonce.split_once('.') else {
            return NonceCheck::Invalid;
        };
        let expected = md5_hex(&[&self.secret, issued, &client.to_string()]);
        if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
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

/// The highest `nc` used with each live nonce (as a key: the nonce and the client's
/// `cnonce`): a second use of a count (a replayed Authorization, which copies both) is
/// refused. Nonces are stateless (issued second and client IP), so phones behind one address
/// that register in the same second share one; each counts under its own `cnonce`, and a
/// forged `cnonce` fails the response check before its count is looked at. Bounded: entries older than the nonce lifetime are dropped,
/// and when `capacity` live nonces are tracked a new one is refused (the client is
/// challenged again later) rather than the table growing.
#[derive(Debug)]
pub struct NonceCounts {
    seen: HashMap<String, (u64, u32)>,
    capacity: usize,
}

impl NonceCounts {
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: HashMap::new(),
            capacity,
        }
    }

    /// Records a use of `nonce` (valid, issued at most `max_age_secs` ago) with count `nc`
    /// (hex, as sent); false when that count (or a higher one) was used already.
    pub fn fresh(&mut self, nonce: &str, nc: &str, now_secs: u64, max_age_secs: u64) -> bool {
        let Ok(nc) = u32::from_str_radix(nc, 16) else {
            return false;
        };
        if let Some((_, last)) = self.seen.get_mut(nonce) {
            if nc <= *last {
                return false;
            }
            *last = nc;
            return true;
        }
        if self.seen.len() >= self.capacity {
            self.seen
                .retain(|_, (at, _)| now_secs.saturating_sub(*at) <= max_age_secs);
            if self.seen.len() >= self.capacity {
                return false;
            }
        }
        self.seen.insert(nonce.to_owned(), (now_secs, nc));
        true
    }
}

/// Failed authentications per source IP and per user over a sliding minute: past the
/// limit, further attempts are refused without checking, so guessing a password costs the
/// guesser a minute per few tries. Bounded like [`NonceCounts`].
#[derive(Debug)]
pub struct AuthThrottle {
    per_key: HashMap<String, (u64, u32)>,
    limit: u32,
    capacity: usize,
}

impl AuthThrottle {
    /// At most `limit` failures a minute per source and per user.
    pub fn new(limit: u32, capacity: usize) -> Self {
        Self {
            per_key: HashMap::new(),
            limit,
            capacity,
        }
    }

    fn count(&self, key: &str, now_secs: u64) -> u32 {
        match self.per_key.get(key) {
            Some((since, n)) if now_secs.saturating_sub(*since) < 60 => *n,
            _ => 0,
        }
    }

    /// Whether `source` and `user` may try again now.
    pub fn allowed(&self, source: IpAddr, user: &str, now_secs: u64) -> bool {
        self.count(&format!("ip:{source}"), now_secs) < self.limit
            && self.count(&format!("user:{user}"), now_secs) < self.limit
    }

    /// Counts a failed attempt.
    pub fn failed(&mut self, source: IpAddr, user: &str, now_secs: u64) {
        if self.per_key.len() >= self.capacity {
            self.per_key
                .retain(|_, (since, _)| now_secs.saturating_sub(*since) < 60);
        }
        for key in [format!("ip:{source}"), format!("user:{user}")] {
            if self.per_key.len() >= self.capacity && !self.per_key.contains_key(&key) {
                continue;
            }
            let entry = self.per_key.entry(key).or_insert((now_secs, 0));
            if now_secs.saturating_sub(entry.0) >= 60 {
                *entry = (now_secs, 0);
            }
            entry.1 += 1;
        }
    }
}

/// A secret for signing nonces, from the operating system's CSPRNG.
pub fn random_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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
        let base = r#"Digest username="a", realm="r", nonce="n", uri="u", response="x""#;
        // qop=auth needs both nc and cnonce.
        for extra in [", qop=auth, nc=00000001", ", qop=auth, cnonce=\"c\""] {
            assert_eq!(
                parse_authorization(&format!("{base}{extra}")),
                Err(DigestError::Missing { param: "nc/cnonce" }),
                "{extra}"
            );
        }
        let full = format!("{base}, qop=AUTH, nc=00000001, cnonce=\"c\", algorithm=md5");
        let c = parse_authorization(&full).unwrap();
        assert_eq!(
            (c.qop.as_deref(), c.cnonce.as_deref()),
            (Some("AUTH"), Some("c"))
        );
        assert!(matches!(
            parse_authorization(&format!("{base}, qop=auth-int, nc=1, cnonce=c")),
            Err(DigestError::Qop { .. })
        ));
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn nonces_are_signed_bound_to_the_client_and_expire() {
        let n = Nonces::new("secret".into(), 300);
        let nonce = n.issue(1_000, IP);
        assert_eq!(n.check(&nonce, 1_100, IP), NonceCheck::Valid);
        assert_eq!(n.check(&nonce, 1_301, IP), NonceCheck::Stale);
        let elsewhere: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(n.check(&nonce, 1_100, elsewhere), NonceCheck::Invalid);
        let forged = nonce.replace(&nonce[..3], "3e9");
        assert_eq!(n.check(&forged, 1_000, IP), NonceCheck::Invalid);
        assert_eq!(
            Nonces::new("other".into(), 300).check(&nonce, 1_000, IP),
            NonceCheck::Invalid
        );
        assert_eq!(n.check("garbage", 1_000, IP), NonceCheck::Invalid);
        assert_eq!(n.max_age_secs(), 300);
        // A client's clock a little ahead is tolerated (5 s), more is not.
        assert_eq!(n.check(&n.issue(1_005, IP), 1_000, IP), NonceCheck::Valid);
        assert_eq!(n.check(&n.issue(1_006, IP), 1_000, IP), NonceCheck::Stale);
        assert_eq!(
            n.check(&nonce, 1_300, IP),
            NonceCheck::Valid,
            "exactly max age"
        );
    }

    #[test]
    fn constant_time_eq_sees_every_difference() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        // Two differences whose bits would cancel under XOR-accumulation.
        assert!(!constant_time_eq(b"ab", b"`c"));
    }

    #[test]
    fn a_nonce_count_is_good_once_and_the_table_is_bounded() {
        let mut counts = NonceCounts::new(2);
        assert!(counts.fresh("n1", "00000001", 0, 60));
        assert!(!counts.fresh("n1", "00000001", 1, 60), "replayed nc");
        assert!(counts.fresh("n1", "00000002", 1, 60));
        assert!(!counts.fresh("n1", "zz", 1, 60));
        assert!(counts.fresh("n2", "00000001", 1, 60));
        assert!(
            !counts.fresh("n3", "00000001", 1, 60),
            "full of live nonces"
        );
        assert!(counts.fresh("n3", "00000001", 100, 60), "old ones dropped");
    }

    #[test]
    fn failures_are_throttled_per_source_and_per_user() {
        let mut t = AuthThrottle::new(3, 100);
        let other: IpAddr = "192.0.2.9".parse().unwrap();
        for _ in 0..3 {
            assert!(t.allowed(IP, "alice", 0));
            t.failed(IP, "alice", 0);
        }
        assert!(!t.allowed(IP, "bob", 10), "the source is throttled");
        assert!(!t.allowed(other, "alice", 10), "the user is throttled");
        assert!(t.allowed(other, "bob", 10));
        assert!(!t.allowed(IP, "alice", 59));
        assert!(t.allowed(IP, "alice", 60), "a minute later");
    }

    #[test]
    fn a_full_throttle_keeps_live_entries_and_frees_minute_old_ones() {
        let mut t = AuthThrottle::new(1, 2);
        let other: IpAddr = "192.0.2.9".parse().unwrap();
        t.failed(IP, "alice", 0);
        // Full of live entries: bob is not tracked, alice stays throttled.
        t.failed(other, "bob", 30);
        assert!(!t.allowed(IP, "alice", 30));
        assert!(t.allowed(other, "bob", 30));
        // A minute on, alice's entries make room and bob's failure counts.
        t.failed(other, "bob", 60);
        assert!(!t.allowed(other, "bob", 60));
        assert!(t.allowed(IP, "alice", 60));
    }

    #[test]
    fn challenges_name_realm_nonce_md5_and_auth() {
        assert_eq!(
            challenge("acme", "n1", false),
            r#"Digest realm="acme", nonce="n1", algorithm=MD5, qop="auth""#
        );
        assert_eq!(
            challenge("acme", "n1", true),
            r#"Digest realm="acme", nonce="n1", algorithm=MD5, qop="auth", stale=true"#
        );
    }

    #[test]
    fn secrets_come_from_the_os_and_differ() {
        let (a, b) = (random_secret().unwrap(), random_secret().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
