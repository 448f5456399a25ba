//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): headers `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`,
//! one space-separated entry per active secret during a rotation. Secrets are `whsec_` +
//! base64 of 32 random bytes; the HMAC key is the decoded bytes.
//!
//! The asymmetric scheme `v1a` signs the same content (`{id}.{timestamp}.{body}`) with
//! ed25519: `webhook-signature: v1a,<base64 of the 64-byte signature>`. Its signing key is
//! `whsk_` + base64 of the 64-byte key pair (seed followed by the public key, as libsodium
//! writes it; a bare 32-byte seed is read too); the receiver verifies with the public key,
//! `whpk_` + base64 of its 32 bytes, which the API serves. Both schemes may sign one request:
//! each entry names its scheme, and verifiers skip the entries of schemes they do not know.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";
pub const SECRET_BYTES: usize = 32;
/// An ed25519 signing key (`v1a`).
pub const SIGNING_KEY_PREFIX: &str = "whsk_";
/// An ed25519 public key (`v1a`), for receivers.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("secret does not start with `whsec_`")]
    Prefix,
    #[error("secret is not base64 after `whsec_`")]
    Encoding,
    #[error("secret must decode to 24..=64 bytes")]
    Length,
    #[error("signing key is not `whsk_` + base64 of a 32-byte seed or a 64-byte key pair")]
    SigningKey,
    #[error("public key is not `whpk_` + base64 of 32 bytes of an ed25519 point")]
    PublicKey,
}

/// A key that signs: an HMAC secret (`v1`) or an ed25519 key (`v1a`).
#[derive(Clone)]
pub enum Key {
    Hmac(Vec<u8>),
    Ed25519(ed25519_dalek::SigningKey),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Hmac(_) => f.write_str("Key::Hmac(…)"),
            Key::Ed25519(k) => write!(f, "Key::Ed25519({})", public_key_of(k)),
        }
    }
}

impl Key {
    /// The key a stored secret holds, by its prefix (`whsec_` or `whsk_`).
    pub fn from_secret(secret: &str) -> Result<Key, SigningError> {
        if secret.starts_with(SIGNING_KEY_PREFIX) {
            ed25519_key(secret).map(Key::Ed25519)
        } else {
            secret_key(secret).map(Key::Hmac)
        }
    }

    /// One `v1,…` or `v1a,…` signature entry.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        match self {
            Key::Hmac(k) => sign(k, msg_id, timestamp, body),
            Key::Ed25519(k) => sign_v1a(k, msg_id, timestamp, body),
        }
    }
}

/// The `webhook-signature` header value: one entry per key, space-separated.
pub fn signatures(keys: &[Key], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter().map(|k| k.sign(msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// A new ed25519 signing key from the OS random generator: `whsk_` + base64(seed ‖ public).
pub fn generate_signing_key() -> String {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    seed.fill(0);
    format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(key.to_keypair_bytes()))
}

/// Decodes a `whsk_` key (64-byte key pair, checked for consistency, or 32-byte seed).
pub fn ed25519_key(secret: &str) -> Result<ed25519_dalek::SigningKey, SigningError> {
    let b64 = secret.strip_prefix(SIGNING_KEY_PREFIX).ok_or(SigningError::SigningKey)?;
    let bytes = STANDARD.decode(b64).map_err(|_| SigningError::SigningKey)?;
    match bytes.len() {
        32 => Ok(ed25519_dalek::SigningKey::from_bytes(bytes.as_slice().try_into().expect("32 bytes"))),
        64 => ed25519_dalek::SigningKey::from_keypair_bytes(bytes.as_slice().try_into().expect("64 bytes"))
            .map_err(|_| SigningError::SigningKey),
        _ => Err(SigningError::SigningKey),
    }
}

fn public_key_of(key: &ed25519_dalek::SigningKey) -> String {
    format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(key.verifying_key().as_bytes()))
}

/// The `whpk_` public key of a `whsk_` signing key.
pub fn public_key(secret: &str) -> Result<String, SigningError> {
    ed25519_key(secret).map(|k| public_key_of(&k))
}

/// Decodes a `whpk_` public key.
pub fn parse_public_key(public: &str) -> Result<ed25519_dalek::VerifyingKey, SigningError> {
    let b64 = public.strip_prefix(PUBLIC_KEY_PREFIX).ok_or(SigningError::PublicKey)?;
    let bytes: [u8; 32] =
        STANDARD.decode(b64).map_err(|_| SigningError::PublicKey)?.try_into().map_err(|_| SigningError::PublicKey)?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| SigningError::PublicKey)
}

fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let ts = timestamp.to_string();
    let mut m = Vec::with_capacity(msg_id.len() + ts.len() + body.len() + 2);
    m.extend_from_slice(msg_id.as_bytes());
    m.push(b'.');
    m.extend_from_slice(ts.as_bytes());
    m.push(b'.');
    m.extend_from_slice(body);
    m
}

/// One `v1a,<base64 ed25519 signature>` entry.
pub fn sign_v1a(key: &ed25519_dalek::SigningKey, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    use ed25519_dalek::Signer;
    let sig = key.sign(&signed_content(msg_id, timestamp, body));
    format!("v1a,{}", STANDARD.encode(sig.to_bytes()))
}

