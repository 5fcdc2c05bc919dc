//! The battle service's storage: the [`BattleStore`] trait and its SQL implementation
//! ([`SqlBattleStore`]) for SQLite and PostgreSQL alike (one query text, see bs-store's rules).
//!
//! Writes come in one [`ChangeSet`] per consumer batch, applied in one transaction: killmail
//! rows (highest revision wins) with each killmail's pilot lines, names, the pilot ship history
//! queue (moved into its table in bulk, see [`history`]), then the engine's battle operations in
//! order. Every aggregate on `battles` is recomputed from `battle_killmails` and
//! `battle_participants` inside that transaction, and the revision only moves when a value
//! changed, so a redelivered batch changes nothing. Events are never written here directly by
//! the consumer: the sides refresher reads dirty battles, computes sides and enqueues
//! `battle.*` events through the outbox in the transaction that clears the dirty flag
//! ([`BattleStore::save_sides`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use bs_clustering::{ClusterKill, Entity, SideOverride, SideTarget, TimeMs};
use bs_events::{BattleSideSnapshot, BattleStatus, Envelope};
use bs_store::outbox::Payload;
use bs_store::sqlx::{self, AnyConnection, Row};
use bs_store::{Backend, Database, StoreError, StoreResult, dynamic_sql};
use serde::{Deserialize, Serialize};

use crate::domain::{BattleOp, NameRow, StoredKill, WorkingSet};

mod history;
/// Systems, regions and security types of one battle.
type Places = (BTreeSet<i64>, BTreeSet<i64>, BTreeSet<String>);

/// One consumer batch's writes.
#[derive(Clone, Debug, Default)]
pub struct ChangeSet {
    pub kills: Vec<StoredKill>,
    pub names: Vec<NameRow>,
    pub ops: Vec<BattleOp>,
    pub now_ms: i64,
}

/// A battle as stored, with its systems and last computed sides.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BattleRow {
    pub battle_id: u64,
    pub founding_ms: i64,
    pub status: BattleStatus,
    pub merged_into: Option<u64>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub duration_ms: i64,
    pub total_kills: u32,
    pub total_isk: f64,
    pub total_dropped: f64,
    pub pilots: u32,
    pub multi_party: bool,
    pub one_sided: bool,
    pub revision: u64,
    pub sides_revision: i64,
    pub published_status: Option<BattleStatus>,
    pub updated_at: i64,
    pub system_ids: Vec<i64>,
    pub region_ids: Vec<i64>,
    pub security_types: Vec<String>,
    pub sides: Vec<BattleSideSnapshot>,
}

/// What `GET /battles/{id}` finds.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    Found(Box<BattleRow>),
    /// The id was absorbed by a merge: answer with the survivor.
    Redirect(u64),
    NotFound,
}

/// Sort keys of `GET /battles`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    #[default]
    StartTime,
    Kills,
    Isk,
    Pilots,
    Duration,
}

impl SortKey {
    fn column(self) -> &'static str {
        match self {
            Self::StartTime => "start_ms",
            Self::Kills => "total_kills",
            Self::Isk => "total_isk",
            Self::Pilots => "pilots",
            Self::Duration => "duration_ms",
        }
    }
}

/// A keyset position: the sort value and the id of the last row returned.
#[derive(Clone, Debug, PartialEq)]
pub struct Cursor {
    pub value: f64,
    pub battle_id: u64,
}

impl Cursor {
    /// Opaque text form `<value>~<id>` (value in Rust's round-tripping float syntax).
    pub fn encode(&self) -> String {
        format!("{}~{}", self.value, self.battle_id)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (v, id) = s.split_once('~')?;
        Some(Self {
            value: v.parse().ok().filter(|x: &f64| x.is_finite())?,
            battle_id: id.parse().ok()?,
        })
    }
}

/// Filters, sort and page of `GET /battles`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BattleQuery {
    /// Battles that overlap [from, to] (kill time, ms).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub system_id: Option<i64>,
    pub region_id: Option<i64>,
    pub security_type: Option<String>,
    pub alliance_id: Option<i64>,
    pub corporation_id: Option<i64>,
    pub character_id: Option<i64>,
    pub min_kills: Option<i64>,
    pub min_isk: Option<f64>,
    pub min_pilots: Option<i64>,
    /// `Active` or `Ended`; merged battles are never listed.
    pub status: Option<BattleStatus>,
    pub sort: SortKey,
    pub ascending: bool,
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

/// One line of a pilot's ship history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShipHistoryRow {
    pub killmail_id: u64,
    pub ship_type_id: u32,
    pub time_ms: i64,
    pub system_id: u32,
    pub lost: bool,
    pub battle_id: Option<u64>,
}

/// What the sides refresher writes for one battle.
#[derive(Clone, Debug)]
pub struct SidesUpdate {
    pub battle_id: u64,
    /// The revision the sides were computed from; the write is skipped when it moved on.
    pub seen_revision: u64,
    /// `None`: keep the stored sides (merged battles).
    pub sides: Option<(Vec<BattleSideSnapshot>, bool, bool)>,
    pub published_status: BattleStatus,
    pub events: Vec<Envelope>,
    /// The report JSON computed with the sides (without names), stored for reads.
    pub report: Option<String>,
}

/// Row counts for `/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreCounts {
    pub battles_total: u64,
    pub active: u64,
    pub ended: u64,
    pub merged: u64,
    pub killmails: u64,
}

/// The battle service's storage role.
#[async_trait]
pub trait BattleStore: Send + Sync + 'static {
    /// Applies one batch's writes in one transaction.
    async fn apply(&self, changes: &ChangeSet) -> StoreResult<()>;
    /// The newest stored kill time.
    async fn max_kill_time(&self) -> StoreResult<Option<i64>>;
    /// Kills from `since_ms` (extended back to the start of any battle still running then)
    /// and their stored battles, to rebuild the engine.
    async fn working_set(&self, since_ms: i64) -> StoreResult<WorkingSet>;
    async fn battle(&self, battle_id: u64) -> StoreResult<Lookup>;
    /// The stored row whatever its status (merged ones included), with systems and sides.
    async fn row(&self, battle_id: u64) -> StoreResult<Option<BattleRow>>;
    /// A page of battles and the cursor of the next page.
    async fn battles(&self, query: &BattleQuery) -> StoreResult<(Vec<BattleRow>, Option<String>)>;
    /// A battle's killmails ordered by kill time, then id.
    async fn kills_of(&self, battle_id: u64) -> StoreResult<Vec<StoredKill>>;
    async fn overrides(&self, battle_id: u64) -> StoreResult<Vec<SideOverride>>;
    /// Stores (replaces) a manual override and marks the battle for a sides refresh.
    async fn put_override(
        &self,
        battle_id: u64,
        o: &SideOverride,
        actor: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Names of these ids, keyed by (kind, id).
    async fn names(&self, ids: &[i64]) -> StoreResult<BTreeMap<(String, i64), String>>;
    async fn ship_history(&self, character_id: u64, limit: u32)
    -> StoreResult<Vec<ShipHistoryRow>>;
    /// Battles whose sides or published status lag behind their rows.
    async fn dirty_battles(&self, limit: u32) -> StoreResult<Vec<u64>>;
    /// Writes sides (and the report) and enqueues events; false when the battle changed
    /// meanwhile.
    async fn save_sides(&self, update: &SidesUpdate) -> StoreResult<bool>;
    /// The stored report JSON and the battle revision it was computed from.
    async fn stored_report(&self, battle_id: u64) -> StoreResult<Option<(u64, String)>>;
    async fn counts(&self) -> StoreResult<StoreCounts>;
    /// Moves queued ship history into `pilot_ship_history` in one short transaction (at least
    /// `max_lines` lines unless the queue runs out); returns the killmails moved, 0 once the
    /// queue is empty.
    async fn move_ship_history(&self, max_lines: usize) -> StoreResult<usize>;
}

/// [`BattleStore`] over a bs-store [`Database`] (SQLite or PostgreSQL).
#[derive(Debug)]
pub struct SqlBattleStore {
    db: Database,
    /// Names this store committed, so a batch repeating known names writes none of them.
    names_written: parking_lot::Mutex<WrittenNames>,
    /// Killmails in `ship_history_queue` as far as this store knows ([`QUEUE_UNKNOWN`] until
    /// counted): only decides when a batch moves the queue.
    queued: std::sync::atomic::AtomicUsize,
}

