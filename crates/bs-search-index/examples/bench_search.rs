//! Search benchmark: indexing throughput and autocomplete latency, tantivy vs Typesense.
//!
//! ```text
//! cargo run -p bs-search-index --release --example bench_search
//! BENCH_SCALE=0.25 BATTLESCOPE_TEST_TYPESENSE=http://127.0.0.1:8108 \
//!   BATTLESCOPE_TEST_TYPESENSE_KEY=xyz cargo run -p bs-search-index --release --example bench_search
//! ```
//!
//! Data: the REAL entities from `../shared/data` (ESI alliance/corporation/character lists, SDE
//! systems and ship types; override the folder with `BS_SHARED_DATA`) plus a scaled set of
//! **GENERATED** documents (at `BENCH_SCALE=1`: 1,000,000 characters, 100,000 corporations,
//! 200,000 killmails). Generated names are built by a seeded PRNG from syllables; their ids start
//! with `gen-` and the output labels them. The query mix is identical for every backend:
//! prefixes (2..=8 characters) of real and generated names, awkward EVE names as typed, and
//! one-typo variants. Latency is wall time per `autocomplete(q, all types, 10)` call, measured
//! with 1 and 16 concurrent clients. Numbers are printed, never asserted.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bs_search_index::{
    AllianceDoc, CharacterDoc, Collection, CorporationDoc, Document, KillmailDoc, SearchIndex,
    ShipTypeDoc, SystemDoc, TantivyConfig, TantivyIndex, TypesenseConfig, TypesenseIndex,
};

/// Deterministic xorshift PRNG (the bench must generate the same names every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SYLLABLES: &[&str] = &[
    "ka", "ra", "zen", "tor", "vex", "mi", "lo", "dra", "shi", "an", "el", "gor", "thu", "ny",
    "vol", "ix", "qua", "ber", "sol", "ark", "mon", "tal", "ri", "os", "fen", "jar", "ul", "xi",
];

/// A GENERATED pilot-like name, e.g. `Zentor Vexmi'lo` (apostrophes, digits and short forms
/// appear at roughly EVE-like rates).
fn generated_name(r: &mut Rng) -> String {
    let word = |r: &mut Rng| {
        let n = 1 + r.below(3);
        let mut w: String = (0..n)
            .map(|_| SYLLABLES[r.below(SYLLABLES.len())])
            .collect();
        if r.below(20) == 0 {
            w.insert(w.len() / 2, '\'');
        }
        let mut c = w.chars();
        match c.next() {
            Some(f) => f.to_uppercase().chain(c).collect::<String>(),
            None => w,
        }
    };
    match r.below(10) {
        0 => word(r),
        1 => format!("{} {}", word(r), 1 + r.below(999)),
        _ => format!("{} {}", word(r), word(r)),
    }
}

