//! `battlescope bench`: the whole pipeline measured against its own floor, in one run.
//!
//! Three phases on the same data in the same process, so every figure has a
//! reference taken on the same machine at the same moment:
//!
//! 1. **floor** — what the hardware allows: a parse-only pass (read, gunzip,
//!    `serde_json` into [`bs_domain::Killmail`]) and the parse plus the minimal
//!    durable write of the same rows (one table of id + raw JSON, 1000 rows per
//!    transaction, SQLite `synchronous=FULL` — or the same table on PostgreSQL);
//! 2. **pipeline** — ingestion, enrichment, battle and search started in-process
//!    on a fresh data dir, the dataset imported with [`bs_ingestion::import_paths`];
//!    the services' own counters are polled every 50 ms (see [`stages`]);
//! 3. **query** — battle list, the largest battle's report and autocomplete
//!    through in-process [`ServiceClient`]s at 1 and 16 concurrent clients.
//!
//! `--soak DURATION` runs the live path instead, under a steady load, and fails when memory
//! or a queue lag keeps growing (see [`soak`]).
//!
//! Latency per killmail is read off the counter curves: the k-th killmail is
//! taken to reach a stage when that stage's counter first reaches k (the
//! stages consume in order, so this is exact for a FIFO pipeline and an
//! estimate otherwise, within one poll interval).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bs_config::{Config, ServiceName};
use bs_runtime::{ServiceClient, ServiceContext, ServiceHandle};
use serde_json::{Value, json};

/// Options of `battlescope bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Killmail files or folders to replay (repeatable; default: the bundled sample).
    #[arg(long = "dataset", value_name = "PATH")]
    pub dataset: Vec<PathBuf>,
    /// Where the services store their data: `embedded` (SQLite) or `postgres`
    /// (BATTLESCOPE_TEST_POSTGRES or BATTLESCOPE_DATABASE_URL, fresh databases).
    #[arg(long, value_enum, default_value = "embedded")]
    pub backend: BenchBackend,
    /// Print every figure as one JSON document on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Soak mode: replay through the live feed path (a local R2Z2 fake) for this long
    /// (`30s`, `10m`, `1h`), sampling RSS and queue lags; fails if either keeps growing.
    #[arg(long, value_name = "DURATION")]
    pub soak: Option<String>,
    /// Soak: killmails per second the fake's head advances (below 19, the poller's cap).
    #[arg(long, value_name = "N", default_value_t = 15.0)]
    pub soak_rate: f64,
    /// Soak: seconds between samples (default: a twentieth of the duration, 1–10 s).
    #[arg(long, value_name = "SECONDS")]
    pub soak_interval: Option<f64>,
}

/// The storage backend under test.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchBackend {
    Embedded,
    Postgres,
}

impl BenchBackend {
    fn as_str(self) -> &'static str {
        match self {
            BenchBackend::Embedded => "embedded",
            BenchBackend::Postgres => "postgres",
        }
    }
}

/// Poll interval of the stage counters.
const POLL: Duration = Duration::from_millis(50);
/// Rows per transaction of the floor write (the ingestion service's chunk size).
const FLOOR_CHUNK: usize = 1000;