/// [`SqlBattleStore::queued`] before the first count.
const QUEUE_UNKNOWN: usize = usize::MAX;

/// The names a store committed, bounded (cleared when full: names are cheap to write again).
#[derive(Debug, Default)]
struct WrittenNames(NameCache);

/// Names remembered before the cache is cleared (≈ 50 bytes each).
const NAMES_REMEMBERED: usize = 400_000;

impl WrittenNames {
    /// The entries for the names of one batch (a small copy, so the lock is not held across
    /// the writes).
    fn clone_for(&self, names: &[NameRow]) -> NameCache {
        names
            .iter()
            .filter_map(|n| self.0.get_key_value(&(n.kind, n.id)).map(|(k, v)| (*k, *v)))
            .collect()
    }

    fn remember(&mut self, names: Vec<((&'static str, i64), u64)>) {
        if self.0.len() + names.len() > NAMES_REMEMBERED {
            self.0.clear();
        }
        self.0.extend(names);
    }
}

impl SqlBattleStore {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            names_written: parking_lot::Mutex::default(),
            queued: std::sync::atomic::AtomicUsize::new(QUEUE_UNKNOWN),
        }
    }

    /// The killmails in the ship history queue (counted once, then kept up to date).
    async fn queued_killmails(&self) -> StoreResult<usize> {
        use std::sync::atomic::Ordering;
        let known = self.queued.load(Ordering::Relaxed);
        if known != QUEUE_UNKNOWN {
            return Ok(known);
        }
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ship_history_queue")
            .fetch_one(self.db.pool())
            .await?;
        let n = usize::try_from(n).unwrap_or(0);
        self.queued.store(n, Ordering::Relaxed);
        Ok(n)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }
}

/// Placeholders of one statement, in the order the values are bound.
///
/// On SQLite they are anonymous `?`: sqlx binds a *named* parameter (`$N`, and `?N` alike)
/// through `sqlite3_bind_parameter_name`, a linear scan of the statement's parameter list, so a
/// statement with `n` named parameters costs O(n²) to bind on every execution (measured on the
/// week: 500-row statements ran at ~1,500 killmails/s, 16-row ones at ~6,200/s). Anonymous ones
/// bind positionally in O(1), so statements can be wide. PostgreSQL keeps `$N`.
/// Statements with a handful of parameters keep writing `$1` literally.
struct Ph {
    sqlite: bool,
    n: usize,
}

impl Ph {
    fn new(backend: Backend) -> Self {
        Self {
            sqlite: backend == Backend::Sqlite,
            n: 0,
        }
    }

    fn next(&mut self) -> String {
        let mut s = String::new();
        self.push_next(&mut s);
        s
    }

    /// Appends the next placeholder (no allocation of its own: a batch's statements hold
    /// tens of thousands).
    fn push_next(&mut self, s: &mut String) {
        use std::fmt::Write;
        self.n += 1;
        if self.sqlite {
            s.push('?');
        } else {
            let _ = write!(s, "${}", self.n);
        }
    }

    /// `(p,p,..),(..)` for `rows` rows of `cols` columns.
    fn values(&mut self, rows: usize, cols: usize) -> String {
        let mut s = String::with_capacity(rows * (cols * 7 + 3));
        for r in 0..rows {
            if r > 0 {
                s.push(',');
            }
            s.push('(');
            for c in 0..cols {
                if c > 0 {
                    s.push(',');
                }
                self.push_next(&mut s);
            }
            s.push(')');
        }
        s
    }

    /// `p,p,..` for an IN list.
    fn list(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n * 7);
        for k in 0..n {
            if k > 0 {
                s.push(',');
            }
            self.push_next(&mut s);
        }
        s
    }
}

