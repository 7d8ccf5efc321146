//! DKIM signing of what we send (RFC 6376), through lettre's signer.
//!
//! An account may carry a key: every message it sends then gets a `DKIM-Signature` for
//! `d={domain}; s={selector}` (the domain defaults to our address's), `rsa-sha256` or
//! `ed25519-sha256` (RFC 8463), relaxed/relaxed canonicalization (it survives relays that
//! fold headers or re-wrap whitespace). The signed headers are the ones a reader trusts and a
//! thread depends on: From, To, Subject, Date, Message-ID, In-Reply-To, References and
//! MIME-Version (a header named but absent is signed as absent, so it cannot be added on the
//! way). Not Content-Type: lettre writes a multipart message's Content-Type with the body, after
//! signing, so naming it would sign it as absent and every multipart signature would fail
//! (dkimpy caught this in the email suite); the body hash still covers every part and its
//! boundary.
//!
//! The key is read once, when the account is built, so a bad key is a configuration error at
//! `channel add`, never a failed send. RSA keys come as PEM, PKCS#1 (`BEGIN RSA PRIVATE KEY`,
//! what `openssl genrsa -traditional` writes) or PKCS#8 (`BEGIN PRIVATE KEY`, what
//! `openssl genpkey` writes; converted here, since lettre takes PKCS#1 only); an Ed25519 key
//! is the base64 of its 32-byte seed.

use crate::Secret;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::HeaderName;
use serde::{Deserialize, Serialize};

/// The headers every signature covers.
const SIGNED: [&str; 8] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
];

/// An account's DKIM key, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSettings {
    /// The selector: the key is published at `{selector}._domainkey.{domain}`.
    pub selector: String,
    /// The signing domain (`d=`); the address's domain when absent.
    #[serde(default)]
    pub domain: Option<String>,
    /// The private key (see the module docs for the forms taken). Never logged or returned.
    pub private_key: Secret,
}

impl DkimSettings {
    /// The signer for mail from `address`, or why the settings cannot sign.
    pub fn signer(&self, address: &str) -> Result<DkimConfig, String> {
        let selector = self.selector.trim();
        if selector.is_empty() || !selector.split('.').all(is_label) {
            return Err("dkim.selector must be a DNS label like `mail2026`".into());
        }
        let domain = match &self.domain {
            Some(d) => d.trim().to_ascii_lowercase(),
            None => address
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default(),
        };
        if domain.is_empty() || !domain.split('.').all(is_label) {
            return Err("dkim.domain must be a domain name".into());
        }
        let key = signing_key(self.private_key.expose())?;
        let headers = SIGNED
            .iter()
            .map(|h| HeaderName::new_from_ascii_str(h))
            .collect();
        let relaxed = DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        };
        Ok(DkimConfig::new(
            selector.to_string(),
            domain,
            key,
            headers,
            relaxed,
        ))
    }
}

fn is_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads a private key in any of the forms the module docs list.
fn signing_key(text: &str) -> Result<DkimSigningKey, String> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let text = text.trim();
    let bad = |e: &dyn std::fmt::Display| format!("dkim.private_key: {e}");
    if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
        return DkimSigningKey::new(text, DkimSigningAlgorithm::Rsa).map_err(|e| bad(&e));
    }
    if text.contains("-----BEGIN PRIVATE KEY-----") {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(text)
            .map_err(|e| bad(&format!("not an RSA PKCS#8 key ({e})")))?;
        let pkcs1 = key
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .map_err(|e| bad(&e))?;
        return DkimSigningKey::new(&pkcs1, DkimSigningAlgorithm::Rsa).map_err(|e| bad(&e));
    }
    if text.starts_with("-----BEGIN") {
        return Err(bad(
            &"an RSA private key in PEM (PKCS#1 or PKCS#8) is expected",
        ));
    }
    DkimSigningKey::new(text, DkimSigningAlgorithm::Ed25519)
        .map_err(|_| bad(&"neither a PEM RSA key nor the base64 of a 32-byte Ed25519 seed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(key: &str) -> DkimSettings {
        DkimSettings {
            selector: "s1".into(),
            domain: None,
            private_key: Secret::new(key),
        }
    }

    #[test]
    fn an_ed25519_seed_signs_and_bad_keys_are_refused_with_a_reason() {
        use base64::Engine;
        let seed = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(settings(&seed).signer("a@acme.test").is_ok());
        for (key, why) in [
            ("", "neither"),
            ("c2hvcnQ=", "neither"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                "PEM",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----",
                "dkim.private_key",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
                "PKCS#8",
            ),
        ] {
            let e = settings(key).signer("a@acme.test").unwrap_err();
            assert!(e.contains(why), "{key:?}: {e}");
        }
    }

    #[test]
    fn selector_and_domain_are_checked() {
        use base64::Engine;
        let seed = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let mut s = settings(&seed);
        s.selector = "bad selector".into();
        assert!(s.signer("a@acme.test").unwrap_err().contains("selector"));
        s.selector = "mail._x".into();
        s.domain = Some("bad/domain".into());
        assert!(s.signer("a@acme.test").unwrap_err().contains("domain"));
        s.domain = None;
        assert!(s.signer("a@acme.test").is_ok());
    }
}
