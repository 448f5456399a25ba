//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): headers `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`,
//! one space-separated entry per active secret during a rotation. Secrets are `whsec_` +
//! base64 of 32 random bytes; the HMAC key is the decoded bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";
pub const SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("secret does not start with `whsec_`")]
    Prefix,
    #[error("secret is not base64 after `whsec_`")]
    Encoding,
    #[error("secret must decode to 24..=64 bytes")]
    Length,
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
    fn bad_secrets_are_refused() {
        assert_eq!(secret_key("sk_abc"), Err(SigningError::Prefix));
        assert_eq!(secret_key("whsec_!!"), Err(SigningError::Encoding));
        assert_eq!(secret_key("whsec_YWJj"), Err(SigningError::Length));
        assert!(generate_secret().starts_with("whsec_"));
    }
}
