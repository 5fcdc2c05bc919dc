//! Persistence of the enrichment service: the [`EnrichmentStore`] trait and its one SQL
//! implementation, [`SqlEnrichmentStore`], which runs unchanged on SQLite and PostgreSQL
//! (dialect-neutral SQL, see `bs_store`).
//!
//! Writes of enriched rows and the `killmail.enriched` events they imply happen in one
//! transaction through the outbox, so a crash can never publish without storing or store
//! without publishing.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use bs_events::{Event, KillmailEnriched};
use bs_store::outbox::{self, OutboxRow, Payload};
use bs_store::sqlx::{self, Row};
use bs_store::{Database, StoreError, StoreResult, backend_sql, dynamic_sql};
use chrono::{DateTime, Utc};

/// Placeholders per statement; well below SQLite's and PostgreSQL's limits.
const CHUNK: usize = 500;

/// One enriched killmail as written.
#[derive(Clone, Debug, PartialEq)]
pub struct EnrichedRow {
    pub event: KillmailEnriched,
    pub input_hash: String,
    pub sde_version: String,
    /// The ingested event (JSON) it came from, for re-enrichment.
    pub source_event: String,
    /// Unix ms.
    pub now: i64,
}

/// What is stored about a killmail, enough to decide whether a delivery changes anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingRow {
    pub input_hash: String,
    pub version: u32,
    pub sde_version: String,
    pub revision: u32,
    pub names_pending: bool,
}

/// A stored killmail's input, for the background resolver and re-enrichment.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRow {
    pub killmail_id: i64,
    pub source_event: String,
    pub revision: u32,
    pub input_hash: String,
    /// The stored payload, to tell whether re-enriching changed anything.
    pub payload: String,
}

/// A name (or the knowledge that the id does not exist) with its category.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameEntry {
    pub id: i64,
    pub name: Option<String>,
    pub category: Option<String>,
}

/// Counts for `GET /status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreCounts {
    pub killmails: i64,
    pub names_pending: i64,
    pub names_cached: i64,
    pub esi_cache_entries: i64,
    pub outbox_pending: i64,
}

/// The enrichment service's storage.
#[async_trait]
pub trait EnrichmentStore: Send + Sync + 'static {
    /// What is stored for each of `ids` (absent ids are missing from the map).
    async fn existing(&self, ids: &[i64]) -> StoreResult<HashMap<i64, ExistingRow>>;
    /// Upserts `rows` and enqueues each row's event as `killmail.enriched` (envelope time
    /// `published_at`) in one transaction.
    async fn write(&self, rows: Vec<EnrichedRow>, published_at: DateTime<Utc>) -> StoreResult<()>;
    /// The published payload of a killmail (`KillmailEnriched` JSON).
    async fn payload(&self, killmail_id: i64) -> StoreResult<Option<String>>;
    /// Payloads of many killmails, in no particular order.
    async fn payloads(&self, ids: &[i64]) -> StoreResult<Vec<String>>;
    /// Killmails still waiting for names, oldest id first, after `after_id`.
    async fn pending(&self, after_id: i64, limit: i64) -> StoreResult<Vec<SourceRow>>;
    /// Killmails enriched by another rules or static-data version, after `after_id`.
    async fn stale(
        &self,
        version: u32,
        sde_version: &str,
        after_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<SourceRow>>;
    /// Fresh (unexpired at `now`) names of `ids`.
    async fn names(&self, ids: &[i64], now: i64) -> StoreResult<Vec<NameEntry>>;
    /// Upserts names, valid until `expires_at`.
    async fn put_names(&self, names: &[NameEntry], now: i64, expires_at: i64) -> StoreResult<()>;
    /// Every fresh cache entry of `kind` as (id, body).
    async fn cache_all(&self, kind: &str, now: i64) -> StoreResult<Vec<(i64, String)>>;
    /// Upserts one cache entry.
    async fn cache_put(
        &self,
        kind: &str,
        id: i64,
        body: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// Counts for `/status`.
    async fn counts(&self, now: i64) -> StoreResult<StoreCounts>;
}

/// [`EnrichmentStore`] over a [`Database`] (SQLite or PostgreSQL).
#[derive(Clone, Debug)]
pub struct SqlEnrichmentStore {
    db: Database,
}

impl SqlEnrichmentStore {
    /// The store on `db`; registers how the relay expands the `killmail.enriched` events it
    /// enqueues by reference to the row's `payload`.
    pub fn new(db: Database) -> Self {
        db.register_outbox_expander(
            KillmailEnriched::TOPIC,
            std::sync::Arc::new(EnrichedExpander),
        );
        Self { db }
    }
}

/// Reads a `killmail.enriched` payload from its `enriched_killmails` row in the relay's
/// transaction. The row holds the latest revision, so an event relayed after a newer
/// revision was written announces the newer one (consumers keep the highest revision).
struct EnrichedExpander;

#[async_trait]
impl outbox::OutboxExpander for EnrichedExpander {
    async fn expand(
        &self,
        conn: &mut sqlx::AnyConnection,
        references: &[i64],
    ) -> StoreResult<HashMap<i64, outbox::Expanded>> {
        Ok(read_payloads(conn, references)
            .await?
            .into_iter()
            .map(|(id, payload_json)| {
                let version = KillmailEnriched::VERSION;
                (
                    id,
                    outbox::Expanded {
                        version,
                        payload_json,
                    },
                )
            })
            .collect())
    }
}

/// The stored payloads (`KillmailEnriched` JSON) of those of `ids` that exist, with their ids.
async fn read_payloads(
    conn: &mut sqlx::AnyConnection,
    ids: &[i64],
) -> StoreResult<Vec<(i64, String)>> {
    let backend = bs_store::Backend::of(conn);
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT killmail_id, payload, payload_zstd FROM enriched_killmails WHERE killmail_id IN ({})",
            placeholders(chunk.len(), 1)
        );
        let mut q = sqlx::query_as::<_, (i64, String, Option<Vec<u8>>)>(backend_sql(backend, sql));
        for id in chunk {
            q = q.bind(*id);
        }
        for (id, text, zstd) in q.fetch_all(&mut *conn).await? {
            out.push((id, joined(text, zstd)?));
        }
    }
    Ok(out)
}

