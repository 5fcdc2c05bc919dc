//! Benchmark of the battle service core on its real store (SQLite in a temp dir):
//!
//! 1. the 79k-killmail week (`/work/shared/data/killmails/everef-killmails-*.jsonl.gz`, or the
//!    directory given as the first argument) through `Battles::ingest` from an empty store, in
//!    consumer-sized batches of 2,000, then sides for every battle: killmails/s;
//! 2. live update latency per killmail inside a 1,000-kill battle: Jorund without its last 200
//!    kills, then those 200 one per `ingest` (one committed transaction each): p50/p99;
//! 3. the full report (load + sides + report) of the largest battle of the week.
//!
//! `cargo run -p bs-battle --release --example bench_battles [week-dir]`. Conversion of the
//! ESI JSON into `killmail.enriched` (the enrichment service's pure function) is not timed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bs_battle::domain::{EngineSettings, Geo};
use bs_battle::store::{BattleQuery, SortKey};
use bs_battle::{BattleStore, Battles, SqlBattleStore};
use bs_domain::{Killmail, KillmailSource};
use bs_enrichment::domain::{Catalog, Input, enrich};
use bs_events::KillmailEnriched;
use bs_runtime::{Clock, SystemClock};
use bs_sde::{MarketPrices, StaticData};
use bs_store::{Database, StoreTarget};

fn enriched(path: &Path) -> Vec<KillmailEnriched> {
    let reader = BufReader::new(flate2::read::MultiGzDecoder::new(
        std::fs::File::open(path).expect("open killmails"),
    ));
    let names: HashMap<i64, Option<String>> = HashMap::new();
    let (extra_types, extra_systems) = (HashMap::new(), HashMap::new());
    let catalog = Catalog {
        sde: StaticData::bundled(),
        extra_types: &extra_types,
        extra_systems: &extra_systems,
        names: &names,
        prices: MarketPrices::bundled(),
    };
    reader
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).ok()?;
            let hash = v["killmail_hash"].as_str().unwrap_or("0").to_owned();
            let km: Killmail = serde_json::from_value(v).ok()?;
            Some(
                enrich(
                    Input {
                        killmail: &km,
                        hash: &hash,
                        zkb: None,
                        source: KillmailSource::Everef,
                    },
                    &catalog,
                )
                .event,
            )
        })
        .collect()
}

async fn open(dir: &Path, geo: Arc<Geo>) -> Arc<Battles> {
    let db = Database::open(&StoreTarget::Sqlite(dir.join("battle.db")), 4)
        .await
        .expect("open db");
    db.migrate(bs_battle::ALL_MIGRATIONS)
        .await
        .expect("migrate");
    let store: Arc<dyn BattleStore> = Arc::new(SqlBattleStore::new(db));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Arc::new(
        Battles::open(store, geo, clock, EngineSettings::default())
            .await
            .expect("open battles"),
    )
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let week_dir = std::env::args().nth(1).map_or_else(
        || PathBuf::from("/work/shared/data/killmails"),
        PathBuf::from,
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&week_dir)
        .expect("week dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("everef-killmails-"))
        })
        .collect();
    files.sort();
    let t = Instant::now();
    let week: Vec<KillmailEnriched> = files.iter().flat_map(|f| enriched(f)).collect();
    println!(
        "converted {} killmails in {:.1} s (not timed below)",
        week.len(),
        t.elapsed().as_secs_f64()
    );
    let geo = Arc::new(Geo::from_static_data(StaticData::bundled()));

    // 1. The week from empty.
    let dir = tempfile::tempdir().expect("temp dir");
    let battles = open(dir.path(), Arc::clone(&geo)).await;
    let t = Instant::now();
    for chunk in week.chunks(2000) {
        battles.ingest(chunk).await.expect("ingest");
    }
    let ingest = t.elapsed();
    battles.tick().await.expect("tick");
    let t2 = Instant::now();
    let refreshed = battles.refresh().await.expect("refresh");
    let sides = t2.elapsed();
    let counts = battles.store().counts().await.expect("counts");
    println!(
        "week: {} killmails in {:.2} s = {:.0} killmails/s (clustered and stored, consumer batches of 2,000); {} battles; \
         sides + events for all {} battles: {:.2} s; total {:.0} killmails/s",
        week.len(),
        ingest.as_secs_f64(),
        week.len() as f64 / ingest.as_secs_f64(),
        counts.battles_total,
        refreshed,
        sides.as_secs_f64(),
        week.len() as f64 / (ingest + sides).as_secs_f64()
    );

    // 3. The largest report.
    let q = BattleQuery {
        sort: SortKey::Kills,
        limit: 1,
        ..BattleQuery::default()
    };
    let largest = battles.store().battles(&q).await.expect("list").0.remove(0);
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let report = battles
            .compute_report(largest.battle_id)
            .await
            .expect("report");
        times.push(t.elapsed());
        assert_eq!(report.total_kills, largest.total_kills);
    }
    let cold = times[0];
    times.sort();
    println!(
        "largest report: battle {} ({} kills, {} pilots): cold {:.1} ms (load {} killmails from SQLite + sides + report), \
         warm median {:.1} ms, min {:.1} ms (killmails cached per revision: sides + report)",
        largest.battle_id,
        largest.total_kills,
        largest.pilots,
        cold.as_secs_f64() * 1e3,
        largest.total_kills,
        pct(&times, 0.5).as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
    );

    // 2. Live updates inside a 1,000-kill battle.
    // The largest battle's own killmails, its last 200 (by kill time) arriving live.
    let members: std::collections::HashSet<i64> = battles
        .store()
        .kills_of(largest.battle_id)
        .await
        .expect("kills")
        .iter()
        .map(|k| k.kill.killmail_id as i64)
        .collect();
    let mut fight: Vec<KillmailEnriched> = week
        .iter()
        .filter(|e| members.contains(&e.killmail_id))
        .cloned()
        .collect();
    fight.sort_by_key(|e| (e.killmail_time, e.killmail_id));
    let dir = tempfile::tempdir().expect("temp dir");
    let live = open(dir.path(), Arc::clone(&geo)).await;
    let (before, after) = fight.split_at(fight.len().saturating_sub(200));
    for chunk in before.chunks(500) {
        live.ingest(chunk).await.expect("ingest");
    }
    let mut lat = Vec::new();
    for e in after {
        let t = Instant::now();
        live.ingest(std::slice::from_ref(e)).await.expect("ingest");
        lat.push(t.elapsed());
    }
    lat.sort();
    let big = live.store().battles(&q).await.expect("list").0.remove(0);
    println!(
        "live: {} single-killmail updates into the largest battle (now {} kills): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
         (cluster + one committed SQLite transaction with synchronous=FULL)",
        lat.len(),
        big.total_kills,
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}
