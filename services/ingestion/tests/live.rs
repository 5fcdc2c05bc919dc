//! The R2Z2 live feed end to end: `start` against `FakeZkb` (and `FakeEsi`
//! for repairs), through the outbox to the embedded bus.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bs_ingestion::store::IngestionStore;
use bs_zkb::fake::{FakeZkb, FakeZkbOptions};

use crate::helpers::{config, eventually, ingested_events, killmails, start};

async fn open(cfg: &bs_config::Config) -> Arc<bs_ingestion::sources::IngestCtx> {
    bs_ingestion::open(cfg, Arc::new(bs_runtime::SystemClock))
        .await
        .unwrap()
}

/// Checks the invariants of a finished run: exactly the served set with its
/// latest content, the holes recorded, and one "new" event per killmail.
async fn assert_served_exactly(
    fake: &FakeZkb,
    cfg: &bs_config::Config,
    bus: &Arc<dyn bs_bus::EventBus>,
) {
    let ctx = open(cfg).await;
    let expected = fake.expected();
    let stats = ctx.store.stats().await.unwrap();
    let mut missing = Vec::new();
    for id in expected.keys() {
        if ctx.store.killmail(*id).await.unwrap().is_none() {
            missing.push(*id);
        }
    }
    assert!(missing.is_empty(), "missing {missing:?}; stats {stats:?}");
    assert_eq!(
        stats.killmails_total as usize,
        expected.len(),
        "exactly the served set"
    );
    for (id, e) in &expected {
        let got = ctx
            .store
            .killmail(*id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("killmail {id} missing"));
        assert_eq!(got.hash, e.hash);
        if got.source == "r2z2" {
            assert_eq!(
                got.isk_value,
                Some(e.total_value),
                "killmail {id} has its latest (re-published) content"
            );
        }
    }
    let events = ingested_events(bus, &bs_testkit::unique_name("check")).await;
    let mut new_events: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for (env_id, km, is_update, _) in &events {
        if !is_update {
            new_events.entry(*km).or_default().insert(env_id.clone());
        }
    }
    assert_eq!(new_events.len(), expected.len(), "every killmail announced");
    assert!(
        new_events.values().all(|ids| ids.len() == 1),
        "no killmail announced twice as new"
    );
}

