//! Stage counters, the latencies read off their curves, and the query phase.
//!
//! Counters (polled every 50 ms through in-process clients, no sockets):
//! `ingested` = ingestion `/stats` `killmails_total`, `enriched` = enrichment
//! `/status` `killmails`, `in_battle` = battle `/stats` `killmails` (only
//! killmails that belong to a battle), `indexed` = search `/search?types=killmails`
//! `total`. The k-th killmail reaches a stage at the first sample where that
//! counter is ≥ k; its latency through a stage is that time minus the time the
//! k-th reached the stage it consumes from (`enriched` and `in_battle` and
//! `indexed` read from the enriched stream; `enriched` from `ingested`).
//! The battle service counts every killmail it clustered, so `in_battle`
//! reaches the total even though not every kill belongs to a fight.

use std::time::{Duration, Instant};

use bs_runtime::ServiceClient;
use serde_json::{Value, json};

/// One poll of the four counters, `t` seconds after the pipeline started.
#[derive(Clone, Debug)]
pub struct Sample {
    pub t: f64,
    pub counts: [u64; 4],
}

/// The figures of one stage.
#[derive(Clone, Debug)]
pub struct Stage {
    pub name: &'static str,
    /// Final counter value.
    pub count: u64,
    /// Seconds from the pipeline start until the counter reached its final value.
    pub seconds: f64,
    /// `None` where the stage has no upstream counter to measure from.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

impl Stage {
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.seconds.max(1e-9)
    }
}

/// The in-process clients of the services under test.
pub struct Clients {
    pub ingestion: ServiceClient,
    pub enrichment: ServiceClient,
    pub battle: ServiceClient,
    pub search: ServiceClient,
    /// A search router over Typesense, filled from the same bus, when one is configured.
    pub typesense: Option<ServiceClient>,
}

fn count_at(c: &Result<Value, bs_runtime::ClientError>, pointer: &str) -> u64 {
    c.as_ref()
        .ok()
        .and_then(|v| v.pointer(pointer)?.as_u64())
        .unwrap_or(0)
}

impl Clients {
    pub async fn sample(&self, t: Duration) -> Sample {
        let (i, e, b, s) = tokio::join!(
            self.ingestion.get_json::<Value>("/stats"),
            self.enrichment.get_json::<Value>("/status"),
            self.battle.get_json::<Value>("/stats"),
            self.search
                .get_json::<Value>("/search?types=killmails&per_page=1"),
        );
        Sample {
            t: t.as_secs_f64(),
            counts: [
                count_at(&i, "/killmails_total"),
                count_at(&e, "/killmails"),
                count_at(&b, "/killmails"),
                count_at(&s, "/total"),
            ],
        }
    }

    pub async fn battle_stats(&self) -> Value {
        let stats = self.battle.get_json::<Value>("/stats").await.ok();
        let get = |k: &str| stats.as_ref().and_then(|s| s[k].as_u64()).unwrap_or(0);
        json!({
            "battles_total": get("battles_total"),
            "killmails_in_battles": get("killmails"),
        })
    }
}

/// For each k in 1..=final, the first sample time at which counter `i` reached k.
fn arrivals(samples: &[Sample], i: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for s in samples {
        while (out.len() as u64) < s.counts[i] {
            out.push(s.t);
        }
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx.min(sorted.len() - 1)).copied()
}

/// Latencies (ms) of the k-th item between two arrival curves.
fn latencies(from: &[f64], to: &[f64]) -> (Option<f64>, Option<f64>) {
    let mut v: Vec<f64> = from
        .iter()
        .zip(to)
        .map(|(a, b)| ((b - a) * 1000.0).max(0.0))
        .collect();
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

/// Stage figures and the end-to-end figure (ingested → indexed).
pub fn compute(samples: &[Sample]) -> (Vec<Stage>, Stage) {
    const NAMES: [&str; 4] = ["ingested", "enriched", "in_battle", "indexed"];
    // What each stage consumes from (none for ingestion: its input is the file reader).
    const UPSTREAM: [Option<usize>; 4] = [None, Some(0), Some(1), Some(1)];
    let curves: Vec<Vec<f64>> = (0..4).map(|i| arrivals(samples, i)).collect();
    let stage = |i: usize, name: &'static str, from: Option<usize>| {
        let curve = &curves[i];
        let (p50, p99) = from.map_or((None, None), |u| latencies(&curves[u], curve));
        Stage {
            name,
            count: curve.len() as u64,
            seconds: curve.last().copied().unwrap_or(0.0),
            latency_p50_ms: p50,
            latency_p99_ms: p99,
        }
    };
    let stages = (0..4).map(|i| stage(i, NAMES[i], UPSTREAM[i])).collect();
    (stages, stage(3, "end_to_end", Some(0)))
}

