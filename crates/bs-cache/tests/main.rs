//! The cache conformance suite: the same cases on the in-process cache
//! (always) and Redis (`BATTLESCOPE_TEST_REDIS`, mandatory in CI).

use std::time::Duration;

use bs_cache::{Cache, MemoryCache, RedisCache};

async fn caches() -> Vec<Box<dyn Cache>> {
    let mut out: Vec<Box<dyn Cache>> = vec![Box::new(MemoryCache::new(1000))];
    if let Some(url) = bs_testkit::engine(bs_testkit::REDIS) {
        let prefix = format!("{}:", bs_testkit::unique_name("bstest"));
        out.push(Box::new(
            RedisCache::connect(&url, &prefix)
                .await
                .expect("redis reachable"),
        ));
    }
    out
}

#[tokio::test]
async fn set_get_delete_round_trip() {
    for cache in caches().await {
        assert_eq!(
            cache.get("names:1").await.unwrap(),
            None,
            "{}",
            cache.kind()
        );
        cache
            .set("names:1", b"Jorund", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            cache.get("names:1").await.unwrap().as_deref(),
            Some(&b"Jorund"[..])
        );
        cache
            .set("names:1", b"O-IVNH", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            cache.get("names:1").await.unwrap().as_deref(),
            Some(&b"O-IVNH"[..])
        );
        cache.delete("names:1").await.unwrap();
        assert_eq!(cache.get("names:1").await.unwrap(), None);
        cache.ping().await.unwrap();
    }
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    for cache in caches().await {
        cache
            .set("short", b"x", Duration::from_millis(150))
            .await
            .unwrap();
        cache
            .set("long", b"y", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(
            cache.get("short").await.unwrap().is_some(),
            "{}",
            cache.kind()
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(cache.get("short").await.unwrap(), None, "{}", cache.kind());
        assert!(cache.get("long").await.unwrap().is_some());
    }
}

#[tokio::test]
async fn counters_count_within_a_fixed_window() {
    for cache in caches().await {
        assert_eq!(
            cache
                .incr("rl", 1, Duration::from_millis(300))
                .await
                .unwrap(),
            1,
            "{}",
            cache.kind()
        );
        assert_eq!(
            cache
                .incr("rl", 2, Duration::from_millis(300))
                .await
                .unwrap(),
            3
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            cache
                .incr("rl", 1, Duration::from_millis(300))
                .await
                .unwrap(),
            1,
            "{}: a new window",
            cache.kind()
        );
    }
}

#[tokio::test]
async fn binary_values_survive() {
    for cache in caches().await {
        let bytes: Vec<u8> = (0..=255).collect();
        cache
            .set("bin", &bytes, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(cache.get("bin").await.unwrap(), Some(bytes));
    }
}

#[tokio::test]
async fn a_byte_bounded_memory_cache_stays_within_its_bytes() {
    // 64 KiB of budget, entries of ~1 KiB: far more entries than fit are written.
    let cache = MemoryCache::with_limits(1_000_000, 64 * 1024);
    let value = vec![7u8; 1024];
    for i in 0..1000 {
        cache
            .set(&format!("page:{i}"), &value, Duration::from_secs(60))
            .await
            .unwrap();
    }
    let (entries, bytes) = cache.usage().await;
    assert!(bytes <= 64 * 1024, "weighted size {bytes} over the budget");
    let per_entry = 1024 + "page:999".len() as u64 + bs_cache::ENTRY_OVERHEAD_BYTES;
    assert!(
        entries <= 64 * 1024 / (1024 + bs_cache::ENTRY_OVERHEAD_BYTES),
        "{entries} entries of ~{per_entry} bytes cannot fit in 64 KiB"
    );
    assert!(entries > 0, "the cache still caches");
}

#[tokio::test]
async fn an_entry_bounded_memory_cache_counts_entries() {
    let cache = MemoryCache::new(10);
    for i in 0..100 {
        cache
            .set(&format!("k{i}"), b"v", Duration::from_secs(60))
            .await
            .unwrap();
    }
    let (entries, _) = cache.usage().await;
    assert!(entries <= 10, "{entries} entries kept of a 10-entry cache");
}
