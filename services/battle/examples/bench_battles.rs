//! Benchmark of the battle service core on its real store (SQLite in a temp dir):
//!
//! 1. the 79k-killmail week (`/work/shared/data/killmails/everef-killmails-*.jsonl.gz`, or the
//!    directory given as the first argument) through `Battles::ingest` from an empty store, in
//!    consumer-sized batches of 2,000, then sides for every battle: killmails/s;
//! 2. live update latency per killmail inside a 1,000-kill battle: Jorund without its last 200
//!    kills, then those 200 one per `ingest` (one committed transaction each): p50/p99;
//! 3. the largest battle's report: `GET /battles/{id}` on a fresh instance (the report the
//!    sides refresher stored, read from SQLite, plus names), and recomputed from its killmails.
//!
//! The killmails carry the bundled real names (`data/names`), as live ones do.
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

/// The bundled snapshot of real ESI names (`data/names/esi-names.tsv.gz`), so the killmails
/// carry names as they do live and the store writes them.
fn bundled_names() -> HashMap<i64, Option<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/names/esi-names.tsv.gz");
    let Ok(f) = std::fs::File::open(&path) else {
        eprintln!("no {}: killmails without names", path.display());
        return HashMap::new();
    };
    BufReader::new(flate2::read::MultiGzDecoder::new(f))
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| {
            let (id, name) = l.split_once('\t')?;
            Some((id.parse().ok()?, Some(name.to_owned())))
        })
        .collect()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn enriched(path: &Path, names: &HashMap<i64, Option<String>>) -> Vec<KillmailEnriched> {
    let reader = BufReader::new(flate2::read::MultiGzDecoder::new(
        std::fs::File::open(path).expect("open killmails"),
    ));
    let (extra_types, extra_systems) = (HashMap::new(), HashMap::new());
    let catalog = Catalog {
        sde: StaticData::bundled(),
        extra_types: &extra_types,
        extra_systems: &extra_systems,
        names,
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

async fn open(dir: &Path, geo: Arc<Geo>) -> (Arc<Battles>, Database) {
    let db = Database::open(&StoreTarget::Sqlite(dir.join("battle.db")), 4)
        .await
        .expect("open db");
    db.migrate(bs_battle::ALL_MIGRATIONS)
        .await
        .expect("migrate");
    let store: Arc<dyn BattleStore> = Arc::new(SqlBattleStore::new(db.clone()));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let battles = Battles::open(store, geo, clock, EngineSettings::default())
        .await
        .expect("open battles");
    (Arc::new(battles), db)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
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
    let names = bundled_names();
    let week: Vec<KillmailEnriched> = files.iter().flat_map(|f| enriched(f, &names)).collect();
    println!("load average at start: {}", load_average());
    println!(
        "converted {} killmails in {:.1} s (not timed below)",
        week.len(),
        t.elapsed().as_secs_f64()
    );
    let geo = Arc::new(Geo::from_static_data(StaticData::bundled()));

    // 1. The week from empty.
    let dir = tempfile::tempdir().expect("temp dir");
    let (battles, _) = open(dir.path(), Arc::clone(&geo)).await;
    let t = Instant::now();
    let batch: usize = std::env::var("BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    for chunk in week.chunks(batch) {
        battles.ingest(chunk).await.expect("ingest");
    }
    // The ship history still queued, moved as the idle service would: timed with the week,
    // so the figure is the cost of every row the week leaves, not of a deferred part.
    let queued_history = battles
        .store()
        .move_ship_history(usize::MAX)
        .await
        .expect("move history");
    let ingest = t.elapsed();
    println!(
        "ship history queued at the end of the week, moved inside the timing: {queued_history} killmails"
    );
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("kept {}", dir.path().join("battle.db").display());
    }
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

    println!("load average after the week: {}", load_average());
    if std::env::var_os("BENCH_WEEK_ONLY").is_some() {
        if std::env::var_os("BENCH_KEEP").is_some() {
            std::mem::forget(dir);
        }
        return;
    }

    // 3. The largest report.
    let q = BattleQuery {
        sort: SortKey::Kills,
        limit: 1,
        ..BattleQuery::default()
    };
    let largest = battles.store().battles(&q).await.expect("list").0.remove(0);
    // A second service instance on the same database: nothing cached in memory.
    let (fresh, _) = open(dir.path(), Arc::clone(&geo)).await;
    let router = bs_battle::api::router(bs_battle::api::ApiState {
        battles: Arc::clone(&fresh),
        policy: Arc::new(bs_battle::AllowAll),
    });
    let mut api = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let resp = tower::ServiceExt::oneshot(
            router.clone(),
            axum::http::Request::get(format!("/battles/{}", largest.battle_id))
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
        assert!(resp.status().is_success(), "{}", resp.status());
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes();
        api.push(t.elapsed());
        bytes = body.len();
    }
    let api_cold = api[0];
    api.sort();
    let mut recompute = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let report = fresh
            .recompute_report(largest.battle_id)
            .await
            .expect("report");
        recompute.push(t.elapsed());
        assert_eq!(report.total_kills, largest.total_kills);
    }
    let recompute_cold = recompute[0];
    recompute.sort();
    println!(
        "largest report: battle {} ({} kills, {} pilots): GET /battles/{{id}} (stored report read from SQLite + names, {} KB JSON) \
         first {:.1} ms, median {:.1} ms; recomputed from its killmails (load + sides + report): cold {:.1} ms, \
         warm median {:.1} ms (killmails cached per revision)",
        largest.battle_id,
        largest.total_kills,
        largest.pilots,
        bytes / 1024,
        api_cold.as_secs_f64() * 1e3,
        pct(&api, 0.5).as_secs_f64() * 1e3,
        recompute_cold.as_secs_f64() * 1e3,
        pct(&recompute, 0.5).as_secs_f64() * 1e3,
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
    // Several rounds, each on a fresh database: 200 samples give a p99 that is the
    // second-worst update; five rounds give 1,000.
    let rounds: usize = std::env::var("BENCH_LIVE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let (before, after) = fight.split_at(fight.len().saturating_sub(200));
    let mut lat = Vec::new();
    // (latency, attackers, killmail id) of every update, to say what the tail is made of.
    let mut samples: Vec<(Duration, usize, i64)> = Vec::new();
    let mut moves = Vec::new();
    let mut live = None;
    for _ in 0..rounds.max(1) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (round, db) = open(dir.path(), Arc::clone(&geo)).await;
        for chunk in before.chunks(500) {
            round.ingest(chunk).await.expect("ingest");
        }
        // The setup's own ship history, moved as the idle service would have long ago.
        round
            .store()
            .move_ship_history(usize::MAX)
            .await
            .expect("move the setup's history");
        // The battle so far arrived over its first hours in a live service, not in one bulk
        // write a moment ago: settle the setup's WAL (a checkpoint of a few MB, fsynced) so
        // the first timed commits do not queue behind it. Checkpoints the live updates cause
        // themselves stay in the figures.
        bs_store::sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(db.pool())
            .await
            .expect("checkpoint the setup");
        for e in after {
            let t = Instant::now();
            round.ingest(std::slice::from_ref(e)).await.expect("ingest");
            lat.push(t.elapsed());
            samples.push((t.elapsed(), e.attackers.len(), e.killmail_id));
        }
        // Live updates queue their ship history; the service moves it while idle.
        let t = Instant::now();
        while round
            .store()
            .move_ship_history(2_000)
            .await
            .expect("move history")
            > 0
        {}
        moves.push(t.elapsed());
        live = Some((round, dir));
    }
    let (live, _dir) = live.expect("one round");
    lat.sort();
    let big = live.store().battles(&q).await.expect("list").0.remove(0);
    println!("load average at the end: {}", load_average());
    println!(
        "live: {} single-killmail updates ({rounds} rounds of {}) into the largest battle (now {} kills): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
         (cluster + one committed SQLite transaction, WAL, synchronous=NORMAL)",
        lat.len(),
        after.len(),
        big.total_kills,
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    samples.sort_by_key(|s| std::cmp::Reverse(s.0));
    let tail: Vec<String> = samples
        .iter()
        .take(lat.len() / 100 + 1)
        .map(|(d, attackers, id)| {
            format!(
                "{id} ({attackers} attackers) {:.2} ms",
                d.as_secs_f64() * 1e3
            )
        })
        .collect();
    println!("live: the slowest 1 %: {}", tail.join(", "));
    println!(
        "live: the queued ship history of each round's 200 killmails moved afterwards in {:.1}–{:.1} ms",
        moves
            .iter()
            .min()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        moves
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    );
}