/// Splits `items` into statements of at most `max` rows, using only the sizes `max`, `max/4`,
/// `max/16`, … 1, so a table sees a handful of distinct statement texts (each prepared once
/// per connection and then cached) whatever the batch size.
fn chunked<T>(items: &[T], max: usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = items;
    let mut size = max.max(1);
    while !rest.is_empty() {
        while size > 1 && rest.len() < size {
            size = (size / 4).max(1);
        }
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// Rows per statement, by width: about 4,000 parameters each (SQLite allows 32,766,
/// PostgreSQL 65,535).
const fn max_rows(cols: usize) -> usize {
    4096 / cols
}

/// Ids per IN list.
const IN_LIST: usize = 1024;

/// A query being built, bound value by value.
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// `{head} VALUES (…), (…) {tail}` for every row, in statements of about 4,000 parameters
/// (see [`chunked`]); `bind` binds one row's `cols` values in column order.
async fn insert_values<'r, T: Sync>(
    conn: &mut AnyConnection,
    backend: Backend,
    (head, tail): (&str, &str),
    cols: usize,
    rows: &'r [T],
    bind: impl for<'q> Fn(AnyQuery<'q>, &'r T) -> AnyQuery<'q>,
) -> StoreResult<()> {
    for part in chunked(rows, max_rows(cols)) {
        let sql = format!(
            "{head} VALUES {} {tail}",
            Ph::new(backend).values(part.len(), cols)
        );
        let mut q = sqlx::query(dynamic_sql(sql));
        for row in part {
            q = bind(q, row);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

fn i(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

fn u(x: i64) -> u64 {
    u64::try_from(x).unwrap_or(0)
}

fn entity_parts(e: Entity) -> (&'static str, i64) {
    match e {
        Entity::Alliance(x) => ("alliance", i(x)),
        Entity::Corporation(x) => ("corporation", i(x)),
        Entity::Character(x) => ("character", i(x)),
    }
}

fn entity_from(kind: &str, id: i64) -> Option<Entity> {
    let id = u64::try_from(id).ok()?;
    match kind {
        "alliance" => Some(Entity::Alliance(id)),
        "corporation" => Some(Entity::Corporation(id)),
        "character" => Some(Entity::Character(id)),
        _ => None,
    }
}

/// `data`, `data_zstd` of a killmail row.
type StoredData = (String, Option<Vec<u8>>);

/// A killmail's `data` as stored: its JSON, or `''` with the JSON zstd-compressed in
/// `data_zstd` when that pays (the killmails table is most of the service's bytes, and most of
/// what a backlog writes; compressed it is ≈ half the size).
fn encode_data(kill: &ClusterKill) -> StoreResult<StoredData> {
    let json = serde_json::to_string(kill).map_err(|e| StoreError::Other(e.to_string()))?;
    Ok(match Payload::compress(&json) {
        Some(z) => (String::new(), Some(z)),
        None => (json, None),
    })
}

/// A stored killmail from its `data`, `data_zstd` columns at `at`, `at + 1` of `row`.
pub(crate) fn stored_kill(row: &sqlx::any::AnyRow, at: usize) -> StoreResult<ClusterKill> {
    let kill = match row.try_get::<Option<Vec<u8>>, _>(at + 1)? {
        Some(z) => Payload::Zstd(z)
            .decode()
            .map_err(|e| e.to_string())
            .and_then(|json| serde_json::from_str(&json).map_err(|e| e.to_string())),
        None => serde_json::from_str(&row.try_get::<String, _>(at)?).map_err(|e| e.to_string()),
    };
    kill.map_err(|e| StoreError::Other(format!("stored killmail: {e}")))
}

fn decode_kill(
    kill: ClusterKill,
    revision: i64,
    region: Option<i64>,
    security_status: Option<f64>,
    security_type: Option<String>,
) -> StoreResult<StoredKill> {
    Ok(StoredKill {
        kill,
        revision: u32::try_from(revision).unwrap_or(0),
        region_id: region.and_then(|r| u32::try_from(r).ok()),
        security_status,
        security_type,
    })
}

/// Per battle: whether participants/systems need a full rebuild (kills left it).
#[derive(Default)]
struct Touched {
    battles: BTreeMap<u64, bool>,
    /// Killmails first stored by this transaction that no op has put in a battle yet: adding
    /// them cannot take them from another battle, so that lookup is skipped.
    unplaced: HashSet<u64>,
}

impl Touched {
    fn add(&mut self, b: u64, full: bool) {
        let e = self.battles.entry(b).or_default();
        *e |= full;
    }
}

/// Writes the batch's killmails (highest revision wins) with their pilot lines, and queues
/// their ship history; returns the ids of the rows really written (new, or replaced by a
/// higher revision): only their names are taken, so a redelivered older revision never
/// overwrites a newer name.
async fn upsert_kills(
    conn: &mut AnyConnection,
    backend: Backend,
    kills: &[StoredKill],
    touched: &mut Touched,
) -> StoreResult<(HashSet<u64>, usize)> {
    // Highest revision per id within the batch (PostgreSQL refuses to update a row twice).
    let mut best: BTreeMap<u64, &StoredKill> = BTreeMap::new();
    for k in kills {
        let e = best.entry(k.kill.killmail_id).or_insert(k);
        if k.revision > e.revision {
            *e = k;
        }
    }
    // The revisions already stored (read inside this transaction, under the writer's lock):
    // what is written is decided here rather than returned row by row by the upsert, since
    // every returned row is a round trip through the driver and a backlog's rows are all new.
    let mut stored: HashMap<u64, i64> = HashMap::new();
    let ids: Vec<u64> = best.keys().copied().collect();
    let select = "SELECT killmail_id, revision FROM killmails WHERE killmail_id IN";
    for row in rows_of_killmails(conn, backend, select, &ids).await? {
        stored.insert(u(row.try_get(0)?), row.try_get(1)?);
    }
    let kills: Vec<&StoredKill> = best
        .into_values()
        .filter(|k| {
            stored
                .get(&k.kill.killmail_id)
                .is_none_or(|&rev| i64::from(k.revision) > rev)
        })
        .collect();
    let written: HashSet<u64> = kills.iter().map(|k| k.kill.killmail_id).collect();
    touched.unplaced.extend(
        written
            .iter()
            .copied()
            .filter(|id| !stored.contains_key(id)),
    );
    // Rows replaced by a higher revision may sit in a battle already.
    let replaced: Vec<i64> = kills
        .iter()
        .filter(|k| stored.contains_key(&k.kill.killmail_id))
        .map(|k| i(k.kill.killmail_id))
        .collect();
    // Each row's JSON and pilot lines are independent of the others: every core.
    let encoded: Vec<(StoredData, Vec<u8>)> = bs_runtime::parallel::map(&kills, |k| {
        encode_data(&k.kill).map(|data| (data, history::encode(&history::lines(&k.kill))))
    })
    .into_iter()
    .collect::<StoreResult<_>>()?;
    let mut encoded = encoded.into_iter();
    for chunk in chunked(&kills, max_rows(12)) {
        let mut ph = Ph::new(backend);
        // A killmail's pilots never change across revisions; rows stored before the column
        // existed get theirs on the next revision.
        let sql = format!(
            "INSERT INTO killmails (killmail_id, revision, time_ms, system_id, region_id, security_type, security_status, isk_value, isk_dropped, data, data_zstd, pilots) VALUES {} \
             ON CONFLICT (killmail_id) DO UPDATE SET revision = excluded.revision, time_ms = excluded.time_ms, system_id = excluded.system_id, \
             region_id = excluded.region_id, security_type = excluded.security_type, security_status = excluded.security_status, \
             isk_value = excluded.isk_value, isk_dropped = excluded.isk_dropped, data = excluded.data, data_zstd = excluded.data_zstd, \
             pilots = excluded.pilots \
             WHERE excluded.revision > killmails.revision",
            ph.values(chunk.len(), 12)
        );
        let mut q = sqlx::query(dynamic_sql(sql));
        for (k, ((data, data_zstd), pilots)) in chunk.iter().zip(encoded.by_ref()) {
            q = q
                .bind(i(k.kill.killmail_id))
                .bind(i64::from(k.revision))
                .bind(k.kill.time_ms)
                .bind(i64::from(k.kill.system_id))
                .bind(k.region_id.map(i64::from))
                .bind(k.security_type.clone())
                .bind(k.security_status)
                .bind(k.kill.isk_value)
                .bind(k.kill.isk_dropped)
                .bind(data)
                .bind(data_zstd)
                .bind(pilots);
        }
        q.execute(&mut *conn).await?;
    }
    // Ship history of the rows just written (a redelivery has its history already; a new
    // revision does not change it), queued.
    let fresh: Vec<&StoredKill> = kills
        .iter()
        .copied()
        .filter(|k| written.contains(&k.kill.killmail_id))
        .collect();
    history::queue(conn, backend, &fresh).await?;
    let fresh_len = fresh.len();
    for chunk in chunked(&replaced, IN_LIST) {
        let mut ph = Ph::new(backend);
        let sql = format!(
            "UPDATE battle_killmails SET isk_value = (SELECT m.isk_value FROM killmails m WHERE m.killmail_id = battle_killmails.killmail_id), \
             isk_dropped = (SELECT m.isk_dropped FROM killmails m WHERE m.killmail_id = battle_killmails.killmail_id) \
             WHERE killmail_id IN ({}) RETURNING battle_id",
            ph.list(chunk.len())
        );
        let mut q = sqlx::query(dynamic_sql(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let b: i64 = row.try_get(0)?;
            touched.add(u(b), false);
        }
    }
    Ok((written, fresh_len))
}

/// (kind, id) → hash of the name last committed, to skip unchanged names.
type NameCache = HashMap<(&'static str, i64), u64>;

fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// Upserts the names carried by the killmails just written, skipping those already stored with
/// the same text; returns the names written (to remember once the transaction commits).
async fn upsert_names(
    conn: &mut AnyConnection,
    backend: Backend,
    names: &[NameRow],
    written: &HashSet<u64>,
    known: &NameCache,
) -> StoreResult<Vec<((&'static str, i64), u64)>> {
    // Within a batch the highest revision's name wins (then the newest killmail).
    let mut dedup: BTreeMap<(&'static str, i64), (u32, u64, &str)> = BTreeMap::new();
    for n in names.iter().filter(|n| written.contains(&n.killmail_id)) {
        let e = dedup
            .entry((n.kind, n.id))
            .or_insert((n.revision, n.killmail_id, &n.name));
        if (n.revision, n.killmail_id) > (e.0, e.1) {
            *e = (n.revision, n.killmail_id, &n.name);
        }
    }
    let rows: Vec<((&'static str, i64), &str, u64)> = dedup
        .into_iter()
        .map(|(k, (_, _, name))| (k, name, name_hash(name)))
        .filter(|(k, _, h)| known.get(k) != Some(h))
        .collect();
    insert_values(
        conn,
        backend,
        (
            "INSERT INTO names (kind, id, name)",
            "ON CONFLICT (kind, id) DO UPDATE SET name = excluded.name WHERE names.name <> excluded.name",
        ),
        3,
        &rows,
        |q, ((kind, id), name, _)| q.bind(*kind).bind(*id).bind(*name),
    )
    .await?;
    Ok(rows.into_iter().map(|(k, _, h)| (k, h)).collect())
}

/// A participant's corporation/alliance in a battle is the smallest id seen on its rows, the
/// same whatever order the killmails arrived in (`MIN` in [`rebuild_members`]).
const PARTICIPANT_MIN: &str = "ON CONFLICT (battle_id, character_id) DO UPDATE SET \
    corporation_id = CASE WHEN battle_participants.corporation_id IS NULL OR excluded.corporation_id < battle_participants.corporation_id \
      THEN excluded.corporation_id ELSE battle_participants.corporation_id END, \
    alliance_id = CASE WHEN battle_participants.alliance_id IS NULL OR excluded.alliance_id < battle_participants.alliance_id \
      THEN excluded.alliance_id ELSE battle_participants.alliance_id END \
    WHERE (excluded.corporation_id IS NOT NULL AND (battle_participants.corporation_id IS NULL OR excluded.corporation_id < battle_participants.corporation_id)) \
       OR (excluded.alliance_id IS NOT NULL AND (battle_participants.alliance_id IS NULL OR excluded.alliance_id < battle_participants.alliance_id))";

/// The batch's killmails by id: their participants come from memory, not from the table.
type BatchKills<'a> = HashMap<u64, &'a StoredKill>;

/// Adds killmails to battles: `adds` is a run of `AddKills` operations, applied as one
/// (one statement per kind for all of them instead of a few per battle). A killmail named
/// twice ends in the battle named last, as applying them in order would leave it; a battle it
/// leaves — in the run or from before — is rebuilt in full.
async fn add_kills(
    conn: &mut AnyConnection,
    backend: Backend,
    adds: &[(u64, &[u64])],
    batch: &BatchKills<'_>,
    touched: &mut Touched,
) -> StoreResult<()> {
    let mut target: BTreeMap<u64, u64> = BTreeMap::new();
    for &(battle, ids) in adds {
        touched.add(battle, false);
        for &id in ids {
            if let Some(before) = target.insert(id, battle)
                && before != battle
            {
                touched.add(before, true);
            }
        }
    }
    // Kills moving here from another battle: that one loses them. Killmails this transaction
    // stored first, and placed by no earlier operation, are in no battle: not looked up.
    let placed: Vec<u64> = target
        .keys()
        .copied()
        .filter(|id| !touched.unplaced.contains(id))
        .collect();
    let select = "SELECT killmail_id, battle_id FROM battle_killmails WHERE killmail_id IN";
    for row in rows_of_killmails(conn, backend, select, &placed).await? {
        let (id, from): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        if target.get(&u(id)) != Some(&u(from)) {
            touched.add(u(from), true);
        }
    }
    for id in target.keys() {
        touched.unplaced.remove(id);
    }
    let pairs: Vec<(u64, u64)> = target.iter().map(|(&k, &b)| (k, b)).collect();
    // (killmail, battle) as a VALUES table: its columns are column1 and column2 on both
    // engines.
    let stmts = [
        (
            "INSERT INTO battle_killmails (killmail_id, battle_id, time_ms, system_id, isk_value, isk_dropped) \
             SELECT m.killmail_id, v.column2, m.time_ms, m.system_id, m.isk_value, m.isk_dropped FROM (VALUES ",
            ") AS v JOIN killmails m ON m.killmail_id = v.column1 WHERE true \
             ON CONFLICT (killmail_id) DO UPDATE SET battle_id = excluded.battle_id WHERE battle_killmails.battle_id <> excluded.battle_id",
        ),
        (
            "INSERT INTO battle_systems (battle_id, system_id, region_id, security_type) \
             SELECT v.column2, m.system_id, MIN(m.region_id), MIN(m.security_type) FROM (VALUES ",
            ") AS v JOIN killmails m ON m.killmail_id = v.column1 WHERE true GROUP BY v.column2, m.system_id \
             ON CONFLICT (battle_id, system_id) DO NOTHING",
        ),
    ];
    for part in chunked(&pairs, max_rows(2)) {
        for (head, tail) in stmts {
            let sql = format!("{head}{}{tail}", Ph::new(backend).values(part.len(), 2));
            let mut q = sqlx::query(dynamic_sql(sql));
            for (k, b) in part {
                q = q.bind(i(*k)).bind(i(*b));
            }
            q.execute(&mut *conn).await?;
        }
    }
    // Participants, from the killmails' own lines, per battle.
    let ids: Vec<u64> = target.keys().copied().collect();
    let mut by_battle: BTreeMap<u64, Vec<Vec<history::Line>>> = BTreeMap::new();
    for (id, lines) in pilot_lines(conn, backend, &ids, batch).await? {
        if let Some(b) = target.get(&id) {
            by_battle.entry(*b).or_default().push(lines);
        }
    }
    let rows: Vec<(u64, Participant)> = by_battle
        .iter()
        .flat_map(|(b, lines)| participants_of(lines).into_iter().map(move |p| (*b, p)))
        .collect();
    insert_participants(conn, backend, &rows).await
}

/// The pilot lines of these killmails: the batch's own from memory (a live update reads
/// nothing back), the others from their stored `pilots` (or, for a row stored before that
/// column, from its killmail data). Killmails without a row are left out.
async fn pilot_lines(
    conn: &mut AnyConnection,
    backend: Backend,
    ids: &[u64],
    batch: &BatchKills<'_>,
) -> StoreResult<Vec<(u64, Vec<history::Line>)>> {
    let mut out = Vec::with_capacity(ids.len());
    let mut stored: Vec<u64> = Vec::new();
    for id in ids {
        match batch.get(id) {
            Some(k) => out.push((*id, history::lines(&k.kill))),
            None => stored.push(*id),
        }
    }
    let select = "SELECT pilots, CASE WHEN pilots IS NULL THEN data END, CASE WHEN pilots IS NULL THEN data_zstd END, killmail_id FROM killmails WHERE killmail_id IN";
    for row in rows_of_killmails(conn, backend, select, &stored).await? {
        out.push((u(row.try_get(3)?), stored_lines(&row)?));
    }
    Ok(out)
}

/// The rows of `select` (a query ending in `killmail_id IN`) for these killmails, in IN lists
/// of [`IN_LIST`].
async fn rows_of_killmails(
    conn: &mut AnyConnection,
    backend: Backend,
    select: &str,
    ids: &[u64],
) -> StoreResult<Vec<sqlx::any::AnyRow>> {
    let mut out = Vec::new();
    for chunk in chunked(ids, IN_LIST) {
        let sql = format!("{select} ({})", Ph::new(backend).list(chunk.len()));
        let mut q = sqlx::query(dynamic_sql(sql));
        for id in chunk {
            q = q.bind(i(*id));
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// Deletes the `pilot_ship_history` lines of these killmails (retention), by the table's key:
/// each killmail's own pilot lines say which (character, killmail, ship) rows it has, so no
/// index by killmail is needed (one would cost every history insert a second b-tree insert).
/// Call before the killmail rows go.
pub(crate) async fn delete_ship_history(
    conn: &mut AnyConnection,
    backend: Backend,
    ids: &[u64],
) -> StoreResult<u64> {
    let mut keys: Vec<(i64, i64, i64)> = Vec::new();
    for (killmail_id, lines) in pilot_lines(conn, backend, ids, &BatchKills::new()).await? {
        keys.extend(
            lines
                .into_iter()
                .map(|l| (l.character_id, i(killmail_id), l.ship_type_id)),
        );
    }
    keys.sort_unstable();
    keys.dedup();
    let mut deleted = 0;
    for part in chunked(&keys, max_rows(3)) {
        // A row-value IN takes a subquery on the right in SQLite, and a bare `VALUES` there
        // makes it scan the table; selecting from the `VALUES` searches it by key (both).
        let sql = format!(
            "DELETE FROM pilot_ship_history WHERE (character_id, killmail_id, ship_type_id) IN \
             (SELECT column1, column2, column3 FROM (VALUES {}) AS k)",
            Ph::new(backend).values(part.len(), 3)
        );
        let mut q = sqlx::query(dynamic_sql(sql));
        for (ch, km, ship) in part {
            q = q.bind(*ch).bind(*km).bind(*ship);
        }
        deleted += q.execute(&mut *conn).await?.rows_affected();
    }
    Ok(deleted)
}

/// A stored killmail's lines from (`pilots`, and `data`, `data_zstd` when `pilots` is NULL).
fn stored_lines(row: &sqlx::any::AnyRow) -> StoreResult<Vec<history::Line>> {
    if let Some(bytes) = row.try_get::<Option<Vec<u8>>, _>(0)? {
        return Ok(history::decode(&bytes));
    }
    Ok(history::lines(&stored_kill(row, 1)?))
}

/// A participant row: character, (corporation, alliance).
type Participant = (i64, (Option<i64>, Option<i64>));

/// One row per pilot of these lines, with the smallest corporation/alliance id seen (the same
/// whatever order the killmails arrived in), sorted by character.
fn participants_of(lines: &[Vec<history::Line>]) -> Vec<Participant> {
    let min = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    let mut pilots: BTreeMap<i64, (Option<i64>, Option<i64>)> = BTreeMap::new();
    for l in lines.iter().flatten() {
        let e = pilots
            .entry(l.character_id)
            .or_insert((l.corporation_id, l.alliance_id));
        *e = (min(e.0, l.corporation_id), min(e.1, l.alliance_id));
    }
    pilots.into_iter().collect()
}

/// Inserts (or widens, see [`PARTICIPANT_MIN`]) participants: (battle, participant) rows,
/// at most one per battle and character.
async fn insert_participants(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: &[(u64, Participant)],
) -> StoreResult<()> {
    insert_values(
        conn,
        backend,
        (
            "INSERT INTO battle_participants (battle_id, character_id, corporation_id, alliance_id)",
            PARTICIPANT_MIN,
        ),
        4,
        rows,
        |q, (battle, (ch, (corp, all)))| q.bind(i(*battle)).bind(*ch).bind(*corp).bind(*all),
    )
    .await
}

/// Rebuilds a battle's participants and systems from its killmails (after some left it).
async fn rebuild_members(
    conn: &mut AnyConnection,
    backend: Backend,
    battle: u64,
) -> StoreResult<()> {
    let b = i(battle);
    sqlx::query("DELETE FROM battle_participants WHERE battle_id = $1")
        .bind(b)
        .execute(&mut *conn)
        .await?;
    let rows = sqlx::query(
        "SELECT m.pilots, CASE WHEN m.pilots IS NULL THEN m.data END, CASE WHEN m.pilots IS NULL THEN m.data_zstd END FROM battle_killmails k \
         JOIN killmails m ON m.killmail_id = k.killmail_id WHERE k.battle_id = $1",
    )
    .bind(b)
    .fetch_all(&mut *conn)
    .await?;
    let lines = rows
        .iter()
        .map(stored_lines)
        .collect::<StoreResult<Vec<_>>>()?;
    let participants: Vec<(u64, Participant)> = participants_of(&lines)
        .into_iter()
        .map(|p| (battle, p))
        .collect();
    insert_participants(conn, backend, &participants).await?;
    for sql in [
        "DELETE FROM battle_systems WHERE battle_id = $1",
        "INSERT INTO battle_systems (battle_id, system_id, region_id, security_type) \
         SELECT $1, k.system_id, MIN(m.region_id), MIN(m.security_type) FROM battle_killmails k \
         JOIN killmails m ON m.killmail_id = k.killmail_id WHERE k.battle_id = $1 GROUP BY k.system_id",
    ] {
        sqlx::query(sql).bind(b).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Recomputes a battle's aggregates from its rows (one read of the stored and the recomputed
/// values); bumps the revision only on a change.
async fn recompute(conn: &mut AnyConnection, battle: u64, now_ms: i64) -> StoreResult<()> {
    let b = i(battle);
    let Some(row) = sqlx::query(
        "SELECT b.total_kills, b.total_isk, b.total_dropped, b.start_ms, b.end_ms, b.pilots, b.status, \
         k.n, k.isk, k.dropped, k.first_ms, k.last_ms, \
         (SELECT COUNT(*) FROM battle_participants p WHERE p.battle_id = b.battle_id) \
         FROM battles b CROSS JOIN (SELECT COUNT(*) AS n, COALESCE(SUM(isk_value), 0.0) AS isk, COALESCE(SUM(isk_dropped), 0.0) AS dropped, \
         COALESCE(MIN(time_ms), 0) AS first_ms, COALESCE(MAX(time_ms), 0) AS last_ms FROM battle_killmails WHERE battle_id = $1) k \
         WHERE b.battle_id = $1",
    )
    .bind(b)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    let status: String = row.try_get(6)?;
    if status == BattleStatus::Merged.as_str() {
        return Ok(());
    }
    let before: (i64, f64, f64, i64, i64, i64) = (
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
    );
    let (kills, isk, dropped, start, end, pilots): (i64, f64, f64, i64, i64, i64) = (
        row.try_get(7)?,
        row.try_get(8)?,
        row.try_get(9)?,
        row.try_get(10)?,
        row.try_get(11)?,
        row.try_get(12)?,
    );
    let same = before.0 == kills
        && (before.1 - isk).abs() < 0.5
        && (before.2 - dropped).abs() < 0.5
        && before.3 == start
        && before.4 == end
        && before.5 == pilots;
    if same {
        return Ok(());
    }
    sqlx::query(
        "UPDATE battles SET total_kills = $2, total_isk = $3, total_dropped = $4, start_ms = $5, end_ms = $6, duration_ms = $7, \
         pilots = $8, revision = revision + 1, dirty = 1, updated_at = $9 WHERE battle_id = $1",
    )
    .bind(b)
    .bind(kills)
    .bind(isk)
    .bind(dropped)
    .bind(start)
    .bind(end)
    .bind(end - start)
    .bind(pilots)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply_op(
    conn: &mut AnyConnection,
    backend: Backend,
    op: &BattleOp,
    now_ms: i64,
    batch: &BatchKills<'_>,
    touched: &mut Touched,
) -> StoreResult<()> {
    match op {
        BattleOp::Create { battle_id } => {
            sqlx::query(
                "INSERT INTO battles (battle_id, founding_ms, status, start_ms, end_ms, duration_ms, total_kills, total_isk, total_dropped, pilots, revision, dirty, updated_at) \
                 VALUES ($1, COALESCE((SELECT time_ms FROM killmails WHERE killmail_id = $1), 0), 'active', 0, 0, 0, 0, 0.0, 0.0, 0, 0, 1, $2) \
                 ON CONFLICT (battle_id) DO UPDATE SET status = 'active', merged_into = NULL, revision = battles.revision + 1, dirty = 1 \
                 WHERE battles.status = 'merged'",
            )
            .bind(i(*battle_id))
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
            // An id that was absorbed once and names a battle again (a rename onto it, or a
            // rebuild): it is live now, so it must not redirect any more.
            sqlx::query("DELETE FROM battle_aliases WHERE alias_id = $1")
                .bind(i(*battle_id))
                .execute(&mut *conn)
                .await?;
            touched.add(*battle_id, false);
        }
        BattleOp::AddKills {
            battle_id,
            killmail_ids,
        } => {
            add_kills(conn, backend, &[(*battle_id, killmail_ids)], batch, touched).await?;
        }
        BattleOp::RemoveKills {
            battle_id,
            killmail_ids,
        } => {
            for chunk in chunked(killmail_ids, IN_LIST) {
                let mut ph = Ph::new(backend);
                let b = ph.next();
                let sql = format!(
                    "DELETE FROM battle_killmails WHERE battle_id = {b} AND killmail_id IN ({})",
                    ph.list(chunk.len())
                );
                let mut q = sqlx::query(dynamic_sql(sql)).bind(i(*battle_id));
                for id in chunk {
                    q = q.bind(i(*id));
                }
                q.execute(&mut *conn).await?;
            }
            touched.add(*battle_id, true);
        }
        BattleOp::Merge { survivor, absorbed } => {
            if survivor == absorbed {
                return Ok(());
            }
            let (s, a) = (i(*survivor), i(*absorbed));
            for sql in [
                "UPDATE battle_killmails SET battle_id = $1 WHERE battle_id = $2",
                "UPDATE battles SET status = 'merged', merged_into = $1, revision = revision + 1, dirty = 1 WHERE battle_id = $2",
                "UPDATE battles SET merged_into = $1 WHERE merged_into = $2",
                "UPDATE battle_aliases SET battle_id = $1 WHERE battle_id = $2",
                "INSERT INTO battle_aliases (alias_id, battle_id) VALUES ($2, $1) ON CONFLICT (alias_id) DO UPDATE SET battle_id = excluded.battle_id",
                "INSERT INTO battle_side_overrides (battle_id, entity_kind, entity_id, target, actor, created_at) \
                 SELECT $1, entity_kind, entity_id, target, actor, created_at FROM battle_side_overrides WHERE battle_id = $2 \
                 ON CONFLICT (battle_id, entity_kind, entity_id) DO NOTHING",
                "DELETE FROM battle_participants WHERE battle_id = $2",
                "DELETE FROM battle_reports WHERE battle_id = $2",
            ] {
                sqlx::query(sql).bind(s).bind(a).execute(&mut *conn).await?;
            }
            touched.add(*survivor, true);
        }
        BattleOp::SetStatus { battle_id, status } => {
            sqlx::query(
                "UPDATE battles SET status = $2, revision = revision + 1, dirty = 1, updated_at = $3 \
                 WHERE battle_id = $1 AND status <> $2 AND status <> 'merged'",
            )
            .bind(i(*battle_id))
            .bind(status.as_str())
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

const BATTLE_COLUMNS: &str = "battle_id, founding_ms, status, merged_into, start_ms, end_ms, duration_ms, total_kills, total_isk, \
    total_dropped, pilots, multi_party, one_sided, revision, sides_revision, published_status, updated_at";

fn battle_row(row: &sqlx::any::AnyRow) -> StoreResult<BattleRow> {
    let status: String = row.try_get(2)?;
    let published: Option<String> = row.try_get(15)?;
    let merged: Option<i64> = row.try_get(3)?;
    Ok(BattleRow {
        battle_id: u(row.try_get(0)?),
        founding_ms: row.try_get(1)?,
        status: BattleStatus::parse(&status).unwrap_or(BattleStatus::Active),
        merged_into: merged.map(u),
        start_ms: row.try_get(4)?,
        end_ms: row.try_get(5)?,
        duration_ms: row.try_get(6)?,
        total_kills: u32::try_from(row.try_get::<i64, _>(7)?).unwrap_or(0),
        total_isk: row.try_get(8)?,
        total_dropped: row.try_get(9)?,
        pilots: u32::try_from(row.try_get::<i64, _>(10)?).unwrap_or(0),
        multi_party: row.try_get::<i64, _>(11)? != 0,
        one_sided: row.try_get::<i64, _>(12)? != 0,
        revision: u(row.try_get(13)?),
        sides_revision: row.try_get(14)?,
        published_status: published.as_deref().and_then(BattleStatus::parse),
        updated_at: row.try_get(16)?,
        system_ids: Vec::new(),
        region_ids: Vec::new(),
        security_types: Vec::new(),
        sides: Vec::new(),
    })
}

/// Fills systems, regions, security types and sides of `rows`.
async fn attach(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: &mut [BattleRow],
) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = rows.iter().map(|r| i(r.battle_id)).collect();
    let mut systems: HashMap<u64, Places> = HashMap::new();
    let mut sides: HashMap<u64, Vec<BattleSideSnapshot>> = HashMap::new();
    for chunk in chunked(&ids, IN_LIST) {
        // Each statement binds the list once, from the first placeholder.
        let l = Ph::new(backend).list(chunk.len());
        let mut q = sqlx::query(dynamic_sql(format!(
            "SELECT battle_id, system_id, region_id, security_type FROM battle_systems WHERE battle_id IN ({l})"
        )));
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let e = systems.entry(u(r.try_get(0)?)).or_default();
            e.0.insert(r.try_get(1)?);
            if let Some(reg) = r.try_get::<Option<i64>, _>(2)? {
                e.1.insert(reg);
            }
            if let Some(sec) = r.try_get::<Option<String>, _>(3)? {
                e.2.insert(sec);
            }
        }
        let mut q = sqlx::query(dynamic_sql(format!(
            "SELECT battle_id, side_index, pilots, kills, losses, isk_destroyed, isk_lost, alliance_ids, corporation_ids \
             FROM battle_sides WHERE battle_id IN ({l}) ORDER BY battle_id, side_index"
        )));
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let al: String = r.try_get(7)?;
            let co: String = r.try_get(8)?;
            sides
                .entry(u(r.try_get(0)?))
                .or_default()
                .push(BattleSideSnapshot {
                    index: u32::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
                    pilots: u32::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
                    kills: u32::try_from(r.try_get::<i64, _>(3)?).unwrap_or(0),
                    losses: u32::try_from(r.try_get::<i64, _>(4)?).unwrap_or(0),
                    isk_destroyed: r.try_get(5)?,
                    isk_lost: r.try_get(6)?,
                    alliance_ids: serde_json::from_str(&al).unwrap_or_default(),
                    corporation_ids: serde_json::from_str(&co).unwrap_or_default(),
                });
        }
    }
    for row in rows {
        if let Some((s, r, t)) = systems.remove(&row.battle_id) {
            row.system_ids = s.into_iter().collect();
            row.region_ids = r.into_iter().collect();
            row.security_types = t.into_iter().collect();
        }
        row.sides = sides.remove(&row.battle_id).unwrap_or_default();
    }
    Ok(())
}

enum Bind {
    I(i64),
    F(f64),
    S(String),
}

#[async_trait]
impl BattleStore for SqlBattleStore {
    async fn apply(&self, changes: &ChangeSet) -> StoreResult<()> {
        use std::sync::atomic::Ordering;
        let backend = self.db.backend();
        // Counted before this batch's rows are there (once per process).
        let queued_before = self.queued_killmails().await?;
        let mut tx = self.db.begin().await?;
        let mut touched = Touched::default();
        let (written, queued) =
            upsert_kills(&mut tx, backend, &changes.kills, &mut touched).await?;
        let names = {
            let known = self.names_written.lock().clone_for(&changes.names);
            upsert_names(&mut tx, backend, &changes.names, &written, &known).await?
        };
        let batch: BatchKills<'_> = changes
            .kills
            .iter()
            .map(|k| (k.kill.killmail_id, k))
            .collect();
        // A run of creations and additions (a batch's usual operations) is applied as one:
        // the creations as they come, the additions together before the next other operation.
        // Same result: creations neither read nor write membership, and `add_kills` keeps
        // the order's last word per killmail.
        let mut adds: Vec<(u64, &[u64])> = Vec::new();
        for op in &changes.ops {
            match op {
                BattleOp::AddKills {
                    battle_id,
                    killmail_ids,
                } => adds.push((*battle_id, killmail_ids)),
                BattleOp::Create { .. } => {
                    apply_op(&mut tx, backend, op, changes.now_ms, &batch, &mut touched).await?;
                }
                _ => {
                    if !adds.is_empty() {
                        add_kills(&mut tx, backend, &adds, &batch, &mut touched).await?;
                        adds.clear();
                    }
                    apply_op(&mut tx, backend, op, changes.now_ms, &batch, &mut touched).await?;
                }
            }
        }
        if !adds.is_empty() {
            add_kills(&mut tx, backend, &adds, &batch, &mut touched).await?;
        }
        for (&b, &full) in &touched.battles {
            if full {
                rebuild_members(&mut tx, backend, b).await?;
            }
            recompute(&mut tx, b, changes.now_ms).await?;
        }
        tx.commit().await?;
        // Remembered only once committed: a rolled-back name is written again next time.
        self.names_written.lock().remember(names);
        // A backlog is never idle, so its queue is moved here, in bulk, once it is long.
        if queued_before + queued >= history::QUEUE_CAP {
            self.move_ship_history(usize::MAX).await?;
        } else {
            self.queued.fetch_add(queued, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn move_ship_history(&self, max_lines: usize) -> StoreResult<usize> {
        use std::sync::atomic::Ordering;
        let mut tx = self.db.begin().await?;
        let (killmails, lines) =
            history::move_queued(&mut tx, self.db.backend(), max_lines).await?;
        tx.commit().await?;
        if lines < max_lines {
            // The queue ran out: it is empty now.
            self.queued.store(0, Ordering::Relaxed);
        } else {
            let _ = self
                .queued
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                    (q != QUEUE_UNKNOWN).then(|| q.saturating_sub(killmails))
                });
        }
        Ok(killmails)
    }

    async fn max_kill_time(&self) -> StoreResult<Option<i64>> {
        let (t,): (Option<i64>,) = sqlx::query_as("SELECT MAX(time_ms) FROM killmails")
            .fetch_one(self.db.pool())
            .await?;
        Ok(t)
    }

    async fn working_set(&self, since_ms: i64) -> StoreResult<WorkingSet> {
        let pool = self.db.pool();
        let (earliest,): (Option<i64>,) = sqlx::query_as(
            "SELECT MIN(start_ms) FROM battles WHERE end_ms >= $1 AND status <> 'merged'",
        )
        .bind(since_ms)
        .fetch_one(pool)
        .await?;
        let since = earliest.map_or(since_ms, |e| e.min(since_ms));
        let mut ws = WorkingSet::default();
        let rows = sqlx::query(
            "SELECT m.data, m.data_zstd, k.battle_id FROM killmails m LEFT JOIN battle_killmails k ON k.killmail_id = m.killmail_id \
             WHERE m.time_ms >= $1 ORDER BY m.time_ms, m.killmail_id",
        )
        .bind(since)
        .fetch_all(pool)
        .await?;
        for r in rows {
            let kill = stored_kill(&r, 0)?;
            if let Some(b) = r.try_get::<Option<i64>, _>(2)? {
                ws.battle_of.insert(kill.killmail_id, u(b));
            }
            ws.kills.push(kill);
        }
        let rows = sqlx::query("SELECT battle_id, founding_ms, status FROM battles WHERE end_ms >= $1 OR status = 'merged'")
            .bind(since)
            .fetch_all(pool)
            .await?;
        for r in rows {
            let status: String = r.try_get(2)?;
            ws.battles.insert(
                u(r.try_get(0)?),
                (
                    r.try_get(1)?,
                    BattleStatus::parse(&status).unwrap_or(BattleStatus::Active),
                ),
            );
        }
        // Battles referenced by loaded kills but ending before `since` (cannot happen with
        // consistent rows, but a mapping must never point at an unknown battle).
        let missing: Vec<u64> = ws
            .battle_of
            .values()
            .copied()
            .filter(|b| !ws.battles.contains_key(b))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in chunked(&missing, IN_LIST) {
            let mut q = sqlx::query(dynamic_sql(format!(
                "SELECT battle_id, founding_ms, status FROM battles WHERE battle_id IN ({})",
                Ph::new(self.db.backend()).list(chunk.len())
            )));
            for b in chunk {
                q = q.bind(i(*b));
            }
            for r in q.fetch_all(pool).await? {
                let status: String = r.try_get(2)?;
                ws.battles.insert(
                    u(r.try_get(0)?),
                    (
                        r.try_get(1)?,
                        BattleStatus::parse(&status).unwrap_or(BattleStatus::Active),
                    ),
                );
            }
        }
        Ok(ws)
    }

    async fn battle(&self, battle_id: u64) -> StoreResult<Lookup> {
        let mut conn = self.db.pool().acquire().await?;
        let row = sqlx::query(dynamic_sql(format!(
            "SELECT {BATTLE_COLUMNS} FROM battles WHERE battle_id = $1"
        )))
        .bind(i(battle_id))
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            let alias: Option<(i64,)> =
                sqlx::query_as("SELECT battle_id FROM battle_aliases WHERE alias_id = $1")
                    .bind(i(battle_id))
                    .fetch_optional(&mut *conn)
                    .await?;
            return Ok(alias.map_or(Lookup::NotFound, |(b,)| Lookup::Redirect(u(b))));
        };
        let mut row = battle_row(&row)?;
        if row.status == BattleStatus::Merged {
            let alias: Option<(i64,)> =
                sqlx::query_as("SELECT battle_id FROM battle_aliases WHERE alias_id = $1")
                    .bind(i(battle_id))
                    .fetch_optional(&mut *conn)
                    .await?;
            let to = alias
                .map(|(b,)| u(b))
                .or(row.merged_into)
                .unwrap_or(battle_id);
            return Ok(Lookup::Redirect(to));
        }
        attach(&mut conn, self.db.backend(), std::slice::from_mut(&mut row)).await?;
        Ok(Lookup::Found(Box::new(row)))
    }

    async fn row(&self, battle_id: u64) -> StoreResult<Option<BattleRow>> {
        let mut conn = self.db.pool().acquire().await?;
        let row = sqlx::query(dynamic_sql(format!(
            "SELECT {BATTLE_COLUMNS} FROM battles WHERE battle_id = $1"
        )))
        .bind(i(battle_id))
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut row = battle_row(&row)?;
        attach(&mut conn, self.db.backend(), std::slice::from_mut(&mut row)).await?;
        Ok(Some(row))
    }

    async fn battles(&self, query: &BattleQuery) -> StoreResult<(Vec<BattleRow>, Option<String>)> {
        let mut conds: Vec<String> = vec!["status <> 'merged'".into()];
        let mut binds: Vec<Bind> = Vec::new();
        let p = |b: Bind, binds: &mut Vec<Bind>| {
            binds.push(b);
            format!("${}", binds.len())
        };
        if let Some(v) = query.from_ms {
            conds.push(format!("end_ms >= {}", p(Bind::I(v), &mut binds)));
        }
        if let Some(v) = query.to_ms {
            conds.push(format!("start_ms <= {}", p(Bind::I(v), &mut binds)));
        }
        if let Some(v) = query.system_id {
            conds.push(format!(
                "battle_id IN (SELECT battle_id FROM battle_systems WHERE system_id = {})",
                p(Bind::I(v), &mut binds)
            ));
        }
        if let Some(v) = query.region_id {
            conds.push(format!(
                "battle_id IN (SELECT battle_id FROM battle_systems WHERE region_id = {})",
                p(Bind::I(v), &mut binds)
            ));
        }
        if let Some(v) = &query.security_type {
            conds.push(format!(
                "battle_id IN (SELECT battle_id FROM battle_systems WHERE security_type = {})",
                p(Bind::S(v.clone()), &mut binds)
            ));
        }
        for (col, v) in [
            ("character_id", query.character_id),
            ("corporation_id", query.corporation_id),
            ("alliance_id", query.alliance_id),
        ] {
            if let Some(v) = v {
                conds.push(format!(
                    "battle_id IN (SELECT battle_id FROM battle_participants WHERE {col} = {})",
                    p(Bind::I(v), &mut binds)
                ));
            }
        }
        if let Some(v) = query.min_kills {
            conds.push(format!("total_kills >= {}", p(Bind::I(v), &mut binds)));
        }
        if let Some(v) = query.min_isk {
            conds.push(format!("total_isk >= {}", p(Bind::F(v), &mut binds)));
        }
        if let Some(v) = query.min_pilots {
            conds.push(format!("pilots >= {}", p(Bind::I(v), &mut binds)));
        }
        if let Some(s) = query.status {
            conds.push(format!(
                "status = {}",
                p(Bind::S(s.as_str().into()), &mut binds)
            ));
        }
        let col = query.sort.column();
        let is_float = query.sort == SortKey::Isk;
        if let Some(c) = &query.cursor {
            let op = if query.ascending { ">" } else { "<" };
            let v = if is_float {
                Bind::F(c.value)
            } else {
                Bind::I(c.value as i64)
            };
            let v1 = p(v, &mut binds);
            let v2 = p(
                if is_float {
                    Bind::F(c.value)
                } else {
                    Bind::I(c.value as i64)
                },
                &mut binds,
            );
            let id = p(Bind::I(i(c.battle_id)), &mut binds);
            conds.push(format!(
                "({col} {op} {v1} OR ({col} = {v2} AND battle_id {op} {id}))"
            ));
        }
        let dir = if query.ascending { "ASC" } else { "DESC" };
        let limit = query.limit.clamp(1, 500);
        let sql = format!(
            "SELECT {BATTLE_COLUMNS} FROM battles WHERE {} ORDER BY {col} {dir}, battle_id {dir} LIMIT {}",
            conds.join(" AND "),
            limit + 1
        );
        let mut q = sqlx::query(dynamic_sql(sql));
        for b in binds {
            q = match b {
                Bind::I(v) => q.bind(v),
                Bind::F(v) => q.bind(v),
                Bind::S(v) => q.bind(v),
            };
        }
        let mut conn = self.db.pool().acquire().await?;
        let raw = q.fetch_all(&mut *conn).await?;
        let mut rows: Vec<BattleRow> = raw.iter().map(battle_row).collect::<StoreResult<_>>()?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| {
                let value = match query.sort {
                    SortKey::StartTime => r.start_ms as f64,
                    SortKey::Kills => f64::from(r.total_kills),
                    SortKey::Isk => r.total_isk,
                    SortKey::Pilots => f64::from(r.pilots),
                    SortKey::Duration => r.duration_ms as f64,
                };
                Cursor {
                    value,
                    battle_id: r.battle_id,
                }
                .encode()
            })
        } else {
            None
        };
        attach(&mut conn, self.db.backend(), &mut rows).await?;
        Ok((rows, next))
    }

    async fn kills_of(&self, battle_id: u64) -> StoreResult<Vec<StoredKill>> {
        let rows = sqlx::query(
            "SELECT m.data, m.data_zstd, m.revision, m.region_id, m.security_status, m.security_type FROM battle_killmails k \
             JOIN killmails m ON m.killmail_id = k.killmail_id WHERE k.battle_id = $1 ORDER BY k.time_ms, k.killmail_id",
        )
        .bind(i(battle_id))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                decode_kill(
                    stored_kill(r, 0)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                )
            })
            .collect()
    }

    async fn overrides(&self, battle_id: u64) -> StoreResult<Vec<SideOverride>> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT entity_kind, entity_id, target FROM battle_side_overrides WHERE battle_id = $1 ORDER BY entity_kind, entity_id",
        )
        .bind(i(battle_id))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(kind, id, target)| {
                let target: SideTarget = serde_json::from_str(&target).ok()?;
                Some(SideOverride {
                    entity: entity_from(&kind, id)?,
                    target,
                })
            })
            .collect())
    }

    async fn put_override(
        &self,
        battle_id: u64,
        o: &SideOverride,
        actor: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()> {
        let (kind, id) = entity_parts(o.entity);
        let target =
            serde_json::to_string(&o.target).map_err(|e| StoreError::Other(e.to_string()))?;
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO battle_side_overrides (battle_id, entity_kind, entity_id, target, actor, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (battle_id, entity_kind, entity_id) DO UPDATE SET target = excluded.target, actor = excluded.actor, created_at = excluded.created_at",
        )
        .bind(i(battle_id))
        .bind(kind)
        .bind(id)
        .bind(target)
        .bind(actor.map(str::to_owned))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE battles SET revision = revision + 1, dirty = 1, updated_at = $2 WHERE battle_id = $1")
            .bind(i(battle_id))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn names(&self, ids: &[i64]) -> StoreResult<BTreeMap<(String, i64), String>> {
        let mut out = BTreeMap::new();
        let ids: Vec<i64> = ids
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in chunked(&ids, IN_LIST) {
            let mut q = sqlx::query(dynamic_sql(format!(
                "SELECT kind, id, name FROM names WHERE id IN ({})",
                Ph::new(self.db.backend()).list(chunk.len())
            )));
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(self.db.pool()).await? {
                out.insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
            }
        }
        Ok(out)
    }

    async fn ship_history(
        &self,
        character_id: u64,
        limit: u32,
    ) -> StoreResult<Vec<ShipHistoryRow>> {
        let limit = limit.clamp(1, 1000);
        let ch = i(character_id);
        let mut conn = self.db.pool().acquire().await?;
        // The queue first, then the table: a move committing in between shows a line twice
        // (dropped below), never not at all.
        let mut out: Vec<ShipHistoryRow> = Vec::new();
        let mut queued_ids = Vec::new();
        for q in history::queued_with(&mut conn, self.db.backend(), ch).await? {
            for l in q.lines.iter().filter(|l| l.character_id == ch) {
                queued_ids.push(q.killmail_id);
                out.push(ShipHistoryRow {
                    killmail_id: u(q.killmail_id),
                    ship_type_id: u32::try_from(l.ship_type_id).unwrap_or(0),
                    time_ms: q.time_ms,
                    system_id: u32::try_from(q.system_id).unwrap_or(0),
                    lost: l.lost,
                    battle_id: None,
                });
            }
        }
        if !queued_ids.is_empty() {
            let mut battles: HashMap<u64, u64> = HashMap::new();
            for chunk in chunked(&queued_ids, IN_LIST) {
                let sql = format!(
                    "SELECT killmail_id, battle_id FROM battle_killmails WHERE killmail_id IN ({})",
                    Ph::new(self.db.backend()).list(chunk.len())
                );
                let mut q = sqlx::query(dynamic_sql(sql));
                for id in chunk {
                    q = q.bind(*id);
                }
                for r in q.fetch_all(&mut *conn).await? {
                    battles.insert(u(r.try_get(0)?), u(r.try_get(1)?));
                }
            }
            for row in &mut out {
                row.battle_id = battles.get(&row.killmail_id).copied();
            }
        }
        let rows = sqlx::query(
            "SELECT h.killmail_id, h.ship_type_id, h.time_ms, h.system_id, h.lost, k.battle_id FROM pilot_ship_history h \
             LEFT JOIN battle_killmails k ON k.killmail_id = h.killmail_id WHERE h.character_id = $1 \
             ORDER BY h.time_ms DESC, h.killmail_id DESC LIMIT $2",
        )
        .bind(ch)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        for r in &rows {
            out.push(ShipHistoryRow {
                killmail_id: u(r.try_get(0)?),
                ship_type_id: u32::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
                time_ms: r.try_get(2)?,
                system_id: u32::try_from(r.try_get::<i64, _>(3)?).unwrap_or(0),
                lost: r.try_get::<i64, _>(4)? != 0,
                battle_id: r.try_get::<Option<i64>, _>(5)?.map(u),
            });
        }
        out.sort_by(|a, b| {
            (b.time_ms, b.killmail_id, a.ship_type_id).cmp(&(
                a.time_ms,
                a.killmail_id,
                b.ship_type_id,
            ))
        });
        out.dedup_by_key(|r| (r.killmail_id, r.ship_type_id));
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn dirty_battles(&self, limit: u32) -> StoreResult<Vec<u64>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT battle_id FROM battles WHERE dirty = 1 ORDER BY updated_at, battle_id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(|(b,)| u(b)).collect())
    }

    async fn save_sides(&self, update: &SidesUpdate) -> StoreResult<bool> {
        let b = i(update.battle_id);
        let mut tx = self.db.begin().await?;
        let cur: Option<(i64,)> =
            sqlx::query_as("SELECT revision FROM battles WHERE battle_id = $1")
                .bind(b)
                .fetch_optional(&mut *tx)
                .await?;
        if cur.map(|(r,)| u(r)) != Some(update.seen_revision) {
            return Ok(false);
        }
        if let Some((sides, multi_party, one_sided)) = &update.sides {
            sqlx::query("DELETE FROM battle_sides WHERE battle_id = $1")
                .bind(b)
                .execute(&mut *tx)
                .await?;
            for s in sides {
                sqlx::query(
                    "INSERT INTO battle_sides (battle_id, side_index, pilots, kills, losses, isk_destroyed, isk_lost, alliance_ids, corporation_ids) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(b)
                .bind(i64::from(s.index))
                .bind(i64::from(s.pilots))
                .bind(i64::from(s.kills))
                .bind(i64::from(s.losses))
                .bind(s.isk_destroyed)
                .bind(s.isk_lost)
                .bind(serde_json::to_string(&s.alliance_ids).unwrap_or_default())
                .bind(serde_json::to_string(&s.corporation_ids).unwrap_or_default())
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("UPDATE battles SET multi_party = $2, one_sided = $3, sides_revision = revision WHERE battle_id = $1")
                .bind(b)
                .bind(i64::from(*multi_party))
                .bind(i64::from(*one_sided))
                .execute(&mut *tx)
                .await?;
        }
        if let Some(report) = &update.report {
            sqlx::query(
                "INSERT INTO battle_reports (battle_id, revision, report) VALUES ($1, $2, $3) \
                 ON CONFLICT (battle_id) DO UPDATE SET revision = excluded.revision, report = excluded.report",
            )
            .bind(b)
            .bind(i(update.seen_revision))
            .bind(report.as_str())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE battles SET published_status = $2, dirty = 0 WHERE battle_id = $1")
            .bind(b)
            .bind(update.published_status.as_str())
            .execute(&mut *tx)
            .await?;
        for e in &update.events {
            bs_store::outbox::enqueue(&mut tx, e).await?;
        }
        tx.commit().await?;
        if !update.events.is_empty() {
            self.db.outbox_notify();
        }
        Ok(true)
    }

    async fn stored_report(&self, battle_id: u64) -> StoreResult<Option<(u64, String)>> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT revision, report FROM battle_reports WHERE battle_id = $1")
                .bind(i(battle_id))
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|(r, j)| (u(r), j)))
    }

    async fn counts(&self) -> StoreResult<StoreCounts> {
        let pool = self.db.pool();
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM battles GROUP BY status")
                .fetch_all(pool)
                .await?;
        let mut c = StoreCounts::default();
        for (status, n) in rows {
            let n = u(n);
            match BattleStatus::parse(&status) {
                Some(BattleStatus::Active) => c.active = n,
                Some(BattleStatus::Ended) => c.ended = n,
                Some(BattleStatus::Merged) => c.merged = n,
                None => {}
            }
        }
        c.battles_total = c.active + c.ended;
        let (k,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM killmails")
            .fetch_one(pool)
            .await?;
        c.killmails = u(k);
        Ok(c)
    }
}

/// Kill time to the API's timestamp type.
pub fn ms_to_time(ms: TimeMs) -> chrono::DateTime<chrono::Utc> {
    bs_store::from_millis(ms)
}
