//! A single-use, short-lived, browser-bound store for OAuth `state` (in memory).
//!
//! Each pending login is keyed by SHA-256(`state`) and bound to SHA-256 of a pre-auth
//! cookie value (`SameSite=Lax`, so it survives SSO's cross-site top-level redirect
//! back). [`MemoryStateStore::take`] removes the entry whatever the outcome, so a state
//! can be tried once: a replay finds nothing, and a state presented from another
//! browser (login CSRF) is refused and burned. The payload (`T`) carries the PKCE
//! verifier, the sanitised `return_to` and the purpose (login or link); the service may
//! keep the same record in its session store instead when it runs several processes.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};

/// Why a callback's `state` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// Never issued, already used, or purged.
    #[error("unknown or already used state")]
    Unknown,
    #[error("state has expired")]
    Expired,
    /// Issued to another browser (pre-auth cookie mismatch).
    #[error("state is bound to another browser")]
    Mismatch,
    /// Too many pending logins; refuse rather than grow without bound.
    #[error("too many pending logins")]
    Full,
}

struct Entry<T> {
    binding: [u8; 32],
    created_at: DateTime<Utc>,
    payload: T,
}

/// Pending logins awaiting their callback.
pub struct MemoryStateStore<T> {
    ttl: TimeDelta,
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], Entry<T>>>,
}

impl<T> std::fmt::Debug for MemoryStateStore<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStateStore")
            .field("pending", &self.entries.lock().len())
            .finish_non_exhaustive()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl<T> MemoryStateStore<T> {
    /// `ttl` is how long a login may take (a few minutes); `capacity` bounds memory.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl: TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX),
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Records a pending login for `state`, bound to the browser's pre-auth cookie value.
    pub fn insert(
        &self,
        state: &str,
        browser_binding: &str,
        payload: T,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let mut entries = self.entries.lock();
        let ttl = self.ttl;
        entries.retain(|_, e| now.signed_duration_since(e.created_at) <= ttl);
        if entries.len() >= self.capacity {
            return Err(StateError::Full);
        }
        entries.insert(
            digest(state),
            Entry {
                binding: digest(browser_binding),
                created_at: now,
                payload,
            },
        );
        Ok(())
    }

    /// Consumes the pending login for `state` (single use, whatever the outcome).
    pub fn take(
        &self,
        state: &str,
        browser_binding: &str,
        now: DateTime<Utc>,
    ) -> Result<T, StateError> {
        let entry = self
            .entries
            .lock()
            .remove(&digest(state))
            .ok_or(StateError::Unknown)?;
        if now.signed_duration_since(entry.created_at) > self.ttl {
            return Err(StateError::Expired);
        }
        // Comparing digests of the cookie values: equality timing reveals nothing useful.
        if entry.binding != digest(browser_binding) {
            return Err(StateError::Mismatch);
        }
        Ok(entry.payload)
    }

    pub fn pending(&self) -> usize {
        self.entries.lock().len()
    }
}
