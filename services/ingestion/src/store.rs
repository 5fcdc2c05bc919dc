//! The ingestion store: killmails, rejects, cursors, gaps, rulesets and
//! backfill jobs, on SQLite or PostgreSQL with one SQL text.
//!
//! Everything a source learns from one step is written by [`IngestionStore::apply`]
//! in **one transaction**: the new killmails (deduplicated by the primary key
//! with `INSERT … ON CONFLICT DO NOTHING RETURNING`, so only rows really
//! inserted produce events), their `killmail.ingested` outbox rows, updates of
//! re-published killmails, rejects, gaps, counters and the source cursor. A
//! crash before commit loses the whole step, which the source then repeats; a
//! crash after commit leaves a cursor that matches the rows.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use bs_domain::{Killmail, KillmailSource, Zkb};
use bs_events::KillmailIngested;
use bs_store::outbox::{OutboxRow, Payload};
use bs_store::{
    Database, StoreError, StoreResult, backend_sql, dynamic_sql, from_millis, to_millis,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::AnyConnection;

use crate::domain::Ruleset;

/// A validated killmail ready to store.
#[derive(Clone, Debug)]
pub struct NewKillmail {
    pub killmail: Killmail,
    pub hash: String,
    pub zkb: Option<Zkb>,
    pub source: KillmailSource,
    /// The canonical ESI JSON.
    pub raw_data: String,
    /// `raw_data` zstd-compressed when that pays: then stored in `raw_zstd`, with `raw_data`
    /// ''. Compressed where the killmail is prepared, so the writer — the import's serial
    /// stage — binds and writes about a third of the bytes.
    pub raw_zstd: Option<Vec<u8>>,
    pub zkb_json: Option<String>,
    /// Detects re-published content that really changed.
    pub content_hash: String,
    /// The distinct attacker alliances as a JSON array (the `attacker_alliance_ids` column),
    /// built where the killmail is prepared, off the writer.
    pub attacker_alliance_ids: String,
    pub r2z2_sequence: Option<i64>,
    pub backfill_job_id: Option<String>,
}

/// A rejected document.
#[derive(Clone, Debug)]
pub struct RejectRecord {
    /// Stable per (input, reason): a re-import adds no row.
    pub fingerprint: String,
    pub killmail_id: Option<i64>,
    pub reason: String,
    pub detail: String,
    pub source: String,
    /// The input, truncated.
    pub raw: String,
}

/// A skipped range of R2Z2 sequences.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GapRecord {
    pub first_sequence: i64,
    pub last_sequence: i64,
    /// `missing` (a hole below a newer head) or `expired` (older than retention).
    pub kind: String,
    pub repair_job_id: Option<String>,
}

/// One source step.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub killmails: Vec<NewKillmail>,
    pub rejects: Vec<RejectRecord>,
    pub gaps: Vec<GapRecord>,
    /// `(name, position)` stored with the rows.
    pub cursor: Option<(String, i64)>,
    /// Re-published upstream content replaces stored content when it changed (R2Z2, RedisQ).
    pub upsert: bool,
}

/// What a step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub inserted: Vec<i64>,
    pub updated: Vec<i64>,
    pub duplicates: u64,
    /// Same id, different hash: counted and rejected, never overwritten.
    pub conflicts: u64,
    pub rejects_new: u64,
}

/// A stored killmail.
#[derive(Clone, Debug, Serialize)]
pub struct StoredKillmail {
    pub killmail_id: i64,
    pub hash: String,
    pub system_id: i64,
    pub occurred_at: DateTime<Utc>,
    pub victim_alliance_id: Option<i64>,
    pub attacker_alliance_ids: Vec<i64>,
    pub isk_value: Option<f64>,
    pub zkb_url: String,
    pub source: String,
    pub r2z2_sequence: Option<i64>,
    pub processed_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    pub killmail: serde_json::Value,
    pub zkb: Option<serde_json::Value>,
}

/// Numbers for `/status` and `/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StoreStats {
    pub killmails_total: i64,
    pub by_source: BTreeMap<String, i64>,
    pub duplicates: i64,
    pub updates: i64,
    pub conflicts: i64,
    pub rejects_by_reason: BTreeMap<String, i64>,
    pub gaps: i64,
    pub gap_sequences: i64,
    pub outbox_pending: i64,
}

/// A backfill job row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub source: String,
    pub from_day: NaiveDate,
    pub to_day: NaiveDate,
    /// `pending`, `running`, `completed`, `failed`, `cancelled`.
    pub status: String,
    pub note: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub days_total: i64,
    pub days_done: i64,
    pub killmails_seen: i64,
    pub killmails_new: i64,
    pub error: Option<String>,
}

