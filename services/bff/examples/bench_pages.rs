//! Server time of the battle list and the largest battle's report page at 1 and 64
//! concurrent clients on loopback, plus page weight.
//!
//! Starts ingestion, enrichment, battle and the BFF in-process (embedded bus, SQLite in a temp
//! dir), imports the repository's fights, then runs a closed loop of HTTP GETs per client for a
//! fixed duration and prints p50/p90/p99/max and throughput. Run in release:
//!
//! ```text
//! cargo run --release -p bs-bff --example bench_pages [-- SECONDS]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bs_bus::BusConfig;
use bs_config::{Config, ServiceName};
use bs_runtime::{ServiceClient, ServiceContext, ServiceDirectory, SystemClock};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn fights() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/killmails");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("fight-")
        })
        .collect();
    v.sort();
    v
}

async fn run(http: &reqwest::Client, url: &str, clients: usize, secs: u64) -> (Vec<f64>, f64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let http = http.clone();
            let url = url.to_owned();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let r = http.get(&url).send().await.unwrap();
                    assert!(r.status().is_success(), "{url}: {}", r.status());
                    let _ = r.bytes().await.unwrap();
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let wall = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let rps = all.len() as f64 / wall;
    (all, rps)
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let config = Config {
        data_dir: data.clone(),
        ..Config::default()
    };
    let bus = bs_bus::connect(&BusConfig::embedded(data.join("bus"))).await?;
    bus.ensure_topics(bs_events::topics::ALL).await?;
    let ctx = ServiceContext {
        config: Arc::new(config.clone()),
        bus,
        cache: Arc::new(bs_cache::MemoryCache::new(10_000)),
        clock: Arc::new(SystemClock),
        shutdown: CancellationToken::new(),
        offline: true,
        services: ServiceDirectory::default(),
    };
    let mut handles = Vec::new();
    for name in [
        ServiceName::Ingestion,
        ServiceName::Enrichment,
        ServiceName::Battle,
    ] {
        let h = match name {
            ServiceName::Ingestion => bs_ingestion::start(&ctx).await?,
            ServiceName::Enrichment => bs_enrichment::start(&ctx).await?,
            _ => bs_battle::start(&ctx).await?,
        };
        ctx.services
            .register(ServiceClient::in_process(name, h.router.clone()));
        handles.push(h);
    }
    let bff = bs_bff::start(&ctx).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = bff.router.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let t = Instant::now();
    let summary = bs_ingestion::import_paths(&config, &fights(), false).await?;
    eprintln!(
        "imported {} killmails in {:.1}s",
        summary.new,
        t.elapsed().as_secs_f64()
    );
    let battle = ctx.services.get(ServiceName::Battle)?;
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let n = battle.get_json::<Value>("/stats").await?["killmails"]
            .as_u64()
            .unwrap_or(0);
        if n >= summary.new || (n > 0 && n == last && since.elapsed() > Duration::from_secs(15)) {
            break;
        }
        if n != last {
            (last, since) = (n, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "battle service has every killmail after {:.1}s",
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()?;
    let list: Value = http
        .get(format!("{base}/api/battles?sort=kills&limit=1"))
        .send()
        .await?
        .json()
        .await?;
    let largest = list["battles"][0]["battle_id"].as_i64().unwrap_or(0);
    let kills = list["battles"][0]["total_kills"].as_u64().unwrap_or(0);
    let css = http
        .get(format!("{base}/static/app.css"))
        .send()
        .await?
        .bytes()
        .await?
        .len();
    let js = http
        .get(format!("{base}/static/app.js"))
        .send()
        .await?
        .bytes()
        .await?
        .len();
    println!("largest battle {largest}: {kills} kills");
    println!(
        "| page | clients | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | HTML bytes | +CSS+JS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let pages = [
        ("battle list", "/battles".to_owned()),
        ("largest report", format!("/battles/{largest}")),
        ("largest report, full", format!("/battles/{largest}?full=1")),
    ];
    for (label, path) in &pages {
        let url = format!("{base}{path}");
        let html = http.get(&url).send().await?.bytes().await?.len();
        for clients in [1, 64] {
            // Warm the caches the way a live site is warm.
            let _ = run(&http, &url, clients, 1).await;
            let (lat, rps) = run(&http, &url, clients, secs).await;
            println!(
                "| {label} | {clients} | {} | {rps:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {html} | {} |",
                lat.len(),
                pct(&lat, 0.5),
                pct(&lat, 0.9),
                pct(&lat, 0.99),
                lat.last().copied().unwrap_or(0.0),
                html + css + js,
            );
        }
    }
    ctx.shutdown.cancel();
    drop(handles);
    Ok(())
}
