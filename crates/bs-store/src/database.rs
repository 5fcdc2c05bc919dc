//! Opening a service's database on either backend.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};
use tokio::sync::Notify;

use crate::{StoreError, StoreResult};

/// SQLite page cache per connection, in KiB (SQLite's own default is 2000).
///
/// Every embedded pool has up to four connections and a process runs up to seven
/// databases, so the per-connection cache is multiplied by ~30 in the all-in-one process:
/// at SQLite's default that is up to 60 MB of page cache for files the OS caches anyway.
/// Process-wide because it is a property of the deployment, not of a service: the binary sets
/// it once from `store.sqlite_cache_kib` before opening any database.
static SQLITE_CACHE_KIB: AtomicU32 = AtomicU32::new(DEFAULT_SQLITE_CACHE_KIB);

/// The embedded default of [`set_sqlite_cache_kib`] (`store.sqlite_cache_kib`).
pub const DEFAULT_SQLITE_CACHE_KIB: u32 = 512;

/// Sets the SQLite page cache of connections opened from now on (KiB per connection; 0
/// keeps SQLite's default). Call before opening databases.
pub fn set_sqlite_cache_kib(kib: u32) {
    SQLITE_CACHE_KIB.store(kib, Ordering::Relaxed);
}

/// Which engine a [`Database`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The engine behind a connection (a transaction or an expander's connection, where
    /// no [`Database`] is at hand).
    pub fn of(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name() == "PostgreSQL" {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }
}

/// Where a service's database lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreTarget {
    /// An embedded file, created if missing.
    Sqlite(PathBuf),
    /// A database on a PostgreSQL server, created if missing. `server_url` has no database path.
    Postgres {
        server_url: String,
        database: String,
    },
}

/// A connection pool to one service's database.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// Database name or file, for logs and metrics.
    label: Arc<str>,
    /// Wakes the outbox relay as soon as a transaction enqueued events.
    pub(crate) outbox_signal: Arc<Notify>,
    /// How the relay expands events enqueued by reference, by topic.
    pub(crate) outbox_expanders: Arc<crate::outbox::Expanders>,
    /// SQLite's background checkpointer, stopped with the last clone or by `close` (it
    /// holds a connection of its own, which must not outlive the database's users).
    checkpointer: Option<Arc<AbortOnDrop>>,
}