/// Runs the benchmark and prints the table (or the JSON).
pub async fn run(config: Config, args: BenchArgs) -> anyhow::Result<()> {
    let soak = match &args.soak {
        None => None,
        Some(d) => {
            let duration = soak::parse_duration(d).context("--soak")?;
            let interval = args.soak_interval.map_or_else(
                || (duration / 20).clamp(Duration::from_secs(1), Duration::from_secs(10)),
                Duration::from_secs_f64,
            );
            Some(soak::SoakOptions {
                duration,
                rate: args.soak_rate,
                interval,
            })
        }
    };
    let root = std::env::temp_dir().join(format!(
        "battlescope-bench-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    ));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    if let Some(opts) = soak {
        let result = run_soak(config, &args, &root, &opts).await;
        let _ = std::fs::remove_dir_all(&root);
        let run = result?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&run.report)?);
        } else {
            print!("{}", soak::table(&run.report));
        }
        anyhow::ensure!(run.passed, "soak failed: {}", run.report["reasons"]);
        return Ok(());
    }
    let result = run_in(config, &args, &root).await;
    // The scratch data is only a means to the figures.
    let _ = std::fs::remove_dir_all(&root);
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// The dataset's files: `--dataset` or the bundled sample written under `root`.
fn dataset_files(args: &BenchArgs, root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let paths = if args.dataset.is_empty() {
        crate::sample::materialise(root).context("writing the bundled sample")?
    } else {
        args.dataset.clone()
    };
    let files = bs_ingestion::sources::files::expand(&paths).context("listing the dataset")?;
    anyhow::ensure!(!files.is_empty(), "the dataset has no killmail files");
    Ok(files)
}

/// The PostgreSQL server for `--backend postgres`.
fn postgres_url(args: &BenchArgs) -> anyhow::Result<Option<String>> {
    Ok(match args.backend {
        BenchBackend::Embedded => None,
        BenchBackend::Postgres => Some(
            std::env::var("BATTLESCOPE_TEST_POSTGRES")
                .or_else(|_| std::env::var("BATTLESCOPE_DATABASE_URL"))
                .context("--backend postgres needs BATTLESCOPE_TEST_POSTGRES or BATTLESCOPE_DATABASE_URL")?,
        ),
    })
}

async fn run_soak(
    config: Config,
    args: &BenchArgs,
    root: &Path,
    opts: &soak::SoakOptions,
) -> anyhow::Result<soak::SoakRun> {
    let files = dataset_files(args, root)?;
    let pg_url = postgres_url(args)?;
    let prefix = format!("bsbench{}", chrono::Utc::now().timestamp_millis());
    let mut run = soak::run(
        config,
        files.clone(),
        root,
        opts,
        pg_url.as_deref().map(|u| (u, prefix.as_str())),
        args.json,
    )
    .await?;
    run.report["backend"] = json!(args.backend.as_str());
    run.report["build"] = json!(if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    });
    run.report["dataset"] = json!(
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
    );
    Ok(run)
}

