//! Randomness from the operating system's CSPRNG, with failure as an error, not a panic.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore as _;
use rand::rngs::OsRng;

/// The OS random source failed (practically never; still not a reason to crash).
#[derive(Debug, thiserror::Error)]
#[error("operating system random source failed")]
pub struct RandomError;

/// `N` bytes straight from the OS CSPRNG (no user-space generator in between, so a
/// fork or snapshot cannot duplicate session ids, nonces or `state` values).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    OsRng.try_fill_bytes(&mut buf).map_err(|_| RandomError)?;
    Ok(buf)
}

/// `N` random bytes as unpadded base64url: safe in URLs, cookies and headers.
pub fn random_token<const N: usize>() -> Result<String, RandomError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<N>()?))
}
