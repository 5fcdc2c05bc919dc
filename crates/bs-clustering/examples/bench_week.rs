//! Clusters the real 79k-killmail week from empty and reports throughput, live update latency
//! inside the largest battle and the time to build its report; then prints the biggest battles.
//!
//! `cargo run -p bs-clustering --release --example bench_week [-- DATA_DIR]` (default
//! `/work/shared/data`). Numbers, not assertions: timings never belong in tests.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use bs_clustering::AdjacencyMap;
use std::time::Instant;

use bs_clustering::{
    ClusterKill, ClusterSettings, Clusterer, SideSettings, assign_sides, build_report,
    model::to_datetime,
};
use support::{Types, load_jumps, load_kills};

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn system_names(data: &Path) -> HashMap<u32, String> {
    let f = std::fs::File::open(data.join("sde/mapSolarSystems.csv.gz")).expect("systems");
    BufReader::new(flate2::read::GzDecoder::new(f))
        .lines()
        .skip(1)
        .filter_map(|l| {
            let l = l.ok()?;
            let mut it = l.split(',');
            Some((it.next()?.parse().ok()?, it.next()?.to_owned()))
        })
        .collect()
}

fn alliance_tickers(data: &Path) -> HashMap<u64, String> {
    let Ok(f) = std::fs::File::open(data.join("esi/entities/alliances-id-name-ticker.json.gz"))
    else {
        return HashMap::new();
    };
    let mut s = String::new();
    if flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .is_err()
    {
        return HashMap::new();
    }
    let v: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some((
                a.get("id")?.as_u64()?,
                a.get("ticker")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

fn main() {
    let data = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "/work/shared/data".to_owned()),
    );
    let t0 = Instant::now();
    let types = Types::from_sde(
        &data.join("sde/invTypes.csv.gz"),
        &data.join("sde/invGroups.csv"),
    )
    .with_esi_prices(&data.join("esi/markets-prices-2025-05-13.json.gz"));
    let graph = load_jumps(&data.join("sde/mapSolarSystemJumps.csv"));
    let mut kills: Vec<ClusterKill> = Vec::new();
    for day in 27..=32 {
        let name = if day <= 30 {
            format!("killmails/everef-killmails-2021-11-{day}.jsonl.gz")
        } else {
            format!(
                "killmails/everef-killmails-2021-12-{:02}.jsonl.gz",
                day - 30
            )
        };
        let (mut k, bad) = load_kills(&data.join(name), &types);
        assert_eq!(bad, 0, "unparsable killmails");
        kills.append(&mut k);
    }
    println!(
        "loaded {} killmails, {} gate systems in {:.1}s",
        kills.len(),
        graph.len(),
        t0.elapsed().as_secs_f64()
    );
    let names = system_names(&data);
    let tickers = alliance_tickers(&data);
    if std::env::args().any(|a| a == "--sweep") {
        sweep(&kills, &graph, &names);
        return;
    }

    // 1. From empty, one killmail at a time in kill-time order, ticking every minute of kill time.
    let settings = ClusterSettings::default();
    let mut c = Clusterer::new(settings.clone(), graph.clone());
    let mut lat: Vec<f64> = Vec::with_capacity(kills.len());
    let mut events = 0usize;
    let mut last_tick = 0i64;
    let start = Instant::now();
    for k in &kills {
        let t = Instant::now();
        events += c.insert(k).len();
        if k.time_ms - last_tick >= 60_000 {
            events += c.tick(k.time_ms).len();
            last_tick = k.time_ms;
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    println!(
        "one-by-one: {} kills in {:.3}s = {:.0} killmails/s; {} events; {} battles; per insert p50 {:.4} ms p99 {:.4} ms max {:.3} ms; stats {:?}",
        kills.len(),
        secs,
        kills.len() as f64 / secs,
        events,
        c.battles().len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0),
        c.stats()
    );

    // 1b. The same, evicting settled battles (72 h lateness allowed) on every minute tick.
    let mut e = Clusterer::new(settings.clone(), graph.clone());
    let mut last_evict = 0i64;
    let mut last_tick_e = 0i64;
    let mut evicted = 0usize;
    let mut evict_passes: Vec<f64> = Vec::new();
    let mut peak = 0usize;
    let start = Instant::now();
    for k in &kills {
        let _ = e.insert(k);
        if k.time_ms - last_tick_e >= 60_000 {
            let _ = e.tick(k.time_ms);
            last_tick_e = k.time_ms;
        }
        if k.time_ms - last_evict >= 60_000 {
            // Called every minute of kill time, like a service ticker would.
            let t = Instant::now();
            let n = e.evict_settled(72 * 3_600_000).len();
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if n > 0 || ms > 0.5 {
                evict_passes.push(ms);
            }
            evicted += n;
            last_evict = k.time_ms;
        }
        peak = peak.max(e.len());
    }
    let secs_e = start.elapsed().as_secs_f64();
    println!(
        "one-by-one with evict_settled(72 h) every minute: {:.3}s = {:.0} killmails/s; {} battles evicted in {} passes (median {:.2} ms, max {:.2} ms), {} live; {} kills held at the end (peak {})",
        secs_e,
        kills.len() as f64 / secs_e,
        evicted,
        evict_passes.len(),
        {
            evict_passes.sort_by(f64::total_cmp);
            pct(&evict_passes, 0.5)
        },
        evict_passes.last().copied().unwrap_or(0.0),
        e.battles().len(),
        e.len(),
        peak
    );

    // 2. One batch.
    let start = Instant::now();
    let mut b = Clusterer::new(settings.clone(), graph.clone());
    let ev = b.insert_batch(kills.iter());
    let secs_b = start.elapsed().as_secs_f64();
    println!(
        "one batch: {:.3}s = {:.0} killmails/s; {} events; same partition as one-by-one: {}",
        secs_b,
        kills.len() as f64 / secs_b,
        ev.len(),
        b.partition() == c.partition()
    );

    // 3. Live latency inside the largest battle: hold back 200 of its kills, insert the rest of
    // the week, then insert the held-back kills one by one (the battle holds 800+ kills).
    let by_id: HashMap<u64, &ClusterKill> = kills.iter().map(|k| (k.killmail_id, k)).collect();
    let largest = c
        .battles()
        .into_iter()
        .max_by_key(|s| (s.kills, std::cmp::Reverse(s.id)))
        .cloned()
        .expect("a battle");
    let ids = c.killmail_ids(largest.id);
    let held: Vec<u64> = ids
        .iter()
        .copied()
        .skip(ids.len() / 10)
        .step_by(4)
        .take(200)
        .collect();
    let held_set: std::collections::HashSet<u64> = held.iter().copied().collect();
    let mut live = Clusterer::new(settings.clone(), graph.clone());
    let _ = live.insert_batch(kills.iter().filter(|k| !held_set.contains(&k.killmail_id)));
    let mut live_lat = Vec::new();
    for id in &held {
        let t = Instant::now();
        let _ = live.insert(by_id[id]);
        live_lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    live_lat.sort_by(f64::total_cmp);
    println!(
        "live update inside the largest battle ({} kills at the end): p50 {:.4} ms p99 {:.4} ms max {:.4} ms over {} inserts",
        live.battle(largest.id).map_or(0, |s| s.kills),
        pct(&live_lat, 0.5),
        pct(&live_lat, 0.99),
        live_lat.last().copied().unwrap_or(0.0),
        live_lat.len()
    );

    // 4. The largest battle's report (sides + report), best of 10.
    let bk: Vec<&ClusterKill> = ids.iter().map(|id| by_id[id]).collect();
    let mut best_sides = f64::MAX;
    let mut best_report = f64::MAX;
    let mut report = None;
    for _ in 0..10 {
        let t = Instant::now();
        let sides = assign_sides(&bk, &[], &SideSettings::default());
        let ts = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let r = build_report(&bk, &sides);
        let tr = t.elapsed().as_secs_f64() * 1e3;
        best_sides = best_sides.min(ts);
        best_report = best_report.min(tr);
        report = Some(r);
    }
    let report = report.expect("report");
    println!(
        "largest battle report ({} kills, {} participants): sides {:.2} ms + report {:.2} ms = {:.2} ms",
        report.total_kills,
        report.participants.len(),
        best_sides,
        best_report,
        best_sides + best_report
    );

    // 5. The biggest battles, for the design doc.
    let mut all: Vec<_> = c.battles().into_iter().cloned().collect();
    all.sort_by_key(|s| std::cmp::Reverse(s.kills));
    println!("\n{} battles; top 40:", all.len());
    for s in all.iter().take(40) {
        let bk: Vec<&ClusterKill> = c.killmail_ids(s.id).iter().map(|id| by_id[id]).collect();
        let sides = assign_sides(&bk, &[], &SideSettings::default());
        let r = build_report(&bk, &sides);
        let sys: Vec<String> = s
            .system_ids
            .iter()
            .map(|x| names.get(x).cloned().unwrap_or_else(|| x.to_string()))
            .collect();
        let side_txt: Vec<String> = r
            .sides
            .iter()
            .take(3)
            .map(|sd| {
                let top: Vec<String> = sd
                    .alliances
                    .iter()
                    .take(2)
                    .map(|a| {
                        tickers
                            .get(&a.id)
                            .cloned()
                            .unwrap_or_else(|| a.id.to_string())
                    })
                    .collect();
                format!(
                    "{}p k{}/l{} [{}]",
                    sd.pilots,
                    sd.kills,
                    sd.losses,
                    top.join(",")
                )
            })
            .collect();
        println!(
            "{} {:>5} kills {} {} -> {} ({} min) pilots {} sides {} mp={} os={} | {}",
            s.id,
            s.kills,
            sys.join("+"),
            to_datetime(s.start_ms).format("%m-%d %H:%M"),
            to_datetime(s.end_ms).format("%H:%M"),
            (s.end_ms - s.start_ms) / 60_000,
            r.pilots,
            r.sides.len(),
            u8::from(r.multi_party),
            u8::from(r.one_sided),
            side_txt.join(" vs ")
        );
    }
    let multi: Vec<_> = all.iter().filter(|s| s.system_ids.len() > 1).collect();
    println!("\nmulti-system battles: {}", multi.len());
    for s in multi.iter().take(15) {
        let sys: Vec<String> = s
            .system_ids
            .iter()
            .map(|x| names.get(x).cloned().unwrap_or_else(|| x.to_string()))
            .collect();
        println!(
            "{} {} kills {} {} -> {}",
            s.id,
            s.kills,
            sys.join("+"),
            to_datetime(s.start_ms).format("%m-%d %H:%M"),
            to_datetime(s.end_ms).format("%H:%M")
        );
    }
    // Per-system view of grind systems: longest battle and count.
    let mut per_sys: BTreeMap<u32, (usize, i64, u32)> = BTreeMap::new();
    for s in &all {
        for &sys in &s.system_ids {
            let e = per_sys.entry(sys).or_default();
            e.0 += 1;
            e.1 = e.1.max(s.end_ms - s.start_ms);
            e.2 = e.2.max(s.kills);
        }
    }
    for name in ["Tama", "Kourmonen", "Elarel", "Jita", "Ahbazon", "Amamake"] {
        if let Some((&id, _)) = names.iter().find(|(_, n)| n.as_str() == name) {
            let total = kills
                .iter()
                .filter(|k| k.system_id == id && k.has_player_attacker())
                .count();
            let in_battles: usize = all
                .iter()
                .filter(|s| s.system_ids.contains(&id))
                .map(|s| s.kills as usize)
                .sum();
            let (n, longest, most) = per_sys.get(&id).copied().unwrap_or_default();
            println!(
                "{name}: {total} player kills in the week, {n} battles holding {in_battles}, longest {} min, biggest {most} kills",
                longest / 60_000
            );
        }
    }
}

/// Threshold sensitivity on the week, for the design doc (`-- --sweep`).
fn sweep(kills: &[ClusterKill], graph: &AdjacencyMap, names: &HashMap<u32, String>) {
    let id_of = |name: &str| {
        names
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(&id, _)| id)
            .expect("system")
    };
    // Gaps between consecutive player kills in the same system.
    let mut by_sys: HashMap<u32, Vec<i64>> = HashMap::new();
    for k in kills.iter().filter(|k| k.has_player_attacker()) {
        by_sys.entry(k.system_id).or_default().push(k.time_ms);
    }
    let mut gaps: Vec<f64> = Vec::new();
    for ts in by_sys.values_mut() {
        ts.sort_unstable();
        gaps.extend(ts.windows(2).map(|w| (w[1] - w[0]) as f64 / 60_000.0));
    }
    gaps.sort_by(f64::total_cmp);
    let share = |m: f64| gaps.iter().filter(|&&g| g <= m).count() as f64 / gaps.len() as f64;
    println!(
        "within-system gaps between player kills: n={} p25={:.2} p50={:.2} p60={:.2} p70={:.1} p75={:.1} p80={:.0} p90={:.0} min",
        gaps.len(),
        pct(&gaps, 0.25),
        pct(&gaps, 0.5),
        pct(&gaps, 0.6),
        pct(&gaps, 0.7),
        pct(&gaps, 0.75),
        pct(&gaps, 0.8),
        pct(&gaps, 0.9)
    );
    for m in [1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0] {
        println!("  gaps <= {m:>4} min: {:.1} %", share(m) * 100.0);
    }
    let (jorund, tama, kourmonen, j105951) = (
        id_of("Jorund"),
        id_of("Tama"),
        id_of("Kourmonen"),
        id_of("J105951"),
    );
    let base = ClusterSettings::default();
    let variants: Vec<(&str, ClusterSettings)> = vec![
        ("default", base.clone()),
        (
            "naive: every kill core, 30 min gap",
            ClusterSettings {
                core_min_kills: 1,
                min_battle_kills: 2,
                min_battle_pilots: 0,
                ..base.clone()
            },
        ),
        (
            "core_min_kills 3",
            ClusterSettings {
                core_min_kills: 3,
                ..base.clone()
            },
        ),
        (
            "core_min_kills 5",
            ClusterSettings {
                core_min_kills: 5,
                ..base.clone()
            },
        ),
        (
            "core_min_kills 6",
            ClusterSettings {
                core_min_kills: 6,
                ..base.clone()
            },
        ),
        (
            "density ±2.5 min",
            ClusterSettings {
                density_window_ms: 150_000,
                ..base.clone()
            },
        ),
        (
            "density ±10 min",
            ClusterSettings {
                density_window_ms: 600_000,
                ..base.clone()
            },
        ),
        (
            "link gap 15 min",
            ClusterSettings {
                link_gap_ms: 15 * 60_000,
                ..base.clone()
            },
        ),
        (
            "link gap 20 min",
            ClusterSettings {
                link_gap_ms: 20 * 60_000,
                ..base.clone()
            },
        ),
        (
            "link gap 45 min",
            ClusterSettings {
                link_gap_ms: 45 * 60_000,
                ..base.clone()
            },
        ),
        (
            "link gap 60 min",
            ClusterSettings {
                link_gap_ms: 60 * 60_000,
                ..base.clone()
            },
        ),
        (
            "no border kills",
            ClusterSettings {
                border_gap_ms: 0,
                ..base.clone()
            },
        ),
        (
            "border gap 20 min",
            ClusterSettings {
                border_gap_ms: 20 * 60_000,
                ..base.clone()
            },
        ),
        (
            "single-system only",
            ClusterSettings {
                cross_system_min_shared_pilots: 0,
                ..base.clone()
            },
        ),
        (
            "cross-system 1 shared pilot",
            ClusterSettings {
                cross_system_min_shared_pilots: 1,
                ..base.clone()
            },
        ),
        (
            "cross-system 5 shared pilots",
            ClusterSettings {
                cross_system_min_shared_pilots: 5,
                ..base.clone()
            },
        ),
        (
            "min battle 10 cores",
            ClusterSettings {
                min_battle_kills: 10,
                ..base.clone()
            },
        ),
    ];
    let player_kills = kills.iter().filter(|k| k.has_player_attacker()).count();
    println!(
        "\n| variant | battles | player kills in battles | multi-system | Jorund biggest (kills, span) | Tama: battles, longest, biggest | Kourmonen longest | J105951 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, s) in variants {
        let mut c = Clusterer::new(s, graph.clone());
        let _ = c.insert_batch(kills.iter());
        let b = c.battles();
        let in_b: u32 = b.iter().map(|s| s.kills).sum();
        let multi = b.iter().filter(|s| s.system_ids.len() > 1).count();
        let of = |sys: u32| b.iter().filter(move |s| s.system_ids.contains(&sys));
        let jb = of(jorund).max_by_key(|s| s.kills);
        let tama_n = of(tama).count();
        let tama_long = of(tama).map(|s| s.end_ms - s.start_ms).max().unwrap_or(0) / 60_000;
        let tama_big = of(tama).map(|s| s.kills).max().unwrap_or(0);
        let kour_long = of(kourmonen)
            .map(|s| s.end_ms - s.start_ms)
            .max()
            .unwrap_or(0)
            / 60_000;
        let jw = of(j105951).map(|s| s.kills).max().unwrap_or(0);
        println!(
            "| {name} | {} | {:.1} % | {multi} | {} | {tama_n}, {tama_long} min, {tama_big} | {kour_long} min | {jw} |",
            b.len(),
            f64::from(in_b) * 100.0 / player_kills as f64,
            jb.map_or_else(String::new, |s| format!(
                "{}, {}–{}",
                s.kills,
                to_datetime(s.start_ms).format("%H:%M"),
                to_datetime(s.end_ms).format("%H:%M")
            )),
        );
    }
}