impl SqlEnrichmentStore {
    pub fn database(&self) -> &Database {
        &self.db
    }
}

/// Columns of `enriched_killmails`, in bind order.
const COLUMNS: &[&str] = &[
    "killmail_id",
    "killmail_time",
    "hash",
    "source",
    "ship_type_id",
    "ship_type_name",
    "ship_group_id",
    "ship_group_name",
    "ship_class",
    "system_id",
    "system_name",
    "constellation_id",
    "constellation_name",
    "region_id",
    "region_name",
    "security_status",
    "security_type",
    "victim_character_id",
    "victim_character_name",
    "victim_corporation_id",
    "victim_corporation_name",
    "victim_alliance_id",
    "victim_alliance_name",
    "victim_faction_id",
    "victim_faction_name",
    "attacker_count",
    "pilot_count",
    "isk_destroyed",
    "isk_dropped",
    "isk_total",
    "value_source",
    "names_pending",
    "version",
    "sde_version",
    "revision",
    "input_hash",
    "payload",
    "payload_zstd",
    "source_event",
    "source_event_zstd",
    "enriched_at",
    "updated_at",
];

/// Rows per upsert statement. Fewer, larger statements are what SQLite throughput needs;
/// they are cheap only because [`backend_sql`] gives SQLite positional placeholders
/// (with `$N` names binding cost grows with the square of the count, which had capped
/// this at 16). It is also the grain of the write pipeline (see `write`): on the warm week
/// 64 rows ran at 19.8–21.9 k killmails/s, 128 at 21.3–22.8 k, 256 at 20.2–20.5 k.
/// 128 × 42 binds stays far below both backends' parameter limits.
const ROWS_PER_UPSERT: usize = 128;

/// Statements encoded ahead of the one executing: two keep both cores busy on this machine
/// while SQLite works on a third thread.
const ENCODE_AHEAD: usize = 2;