/// A task aborted when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Database {
    /// Opens (and creates) the database. Does not migrate.
    pub async fn open(target: &StoreTarget, max_connections: u32) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        match target {
            StoreTarget::Sqlite(path) => Self::open_sqlite(path, max_connections).await,
            StoreTarget::Postgres {
                server_url,
                database,
            } => Self::open_postgres(server_url, database, max_connections).await,
        }
    }

    async fn open_sqlite(path: &std::path::Path, max_connections: u32) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
        }
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let options: AnyConnectOptions = url
            .parse::<AnyConnectOptions>()?
            .disable_statement_logging();
        // WAL survives in the file; the others are per connection. synchronous=NORMAL
        // in WAL mode keeps every commit across a process crash (kill -9); only an OS
        // crash or power loss can drop the last few commits, and then a service's rows
        // and its cursor/outbox roll back together (they share a transaction), so it
        // re-fetches and re-publishes — consumers are idempotent. The event log itself
        // (bs-bus) stays at FULL, because it is what others rely on having.
        let cache_kib = SQLITE_CACHE_KIB.load(Ordering::Relaxed);
        let pool = AnyPoolOptions::new()
            .max_connections(if max_connections == 0 {
                4
            } else {
                max_connections
            })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if cache_kib > 0 {
                        // Negative: a size in KiB rather than in pages.
                        let pragma = format!("PRAGMA cache_size = -{cache_kib}");
                        conn.execute(crate::dynamic_sql(pragma)).await?;
                    }
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    // Temporary files in memory. Above all the statement journal: a statement
                    // that changes many rows inside a transaction (every multi-row upsert)
                    // keeps the pages it dirtied there, so it can be undone alone; past 64 KiB
                    // SQLite spills it to a temp file, a 4-byte and a page-sized write per page.
                    // That was 780 k of the 1.25 M writes of the battle service's week.
                    conn.execute("PRAGMA temp_store = MEMORY").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    // Checkpoints normally run in the background (see `checkpointer`); a
                    // committing writer checkpoints itself only when that falls behind.
                    let pragma = format!("PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}");
                    conn.execute(crate::dynamic_sql(pragma)).await?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        let checkpointer = tokio::spawn(checkpointer(pool.clone(), options));
        Ok(Self {
            pool,
            backend: Backend::Sqlite,
            label: path.display().to_string().into(),
            outbox_signal: Arc::new(Notify::new()),
            outbox_expanders: Arc::default(),
            checkpointer: Some(Arc::new(AbortOnDrop(checkpointer))),
        })
    }

    async fn open_postgres(
        server_url: &str,
        database: &str,
        max_connections: u32,
    ) -> StoreResult<Self> {
        if !database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || database.is_empty()
        {
            return Err(StoreError::Config(format!(
                "invalid database name `{database}`"
            )));
        }
        let server = url::Url::parse(server_url).map_err(|e| {
            StoreError::Config(format!("store.url `{}`: {e}", redact_url(server_url)))
        })?;
        create_postgres_database_if_missing(&server, database).await?;
        let mut db_url = server.clone();
        db_url.set_path(database);
        let options: AnyConnectOptions = db_url
            .as_str()
            .parse::<AnyConnectOptions>()?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(if max_connections == 0 {
                8
            } else {
                max_connections
            })
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            backend: Backend::Postgres,
            label: database.into(),
            outbox_signal: Arc::new(Notify::new()),
            outbox_expanders: Arc::default(),
            checkpointer: None,
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Begins a write transaction. Use this, not `pool().begin()`: on SQLite it
    /// is `BEGIN IMMEDIATE`, which takes the write lock up front (waiting up to
    /// the busy timeout). A deferred transaction that reads and then writes
    /// cannot wait for the lock — SQLite fails the upgrade at once with
    /// `SQLITE_BUSY` — so every read-then-write transaction must start here.
    pub async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(tx)
    }

    /// A cheap round trip, for `/ready`.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        if let Some(c) = &self.checkpointer {
            c.0.abort();
        }
        self.pool.close().await;
    }
}

/// The WAL size (in 4 KiB pages, so 64 MiB) at which a committing writer checkpoints inside
/// its own commit, copying what the background [`checkpointer`] has not yet copied and
/// fsyncing both files — a stall of several milliseconds on this kind of disk.
///
/// Why this large: the WAL only starts over once a checkpoint has copied all of it while no
/// transaction was writing, which a writer that commits back to back never allows; the WAL
/// then grows until this bound and the commit that crosses it pays. A live battle update
/// adds ≈ 20 pages (every B-tree page it touches, again for each commit), so SQLite's usual
/// 1000 pages — or the 4000 used before — put a checkpoint into every 50th or 200th update
/// of a busy stretch; at 16384 a writer has to stay saturated for ≈ 800 updates (a burst far
/// beyond any real feed) before one lands inline, and any idle moment lets the background
/// checkpoint finish and the WAL start over. The cost is disk (at most 64 MiB of WAL per
/// database) and readers looking pages up in up to four WAL hash tables instead of one.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// The background checkpointer's pace: every [`CHECKPOINT_BUSY`] while the WAL grows,
/// doubling up to [`CHECKPOINT_IDLE`] while it does not.
///
/// Why so often: a checkpoint's cost to the writer grows with what it copies. Measured on
/// the live battle bench (1,000 single-killmail commits, disk, 2 cores; docs/BENCHMARKS.md,
/// session 7) with a fixed pace: every 200 ms gave p99 6.6–6.9 ms (each checkpoint copies
/// and fsyncs 200 ms of writes, and the writer's appends queue behind that IO), every 50 ms
/// 3.1–3.5 ms, every 20 ms 2.7 ms; no background checkpoint 2.8 ms, but with 28–33 ms
/// outliers. This pace, with its idle back-off, measured 3.1–4.6 ms over four runs. Backing
/// off keeps an idle installation from waking each database 50 times a second.
const CHECKPOINT_BUSY: Duration = Duration::from_millis(20);
const CHECKPOINT_IDLE: Duration = Duration::from_millis(320);

