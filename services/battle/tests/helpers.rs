//! Shared fixtures: real fights converted into `killmail.enriched` through the enrichment
//! service's pure function (bundled SDE, bundled prices, no names), and a fresh world per test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bs_battle::domain::{EngineSettings, Geo};
use bs_battle::{BattleStore, Battles, SqlBattleStore};
use bs_domain::{Killmail, KillmailSource};
use bs_enrichment::domain::{Catalog, Input, enrich};
use bs_events::KillmailEnriched;
use bs_runtime::{Clock, SystemClock};
use bs_sde::{MarketPrices, StaticData};
use bs_store::{Database, StoreTarget};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// A fight fixture of the repository (`data/killmails/fight-<name>-….jsonl.gz`) or of
/// bs-clustering's test data (`crates/bs-clustering/testdata/<file>`).
pub fn fixture(name: &str) -> PathBuf {
    let dir = repo("data/killmails");
    if let Some(p) = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("fight-{name}-"))
        })
    {
        return p;
    }
    repo("crates/bs-clustering/testdata").join(name)
}

/// ESI killmails of a fixture, converted as the enrichment service would (without names).
pub fn enriched(path: &Path) -> Vec<KillmailEnriched> {
    enriched_with(path, &HashMap::new())
}

/// The bundled snapshot of real ESI names (`data/names/esi-names.tsv.gz`).
pub fn bundled_names() -> &'static HashMap<i64, Option<String>> {
    static NAMES: std::sync::OnceLock<HashMap<i64, Option<String>>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let f = std::fs::File::open(repo("data/names/esi-names.tsv.gz")).unwrap();
        BufReader::new(flate2::read::MultiGzDecoder::new(f))
            .lines()
            .map(Result::unwrap)
            .filter_map(|l| {
                let (id, name) = l.split_once('\t')?;
                Some((id.parse().ok()?, Some(name.to_owned())))
            })
            .collect()
    })
}

/// [`enriched`] with the bundled real names filled in, as the offline demo publishes them.
pub fn enriched_named(path: &Path) -> Vec<KillmailEnriched> {
    enriched_with(path, bundled_names())
}

fn enriched_with(path: &Path, names: &HashMap<i64, Option<String>>) -> Vec<KillmailEnriched> {
    let reader = BufReader::new(flate2::read::MultiGzDecoder::new(
        std::fs::File::open(path).unwrap(),
    ));
    let extra_types = HashMap::new();
    let extra_systems = HashMap::new();
    let catalog = Catalog {
        sde: StaticData::bundled(),
        extra_types: &extra_types,
        extra_systems: &extra_systems,
        names,
        prices: MarketPrices::bundled(),
    };
    reader
        .lines()
        .map(Result::unwrap)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            let hash = v["killmail_hash"].as_str().unwrap_or("0000").to_owned();
            let km: Killmail = serde_json::from_value(v).unwrap();
            enrich(
                Input {
                    killmail: &km,
                    hash: &hash,
                    zkb: None,
                    source: KillmailSource::Everef,
                },
                &catalog,
            )
            .event
        })
        .collect()
}

pub fn geo() -> Arc<Geo> {
    static GEO: std::sync::OnceLock<Arc<Geo>> = std::sync::OnceLock::new();
    Arc::clone(GEO.get_or_init(|| Arc::new(Geo::from_static_data(StaticData::bundled()))))
}

pub async fn sqlite(dir: &Path) -> Database {
    let db = Database::open(&StoreTarget::Sqlite(dir.join("battle.db")), 4)
        .await
        .unwrap();
    db.migrate(bs_battle::ALL_MIGRATIONS).await.unwrap();
    db
}

/// A fresh, migrated PostgreSQL database, or `None` (skipped) when no server is configured.
pub async fn postgres() -> Option<Database> {
    let url = bs_testkit::engine(bs_testkit::POSTGRES)?;
    let target = StoreTarget::Postgres {
        server_url: url,
        database: bs_testkit::unique_name("bs_battle_test"),
    };
    let db = Database::open(&target, 4).await.unwrap();
    db.migrate(bs_battle::ALL_MIGRATIONS).await.unwrap();
    Some(db)
}

/// The service core over SQLite in `dir`, without the bus.
pub async fn battles_in(dir: &Path, settings: EngineSettings) -> Arc<Battles> {
    battles_on(sqlite(dir).await, settings).await
}

/// The service core over a given database.
pub async fn battles_on(db: Database, settings: EngineSettings) -> Arc<Battles> {
    let store: Arc<dyn BattleStore> = Arc::new(SqlBattleStore::new(db));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Arc::new(Battles::open(store, geo(), clock, settings).await.unwrap())
}

/// Fails the test instead of hanging forever.
pub async fn guard<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("timed out")
}

/// The service's SQLite file under a data dir (`battle.db`, the name `start()` uses).
pub async fn sqlite_at(dir: &Path) -> Database {
    sqlite(dir).await
}