async fn run_in(config: Config, args: &BenchArgs, root: &Path) -> anyhow::Result<Value> {
    let files = dataset_files(args, root)?;
    let dataset_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let pg_url = postgres_url(args)?;
    let prefix = format!("bsbench{}", chrono::Utc::now().timestamp_millis());
    let bar = progress(args.json);

    bar.set_message("floor: parse only");
    let parse = parse_only(files.clone()).await?;
    bar.set_message("floor: parse + durable write");
    let write = parse_and_write(&files, root, pg_url.as_deref(), &prefix).await?;

    bar.set_message("pipeline");
    let mut cfg = config;
    cfg.data_dir = root.join("pipeline");
    cfg.ingestion.live = false;
    cfg.ingestion.redisq_url.clear();
    if let Some(url) = &pg_url {
        cfg.store.url = url.clone();
        cfg.store.database_prefix = format!("{prefix}_");
    } else {
        cfg.store.url.clear();
    }
    let pipeline = pipeline(cfg, files.clone(), &bar, parse.killmails).await?;
    bar.finish_and_clear();

    let floor_parse_rate = parse.rate();
    let floor_write_rate = write.rate();
    let ratio = |x: f64, floor: f64| if floor > 0.0 { x / floor } else { 0.0 };
    let mut stages = serde_json::Map::new();
    for s in &pipeline.stages {
        stages.insert(
            s.name.to_owned(),
            json!({
                "killmails": s.count,
                "seconds": s.seconds,
                "killmails_per_second": s.rate(),
                "latency_ms": { "p50": s.latency_p50_ms, "p99": s.latency_p99_ms },
                "ratio_to_parse_floor": ratio(s.rate(), floor_parse_rate),
                "ratio_to_write_floor": ratio(s.rate(), floor_write_rate),
            }),
        );
    }
    let e2e = &pipeline.end_to_end;
    Ok(json!({
        "version": 1,
        "backend": args.backend.as_str(),
        "search_backend": "tantivy",
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        // The allocator settings the figures were taken with (see `crate::malloc`).
        "allocator": {
            "glibc_tunables": std::env::var("GLIBC_TUNABLES").ok(),
            "malloc_arena_max": std::env::var("MALLOC_ARENA_MAX").ok(),
        },
        "dataset": {
            "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "bytes": dataset_bytes,
            "killmails": parse.killmails,
            "unparsable": parse.failed,
        },
        "floor": {
            "parse": {
                "killmails": parse.killmails,
                "seconds": parse.seconds,
                "killmails_per_second": floor_parse_rate,
            },
            "parse_and_write": {
                "killmails": write.killmails,
                "seconds": write.seconds,
                "killmails_per_second": floor_write_rate,
                "bytes_written": write.bytes,
            },
        },
        "pipeline": {
            "import": pipeline.import,
            "stages": stages,
            "end_to_end": {
                "killmails": e2e.count,
                "seconds": e2e.seconds,
                "killmails_per_second": e2e.rate(),
                "latency_ms": { "p50": e2e.latency_p50_ms, "p99": e2e.latency_p99_ms },
                "ratio_to_parse_floor": ratio(e2e.rate(), floor_parse_rate),
                "ratio_to_write_floor": ratio(e2e.rate(), floor_write_rate),
            },
            "complete": pipeline.complete,
            "peak_rss_bytes": pipeline.peak_rss,
            "steady_rss_bytes": pipeline.steady_rss,
            "memory": pipeline.memory,
            "rss_budget_bytes": 300u64 * 1024 * 1024,
            "bytes_written": pipeline.bytes_written,
            "bytes_written_ratio_to_floor": ratio(pipeline.bytes_written as f64, write.bytes as f64),
            "battles": pipeline.battles,
        },
        "query": pipeline.query,
    }))
}

fn progress(hidden: bool) -> indicatif::ProgressBar {
    if hidden {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

// ---------------------------------------------------------------- floor

/// What a floor pass did.
struct FloorPass {
    killmails: u64,
    failed: u64,
    seconds: f64,
    bytes: u64,
}

impl FloorPass {
    fn rate(&self) -> f64 {
        self.killmails as f64 / self.seconds.max(1e-9)
    }
}

/// Opens a dataset file with the decompressor its name asks for.
fn open_lines(path: &Path) -> std::io::Result<Box<dyn BufRead + Send>> {
    let raw = std::fs::File::open(path)?;
    let name = path.to_string_lossy();
    let reader: Box<dyn Read + Send> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(raw)?)
    } else {
        Box::new(raw)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, reader)))
}

/// Reads every JSONL line of the files and hands each parsed killmail (id, raw) to `sink`.
/// Returns (parsed, failed). Blocking: run it off the async threads.
fn read_all(
    files: &[PathBuf],
    mut sink: impl FnMut(i64, Vec<u8>) -> bool,
) -> anyhow::Result<(u64, u64)> {
    let (mut ok, mut failed) = (0u64, 0u64);
    for f in files {
        let mut reader = open_lines(f).with_context(|| format!("opening {}", f.display()))?;
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {}", f.display()))?
                == 0
            {
                break;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<bs_domain::Killmail>(&line) {
                Ok(km) => {
                    ok += 1;
                    if !sink(km.killmail_id, std::mem::take(&mut line)) {
                        return Ok((ok, failed));
                    }
                }
                Err(_) => failed += 1,
            }
        }
    }
    Ok((ok, failed))
}

