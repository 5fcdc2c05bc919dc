//! The indexer's mirror survives a restart (the service's own database): activity counters
//! and ranking are kept, and a killmail seen before the restart is not counted again when a
//! later revision arrives. Tickers from `killmail.enriched` reach the documents; and, end to
//! end, a player alliance is found by its ticker after the enrichment service enriched the
//! killmails (offline: bundled real names and tickers).

use std::sync::Arc;

use bs_bus::{BusConfig, Record};
use bs_config::Config;
use bs_domain::{Killmail, KillmailSource};
use bs_events::{Envelope, KillmailIngested, topics};
use bs_runtime::{ServiceContext, ServiceDirectory, SystemClock};
use bs_search::indexer::EntityKind;
use bs_search::{Search, api, store};
use bs_search_index::Collection;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

const HORDE: i64 = 99_005_338;

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.join("data"),
        ..Config::default()
    }
}

#[tokio::test]
async fn counters_survive_a_restart_and_are_not_counted_twice() {
    guard(async {
        let dir = bs_testkit::temp_dir();
        let cfg = config(dir.path());
        let named = enriched("lxq2-t", true);
        let deliveries: Vec<_> = named
            .iter()
            .enumerate()
            .map(|(i, e)| delivery(e, i as i64))
            .collect();

        let engine = Engine::open(Backend::Tantivy).unwrap();
        let state = store::open(&cfg).await.unwrap();
        let search = Search::with_state(Arc::clone(&engine.index), Arc::new(SystemClock), state)
            .await
            .unwrap();
        search.prepare().await.unwrap();
        for chunk in deliveries.chunks(100) {
            search.handle_batch(chunk).await.unwrap();
        }
        let before = search
            .with_indexer(|ix| ix.entity(EntityKind::Alliance, HORDE).cloned())
            .unwrap();
        assert!(before.kills + before.losses > 10, "{before:?}");
        let systems_before = search.with_indexer(|ix| ix.entity_count());
        drop(search);

        // A new process: a fresh, empty index, the same database.
        let engine2 = Engine::open(Backend::Tantivy).unwrap();
        let state = store::open(&cfg).await.unwrap();
        let search = Search::with_state(Arc::clone(&engine2.index), Arc::new(SystemClock), state)
            .await
            .unwrap();
        assert_eq!(search.with_indexer(|ix| ix.entity_count()), systems_before);
        assert_eq!(
            search.with_indexer(|ix| ix.entity(EntityKind::Alliance, HORDE).cloned()),
            Some(before.clone())
        );
        // A later revision of every killmail (names re-resolved): counted once, not twice.
        let later: Vec<_> = named
            .iter()
            .cloned()
            .map(|mut e| {
                e.revision += 1;
                e
            })
            .enumerate()
            .map(|(i, e)| delivery(&e, 1_000 + i as i64))
            .collect();
        search.prepare().await.unwrap();
        for chunk in later.chunks(100) {
            search.handle_batch(chunk).await.unwrap();
        }
        let after = search
            .with_indexer(|ix| ix.entity(EntityKind::Alliance, HORDE).cloned())
            .unwrap();
        assert_eq!(
            (after.kills, after.losses),
            (before.kills, before.losses),
            "counted twice after the restart"
        );
        // The rebuilt document ranks with the kept activity.
        engine2.index.refresh().await.unwrap();
        let hits = engine2
            .index
            .autocomplete("pandemic horde", &[Collection::Alliances], 5)
            .await
            .unwrap();
        let horde = hits.iter().find(|h| h.id == HORDE.to_string()).unwrap();
        assert!(
            horde.extra["activityScore"].as_i64().unwrap() > 0,
            "{horde:?}"
        );
    })
    .await
}

