//! Enrichment benchmark on the 79k-killmail EVE Ref week (shared data).
//!
//! Reports:
//! * **cold**: a fresh database and empty caches against a local FakeEsi serving the same
//!   week (names for every id): ESI calls per killmail, killmails/s.
//! * **warm, domain only**: the pure enrichment function with every name known.
//! * **warm, pipeline**: `Enricher::handle_events` on a fresh SQLite database with every
//!   name known (decide, enrich, write rows + outbox in one transaction per batch).
//!
//! Run: `cargo run --release -p bs-enrichment --example bench_enrich [-- LIMIT]`.
//! Data: `$BATTLESCOPE_SHARED_DATA/killmails/everef-killmails-*.jsonl.gz` (default
//! `../shared/data` next to the repository).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bs_domain::{Killmail, KillmailSource};
use bs_enrichment::domain::{self, Input};
use bs_enrichment::{Enricher, Knowledge, PipelineSettings, SqlEnrichmentStore, Ttls};
use bs_esi::fake::{DataPaths, FakeData, FakeEsi, FakeSettings};
use bs_events::KillmailIngested;
use bs_store::{Database, StoreTarget};

const BATCH: usize = 500;

/// CPU seconds (user + system) this process used so far: on a shared machine the
/// wall-clock rate depends on the other load, CPU per killmail much less.
fn cpu_seconds() -> f64 {
    // Fields 14 and 15 of /proc/self/stat (after the parenthesised name) are utime
    // and stime in clock ticks (100 per second on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(") ")?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .map_or(0.0, |ticks| ticks / 100.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn week_files() -> Vec<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared = std::env::var_os("BATTLESCOPE_SHARED_DATA")
        .map_or_else(|| repo.join("../shared/data"), PathBuf::from);
    let dir = shared.join("killmails");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            n.starts_with("everef-killmails-") && n.ends_with(".jsonl.gz")
        })
        .collect();
    files.sort();
    files
}