/// True when any `v1a` entry of `header` verifies under `public` (strict verification:
/// no malleable signatures, no small-order keys).
pub fn verify_v1a(
    public: &ed25519_dalek::VerifyingKey,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let content = signed_content(msg_id, timestamp, body);
    header.split(' ').filter_map(|e| e.strip_prefix("v1a,")).any(|b64| {
        let Ok(bytes) = STANDARD.decode(b64) else { return false };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&bytes) else { return false };
        public.verify_strict(&content, &sig).is_ok()
    })
}

/// A new secret from the OS random generator.
pub fn generate_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// Decodes a `whsec_` secret to its key bytes.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, SigningError> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).ok_or(SigningError::Prefix)?;
    let key = STANDARD.decode(b64).map_err(|_| SigningError::Encoding)?;
    if !(24..=64).contains(&key.len()) {
        return Err(SigningError::Length);
    }
    Ok(key)
}

/// One `v1,<base64>` signature.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header value: one signature per key, space-separated.
pub fn signature_header<'a>(
    keys: impl IntoIterator<Item = &'a [u8]>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    keys.into_iter().map(|k| sign(k, msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// True when any entry of `header` is a valid v1 signature under `key` (constant-time compare).
pub fn verify(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let expected = sign(key, msg_id, timestamp, body);
    header.split(' ').any(|candidate| {
        candidate.len() == expected.len()
            && candidate.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specs_test_vector() {
        // From the Standard Webhooks specification's reference test.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_signs_with_every_key() {
        let a = secret_key(&generate_secret()).unwrap();
        let b = secret_key(&generate_secret()).unwrap();
        let header = signature_header([a.as_slice(), b.as_slice()], "msg_1", 10, b"body");
        assert!(verify(&a, "msg_1", 10, b"body", &header));
        assert!(verify(&b, "msg_1", 10, b"body", &header));
        assert!(!verify(&a, "msg_1", 11, b"body", &header));
        assert!(!verify(&a, "msg_1", 10, b"bodx", &header));
    }

    #[test]
    fn v1a_signs_the_standard_content_and_verifies_with_the_public_key() {
        let sk = generate_signing_key();
        assert!(sk.starts_with("whsk_"));
        let pk = public_key(&sk).unwrap();
        assert!(pk.starts_with("whpk_"));
        let public = parse_public_key(&pk).unwrap();
        let key = Key::from_secret(&sk).unwrap();
        let hmac = Key::from_secret(&generate_secret()).unwrap();
        let header = signatures(&[hmac.clone(), key], "msg_1", 10, b"body");
        let entries: Vec<&str> = header.split(' ').collect();
        assert!(entries[0].starts_with("v1,") && entries[1].starts_with("v1a,"), "{header}");
        assert!(verify_v1a(&public, "msg_1", 10, b"body", &header));
        assert!(!verify_v1a(&public, "msg_1", 11, b"body", &header));
        assert!(!verify_v1a(&public, "msg_2", 10, b"body", &header));
        assert!(!verify_v1a(&public, "msg_1", 10, b"bodx", &header));
        // The HMAC entry still verifies beside it; another key pair does not.
        let Key::Hmac(h) = &hmac else { unreachable!() };
        assert!(verify(h, "msg_1", 10, b"body", &header));
        let other = parse_public_key(&public_key(&generate_signing_key()).unwrap()).unwrap();
        assert!(!verify_v1a(&other, "msg_1", 10, b"body", &header));
        // Independently of this module: ed25519 over `id.timestamp.body`, as the spec says.
        use ed25519_dalek::Verifier;
        let sig = header.split(' ').find_map(|e| e.strip_prefix("v1a,")).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&STANDARD.decode(sig).unwrap()).unwrap();
        public.verify(b"msg_1.10.body", &sig).unwrap();
        // A 32-byte seed reads as the same key as its 64-byte pair.
        let pair = STANDARD.decode(sk.strip_prefix("whsk_").unwrap()).unwrap();
        let seed_only = format!("whsk_{}", STANDARD.encode(&pair[..32]));
        assert_eq!(public_key(&seed_only).unwrap(), pk);
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(ed25519_key("whsec_abc").unwrap_err(), SigningError::SigningKey);
        assert_eq!(ed25519_key("whsk_YWJj").unwrap_err(), SigningError::SigningKey);
        // A 64-byte pair whose public half is not the seed's.
        let mut pair = STANDARD.decode(generate_signing_key().strip_prefix("whsk_").unwrap()).unwrap();
        pair[40] ^= 1;
        assert_eq!(ed25519_key(&format!("whsk_{}", STANDARD.encode(&pair))).unwrap_err(), SigningError::SigningKey);
        assert_eq!(parse_public_key("whpk_YWJj").unwrap_err(), SigningError::PublicKey);
        assert!(format!("{:?}", Key::from_secret(&generate_signing_key()).unwrap()).contains("whpk_"));
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert_eq!(secret_key("sk_abc"), Err(SigningError::Prefix));
        assert_eq!(secret_key("whsec_!!"), Err(SigningError::Encoding));
        assert_eq!(secret_key("whsec_YWJj"), Err(SigningError::Length));
        assert!(generate_secret().starts_with("whsec_"));
    }
}
