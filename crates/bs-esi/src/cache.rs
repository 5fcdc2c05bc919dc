//! A small bounded response cache for conditional requests.
//!
//! ESI asks clients to respect `Expires` (refreshing early "may count as circumventing
//! caching") and to revalidate with `If-None-Match`. Entries are keyed by request path,
//! hold the body and validators, and are evicted least-recently-used past a fixed
//! capacity. Pure: the caller passes the wall-clock `now`.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use chrono::{DateTime, Utc};

/// Bodies above this are not kept (the whole `/markets/prices` list is ~1.5 MB).
const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Entry {
    pub body: Bytes,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub expires: Option<DateTime<Utc>>,
}

impl Entry {
    /// Fresh entries are served without a request.
    pub fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|e| e > now)
    }
}

#[derive(Debug)]
pub struct ResponseCache {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (Entry, u64)>,
    order: BTreeMap<u64, String>,
}

impl ResponseCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&mut self, key: &str) -> Option<Entry> {
        self.tick += 1;
        let tick = self.tick;
        let (entry, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, key.to_owned());
        Some(entry.clone())
    }

    pub fn put(&mut self, key: &str, entry: Entry) {
        if self.capacity == 0 || entry.body.len() > MAX_BODY {
            return;
        }
        // Without a validator or an expiry there is nothing to gain from keeping it.
        if entry.etag.is_none() && entry.expires.is_none() {
            return;
        }
        self.tick += 1;
        if let Some((_, used)) = self.entries.insert(key.to_owned(), (entry, self.tick)) {
            self.order.remove(&used);
        }
        self.order.insert(self.tick, key.to_owned());
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(expires: Option<DateTime<Utc>>) -> Entry {
        Entry {
            body: Bytes::from_static(b"{}"),
            etag: Some("\"x\"".into()),
            last_modified: None,
            expires,
        }
    }

    #[test]
    fn evicts_least_recently_used_past_capacity() {
        let mut c = ResponseCache::new(2);
        c.put("a", entry(None));
        c.put("b", entry(None));
        assert!(c.get("a").is_some());
        c.put("c", entry(None));
        assert_eq!(c.len(), 2);
        assert!(c.get("b").is_none(), "b was least recently used");
        assert!(c.get("a").is_some() && c.get("c").is_some());
    }

    #[test]
    fn freshness_follows_expires() {
        let now = Utc::now();
        assert!(entry(Some(now + chrono::Duration::seconds(5))).is_fresh(now));
        assert!(!entry(Some(now)).is_fresh(now));
        assert!(!entry(None).is_fresh(now));
    }
}
