//! WebSocket fan-out: per-account and public connections, each with a bounded channel.
//!
//! Publishing never waits: a message goes to each connection with `try_send`; a connection
//! whose queue is full is a slow client and is dropped from the hub (its sender is removed,
//! so its socket task sees the channel close and ends the socket). One slow reader therefore
//! costs the others nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::domain::Compiled;

/// A message as sent on the socket (already serialised once for all receivers).
pub type Message = Arc<str>;

/// Queue length per connection before it counts as slow.
pub const QUEUE: usize = 64;

struct Conn {
    id: u64,
    tx: mpsc::Sender<Message>,
}

struct PublicConn {
    id: u64,
    tx: mpsc::Sender<Message>,
    /// `None`: every killmail.
    filter: Option<Arc<Compiled>>,
}

/// The hub; cheap to share.
#[derive(Default)]
pub struct Hub {
    next: AtomicU64,
    accounts: RwLock<HashMap<String, Vec<Conn>>>,
    public: RwLock<Vec<PublicConn>>,
    dropped: AtomicU64,
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

    pub fn join_public(
        &self,
        filter: Option<Arc<Compiled>>,
        queue: usize,
    ) -> (u64, mpsc::Receiver<Message>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(queue.max(1));
        self.public.write().push(PublicConn { id, tx, filter });
        (id, rx)
    }

    pub fn leave_public(&self, id: u64) {
        self.public.write().retain(|c| c.id != id);
    }

    /// Sends to every connection of `account`; slow or closed ones are removed.
    pub fn publish(&self, account: &str, msg: &Message) -> usize {
        let mut slow = Vec::new();
        let mut sent = 0;
        if let Some(conns) = self.accounts.read().get(account) {
            for c in conns {
                match c.tx.try_send(Arc::clone(msg)) {
                    Ok(()) => sent += 1,
                    Err(_) => slow.push(c.id),
                }
            }
        }
        for id in slow {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("battlescope_notification_ws_dropped_total").increment(1);
            self.leave(account, id);
        }
        sent
    }

    /// Sends a killmail to the public feed, to the connections whose filter it passes.
    pub fn publish_public(&self, msg: &Message, passes: impl Fn(&Compiled) -> bool) -> usize {
        let mut slow = Vec::new();
        let mut sent = 0;
        for c in self.public.read().iter() {
            if c.filter.as_deref().is_some_and(|f| !passes(f)) {
                continue;
            }
            match c.tx.try_send(Arc::clone(msg)) {
                Ok(()) => sent += 1,
                Err(_) => slow.push(c.id),
            }
        }
        if !slow.is_empty() {
            self.dropped.fetch_add(slow.len() as u64, Ordering::Relaxed);
            self.public.write().retain(|c| !slow.contains(&c.id));
        }
        sent
    }

    /// Connections dropped as slow since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> usize {
        self.accounts.read().values().map(Vec::len).sum::<usize>() + self.public.read().len()
    }
}
