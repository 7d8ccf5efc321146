//! Provider credentials encrypted at rest: each stored account configuration (auth tokens,
//! API keys, app secrets) is sealed with AES-256-GCM (ring) under a key from the configuration
//! (`secret_keys`, `DARTWING_SECRET_KEYS`), bound to its org and provider as associated data
//! so a sealed value cannot be moved to another org's row.
//!
//! `secret_keys` is `ID:BASE64[,ID:BASE64…]` (32-byte keys; `dartwing-gateway secrets
//! generate-key` makes one). The first key seals; every listed key opens. Rotation: put the
//! new key first and keep the old one after it, run `dartwing-gateway secrets rotate` (it
//! re-seals every account under the first key), then drop the old key. Without keys,
//! configurations are stored as they are (plaintext) and the gateway warns at start-up; rows
//! sealed earlier cannot be read until the key is given again.
//!
//! Stored form: `enc:v1:ID:BASE64(nonce ‖ ciphertext ‖ tag)`.

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use std::sync::OnceLock;

const PREFIX: &str = "enc:v1:";

/// Why a key list or a sealed value is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// `secret_keys` is malformed.
    #[error("secret_keys: {0}")]
    BadKeys(String),
    /// A value is sealed under a key that is not configured.
    #[error("sealed under key `{0}`, which secret_keys does not list")]
    UnknownKey(String),
    /// A value does not open (wrong key, another row's value, or damaged).
    #[error("a sealed value does not open (wrong key, another row's value, or damaged)")]
    Damaged,
    /// A value is sealed and no keys are configured.
    #[error("a sealed value needs secret_keys (DARTWING_SECRET_KEYS)")]
    NoKeys,
}

/// The configured keys, the first sealing.
pub struct Keyring {
    keys: Vec<(String, LessSafeKey)>,
}

impl Keyring {
    /// Parses `ID:BASE64[,ID:BASE64…]`; `None` for an empty list.
    pub fn parse(spec: &str) -> Result<Option<Keyring>, SecretError> {
        let mut keys = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, b64) = part
                .split_once(':')
                .ok_or_else(|| SecretError::BadKeys("each key is ID:BASE64".into()))?;
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(SecretError::BadKeys(format!(
                    "key id `{id}`: use letters, digits and '-'"
                )));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| SecretError::BadKeys(format!("key `{id}` is not base64")))?;
            let key = UnboundKey::new(&AES_256_GCM, &raw)
                .map_err(|_| SecretError::BadKeys(format!("key `{id}` is not 32 bytes")))?;
            if keys.iter().any(|(k, _)| k == id) {
                return Err(SecretError::BadKeys(format!("key id `{id}` appears twice")));
            }
            keys.push((id.to_string(), LessSafeKey::new(key)));
        }
        Ok((!keys.is_empty()).then_some(Keyring { keys }))
    }

    /// Seals `plain` for the row of (`org_id`, `provider`) under the first key.
    pub fn seal(&self, org_id: &str, provider: &str, plain: &str) -> String {
        let (id, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random source works");
        let mut buf = plain.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(org_id, provider)),
            &mut buf,
        )
        .expect("AES-GCM seals any length we store");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!(
            "{PREFIX}{id}:{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// Opens a sealed value of the row (`org_id`, `provider`).
    pub fn open(&self, org_id: &str, provider: &str, sealed: &str) -> Result<String, SecretError> {
        let rest = sealed.strip_prefix(PREFIX).ok_or(SecretError::Damaged)?;
        let (id, b64) = rest.split_once(':').ok_or(SecretError::Damaged)?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| SecretError::UnknownKey(id.to_string()))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| SecretError::Damaged)?;
        if raw.len() < NONCE_LEN {
            return Err(SecretError::Damaged);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Damaged)?;
        let mut buf = ct.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(aad(org_id, provider)), &mut buf)
            .map_err(|_| SecretError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Damaged)
    }

    /// Whether `stored` is sealed under the first (current) key.
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|r| r.split_once(':'))
            .is_some_and(|(id, _)| id == self.keys[0].0)
    }

    /// A stored value re-sealed under the first key (`secrets rotate`); `None` when it is
    /// sealed under it already. A plaintext value is sealed.
    pub fn reseal(
        &self,
        org_id: &str,
        provider: &str,
        stored: &str,
    ) -> Result<Option<String>, SecretError> {
        if self.is_current(stored) {
            return Ok(None);
        }
        let plain = match is_sealed(stored) {
            true => self.open(org_id, provider, stored)?,
            false => stored.to_owned(),
        };
        Ok(Some(self.seal(org_id, provider, &plain)))
    }
}

