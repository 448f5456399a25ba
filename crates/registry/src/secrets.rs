//! Signing secrets at rest: encrypted with AES-256-GCM under a master key supplied by the
//! deployment (`HOOKMESH_MASTER_KEY`, 32 bytes in base64) before they are written to the
//! config topic, and decrypted when a view applies a record. A stored secret reads
//! `enc:v1:<key id>:<base64(nonce ‖ ciphertext)>`; the key id is the first 8 hex digits of the
//! key's SHA-256, so a view knows which key to use.
//!
//! # Rotating the master key
//! 1. Make a new key (`hookmesh token master-key`), deploy every service with it as
//!    `HOOKMESH_MASTER_KEY` and the old one in `HOOKMESH_MASTER_KEYS_OLD`.
//! 2. The router re-encrypts every webhook under the new key when it starts.
//! 3. Once it logged `secrets re-encrypted`, drop the old key from the deployment.
//!
//! Without a master key secrets are stored in clear and a warning is logged at start.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "enc:v1:";

#[derive(Clone)]
struct Key {
    id: String,
    cipher: Aes256Gcm,
}

/// The master key and the retired ones still accepted for reading.
#[derive(Clone)]
pub struct SecretCipher {
    current: Key,
    old: Vec<Key>,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretCipher(current {}, {} old)", self.current.id, self.old.len())
    }
}

fn key(field: &str, b64: &str) -> Result<Key, String> {
    let bytes = STANDARD.decode(b64.trim()).map_err(|_| format!("{field}: not base64"))?;
    if bytes.len() != 32 {
        return Err(format!("{field}: must decode to 32 bytes, got {}", bytes.len()));
    }
    let id: String = Sha256::digest(&bytes).iter().take(4).map(|b| format!("{b:02x}")).collect();
    Ok(Key { id, cipher: Aes256Gcm::new_from_slice(&bytes).expect("32-byte key") })
}

/// A new random master key, base64.
pub fn new_master_key() -> String {
    let mut k = [0u8; 32];
    rand::rng().fill_bytes(&mut k);
    STANDARD.encode(k)
}

impl SecretCipher {
    pub fn new(current_b64: &str, old_b64: &[String]) -> Result<SecretCipher, String> {
        let current = key("master_key", current_b64)?;
        let old = old_b64
            .iter()
            .enumerate()
            .map(|(i, k)| key(&format!("master_keys_old[{i}]"), k))
            .collect::<Result<_, _>>()?;
        Ok(SecretCipher { current, old })
    }

    pub fn encrypt(&self, secret: &str) -> String {
        if secret.starts_with(PREFIX) {
            return secret.to_string();
        }
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self.current.cipher.encrypt(Nonce::from_slice(&nonce), secret.as_bytes()).expect("AES-GCM encrypts");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        format!("{PREFIX}{}:{}", self.current.id, STANDARD.encode(blob))
    }

    /// The clear secret; plain (never encrypted) values pass through.
    pub fn decrypt(&self, stored: &str) -> Result<String, String> {
        let Some(rest) = stored.strip_prefix(PREFIX) else { return Ok(stored.to_string()) };
        let (id, b64) = rest.split_once(':').ok_or("malformed encrypted secret")?;
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
            .ok_or_else(|| format!("encrypted under master key {id}, which this deployment does not have"))?;
        let blob = STANDARD.decode(b64).map_err(|_| "malformed encrypted secret")?;
        if blob.len() < 12 {
            return Err("malformed encrypted secret".into());
        }
        let clear = key
            .cipher
            .decrypt(Nonce::from_slice(&blob[..12]), &blob[12..])
            .map_err(|_| format!("secret does not decrypt under master key {id}"))?;
        String::from_utf8(clear).map_err(|_| "decrypted secret is not UTF-8".to_string())
    }

    /// True when `stored` is not encrypted under the current key (needs re-encryption).
    pub fn is_stale(&self, stored: &str) -> bool {
        !stored.starts_with(&format!("{PREFIX}{}:", self.current.id))
    }
}

/// Decrypts when a cipher is configured; plain values pass through either way.
pub fn open(cipher: Option<&SecretCipher>, stored: &str) -> Result<String, String> {
    match cipher {
        Some(c) => c.decrypt(stored),
        None if stored.starts_with(PREFIX) => {
            Err("secret is encrypted but no master key is configured (HOOKMESH_MASTER_KEY)".into())
        }
        None => Ok(stored.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_rotation_and_wrong_keys() {
        let k1 = new_master_key();
        let k2 = new_master_key();
        let c1 = SecretCipher::new(&k1, &[]).unwrap();
        let sealed = c1.encrypt("whsec_abc");
        assert!(sealed.starts_with("enc:v1:") && !sealed.contains("whsec_abc"));
        assert_eq!(c1.decrypt(&sealed).unwrap(), "whsec_abc");
        assert_ne!(c1.encrypt("whsec_abc"), sealed, "fresh nonce each time");
        // After rotation the old key still reads, and the value is stale.
        let c2 = SecretCipher::new(&k2, std::slice::from_ref(&k1)).unwrap();
        assert_eq!(c2.decrypt(&sealed).unwrap(), "whsec_abc");
        assert!(c2.is_stale(&sealed) && !c2.is_stale(&c2.encrypt("whsec_abc")));
        // Without the key it is refused with a reason, never garbage.
        let c3 = SecretCipher::new(&k2, &[]).unwrap();
        assert!(c3.decrypt(&sealed).unwrap_err().contains("does not have"));
        assert!(open(None, &sealed).is_err());
        assert_eq!(open(None, "whsec_x").unwrap(), "whsec_x");
        assert!(SecretCipher::new("c2hvcnQ=", &[]).unwrap_err().starts_with("master_key"));
    }
}
