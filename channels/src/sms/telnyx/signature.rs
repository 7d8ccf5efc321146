//! Telnyx webhook signatures: the `telnyx-signature-ed25519` header is the base64 Ed25519
//! signature of `{telnyx-timestamp}|{raw body}`, made with Telnyx's key and checked with the
//! account's public key (base64, 32 bytes, from the Mission Control portal). A timestamp more
//! than [`TOLERANCE_SECS`] away from now is refused, so a captured webhook cannot be replayed.

use base64::Engine;
use ring::signature::{UnparsedPublicKey, ED25519};

/// How far a webhook's timestamp may be from our clock, in seconds.
pub const TOLERANCE_SECS: i64 = 300;

/// Decodes a base64 Ed25519 public key; `None` unless it is 32 bytes.
pub fn public_key(base64_key: &str) -> Option<Vec<u8>> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(base64_key.trim())
        .ok()?;
    (key.len() == 32).then_some(key)
}

/// Checks a webhook: the timestamp is fresh and the signature is Telnyx's over it and the body.
pub fn verify(public_key: &[u8], timestamp: &str, body: &[u8], signature: &str, now: i64) -> bool {
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    if (now - ts).abs() > TOLERANCE_SECS {
        return false;
    }
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let mut signed = Vec::with_capacity(timestamp.len() + 1 + body.len());
    signed.extend_from_slice(timestamp.trim().as_bytes());
    signed.push(b'|');
    signed.extend_from_slice(body);
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&signed, &sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn keypair() -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap()
    }

    fn sign(kp: &Ed25519KeyPair, ts: &str, body: &[u8]) -> String {
        let msg = [ts.as_bytes(), b"|", body].concat();
        base64::engine::general_purpose::STANDARD.encode(kp.sign(&msg).as_ref())
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 §7.1 TEST 1: empty message.
        let pk = hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .unwrap();
        let sig = hex::decode(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        )
        .unwrap();
        assert!(UnparsedPublicKey::new(&ED25519, &pk)
            .verify(b"", &sig)
            .is_ok());
    }

    #[test]
    fn fresh_and_signed_only() {
        let kp = keypair();
        let pk = kp.public_key().as_ref().to_vec();
        let body = br#"{"data":{"event_type":"message.received"}}"#;
        let now = 1_700_000_000;
        let ts = now.to_string();
        let sig = sign(&kp, &ts, body);
        assert!(verify(&pk, &ts, body, &sig, now));
        assert!(verify(&pk, &ts, body, &sig, now + 300));
        assert!(!verify(&pk, &ts, body, &sig, now + 301), "stale");
        assert!(!verify(&pk, &ts, body, &sig, now - 301), "from the future");
        assert!(
            !verify(&pk, &ts, br#"{"data":{}}"#, &sig, now),
            "other body"
        );
        assert!(
            !verify(&pk, &(now + 1).to_string(), body, &sig, now),
            "other timestamp"
        );
        let other = Ed25519KeyPair::from_seed_unchecked(&[8u8; 32]).unwrap();
        assert!(
            !verify(&pk, &ts, body, &sign(&other, &ts, body), now),
            "other key"
        );
        assert!(!verify(&pk, "x", body, &sig, now));
        assert!(!verify(&pk, &ts, body, "%%%", now));
    }

    #[test]
    fn public_keys_are_32_bytes() {
        let kp = keypair();
        let b64 = base64::engine::general_purpose::STANDARD.encode(kp.public_key().as_ref());
        assert_eq!(public_key(&b64).unwrap(), kp.public_key().as_ref());
        assert!(public_key("AAAA").is_none());
        assert!(public_key("not base64!").is_none());
    }
}