// ---------------------------------------------------------------- query phase

/// Time budget of one (scenario, concurrency) run: slow queries end early rather than
/// stretching the benchmark; every caller makes at least one request.
const RUN_BUDGET: Duration = Duration::from_secs(3);

/// Runs up to `requests` GETs spread over `clients` concurrent callers, cycling through `paths`.
async fn scenario(
    client: &ServiceClient,
    paths: &[String],
    clients: usize,
    requests: usize,
) -> Value {
    let started = Instant::now();
    let deadline = started + RUN_BUDGET;
    let per_client = requests.div_ceil(clients);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client.clone();
        let paths = paths.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(per_client);
            let mut errors = 0u64;
            for r in 0..per_client {
                if r > 0 && Instant::now() > deadline {
                    break;
                }
                let path = &paths[(c * per_client + r) % paths.len().max(1)];
                let t = Instant::now();
                let res = client
                    .send(
                        axum::http::Method::GET,
                        path,
                        &axum::http::HeaderMap::new(),
                        None,
                    )
                    .await;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                if !res.is_ok_and(|r| r.status.is_success()) {
                    errors += 1;
                }
            }
            (times, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((times, e)) = t.await {
            all.extend(times);
            errors += e;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    json!({
        "clients": clients,
        "requests": all.len(),
        "errors": errors,
        "seconds": seconds,
        "requests_per_second": all.len() as f64 / seconds.max(1e-9),
        "latency_ms": { "p50": percentile(&all, 0.5).unwrap_or(0.0), "p99": percentile(&all, 0.99).unwrap_or(0.0) },
    })
}

/// Battle list, the largest battle's report and autocomplete at 1 and 16 clients.
pub async fn query_phase(c: &Clients) -> Value {
    let largest = c
        .battle
        .get_json::<Value>("/battles?sort=kills&order=desc&limit=1")
        .await
        .ok()
        .and_then(|v| v.pointer("/battles/0/battle_id")?.as_i64());
    let list = vec![
        "/battles?limit=50".to_owned(),
        "/battles?sort=kills&order=desc&limit=50".to_owned(),
    ];
    let report = largest.map_or_else(Vec::new, |id| vec![format!("/battles/{id}")]);
    // Prefixes of real names in 2021 null-sec: alliances, systems, ships.
    let autocomplete: Vec<String> = [
        "goon", "test", "brave", "pand", "fra", "lxq", "jor", "muni", "mach", "eag",
    ]
    .iter()
    .map(|q| format!("/search/autocomplete?q={q}&limit=10"))
    .collect();
    let mut tantivy = serde_json::Map::new();
    for (name, client, paths) in [
        ("battle_list", &c.battle, &list),
        ("largest_battle_report", &c.battle, &report),
        ("autocomplete", &c.search, &autocomplete),
    ] {
        tantivy.insert(name.to_owned(), runs(client, paths).await);
    }
    let mut out = json!({ "largest_battle_id": largest, "tantivy": tantivy });
    if let Some(typesense) = &c.typesense {
        // Battle queries do not touch the search backend: only autocomplete differs.
        out["typesense"] = json!({ "autocomplete": runs(typesense, &autocomplete).await });
    }
    out
}

async fn runs(client: &ServiceClient, paths: &[String]) -> Value {
    let mut runs = Vec::new();
    if !paths.is_empty() {
        for (clients, requests) in [(1, 100), (16, 320)] {
            runs.push(scenario(client, paths, clients, requests).await);
        }
    }
    Value::Array(runs)
}
