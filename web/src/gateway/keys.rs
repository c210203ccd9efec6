//! Virtual keys: the key format, secret hashing, and the authenticated-key cache of the gateway.
//!
//! A key reads `tk-<public_id>-<secret>`: the public id (12 hex digits) finds the row, and
//! the SHA-256 of the whole key string must equal the stored hash (compared in constant
//! time). The secret is returned once, at creation or rotation, and never stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tally_store::{KeyRecord, Store};

use crate::error::ApiError;

/// Prefix of every Tally key.
pub const KEY_PREFIX: &str = "tk-";
/// Random bytes of the public id (hex: twice as many digits).
const PUBLIC_ID_BYTES: usize = 6;
/// Random bytes of the secret (256 bits).
const SECRET_BYTES: usize = 32;
/// How long an authenticated key is trusted from memory before it is read again. Changes
/// made through this node's API take effect at once (the entry is dropped); changes made
/// on another node take effect within this time.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// Most keys kept in the cache (cleared when full; reads repopulate it).
const KEY_CACHE_MAX: usize = 100_000;

/// A freshly made key: its public id, the full secret string, and the hash to store.
#[derive(Clone)]
pub struct NewKey {
    /// Public id (`tk-<public_id>-...`).
    pub public_id: String,
    /// The whole key string, shown to the caller once.
    pub key: String,
    /// Hex SHA-256 of `key`.
    pub hash: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey").field("public_id", &self.public_id).field("key", &"***").finish()
    }
}

pub(crate) fn random_hex(bytes: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| ApiError::Internal { code: "rng", message: format!("no randomness: {e}") })?;
    Ok(hex(&buf))
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Hex SHA-256 of a key string.
pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// A new key with a random public id.
pub fn generate() -> Result<NewKey, ApiError> {
    let public_id = random_hex(PUBLIC_ID_BYTES)?;
    with_public_id(public_id)
}

/// A new secret for an existing public id (rotation).
pub fn with_public_id(public_id: String) -> Result<NewKey, ApiError> {
    let key = format!("{KEY_PREFIX}{public_id}-{}", random_hex(SECRET_BYTES)?);
    let hash = hash_key(&key);
    Ok(NewKey { public_id, key, hash })
}

/// The public id of a presented key string, if it has the key's shape.
pub fn public_id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (public, secret) = rest.split_once('-')?;
    let hexish = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexish(public, PUBLIC_ID_BYTES * 2) && hexish(secret, SECRET_BYTES * 2)).then_some(public)
}

/// Equality of two hex digests without an early exit (no timing hint at the stored hash).
pub(crate) fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a presented key is refused (all answer 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No key in the request.
    Missing,
    /// Malformed, unknown, or wrong secret.
    Invalid,
    /// Revoked.
    Revoked,
    /// Past its expiry.
    Expired,
}

impl KeyRefusal {
    /// Stable code.
    pub fn code(self) -> &'static str {
        match self {
            KeyRefusal::Missing => "missing_api_key",
            KeyRefusal::Invalid => "invalid_api_key",
            KeyRefusal::Revoked => "revoked_api_key",
            KeyRefusal::Expired => "expired_api_key",
        }
    }

    /// Human explanation (never contains the key).
    pub fn message(self) -> &'static str {
        match self {
            KeyRefusal::Missing => "No API key: send `Authorization: Bearer tk-...` or `x-api-key: tk-...`.",
            KeyRefusal::Invalid => "Invalid API key.",
            KeyRefusal::Revoked => "This API key has been revoked.",
            KeyRefusal::Expired => "This API key has expired.",
        }
    }
}

/// Whether a key may be used at `now`.
pub fn check_live(key: &KeyRecord, now: DateTime<Utc>) -> Result<(), KeyRefusal> {
    if key.revoked_at.is_some() {
        return Err(KeyRefusal::Revoked);
    }
    if key.expires_at.is_some_and(|e| e <= now) {
        return Err(KeyRefusal::Expired);
    }
    Ok(())
}

/// A key and when it was read.
type CachedKey = (Instant, Arc<KeyRecord>);

/// Keys recently read from the store, by public id.
#[derive(Clone, Default)]
pub struct KeyCache {
    inner: Arc<Mutex<HashMap<String, CachedKey>>>,
}

impl KeyCache {
    /// Authenticate a presented key string: the live key record, or why it is refused.
    /// Store failures surface as `Err(Err(ApiError))`.
    pub async fn authenticate(&self, store: &Store, presented: &str) -> Result<Arc<KeyRecord>, Result<KeyRefusal, ApiError>> {
        let public = public_id_of(presented).ok_or(Ok(KeyRefusal::Invalid))?.to_string();
        let record = match self.cached(&public) {
            Some(r) => r,
            None => {
                let s = store.clone();
                let p = public.clone();
                let found = actix_web::web::block(move || s.key_by_public_id(&p))
                    .await
                    .map_err(|e| Err(ApiError::from(e)))?
                    .map_err(|e| Err(ApiError::from(e)))?;
                let Some(found) = found else { return Err(Ok(KeyRefusal::Invalid)) };
                let found = Arc::new(found);
                self.put(public, found.clone());
                found
            }
        };
        if !same_digest(&hash_key(presented), &record.secret_hash) {
            return Err(Ok(KeyRefusal::Invalid));
        }
        check_live(&record, Utc::now()).map_err(Ok)?;
        Ok(record)
    }

    fn cached(&self, public: &str) -> Option<Arc<KeyRecord>> {
        let map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(public).filter(|(at, _)| at.elapsed() < KEY_CACHE_TTL).map(|(_, r)| r.clone())
    }

    fn put(&self, public: String, record: Arc<KeyRecord>) {
        let mut map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= KEY_CACHE_MAX {
            map.clear();
        }
        map.insert(public, (Instant::now(), record));
    }

    /// Drop a key from the cache (after a change made through this node).
    pub fn forget(&self, public: &str) {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(public);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_hash() {
        let k = generate().unwrap_or_else(|e| panic!("generate: {e}"));
        assert_eq!(public_id_of(&k.key), Some(k.public_id.as_str()), "the public id is read back from the key");
        assert_eq!(hash_key(&k.key), k.hash, "the stored hash is the key's SHA-256");
        assert!(!format!("{k:?}").contains(&k.key[20..]), "Debug never prints the secret");
        let other = generate().unwrap_or_else(|e| panic!("generate: {e}"));
        assert_ne!(k.key, other.key, "two keys differ");
    }

    #[test]
    fn malformed_keys_have_no_public_id() {
        for bad in ["", "tk-", "sk-abc", "tk-0123456789ab", "tk-0123456789ab-xyz", "tk-zz23456789ab-00", "Bearer tk-"] {
            assert_eq!(public_id_of(bad), None, "{bad:?} is not a key");
        }
    }

    #[test]
    fn rotation_keeps_the_public_id_and_changes_the_secret() {
        let k = generate().unwrap_or_else(|e| panic!("generate: {e}"));
        let r = with_public_id(k.public_id.clone()).unwrap_or_else(|e| panic!("rotate: {e}"));
        assert_eq!(r.public_id, k.public_id, "same public id");
        assert_ne!(r.hash, k.hash, "new secret");
    }

    #[test]
    fn digest_comparison() {
        assert!(same_digest("abcd", "abcd"), "equal digests match");
        assert!(!same_digest("abcd", "abce"), "a differing digit does not");
        assert!(!same_digest("abcd", "abc"), "a shorter digest does not");
    }
}
