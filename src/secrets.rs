//! Sealing of OIDC client secrets between the request and the SageMaker call.
//!
//! SageMaker needs the client secret, and the call happens in a worker after the response to the
//! request was sent. The secret is therefore kept with the operation, encrypted with AES-256-GCM
//! under a key that never enters the database, and erased once SageMaker has accepted it.
//!
//! The idempotency layer compares a repeated request with the first by a hash. A secret in
//! the body enters that hash only as an HMAC under a key derived from the same key, so that
//! the stored hash cannot be used to test guesses of the secret.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::OidcSecret;

const NONCE_BYTES: usize = 12;
/// Input from which the fingerprint key is derived from the sealing key.
const FINGERPRINT_KEY_LABEL: &[u8] = b"workforce-service request fingerprint v1";

/// Encrypts and decrypts OIDC client secrets, and fingerprints them for comparison.
#[derive(Clone)]
pub struct SecretSealer {
    cipher: Aes256Gcm,
    fingerprints: Hmac<Sha256>,
}

impl std::fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSealer(<key redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the secret key must be 32 bytes encoded as base64")]
    InvalidKey,
    #[error("the sealed secret cannot be opened with this process's key")]
    CannotOpen,
}

impl SecretSealer {
    /// Builds a sealer from a base64-encoded 32-byte key.
    pub fn from_base64(key: &str) -> Result<Self, SealError> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|_| SealError::InvalidKey)?;
        if bytes.len() != 32 {
            return Err(SealError::InvalidKey);
        }
        Ok(Self::with_key(Key::<Aes256Gcm>::from_slice(&bytes)))
    }

    /// Builds a sealer with a random key that lives only as long as this process.
    pub fn ephemeral() -> Self {
        Self::with_key(&Aes256Gcm::generate_key(OsRng))
    }

    fn with_key(key: &Key<Aes256Gcm>) -> Self {
        // The fingerprint key is derived from the sealing key, so that neither use of the
        // key gives anything about the other.
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(key.as_slice())
            .expect("HMAC accepts a key of any length");
        derive.update(FINGERPRINT_KEY_LABEL);
        let fingerprint_key = derive.finalize().into_bytes();
        Self {
            cipher: Aes256Gcm::new(key),
            fingerprints: <Hmac<Sha256> as Mac>::new_from_slice(&fingerprint_key)
                .expect("HMAC accepts a key of any length"),
        }
    }

    /// Returns an HMAC-SHA256 of `data` in hexadecimal. Processes with the same key return the
    /// same fingerprint, and without the key a fingerprint does not help to guess the data.
    pub fn fingerprint(&self, data: &[u8]) -> String {
        let mut mac = self.fingerprints.clone();
        mac.update(data);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// Encrypts a secret; the result is the nonce followed by the ciphertext.
    pub fn seal(&self, secret: &OidcSecret) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, secret.expose().as_bytes())
            .expect("AES-GCM encryption of a short secret cannot fail");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    pub fn open(&self, sealed: &[u8]) -> Result<OidcSecret, SealError> {
        if sealed.len() <= NONCE_BYTES {
            return Err(SealError::CannotOpen);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SealError::CannotOpen)?;
        String::from_utf8(plaintext)
            .map(OidcSecret::new)
            .map_err(|_| SealError::CannotOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secret_round_trips() {
        let sealer = SecretSealer::ephemeral();
        let sealed = sealer.seal(&OidcSecret::new("canary-secret".to_owned()));
        assert!(!sealed.windows(6).any(|w| w == b"canary"));
        assert_eq!(sealer.open(&sealed).unwrap().expose(), "canary-secret");
    }

    #[test]
    fn other_key_cannot_open() {
        let sealed = SecretSealer::ephemeral().seal(&OidcSecret::new("x".to_owned()));
        assert!(SecretSealer::ephemeral().open(&sealed).is_err());
    }

    #[test]
    fn fingerprint_depends_on_key_and_data() {
        let key = STANDARD.encode([7u8; 32]);
        let first = SecretSealer::from_base64(&key).unwrap();
        let second = SecretSealer::from_base64(&key).unwrap();
        assert_eq!(
            first.fingerprint(b"hunter2"),
            second.fingerprint(b"hunter2")
        );
        assert_eq!(first.fingerprint(b"hunter2").len(), 64);
        assert_ne!(first.fingerprint(b"hunter2"), first.fingerprint(b"hunter3"));
        let other = SecretSealer::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert_ne!(first.fingerprint(b"hunter2"), other.fingerprint(b"hunter2"));
    }

    #[test]
    fn key_must_be_32_bytes() {
        assert!(SecretSealer::from_base64(&STANDARD.encode([7u8; 32])).is_ok());
        assert!(SecretSealer::from_base64(&STANDARD.encode([7u8; 16])).is_err());
        assert!(SecretSealer::from_base64("not base64!").is_err());
    }
}
