//! Live-mode price refresh: fetched from ESI, stored, used, and reloaded after a restart.

use std::sync::Arc;

use bs_enrichment::{EnrichmentStore, Knowledge, Ttls};
use bs_esi::fake::FakeEsi;

use crate::helpers::*;

#[tokio::test]
async fn prices_refresh_from_esi_and_survive_a_restart() {
    let fake = FakeEsi::start().await.unwrap();
    let w = world(Some(esi_client(&fake)), quick()).await;
    let knowledge = Arc::clone(&w.enricher.knowledge);
    assert_eq!(knowledge.prices_source(), "bundled");
    let now = chrono::Utc::now().timestamp_millis();
    assert!(knowledge.refresh_prices(now).await.unwrap());
    assert!(
        knowledge.prices_source().starts_with("esi"),
        "{}",
        knowledge.prices_source()
    );
    assert_eq!(fake.stats().requests("markets_prices"), 1);
    assert_eq!(w.store.cache_all("prices", now).await.unwrap().len(), 1);

    // A restarted service uses the stored copy without asking ESI.
    let restarted = Knowledge::new(
        bs_sde::StaticData::bundled(),
        w.store.clone(),
        Arc::new(bs_cache::MemoryCache::new(1000)),
        None,
        Ttls::default(),
    );
    restarted.load(now).await.unwrap();
    assert_eq!(restarted.prices_source(), "esi (stored)");
    // Offline, a refresh is a no-op.
    assert!(!restarted.refresh_prices(now).await.unwrap());
    assert_eq!(fake.stats().requests("markets_prices"), 1);

    // Killmails are valued with them (computed, positive).
    let report = feed(&w.enricher, &small_fight(), 500).await;
    assert_eq!(report.published, small_fight().len());
    assert!(
        stored(&w.db)
            .await
            .iter()
            .all(|e| e.isk.value_source == "computed" && e.isk.total >= 0.0)
    );
}
