//! Session identifiers: opaque, 256-bit random, stored only as a SHA-256 hash.
//!
//! The cookie carries the id; the store keys on [`hash_session_id`], so a leaked
//! session table (or backup) cannot be replayed as cookies. A fast hash is enough: the
//! input has 256 bits of entropy, there is nothing to brute-force.

use sha2::{Digest as _, Sha256};

use crate::random::{RandomError, random_token};

/// A new session id: 32 bytes from the OS CSPRNG as unpadded base64url (43 characters,
/// cookie- and URL-safe). Issue a new one at every login (no fixation).
pub fn generate_session_id() -> Result<String, RandomError> {
    random_token::<32>()
}

/// The storage key for a session id: lowercase hex SHA-256.
pub fn hash_session_id(session_id: &str) -> String {
    hex::encode(Sha256::digest(session_id.as_bytes()))
}