/// The wait before the next background checkpoint, given the last wait and whether the WAL
/// changed since the checkpoint before.
fn next_checkpoint_wait(last: Duration, wal_changed: bool) -> Duration {
    if wal_changed {
        CHECKPOINT_BUSY
    } else {
        (last * 2).min(CHECKPOINT_IDLE)
    }
}

/// Runs WAL checkpoints on a connection of its own until the pool closes.
///
/// Why: with SQLite's default, the transaction whose commit crosses 1000 WAL pages
/// copies them into the database file and fsyncs both files before returning, so
/// a writer stalls on disk IO every few MB. Checkpointing from here moves that IO to
/// another connection (each has its own worker thread), overlapping it with the writer's
/// next transaction, in small steps ([`next_checkpoint_wait`]). Durability is unchanged: it
/// is the same PASSIVE checkpoint SQLite would run (WAL synced before the copy, database
/// synced after), and the writer's own auto-checkpoint ([`WAL_AUTOCHECKPOINT_PAGES`]) still
/// bounds the WAL if this falls behind. A PASSIVE checkpoint never waits for readers or
/// writers.
///
/// The connection is its own, outside the pool: one borrowed from the pool found none
/// idle while a writer committed back to back (the pool opens connections on demand, so
/// a lone writer's is the only one), and then the writer did every checkpoint itself.
/// A writer that never pauses still reaches that bound now and then (the WAL
/// restarts only after a checkpoint that no commit overlapped), but between those the
/// copying happens here.
async fn checkpointer(pool: AnyPool, options: AnyConnectOptions) {
    let mut wait = CHECKPOINT_BUSY;
    // (frames in the WAL, frames copied) after the last checkpoint: unchanged means idle.
    let mut last: Option<(i64, i64)> = None;
    let mut conn = None;
    loop {
        tokio::time::sleep(wait).await;
        if pool.is_closed() {
            return;
        }
        if conn.is_none() {
            match options.connect().await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!(error = %e, "checkpointer cannot connect; retrying");
                    wait = CHECKPOINT_IDLE;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let result: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *c)
            .await;
        match result {
            Ok((_busy, log, copied)) => {
                let now = Some((log, copied));
                wait = next_checkpoint_wait(wait, now != last);
                last = now;
            }
            Err(e) => {
                tracing::debug!(error = %e, "background checkpoint failed; reconnecting");
                conn = None;
                wait = CHECKPOINT_IDLE;
            }
        }
    }
}

/// Connects to the server's maintenance database and creates `database` if it
/// does not exist. Concurrent creators are fine: "already exists" is success.
async fn create_postgres_database_if_missing(server: &url::Url, database: &str) -> StoreResult<()> {
    let mut admin = server.clone();
    admin.set_path("postgres");
    let mut conn = admin
        .as_str()
        .parse::<AnyConnectOptions>()?
        .disable_statement_logging()
        .connect()
        .await?;
    let exists: Option<(i64,)> =
        sqlx::query_as("SELECT CAST(1 AS BIGINT) FROM pg_database WHERE datname = $1")
            .bind(database)
            .fetch_optional(&mut conn)
            .await?;
    if exists.is_none() {
        // The name was checked to be [A-Za-z0-9_]+ above, so quoting it is safe.
        let create = format!("CREATE DATABASE \"{database}\"");
        if let Err(e) = conn.execute(crate::dynamic_sql(create)).await {
            let duplicate = e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "42P04" || c == "23505");
            if !duplicate {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// `postgres://user:pass@host` → `postgres://user:***@host`, for error messages.
pub(crate) fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable url>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpointer_speeds_up_while_the_wal_grows_and_backs_off_while_idle() {
        let mut wait = CHECKPOINT_BUSY;
        let mut idle = Vec::new();
        for _ in 0..6 {
            wait = next_checkpoint_wait(wait, false);
            idle.push(wait.as_millis());
        }
        assert_eq!(idle, [40, 80, 160, 320, 320, 320]);
        assert_eq!(next_checkpoint_wait(wait, true), CHECKPOINT_BUSY);
    }
}
