//! WebSocket fan-out: per-account and public connections, each with a bounded channel.
//!
//! Publishing never waits: a message goes to each connection with `try_send`; a connection
//! whose queue is full is a slow client and is dropped from the hub (its sender is removed,
//! so its socket task sees the channel close and ends the socket). One slow reader therefore
//! costs the others nothing.
//!
//! The fan-out of one killmail to N sockets is the hot path, so:
//! * a [`Message`] is serialised once and shared: every queue slot holds the same
//!   `Arc<Utf8Bytes>` (8 bytes a slot), and the socket task hands the socket a clone of the
//!   `Utf8Bytes` (a reference count, no copy) — nothing is allocated per client;
//! * every socket has its own task ([`crate::api`]'s pump), so writes run in parallel on every
//!   worker thread rather than one after another in the publisher;
//! * the publisher holds one read lock for the whole loop; queues are lock-free (`try_send`),
//!   so there is no lock per client and no contention with the socket tasks;
//! * the unfiltered public feed (the intel page's default) is a list of its own, iterated
//!   without touching the matcher; filtered public connections each run their filter.
//!
//! The pre-built frame stops at the `Utf8Bytes`: axum's socket owns the framing, and its cost
//! per client (a 2–4 byte header and one copy of the payload into the socket's write buffer)
//! is small beside the `write` system call each socket needs anyway.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;
use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::domain::Compiled;

/// A message as sent on the socket, serialised once for all receivers; clones share it.
#[derive(Clone, Debug)]
pub struct Message(Arc<Utf8Bytes>);

impl Message {
    /// The text for the socket: the shared bytes, not a copy.
    pub fn text(&self) -> Utf8Bytes {
        Utf8Bytes::clone(&self.0)
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Self(Arc::new(Utf8Bytes::from(s)))
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Self(Arc::new(Utf8Bytes::from(s)))
    }
}

impl Deref for Message {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl AsRef<str> for Message {
    fn as_ref(&self) -> &str {
        self
    }
}

/// Queue length per connection before it counts as slow.
pub const QUEUE: usize = 64;

struct Conn {
    id: u64,
    tx: mpsc::Sender<Message>,
}

/// The public feed's connections, by whether they filter.
#[derive(Default)]
struct Public {
    /// Every killmail: no matcher call at all.
    all: HashMap<u64, mpsc::Sender<Message>>,
    filtered: HashMap<u64, (mpsc::Sender<Message>, Arc<Compiled>)>,
}

/// The hub; cheap to share.
#[derive(Default)]
pub struct Hub {
    next: AtomicU64,
    accounts: RwLock<HashMap<String, Vec<Conn>>>,
    public: RwLock<Public>,
    dropped: AtomicU64,
    written: AtomicU64,
}

impl Hub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers a connection of `account`; returns its id and receiving end.
    pub fn join(&self, account: &str, queue: usize) -> (u64, mpsc::Receiver<Message>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(queue.max(1));
        self.accounts
            .write()
            .entry(account.to_owned())
            .or_default()
            .push(Conn { id, tx });
        (id, rx)
    }

    pub fn leave(&self, account: &str, id: u64) {
        let mut map = self.accounts.write();
        if let Some(v) = map.get_mut(account) {
            v.retain(|c| c.id != id);
            if v.is_empty() {
                map.remove(account);
            }
        }
    }

    /// Registers a public feed connection; `None`: every killmail.
    pub fn join_public(
        &self,
        filter: Option<Arc<Compiled>>,
        queue: usize,
    ) -> (u64, mpsc::Receiver<Message>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(queue.max(1));
        let mut public = self.public.write();
        match filter {
            None => {
                public.all.insert(id, tx);
            }
            Some(f) => {
                public.filtered.insert(id, (tx, f));
            }
        }
        (id, rx)
    }

    /// Removes a public connection (O(1), so 10k sockets closing at once stay cheap).
    pub fn leave_public(&self, id: u64) {
        let mut public = self.public.write();
        if public.all.remove(&id).is_none() {
            public.filtered.remove(&id);
        }
    }

    /// Sends to every connection of `account`; slow or closed ones are removed.
    pub fn publish(&self, account: &str, msg: &Message) -> usize {
        let mut slow = Vec::new();
        let mut sent = 0;
        if let Some(conns) = self.accounts.read().get(account) {
            for c in conns {
                match c.tx.try_send(msg.clone()) {
                    Ok(()) => sent += 1,
                    Err(_) => slow.push(c.id),
                }
            }
        }
        for id in slow {
            self.count_dropped(1);
            self.leave(account, id);
        }
        sent
    }

    /// Sends a killmail to the public feed: to every unfiltered connection, and to the
    /// filtered ones whose filter it passes. Slow or closed connections are removed.
    pub fn publish_public(&self, msg: &Message, passes: impl Fn(&Compiled) -> bool) -> usize {
        let mut slow = HashSet::new();
        let mut sent = 0;
        {
            let public = self.public.read();
            for (id, tx) in &public.all {
                match tx.try_send(msg.clone()) {
                    Ok(()) => sent += 1,
                    Err(_) => {
                        slow.insert(*id);
                    }
                }
            }
            for (id, (tx, f)) in &public.filtered {
                if !passes(f) {
                    continue;
                }
                match tx.try_send(msg.clone()) {
                    Ok(()) => sent += 1,
                    Err(_) => {
                        slow.insert(*id);
                    }
                }
            }
        }
        if !slow.is_empty() {
            self.count_dropped(slow.len() as u64);
            let mut public = self.public.write();
            for id in &slow {
                if public.all.remove(id).is_none() {
                    public.filtered.remove(id);
                }
            }
        }
        sent
    }

    fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("battlescope_notification_ws_dropped_total").increment(n);
    }

    /// Connections dropped as slow since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Called by a socket task once a message's write to its socket completed.
    pub fn wrote(&self) {
        self.written.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages whose socket write completed since start (server-side send completion, for
    /// the fan-out benchmark and `/metrics`).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> usize {
        let public = self.public.read();
        self.accounts.read().values().map(Vec::len).sum::<usize>()
            + public.all.len()
            + public.filtered.len()
    }
}