fn read(path: &Path, out: &mut Vec<KillmailIngested>) {
    let reader = BufReader::new(flate2::read::MultiGzDecoder::new(
        std::fs::File::open(path).unwrap(),
    ));
    for line in reader.lines() {
        let line = line.unwrap();
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let hash = value["killmail_hash"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let Ok(killmail) = serde_json::from_value::<Killmail>(value) else {
            continue;
        };
        out.push(KillmailIngested {
            killmail,
            hash,
            zkb: None,
            source: KillmailSource::Everef,
            ingested_at: chrono::Utc::now(),
            is_update: false,
        });
    }
}

async fn sqlite(dir: &Path, name: &str) -> Database {
    let db = Database::open(&StoreTarget::Sqlite(dir.join(name)), 4)
        .await
        .unwrap();
    db.migrate(bs_enrichment::MIGRATIONS).await.unwrap();
    db
}

fn esi_client(url: &str) -> bs_esi::EsiClient {
    let mut config = bs_esi::EsiConfig::for_url(url);
    config.downtime = None;
    bs_esi::EsiClient::new(config).unwrap()
}

#[tokio::main]
async fn main() {
    // Experiments: `BENCH_CACHE_KIB=16384` sets the SQLite page cache per connection.
    if let Some(kib) = std::env::var("BENCH_CACHE_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        bs_store::set_sqlite_cache_kib(kib);
    }
    let limit: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(usize::MAX);
    let files = week_files();
    let mut events = Vec::new();
    for f in &files {
        read(f, &mut events);
    }
    events.truncate(limit);
    let n = events.len();
    println!("killmails: {n} from {} files", files.len());

    // The fake serves this week, so every id on it has a name.
    let t = Instant::now();
    let data = FakeData::load(&DataPaths {
        killmail_files: files.clone(),
        ..DataPaths::default()
    })
    .unwrap();
    let fake = FakeEsi::start_with(FakeSettings::default(), Arc::new(data))
        .await
        .unwrap();
    println!("fake esi loaded in {:.1}s", t.elapsed().as_secs_f64());

    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn bs_runtime::Clock> = Arc::new(bs_runtime::SystemClock);

    // Cold: empty database and caches, ESI answers inline (generous deadline, so the
    // numbers count what the pipeline asks for, not what a timeout skipped).
    let cold_db = sqlite(dir.path(), "cold.db").await;
    let cold_store = Arc::new(SqlEnrichmentStore::new(cold_db.clone()));
    let knowledge = Arc::new(Knowledge::new(
        bs_sde::StaticData::bundled(),
        cold_store.clone(),
        Arc::new(bs_cache::MemoryCache::new(2_000_000)),
        Some(esi_client(fake.url())),
        Ttls::default(),
    ));
    // The default ticker policy (corporations seen on >= 10 killmails), without the
    // per-minute budget: the figure is what the policy costs for the week, not what a
    // one-minute replay of it is allowed to spend.
    knowledge
        .tickers
        .set_policy(bs_enrichment::tickers::TickerPolicy {
            corporation_calls_per_minute: u32::MAX,
            ..Default::default()
        });
    let settings = PipelineSettings {
        inline_deadline: Duration::from_secs(30),
        ..PipelineSettings::default()
    };
    let cold = Enricher::new(
        knowledge.clone(),
        cold_store,
        clock.clone(),
        settings.clone(),
    );
    let t = Instant::now();
    let mut pending = 0;
    for chunk in events.chunks(BATCH) {
        pending += cold.handle_events(chunk.to_vec()).await.unwrap().pending;
    }
    let resolved_later = cold.resolve_pending_once().await.unwrap();
    // The background corporation fetches the policy queued (low priority in the service).
    let now = chrono::Utc::now().timestamp_millis();
    while knowledge.tickers.wanted() > 0 {
        if knowledge
            .fetch_wanted_tickers(now, Duration::from_secs(60))
            .await
            == 0
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let ticker_stats = &knowledge.tickers.stats;
    println!(
        "tickers: {} esi calls, {} resolved, {} deferred; policy {:?}",
        ticker_stats
            .esi_calls
            .load(std::sync::atomic::Ordering::Relaxed),
        ticker_stats
            .resolved
            .load(std::sync::atomic::Ordering::Relaxed),
        ticker_stats
            .deferred
            .load(std::sync::atomic::Ordering::Relaxed),
        knowledge.tickers.policy(),
    );
    let cold_secs = t.elapsed().as_secs_f64();
    let stats = fake.stats();
    let calls: u64 = stats.requests.values().sum();
    println!(
        "cold: {n} killmails in {cold_secs:.2}s = {:.0} killmails/s; esi requests {calls} ({:?}) = {:.4} per killmail; \
         published with pending names {pending}, updated later {resolved_later}",
        n as f64 / cold_secs,
        stats.requests,
        calls as f64 / n as f64,
    );

    // Warm, domain only: every name is in memory now.
    let now = chrono::Utc::now().timestamp_millis();
    let t = Instant::now();
    let mut still_pending = 0;
    knowledge.with_catalog(now, |catalog| {
        for ev in &events {
            let e = domain::enrich(
                Input {
                    killmail: &ev.killmail,
                    hash: &ev.hash,
                    zkb: ev.zkb.as_ref(),
                    source: ev.source,
                },
                catalog,
            );
            still_pending += usize::from(e.event.names_pending);
        }
    });
    let secs = t.elapsed().as_secs_f64();
    println!(
        "warm domain: {n} killmails in {secs:.2}s = {:.0} killmails/s (single thread; {still_pending} still pending)",
        n as f64 / secs
    );

    // Warm, pipeline: a fresh database, names known.
    let warm_db = sqlite(dir.path(), "warm.db").await;
    let warm_store = Arc::new(SqlEnrichmentStore::new(warm_db.clone()));
    let warm = Enricher::new(knowledge.clone(), warm_store, clock.clone(), settings);
    let before: u64 = fake.stats().requests.values().sum();
    let cpu = cpu_seconds();
    let t = Instant::now();
    for chunk in events.chunks(BATCH) {
        warm.handle_events(chunk.to_vec()).await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let after: u64 = fake.stats().requests.values().sum();
    println!(
        "warm pipeline (sqlite, rows + outbox): {n} killmails in {secs:.2}s = {:.0} killmails/s; {cpu:.1} CPU s = {:.0} \
         killmails per CPU s; esi requests {}; load average {}",
        n as f64 / secs,
        n as f64 / cpu.max(0.01),
        after - before,
        load_average()
    );
    // Stored bytes: each JSON column pair holds its value once (text or zstd).
    let sizes: (f64, f64) = bs_store::sqlx::query_as(
        "SELECT CAST(AVG(LENGTH(payload) + COALESCE(LENGTH(payload_zstd), 0)) AS DOUBLE PRECISION), \
         CAST(AVG(LENGTH(source_event) + COALESCE(LENGTH(source_event_zstd), 0)) AS DOUBLE PRECISION) \
         FROM enriched_killmails",
    )
    .fetch_one(warm_db.pool())
    .await
    .unwrap();
    let (outbox,): (f64,) = bs_store::sqlx::query_as(
        "SELECT CAST(AVG(LENGTH(payload) + COALESCE(LENGTH(payload_zstd), 0)) AS DOUBLE PRECISION) FROM outbox",
    )
    .fetch_one(warm_db.pool())
    .await
    .unwrap();
    let file: u64 = ["warm.db", "warm.db-wal"]
        .iter()
        .map(|f| std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len()))
        .sum();
    println!(
        "stored bytes per killmail: payload {:.0}, source_event {:.0}, outbox {outbox:.0}; database file {:.1} MB",
        sizes.0,
        sizes.1,
        file as f64 / 1e6
    );
    // Redelivery of the whole week: the idempotency check alone.
    let t = Instant::now();
    for chunk in events.chunks(BATCH) {
        warm.handle_events(chunk.to_vec()).await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "warm redelivery (all duplicates): {:.0} killmails/s",
        n as f64 / secs
    );
}