async fn parse_only(files: Vec<PathBuf>) -> anyhow::Result<FloorPass> {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let (killmails, failed) = read_all(&files, |_, _| true)?;
        Ok(FloorPass {
            killmails,
            failed,
            seconds: started.elapsed().as_secs_f64(),
            bytes: 0,
        })
    })
    .await
    .context("floor parse task")?
}

/// Parse + the minimal durable write: a reader thread parses, the async side
/// writes batches of `FLOOR_CHUNK` rows per transaction.
async fn parse_and_write(
    files: &[PathBuf],
    root: &Path,
    pg_url: Option<&str>,
    prefix: &str,
) -> anyhow::Result<FloorPass> {
    let path = root.join("floor.db");
    let target = match pg_url {
        None => bs_store::StoreTarget::Sqlite(path.clone()),
        Some(url) => bs_store::StoreTarget::Postgres {
            server_url: url.to_owned(),
            database: format!("{prefix}_floor"),
        },
    };
    let db = bs_store::Database::open(&target, 1)
        .await
        .context("opening the floor database")?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS floor_killmails (id BIGINT PRIMARY KEY, raw TEXT NOT NULL)",
    )
    .execute(db.pool())
    .await
    .context("creating the floor table")?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(i64, String)>>(4);
    let files = files.to_vec();
    let started = Instant::now();
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(FLOOR_CHUNK);
        let counts = read_all(&files, |id, raw| {
            batch.push((id, String::from_utf8_lossy(&raw).into_owned()));
            if batch.len() == FLOOR_CHUNK {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(FLOOR_CHUNK));
                return tx.blocking_send(full).is_ok();
            }
            true
        });
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        counts
    });
    let mut written = 0u64;
    while let Some(batch) = rx.recv().await {
        let mut t = db.begin().await.context("floor transaction")?;
        for (id, raw) in &batch {
            sqlx::query(
                "INSERT INTO floor_killmails (id, raw) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            )
            .bind(*id)
            .bind(raw.as_str())
            .execute(&mut *t)
            .await
            .context("floor insert")?;
        }
        t.commit().await.context("floor commit")?;
        written += batch.len() as u64;
    }
    let (_, failed) = reader.await.context("floor reader task")??;
    let seconds = started.elapsed().as_secs_f64();
    let bytes = match pg_url {
        None => dir_size(root, |p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("floor.db"))
        }),
        Some(_) => {
            let row: Result<(i64,), _> =
                sqlx::query_as("SELECT pg_database_size(current_database())::BIGINT")
                    .fetch_one(db.pool())
                    .await;
            row.map(|r| r.0.max(0) as u64).unwrap_or(0)
        }
    };
    db.close().await;
    Ok(FloorPass {
        killmails: written,
        failed,
        seconds,
        bytes,
    })
}

/// Total size of the files under `dir` that `keep` accepts.
fn dir_size(dir: &Path, keep: impl Fn(&Path) -> bool + Copy) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => dir_size(&p, keep),
                Ok(m) if keep(&p) => m.len(),
                _ => 0,
            }
        })
        .sum()
}

// ---------------------------------------------------------------- memory