/// The multi-row upsert for `rows` rows; `enriched_at` keeps the first enrichment time.
fn upsert_sql(rows: usize) -> String {
    let n = COLUMNS.len();
    let values: Vec<String> = (0..rows)
        .map(|r| format!("({})", placeholders(n, r * n + 1)))
        .collect();
    let updates: Vec<String> = COLUMNS
        .iter()
        .filter(|c| !matches!(**c, "killmail_id" | "enriched_at"))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO enriched_killmails ({}) VALUES {} ON CONFLICT (killmail_id) DO UPDATE SET {}",
        COLUMNS.join(", "),
        values.join(", "),
        updates.join(", ")
    )
}

static UPSERT_FULL: LazyLock<String> = LazyLock::new(|| upsert_sql(ROWS_PER_UPSERT));

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// A row's serialised parts, made before the transaction starts (CPU work does not hold
/// the write lock): each event is serialised once, for its column and its envelope.
struct Encoded {
    columns: Columns,
    outbox: OutboxRow,
}

/// The serialised columns of a row.
struct Columns {
    payload: Payload,
    source_event: Payload,
}

/// A large JSON column as stored: (text, zstd) — one of the two is used, the text column is
/// '' when the zstd one holds the value. Killmail JSON compresses about 3.5×.
fn split(p: Payload) -> (String, Option<Vec<u8>>) {
    match p {
        Payload::Text(s) => (s, None),
        Payload::Zstd(z) => (String::new(), Some(z)),
        // Columns come from `Payload::encode`, which makes only the two above.
        Payload::Reference { event_id, .. } => (event_id.to_string(), None),
    }
}

/// The JSON text of a (text, zstd) column pair.
fn joined(text: String, zstd: Option<Vec<u8>>) -> StoreResult<String> {
    match zstd {
        Some(z) => Payload::Zstd(z).decode(),
        None => Ok(text),
    }
}

fn encode_row(row: &EnrichedRow, published_at: DateTime<Utc>) -> StoreResult<Encoded> {
    let e = &row.event;
    Ok(Encoded {
        columns: Columns {
            payload: Payload::encode(json(e)?),
            source_event: Payload::encode_str(&row.source_event),
        },
        outbox: OutboxRow {
            topic: KillmailEnriched::TOPIC.to_owned(),
            key: e.key(),
            created_at: published_at.timestamp_millis(),
            // The row's `payload` is the event's body: the relay reads it back
            // ([`EnrichedExpander`]) instead of the outbox storing it a second time.
            payload: Payload::reference(e.killmail_id),
        },
    })
}

/// `value` as JSON, written into a buffer sized for a typical enriched killmail (≈ 3.6 KB)
/// instead of one grown by doubling.
pub(crate) fn json(value: &impl serde::Serialize) -> StoreResult<String> {
    let mut out = Vec::with_capacity(4096);
    serde_json::to_writer(&mut out, value).map_err(encode)?;
    // serde_json writes UTF-8 only.
    String::from_utf8(out).map_err(encode)
}

/// Binds one row's 42 values in [`COLUMNS`] order.
fn bind_row<'q>(q: AnyQuery<'q>, row: &EnrichedRow, enc: Columns) -> AnyQuery<'q> {
    let e = &row.event;
    let v = &e.victim;
    let (payload, source_event) = (split(enc.payload), split(enc.source_event));
    q.bind(e.killmail_id)
        .bind(e.killmail_time.timestamp_millis())
        .bind(e.hash.clone())
        .bind(e.source.as_str())
        .bind(v.ship.type_id)
        .bind(v.ship.type_name.clone())
        .bind(v.ship.group_id)
        .bind(v.ship.group_name.clone())
        .bind(v.ship.class.clone())
        .bind(e.system.id)
        .bind(e.system.name.clone())
        .bind(e.system.constellation_id)
        .bind(e.system.constellation_name.clone())
        .bind(e.system.region_id)
        .bind(e.system.region_name.clone())
        .bind(e.system.security_status)
        .bind(e.system.security_type.clone())
        .bind(v.who.character_id)
        .bind(v.who.character_name.clone())
        .bind(v.who.corporation_id)
        .bind(v.who.corporation_name.clone())
        .bind(v.who.alliance_id)
        .bind(v.who.alliance_name.clone())
        .bind(v.who.faction_id)
        .bind(v.who.faction_name.clone())
        .bind(i64::from(e.attacker_count))
        .bind(i64::from(e.pilot_count))
        .bind(e.isk.destroyed)
        .bind(e.isk.dropped)
        .bind(e.isk.total)
        .bind(e.isk.value_source.clone())
        .bind(i64::from(e.names_pending))
        .bind(i64::from(e.enrichment_version))
        .bind(row.sde_version.clone())
        .bind(i64::from(e.revision))
        .bind(row.input_hash.clone())
        .bind(payload.0)
        .bind(payload.1)
        .bind(source_event.0)
        .bind(source_event.1)
        .bind(row.now)
        .bind(row.now)
}

