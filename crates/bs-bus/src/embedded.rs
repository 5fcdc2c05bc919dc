//! The embedded durable log: the all-in-one bus, one SQLite file `<dir>/bus.db`.
//!
//! # Storage
//!
//! Every record is a row of `bus_records`; its offset is the row's
//! `AUTOINCREMENT` key (`seq`). SQLite has a single writer, so a higher `seq`
//! is always committed after a lower one and a reader can never see a gap that
//! is filled later: offsets increase monotonically per topic and per partition,
//! although they are not contiguous (topics share one sequence). A topic has a
//! fixed number of partitions chosen when it is first created (default 4); the
//! partition of a record is a stable FNV-1a hash of its key, so equal keys keep
//! their order.
//!
//! # Durability
//!
//! WAL journal, `synchronous=FULL` by default: `publish` and `commit` return
//! after an fsynced transaction, so an acknowledged record or offset survives a
//! `kill -9` and a power cut. [`Durability::Normal`] keeps the `kill -9` guarantee
//! but may lose the last transactions on power loss. A batch passed to
//! `publish` is one transaction: all of it is appended or none.
//!
//! # Delivery
//!
//! At least once. A group's position is a durable "next offset" per partition
//! (`bus_group_offsets`), advanced only by `commit`. A consumer reads from an
//! in-memory cursor that starts at the committed position, so whatever it polled
//! but did not commit is delivered again after it is dropped, after the process
//! dies, or when its partition moves to another member.
//!
//! Members of one group **in the same process** split the partitions of each
//! topic between them (partition `p` goes to the `p mod n`-th member, by join
//! order), like a Kafka group. Opening the same directory twice in a process
//! returns the same bus, so this holds even when every service calls
//! [`crate::connect`] itself. Groups are not coordinated across
//! processes: two processes consuming the same group each read every partition,
//! which is correct (at least once) but duplicates work — run one consumer
//! process per group, or use Kafka for split deployments.
//!
//! # Latency
//!
//! `publish` wakes in-process consumers at once through a `tokio::sync::watch`
//! channel. A background task per bus also checks `MAX(seq)` every
//! `poll_interval` (25 ms) and wakes consumers when another process appended.
//!
//! # Retention
//!
//! [`EmbeddedBus::prune_before`] deletes records that every group known for the
//! partition has committed past and that are older than a cutoff; a group is known
//! from its first `subscribe`, so a group that never commits holds retention back
//! (drop it with [`EmbeddedBus::forget_group`]). Partitions no group ever
//! subscribed to are not pruned. With `retention` set, a background task prunes
//! every `prune_interval`. Freed pages are reused by later appends, so the file
//! stops growing rather than shrinking.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{BusError, BusResult, Consumer, Delivery, EventBus, Record, telemetry};

/// Default age after which committed records may be pruned.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

const KIND: &str = "embedded";
const SCHEMA_VERSION: i64 = 1;
/// Rows per multi-row `INSERT`: 5 binds each keeps us far below SQLite's
/// variable limit while cutting per-statement round trips to the driver thread.
const INSERT_CHUNK: usize = 100;
/// Rows per `DELETE` when pruning, so the write lock is never held for long.
const PRUNE_CHUNK: i64 = 2_000;
/// Upper bound on one sleep of an idle consumer even without notification; a
/// safety net only, the watcher task is what notices other processes.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS bus_topics (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    partitions  INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bus_records (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic_id    INTEGER NOT NULL,
    part        INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    rkey        TEXT    NOT NULL,
    payload     BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS bus_records_by_partition ON bus_records (topic_id, part, seq);
CREATE TABLE IF NOT EXISTS bus_group_offsets (
    group_name  TEXT    NOT NULL,
    topic_id    INTEGER NOT NULL,
    part        INTEGER NOT NULL,
    next_seq    INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (group_name, topic_id, part)
) WITHOUT ROWID;
PRAGMA user_version = 1;
"#;

/// How hard a commit is pushed to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: every transaction is fsynced (survives power loss).
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a process crash, may lose the last
    /// transactions on power loss or an OS crash.
    Normal,
}

