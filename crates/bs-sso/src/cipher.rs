//! AES-256-GCM encryption of refresh tokens at rest, with a keyring for rotation.
//!
//! Stored form: `v1:<kid>:<base64url(nonce(12) ‖ ciphertext ‖ tag(16))>`.
//! * a fresh random 96-bit nonce per encryption (from the OS; random nonces are safe far
//!   below 2³² encryptions per key — [`TokenCipher::encryptions`] counts them);
//! * the associated data is `v1:<kid>:` ‖ the caller's row binding (see [`token_aad`]), so a
//!   ciphertext copied to another row, or relabelled with another key id, fails to decrypt;
//! * one active key encrypts; older keys only decrypt, until [`TokenCipher::reencrypt`] has
//!   moved every row and the old key can be dropped from configuration.
//!
//! Keys come from configuration (`BATTLESCOPE_TOKEN_KEYS`, see [`TokenCipher::from_spec`]),
//! never from the repository. `Debug` shows key ids only.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::random::{RandomError, random_bytes};
use crate::secret::Secret;

/// Environment variable holding the keyring (see [`TokenCipher::from_spec`]).
pub const ENV_TOKEN_KEYS: &str = "BATTLESCOPE_TOKEN_KEYS";
const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const MAX_KID_LEN: usize = 32;

/// Why encryption, decryption or keyring setup failed. Never carries key material or plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    #[error("invalid key id (1-32 of A-Z a-z 0-9 _ -)")]
    BadKeyId,
    #[error("invalid key spec entry {index}: {reason}")]
    BadKeySpec { index: usize, reason: &'static str },
    #[error("duplicate key id {0}")]
    DuplicateKey(String),
    #[error("the keyring is empty")]
    NoKeys,
    #[error("ciphertext is not in v1:<kid>:<base64> form")]
    Format,
    #[error("ciphertext key id {0} is not in the keyring")]
    UnknownKey(String),
    /// Wrong key, wrong associated data (row) or tampered ciphertext.
    #[error("ciphertext failed authentication")]
    Decrypt,
    #[error("plaintext is not utf-8")]
    Utf8,
    #[error("random source failed")]
    Random,
}

impl From<RandomError> for CipherError {
    fn from(_: RandomError) -> Self {
        Self::Random
    }
}

/// A key identifier: short, and free of `:` so it can sit in the stored form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn parse(raw: &str) -> Result<Self, CipherError> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_KID_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(CipherError::BadKeyId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The associated data binding an ESI refresh token to its row: a purpose label, the
/// account and the character, each length-prefixed so no two rows can collide.
pub fn token_aad(account_id: &str, character_id: i64) -> Vec<u8> {
    aad(&[
        b"esi-refresh-token",
        account_id.as_bytes(),
        character_id.to_string().as_bytes(),
    ])
}