#[tokio::test]
async fn tickers_on_events_reach_the_documents() {
    guard(async {
        let engine = Engine::open(Backend::Tantivy).unwrap();
        let search = Arc::new(Search::new(
            Arc::clone(&engine.index),
            Arc::new(SystemClock),
        ));
        search.prepare().await.unwrap();
        let mut kms = enriched("lxq2-t", true);
        for k in &mut kms {
            for who in
                std::iter::once(&mut k.victim.who).chain(k.attackers.iter_mut().map(|a| &mut a.who))
            {
                if who.alliance_id == Some(HORDE) {
                    who.alliance_ticker = Some("REKTD".into());
                }
            }
        }
        let deliveries: Vec<_> = kms
            .iter()
            .enumerate()
            .map(|(i, e)| delivery(e, i as i64))
            .collect();
        search.handle_batch(&deliveries).await.unwrap();
        engine.index.refresh().await.unwrap();
        let router = api::router(Arc::clone(&search));
        for q in ["%5BREKTD%5D", "REKTD", "rektd", "rekt"] {
            let (status, body) = get(&router, &format!("/search/autocomplete?q={q}")).await;
            assert_eq!(status, 200);
            assert_eq!(
                hit_keys(&body).first(),
                Some(&("alliances".into(), HORDE.to_string())),
                "{q}: {body}"
            );
        }
    })
    .await
}

/// A repository fight as `killmail.ingested` records.
fn ingested(name: &str) -> Vec<Record> {
    use std::io::BufRead;
    let file = std::fs::File::open(fixture(name)).unwrap();
    std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file))
        .lines()
        .map(Result::unwrap)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            let hash = v["killmail_hash"].as_str().unwrap_or("0000").to_owned();
            let km: Killmail = serde_json::from_value(v).unwrap();
            let ev = KillmailIngested {
                killmail: km,
                hash,
                zkb: None,
                source: KillmailSource::Everef,
                ingested_at: chrono::Utc::now(),
                is_update: false,
            };
            let env = Envelope::wrap(&ev, chrono::Utc::now()).unwrap();
            Record {
                key: env.key.clone(),
                payload: env.to_bytes(),
            }
        })
        .collect()
}

#[tokio::test]
async fn a_player_alliance_is_found_by_its_ticker_after_enrichment() {
    guard(async {
        let dir = bs_testkit::temp_dir();
        let bus = bs_bus::connect(&BusConfig::embedded(dir.path().join("bus")))
            .await
            .unwrap();
        bus.ensure_topics(topics::ALL).await.unwrap();
        let ctx = ServiceContext {
            config: Arc::new(config(dir.path())),
            bus: Arc::clone(&bus),
            cache: Arc::new(bs_cache::MemoryCache::new(100_000)),
            clock: Arc::new(SystemClock),
            shutdown: CancellationToken::new(),
            // No ESI: enrichment uses its bundled snapshot of real names and tickers.
            offline: true,
            services: ServiceDirectory::default(),
        };
        let engine = Engine::open(Backend::Tantivy).unwrap();
        let enrichment = bs_enrichment::start(&ctx).await.unwrap();
        let search = bs_search::start_with_index(&ctx, Arc::clone(&engine.index))
            .await
            .unwrap();
        let records = ingested("lxq2-t");
        let n = records.len() as u64;
        bus.publish(topics::KILLMAIL_INGESTED, &records)
            .await
            .unwrap();
        eventually("the fight is enriched and indexed", || async {
            engine.index.refresh().await.is_ok()
                && engine.index.count(Collection::Killmails).await.unwrap_or(0) == n
        })
        .await;
        // Pandemic Horde [REKTD], a player alliance: found by what a user sees.
        let last = loop {
            let (status, body) = get(&search.router, "/search/autocomplete?q=%5BREKTD%5D").await;
            if status == 200
                && hit_keys(&body).first() == Some(&("alliances".into(), HORDE.to_string()))
            {
                break body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        let hit = &last["hits"][0];
        assert_eq!(hit["name"], "Pandemic Horde", "{last}");
        let (_, body) = get(
            &search.router,
            "/search/autocomplete?q=REKTD&types=alliances",
        )
        .await;
        assert_eq!(
            hit_keys(&body).first(),
            Some(&("alliances".into(), HORDE.to_string())),
            "{body}"
        );
        ctx.shutdown.cancel();
        for t in enrichment.tasks.into_iter().chain(search.tasks) {
            t.await.unwrap();
        }
    })
    .await
}