/// Settings of the embedded log. [`EmbeddedConfig::new`] gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// Directory holding `bus.db` (created if missing).
    pub dir: PathBuf,
    /// Partitions of topics created from now on; existing topics keep theirs.
    pub partitions: u32,
    pub durability: Durability,
    /// How often the bus checks for records appended by other processes.
    pub poll_interval: Duration,
    /// How long a statement waits for another process's write lock.
    pub busy_timeout: Duration,
    /// Age after which committed records are pruned; `None` keeps all.
    pub retention: Option<Duration>,
    pub prune_interval: Duration,
    /// Size of the read pool (writes go through one connection).
    pub read_connections: u32,
}

impl EmbeddedConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            partitions: 4,
            durability: Durability::Full,
            poll_interval: Duration::from_millis(25),
            busy_timeout: Duration::from_secs(10),
            retention: Some(DEFAULT_RETENTION),
            prune_interval: Duration::from_secs(300),
            read_connections: 4,
        }
    }

    /// The database file inside `dir`.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("bus.db")
    }
}

/// The embedded implementation of [`EventBus`]. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedBus {
    shared: Arc<Shared>,
}

/// What a bus and its consumers share.
struct Shared {
    config: EmbeddedConfig,
    /// One connection: in-process writers queue on the pool instead of
    /// contending for SQLite's write lock (other processes still rely on
    /// `busy_timeout`).
    writer: SqlitePool,
    /// WAL readers never block the writer, so reads get their own pool.
    reader: SqlitePool,
    /// Topic name -> id and partition count; topics are never renamed, so the
    /// cache cannot go stale.
    topics: Mutex<HashMap<String, Topic>>,
    /// The in-process group coordinator.
    groups: Mutex<HashMap<String, GroupState>>,
    /// Bumped on every append (and membership change) so idle consumers wake.
    changes: watch::Sender<u64>,
}

#[derive(Clone, Debug)]
struct Topic {
    id: i64,
    name: String,
    partitions: u32,
}

/// Members of one group in this process.
#[derive(Default)]
struct GroupState {
    /// Bumped on every join and leave; members recompute their assignment
    /// when it differs from the one they saw.
    generation: u64,
    next_member: u64,
    /// Member id -> subscribed topic ids. A `BTreeMap` so every member sees
    /// the same order when it computes its share.
    members: BTreeMap<u64, Vec<i64>>,
}

/// What one prune pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Records deleted, per topic name (topics with nothing deleted omitted).
    pub deleted: Vec<(String, u64)>,
}

impl PruneReport {
    pub fn total(&self) -> u64 {
        self.deleted.iter().map(|(_, n)| n).sum()
    }
}

