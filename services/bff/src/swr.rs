//! A stale-while-revalidate cache: a value older than `fresh` is still served at once while one
//! background task reloads it; only a cold miss waits (and concurrent cold misses of the same
//! key share one load). This keeps hot pages (the largest report) at cache speed under load:
//! no request ever waits for a report recompute once the page has been served once.

use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use parking_lot::Mutex;

struct Entry<V> {
    value: V,
    at: Instant,
}

/// See the module doc. Cheap to clone (shared state).
pub struct Swr<K, V> {
    cache: Cache<K, Arc<Entry<V>>>,
    refreshing: Arc<Mutex<HashSet<K>>>,
    fresh: Duration,
}

impl<K, V> Clone for Swr<K, V> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            refreshing: Arc::clone(&self.refreshing),
            fresh: self.fresh,
        }
    }
}

impl<K, V> Swr<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// `fresh`: how long a value is served without a reload; `keep`: how long a value may be
    /// served at all (stale) before a miss waits again; `capacity`: entries.
    pub fn new(fresh: Duration, keep: Duration, capacity: u64) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(keep)
                .build(),
            refreshing: Arc::default(),
            fresh,
        }
    }

    /// The cached value (reloading it in the background when stale), or the loaded one.
    pub async fn get<F, Fut, E>(&self, key: K, load: F) -> Result<V, Arc<E>>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        if let Some(e) = self.cache.get(&key).await {
            if e.at.elapsed() > self.fresh && self.refreshing.lock().insert(key.clone()) {
                let cache = self.cache.clone();
                let refreshing = Arc::clone(&self.refreshing);
                let fut = load();
                tokio::spawn(async move {
                    match fut.await {
                        Ok(value) => {
                            cache
                                .insert(
                                    key.clone(),
                                    Arc::new(Entry {
                                        value,
                                        at: Instant::now(),
                                    }),
                                )
                                .await;
                        }
                        // A failed reload drops the value: the next request loads and sees
                        // the error itself (a merged battle's redirect, a vanished page).
                        Err(_) => cache.invalidate(&key).await,
                    }
                    refreshing.lock().remove(&key);
                });
            }
            return Ok(e.value.clone());
        }
        let fut = load();
        self.cache
            .try_get_with(key, async move {
                fut.await.map(|value| {
                    Arc::new(Entry {
                        value,
                        at: Instant::now(),
                    })
                })
            })
            .await
            .map(|e| e.value.clone())
    }

    /// Drops everything (tests).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn stale_values_are_served_while_one_reload_runs() {
        let swr: Swr<u8, u32> = Swr::new(Duration::from_millis(20), Duration::from_secs(60), 10);
        let loads = Arc::new(AtomicU32::new(0));
        let loader = {
            let loads = Arc::clone(&loads);
            move || {
                let loads = Arc::clone(&loads);
                async move { Ok::<_, ()>(loads.fetch_add(1, Ordering::SeqCst) + 1) }
            }
        };
        assert_eq!(swr.get(1, loader.clone()).await.unwrap(), 1);
        assert_eq!(swr.get(1, loader.clone()).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Stale: served as is, one reload in the background.
        assert_eq!(swr.get(1, loader.clone()).await.unwrap(), 1);
        for _ in 0..100 {
            if loads.load(Ordering::SeqCst) == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(swr.get(1, loader).await.unwrap(), 2);
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }
}
