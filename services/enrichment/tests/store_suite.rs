//! One store conformance suite, run on SQLite and (when `BATTLESCOPE_TEST_POSTGRES` is set,
//! mandatory under CI) PostgreSQL.

use bs_enrichment::EnrichmentStore;
use bs_enrichment::domain::RULES_VERSION;
use bs_enrichment::store::NameEntry;
use bs_store::{Database, StoreTarget};

use crate::helpers::*;

/// Some denormalised columns of `enriched_killmails`.
type ColumnsRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<f64>,
    f64,
    String,
    String,
    Option<Vec<u8>>,
);

async fn suite(dir: tempfile::TempDir, db: Database) {
    let w = world_on(dir, db, None, quick()).await;
    let store = &w.store;
    let events: Vec<_> = small_fight().into_iter().take(20).collect();
    let mut ids: Vec<i64> = events.iter().map(|e| e.killmail.killmail_id).collect();
    ids.sort_unstable();

    assert!(store.existing(&ids).await.unwrap().is_empty());
    feed(&w.enricher, &events, 50).await;
    let existing = store.existing(&ids).await.unwrap();
    assert_eq!(existing.len(), 20);
    let sde_version = bs_sde::StaticData::bundled().version().to_owned();
    for e in existing.values() {
        assert_eq!((e.version, e.revision), (RULES_VERSION, 0));
        assert_eq!(e.sde_version, sde_version);
        assert!(e.names_pending, "offline: player names pending");
    }

    // Payloads round-trip, one and many; unknown ids are simply absent.
    let one = store.payload(ids[0]).await.unwrap().unwrap();
    let parsed: bs_events::KillmailEnriched = serde_json::from_str(&one).unwrap();
    assert_eq!(parsed.killmail_id, ids[0]);
    assert!(store.payload(1).await.unwrap().is_none());
    let mut many_ids = ids.clone();
    many_ids.push(1);
    assert_eq!(store.payloads(&many_ids).await.unwrap().len(), 20);

    // Columns carry the denormalised fields (and match the payload).
    let (ship, system, region, sec, isk, source, payload_text, payload_zstd): ColumnsRow =
        bs_store::sqlx::query_as(
            "SELECT ship_type_name, system_name, region_name, security_status, isk_total, value_source, \
             payload, payload_zstd FROM enriched_killmails WHERE killmail_id = $1",
        )
        .bind(ids[0])
        .fetch_one(w.db.pool())
        .await
        .unwrap();
    assert_eq!(ship, parsed.victim.ship.type_name);
    assert_eq!(system, parsed.system.name);
    assert_eq!(region, parsed.system.region_name);
    assert_eq!(sec, parsed.system.security_status);
    assert_eq!(isk, parsed.isk.total);
    assert_eq!(source, "computed");
    // Large JSON is stored compressed, small JSON as text; either way it reads back whole.
    if one.len() >= 1024 {
        assert!(payload_text.is_empty() && payload_zstd.is_some());
    } else {
        assert_eq!((payload_text.as_str(), payload_zstd), (one.as_str(), None));
    }
    let (compressed,): (i64,) = bs_store::sqlx::query_as(
        "SELECT COUNT(*) FROM enriched_killmails WHERE payload_zstd IS NOT NULL AND payload = '' \
         AND source_event_zstd IS NOT NULL AND source_event = ''",
    )
    .fetch_one(w.db.pool())
    .await
    .unwrap();
    assert!(
        compressed > 0,
        "a fight's killmails are large enough to compress"
    );

    // Pending rows page in id order.
    let page1 = store.pending(0, 7).await.unwrap();
    assert_eq!(
        page1.iter().map(|r| r.killmail_id).collect::<Vec<_>>(),
        ids[..7].to_vec()
    );
    let page2 = store.pending(page1[6].killmail_id, 100).await.unwrap();
    assert_eq!(page2.len(), 13);
    for r in page1.iter().chain(&page2) {
        let input: serde_json::Value = serde_json::from_str(&r.source_event).unwrap();
        assert!(input.is_object(), "the stored input reads back as JSON");
        assert_eq!(
            Some(&r.payload),
            store.payload(r.killmail_id).await.unwrap().as_ref()
        );
    }

    // Stale rows: none for the current versions, all for another.
    assert!(
        store
            .stale(RULES_VERSION, &sde_version, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .stale(RULES_VERSION + 1, &sde_version, 0, 100)
            .await
            .unwrap()
            .len(),
        20
    );
    assert_eq!(
        store
            .stale(RULES_VERSION, "other", 0, 100)
            .await
            .unwrap()
            .len(),
        20
    );

    // Names: TTL, upsert, negative entries.
    let now = 1_000_000;
    let names = vec![
        NameEntry {
            id: 90_000_001,
            name: Some("Pilot A".into()),
            category: Some("character".into()),
        },
        NameEntry {
            id: 90_000_002,
            name: None,
            category: None,
        },
    ];
    store.put_names(&names, now, now + 10).await.unwrap();
    let mut got = store
        .names(&[90_000_001, 90_000_002, 90_000_003], now + 5)
        .await
        .unwrap();
    got.sort_by_key(|n| n.id);
    assert_eq!(got, names);
    assert!(
        store
            .names(&[90_000_001], now + 10)
            .await
            .unwrap()
            .is_empty(),
        "expired"
    );
    let renamed = vec![NameEntry {
        id: 90_000_001,
        name: Some("Pilot B".into()),
        category: Some("character".into()),
    }];
    store
        .put_names(&renamed, now + 20, now + 100)
        .await
        .unwrap();
    assert_eq!(store.names(&[90_000_001], now + 50).await.unwrap(), renamed);
    // Many ids at once (more than one placeholder chunk).
    let bulk: Vec<NameEntry> = (0..1200)
        .map(|i| NameEntry {
            id: 95_000_000 + i,
            name: Some(format!("N{i}")),
            category: None,
        })
        .collect();
    store.put_names(&bulk, now, now + 100).await.unwrap();
    let bulk_ids: Vec<i64> = bulk.iter().map(|n| n.id).collect();
    assert_eq!(store.names(&bulk_ids, now).await.unwrap().len(), 1200);

    // The ESI cache.
    store
        .cache_put("type", 7, "{\"name\":\"X\",\"group_id\":25}", now, now + 10)
        .await
        .unwrap();
    store
        .cache_put("type", 8, "null", now, now + 10)
        .await
        .unwrap();
    store
        .cache_put("type", 7, "{\"name\":\"Y\",\"group_id\":25}", now, now + 10)
        .await
        .unwrap();
    let all = store.cache_all("type", now).await.unwrap();
    assert_eq!(
        all,
        vec![
            (7, "{\"name\":\"Y\",\"group_id\":25}".to_owned()),
            (8, "null".to_owned())
        ]
    );
    assert!(store.cache_all("type", now + 10).await.unwrap().is_empty());
    assert!(store.cache_all("system", now).await.unwrap().is_empty());

    let counts = store.counts(now).await.unwrap();
    assert_eq!(counts.killmails, 20);
    assert_eq!(counts.names_pending, 20);
    assert_eq!(counts.outbox_pending, 20);
    assert_eq!(counts.esi_cache_entries, 2);
    assert!(counts.names_cached >= 1201);

    // Rows and events are written together.
    assert_eq!(outbox(&w.db).await.len(), 20);
    w.db.close().await;
}

#[tokio::test]
async fn store_suite_sqlite() {
    let dir = bs_testkit::temp_dir();
    let db = open_sqlite(dir.path()).await;
    suite(dir, db).await;
}

#[tokio::test]
async fn store_suite_postgres() {
    let Some(url) = bs_testkit::engine(bs_testkit::POSTGRES) else {
        return;
    };
    let target = StoreTarget::Postgres {
        server_url: url,
        database: bs_testkit::unique_name("enrichment_test"),
    };
    let db = Database::open(&target, 4).await.unwrap();
    db.migrate(bs_enrichment::MIGRATIONS).await.unwrap();
    suite(bs_testkit::temp_dir(), db).await;
}
