//! Measures how long decoding the embedded bundle and price snapshot takes, and optionally
//! checks coverage and valuation throughput on ESI killmail JSONL(.gz) files.
//!
//! ```text
//! cargo run -p bs-sde --release --example load_bench -- [KILLMAILS.jsonl.gz ...]
//! ```
//! Prints numbers; asserts nothing (timings are machine-dependent and belong in reports).

use std::io::{BufRead, BufReader};
use std::time::Instant;

use bs_sde::{MarketPrices, StaticData, ValuationItem, value_killmail};

fn main() {
    let runs = 10;
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let data = StaticData::decode_embedded().expect("embedded bundle decodes");
        times.push(t.elapsed());
        std::hint::black_box(data);
    }
    times.sort();
    println!(
        "static data decode: min {:?}, median {:?}, max {:?} over {runs} runs",
        times[0],
        times[runs / 2],
        times[runs - 1]
    );
    let t = Instant::now();
    let data = StaticData::bundled();
    println!("StaticData::bundled() first call: {:?}", t.elapsed());
    let t = Instant::now();
    let prices = MarketPrices::bundled();
    println!(
        "MarketPrices::bundled() first call: {:?} ({} prices)",
        t.elapsed(),
        prices.len()
    );
    println!("version {} stats {:?}", data.version(), data.stats());

    let t = Instant::now();
    let mut n = 0u32;
    for _ in 0..1000 {
        n += data.systems_within(30000142, 5).len() as u32;
    }
    println!(
        "systems_within(Jita, 5) x1000: {:?} ({} systems each)",
        t.elapsed(),
        n / 1000
    );

    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        return;
    }
    let (mut kills, mut ship_missing, mut sys_missing, mut total_isk, mut missing_prices) =
        (0u64, 0u64, 0u64, 0f64, 0u64);
    let mut items_total = 0u64;
    let mut parsed = Vec::new();
    for f in &files {
        let file = std::fs::File::open(f).expect("open killmail file");
        let reader: Box<dyn BufRead> = if f.ends_with(".gz") {
            Box::new(BufReader::new(flate2::read::GzDecoder::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        for line in reader.lines() {
            let Ok(line) = line else { continue };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let ship = v["victim"]["ship_type_id"].as_i64().unwrap_or(0);
            let system = v["solar_system_id"].as_i64().unwrap_or(0);
            let items = v["victim"]["items"]
                .as_array()
                .map(|a| a.iter().map(item).collect())
                .unwrap_or_default();
            parsed.push((ship, system, items));
        }
    }
    let t = Instant::now();
    for (ship, system, items) in &parsed {
        kills += 1;
        let items: &Vec<ValuationItem> = items;
        items_total += items.len() as u64;
        if data.type_info(*ship).is_none() || data.ship_class(*ship).is_none() {
            ship_missing += 1;
        }
        if data.system(*system).is_none() {
            sys_missing += 1;
        }
        let val = value_killmail(*ship, items, prices);
        total_isk += val.isk_total;
        missing_prices += u64::from(val.missing_prices);
    }
    let el = t.elapsed();
    println!(
        "{kills} killmails ({items_total} top-level items): unresolved ships {ship_missing}, unresolved systems {sys_missing}, \
         missing prices {missing_prices}, total {:.3e} ISK; lookup+valuation {:?} ({:.0} killmails/s)",
        total_isk,
        el,
        kills as f64 / el.as_secs_f64()
    );
}

fn item(v: &serde_json::Value) -> ValuationItem {
    ValuationItem {
        type_id: v["item_type_id"].as_i64().unwrap_or(0),
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
