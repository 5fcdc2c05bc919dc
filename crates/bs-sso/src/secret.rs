//! A wrapper that keeps secrets out of `Debug`/`Display` output, logs and error messages.

use std::fmt;

/// A secret value (client secret, refresh token, PKCE verifier, key material).
///
/// `Debug` prints `Secret([REDACTED])`; there is deliberately no `Display` and no
/// `Serialize`, so a secret can only leave through an explicit [`Secret::expose`].
/// `PartialEq` is a plain comparison (for tests and bookkeeping such as "did the refresh
/// token rotate"); never use it to authenticate anything.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself; every call site is a place where the secret leaves the wrapper.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl From<String> for Secret<String> {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}