#[tokio::test]
async fn live_feed_ends_with_exactly_the_served_set() {
    let kms: Vec<_> = killmails().into_iter().step_by(9).take(180).collect();
    let fake = FakeZkb::start_with(
        FakeZkbOptions {
            hole_every: 13,
            duplicate_every: 17,
            republish_every: 11,
            initially_published: 1,
            // The head advances slower than the ingester reads, so it keeps meeting the 404 head.
            advance_every: Some(Duration::from_millis(70)),
            fault_every: 23,
            ..FakeZkbOptions::default()
        },
        kms,
    )
    .await
    .unwrap();
    let dir = bs_testkit::temp_dir();
    let cfg = config(dir.path(), fake.url(), "http://127.0.0.1:9");
    // Without a cursor the feed starts at sequence.json, which lags by up to 51 and so
    // would skip the first entries; a cursor at the first sequence makes the served set exact.
    open(&cfg)
        .await
        .store
        .apply(
            bs_ingestion::store::Batch {
                cursor: Some(("r2z2".into(), fake.first_sequence())),
                ..Default::default()
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let running = start(cfg.clone(), &dir.path().join("bus")).await;
    let router = running.handle.router.clone();
    let end = fake.end();
    eventually(120, "the ingester to reach the end of the feed", || {
        let router = router.clone();
        async move {
            let (_, s) = crate::helpers::call(&router, "GET", "/status", None).await;
            (s["live"]["cursor"].as_i64() == Some(end) && s["outbox_pending"] == 0).then_some(())
        }
    })
    .await;
    let (_, status) = crate::helpers::call(&router, "GET", "/status", None).await;
    let stats = fake.stats();
    assert!(
        stats.faults > 0 && stats.rate_limited == 0,
        "faults were injected and the pacing kept under 20/s: {stats:?}"
    );
    assert!(
        status["duplicates"].as_i64().unwrap() > 0,
        "duplicate sequences were seen: {status}"
    );
    assert!(
        status["updates"].as_i64().unwrap() > 0,
        "re-published entries were updated: {status}"
    );
    let ctx = open(&cfg).await;
    let gaps: BTreeSet<i64> = ctx
        .store
        .gaps(1000)
        .await
        .unwrap()
        .iter()
        .map(|g| g.first_sequence)
        .collect();
    assert_eq!(
        gaps,
        fake.holes().into_iter().collect(),
        "every hole recorded once, nothing else skipped"
    );
    assert_served_exactly(&fake, &cfg, &running.bus).await;
    let events = ingested_events(&running.bus, &bs_testkit::unique_name("updates")).await;
    assert!(
        events.iter().any(|e| e.2),
        "is_update events were published"
    );
    running.stop().await;
}

#[tokio::test]
async fn an_expired_cursor_is_repaired_from_history() {
    let kms: Vec<_> = killmails().into_iter().step_by(17).take(110).collect();
    let fake = FakeZkb::start_with(
        FakeZkbOptions {
            initially_published: 40,
            retention: Some(25),
            sequence_lag: 10,
            ..FakeZkbOptions::default()
        },
        kms,
    )
    .await
    .unwrap();
    let esi = bs_esi::fake::FakeEsi::start().await.unwrap();
    let dir = bs_testkit::temp_dir();
    let cfg = config(dir.path(), fake.url(), esi.url());
    let ctx = open(&cfg).await;
    // A previous run stopped at the first sequence; its killmails were lost to retention since.
    let first = fake.first_sequence();
    ctx.store
        .apply(
            bs_ingestion::store::Batch {
                cursor: Some(("r2z2".into(), first)),
                ..Default::default()
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    fake.publish_all();
    let running = start(cfg.clone(), &dir.path().join("bus")).await;
    let router = running.handle.router.clone();
    let end = fake.end();
    eventually(120, "the feed and the repair to finish", || {
        let router = router.clone();
        async move {
            let (_, s) = crate::helpers::call(&router, "GET", "/status", None).await;
            let (_, jobs) = crate::helpers::call(&router, "GET", "/backfill/jobs", None).await;
            let done = jobs["jobs"]
                .as_array()
                .is_some_and(|j| !j.is_empty() && j.iter().all(|j| j["status"] == "completed"));
            (s["live"]["cursor"].as_i64() == Some(end) && done && s["outbox_pending"] == 0)
                .then_some(())
        }
    })
    .await;
    let gaps = ctx.store.gaps(10).await.unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].kind, "expired");
    assert_eq!(gaps[0].first_sequence, first);
    assert!(gaps[0].repair_job_id.is_some());
    let stats = ctx.store.stats().await.unwrap();
    assert!(
        stats.by_source.get("zkb_history").copied().unwrap_or(0) > 50,
        "{stats:?}"
    );
    assert_served_exactly(&fake, &cfg, &running.bus).await;
    running.stop().await;
}

#[tokio::test]
async fn redisq_source_completes_bodies_from_esi() {
    let kms: Vec<_> = killmails().into_iter().step_by(31).take(25).collect();
    let fake = FakeZkb::start_with(
        FakeZkbOptions {
            hole_every: 7,
            ..FakeZkbOptions::default()
        },
        kms,
    )
    .await
    .unwrap();
    let esi = bs_esi::fake::FakeEsi::start().await.unwrap();
    let dir = bs_testkit::temp_dir();
    let mut cfg = config(dir.path(), fake.url(), esi.url());
    cfg.ingestion.live = false;
    cfg.ingestion.redisq_url = fake.redisq_url();
    let running = start(cfg.clone(), &dir.path().join("bus")).await;
    let router = running.handle.router.clone();
    let want = fake.expected().len() as i64;
    eventually(60, "every RedisQ package to be stored", || {
        let router = router.clone();
        async move {
            let (_, s) = crate::helpers::call(&router, "GET", "/stats", None).await;
            (s["by_source"]["redisq"].as_i64() == Some(want)).then_some(())
        }
    })
    .await;
    let ctx = open(&cfg).await;
    for (id, e) in fake.expected() {
        let got = ctx.store.killmail(id).await.unwrap().unwrap();
        assert_eq!(got.isk_value, Some(e.total_value), "zkb from the package");
        assert!(
            got.killmail["attackers"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "body from ESI"
        );
    }
    running.stop().await;
}
