//! Import benchmark: the 79k-killmail EVE Ref week from the shared data, on
//! embedded SQLite and (when `BATTLESCOPE_TEST_POSTGRES` is set) PostgreSQL.
//! Reports killmails/s and peak RSS; numbers, not assertions.
//!
//! ```text
//! cargo run --release -p bs-ingestion --example bench_import [-- FILES…]
//! BATTLESCOPE_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432 cargo run --release -p bs-ingestion --example bench_import
//! ```

use std::path::PathBuf;

fn peak_rss_mib() -> f64 {
    // VmHWM is the high-water mark of resident memory of this process.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) this process used so far: on a shared machine the
/// wall-clock rate depends on the other load, CPU per killmail much less.
fn cpu_seconds() -> f64 {
    // Fields 14 and 15 of /proc/self/stat (after the parenthesised name) are utime
    // and stime in clock ticks (100 per second on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(") ")?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .map_or(0.0, |ticks| ticks / 100.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn week_files() -> Vec<PathBuf> {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if !args.is_empty() {
        return args;
    }
    let dir = std::env::var_os("BATTLESCOPE_SHARED_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("killmails"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("everef-killmails-"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

async fn import(
    store: &bs_ingestion::SqlIngestionStore,
    files: &[PathBuf],
) -> anyhow::Result<bs_ingestion::ImportSummary> {
    let pipeline = std::sync::Arc::new(bs_ingestion::pipeline::Pipeline::new(Default::default()));
    bs_ingestion::sources::files::import_into(
        store,
        pipeline,
        files.to_vec(),
        chrono::Utc::now(),
        None,
        async |p| p,
    )
    .await
}

async fn run(label: &str, target: bs_store::StoreTarget, files: &[PathBuf]) -> anyhow::Result<()> {
    let db = bs_store::Database::open(&target, 4).await?;
    db.migrate(&[bs_store::outbox::MIGRATIONS, bs_ingestion::MIGRATIONS])
        .await?;
    let store = bs_ingestion::SqlIngestionStore::new(db.clone());
    let cpu = cpu_seconds();
    let first = import(&store, files).await?;
    let first_cpu = cpu_seconds() - cpu;
    println!(
        "{label}: {} killmails, {} new in {:.2} s = {:.0} killmails/s; {first_cpu:.1} CPU s = {:.0} killmails per CPU s \
         (peak RSS so far {:.0} MiB; load average {})",
        first.read,
        first.new,
        first.seconds,
        first.killmails_per_second(),
        first.read as f64 / first_cpu.max(0.01),
        peak_rss_mib(),
        load_average()
    );
    let cpu = cpu_seconds();
    let again = import(&store, files).await?;
    let again_cpu = cpu_seconds() - cpu;
    println!(
        "{label} re-import: {} read, {} new, {} duplicate in {:.2} s = {:.0} killmails/s; {again_cpu:.1} CPU s",
        again.read,
        again.new,
        again.duplicate,
        again.seconds,
        again.killmails_per_second()
    );
    db.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let files = week_files();
    anyhow::ensure!(
        !files.is_empty(),
        "no everef-killmails-*.jsonl.gz found; pass files as arguments"
    );
    println!(
        "files: {}",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let dir = tempfile_dir()?;
    run(
        "embedded sqlite",
        bs_store::StoreTarget::Sqlite(dir.join("ingestion.db")),
        &files,
    )
    .await?;
    if let Ok(url) = std::env::var("BATTLESCOPE_TEST_POSTGRES") {
        // A fresh database of its own, so the bench never touches a real one.
        let database = format!("battlescope_ingestion_bench_{}", std::process::id());
        run(
            "postgresql",
            bs_store::StoreTarget::Postgres {
                server_url: url.clone(),
                database: database.clone(),
            },
            &files,
        )
        .await?;
        sqlx::any::install_default_drivers();
        let admin = format!("{}/postgres", url.trim_end_matches('/'));
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await?;
        sqlx::query(bs_store::dynamic_sql(format!(
            "DROP DATABASE IF EXISTS {database}"
        )))
        .execute(&mut conn)
        .await?;
    }
    println!("peak RSS {:.0} MiB", peak_rss_mib());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("bs-bench-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