fn data_dir() -> PathBuf {
    std::env::var("BS_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

fn gz_text(path: PathBuf) -> String {
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut s = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .unwrap_or_else(|e| panic!("{path:?}: {e}"));
    s
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    // The SDE CSVs quote names containing commas; a small splitter is enough for them.
    text.lines()
        .skip(1)
        .map(|l| {
            let mut out = Vec::new();
            let mut cur = String::new();
            let mut quoted = false;
            for ch in l.chars() {
                match ch {
                    '"' => quoted = !quoted,
                    ',' if !quoted => out.push(std::mem::take(&mut cur)),
                    c => cur.push(c),
                }
            }
            out.push(cur);
            out
        })
        .collect()
}

struct Corpus {
    docs: Vec<Document>,
    real: usize,
    names: Vec<String>,
}

fn build_corpus(scale: f64) -> Corpus {
    let dir = data_dir();
    let mut docs = Vec::new();
    let mut names = Vec::new();
    let ents = |file: &str| -> Vec<serde_json::Value> {
        serde_json::from_str(&gz_text(dir.join("esi/entities").join(file))).expect("entity json")
    };
    let s = |v: &serde_json::Value, k: &str| -> String {
        match &v[k] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    };
    for a in ents("alliances-id-name-ticker.json.gz") {
        names.push(s(&a, "name"));
        docs.push(Document::Alliance(AllianceDoc {
            id: s(&a, "id"),
            name: s(&a, "name"),
            ticker: s(&a, "ticker"),
            activity_score: (a["id"].as_i64().unwrap_or(0) % 997),
            ..Default::default()
        }));
    }
    for c in ents("corporations-id-name-ticker.json.gz") {
        names.push(s(&c, "name"));
        docs.push(Document::Corporation(CorporationDoc {
            id: s(&c, "id"),
            name: s(&c, "name"),
            ticker: s(&c, "ticker"),
            activity_score: (c["id"].as_i64().unwrap_or(0) % 499),
            ..Default::default()
        }));
    }
    let chars: Vec<serde_json::Value> =
        serde_json::from_str(&gz_text(dir.join("esi/characters-id-name.json.gz"))).expect("chars");
    for c in chars {
        names.push(s(&c, "name"));
        docs.push(Document::Character(CharacterDoc {
            id: s(&c, "character_id"),
            name: s(&c, "name"),
            activity_score: (c["character_id"].as_i64().unwrap_or(0) % 101),
            ..Default::default()
        }));
    }
    let systems = csv_rows(&gz_text(dir.join("sde/mapSolarSystems.csv.gz")));
    let mut sys_names = Vec::new();
    for row in &systems {
        sys_names.push((row[0].clone(), row[1].clone()));
        names.push(row[1].clone());
        docs.push(Document::System(SystemDoc {
            id: row[0].clone(),
            name: row[1].clone(),
            region_id: row[3].clone(),
            constellation_id: row[2].clone(),
            security_status: row[4].parse().unwrap_or(0.0),
            ..Default::default()
        }));
    }
    let groups: std::collections::HashMap<String, (String, String)> =
        csv_rows(&std::fs::read_to_string(dir.join("sde/invGroups.csv")).expect("groups"))
            .into_iter()
            .map(|r| (r[0].clone(), (r[1].clone(), r[2].clone())))
            .collect();
    let mut ships = Vec::new();
    for row in csv_rows(&gz_text(dir.join("sde/invTypes.csv.gz"))) {
        let Some((cat, gname)) = groups.get(&row[1]) else {
            continue;
        };
        if cat != "6" || row[3] != "1" {
            continue;
        }
        ships.push((
            row[0].clone(),
            row[2].clone(),
            row[1].clone(),
            gname.clone(),
        ));
        names.push(row[2].clone());
        docs.push(Document::ShipType(ShipTypeDoc {
            id: row[0].clone(),
            name: row[2].clone(),
            group_id: row[1].clone(),
            group_name: gname.clone(),
            ..Default::default()
        }));
    }
    let real = docs.len();

    // ---- GENERATED scaled set (not real EVE data) ----
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let n_chars = (1_000_000.0 * scale) as usize;
    let n_corps = (100_000.0 * scale) as usize;
    let n_kms = (200_000.0 * scale) as usize;
    for i in 0..n_corps {
        let name = format!(
            "{} {}",
            generated_name(&mut r),
            ["Inc", "Corp", "Holding", "Ltd."][r.below(4)]
        );
        if i % 100 == 0 {
            names.push(name.clone());
        }
        let ticker: String = (0..(2 + r.below(4)))
            .map(|_| (b'A' + r.below(26) as u8) as char)
            .collect();
        docs.push(Document::Corporation(CorporationDoc {
            id: format!("gen-corp-{i}"),
            name,
            ticker,
            activity_score: r.below(500) as i64,
            ..Default::default()
        }));
    }
    for i in 0..n_chars {
        let name = generated_name(&mut r);
        if i % 1000 == 0 {
            names.push(name.clone());
        }
        docs.push(Document::Character(CharacterDoc {
            id: format!("gen-char-{i}"),
            name,
            activity_score: r.below(200) as i64,
            ..Default::default()
        }));
    }
    for i in 0..n_kms {
        let (sid, sname) = &sys_names[r.below(sys_names.len())];
        let (tid, tname, gid, gname) = &ships[r.below(ships.len())];
        docs.push(Document::Killmail(KillmailDoc {
            id: format!("gen-km-{i}"),
            killmail_time: 1_638_000_000 + r.below(600_000) as i64,
            system_id: sid.clone(),
            system_name: sname.clone(),
            ship_type_id: tid.clone(),
            ship_type_name: tname.clone(),
            ship_group_id: gid.clone(),
            ship_group_name: gname.clone(),
            victim_character_name: Some(generated_name(&mut r)),
            isk_value: r.below(2_000_000_000) as i64,
            attacker_count: 1 + r.below(50) as i64,
            ..Default::default()
        }));
    }
    Corpus { docs, real, names }
}

fn query_mix(names: &[String], n: usize) -> Vec<String> {
    let mut r = Rng(42);
    let mut qs: Vec<String> = [
        "o-iv",
        "oivnh",
        "O IVNH",
        "j1059",
        "uw9b",
        "[CONDI]",
        "hell's",
        "e.b.o",
        "pandemc hor",
        "Jorumd",
        "goonswarm f",
        "init",
        "test all",
        "jita",
        "amarr",
        "ix",
        "8 2",
        "op3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    while qs.len() < n {
        let name = &names[r.below(names.len())];
        let chars: Vec<char> = name.chars().collect();
        if chars.len() < 2 {
            continue;
        }
        let len = (2 + r.below(7)).min(chars.len());
        let mut q: Vec<char> = chars[..len].to_vec();
        if r.below(8) == 0 && q.len() >= 5 {
            // One-typo variant: replace a middle character.
            let at = 1 + r.below(q.len() - 2);
            q[at] = (b'a' + r.below(26) as u8) as char;
        }
        qs.push(q.into_iter().collect());
    }
    qs
}

/// The 1-minute load average, printed next to latencies: the machine is shared.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn run_latency(
    idx: Arc<dyn SearchIndex>,
    queries: &[String],
    clients: usize,
) -> (f64, f64, f64, f64, f64, Vec<(Duration, String)>) {
    let queries = Arc::new(queries.to_vec());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let idx = idx.clone();
        let queries = queries.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while i < queries.len() {
                let t = Instant::now();
                let hits = idx.autocomplete(&queries[i], &[], 10).await;
                lat.push((t.elapsed(), i));
                if let Err(e) = hits {
                    eprintln!("query {:?} failed: {e}", queries[i]);
                }
                i += clients;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let wall = start.elapsed().as_secs_f64();
    all.sort();
    let slowest = all
        .iter()
        .rev()
        .take(8)
        .map(|(d, i)| (*d, queries[*i].clone()))
        .collect();
    let all: Vec<Duration> = all.into_iter().map(|(d, _)| d).collect();
    let mean = all.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / all.len() as f64;
    (
        pct(&all, 0.5),
        pct(&all, 0.9),
        pct(&all, 0.99),
        mean,
        all.len() as f64 / wall,
        slowest,
    )
}

async fn bench(
    name: &str,
    idx: Arc<dyn SearchIndex>,
    tantivy: Option<&TantivyIndex>,
    corpus: &Corpus,
    queries: &[String],
) {
    idx.ensure_collections().await.expect("ensure collections");
    let t = Instant::now();
    let mut rejected = 0;
    for chunk in corpus.docs.chunks(10_000) {
        let rep = idx.upsert(chunk).await.expect("upsert");
        rejected += rep.rejected.len();
    }
    idx.refresh().await.expect("refresh");
    let secs = t.elapsed().as_secs_f64();
    let mut total = 0;
    for c in Collection::ALL {
        total += idx.count(c).await.unwrap_or(0);
    }
    println!(
        "[{name}] indexed {} docs ({total} counted, {rejected} rejected) in {secs:.1} s = {:.0} docs/s",
        corpus.docs.len(),
        corpus.docs.len() as f64 / secs
    );
    if let Some(t) = tantivy {
        let before = t.segment_count();
        let start = Instant::now();
        t.compact().await.expect("compact");
        println!(
            "[{name}] compacted {before} segments into {} in {:.1} s (after bulk load, as reindex does)",
            t.segment_count(),
            start.elapsed().as_secs_f64()
        );
    }
    // Diagnostics: `BENCH_PROBE="The,Ha,Altervo"` times single queries (median of 21 runs).
    if let Ok(probe) = std::env::var("BENCH_PROBE") {
        for q in probe.split(',') {
            let mut ds: Vec<Duration> = Vec::new();
            for _ in 0..21 {
                let t = Instant::now();
                let _ = idx.autocomplete(q, &[], 10).await;
                ds.push(t.elapsed());
            }
            ds.sort();
            println!("[{name}] probe {q:?}: median {:.2} ms", pct(&ds, 0.5));
        }
    }
    // Warm-up pass (page cache, JIT-free but caches matter), not measured.
    let _ = run_latency(idx.clone(), &queries[..queries.len().min(200)], 4).await;
    for clients in [1, 16] {
        let (p50, p90, p99, mean, qps, slowest) = run_latency(idx.clone(), queries, clients).await;
        println!(
            "[{name}] autocomplete x{} queries, {clients:>2} clients: p50 {p50:.2} ms  p90 {p90:.2} ms  p99 {p99:.2} ms  mean {mean:.2} ms  {qps:.0} q/s  (loadavg {})",
            queries.len(),
            loadavg()
        );
        if clients == 1 {
            let show: Vec<String> = slowest
                .iter()
                .map(|(d, q)| format!("{q:?} {:.1}", d.as_secs_f64() * 1000.0))
                .collect();
            println!("[{name}] slowest (ms): {}", show.join(", "));
        }
    }
    let sample = idx.autocomplete("o-iv", &[], 3).await.unwrap_or_default();
    println!(
        "[{name}] sample 'o-iv' -> {:?}",
        sample
            .iter()
            .map(|h| (h.kind, h.name.as_str()))
            .collect::<Vec<_>>()
    );
}

#[tokio::main]
async fn main() {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let t = Instant::now();
    let corpus = build_corpus(scale);
    let generated = corpus.docs.len() - corpus.real;
    println!(
        "corpus: {} REAL entities (ESI lists + SDE) + {generated} GENERATED docs (scale {scale}: {} generated characters, {} corporations, {} killmails), built in {:.1} s",
        corpus.real,
        (1_000_000.0 * scale) as usize,
        (100_000.0 * scale) as usize,
        (200_000.0 * scale) as usize,
        t.elapsed().as_secs_f64()
    );
    let queries = query_mix(&corpus.names, 4_000);
    println!(
        "query mix: {} autocomplete queries over all 7 types, limit 10",
        queries.len()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let tantivy = TantivyIndex::open(TantivyConfig {
        dir: Some(dir.path().join("tantivy")),
        writer_memory: 512 << 20,
        writer_threads: 2,
        ..Default::default()
    })
    .expect("open tantivy");
    let tantivy = Arc::new(tantivy);
    bench(
        "tantivy",
        tantivy.clone(),
        Some(&tantivy),
        &corpus,
        &queries,
    )
    .await;

    match std::env::var("BATTLESCOPE_TEST_TYPESENSE") {
        Ok(url) if !url.is_empty() => {
            let key = std::env::var("BATTLESCOPE_TEST_TYPESENSE_KEY").unwrap_or_default();
            let mut cfg = TypesenseConfig::new(url, key);
            cfg.collection_prefix = format!("bench{}_", std::process::id());
            cfg.timeout = Duration::from_secs(120);
            let ts = TypesenseIndex::new(cfg).expect("typesense client");
            match ts.ping().await {
                Ok(()) => {
                    bench("typesense", Arc::new(ts.clone()), None, &corpus, &queries).await;
                    if let Err(e) = ts.drop_collections().await {
                        eprintln!("could not drop bench collections: {e}");
                    }
                }
                Err(e) => println!("[typesense] skipped: unreachable ({e})"),
            }
        }
        _ => println!("[typesense] skipped: BATTLESCOPE_TEST_TYPESENSE not set"),
    }
}
