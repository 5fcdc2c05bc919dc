//! The test world: ingestion, enrichment, battle and the BFF started in-process through their
//! `start(ctx)` functions (embedded bus, SQLite in a temp dir), served over real TCP on
//! loopback, with the repository's real fights imported. Built once per test binary on its own
//! runtime thread, so every test (and the browser) talks to the same running installation.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bs_bus::BusConfig;
use bs_config::{Config, ServiceName};
use bs_runtime::{ServiceClient, ServiceContext, ServiceDirectory, SystemClock};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub struct World {
    pub base: String,
    /// The battle with the most kills.
    pub largest: i64,
    /// The killmail held back from the import, for the live feed test.
    pub late_killmail: i64,
    late_file: PathBuf,
    import: mpsc::UnboundedSender<(Vec<PathBuf>, oneshot::Sender<u64>)>,
    _dir: tempfile::TempDir,
}

impl World {
    /// Imports the held-back killmail (idempotent) and answers how many were new.
    pub async fn import_late(&self) -> u64 {
        let (tx, rx) = oneshot::channel();
        self.import
            .send((vec![self.late_file.clone()], tx))
            .unwrap();
        rx.await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

static WORLD: OnceLock<World> = OnceLock::new();

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Splits the fights into "everything" and "the latest killmail", as plain JSONL files.
fn split_fixtures(dir: &Path) -> (PathBuf, PathBuf, i64) {
    let mut lines: Vec<(String, i64, String)> = Vec::new();
    for entry in std::fs::read_dir(repo("data/killmails")).unwrap() {
        let p = entry.unwrap().path();
        if !p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("fight-")
        {
            continue;
        }
        let r = BufReader::new(flate2_free_gunzip(&p));
        for l in r.lines() {
            let l = l.unwrap();
            if l.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&l).unwrap();
            let t = v["killmail_time"].as_str().unwrap_or("").to_owned();
            let id = v["killmail_id"].as_i64().unwrap_or(0);
            lines.push((t, id, l));
        }
    }
    lines.sort();
    let (_, late_id, late_line) = lines.pop().unwrap();
    let rest = dir.join("rest.jsonl");
    let late = dir.join("late.jsonl");
    let mut f = std::fs::File::create(&rest).unwrap();
    for (_, _, l) in &lines {
        writeln!(f, "{l}").unwrap();
    }
    std::fs::write(&late, format!("{late_line}\n")).unwrap();
    (rest, late, late_id)
}

/// Decompresses with the system `gzip` (keeps flate2 out of this crate's dev-dependencies).
fn flate2_free_gunzip(p: &Path) -> std::io::Cursor<Vec<u8>> {
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(p)
        .output()
        .expect("gzip");
    assert!(out.status.success(), "gzip -dc {}", p.display());
    std::io::Cursor::new(out.stdout)
}

pub fn world() -> &'static World {
    WORLD.get_or_init(build)
}

fn build() -> World {
    let dir = bs_testkit::temp_dir();
    let (rest, late, late_id) = split_fixtures(dir.path());
    let data = dir.path().join("data");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (import_tx, mut import_rx) =
        mpsc::unbounded_channel::<(Vec<PathBuf>, oneshot::Sender<u64>)>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let config = Config {
                data_dir: data.clone(),
                ..Config::default()
            };
            let bus = bs_bus::connect(&BusConfig::embedded(data.join("bus")))
                .await
                .unwrap();
            bus.ensure_topics(bs_events::topics::ALL).await.unwrap();
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
                    ServiceName::Ingestion => bs_ingestion::start(&ctx).await,
                    ServiceName::Enrichment => bs_enrichment::start(&ctx).await,
                    _ => bs_battle::start(&ctx).await,
                }
                .unwrap();
                ctx.services
                    .register(ServiceClient::in_process(name, h.router.clone()));
                handles.push(h);
            }
            let bff = bs_bff::start(&ctx).await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let app = bff.router.clone();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            let summary = bs_ingestion::import_paths(&config, &[rest], false)
                .await
                .unwrap();
            assert!(summary.new > 1000, "{summary:?}");
            wait_for_battle_service(&ctx.services, summary.new).await;
            let largest = wait_for_battles(&base, summary.new).await;
            ready_tx.send((base, largest)).unwrap();
            // Keep serving; run imports asked for by tests (the import future is not Send).
            while let Some((paths, reply)) = import_rx.recv().await {
                let s = bs_ingestion::import_paths(&config, &paths, false)
                    .await
                    .unwrap();
                let _ = reply.send(s.new);
            }
            drop(handles);
        });
    });
    let (base, largest) = ready_rx
        .recv_timeout(Duration::from_secs(600))
        .expect("test world did not come up");
    World {
        base,
        largest,
        late_killmail: late_id,
        late_file: late,
        import: import_tx,
        _dir: dir,
    }
}

/// Waits until the battle service stored every imported killmail (through enrichment), or
/// its count stopped moving for 15 s (a killmail enrichment rejects never arrives).
async fn wait_for_battle_service(services: &ServiceDirectory, imported: u64) {
    let battle = services.get(ServiceName::Battle).unwrap();
    let deadline = Instant::now() + Duration::from_secs(540);
    let (mut last, mut since) = (0, Instant::now());
    while Instant::now() < deadline {
        let n = battle
            .get_json::<Value>("/stats")
            .await
            .ok()
            .and_then(|v| v["killmails"].as_u64())
            .unwrap_or(0);
        if n >= imported {
            return;
        }
        if n != last {
            (last, since) = (n, Instant::now());
        } else if n > 0 && since.elapsed() > Duration::from_secs(15) {
            eprintln!("battle service settled at {n} of {imported} killmails");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the battle service stored only {last} of {imported} killmails");
}

/// Waits until every imported killmail reached the battle service, battles exist and the
/// largest has its sides; answers the id of the battle with the most kills.
async fn wait_for_battles(base: &str, imported: u64) -> i64 {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(540);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/api/stats")).send().await
            && let Ok(v) = r.json::<Value>().await
        {
            last = v.clone();
            let battles = v["battles_total"].as_i64().unwrap_or(0);
            let list: Value = http
                .get(format!("{base}/api/battles?sort=kills&limit=1"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or(Value::Null);
            let enriched_all = v["killmails_total"].as_u64() == Some(imported);
            // Sides come from the battle service's refresher, after clustering: tests read them.
            let sided = list["battles"][0]["sides"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            if battles > 0
                && enriched_all
                && sided
                && settled(&http, base, imported).await
                && let Some(id) = list["battles"][0]["battle_id"].as_i64()
            {
                return id;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("battles did not appear: {last}");
}

/// True when the battle service has seen every imported killmail (through enrichment).
async fn settled(http: &reqwest::Client, base: &str, imported: u64) -> bool {
    // The BFF does not expose the battle service's internal counters; the battles' kill sum
    // stops changing once clustering is done, so two equal reads a moment apart settle it.
    let sum = |v: Value| -> u64 {
        v["battles"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|b| b["total_kills"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    let read = || async {
        http.get(format!("{base}/api/battles?limit=500&status="))
            .send()
            .await
            .ok()?
            .json::<Value>()
            .await
            .ok()
    };
    let Some(a) = read().await else { return false };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let Some(b) = read().await else { return false };
    let (a, b) = (sum(a), sum(b));
    a > 0 && a == b && a <= imported
}
