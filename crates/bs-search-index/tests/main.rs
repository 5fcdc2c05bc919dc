//! The crate's single integration-test binary: the conformance suite run against tantivy
//! (always) and Typesense (when `BATTLESCOPE_TEST_TYPESENSE` is set; required when `CI=true`).

mod fixtures;
mod suite;

use std::sync::atomic::{AtomicUsize, Ordering};

use bs_search_index::SearchIndex;
use bs_search_index::{TantivyConfig, TantivyIndex, TypesenseConfig, TypesenseIndex};

/// A fresh in-memory tantivy index.
fn tantivy() -> TantivyIndex {
    TantivyIndex::open(TantivyConfig {
        writer_memory: 32 << 20,
        ..Default::default()
    })
    .expect("open tantivy")
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A Typesense index with a collection prefix unique to this run and test, or `None` (skip)
/// when no server is configured outside CI. In CI a missing or unreachable server fails.
async fn typesense(test: &str) -> Option<TypesenseIndex> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let url = match std::env::var("BATTLESCOPE_TEST_TYPESENSE") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            assert!(!ci, "CI=true but BATTLESCOPE_TEST_TYPESENSE is not set");
            eprintln!("skipping typesense {test}: BATTLESCOPE_TEST_TYPESENSE not set");
            return None;
        }
    };
    let key = std::env::var("BATTLESCOPE_TEST_TYPESENSE_KEY").unwrap_or_default();
    let mut cfg = TypesenseConfig::new(url.clone(), key);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or(0);
    cfg.collection_prefix = format!(
        "t{}_{}_{}_{test}_",
        std::process::id(),
        nanos,
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let idx = TypesenseIndex::new(cfg).expect("typesense client");
    if let Err(e) = idx.ping().await {
        panic!("typesense at {url} is configured but unreachable: {e}");
    }
    Some(idx)
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod tantivy_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let idx = crate::tantivy();
                    crate::suite::$name(&idx).await;
                }
            )*
        }
        mod typesense_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(idx) = crate::typesense(stringify!($name)).await else { return };
                    crate::suite::$name(&idx).await;
                    idx.drop_collections().await.expect("drop test collections");
                }
            )*
        }
    };
}

conformance!(
    awkward_system_names,
    apostrophes_dots_and_tickers,
    short_names_and_numerals,
    typos,
    mixed_types_and_ranking,
    facets_and_filters,
    sorting_and_paging,
    deletes_and_merges,
    idempotent_reupsert,
    bad_input_is_rejected,
    entity_detail_queries,
    prefix_ranking_by_activity,
    deleted_doc_vanishes_from_autocomplete,
    renamed_entity_found_under_new_name_only,
    regions_and_constellations,
);

/// The tantivy committer makes writes visible without an explicit refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tantivy_commits_in_the_background() {
    use bs_search_index::{Collection, Document, SystemDoc};
    let idx = TantivyIndex::open(TantivyConfig {
        commit_interval: std::time::Duration::from_millis(50),
        ..Default::default()
    })
    .unwrap();
    let doc = Document::System(SystemDoc {
        id: "30004049".into(),
        name: "O-IVNH".into(),
        ..Default::default()
    });
    idx.upsert(&[doc]).await.unwrap();
    // Poll (no fixed sleep): visible once the committer ran.
    let mut seen = 0;
    for _ in 0..200 {
        seen = idx.count(Collection::Systems).await.unwrap();
        if seen == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 1);
}

/// An on-disk index survives reopening (the all-in-one data dir).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tantivy_reopens_from_disk() {
    use bs_search_index::{AllianceDoc, Collection, Document};
    let dir = tempfile::tempdir().unwrap();
    let cfg = TantivyConfig {
        dir: Some(dir.path().join("search")),
        ..Default::default()
    };
    {
        let idx = TantivyIndex::open(cfg.clone()).unwrap();
        let doc = Document::Alliance(AllianceDoc {
            id: "1354830081".into(),
            name: "Goonswarm Federation".into(),
            ticker: "CONDI".into(),
            ..Default::default()
        });
        idx.upsert(&[doc]).await.unwrap();
        idx.refresh().await.unwrap();
    }
    let idx = TantivyIndex::open(cfg).unwrap();
    assert_eq!(idx.count(Collection::Alliances).await.unwrap(), 1);
    let hits = idx.autocomplete("condi", &[], 5).await.unwrap();
    assert_eq!(hits[0].id, "1354830081");
}

/// Compaction after a bulk load keeps every document and every match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tantivy_compact_keeps_documents() {
    use bs_search_index::Collection;
    let idx = tantivy();
    let fx = fixtures::Fixtures::load();
    // Several commits make several segments.
    for chunk in fx.documents().chunks(500) {
        idx.upsert(chunk).await.unwrap();
        idx.refresh().await.unwrap();
    }
    assert!(idx.segment_count() > 1);
    idx.compact().await.unwrap();
    assert_eq!(idx.segment_count(), 1);
    assert_eq!(
        idx.count(Collection::Systems).await.unwrap(),
        fx.systems.len() as u64
    );
    let hits = idx.autocomplete("o-iv", &[], 3).await.unwrap();
    assert_eq!(hits[0].id, "30004049");
}

/// A server that is down is reported as unavailable (HTTP 503 upstream), not as a crash.
#[tokio::test]
async fn typesense_down_is_unavailable() {
    use bs_search_index::{Collection, SearchError};
    // Port 9 (discard) on localhost: nothing listens there in the test environment.
    let mut cfg = TypesenseConfig::new("http://127.0.0.1:9", "k");
    cfg.timeout = std::time::Duration::from_secs(2);
    let idx = TypesenseIndex::new(cfg).unwrap();
    assert!(matches!(idx.ping().await, Err(SearchError::Unavailable(_))));
    assert!(matches!(
        idx.autocomplete("jita", &[Collection::Systems], 5).await,
        Err(SearchError::Unavailable(_))
    ));
}
