//! The audit log's hash chain: each entry stores the previous entry's hash and its
//! own, `hash = SHA-256(prev_hash ‖ canonical(entry))`, so editing or removing a row
//! in the middle breaks every later link (the tables also refuse UPDATE/DELETE).

use sha2::{Digest as _, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields an entry's hash covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryFields<'a> {
    pub at_ms: i64,
    pub actor_account_id: Option<&'a str>,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub ip: &'a str,
    pub metadata: &'a str,
}

/// `SHA-256(prev ‖ fields)` with each field length-prefixed (no ambiguity).
pub fn entry_hash(prev_hash: &str, e: &EntryFields<'_>) -> String {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
        h.update(bytes);
    };
    part(prev_hash.as_bytes());
    part(e.at_ms.to_string().as_bytes());
    part(e.actor_account_id.unwrap_or("").as_bytes());
    part(&[u8::from(e.actor_account_id.is_some())]);
    part(e.action.as_bytes());
    part(e.target_type.as_bytes());
    part(e.target_id.as_bytes());
    part(e.ip.as_bytes());
    part(e.metadata.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_every_field_and_the_previous_hash() {
        let base = EntryFields {
            at_ms: 1,
            actor_account_id: Some("a"),
            action: "account.login",
            target_type: "account",
            target_id: "a",
            ip: "127.0.0.1",
            metadata: "{}",
        };
        let h = entry_hash(GENESIS, &base);
        assert_eq!(h, entry_hash(GENESIS, &base.clone()));
        assert_ne!(h, entry_hash(&h, &base));
        let variants = [
            EntryFields {
                at_ms: 2,
                ..base.clone()
            },
            EntryFields {
                actor_account_id: None,
                ..base.clone()
            },
            EntryFields {
                actor_account_id: Some(""),
                ..base.clone()
            },
            EntryFields {
                action: "account.logout",
                ..base.clone()
            },
            EntryFields {
                target_id: "b",
                ..base.clone()
            },
            EntryFields {
                ip: "::1",
                ..base.clone()
            },
            EntryFields {
                metadata: "{\"x\":1}",
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(h, entry_hash(GENESIS, &v), "{v:?}");
        }
    }
}