/// A `kB` field of `/proc/self/status`, in bytes (0 where there is no procfs).
fn proc_status_bytes(field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Where the pipeline's memory sits: RSS split into anonymous pages (the heap: caches,
/// buffers, the search writer's arena) and file-backed ones (mmapped index and database
/// files, which the kernel can reclaim), at each phase, and the peak of each.
#[derive(Default)]
struct MemoryWatch {
    phases: serde_json::Map<String, Value>,
    peak_anon: u64,
    peak_file: u64,
}

impl MemoryWatch {
    fn read() -> (u64, u64, u64) {
        (
            proc_status_bytes("VmRSS"),
            proc_status_bytes("RssAnon"),
            proc_status_bytes("RssFile"),
        )
    }

    fn poll(&mut self) {
        let (_, anon, file) = Self::read();
        self.peak_anon = self.peak_anon.max(anon);
        self.peak_file = self.peak_file.max(file);
    }

    fn mark(&mut self, phase: &str) {
        self.poll();
        let (rss, anon, file) = Self::read();
        self.phases.insert(
            phase.to_owned(),
            json!({ "rss_bytes": rss, "anon_bytes": anon, "file_bytes": file }),
        );
    }

    fn json(&self) -> Value {
        json!({
            "phases": self.phases,
            "peak_anon_bytes": self.peak_anon,
            "peak_file_bytes": self.peak_file,
        })
    }
}

/// Resets the peak RSS so the pipeline's peak is not the floor's (Linux ≥ 4.0).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

// ---------------------------------------------------------------- pipeline

mod soak;
mod stages;

use stages::{Sample, Stage};

/// What the pipeline phase measured.
struct PipelineRun {
    import: Value,
    stages: Vec<Stage>,
    end_to_end: Stage,
    complete: bool,
    peak_rss: u64,
    steady_rss: u64,
    memory: Value,
    bytes_written: u64,
    battles: Value,
    query: Value,
}

/// The shared infrastructure of the services under test: the binary's own
/// context builder, forced to the embedded bus and in-process cache, offline
/// (no ESI, no live feed: the benchmark measures this machine, not the network).
async fn context(mut config: Config) -> anyhow::Result<ServiceContext> {
    config.bus.kind = bs_config::BusKind::Embedded;
    config.cache.kind = bs_config::CacheKind::Memory;
    crate::topology::context(config, true).await
}

async fn pipeline(
    config: Config,
    files: Vec<PathBuf>,
    bar: &indicatif::ProgressBar,
    expected: u64,
) -> anyhow::Result<PipelineRun> {
    reset_peak_rss();
    let mut memory = MemoryWatch::default();
    memory.mark("start");
    let ctx = context(config).await?;
    let mut handles: Vec<ServiceHandle> = Vec::new();
    let order = [
        ServiceName::Ingestion,
        ServiceName::Enrichment,
        ServiceName::Battle,
        ServiceName::Search,
    ];
    for name in order {
        let handle = crate::services::start(name, &ctx)
            .await
            .with_context(|| format!("starting {name}"))?;
        ctx.services
            .register(ServiceClient::in_process(name, handle.router.clone()));
        handles.push(handle);
    }
    memory.mark("services_started");
    let client = |n| ctx.services.get(n);
    let mut clients = stages::Clients {
        ingestion: client(ServiceName::Ingestion)?,
        enrichment: client(ServiceName::Enrichment)?,
        battle: client(ServiceName::Battle)?,
        search: client(ServiceName::Search)?,
        typesense: None,
    };

    // The import future is not `Send`: it gets a thread and a runtime of its own,
    // exactly like `demo`'s background import.
    let started = Instant::now();
    let import_config = Arc::clone(&ctx.config);
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(bs_ingestion::import_paths(&import_config, &files, false)));
        let _ = done_tx.send((result, Instant::now()));
    });

    let mut samples: Vec<Sample> = Vec::new();
    let mut import: Option<(bs_ingestion::ImportSummary, Instant)> = None;
    let mut last_change = Instant::now();
    let mut complete = false;
    loop {
        let s = clients.sample(started.elapsed()).await;
        if samples.last().is_none_or(|l| l.counts != s.counts) {
            last_change = Instant::now();
        }
        bar.set_message(format!(
            "pipeline: ingested {} · enriched {} · in battles {} · indexed {} (of {expected})",
            s.counts[0], s.counts[1], s.counts[2], s.counts[3]
        ));
        samples.push(s);
        memory.poll();
        if import.is_none()
            && let Ok((result, at)) = done_rx.try_recv()
        {
            import = Some((result.context("importing the dataset")?, at));
            memory.mark("import_done");
        }
        if let Some((summary, _)) = &import {
            let last = samples.last().map(|s| s.counts).unwrap_or_default();
            let target = summary.new + summary.duplicate;
            // Done: everything enriched and indexed, and the clusterer quiet for a while.
            if last[0] >= target
                && last[1] >= last[0]
                && last[3] >= last[1]
                && last_change.elapsed() > Duration::from_secs(2)
            {
                complete = true;
                break;
            }
            // A stalled stage must not hang the benchmark.
            if last_change.elapsed() > Duration::from_secs(60) {
                break;
            }
        }
        tokio::time::sleep(POLL).await;
    }
    let (summary, import_done) = import.context("import result")?;
    let (stage_list, end_to_end) = stages::compute(&samples);
    let import_json = json!({
        "read": summary.read,
        "new": summary.new,
        "duplicate": summary.duplicate,
        "rejected": summary.rejected,
        "seconds": (import_done - started).as_secs_f64(),
        "killmails_per_second": summary.read as f64 / (import_done - started).as_secs_f64().max(1e-9),
    });
    let peak_rss = proc_status_bytes("VmHWM");
    memory.mark("pipeline_done");
    let battles = clients.battle_stats().await;

    let typesense = match typesense(&ctx, bar).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "typesense side of the benchmark skipped");
            None
        }
    };
    clients.typesense = typesense.as_ref().map(|(c, _, _)| c.clone());
    bar.set_message("query phase");
    let mut query = stages::query_phase(&clients).await;
    if let Some((_, index, fill)) = typesense {
        query["typesense_fill"] = fill;
        // The collections were this run's own: leave the server as it was.
        let _ = index.drop_collections().await;
    }
    let steady_rss = proc_status_bytes("VmRSS");
    memory.mark("query_done");

    ctx.shutdown.cancel();
    let tasks: Vec<_> = handles.into_iter().flat_map(|h| h.tasks).collect();
    let _ = tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(tasks)).await;
    let bytes_written = dir_size(&ctx.config.data_dir, |p| {
        // The materialised sample is input, not output.
        !p.components().any(|c| c.as_os_str() == "sample")
    });
    Ok(PipelineRun {
        import: import_json,
        stages: stage_list,
        end_to_end,
        complete,
        peak_rss,
        steady_rss,
        memory: memory.json(),
        bytes_written,
        battles,
        query,
    })
}