fn placeholders(n: usize, first: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn encode(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// The columns [`source_row`] reads, in order.
const SOURCE_COLUMNS: &str =
    "killmail_id, source_event, source_event_zstd, revision, input_hash, payload, payload_zstd";

fn source_row(r: &sqlx::any::AnyRow) -> StoreResult<SourceRow> {
    Ok(SourceRow {
        killmail_id: r.try_get(0)?,
        source_event: joined(r.try_get(1)?, r.try_get(2)?)?,
        revision: to_u32(r.try_get(3)?),
        input_hash: r.try_get(4)?,
        payload: joined(r.try_get(5)?, r.try_get(6)?)?,
    })
}

#[async_trait]
impl EnrichmentStore for SqlEnrichmentStore {
    async fn existing(&self, ids: &[i64]) -> StoreResult<HashMap<i64, ExistingRow>> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT killmail_id, input_hash, version, sde_version, revision, names_pending \
                 FROM enriched_killmails WHERE killmail_id IN ({})",
                placeholders(chunk.len(), 1)
            );
            let mut q = sqlx::query(backend_sql(self.db.backend(), sql));
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(self.db.pool()).await? {
                let id: i64 = r.try_get(0)?;
                out.insert(
                    id,
                    ExistingRow {
                        input_hash: r.try_get(1)?,
                        version: to_u32(r.try_get(2)?),
                        sde_version: r.try_get(3)?,
                        revision: to_u32(r.try_get(4)?),
                        names_pending: r.try_get::<i64, _>(5)? != 0,
                    },
                );
            }
        }
        Ok(out)
    }

    async fn write(&self, rows: Vec<EnrichedRow>, published_at: DateTime<Utc>) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        // Serialising and compressing (two zstd frames a row) is most of a batch's CPU and
        // independent per row, so it runs on blocking threads, a statement's rows at a time,
        // [`ENCODE_AHEAD`] statements ahead of the one SQLite is executing: the database
        // thread and the encoders work at the same time instead of one after the other.
        let rows = Arc::new(rows);
        let statements: Vec<Range<usize>> = (0..rows.len())
            .step_by(ROWS_PER_UPSERT)
            .map(|start| start..(start + ROWS_PER_UPSERT).min(rows.len()))
            .collect();
        let encode = |range: Range<usize>| {
            let rows = Arc::clone(&rows);
            tokio::task::spawn_blocking(move || {
                rows[range]
                    .iter()
                    .map(|r| encode_row(r, published_at))
                    .collect::<StoreResult<Vec<Encoded>>>()
            })
        };
        let mut ahead: VecDeque<_> = statements
            .iter()
            .take(ENCODE_AHEAD)
            .map(|r| encode(r.clone()))
            .collect();
        let backend = self.db.backend();
        let mut events = Vec::with_capacity(rows.len());
        let mut tx = self.db.begin().await?;
        for (n, range) in statements.iter().enumerate() {
            let encoded = ahead
                .pop_front()
                .expect("one encoder per statement")
                .await
                .map_err(|e| StoreError::Other(format!("encoding rows: {e}")))??;
            if let Some(next) = statements.get(n + ENCODE_AHEAD) {
                ahead.push_back(encode(next.clone()));
            }
            let chunk = &rows[range.clone()];
            let sql = if chunk.len() == ROWS_PER_UPSERT {
                UPSERT_FULL.clone()
            } else {
                upsert_sql(chunk.len())
            };
            let mut q = sqlx::query(backend_sql(backend, sql));
            for (row, enc) in chunk.iter().zip(encoded) {
                events.push(enc.outbox);
                q = bind_row(q, row, enc.columns);
            }
            q.execute(&mut *tx).await?;
        }
        outbox::enqueue_rows(&mut tx, &events).await?;
        tx.commit().await?;
        self.db.outbox_notify();
        Ok(())
    }

    async fn payload(&self, killmail_id: i64) -> StoreResult<Option<String>> {
        let row: Option<(String, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT payload, payload_zstd FROM enriched_killmails WHERE killmail_id = $1",
        )
        .bind(killmail_id)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|(text, zstd)| joined(text, zstd)).transpose()
    }

    async fn payloads(&self, ids: &[i64]) -> StoreResult<Vec<String>> {
        let mut conn = self.db.pool().acquire().await?;
        let rows = read_payloads(&mut conn, ids).await?;
        Ok(rows.into_iter().map(|(_, payload)| payload).collect())
    }

    async fn pending(&self, after_id: i64, limit: i64) -> StoreResult<Vec<SourceRow>> {
        let rows = sqlx::query(dynamic_sql(format!(
            "SELECT {SOURCE_COLUMNS} FROM enriched_killmails \
             WHERE names_pending = 1 AND killmail_id > $1 ORDER BY killmail_id LIMIT $2"
        )))
        .bind(after_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(source_row).collect()
    }

    async fn stale(
        &self,
        version: u32,
        sde_version: &str,
        after_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<SourceRow>> {
        let rows = sqlx::query(dynamic_sql(format!(
            "SELECT {SOURCE_COLUMNS} FROM enriched_killmails \
             WHERE (version <> $1 OR sde_version <> $2) AND killmail_id > $3 \
             ORDER BY killmail_id LIMIT $4"
        )))
        .bind(i64::from(version))
        .bind(sde_version)
        .bind(after_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(source_row).collect()
    }

    async fn names(&self, ids: &[i64], now: i64) -> StoreResult<Vec<NameEntry>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT id, name, category FROM esi_names WHERE expires_at > $1 AND id IN ({})",
                placeholders(chunk.len(), 2)
            );
            let mut q = sqlx::query_as::<_, (i64, Option<String>, Option<String>)>(backend_sql(
                self.db.backend(),
                sql,
            ))
            .bind(now);
            for id in chunk {
                q = q.bind(*id);
            }
            out.extend(
                q.fetch_all(self.db.pool())
                    .await?
                    .into_iter()
                    .map(|(id, name, category)| NameEntry { id, name, category }),
            );
        }
        Ok(out)
    }

    async fn put_names(&self, names: &[NameEntry], now: i64, expires_at: i64) -> StoreResult<()> {
        if names.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        for n in names {
            sqlx::query(
                "INSERT INTO esi_names (id, name, category, fetched_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
                 name = excluded.name, category = excluded.category, \
                 fetched_at = excluded.fetched_at, expires_at = excluded.expires_at",
            )
            .bind(n.id)
            .bind(n.name.clone())
            .bind(n.category.clone())
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn cache_all(&self, kind: &str, now: i64) -> StoreResult<Vec<(i64, String)>> {
        Ok(sqlx::query_as::<_, (i64, String)>(
            "SELECT id, body FROM esi_cache WHERE kind = $1 AND expires_at > $2 ORDER BY id",
        )
        .bind(kind)
        .bind(now)
        .fetch_all(self.db.pool())
        .await?)
    }

    async fn cache_put(
        &self,
        kind: &str,
        id: i64,
        body: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO esi_cache (kind, id, body, fetched_at, expires_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, \
             fetched_at = excluded.fetched_at, expires_at = excluded.expires_at",
        )
        .bind(kind)
        .bind(id)
        .bind(body)
        .bind(now)
        .bind(expires_at)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn counts(&self, now: i64) -> StoreResult<StoreCounts> {
        let pool = self.db.pool();
        let (killmails,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM enriched_killmails")
            .fetch_one(pool)
            .await?;
        let (names_pending,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM enriched_killmails WHERE names_pending = 1")
                .fetch_one(pool)
                .await?;
        let (names_cached,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM esi_names WHERE expires_at > $1")
                .bind(now)
                .fetch_one(pool)
                .await?;
        let (esi_cache_entries,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM esi_cache")
            .fetch_one(pool)
            .await?;
        Ok(StoreCounts {
            killmails,
            names_pending,
            names_cached,
            esi_cache_entries,
            outbox_pending: self.db.outbox_pending().await?,
        })
    }
}
