//! Shared test fixtures: real killmails, a fresh enrichment world per test, FakeEsi clients.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bs_cache::MemoryCache;
use bs_domain::{Killmail, KillmailSource};
use bs_enrichment::{Enricher, Knowledge, PipelineSettings, SqlEnrichmentStore, Ttls};
use bs_esi::EsiClient;
use bs_esi::fake::FakeEsi;
use bs_events::{Envelope, KillmailEnriched, KillmailIngested};
use bs_runtime::SystemClock;
use bs_sde::StaticData;
use bs_store::{Database, StoreTarget};

/// The repository's fight fixtures.
pub fn fixture_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/killmails");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".jsonl.gz"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// ESI-format killmails with `killmail_hash` (EVE Ref), as ingestion would publish them.
pub fn read_killmails(path: &Path) -> Vec<KillmailIngested> {
    let file = std::fs::File::open(path).unwrap();
    let reader = BufReader::new(flate2::read::MultiGzDecoder::new(file));
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line.unwrap();
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let hash = value["killmail_hash"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let killmail: Killmail = serde_json::from_value(value).unwrap();
        out.push(KillmailIngested {
            killmail,
            hash,
            zkb: None,
            source: KillmailSource::Everef,
            ingested_at: "2026-12-01T00:00:00Z".parse().unwrap(),
            is_update: false,
        });
    }
    out
}

pub fn fixture_killmails() -> Vec<KillmailIngested> {
    fixture_files()
        .iter()
        .flat_map(|p| read_killmails(p))
        .collect()
}

/// The smallest fixture (LXQ2-T), for tests that do not need them all.
pub fn small_fight() -> Vec<KillmailIngested> {
    let path = fixture_files()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("lxq2-t"))
        .unwrap();
    read_killmails(&path)
}

/// A client for a fake, tuned so faults resolve quickly in tests.
pub fn esi_client(fake: &FakeEsi) -> EsiClient {
    let mut config = bs_esi::EsiConfig::for_url(fake.url());
    config.downtime = None;
    config.max_wait = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(10);
    config.retry = bs_esi::RetryConfig {
        max_retries: 2,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    };
    EsiClient::new(config).unwrap()
}

/// One service's state on a fresh SQLite database.
pub struct World {
    pub _dir: tempfile::TempDir,
    pub db: Database,
    pub store: Arc<SqlEnrichmentStore>,
    pub enricher: Arc<Enricher>,
}

pub async fn open_sqlite(dir: &Path) -> Database {
    let db = Database::open(&StoreTarget::Sqlite(dir.join("enrichment.db")), 4)
        .await
        .unwrap();
    db.migrate(bs_enrichment::MIGRATIONS).await.unwrap();
    db
}

pub async fn world(esi: Option<EsiClient>, settings: PipelineSettings) -> World {
    let dir = bs_testkit::temp_dir();
    let db = open_sqlite(dir.path()).await;
    world_on(dir, db, esi, settings).await
}

pub async fn world_on(
    dir: tempfile::TempDir,
    db: Database,
    esi: Option<EsiClient>,
    settings: PipelineSettings,
) -> World {
    let store = Arc::new(SqlEnrichmentStore::new(db.clone()));
    let knowledge = Arc::new(Knowledge::new(
        StaticData::bundled(),
        store.clone(),
        Arc::new(MemoryCache::new(1_000_000)),
        esi,
        Ttls::default(),
    ));
    knowledge
        .load(chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();
    let enricher = Arc::new(Enricher::new(
        knowledge,
        store.clone(),
        Arc::new(SystemClock),
        settings,
    ));
    World {
        _dir: dir,
        db,
        store,
        enricher,
    }
}

/// Fast settings: short deadlines so fault tests move quickly.
pub fn quick() -> PipelineSettings {
    PipelineSettings {
        inline_deadline: Duration::from_millis(300),
        resolver_deadline: Duration::from_secs(20),
        resolver_idle: Duration::from_millis(50),
        page: 200,
    }
}

/// A healthy-ESI setting: the inline deadline is far above any response time, so a
/// loaded machine cannot turn an answer into "pending".
pub fn patient() -> PipelineSettings {
    PipelineSettings {
        inline_deadline: Duration::from_secs(60),
        ..quick()
    }
}

/// Every event waiting in the outbox, in publication order.
pub async fn outbox(db: &Database) -> Vec<KillmailEnriched> {
    // Through bs-store: large payloads are stored compressed.
    let rows = bs_store::outbox::peek(db, i64::MAX).await.unwrap();
    rows.iter()
        .map(|(_, _, p)| {
            Envelope::from_bytes(p.as_bytes())
                .unwrap()
                .decode::<KillmailEnriched>()
                .unwrap()
        })
        .collect()
}

pub async fn row_count(db: &Database) -> i64 {
    let (n,): (i64,) = bs_store::sqlx::query_as("SELECT COUNT(*) FROM enriched_killmails")
        .fetch_one(db.pool())
        .await
        .unwrap();
    n
}

/// Stored payloads of every row.
pub async fn stored(db: &Database) -> Vec<KillmailEnriched> {
    let rows: Vec<(String, Option<Vec<u8>>)> = bs_store::sqlx::query_as(
        "SELECT payload, payload_zstd FROM enriched_killmails ORDER BY killmail_id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(text, zstd)| {
            let json = match zstd {
                Some(z) => bs_store::outbox::Payload::Zstd(z).decode().unwrap(),
                None => text,
            };
            serde_json::from_str(&json).unwrap()
        })
        .collect()
}

/// Enriches `events` in consumer-sized batches.
pub async fn feed(
    enricher: &Enricher,
    events: &[KillmailIngested],
    batch: usize,
) -> bs_enrichment::BatchReport {
    let mut total = bs_enrichment::BatchReport::default();
    for chunk in events.chunks(batch) {
        let r = guard(enricher.handle_events(chunk.to_vec())).await.unwrap();
        total.received += r.received;
        total.duplicates += r.duplicates;
        total.published += r.published;
        total.pending += r.pending;
    }
    total
}

/// A stall detector, not a timing assertion: the pipeline must finish at all.
pub async fn guard<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("the pipeline stalled")
}