/// With `BATTLESCOPE_TEST_TYPESENSE` (+ `_KEY`) set: fills collections of this run's own
/// prefix on that server from the bus (as `search reindex` does) and returns a search router
/// over them, the index (to drop it afterwards) and the fill figures.
async fn typesense(
    ctx: &ServiceContext,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Option<(ServiceClient, bs_search_index::TypesenseIndex, Value)>> {
    let Ok(url) = std::env::var("BATTLESCOPE_TEST_TYPESENSE") else {
        return Ok(None);
    };
    if url.is_empty() {
        return Ok(None);
    }
    bar.set_message("typesense: indexing the same events");
    let key = std::env::var("BATTLESCOPE_TEST_TYPESENSE_KEY").unwrap_or_default();
    let stamp = chrono::Utc::now().timestamp_millis();
    let mut cfg = bs_search_index::TypesenseConfig::new(url, key);
    cfg.collection_prefix = format!("bsbench{stamp}_");
    let index = bs_search_index::TypesenseIndex::new(cfg).context("typesense client")?;
    let started = Instant::now();
    let summary = bs_search::reindex_from(
        Arc::clone(&ctx.bus),
        Arc::new(index.clone()),
        &format!("bench-typesense-{stamp}"),
        Duration::from_secs(2),
    )
    .await
    .context("filling typesense")?;
    let fill = json!({
        "records": summary.records,
        "upserted": summary.upserted,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let search = Arc::new(bs_search::Search::new(
        Arc::new(index.clone()),
        Arc::clone(&ctx.clock),
    ));
    let client = ServiceClient::in_process(ServiceName::Search, bs_search::api::router(search));
    Ok(Some((client, index, fill)))
}

// ---------------------------------------------------------------- output

fn table(r: &Value) -> String {
    use std::fmt::Write as _;
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mb = |v: &Value| f(v) / (1024.0 * 1024.0);
    let mut out = String::new();
    let d = &r["dataset"];
    let _ = writeln!(
        out,
        "BattleScope bench · {} build · {} store · {} search · {} killmails in {} files ({:.1} MB)",
        r["build"].as_str().unwrap_or("?"),
        r["backend"].as_str().unwrap_or("?"),
        r["search_backend"].as_str().unwrap_or("?"),
        d["killmails"],
        d["files"].as_array().map_or(0, Vec::len),
        mb(&d["bytes"]),
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<22} {:>10} {:>9} {:>12} {:>10} {:>10} {:>8} {:>8}",
        "stage", "killmails", "seconds", "killmails/s", "p50 ms", "p99 ms", "÷parse", "÷write"
    );
    let fl = &r["floor"];
    let ms = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.0}"))
    };
    let line = |out: &mut String, name: &str, v: &Value, ratios: bool| {
        let _ = writeln!(
            out,
            "{:<22} {:>10} {:>9.2} {:>12.0} {:>10} {:>10} {:>8} {:>8}",
            name,
            v["killmails"].to_string(),
            f(&v["seconds"]),
            f(&v["killmails_per_second"]),
            ms(&v["latency_ms"]["p50"]),
            ms(&v["latency_ms"]["p99"]),
            if ratios {
                format!("{:.3}", f(&v["ratio_to_parse_floor"]))
            } else {
                "-".into()
            },
            if ratios {
                format!("{:.3}", f(&v["ratio_to_write_floor"]))
            } else {
                "-".into()
            },
        );
    };
    line(&mut out, "floor: parse", &fl["parse"], false);
    line(
        &mut out,
        "floor: parse + write",
        &fl["parse_and_write"],
        false,
    );
    let p = &r["pipeline"];
    for name in ["ingested", "enriched", "in_battle", "indexed"] {
        line(&mut out, name, &p["stages"][name], true);
    }
    line(&mut out, "end to end", &p["end_to_end"], true);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "peak RSS {:.0} MB · RSS after the run {:.0} MB (budget 300 MB) · written {:.1} MB ({:.1}× the floor's {:.1} MB) · complete: {}",
        mb(&p["peak_rss_bytes"]),
        mb(&p["steady_rss_bytes"]),
        mb(&p["bytes_written"]),
        f(&p["bytes_written_ratio_to_floor"]),
        mb(&fl["parse_and_write"]["bytes_written"]),
        p["complete"],
    );
    let m = &p["memory"];
    let phases: Vec<String> = m["phases"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            format!(
                "{k} {:.0}/{:.0}",
                mb(&v["anon_bytes"]),
                mb(&v["file_bytes"])
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "memory (heap/file-backed MB): peak heap {:.0} · peak file-backed {:.0} · {}",
        mb(&m["peak_anon_bytes"]),
        mb(&m["peak_file_bytes"]),
        phases.join(" · "),
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<34} {:>8} {:>9} {:>10} {:>10} {:>10}",
        "query", "clients", "requests", "req/s", "p50 ms", "p99 ms"
    );
    if let Some(backends) = r["query"].as_object() {
        for (backend, scenarios) in backends {
            let Some(scenarios) = scenarios.as_object() else {
                continue;
            };
            for (name, runs) in scenarios {
                for run in runs.as_array().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "{:<34} {:>8} {:>9} {:>10.0} {:>10.2} {:>10.2}",
                        format!("{backend}: {name}"),
                        run["clients"].to_string(),
                        run["requests"].to_string(),
                        f(&run["requests_per_second"]),
                        f(&run["latency_ms"]["p50"]),
                        f(&run["latency_ms"]["p99"]),
                    );
                }
            }
        }
    }
    out
}
