//! CSRF tokens bound to the session (OWASP "signed double-submit" / HMAC synchronizer).
//!
//! A token is `base64url(nonce) "." base64url(HMAC-SHA256(key, "bs-csrf-v1" ‖ session ‖ nonce))`
//! with a fresh 128-bit nonce each time it is issued. The server needs no storage: a
//! token verifies only for the session it was issued to, under the server key, so a
//! token planted from another session (or forged without the key) fails, and a new
//! session id at login invalidates every older token. The service hands it to pages
//! (a meta tag or a non-`HttpOnly` cookie) and requires it back in a header or form field
//! on every cookie-authenticated state change, in addition to `SameSite=Lax` and
//! `Origin`/`Sec-Fetch-Site` checks.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::random::{RandomError, random_bytes};
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;
const DOMAIN: &[u8] = b"bs-csrf-v1";
const NONCE_LEN: usize = 16;

/// The server-side CSRF key (32 random bytes; from configuration, or generated at
/// start-up if tokens need not survive restarts).
#[derive(Clone, Debug)]
pub struct CsrfKey(Secret<[u8; 32]>);

impl CsrfKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Secret::new(bytes))
    }

    pub fn generate() -> Result<Self, RandomError> {
        Ok(Self::from_bytes(random_bytes::<32>()?))
    }

    fn mac(&self, session_id: &str, nonce: &[u8]) -> HmacSha256 {
        // HMAC zero-pads keys shorter than the 64-byte block, so passing the padded block
        // is the same MAC as `new_from_slice(key)`, without a fallible call.
        let mut block = [0u8; 64];
        for (dst, src) in block.iter_mut().zip(self.0.expose()) {
            *dst = *src;
        }
        let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new(&block.into());
        let len = u64::try_from(session_id.len()).unwrap_or(u64::MAX);
        mac.update(DOMAIN);
        mac.update(&len.to_be_bytes());
        mac.update(session_id.as_bytes());
        mac.update(nonce);
        mac
    }

    /// A new token for `session_id`.
    pub fn issue(&self, session_id: &str) -> Result<String, RandomError> {
        let nonce = random_bytes::<NONCE_LEN>()?;
        let tag = self.mac(session_id, &nonce).finalize().into_bytes();
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(tag)
        ))
    }

    /// Whether `token` was issued for `session_id` under this key (constant-time compare).
    pub fn verify(&self, session_id: &str, token: &str) -> bool {
        let Some((nonce_b64, tag_b64)) = token.split_once('.') else {
            return false;
        };
        let (Ok(nonce), Ok(tag)) = (
            URL_SAFE_NO_PAD.decode(nonce_b64),
            URL_SAFE_NO_PAD.decode(tag_b64),
        ) else {
            return false;
        };
        if nonce.len() != NONCE_LEN {
            return false;
        }
        self.mac(session_id, &nonce).verify_slice(&tag).is_ok()
    }
}
