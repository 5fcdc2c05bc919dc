//! `start()` on the embedded bus, and search going down and coming back: 503 while down, no
//! event lost (the consumer does not commit), everything indexed once it is back.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bs_bus::{BusConfig, Record};
use bs_config::Config;
use bs_events::{Envelope, KillmailEnriched, topics};
use bs_runtime::{ServiceContext, ServiceDirectory, SystemClock};
use bs_search::SearchCheck;
use bs_search_index::{Collection, SearchIndex};
use bs_telemetry::ReadinessCheck;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

#[tokio::test]
async fn tantivy_search_down_and_back() {
    guard(search_down_and_back(Backend::Tantivy)).await
}

#[tokio::test]
async fn typesense_search_down_and_back() {
    guard(search_down_and_back(Backend::Typesense)).await
}

fn records(evs: &[KillmailEnriched]) -> Vec<Record> {
    evs.iter()
        .map(|e| Record {
            key: e.killmail_id.to_string(),
            payload: Envelope::wrap(e, chrono::Utc::now()).unwrap().to_bytes(),
        })
        .collect()
}

async fn killmail_count(index: &dyn SearchIndex) -> u64 {
    if index.refresh().await.is_err() {
        return 0;
    }
    index.count(Collection::Killmails).await.unwrap_or(0)
}

async fn search_down_and_back(backend: Backend) {
    let Some(engine) = Engine::open(backend) else {
        return;
    };
    let dir = bs_testkit::temp_dir();
    let bus = bs_bus::connect(&BusConfig::embedded(dir.path().join("bus")))
        .await
        .unwrap();
    bus.ensure_topics(topics::ALL).await.unwrap();
    let switch = Arc::new(Switchable::new(Arc::clone(&engine.index)));
    let ctx = ServiceContext {
        config: Arc::new(Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        }),
        bus: Arc::clone(&bus),
        cache: Arc::new(bs_cache::MemoryCache::new(1_000)),
        clock: Arc::new(SystemClock),
        shutdown: CancellationToken::new(),
        offline: true,
        services: ServiceDirectory::default(),
    };
    let handle = bs_search::start_with_index(&ctx, switch.clone() as Arc<dyn SearchIndex>)
        .await
        .unwrap();
    let router = handle.router.clone();

    let uw9b = enriched("uw9b-f", true);
    let oivnh = enriched("o-ivnh", true);
    bus.publish(topics::KILLMAIL_ENRICHED, &records(&uw9b))
        .await
        .unwrap();
    let n = uw9b.len() as u64;
    eventually("first fight indexed", || async {
        killmail_count(engine.index.as_ref()).await == n
    })
    .await;
    let (status, body) = get(&router, "/search/autocomplete?q=uw9b").await;
    assert_eq!(status, 200);
    assert_eq!(hit_keys(&body)[0], ("systems".into(), "30001003".into()));

    // Down: the API says so clearly, readiness fails, the consumer keeps its batch.
    switch.set_down(true);
    let (status, body) = get(&router, "/search/autocomplete?q=uw9b").await;
    assert_eq!(status, 503);
    assert_eq!(body, serde_json::json!({"error": "search unavailable"}));
    let (status, _) = get(&router, "/search?q=jorund").await;
    assert_eq!(status, 503);
    let check = SearchCheck(switch.clone() as Arc<dyn SearchIndex>);
    assert!(check.check().await.is_err());
    let failed_before = switch.failed.load(Ordering::SeqCst);
    bus.publish(topics::KILLMAIL_ENRICHED, &records(&oivnh))
        .await
        .unwrap();
    eventually("consumer tried while down", || async {
        switch.failed.load(Ordering::SeqCst) >= failed_before + 3
    })
    .await;
    assert_eq!(
        killmail_count(engine.index.as_ref()).await,
        n,
        "nothing written while down"
    );

    // Back: the retried batch goes through, nothing is lost.
    switch.set_down(false);
    assert!(check.check().await.is_ok());
    let total = n + oivnh.len() as u64;
    eventually("second fight indexed after recovery", || async {
        killmail_count(engine.index.as_ref()).await == total
    })
    .await;
    let (status, body) = get(&router, "/search/autocomplete?q=o-iv").await;
    assert_eq!(status, 200);
    assert_eq!(hit_keys(&body)[0], ("systems".into(), "30004049".into()));

    ctx.shutdown.cancel();
    for t in handle.tasks {
        guard(t).await.unwrap();
    }

    // Reindex rebuilds the same collections from the bus alone.
    engine.index.clear(Collection::Killmails).await.unwrap();
    let summary = bs_search::reindex_from(
        Arc::clone(&bus),
        Arc::clone(&engine.index),
        "search-reindex-test",
        std::time::Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(summary.records, total);
    assert_eq!(summary.counts["killmails"], total);
    assert!(summary.counts["systems"] > 5_000);
    assert!(summary.counts["alliances"] > 10);
    engine.cleanup().await;
}
