//! Shared helpers: the repository's real killmails mapped to the valuation input.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use bs_sde::ValuationItem;

/// A killmail reduced to what these tests look at.
pub struct Kill {
    pub killmail_id: i64,
    pub system_id: i64,
    pub ship_type_id: i64,
    pub items: Vec<ValuationItem>,
    pub attacker_ships: Vec<i64>,
}

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Every killmail in data/killmails/*.jsonl.gz.
pub fn repo_killmails() -> Vec<Kill> {
    let dir = repo_path("data/killmails");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("data/killmails exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".jsonl.gz"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no killmail files in {}", dir.display());
    let mut out = Vec::new();
    for f in files {
        let reader = BufReader::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&f).expect("open"),
        ));
        for line in reader.lines() {
            let v: serde_json::Value =
                serde_json::from_str(&line.expect("line")).expect("killmail json");
            out.push(Kill {
                killmail_id: v["killmail_id"].as_i64().expect("killmail_id"),
                system_id: v["solar_system_id"].as_i64().expect("system"),
                ship_type_id: v["victim"]["ship_type_id"].as_i64().expect("ship"),
                items: v["victim"]["items"]
                    .as_array()
                    .map(|a| a.iter().map(item).collect())
                    .unwrap_or_default(),
                attacker_ships: v["attackers"]
                    .as_array()
                    .expect("attackers")
                    .iter()
                    .filter_map(|a| a["ship_type_id"].as_i64())
                    .collect(),
            });
        }
    }
    out
}

fn item(v: &serde_json::Value) -> ValuationItem {
    ValuationItem {
        type_id: v["item_type_id"].as_i64().expect("item_type_id"),
        flag: v["flag"].as_i64().unwrap_or(0) as i32,
        singleton: v["singleton"].as_i64().unwrap_or(0) as i32,
        quantity_destroyed: v["quantity_destroyed"].as_i64().unwrap_or(0),
        quantity_dropped: v["quantity_dropped"].as_i64().unwrap_or(0),
        items: v["items"]
            .as_array()
            .map(|a| a.iter().map(item).collect())
            .unwrap_or_default(),
    }
}
