//! Relays: a hub connection read by long polls instead of a socket, for the BFF.
//!
//! The BFF reaches this service through `bs_runtime::ServiceClient`, which is an in-process
//! router call in all-in-one mode and HTTP in split mode, and which reads whole responses:
//! a WebSocket cannot pass through it. So the BFF accepts the browser's socket itself and
//! feeds it from a relay: `POST /ws/relay` joins the hub exactly as `/ws` would (same
//! queue, same slow-client rule) and answers an unguessable token; `GET /ws/relay/{token}`
//! waits up to `wait_ms` for messages and answers them in a batch; `DELETE` leaves.
//! One mechanism for both topologies, and the hub cannot tell a relay from a socket.
//!
//! A relay nobody polled for [`IDLE`] is dropped (the BFF went away without a DELETE).
//! A relay the hub dropped as slow answers its last messages with `closed: true`.
//!
//! One poll at a time takes messages, in queue order. A new poll supersedes a waiting one:
//! the old one answers empty at once, without taking anything. A caller that gave up on a
//! poll (its HTTP request cancelled, which a server does not notice until it writes) would
//! otherwise leave that poll holding the queue for up to [`MAX_WAIT`] and swallowing the next
//! message into a response nobody reads.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng as _;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::ws::{Hub, Message};

/// A relay not polled for this long is dropped.
pub const IDLE: Duration = Duration::from_secs(30);
/// The longest a poll waits (below the HTTP client's 10 s timeout in split mode).
pub const MAX_WAIT: Duration = Duration::from_secs(8);
/// Messages answered by one poll at most.
pub const BATCH: usize = 256;

/// Which hub list a relay joined.
#[derive(Clone, Debug)]
enum Joined {
    Account(String, u64),
    Public(u64),
}

struct Relay {
    joined: Joined,
    rx: tokio::sync::Mutex<mpsc::Receiver<Message>>,
    last_poll: Mutex<Instant>,
    /// Polls started; a poll whose number is no longer the latest gives way.
    polls: AtomicU64,
    superseded: Notify,
}

/// A poll's answer.
#[derive(Debug, Default)]
pub struct Batch {
    pub messages: Vec<Message>,
    /// The hub dropped this relay (too slow) or it is gone: stop polling.
    pub closed: bool,
}

/// Every open relay.
pub struct Relays {
    hub: Arc<Hub>,
    open: Mutex<HashMap<String, Arc<Relay>>>,
    /// When idle relays were last looked for: at most once per [`SWEEP_EVERY`], because
    /// every poll of every relay passes here (1,000 relays × 1,000 polls per killmail).
    last_sweep: Mutex<Instant>,
}

/// How often polls look for idle relays.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Relays {
    pub fn new(hub: Arc<Hub>) -> Arc<Self> {
        Arc::new(Self {
            hub,
            open: Mutex::new(HashMap::new()),
            last_sweep: Mutex::new(Instant::now()),
        })
    }

    fn token() -> String {
        let n: u128 = rand::rng().random();
        format!("{n:032x}")
    }

    fn insert(&self, joined: Joined, rx: mpsc::Receiver<Message>) -> String {
        self.sweep();
        let token = Self::token();
        self.open.lock().insert(
            token.clone(),
            Arc::new(Relay {
                joined,
                rx: tokio::sync::Mutex::new(rx),
                last_poll: Mutex::new(Instant::now()),
                polls: AtomicU64::new(0),
                superseded: Notify::new(),
            }),
        );
        token
    }

    /// Joins the account's stream.
    pub fn open_account(&self, account: &str, queue: usize) -> String {
        let (id, rx) = self.hub.join(account, queue);
        self.insert(Joined::Account(account.to_owned(), id), rx)
    }

    /// Joins the public feed.
    pub fn open_public(
        &self,
        filter: Option<Arc<crate::domain::Compiled>>,
        queue: usize,
    ) -> String {
        let (id, rx) = self.hub.join_public(filter, queue);
        self.insert(Joined::Public(id), rx)
    }

    fn leave(&self, r: &Relay) {
        match &r.joined {
            Joined::Account(a, id) => self.hub.leave(a, *id),
            Joined::Public(id) => self.hub.leave_public(*id),
        }
    }

    /// Leaves the hub; unknown tokens are fine (idempotent).
    pub fn close(&self, token: &str) {
        let removed = self.open.lock().remove(token);
        if let Some(r) = removed {
            self.leave(&r);
        }
    }

    /// Drops relays idle for longer than [`IDLE`].
    fn sweep(&self) {
        let now = Instant::now();
        {
            let mut last = self.last_sweep.lock();
            if now.duration_since(*last) < SWEEP_EVERY {
                return;
            }
            *last = now;
        }
        let stale: Vec<Arc<Relay>> = {
            let mut open = self.open.lock();
            let keys: Vec<String> = open
                .iter()
                .filter(|(_, r)| now.duration_since(*r.last_poll.lock()) > IDLE)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| open.remove(k)).collect()
        };
        for r in stale {
            self.leave(&r);
        }
    }

    /// Waits up to `wait` for the first message, then takes what else is queued. A later
    /// poll of the same relay makes this one answer empty at once (see the module doc).
    pub async fn poll(&self, token: &str, wait: Duration) -> Batch {
        self.sweep();
        let Some(relay) = self.open.lock().get(token).cloned() else {
            return Batch {
                messages: Vec::new(),
                closed: true,
            };
        };
        *relay.last_poll.lock() = Instant::now();
        let mine = relay.polls.fetch_add(1, Ordering::SeqCst) + 1;
        relay.superseded.notify_waiters();
        let current = || relay.polls.load(Ordering::SeqCst) == mine;
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        let mut out = Batch::default();
        // Registered before each check of `current`, so a later poll's notify is never missed.
        let gave_way = relay.superseded.notified();
        tokio::pin!(gave_way);
        gave_way.as_mut().enable();
        let mut rx = tokio::select! {
            rx = relay.rx.lock() => rx,
            () = &mut gave_way => return out,
            () = tokio::time::sleep_until(deadline) => return out,
        };
        if !current() {
            return out;
        }
        tokio::select! {
            biased;
            () = &mut gave_way => {}
            () = tokio::time::sleep_until(deadline) => {}
            m = rx.recv() => match m {
                None => out.closed = true,
                Some(m) => {
                    out.messages.push(m);
                    while out.messages.len() < BATCH {
                        match rx.try_recv() {
                            Ok(m) => out.messages.push(m),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => {
                                out.closed = true;
                                break;
                            }
                        }
                    }
                }
            },
        }
        drop(rx);
        *relay.last_poll.lock() = Instant::now();
        if out.closed {
            self.close(token);
        }
        out
    }

    /// Open relays (tests, metrics).
    pub fn len(&self) -> usize {
        self.open.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