fn aad(org_id: &str, provider: &str) -> Vec<u8> {
    format!("channel_accounts/{org_id}/{provider}").into_bytes()
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

static KEYRING: OnceLock<Option<Keyring>> = OnceLock::new();

/// Installs the process's keys (once; later calls keep the first). Start-up and the CLI call
/// it with the configuration's `secret_keys`.
pub fn install(spec: &str) -> Result<(), SecretError> {
    let ring = Keyring::parse(spec)?;
    let _ = KEYRING.set(ring);
    Ok(())
}

/// The installed keys, if any.
pub fn keyring() -> Option<&'static Keyring> {
    KEYRING.get().and_then(Option::as_ref)
}

/// Seals a configuration for storage (as it is when no keys are installed).
pub fn seal(org_id: &str, provider: &str, plain: &str) -> String {
    match keyring() {
        Some(k) => k.seal(org_id, provider, plain),
        None => plain.to_string(),
    }
}

/// Opens a stored configuration (a plaintext one is returned as it is).
pub fn open(org_id: &str, provider: &str, stored: &str) -> Result<String, SecretError> {
    if !is_sealed(stored) {
        return Ok(stored.to_string());
    }
    keyring()
        .ok_or(SecretError::NoKeys)?
        .open(org_id, provider, stored)
}

/// A new key: 32 random bytes, base64.
pub fn generate_key() -> String {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).expect("the operating system's random source works");
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_refuses_what_it_must() {
        let (a, b) = (generate_key(), generate_key());
        let ring = Keyring::parse(&format!("new:{a},old:{b}"))
            .unwrap()
            .unwrap();
        let old = Keyring::parse(&format!("old:{b}")).unwrap().unwrap();
        let secret = r#"{"auth_token":"tok-123"}"#;
        let sealed = ring.seal("org1", "twilio", secret);
        assert!(sealed.starts_with("enc:v1:new:") && !sealed.contains("tok-123"));
        assert_eq!(ring.open("org1", "twilio", &sealed).unwrap(), secret);
        assert!(ring.is_current(&sealed));
        // Another org's row, another provider, a flipped byte: refused.
        assert_eq!(
            ring.open("org2", "twilio", &sealed),
            Err(SecretError::Damaged)
        );
        assert_eq!(
            ring.open("org1", "telnyx", &sealed),
            Err(SecretError::Damaged)
        );
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert_eq!(
            ring.open("org1", "twilio", &flipped),
            Err(SecretError::Damaged)
        );
        // Sealed under the old key: the ring opens it (rotation), the old ring alone cannot
        // open what the new key sealed.
        let by_old = old.seal("org1", "twilio", secret);
        assert_eq!(ring.open("org1", "twilio", &by_old).unwrap(), secret);
        assert!(!ring.is_current(&by_old));
        assert_eq!(
            old.open("org1", "twilio", &sealed),
            Err(SecretError::UnknownKey("new".into()))
        );
        // Two seals of one value differ (fresh nonces).
        assert_ne!(sealed, ring.seal("org1", "twilio", secret));
    }

    #[test]
    fn bad_key_lists_are_refused() {
        assert!(Keyring::parse("").unwrap().is_none());
        for bad in ["nocolon", "k:notbase64!", "k:AAAA", ":AAAA", "a b:AAAA"] {
            assert!(Keyring::parse(bad).is_err(), "{bad}");
        }
        let k = generate_key();
        assert!(
            Keyring::parse(&format!("k:{k},k:{k}")).is_err(),
            "duplicate ids"
        );
    }
}