fn db_err(e: sqlx::Error) -> BusError {
    match e {
        // `close()` was called: report it as such rather than as a backend failure.
        sqlx::Error::PoolClosed => BusError::Closed,
        e => BusError::Backend(format!("embedded bus sqlite: {e}")),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// FNV-1a: stable across Rust versions and processes, unlike `DefaultHasher`,
/// because a key's partition must not change between runs.
fn partition_of(key: &str, partitions: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    u32::try_from(h % u64::from(partitions.max(1))).unwrap_or(0)
}

impl EmbeddedBus {
    /// Opens (creating if needed) the log in `config.dir` and starts the
    /// watcher task and, with `retention` set, the pruning task. Must be called
    /// inside a tokio runtime.
    ///
    /// Opening a directory that is already open in this process returns the
    /// open bus (the first configuration wins): services of the all-in-one
    /// binary that each call `connect` still share one group coordinator and
    /// wake each other without polling.
    pub async fn open(config: EmbeddedConfig) -> BusResult<Self> {
        // Held across the open so two concurrent opens cannot both miss.
        static OPEN: tokio::sync::Mutex<Vec<(PathBuf, Weak<Shared>)>> =
            tokio::sync::Mutex::const_new(Vec::new());
        if config.partitions == 0 {
            return Err(BusError::Config(
                "embedded bus partitions must be at least 1".into(),
            ));
        }
        tokio::fs::create_dir_all(&config.dir).await.map_err(|e| {
            BusError::Config(format!(
                "cannot create bus dir {}: {e}",
                config.dir.display()
            ))
        })?;
        let canonical = tokio::fs::canonicalize(&config.dir).await.map_err(|e| {
            BusError::Config(format!(
                "cannot resolve bus dir {}: {e}",
                config.dir.display()
            ))
        })?;
        let mut open = OPEN.lock().await;
        open.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(shared) = open
            .iter()
            .find(|(path, _)| *path == canonical)
            .and_then(|(_, weak)| weak.upgrade())
        {
            if shared.config != config {
                tracing::warn!(
                    dir = %canonical.display(),
                    "embedded bus already open in this process; keeping its configuration"
                );
            }
            return Ok(Self { shared });
        }
        let bus = Self::open_new(config).await?;
        open.push((canonical, Arc::downgrade(&bus.shared)));
        Ok(bus)
    }

    async fn open_new(config: EmbeddedConfig) -> BusResult<Self> {
        if config.partitions == 0 {
            return Err(BusError::Config(
                "embedded bus partitions must be at least 1".into(),
            ));
        }
        tokio::fs::create_dir_all(&config.dir).await.map_err(|e| {
            BusError::Config(format!(
                "cannot create bus dir {}: {e}",
                config.dir.display()
            ))
        })?;
        let options = SqliteConnectOptions::new()
            .filename(config.db_path())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match config.durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(config.busy_timeout);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(db_err)?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&writer)
            .await
            .map_err(db_err)?;
        if version > SCHEMA_VERSION {
            return Err(BusError::Config(format!(
                "{} has bus schema version {version}, this build knows {SCHEMA_VERSION}",
                config.db_path().display()
            )));
        }
        sqlx::raw_sql(SCHEMA)
            .execute(&writer)
            .await
            .map_err(db_err)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(config.read_connections.max(1))
            .connect_with(options)
            .await
            .map_err(db_err)?;
        let (changes, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            config,
            writer,
            reader,
            topics: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            changes,
        });
        tokio::spawn(watch_appends(Arc::downgrade(&shared)));
        if let Some(retention) = shared.config.retention {
            tokio::spawn(prune_periodically(Arc::downgrade(&shared), retention));
        }
        Ok(Self { shared })
    }

    pub fn config(&self) -> &EmbeddedConfig {
        &self.shared.config
    }

    /// Prunes what every known group has committed and is older than
    /// `retention` (measured from now).
    pub async fn prune(&self, retention: Duration) -> BusResult<PruneReport> {
        let age = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        self.prune_before(now_ms().saturating_sub(age)).await
    }

    /// Deletes records created before `cutoff_ms` (Unix milliseconds) that every
    /// group known for their partition has committed past.
    pub async fn prune_before(&self, cutoff_ms: i64) -> BusResult<PruneReport> {
        let s = &self.shared;
        let topics: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, name FROM bus_topics ORDER BY id")
                .fetch_all(&s.reader)
                .await
                .map_err(db_err)?;
        let mut report = PruneReport::default();
        for (topic_id, name) in topics {
            // Only partitions with at least one known group have a floor; the
            // others are left alone.
            let floors: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT part, MIN(next_seq) FROM bus_group_offsets WHERE topic_id = ? GROUP BY part",
            )
            .bind(topic_id)
            .fetch_all(&s.reader)
            .await
            .map_err(db_err)?;
            let mut deleted = 0u64;
            for (part, floor) in floors {
                loop {
                    let done = sqlx::query(
                        "DELETE FROM bus_records WHERE seq IN (SELECT seq FROM bus_records \
                         WHERE topic_id = ? AND part = ? AND seq < ? AND created_ms < ? ORDER BY seq LIMIT ?)",
                    )
                    .bind(topic_id)
                    .bind(part)
                    .bind(floor)
                    .bind(cutoff_ms)
                    .bind(PRUNE_CHUNK)
                    .execute(&s.writer)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                    deleted += done;
                    if done < PRUNE_CHUNK.unsigned_abs() {
                        break;
                    }
                }
            }
            if deleted > 0 {
                telemetry::pruned(&name, deleted);
                report.deleted.push((name, deleted));
            }
        }
        Ok(report)
    }

    /// Removes a group's committed offsets so it no longer holds retention back.
    /// A later `subscribe` of that group starts from the earliest record again.
    pub async fn forget_group(&self, group: &str) -> BusResult<()> {
        sqlx::query("DELETE FROM bus_group_offsets WHERE group_name = ?")
            .bind(group)
            .execute(&self.shared.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Closes the connection pools (waits for running statements). Optional:
    /// dropping the bus or killing the process loses nothing acknowledged.
    pub async fn close(&self) {
        self.shared.writer.close().await;
        self.shared.reader.close().await;
    }

    async fn topic(&self, name: &str) -> BusResult<Topic> {
        if let Some(t) = self.shared.topics.lock().get(name) {
            return Ok(t.clone());
        }
        if name.is_empty() {
            return Err(BusError::Config("topic name must not be empty".into()));
        }
        let s = &self.shared;
        sqlx::query(
            "INSERT OR IGNORE INTO bus_topics (name, partitions, created_ms) VALUES (?, ?, ?)",
        )
        .bind(name)
        .bind(i64::from(s.config.partitions))
        .bind(now_ms())
        .execute(&s.writer)
        .await
        .map_err(db_err)?;
        let (id, partitions): (i64, i64) =
            sqlx::query_as("SELECT id, partitions FROM bus_topics WHERE name = ?")
                .bind(name)
                .fetch_one(&s.writer)
                .await
                .map_err(db_err)?;
        let topic = Topic {
            id,
            name: name.to_owned(),
            partitions: u32::try_from(partitions).unwrap_or(1).max(1),
        };
        s.topics.lock().insert(name.to_owned(), topic.clone());
        Ok(topic)
    }
}

/// Wakes consumers when another process appends: one cheap `MAX(seq)` (a
/// rowid lookup) per interval per bus, however many consumers there are.
async fn watch_appends(shared: Weak<Shared>) {
    let mut last: Option<i64> = None;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let interval = s.config.poll_interval;
        match sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(seq) FROM bus_records")
            .fetch_one(&s.reader)
            .await
        {
            Ok(max) => {
                if last.is_some() && last != Some(max.unwrap_or(0)) {
                    s.changes.send_modify(|v| *v = v.wrapping_add(1));
                }
                last = Some(max.unwrap_or(0));
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => tracing::warn!(error = %e, "embedded bus append watcher query failed"),
        }
        // Do not keep the bus alive while sleeping.
        drop(s);
        tokio::time::sleep(interval).await;
    }
}

async fn prune_periodically(shared: Weak<Shared>, retention: Duration) {
    loop {
        let Some(interval) = shared.upgrade().map(|s| s.config.prune_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(s) = shared.upgrade() else { return };
        let bus = EmbeddedBus { shared: s };
        match bus.prune(retention).await {
            Ok(report) if report.total() > 0 => {
                tracing::info!(
                    deleted = report.total(),
                    "embedded bus pruned committed records"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "embedded bus pruning failed"),
        }
    }
}

#[async_trait]
impl EventBus for EmbeddedBus {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn ensure_topics(&self, topics: &[&str]) -> BusResult<()> {
        for t in topics {
            self.topic(t).await?;
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, records: &[Record]) -> BusResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let t = self.topic(topic).await?;
        let s = &self.shared;
        let now = now_ms();
        // IMMEDIATE takes the write lock up front, so a concurrent writer in
        // another process makes us wait (busy_timeout) instead of failing.
        let mut tx = s
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        for chunk in records.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO bus_records (topic_id, part, created_ms, rkey, payload) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(t.id)
                    .push_bind(i64::from(partition_of(&r.key, t.partitions)))
                    .push_bind(now)
                    .push_bind(r.key.clone())
                    .push_bind(r.payload.to_vec());
            });
            qb.build().execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        s.changes.send_modify(|v| *v = v.wrapping_add(1));
        telemetry::published(KIND, topic, records.len());
        Ok(())
    }

    async fn subscribe(&self, group: &str, topics: &[&str]) -> BusResult<Box<dyn Consumer>> {
        if group.is_empty() {
            return Err(BusError::Config(
                "consumer group name must not be empty".into(),
            ));
        }
        if topics.is_empty() {
            return Err(BusError::Config(
                "subscribe needs at least one topic".into(),
            ));
        }
        let mut resolved = Vec::with_capacity(topics.len());
        for name in topics {
            let t = self.topic(name).await?;
            if !resolved.iter().any(|r: &Topic| r.id == t.id) {
                resolved.push(t);
            }
        }
        // Register the group durably at the earliest offset so that retention
        // waits for it even before its first commit.
        let s = &self.shared;
        let now = now_ms();
        let mut tx = s
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        for t in &resolved {
            for p in 0..t.partitions {
                sqlx::query(
                    "INSERT OR IGNORE INTO bus_group_offsets (group_name, topic_id, part, next_seq, updated_ms) \
                     VALUES (?, ?, ?, 0, ?)",
                )
                .bind(group)
                .bind(t.id)
                .bind(i64::from(p))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
        }
        tx.commit().await.map_err(db_err)?;

        let member = {
            let mut groups = s.groups.lock();
            let state = groups.entry(group.to_owned()).or_default();
            let id = state.next_member;
            state.next_member += 1;
            state.generation += 1;
            state
                .members
                .insert(id, resolved.iter().map(|t| t.id).collect());
            id
        };
        s.changes.send_modify(|v| *v = v.wrapping_add(1));
        Ok(Box::new(EmbeddedConsumer {
            shared: Arc::clone(&self.shared),
            group: group.to_owned(),
            member,
            topics: resolved,
            generation: None,
            owned: Vec::new(),
            rotate: 0,
            changes: s.changes.subscribe(),
        }))
    }

    async fn ping(&self) -> BusResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.shared.reader)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

/// A partition this member currently reads.
#[derive(Clone, Debug)]
struct Owned {
    /// Index into `EmbeddedConsumer::topics`.
    topic: usize,
    part: u32,
    /// Next offset to hand out; starts at the committed one.
    next_seq: i64,
}

struct EmbeddedConsumer {
    shared: Arc<Shared>,
    group: String,
    member: u64,
    topics: Vec<Topic>,
    /// The group generation `owned` was computed for (`None` before the first poll).
    generation: Option<u64>,
    owned: Vec<Owned>,
    /// Which owned partition is read first on the next poll, so one busy
    /// partition cannot starve the others.
    rotate: usize,
    changes: watch::Receiver<u64>,
}

impl EmbeddedConsumer {
    /// Recomputes this member's partitions after a join or leave. Partitions it
    /// keeps keep their cursor; new ones start at the group's committed offset.
    async fn refresh_assignment(&mut self) -> BusResult<()> {
        let (generation, wanted) = {
            let groups = self.shared.groups.lock();
            let Some(state) = groups.get(&self.group) else {
                return Err(BusError::Closed);
            };
            if self.generation == Some(state.generation) {
                return Ok(());
            }
            let mut wanted = Vec::new();
            for (ti, t) in self.topics.iter().enumerate() {
                let members: Vec<u64> = state
                    .members
                    .iter()
                    .filter(|(_, topics)| topics.contains(&t.id))
                    .map(|(id, _)| *id)
                    .collect();
                let Some(me) = members.iter().position(|m| *m == self.member) else {
                    continue;
                };
                for p in 0..t.partitions {
                    if usize::try_from(p).unwrap_or(0) % members.len() == me {
                        wanted.push((ti, p));
                    }
                }
            }
            (state.generation, wanted)
        };
        let committed: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT topic_id, part, next_seq FROM bus_group_offsets WHERE group_name = ?",
        )
        .bind(&self.group)
        .fetch_all(&self.shared.reader)
        .await
        .map_err(db_err)?;
        let owned = wanted
            .into_iter()
            .map(|(ti, p)| {
                if let Some(kept) = self.owned.iter().find(|o| o.topic == ti && o.part == p) {
                    return kept.clone();
                }
                let tid = self.topics[ti].id;
                let next_seq = committed
                    .iter()
                    .find(|(t, part, _)| *t == tid && *part == i64::from(p))
                    .map_or(0, |(_, _, n)| *n);
                Owned {
                    topic: ti,
                    part: p,
                    next_seq,
                }
            })
            .collect();
        self.owned = owned;
        self.generation = Some(generation);
        Ok(())
    }

    /// Reads up to `max` records from the owned partitions. Cursors move only
    /// after the last await, so a cancelled poll loses nothing.
    async fn fetch(&mut self, max: usize) -> BusResult<Vec<Delivery>> {
        let n = self.owned.len();
        if n == 0 || max == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.shared.reader.acquire().await.map_err(db_err)?;
        let mut out = Vec::new();
        let mut advanced = Vec::new();
        for i in 0..n {
            let remaining = max - out.len();
            if remaining == 0 {
                break;
            }
            let idx = (self.rotate + i) % n;
            let o = &self.owned[idx];
            let t = &self.topics[o.topic];
            let rows = sqlx::query(
                "SELECT seq, rkey, payload FROM bus_records WHERE topic_id = ? AND part = ? AND seq >= ? \
                 ORDER BY seq LIMIT ?",
            )
            .bind(t.id)
            .bind(i64::from(o.part))
            .bind(o.next_seq)
            .bind(i64::try_from(remaining).unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
            let mut last = None;
            for row in rows {
                let seq: i64 = row.try_get(0).map_err(db_err)?;
                let key: String = row.try_get(1).map_err(db_err)?;
                let payload: Vec<u8> = row.try_get(2).map_err(db_err)?;
                last = Some(seq);
                out.push(Delivery {
                    topic: t.name.clone(),
                    partition: i32::try_from(o.part).unwrap_or(i32::MAX),
                    offset: seq,
                    key,
                    payload: Bytes::from(payload),
                });
            }
            if let Some(seq) = last {
                advanced.push((idx, seq + 1));
            }
        }
        for (idx, next) in advanced {
            self.owned[idx].next_seq = next;
        }
        self.rotate = (self.rotate + 1) % n;
        for (topic, count) in telemetry::per_topic(out.iter().map(|d| d.topic.as_str())) {
            telemetry::delivered(KIND, topic, &self.group, count);
        }
        Ok(out)
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> BusResult<Vec<Delivery>> {
        let deadline = Instant::now() + timeout;
        loop {
            // Mark the current change counter as seen *before* reading, so an
            // append that lands after the read wakes the wait below.
            self.changes.borrow_and_update();
            self.refresh_assignment().await?;
            let got = self.fetch(max).await?;
            if !got.is_empty() || max == 0 {
                return Ok(got);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(got);
            }
            let wait = (deadline - now).min(IDLE_RECHECK);
            tokio::select! {
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return Err(BusError::Closed);
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn commit(&mut self, deliveries: &[Delivery]) -> BusResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        // Highest offset per (topic, partition): committing it covers the rest.
        let mut next: Vec<(i64, i32, i64)> = Vec::new();
        for d in deliveries {
            let Some(t) = self.topics.iter().find(|t| t.name == d.topic) else {
                return Err(BusError::Backend(format!(
                    "commit of topic {} which this consumer is not subscribed to",
                    d.topic
                )));
            };
            match next
                .iter_mut()
                .find(|(tid, p, _)| *tid == t.id && *p == d.partition)
            {
                Some(entry) => entry.2 = entry.2.max(d.offset + 1),
                None => next.push((t.id, d.partition, d.offset + 1)),
            }
        }
        let now = now_ms();
        let mut tx = self
            .shared
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        for (topic_id, part, next_seq) in next {
            // MAX: a late commit from a member that lost the partition must not
            // move the group backwards.
            sqlx::query(
                "INSERT INTO bus_group_offsets (group_name, topic_id, part, next_seq, updated_ms) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (group_name, topic_id, part) DO UPDATE SET \
                 next_seq = MAX(next_seq, excluded.next_seq), updated_ms = excluded.updated_ms",
            )
            .bind(&self.group)
            .bind(topic_id)
            .bind(part)
            .bind(next_seq)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        for (topic, count) in telemetry::per_topic(deliveries.iter().map(|d| d.topic.as_str())) {
            telemetry::committed(KIND, topic, &self.group, count);
        }
        Ok(())
    }
}

impl Drop for EmbeddedConsumer {
    /// Leaves the group so the remaining members take over its partitions from
    /// the committed offsets.
    fn drop(&mut self) {
        let mut groups = self.shared.groups.lock();
        if let Some(state) = groups.get_mut(&self.group) {
            state.members.remove(&self.member);
            state.generation += 1;
            if state.members.is_empty() {
                groups.remove(&self.group);
            }
        }
        drop(groups);
        self.shared.changes.send_modify(|v| *v = v.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::partition_of;

    #[test]
    fn partition_of_is_stable_and_in_range() {
        // Pinned values: changing the hash would reorder keys across an upgrade.
        assert_eq!(partition_of("", 4), (0xcbf2_9ce4_8422_2325_u64 % 4) as u32);
        for key in ["a", "killmail:1", "battle:42", "ünïcode"] {
            let p = partition_of(key, 4);
            assert!(p < 4);
            assert_eq!(p, partition_of(key, 4));
        }
        assert_eq!(partition_of("anything", 1), 0);
        let spread: std::collections::HashSet<u32> = (0..100)
            .map(|i| partition_of(&format!("k{i}"), 4))
            .collect();
        assert_eq!(spread.len(), 4, "100 keys should hit every partition");
    }
}