/// The store of the ingestion service.
#[async_trait]
pub trait IngestionStore: Send + Sync + 'static {
    /// Writes one step atomically (see the module doc).
    async fn apply(&self, batch: Batch, now: DateTime<Utc>) -> StoreResult<BatchOutcome>;
    async fn cursor(&self, name: &str) -> StoreResult<Option<i64>>;
    async fn killmail(&self, id: i64) -> StoreResult<Option<StoredKillmail>>;
    /// Newest by kill time.
    async fn recent(&self, limit: i64) -> StoreResult<Vec<StoredKillmail>>;
    /// Ids already stored or rejected (so a repair does not refetch them).
    async fn known_ids(&self, ids: &[i64]) -> StoreResult<HashSet<i64>>;
    /// Stored killmails per UTC day of kill time, for `from..=to`.
    async fn day_counts(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<BTreeMap<NaiveDate, i64>>;
    async fn stats(&self) -> StoreResult<StoreStats>;
    async fn gaps(&self, limit: i64) -> StoreResult<Vec<GapRecord>>;
    async fn set_gap_repair(&self, first_sequence: i64, job_id: &str) -> StoreResult<()>;
    async fn ruleset(&self) -> StoreResult<Ruleset>;
    async fn put_ruleset(&self, ruleset: &Ruleset, now: DateTime<Utc>) -> StoreResult<Ruleset>;
    async fn create_job(&self, job: &JobRecord) -> StoreResult<()>;
    async fn job(&self, id: &str) -> StoreResult<Option<JobRecord>>;
    async fn jobs(&self, limit: i64) -> StoreResult<Vec<JobRecord>>;
    /// Moves a job between states; returns false when it was not in `from`.
    async fn transition_job(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
        now: DateTime<Utc>,
        error: Option<&str>,
    ) -> StoreResult<bool>;
    /// Days of a job already finished.
    async fn done_days(&self, job_id: &str) -> StoreResult<HashSet<NaiveDate>>;
    /// Marks a day finished and adds its numbers to the job.
    async fn finish_day(
        &self,
        job_id: &str,
        day: NaiveDate,
        seen: i64,
        new: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Marks days with nothing to do finished, in one transaction.
    async fn skip_days(
        &self,
        job_id: &str,
        days: &[NaiveDate],
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}

/// The SQL implementation, for both backends.
#[derive(Clone, Debug)]
pub struct SqlIngestionStore {
    db: Database,
}

const KM_COLUMNS: &str = "killmail_id, hash, system_id, occurred_at, victim_alliance_id, attacker_alliance_ids, isk_value, \
     zkb_url, raw_data, raw_zstd, zkb, source, r2z2_sequence, backfill_job_id, content_hash, fetched_at, processed_at, updated_at";
const KM_PARAMS: usize = 18;
/// Bound parameters per statement. Large multi-row statements are the cheap way
/// to write on both backends; on SQLite they are cheap only through
/// [`backend_sql`] (positional `?` placeholders: with `$N` names, binding costs
/// grow with the square of the count, which had capped this at 100).
fn max_params(backend: bs_store::Backend) -> usize {
    match backend {
        bs_store::Backend::Sqlite => 2000,
        bs_store::Backend::Postgres => 8000,
    }
}

fn rows_per(backend: bs_store::Backend, cols: usize) -> usize {
    (max_params(backend) / cols).max(1)
}
const SELECT_COLUMNS: &str = "killmail_id, hash, system_id, occurred_at, victim_alliance_id, attacker_alliance_ids, isk_value, \
     zkb_url, source, r2z2_sequence, processed_at, updated_at, raw_data, zkb, raw_zstd";

type KmRow = (
    i64,
    String,
    i64,
    i64,
    Option<i64>,
    String,
    Option<f64>,
    String,
    String,
    Option<i64>,
    i64,
    Option<i64>,
    String,
    Option<String>,
    Option<Vec<u8>>,
);

fn placeholders(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            s.push('$');
            s.push_str(&(r * cols + c + 1).to_string());
        }
        s.push(')');
    }
    s
}

