//! Admin keys at rest: AES-256-GCM (the `aes-gcm` crate) with a key from `TALLY_ENCRYPTION_KEY`.
//!
//! The key is 32 bytes, base64 (standard alphabet, padded). Every value gets a fresh random
//! 96-bit nonce, stored beside the ciphertext; the connection id is the associated data, so a
//! ciphertext copied onto another connection's row does not decrypt.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use uuid::Uuid;

/// Environment variable holding the encryption key.
pub const ENCRYPTION_KEY_VAR: &str = "TALLY_ENCRYPTION_KEY";

/// Bytes of an AES-256 key.
pub const KEY_BYTES: usize = 32;

/// Bytes of an AES-GCM nonce (96 bits).
pub const NONCE_BYTES: usize = 12;

/// The encryption key could not be used, or a value did not decrypt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The key is not 32 bytes of base64.
    #[error("{ENCRYPTION_KEY_VAR} must be {KEY_BYTES} bytes, base64-encoded: {0}")]
    BadKey(String),
    /// A stored value did not decrypt with this key (wrong key, or tampered row).
    #[error("an admin key did not decrypt with the configured {ENCRYPTION_KEY_VAR} (wrong key?)")]
    Decrypt,
    /// Encryption failed (never expected with a valid key).
    #[error("encryption failed")]
    Encrypt,
}

/// An AES-256-GCM key. Never printed.
#[derive(Clone)]
pub struct EncryptionKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(..)")
    }
}

/// An encrypted value and its nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Ciphertext with the GCM tag.
    pub ciphertext: Vec<u8>,
    /// The nonce it was sealed with.
    pub nonce: Vec<u8>,
}

impl EncryptionKey {
    /// Parse a base64 key of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| CryptoError::BadKey(format!("not base64 ({e})")))?;
        if bytes.len() != KEY_BYTES {
            return Err(CryptoError::BadKey(format!("decodes to {} bytes", bytes.len())));
        }
        Ok(EncryptionKey { cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)) })
    }

    /// The key from `TALLY_ENCRYPTION_KEY`, if set (`Err` when set but unusable).
    pub fn from_env() -> Result<Option<Self>, CryptoError> {
        match std::env::var(ENCRYPTION_KEY_VAR) {
            Ok(v) if !v.trim().is_empty() => Self::from_base64(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// A fresh random key, base64 (tests, `tally keys` help).
    pub fn generate_base64() -> String {
        base64::engine::general_purpose::STANDARD.encode(Aes256Gcm::generate_key(OsRng))
    }

    /// Encrypt `plain` for connection `id` with a fresh random nonce.
    pub fn seal(&self, id: Uuid, plain: &str) -> Result<Sealed, CryptoError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain.as_bytes(), aad: id.as_bytes() })
            .map_err(|_| CryptoError::Encrypt)?;
        Ok(Sealed { ciphertext, nonce: nonce.to_vec() })
    }

    /// Decrypt what [`seal`](Self::seal) made for connection `id`.
    pub fn open(&self, id: Uuid, sealed: &Sealed) -> Result<String, CryptoError> {
        if sealed.nonce.len() != NONCE_BYTES {
            return Err(CryptoError::Decrypt);
        }
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad: id.as_bytes() })
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Decrypt)
    }
}

/// The last 4 characters of a key (what the masked display shows).
pub fn key_hint(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// The masked display of a key from its hint: `sk-...abcd`.
pub fn masked(hint: &str) -> String {
    format!("sk-...{hint}")
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_with_fresh_nonces() {
        let key = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).expect("generated key parses");
        let id = Uuid::now_v7();
        let a = key.seal(id, "sk-ant-admin01-secret-abcd").expect("seal");
        let b = key.seal(id, "sk-ant-admin01-secret-abcd").expect("seal");
        assert_ne!(a.nonce, b.nonce, "every value gets its own nonce");
        assert_ne!(a.ciphertext, b.ciphertext, "so equal keys encrypt differently");
        assert!(!a.ciphertext.windows(6).any(|w| w == b"secret"), "the ciphertext does not hold the key in clear");
        assert_eq!(key.open(id, &a).expect("open"), "sk-ant-admin01-secret-abcd", "decrypts to the key");
        assert_eq!(key.open(Uuid::now_v7(), &a), Err(CryptoError::Decrypt), "bound to its connection");
        let other = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).expect("key");
        assert_eq!(other.open(id, &a), Err(CryptoError::Decrypt), "another key does not decrypt");
    }

    #[test]
    fn bad_keys_are_refused_and_hints_are_short() {
        assert!(matches!(EncryptionKey::from_base64("not base64!"), Err(CryptoError::BadKey(_))), "not base64");
        assert!(matches!(EncryptionKey::from_base64("AAAA"), Err(CryptoError::BadKey(_))), "3 bytes");
        assert_eq!(key_hint("sk-admin-xyz1234"), "1234", "last four characters");
        assert_eq!(key_hint("ab"), "ab", "short keys give what they have");
        assert_eq!(masked("abcd"), "sk-...abcd", "masked form");
    }
}
