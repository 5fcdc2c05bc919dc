//! Tiny loaders for tests and the benchmark: ship groups, prices, stargate jumps and ESI
//! killmails (gzip JSONL). Shared with `examples/bench_week.rs` through `#[path]`.
#![allow(dead_code, reason = "each user needs a different subset")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use bs_clustering::ClusterKill;
use bs_clustering::esi::{TypeInfo, from_esi_json};
use bs_clustering::{AdjacencyMap, SystemInfo};
use flate2::read::MultiGzDecoder;

/// Ship group/category and price lookups.
#[derive(Default)]
pub struct Types {
    pub groups: HashMap<u32, (u32, u32)>,
    pub prices: HashMap<u32, f64>,
}

impl TypeInfo for Types {
    fn group_of(&self, type_id: u32) -> Option<(u32, u32)> {
        self.groups.get(&type_id).copied()
    }
    fn price(&self, type_id: u32) -> Option<f64> {
        self.prices.get(&type_id).copied()
    }
}

fn open(path: &Path) -> Box<dyn BufRead> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::new(MultiGzDecoder::new(f)))
    } else {
        Box::new(BufReader::new(f))
    }
}

/// Lines of a CSV file after the header, split on commas (only leading numeric columns are used,
/// so quoted names further right do not matter).
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    open(path)
        .lines()
        .skip(1)
        .map(|l| {
            l.expect("read line")
                .split(',')
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.trim().parse().ok()
}

impl Types {
    /// From the full SDE (`invTypes.csv.gz` + `invGroups.csv`).
    pub fn from_sde(inv_types: &Path, inv_groups: &Path) -> Self {
        let cat: HashMap<u32, u32> = csv_rows(inv_groups)
            .iter()
            .filter_map(|r| Some((num(&r[0])?, num(&r[1])?)))
            .collect();
        let groups = csv_rows(inv_types)
            .iter()
            .filter_map(|r| {
                let t: u32 = num(&r[0])?;
                let g: u32 = num(&r[1])?;
                Some((t, (g, cat.get(&g).copied().unwrap_or(0))))
            })
            .collect();
        Self {
            groups,
            prices: HashMap::new(),
        }
    }

    /// From the compact subset in `testdata/types.csv` (`type_id,group_id,category_id`).
    pub fn from_subset(path: &Path) -> Self {
        let groups = csv_rows(path)
            .iter()
            .filter_map(|r| Some((num(&r[0])?, (num(&r[1])?, num(&r[2])?))))
            .collect();
        Self {
            groups,
            prices: HashMap::new(),
        }
    }

    /// Prices from a `type_id,price` CSV.
    pub fn with_price_csv(mut self, path: &Path) -> Self {
        self.prices = csv_rows(path)
            .iter()
            .filter_map(|r| Some((num(&r[0])?, num(&r[1])?)))
            .collect();
        self
    }

    /// Prices from an ESI `/markets/prices/` snapshot (average, else adjusted price).
    pub fn with_esi_prices(mut self, path: &Path) -> Self {
        let mut s = String::new();
        open(path).read_to_string(&mut s).expect("read prices");
        let v: serde_json::Value = serde_json::from_str(&s).expect("prices json");
        for p in v.as_array().into_iter().flatten() {
            let Some(t) = p.get("type_id").and_then(serde_json::Value::as_u64) else {
                continue;
            };
            let price = p
                .get("average_price")
                .and_then(serde_json::Value::as_f64)
                .filter(|&x| x > 0.0)
                .or_else(|| p.get("adjusted_price").and_then(serde_json::Value::as_f64));
            if let Some(price) = price {
                self.prices.insert(t as u32, price);
            }
        }
        self
    }
}

/// Stargate adjacency from a `from,to` CSV (`mapSolarSystemJumps.csv` or the subset).
pub fn load_jumps(path: &Path) -> AdjacencyMap {
    AdjacencyMap::from_pairs(
        csv_rows(path)
            .iter()
            .filter_map(|r| Some((num(&r[0])?, num(&r[1])?))),
    )
}

/// Every killmail of an ESI gzip JSONL file; unparsable lines are counted, not fatal.
pub fn load_kills(path: &Path, types: &Types) -> (Vec<ClusterKill>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in open(path).lines() {
        let line = line.expect("read line");
        match serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| from_esi_json(&v, types).ok())
        {
            Some(k) => out.push(k),
            None => bad += 1,
        }
    }
    (out, bad)
}

/// This crate's `testdata/` folder.
pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// The repository's shared `data/killmails/` folder.
pub fn repo_killmails(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/killmails")
        .join(name)
}

/// Region and security per system, from a `system_id,region_id,security` CSV.
#[derive(Default)]
pub struct Systems(pub HashMap<u32, (u32, f64)>);

impl Systems {
    pub fn load(path: &Path) -> Self {
        Self(
            csv_rows(path)
                .iter()
                .filter_map(|r| Some((num(&r[0])?, (num(&r[1])?, num(&r[2])?))))
                .collect(),
        )
    }
}

impl SystemInfo for Systems {
    fn region_of(&self, system: u32) -> Option<u32> {
        self.0.get(&system).map(|s| s.0)
    }
    fn security_status(&self, system: u32) -> Option<f64> {
        self.0.get(&system).map(|s| s.1)
    }
}