/// The distinct attacker alliances of `km`, for [`NewKillmail::attacker_alliance_ids`].
pub fn attacker_alliances(km: &Killmail) -> Vec<i64> {
    let mut ids: Vec<i64> = km.attackers.iter().filter_map(|a| a.alliance_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

impl SqlIngestionStore {
    /// The store on `db`; registers how the relay expands the `killmail.ingested` events
    /// it enqueues by reference.
    pub fn new(db: Database) -> Self {
        use bs_events::Event as _;
        db.register_outbox_expander(
            KillmailIngested::TOPIC,
            std::sync::Arc::new(IngestedExpander),
        );
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    async fn insert_killmails(
        backend: bs_store::Backend,
        conn: &mut AnyConnection,
        rows: &[&NewKillmail],
        now_ms: i64,
    ) -> StoreResult<HashSet<i64>> {
        let mut inserted = HashSet::new();
        for chunk in rows.chunks(rows_per(backend, KM_PARAMS)) {
            let sql = format!(
                "INSERT INTO killmail_events ({KM_COLUMNS}) VALUES {} ON CONFLICT (killmail_id) DO NOTHING RETURNING killmail_id",
                placeholders(chunk.len(), KM_PARAMS)
            );
            let mut q = sqlx::query_as::<_, (i64,)>(backend_sql(backend, sql));
            for k in chunk {
                let km = &k.killmail;
                q = q
                    .bind(km.killmail_id)
                    .bind(k.hash.as_str())
                    .bind(km.solar_system_id)
                    .bind(to_millis(km.killmail_time))
                    .bind(km.victim.alliance_id)
                    .bind(k.attacker_alliance_ids.as_str())
                    .bind(k.zkb.as_ref().and_then(|z| z.total_value))
                    .bind(km.zkillboard_url())
                    .bind(raw_text(k))
                    .bind(k.raw_zstd.as_deref())
                    .bind(k.zkb_json.as_deref())
                    .bind(k.source.as_str())
                    .bind(k.r2z2_sequence)
                    .bind(k.backfill_job_id.as_deref())
                    .bind(k.content_hash.as_str())
                    .bind(now_ms)
                    .bind(now_ms)
                    .bind(None::<i64>);
            }
            for (id,) in q.fetch_all(&mut *conn).await? {
                inserted.insert(id);
            }
        }
        Ok(inserted)
    }

    async fn add_counter(conn: &mut AnyConnection, name: &str, by: i64) -> StoreResult<()> {
        if by == 0 {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO ingest_counters (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = ingest_counters.value + excluded.value",
        )
        .bind(name)
        .bind(by)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn insert_rejects(
        backend: bs_store::Backend,
        conn: &mut AnyConnection,
        rejects: &[RejectRecord],
        now_ms: i64,
    ) -> StoreResult<u64> {
        let mut n = 0;
        for chunk in rejects.chunks(rows_per(backend, 7)) {
            let sql = format!(
                "INSERT INTO ingest_rejects (fingerprint, killmail_id, reason, detail, source, raw, rejected_at) VALUES {} \
                 ON CONFLICT (fingerprint) DO NOTHING",
                placeholders(chunk.len(), 7)
            );
            let mut q = sqlx::query(backend_sql(backend, sql));
            for r in chunk {
                q = q
                    .bind(r.fingerprint.clone())
                    .bind(r.killmail_id)
                    .bind(r.reason.clone())
                    .bind(r.detail.clone())
                    .bind(r.source.clone())
                    .bind(r.raw.clone())
                    .bind(now_ms);
            }
            n += q.execute(&mut *conn).await?.rows_affected();
        }
        Ok(n)
    }
}

/// `killmail.ingested` as written by `Envelope`, serialised straight from borrowed
/// fields (no intermediate JSON tree: bulk import writes tens of thousands).
#[derive(Serialize)]
struct WireEnvelope<'a> {
    id: uuid::Uuid,
    #[serde(rename = "type")]
    event_type: &'static str,
    version: u32,
    time: DateTime<Utc>,
    key: &'a str,
    payload: WireIngested<'a>,
}

/// Field for field [`KillmailIngested`]'s serialised form.
#[derive(Serialize)]
struct WireIngested<'a> {
    killmail: &'a Killmail,
    hash: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    zkb: Option<&'a Zkb>,
    source: KillmailSource,
    ingested_at: DateTime<Utc>,
    is_update: bool,
}

fn event(k: &NewKillmail, now: DateTime<Utc>, is_update: bool) -> StoreResult<OutboxRow> {
    use bs_events::Event as _;
    if k.killmail.killmail_id <= 0 || k.killmail.attackers.is_empty() {
        return Err(other("an invalid killmail reached the outbox"));
    }
    let key = k.killmail.killmail_id.to_string();
    if !is_update {
        // The row just inserted is the event's body: the relay reads it back
        // ([`IngestedExpander`]) instead of the outbox storing it a second time.
        return Ok(OutboxRow {
            topic: KillmailIngested::TOPIC.to_owned(),
            key,
            created_at: to_millis(now),
            payload: Payload::reference(k.killmail.killmail_id),
        });
    }
    let wire = WireEnvelope {
        id: uuid::Uuid::now_v7(),
        event_type: KillmailIngested::TOPIC,
        version: KillmailIngested::VERSION,
        time: now,
        key: &key,
        payload: WireIngested {
            killmail: &k.killmail,
            hash: &k.hash,
            zkb: k.zkb.as_ref(),
            source: k.source,
            ingested_at: now,
            is_update,
        },
    };
    let payload = serde_json::to_string(&wire).map_err(other)?;
    Ok(OutboxRow {
        topic: KillmailIngested::TOPIC.to_owned(),
        key,
        created_at: to_millis(now),
        payload: Payload::encode(payload),
    })
}

/// Reads a new killmail's `killmail.ingested` payload back from its `killmail_events`
/// row, in the relay's transaction: the stored body, hash, zkb block and source, and
/// `processed_at` as `ingested_at` (the envelope's time, to the millisecond). A row updated
/// since (re-published upstream) announces its newer content; the update's own event follows.
struct IngestedExpander;

#[async_trait]
impl bs_store::outbox::OutboxExpander for IngestedExpander {
    async fn expand(
        &self,
        conn: &mut AnyConnection,
        references: &[i64],
    ) -> StoreResult<HashMap<i64, bs_store::outbox::Expanded>> {
        use bs_events::Event as _;
        let backend = bs_store::Backend::of(conn);
        let mut out = HashMap::with_capacity(references.len());
        for chunk in references.chunks(rows_per(backend, 1)) {
            let sql = format!(
                "SELECT killmail_id, raw_data, raw_zstd, hash, zkb, source, processed_at FROM killmail_events \
                 WHERE killmail_id IN ({})",
                placeholders(chunk.len(), 1)
            );
            type Row = (
                i64,
                String,
                Option<Vec<u8>>,
                String,
                Option<String>,
                String,
                i64,
            );
            let mut q = sqlx::query_as::<_, Row>(backend_sql(backend, sql));
            for id in chunk {
                q = q.bind(*id);
            }
            for (id, raw_text, raw_zstd, hash, zkb, source, processed_at) in
                q.fetch_all(&mut *conn).await?
            {
                let raw_data = stored_raw(raw_text, raw_zstd)?;
                let time = json(&from_millis(processed_at));
                let zkb = zkb.map(|z| format!(",\"zkb\":{z}")).unwrap_or_default();
                let payload_json = format!(
                    "{{\"killmail\":{raw_data},\"hash\":{}{zkb},\"source\":{},\"ingested_at\":{time},\"is_update\":false}}",
                    json(&hash),
                    json(&source),
                );
                out.insert(
                    id,
                    bs_store::outbox::Expanded {
                        version: KillmailIngested::VERSION,
                        payload_json,
                    },
                );
            }
        }
        Ok(out)
    }
}

/// The `raw_data` column of a new row: the text, or '' when `raw_zstd` holds it.
fn raw_text(k: &NewKillmail) -> &str {
    if k.raw_zstd.is_some() {
        ""
    } else {
        &k.raw_data
    }
}

/// A stored body from its two columns.
fn stored_raw(text: String, zstd: Option<Vec<u8>>) -> StoreResult<String> {
    match zstd {
        Some(z) => Payload::Zstd(z).decode(),
        None => Ok(text),
    }
}

/// A value as JSON (strings and times cannot fail to serialise).
fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn row_to_stored(r: KmRow) -> StoredKillmail {
    StoredKillmail {
        killmail_id: r.0,
        hash: r.1,
        system_id: r.2,
        occurred_at: from_millis(r.3),
        victim_alliance_id: r.4,
        attacker_alliance_ids: serde_json::from_str(&r.5).unwrap_or_default(),
        isk_value: r.6,
        zkb_url: r.7,
        source: r.8,
        r2z2_sequence: r.9,
        processed_at: from_millis(r.10),
        updated_at: r.11.map(from_millis),
        killmail: stored_raw(r.12, r.14)
            .ok()
            .and_then(|raw| serde_json::from_str(&raw).ok())
            .unwrap_or(serde_json::Value::Null),
        zkb: r.13.and_then(|z| serde_json::from_str(&z).ok()),
    }
}

type JobRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
);
const JOB_COLUMNS: &str = "id, source, from_day, to_day, status, note, created_at, started_at, finished_at, days_total, days_done, \
     killmails_seen, killmails_new, error";

fn row_to_job(r: JobRow) -> JobRecord {
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default();
    JobRecord {
        id: r.0,
        source: r.1,
        from_day: day(&r.2),
        to_day: day(&r.3),
        status: r.4,
        note: r.5,
        created_at: from_millis(r.6),
        started_at: r.7.map(from_millis),
        finished_at: r.8.map(from_millis),
        days_total: r.9,
        days_done: r.10,
        killmails_seen: r.11,
        killmails_new: r.12,
        error: r.13,
    }
}

#[async_trait]
impl IngestionStore for SqlIngestionStore {
    async fn apply(&self, batch: Batch, now: DateTime<Utc>) -> StoreResult<BatchOutcome> {
        let now_ms = to_millis(now);
        let mut outcome = BatchOutcome::default();
        // Within one batch keep the first occurrence (files) or the latest (re-published feeds).
        let mut by_id: HashMap<i64, usize> = HashMap::with_capacity(batch.killmails.len());
        let mut order: Vec<usize> = Vec::with_capacity(batch.killmails.len());
        for (i, k) in batch.killmails.iter().enumerate() {
            match by_id.get(&k.killmail.killmail_id) {
                Some(&slot) => {
                    outcome.duplicates += 1;
                    if batch.upsert {
                        order[slot] = i;
                    }
                }
                None => {
                    by_id.insert(k.killmail.killmail_id, order.len());
                    order.push(i);
                }
            }
        }
        let mut rows: Vec<&NewKillmail> = order.iter().map(|&i| &batch.killmails[i]).collect();
        // Ascending keys: concurrent writers take row locks in the same order, so
        // overlapping batches wait for each other instead of deadlocking.
        rows.sort_unstable_by_key(|k| k.killmail.killmail_id);
        let mut rejects = batch.rejects;
        rejects.sort_unstable_by(|a, b| a.fingerprint.cmp(&b.fingerprint));

        let mut tx = self.db.begin().await?;
        let inserted = Self::insert_killmails(self.db.backend(), &mut tx, &rows, now_ms).await?;
        let mut events = Vec::with_capacity(inserted.len());
        let mut existing: Vec<&NewKillmail> = Vec::new();
        for k in &rows {
            if inserted.contains(&k.killmail.killmail_id) {
                events.push(event(k, now, false)?);
                outcome.inserted.push(k.killmail.killmail_id);
            } else {
                existing.push(k);
            }
        }
        if !existing.is_empty() {
            // Compare with what is stored: same content is a duplicate, a new hash an anomaly,
            // changed content (re-published upstream) an update when the source is authoritative.
            let mut stored: HashMap<i64, (String, String)> = HashMap::new();
            for chunk in existing.chunks(rows_per(self.db.backend(), 1)) {
                let sql = format!(
                    "SELECT killmail_id, hash, content_hash FROM killmail_events WHERE killmail_id IN ({})",
                    (1..=chunk.len())
                        .map(|i| format!("${i}"))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                let mut q =
                    sqlx::query_as::<_, (i64, String, String)>(backend_sql(self.db.backend(), sql));
                for k in chunk {
                    q = q.bind(k.killmail.killmail_id);
                }
                for (id, hash, content) in q.fetch_all(&mut *tx).await? {
                    stored.insert(id, (hash, content));
                }
            }
            for k in existing {
                let id = k.killmail.killmail_id;
                match stored.get(&id) {
                    Some((hash, _)) if *hash != k.hash => {
                        outcome.conflicts += 1;
                        tracing::warn!(killmail_id = id, stored = %hash, incoming = %k.hash, "same killmail id with a different hash");
                        rejects.push(RejectRecord {
                            fingerprint: format!("hash_conflict:{id}:{}", k.hash),
                            killmail_id: Some(id),
                            reason: crate::domain::RejectReason::HashConflict.as_str().into(),
                            detail: format!("stored hash {hash}, incoming {}", k.hash),
                            source: k.source.as_str().into(),
                            raw: crate::domain::validate::truncate(&k.raw_data, 4096).to_owned(),
                        });
                    }
                    Some((_, content))
                        if batch.upsert
                            && !crate::pipeline::same_content(
                                content,
                                &k.raw_data,
                                k.zkb_json.as_deref(),
                                &k.content_hash,
                            ) =>
                    {
                        sqlx::query(
                            "UPDATE killmail_events SET raw_data = $1, raw_zstd = $2, zkb = $3, isk_value = $4, content_hash = $5, \
                             updated_at = $6, r2z2_sequence = COALESCE($7, r2z2_sequence) WHERE killmail_id = $8",
                        )
                        .bind(raw_text(k))
                        .bind(k.raw_zstd.as_deref())
                        .bind(k.zkb_json.clone())
                        .bind(k.zkb.as_ref().and_then(|z| z.total_value))
                        .bind(k.content_hash.clone())
                        .bind(now_ms)
                        .bind(k.r2z2_sequence)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        events.push(event(k, now, true)?);
                        outcome.updated.push(id);
                    }
                    _ => outcome.duplicates += 1,
                }
            }
        }
        bs_store::outbox::enqueue_rows(&mut tx, &events).await?;
        outcome.rejects_new =
            Self::insert_rejects(self.db.backend(), &mut tx, &rejects, now_ms).await?;
        for g in &batch.gaps {
            sqlx::query(
                "INSERT INTO r2z2_gaps (first_sequence, last_sequence, kind, detected_at, repair_job_id) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (first_sequence) DO NOTHING",
            )
            .bind(g.first_sequence)
            .bind(g.last_sequence)
            .bind(g.kind.clone())
            .bind(now_ms)
            .bind(g.repair_job_id.clone())
            .execute(&mut *tx)
            .await?;
        }
        Self::add_counter(&mut tx, "duplicates", outcome.duplicates as i64).await?;
        Self::add_counter(&mut tx, "updates", outcome.updated.len() as i64).await?;
        Self::add_counter(&mut tx, "conflicts", outcome.conflicts as i64).await?;
        if let Some((name, position)) = &batch.cursor {
            sqlx::query(
                "INSERT INTO ingest_cursors (name, position, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
            )
            .bind(name.clone())
            .bind(*position)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if !events.is_empty() {
            self.db.outbox_notify();
        }
        Ok(outcome)
    }

    async fn cursor(&self, name: &str) -> StoreResult<Option<i64>> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT position FROM ingest_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|r| r.0))
    }

    async fn killmail(&self, id: i64) -> StoreResult<Option<StoredKillmail>> {
        let sql = format!("SELECT {SELECT_COLUMNS} FROM killmail_events WHERE killmail_id = $1");
        let row: Option<KmRow> = sqlx::query_as(dynamic_sql(sql))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.map(row_to_stored))
    }

    async fn recent(&self, limit: i64) -> StoreResult<Vec<StoredKillmail>> {
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM killmail_events ORDER BY occurred_at DESC, killmail_id DESC LIMIT $1"
        );
        let rows: Vec<KmRow> = sqlx::query_as(dynamic_sql(sql))
            .bind(limit.clamp(1, 500))
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows.into_iter().map(row_to_stored).collect())
    }

    async fn known_ids(&self, ids: &[i64]) -> StoreResult<HashSet<i64>> {
        let mut out = HashSet::new();
        for chunk in ids.chunks(rows_per(self.db.backend(), 2)) {
            // Each id bound twice (numbers used once each, so SQLite binds by position).
            let list = |from: usize| {
                (from..from + chunk.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let sql = format!(
                "SELECT killmail_id FROM killmail_events WHERE killmail_id IN ({}) \
                 UNION SELECT killmail_id FROM ingest_rejects WHERE killmail_id IN ({})",
                list(1),
                list(chunk.len() + 1)
            );
            let mut q = sqlx::query_as::<_, (i64,)>(backend_sql(self.db.backend(), sql));
            for id in chunk.iter().chain(chunk) {
                q = q.bind(*id);
            }
            for (id,) in q.fetch_all(self.db.pool()).await? {
                out.insert(id);
            }
        }
        Ok(out)
    }

    async fn day_counts(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> StoreResult<BTreeMap<NaiveDate, i64>> {
        let start = to_millis(from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
        let end = to_millis(
            to.succ_opt()
                .unwrap_or(to)
                .and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc(),
        );
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT occurred_at FROM killmail_events WHERE occurred_at >= $1 AND occurred_at < $2",
        )
        .bind(start)
        .bind(end)
        .fetch_all(self.db.pool())
        .await?;
        let mut out = BTreeMap::new();
        for (ms,) in rows {
            *out.entry(from_millis(ms).date_naive()).or_default() += 1;
        }
        Ok(out)
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        let pool = self.db.pool();
        let mut s = StoreStats::default();
        let by_source: Vec<(String, i64)> =
            sqlx::query_as("SELECT source, COUNT(*) FROM killmail_events GROUP BY source")
                .fetch_all(pool)
                .await?;
        s.killmails_total = by_source.iter().map(|r| r.1).sum();
        s.by_source = by_source.into_iter().collect();
        let counters: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, value FROM ingest_counters")
                .fetch_all(pool)
                .await?;
        for (name, value) in counters {
            match name.as_str() {
                "duplicates" => s.duplicates = value,
                "updates" => s.updates = value,
                "conflicts" => s.conflicts = value,
                _ => {}
            }
        }
        let rejects: Vec<(String, i64)> =
            sqlx::query_as("SELECT reason, COUNT(*) FROM ingest_rejects GROUP BY reason")
                .fetch_all(pool)
                .await?;
        s.rejects_by_reason = rejects.into_iter().collect();
        let (gaps, seqs): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(last_sequence - first_sequence + 1), 0) AS BIGINT) FROM r2z2_gaps",
        )
        .fetch_one(pool)
        .await?;
        s.gaps = gaps;
        s.gap_sequences = seqs;
        s.outbox_pending = self.db.outbox_pending().await?;
        Ok(s)
    }

    async fn gaps(&self, limit: i64) -> StoreResult<Vec<GapRecord>> {
        let rows: Vec<(i64, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT first_sequence, last_sequence, kind, repair_job_id FROM r2z2_gaps ORDER BY first_sequence DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| GapRecord {
                first_sequence: r.0,
                last_sequence: r.1,
                kind: r.2,
                repair_job_id: r.3,
            })
            .collect())
    }

    async fn set_gap_repair(&self, first_sequence: i64, job_id: &str) -> StoreResult<()> {
        sqlx::query("UPDATE r2z2_gaps SET repair_job_id = $1 WHERE first_sequence = $2")
            .bind(job_id)
            .bind(first_sequence)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    async fn ruleset(&self) -> StoreResult<Ruleset> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT body, updated_at FROM rulesets WHERE id = 1")
                .fetch_optional(self.db.pool())
                .await?;
        Ok(match row {
            None => Ruleset::default(),
            Some((body, at)) => {
                let mut r: Ruleset = serde_json::from_str(&body).map_err(other)?;
                r.updated_at = Some(from_millis(at));
                r
            }
        })
    }

    async fn put_ruleset(&self, ruleset: &Ruleset, now: DateTime<Utc>) -> StoreResult<Ruleset> {
        let mut r = ruleset.clone();
        r.updated_at = None;
        let body = serde_json::to_string(&r).map_err(other)?;
        sqlx::query(
            "INSERT INTO rulesets (id, body, updated_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(body)
        .bind(to_millis(now))
        .execute(self.db.pool())
        .await?;
        r.updated_at = Some(from_millis(to_millis(now)));
        Ok(r)
    }

    async fn create_job(&self, j: &JobRecord) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO backfill_jobs ({JOB_COLUMNS}) VALUES ({})",
            (1..=14)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        sqlx::query(dynamic_sql(sql))
            .bind(j.id.clone())
            .bind(j.source.clone())
            .bind(j.from_day.format("%Y-%m-%d").to_string())
            .bind(j.to_day.format("%Y-%m-%d").to_string())
            .bind(j.status.clone())
            .bind(j.note.clone())
            .bind(to_millis(j.created_at))
            .bind(j.started_at.map(to_millis))
            .bind(j.finished_at.map(to_millis))
            .bind(j.days_total)
            .bind(j.days_done)
            .bind(j.killmails_seen)
            .bind(j.killmails_new)
            .bind(j.error.clone())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    async fn job(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM backfill_jobs WHERE id = $1");
        let row: Option<JobRow> = sqlx::query_as(dynamic_sql(sql))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.map(row_to_job))
    }

    async fn jobs(&self, limit: i64) -> StoreResult<Vec<JobRecord>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM backfill_jobs ORDER BY created_at DESC, id DESC LIMIT $1"
        );
        let rows: Vec<JobRow> = sqlx::query_as(dynamic_sql(sql))
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows.into_iter().map(row_to_job).collect())
    }

    async fn transition_job(
        &self,
        id: &str,
        from: &[&str],
        to: &str,
        now: DateTime<Utc>,
        error: Option<&str>,
    ) -> StoreResult<bool> {
        let list = (0..from.len())
            .map(|i| format!("${}", i + 5))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "UPDATE backfill_jobs SET status = $1, \
             started_at = CASE WHEN $1 = 'running' THEN COALESCE(started_at, $2) ELSE started_at END, \
             finished_at = CASE WHEN $1 IN ('completed', 'failed', 'cancelled') THEN $2 ELSE finished_at END, \
             error = COALESCE($3, error) WHERE id = $4 AND status IN ({list})"
        );
        let mut q = sqlx::query(dynamic_sql(sql))
            .bind(to)
            .bind(to_millis(now))
            .bind(error)
            .bind(id);
        for f in from {
            q = q.bind(*f);
        }
        Ok(q.execute(self.db.pool()).await?.rows_affected() > 0)
    }

    async fn done_days(&self, job_id: &str) -> StoreResult<HashSet<NaiveDate>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT day FROM backfill_days WHERE job_id = $1 AND status = 'done'")
                .bind(job_id)
                .fetch_all(self.db.pool())
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(d,)| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
            .collect())
    }

    async fn finish_day(
        &self,
        job_id: &str,
        day: NaiveDate,
        seen: i64,
        new: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO backfill_days (job_id, day, status, killmails_seen, killmails_new, finished_at) VALUES ($1, $2, 'done', $3, $4, $5) \
             ON CONFLICT (job_id, day) DO NOTHING",
        )
        .bind(job_id)
        .bind(day.format("%Y-%m-%d").to_string())
        .bind(seen)
        .bind(new)
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted > 0 {
            sqlx::query(
                "UPDATE backfill_jobs SET days_done = days_done + 1, killmails_seen = killmails_seen + $1, \
                 killmails_new = killmails_new + $2 WHERE id = $3",
            )
            .bind(seen)
            .bind(new)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn skip_days(
        &self,
        job_id: &str,
        days: &[NaiveDate],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        let mut added = 0i64;
        for day in days {
            added += sqlx::query(
                "INSERT INTO backfill_days (job_id, day, status, killmails_seen, killmails_new, finished_at) VALUES ($1, $2, 'done', 0, 0, $3) \
                 ON CONFLICT (job_id, day) DO NOTHING",
            )
            .bind(job_id)
            .bind(day.format("%Y-%m-%d").to_string())
            .bind(to_millis(now))
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
        }
        sqlx::query("UPDATE backfill_jobs SET days_done = days_done + $1 WHERE id = $2")
            .bind(added)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Pipeline, Prepared};

    const REAL: &str = r#"{"attackers":[{"alliance_id":386292982,"character_id":1370443714,"corporation_id":1089040789,"damage_done":536,"final_blow":true,"security_status":-1.5,"ship_type_id":35683,"weapon_type_id":3178}],"killmail_id":96977835,"killmail_time":"2021-11-27T20:43:47Z","solar_system_id":30002355,"victim":{"character_id":2119401469,"corporation_id":1000170,"damage_taken":536,"ship_type_id":588},"killmail_hash":"b2e5daacc5ac754ad9c32c02c6fbacee16126aef","zkb":{"hash":"b2e5daacc5ac754ad9c32c02c6fbacee16126aef","totalValue":1.5e7,"labels":["pvp"]}}"#;

    /// A new killmail's event is stored by reference and expanded by the relay into the
    /// versioned `killmail.ingested` envelope, with the stored body; an update carries its own.
    #[tokio::test]
    async fn a_new_killmail_is_announced_from_its_stored_row() {
        let dir = bs_testkit::temp_dir();
        let db = Database::open(&bs_store::StoreTarget::Sqlite(dir.path().join("i.db")), 0)
            .await
            .unwrap();
        db.migrate(&[bs_store::outbox::MIGRATIONS, crate::MIGRATIONS])
            .await
            .unwrap();
        let store = SqlIngestionStore::new(db.clone());
        let now: DateTime<Utc> = "2026-12-01T08:00:00.123Z".parse().unwrap();
        let Prepared::Accept(k) =
            Pipeline::new(Ruleset::default()).prepare(REAL.as_bytes(), KillmailSource::R2z2, now)
        else {
            panic!("accepted")
        };
        let batch = |k: &NewKillmail| Batch {
            killmails: vec![k.clone()],
            rejects: Vec::new(),
            gaps: Vec::new(),
            cursor: None,
            upsert: true,
        };
        let outcome = store.apply(batch(&k), now).await.unwrap();
        assert_eq!(outcome.inserted, [96977835]);
        let (stored_ref,): (Option<i64>,) = sqlx::query_as("SELECT payload_ref FROM outbox")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(stored_ref, Some(96977835));
        // A small body stays text; a large one is stored compressed; both read back whole.
        let mut big: serde_json::Value = serde_json::from_str(REAL).unwrap();
        big["killmail_id"] = 96977836.into();
        let attacker = big["attackers"][0].clone();
        big["attackers"] = (0..12)
            .map(|i| {
                let mut a = attacker.clone();
                a["character_id"] = (1370443714 + i).into();
                a["final_blow"] = (i == 0).into();
                a
            })
            .collect();
        let Prepared::Accept(large) = Pipeline::new(Ruleset::default()).prepare(
            big.to_string().as_bytes(),
            KillmailSource::File,
            now,
        ) else {
            panic!("accepted")
        };
        assert!(large.raw_data.len() > 1024);
        store.apply(batch(&large), now).await.unwrap();
        let stored: Vec<(i64, String, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT killmail_id, raw_data, raw_zstd FROM killmail_events ORDER BY killmail_id",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(
            (stored[0].1.as_str(), stored[0].2.is_none()),
            (k.raw_data.as_str(), true)
        );
        assert!(stored[1].1.is_empty());
        assert!(
            stored[1]
                .2
                .as_ref()
                .is_some_and(|z| z.len() * 2 < large.raw_data.len())
        );
        for km in [&k, &large] {
            let id = km.killmail.killmail_id;
            assert_eq!(
                store.killmail(id).await.unwrap().unwrap().killmail,
                serde_json::to_value(&km.killmail).unwrap()
            );
        }
        let events = bs_store::outbox::peek(&db, 10).await.unwrap();
        let large_event: KillmailIngested = bs_events::Envelope::from_bytes(events[1].2.as_bytes())
            .unwrap()
            .decode()
            .unwrap();
        assert_eq!(large_event.killmail, large.killmail);
        sqlx::query("DELETE FROM outbox WHERE event_key = '96977836'")
            .execute(db.pool())
            .await
            .unwrap();

        // Re-published with a changed zkb block: an update, with a full payload of its own.
        let mut changed = (*k).clone();
        changed.zkb.as_mut().unwrap().total_value = Some(2.5e7);
        changed.zkb_json = Some(serde_json::to_string(&changed.zkb).unwrap());
        changed.content_hash =
            crate::pipeline::content_hash(&changed.raw_data, changed.zkb_json.as_deref());
        let later = now + chrono::Duration::seconds(5);
        assert_eq!(
            store.apply(batch(&changed), later).await.unwrap().updated,
            [96977835]
        );

        let events = bs_store::outbox::peek(&db, 10).await.unwrap();
        assert_eq!(events.len(), 2);
        let decoded: Vec<(bs_events::Envelope, KillmailIngested)> = events
            .iter()
            .map(|(topic, key, json)| {
                assert_eq!(
                    (topic.as_str(), key.as_str()),
                    ("killmail.ingested", "96977835")
                );
                let env = bs_events::Envelope::from_bytes(json.as_bytes()).unwrap();
                let ev = env.decode().unwrap();
                (env, ev)
            })
            .collect();
        let (env, new) = &decoded[0];
        assert_eq!(
            (env.event_type.as_str(), env.version, env.time),
            ("killmail.ingested", 1, now)
        );
        assert_eq!(new.killmail, k.killmail);
        assert_eq!(new.hash, k.hash);
        assert_eq!(new.source, KillmailSource::R2z2);
        assert_eq!(new.ingested_at, now);
        assert!(!new.is_update);
        // The reference reads the row as it is now: the newer zkb block.
        assert_eq!(new.zkb, changed.zkb);
        let (env, update) = &decoded[1];
        assert_eq!(env.time, later);
        assert!(update.is_update);
        assert_eq!(update.zkb, changed.zkb);
        assert_ne!(decoded[0].0.id, decoded[1].0.id);
    }
}
