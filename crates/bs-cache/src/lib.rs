//! The cache: one trait, an in-process implementation and Redis.
//!
//! Values are bytes with a time to live; callers serialise. The cache is an
//! optimisation only: every caller must work (more slowly) when it misses or
//! when the backend is down, so errors are returned, never panics, and
//! [`Cache::get`] on a broken backend is a miss for the caller to handle.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache backend error: {0}")]
    Backend(String),
}

pub type CacheResult<T> = Result<T, CacheError>;

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>>;
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<()>;
    async fn delete(&self, key: &str) -> CacheResult<()>;
    /// Atomically adds `by` to a counter that expires `ttl` after its creation; returns the new value.
    /// Used for fixed-window rate limits shared by replicas.
    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> CacheResult<i64>;
    async fn ping(&self) -> CacheResult<()>;
}

/// In-process cache (moka). Each entry carries its own expiry.
pub struct MemoryCache {
    inner: moka::future::Cache<String, Entry>,
    counters: moka::future::Cache<String, Arc<parking_counter::Counter>>,
}

#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    expires_at: tokio::time::Instant,
}

mod parking_counter {
    //! A counter with a fixed expiry, for `incr`.
    use std::sync::atomic::{AtomicI64, Ordering};

    pub struct Counter {
        pub value: AtomicI64,
        pub expires_at: tokio::time::Instant,
    }

    impl Counter {
        pub fn add(&self, by: i64) -> i64 {
            self.value.fetch_add(by, Ordering::SeqCst) + by
        }
    }
}

struct PerEntryExpiry;

impl moka::Expiry<String, Entry> for PerEntryExpiry {
    fn expire_after_create(
        &self,
        _: &String,
        v: &Entry,
        now: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.expires_at.into_std().saturating_duration_since(now))
    }
    fn expire_after_update(
        &self,
        _: &String,
        v: &Entry,
        now: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.expires_at.into_std().saturating_duration_since(now))
    }
}

struct CounterExpiry;

impl moka::Expiry<String, Arc<parking_counter::Counter>> for CounterExpiry {
    fn expire_after_create(
        &self,
        _: &String,
        v: &Arc<parking_counter::Counter>,
        now: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.expires_at.into_std().saturating_duration_since(now))
    }
}

/// What one cached entry costs besides its key and value bytes: the `String` and `Arc<[u8]>`
/// headers, the expiry, and moka's own node, deque links and hash-table slot (≈ 150 bytes
/// measured per entry on 64-bit). Counted so a cache of many tiny values is bounded too.
pub const ENTRY_OVERHEAD_BYTES: u64 = 160;

/// The weight of one entry for a byte-bounded cache.
fn weight(key: &str, value: &[u8]) -> u32 {
    let bytes = key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD_BYTES;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

impl MemoryCache {
    /// A cache of at most `max_entries` entries, whatever their size.
    pub fn new(max_entries: u64) -> Self {
        Self::with_limits(max_entries, 0)
    }

    /// A cache bounded by entries and, when `max_bytes > 0`, by the bytes its entries take
    /// (keys, values and [`ENTRY_OVERHEAD_BYTES`] each): an entry count alone does not bound
    /// the memory of a process whose values range from a ticker to a whole page. When both are
    /// set, the byte bound governs and the entry bound still caps the (unweighted) counters.
    pub fn with_limits(max_entries: u64, max_bytes: u64) -> Self {
        let builder = moka::future::Cache::builder().expire_after(PerEntryExpiry);
        let inner = if max_bytes > 0 {
            builder
                .weigher(|k: &String, v: &Entry| weight(k, &v.value))
                .max_capacity(max_bytes)
                .build()
        } else {
            builder.max_capacity(max_entries).build()
        };
        Self {
            inner,
            counters: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(CounterExpiry)
                .build(),
        }
    }

    /// Entries held now and their weight (bytes when byte-bounded, else entries), after
    /// applying pending evictions: for tests and memory accounting.
    pub async fn usage(&self) -> (u64, u64) {
        self.inner.run_pending_tasks().await;
        (self.inner.entry_count(), self.inner.weighted_size())
    }
}

#[async_trait]
impl Cache for MemoryCache {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        // moka expires lazily; double-check so an expired value is never served.
        Ok(self
            .inner
            .get(key)
            .await
            .filter(|e| e.expires_at > tokio::time::Instant::now())
            .map(|e| e.value.to_vec()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<()> {
        let entry = Entry {
            value: value.into(),
            expires_at: tokio::time::Instant::now() + ttl,
        };
        self.inner.insert(key.to_owned(), entry).await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> CacheResult<()> {
        self.inner.invalidate(key).await;
        Ok(())
    }

    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> CacheResult<i64> {
        let now = tokio::time::Instant::now();
        let counter = self
            .counters
            .get_with(key.to_owned(), async {
                Arc::new(parking_counter::Counter {
                    value: 0.into(),
                    expires_at: now + ttl,
                })
            })
            .await;
        if counter.expires_at <= now {
            // Expired but not yet evicted: start a new window.
            let fresh = Arc::new(parking_counter::Counter {
                value: by.into(),
                expires_at: now + ttl,
            });
            self.counters.insert(key.to_owned(), fresh).await;
            return Ok(by);
        }
        Ok(counter.add(by))
    }

    async fn ping(&self) -> CacheResult<()> {
        Ok(())
    }
}

/// Redis through an auto-reconnecting multiplexed connection.
pub struct RedisCache {
    conn: redis::aio::ConnectionManager,
    /// Prefix for every key, so several deployments can share one Redis.
    prefix: String,
}

fn backend(e: redis::RedisError) -> CacheError {
    CacheError::Backend(e.to_string())
}

impl RedisCache {
    pub async fn connect(url: &str, prefix: &str) -> CacheResult<Self> {
        let client = redis::Client::open(url).map_err(backend)?;
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            redis::aio::ConnectionManager::new(client),
        )
        .await
        .map_err(|_| CacheError::Backend("timed out connecting to redis".into()))?
        .map_err(backend)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

#[async_trait]
impl Cache for RedisCache {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        let mut c = self.conn.clone();
        redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut c)
            .await
            .map_err(backend)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<()> {
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async(&mut c)
            .await
            .map_err(backend)
    }

    async fn delete(&self, key: &str) -> CacheResult<()> {
        let mut c = self.conn.clone();
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async(&mut c)
            .await
            .map_err(backend)
    }

    async fn incr(&self, key: &str, by: i64, ttl: Duration) -> CacheResult<i64> {
        let mut c = self.conn.clone();
        let key = self.key(key);
        // INCRBY then PEXPIRE NX: the window starts with the first increment and is never extended.
        let (value, _): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("INCRBY")
            .arg(&key)
            .arg(by)
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms(ttl))
            .arg("NX")
            .query_async(&mut c)
            .await
            .map_err(backend)?;
        Ok(value)
    }

    async fn ping(&self) -> CacheResult<()> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut c)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