/// Length-prefixed concatenation of `parts` (unambiguous associated data).
pub fn aad(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// A keyring of AES-256-GCM keys: one active (encrypts), the rest decrypt-only.
pub struct TokenCipher {
    active: KeyId,
    keys: BTreeMap<KeyId, Aes256Gcm>,
    /// Encryptions under the active key in this process, for the nonce budget metric.
    encryptions: AtomicU64,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCipher")
            .field("active", &self.active)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TokenCipher {
    /// A keyring from `(kid, 32-byte key)` pairs; the first is the active key.
    pub fn new(keys: Vec<(KeyId, Secret<[u8; 32]>)>) -> Result<Self, CipherError> {
        let mut iter = keys.into_iter();
        let (active, first) = iter.next().ok_or(CipherError::NoKeys)?;
        let mut map = BTreeMap::new();
        map.insert(active.clone(), Aes256Gcm::new(&(*first.expose()).into()));
        for (kid, key) in iter {
            if map.contains_key(&kid) {
                return Err(CipherError::DuplicateKey(kid.0));
            }
            map.insert(kid, Aes256Gcm::new(&(*key.expose()).into()));
        }
        Ok(Self {
            active,
            keys: map,
            encryptions: AtomicU64::new(0),
        })
    }

    /// Parses `kid:base64key[,kid:base64key…]` (standard or URL-safe base64 of 32 bytes);
    /// the first entry is the active key. To rotate, put a new key first and keep the old
    /// ones after it until every row has been re-encrypted.
    pub fn from_spec(spec: &Secret<String>) -> Result<Self, CipherError> {
        let mut keys = Vec::new();
        for (index, entry) in spec
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (kid, b64) = entry.split_once(':').ok_or(CipherError::BadKeySpec {
                index,
                reason: "expected kid:base64",
            })?;
            let kid = KeyId::parse(kid.trim())?;
            let bytes = STANDARD
                .decode(b64.trim())
                .or_else(|_| URL_SAFE_NO_PAD.decode(b64.trim()))
                .map_err(|_| CipherError::BadKeySpec {
                    index,
                    reason: "key is not base64",
                })?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| CipherError::BadKeySpec {
                index,
                reason: "key is not 32 bytes",
            })?;
            keys.push((kid, Secret::new(key)));
        }
        Self::new(keys)
    }

    /// A new random key as a spec entry `kid:base64` (for `battlescope auth rotate-key`).
    pub fn generate_key_spec(kid: &KeyId) -> Result<Secret<String>, CipherError> {
        let key = random_bytes::<32>()?;
        Ok(Secret::new(format!("{kid}:{}", STANDARD.encode(key))))
    }

    pub fn active_key_id(&self) -> &KeyId {
        &self.active
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }

    /// Encryptions done under the active key by this process.
    pub fn encryptions(&self) -> u64 {
        self.encryptions.load(Ordering::Relaxed)
    }

    /// Encrypts `plaintext` under the active key, bound to `row_aad` (e.g. [`token_aad`]).
    pub fn encrypt(&self, plaintext: &str, row_aad: &[u8]) -> Result<String, CipherError> {
        let cipher = self
            .keys
            .get(&self.active)
            .ok_or_else(|| CipherError::UnknownKey(self.active.0.clone()))?;
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let nonce = Nonce::<Aes256Gcm>::from(nonce_bytes);
        let full_aad = bound_aad(&self.active, row_aad);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &full_aad,
                },
            )
            .map_err(|_| CipherError::Decrypt)?;
        self.encryptions.fetch_add(1, Ordering::Relaxed);
        let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
        blob.extend_from_slice(&nonce_bytes);
        blob.extend_from_slice(&ct);
        Ok(format!(
            "{VERSION}:{}:{}",
            self.active,
            URL_SAFE_NO_PAD.encode(blob)
        ))
    }

    /// Decrypts a stored value with whichever key it names, checking `row_aad`.
    pub fn decrypt(&self, stored: &str, row_aad: &[u8]) -> Result<Secret<String>, CipherError> {
        let (kid, blob) = split_stored(stored)?;
        let cipher = self
            .keys
            .get(&kid)
            .ok_or_else(|| CipherError::UnknownKey(kid.0.clone()))?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(CipherError::Format);
        }
        let (nonce_bytes, ct) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::<Aes256Gcm>::try_from(nonce_bytes).map_err(|_| CipherError::Format)?;
        let full_aad = bound_aad(&kid, row_aad);
        let plain = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ct,
                    aad: &full_aad,
                },
            )
            .map_err(|_| CipherError::Decrypt)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| CipherError::Utf8)
    }

    /// The key id a stored value names, if it is well formed.
    pub fn key_id_of(stored: &str) -> Option<KeyId> {
        split_stored(stored).ok().map(|(kid, _)| kid)
    }

    /// Whether a stored value is under an older key and should be re-encrypted.
    pub fn needs_reencrypt(&self, stored: &str) -> bool {
        Self::key_id_of(stored).is_none_or(|kid| kid != self.active)
    }

    /// Decrypts with the key the value names and encrypts again under the active key
    /// (fresh nonce), same row binding.
    pub fn reencrypt(&self, stored: &str, row_aad: &[u8]) -> Result<String, CipherError> {
        let plain = self.decrypt(stored, row_aad)?;
        self.encrypt(plain.expose(), row_aad)
    }
}

fn bound_aad(kid: &KeyId, row_aad: &[u8]) -> Vec<u8> {
    let mut out = format!("{VERSION}:{kid}:").into_bytes();
    out.extend_from_slice(row_aad);
    out
}

fn split_stored(stored: &str) -> Result<(KeyId, Vec<u8>), CipherError> {
    let mut parts = stored.splitn(3, ':');
    let (Some(version), Some(kid), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CipherError::Format);
    };
    if version != VERSION {
        return Err(CipherError::Format);
    }
    let kid = KeyId::parse(kid).map_err(|_| CipherError::Format)?;
    let blob = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| CipherError::Format)?;
    Ok((kid, blob))
}
