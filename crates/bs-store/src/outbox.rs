//! The transactional outbox.
//!
//! A service never publishes directly after a commit (a crash in between would
//! lose the event). It calls [`enqueue`] (or [`enqueue_rows`] for many events at
//! once) inside the transaction that changes its state; [`OutboxRelay`] later
//! publishes the rows in id order and deletes them once the bus has them. A crash
//! between publish and delete republishes a batch: delivery is at least once and
//! consumers are idempotent.
//!
//! Large payloads are stored zstd-compressed ([`Payload`]): killmail events are
//! several KB of repetitive JSON, and on SQLite every byte is written twice (WAL,
//! then checkpoint), so the outbox was a large share of a service's write volume.
//! The relay publishes the decompressed JSON; nothing on the bus changes.
//!
//! A service whose event body is a row it writes anyway in the same transaction
//! (a stored killmail, an enriched killmail) enqueues the event **by reference**
//! ([`Payload::Reference`]): the outbox row holds the event id and the row's key,
//! and the relay assembles the envelope from that row, in its own transaction,
//! through the [`OutboxExpander`] the service registered for the topic
//! ([`Database::register_outbox_expander`]). The body is then written and
//! compressed once instead of twice. A reference whose row is gone by the time the
//! relay runs (retention removed it) is skipped, logged and counted
//! (`battlescope_outbox_unresolved_total`): there is nothing left to announce.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use bs_bus::{EventBus, Record};
use bs_events::Envelope;
use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;

use crate::{Backend, Database, MigrationSet, StoreError, StoreResult};

/// The outbox table, for every database that publishes.
pub const MIGRATIONS: MigrationSet = crate::migrations!(
    "outbox",
    [(1, "outbox"), (2, "outbox_zstd"), (3, "outbox_ref")]
);

/// Rows moved per relay iteration.
const BATCH: i64 = 1000;

/// Payloads shorter than this stay text: compressing them saves little.
const COMPRESS_FROM: usize = 1024;

/// zstd level 1: about 3.5× on killmail JSON at several hundred MB/s per core.
const ZSTD_LEVEL: i32 = 1;

/// Rows per multi-row insert (6 parameters each).
const ROWS_PER_INSERT: usize = 200;

/// An event as stored: its JSON text, zstd-compressed JSON when it is large, or a
/// reference to a row of the service's own tables that the relay expands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Text(String),
    Zstd(Vec<u8>),
    /// The event `event_id`, whose payload the topic's [`OutboxExpander`] reads from
    /// the row named `reference` (a killmail id, say) when the relay publishes it.
    Reference {
        event_id: uuid::Uuid,
        reference: i64,
    },
}

impl Payload {
    /// A new event stored by reference (see the module docs).
    pub fn reference(reference: i64) -> Self {
        Self::Reference {
            event_id: uuid::Uuid::now_v7(),
            reference,
        }
    }

    /// Stores `json` compressed when that pays. CPU only, so callers with a spare
    /// core (bulk import) can encode before they take the write lock.
    pub fn encode(json: String) -> Self {
        match Self::compress(&json) {
            Some(z) => Self::Zstd(z),
            None => Self::Text(json),
        }
    }

    /// [`Payload::encode`] from a borrow: only text stored as text is copied.
    pub fn encode_str(text: &str) -> Self {
        match Self::compress(text) {
            Some(z) => Self::Zstd(z),
            None => Self::Text(text.to_owned()),
        }
    }

    /// `text` zstd-compressed when that pays (long enough and smaller), else `None`: for
    /// callers that keep the text anyway and store the compressed form beside it.
    pub fn compress(text: &str) -> Option<Vec<u8>> {
        if text.len() < COMPRESS_FROM {
            return None;
        }
        // One compression context and output buffer per thread: creating a context per call
        // cost more than compressing a killmail, and the frame is copied out at its exact
        // size (a buffer of `compress_bound` capacity holds ≈ 30 % of it; kept per payload,
        // that slack was 31 MB at the import's peak in a heaptrack of the week).
        COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            let (compressor, buffer) = &mut *c;
            if compressor.is_none() {
                *compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
            }
            buffer.clear();
            buffer.reserve(zstd::zstd_safe::compress_bound(text.len()));
            let n = compressor
                .as_mut()?
                .compress_to_buffer(text.as_bytes(), buffer)
                .ok()?;
            (n < text.len()).then(|| buffer[..n].to_vec())
        })
    }

    /// The JSON text (a reference has none of its own: the relay expands it).
    pub fn decode(&self) -> StoreResult<String> {
        match self {
            Self::Text(s) => Ok(s.clone()),
            Self::Zstd(z) => decompress(z),
            Self::Reference { reference, .. } => Err(StoreError::Other(format!(
                "outbox payload: reference {reference} is expanded by the relay"
            ))),
        }
    }

    /// Bytes this payload occupies in the table.
    pub fn stored_len(&self) -> usize {
        match self {
            Self::Text(s) => s.len(),
            Self::Zstd(z) => z.len(),
            Self::Reference { .. } => 36 + 8,
        }
    }
}

thread_local! {
    static COMPRESSOR: std::cell::RefCell<(Option<zstd::bulk::Compressor<'static>>, Vec<u8>)> =
        const { std::cell::RefCell::new((None, Vec::new())) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Payloads are single frames that record their size (what `Compressor` writes).
fn decompress(z: &[u8]) -> StoreResult<String> {
    let bad = |e: &dyn std::fmt::Display| StoreError::Other(format!("outbox payload: {e}"));
    let size = match zstd::zstd_safe::get_frame_content_size(z) {
        Ok(Some(n)) => usize::try_from(n).map_err(|e| bad(&e))?,
        _ => return Err(bad(&"not a zstd frame with a content size")),
    };
    let bytes = DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new().map_err(|e| bad(&e))?);
        }
        match d.as_mut() {
            Some(d) => d.decompress(z, size).map_err(|e| bad(&e)),
            None => Err(bad(&"no decompressor")),
        }
    })?;
    String::from_utf8(bytes).map_err(|e| bad(&e))
}

/// One event to enqueue, already serialised (see [`envelope_json`]).
#[derive(Clone, Debug)]
pub struct OutboxRow {
    pub topic: String,
    pub key: String,
    /// Unix milliseconds (the envelope's time).
    pub created_at: i64,
    pub payload: Payload,
}

/// Adds an event to the outbox within the caller's transaction.
pub async fn enqueue(conn: &mut AnyConnection, envelope: &Envelope) -> StoreResult<()> {
    let payload =
        serde_json::to_string(envelope).map_err(|e| crate::StoreError::Other(e.to_string()))?;
    enqueue_rows(
        conn,
        &[OutboxRow {
            topic: envelope.event_type.clone(),
            key: envelope.key.clone(),
            created_at: envelope.time.timestamp_millis(),
            payload: Payload::encode(payload),
        }],
    )
    .await
}

/// Adds many events within the caller's transaction, in order, in few statements.
pub async fn enqueue_rows(conn: &mut AnyConnection, rows: &[OutboxRow]) -> StoreResult<()> {
    let backend = Backend::of(conn);
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO outbox (topic, event_key, payload, payload_zstd, payload_ref, created_at) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let b = i * 6;
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6
            ));
        }
        let mut q = sqlx::query(crate::backend_sql(backend, sql));
        for r in chunk {
            let (text, blob, reference) = match &r.payload {
                Payload::Text(s) => (s.clone(), None, None),
                Payload::Zstd(z) => (String::new(), Some(z.clone()), None),
                Payload::Reference {
                    event_id,
                    reference,
                } => (event_id.to_string(), None, Some(*reference)),
            };
            q = q
                .bind(r.topic.clone())
                .bind(r.key.clone())
                .bind(text)
                .bind(blob)
                .bind(reference)
                .bind(r.created_at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The wire form of an [`Envelope`] (what `serde_json::to_string(&envelope)` writes)
/// around an already serialised payload, so a bulk writer serialises each event once
/// instead of building a JSON tree and serialising it again.
pub fn envelope_json(
    event_type: &str,
    version: u32,
    time: chrono::DateTime<chrono::Utc>,
    key: &str,
    payload_json: &str,
) -> String {
    envelope_json_with_id(
        uuid::Uuid::now_v7(),
        event_type,
        version,
        time,
        key,
        payload_json,
    )
}

/// [`envelope_json`] with a given event id (a reference row keeps the id it was enqueued with).
pub fn envelope_json_with_id(
    id: uuid::Uuid,
    event_type: &str,
    version: u32,
    time: chrono::DateTime<chrono::Utc>,
    key: &str,
    payload_json: &str,
) -> String {
    let time = serde_json::to_string(&time).unwrap_or_default();
    let key = serde_json::to_string(key).unwrap_or_default();
    let event_type = serde_json::to_string(event_type).unwrap_or_default();
    format!(
        "{{\"id\":\"{id}\",\"type\":{event_type},\"version\":{version},\"time\":{time},\"key\":{key},\"payload\":{payload_json}}}"
    )
}

/// Events waiting in the outbox, oldest first, as `(topic, key, JSON)`: for tests and
/// diagnostics (the relay is what publishes them). References are expanded as the relay
/// would; one whose row is gone is left out.
pub async fn peek(db: &Database, limit: i64) -> StoreResult<Vec<(String, String, String)>> {
    let mut conn = db.pool().acquire().await?;
    let rows: Vec<RelayRow> = sqlx::query_as(SELECT_ROWS)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for run in topic_runs(&rows) {
        let payloads = payloads(db, &mut conn, run).await?;
        for (row, payload) in run.iter().zip(payloads) {
            if let Some(json) = payload {
                out.push((row.1.clone(), row.2.clone(), json));
            }
        }
    }
    Ok(out)
}

/// Reads the payloads of events a service enqueued by reference ([`Payload::Reference`]).
#[async_trait]
pub trait OutboxExpander: Send + Sync {
    /// The payload JSON (the envelope's `payload`) and its version for each of
    /// `references` that still exists, read through `conn`, the relay's transaction.
    async fn expand(
        &self,
        conn: &mut AnyConnection,
        references: &[i64],
    ) -> StoreResult<HashMap<i64, Expanded>>;
}

/// A referenced event's body, as an [`OutboxExpander`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expanded {
    /// The event's schema version (the envelope's `version`).
    pub version: u32,
    /// The event's payload, serialised.
    pub payload_json: String,
}

/// The expanders a database's writers registered, by topic.
#[derive(Default)]
pub(crate) struct Expanders(std::sync::RwLock<HashMap<String, Arc<dyn OutboxExpander>>>);

impl std::fmt::Debug for Expanders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics: Vec<String> = self
            .0
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_tuple("Expanders").field(&topics).finish()
    }
}

impl Database {
    /// Registers how events of `topic` enqueued by reference are expanded. The store that
    /// writes such rows registers it when it is built, so every relay and [`peek`] on this
    /// database (and its clones) can publish them.
    pub fn register_outbox_expander(&self, topic: &str, expander: Arc<dyn OutboxExpander>) {
        if let Ok(mut m) = self.outbox_expanders.0.write() {
            m.insert(topic.to_owned(), expander);
        }
    }

    fn outbox_expander(&self, topic: &str) -> Option<Arc<dyn OutboxExpander>> {
        self.outbox_expanders
            .0
            .read()
            .ok()
            .and_then(|m| m.get(topic).cloned())
    }

    /// Tells the relay that a committed transaction enqueued events. Call after `commit`.
    pub fn outbox_notify(&self) {
        self.outbox_signal.notify_one();
    }

    /// Rows waiting to be published.
    pub async fn outbox_pending(&self) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox")
            .fetch_one(self.pool())
            .await?;
        Ok(n)
    }
}

/// `(id, topic, key, text payload or event id, compressed payload, reference, created at)` as
/// the relay reads them.
type RelayRow = (
    i64,
    String,
    String,
    String,
    Option<Vec<u8>>,
    Option<i64>,
    i64,
);

const SELECT_ROWS: &str = "SELECT id, topic, event_key, payload, payload_zstd, payload_ref, created_at \
                           FROM outbox ORDER BY id LIMIT $1";

/// Consecutive runs of one topic, in id order: each run is published (and expanded) together.
fn topic_runs(rows: &[RelayRow]) -> Vec<&[RelayRow]> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let topic = &rows[start].1;
        let end = rows[start..]
            .iter()
            .position(|r| &r.1 != topic)
            .map_or(rows.len(), |p| start + p);
        runs.push(&rows[start..end]);
        start = end;
    }
    runs
}

/// The envelope JSON of each row of one topic's run, `None` for a reference whose row is gone.
async fn payloads(
    db: &Database,
    conn: &mut AnyConnection,
    run: &[RelayRow],
) -> StoreResult<Vec<Option<String>>> {
    let Some(topic) = run.first().map(|r| r.1.as_str()) else {
        return Ok(Vec::new());
    };
    let references: Vec<i64> = run.iter().filter_map(|r| r.5).collect();
    let expanded = if references.is_empty() {
        HashMap::new()
    } else {
        let expander = db.outbox_expander(topic).ok_or_else(|| {
            // Publishing without it would lose the events: fail, and retry once registered.
            StoreError::Other(format!("outbox: no expander registered for `{topic}`"))
        })?;
        expander.expand(conn, &references).await?
    };
    run.iter()
        .map(|(_, topic, key, text, blob, reference, created_at)| {
            Ok(match (reference, blob) {
                (Some(reference), _) => match expanded.get(reference) {
                    Some(e) => Some(envelope_json_with_id(
                        uuid::Uuid::parse_str(text).map_err(|e| {
                            StoreError::Other(format!("outbox: reference event id: {e}"))
                        })?,
                        topic,
                        e.version,
                        crate::from_millis(*created_at),
                        key,
                        &e.payload_json,
                    )),
                    None => {
                        metrics::counter!("battlescope_outbox_unresolved_total", "topic" => topic.clone())
                            .increment(1);
                        tracing::warn!(
                            database = db.label(),
                            topic = %topic,
                            reference,
                            "outbox event refers to a row that no longer exists; skipped"
                        );
                        None
                    }
                },
                (None, Some(z)) => Some(decompress(z)?),
                (None, None) => Some(text.clone()),
            })
        })
        .collect()
}

/// Moves outbox rows to the bus.
pub struct OutboxRelay {
    db: Database,
    bus: Arc<dyn EventBus>,
    /// How long to sleep when no one signalled; covers other processes writing the same database.
    idle_poll: Duration,
}

impl OutboxRelay {
    pub fn new(db: Database, bus: Arc<dyn EventBus>) -> Self {
        Self {
            db,
            bus,
            idle_poll: Duration::from_millis(250),
        }
    }

    /// Runs until `shutdown`, then drains what is already committed.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.relay_once().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => {
                    metrics::counter!("battlescope_outbox_errors_total", "database" => self.db.label().to_owned()).increment(1);
                    tracing::warn!(database = self.db.label(), error = %e, "outbox relay failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
            if shutdown.is_cancelled() {
                // A final pass so a graceful stop leaves nothing behind.
                let _ = self.relay_once().await;
                return;
            }
            tokio::select! {
                _ = self.db.outbox_signal.notified() => {}
                _ = tokio::time::sleep(self.idle_poll) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// Publishes one batch in id order; returns how many rows it moved.
    pub async fn relay_once(&self) -> StoreResult<usize> {
        let mut tx = self.db.begin().await?;
        if self.db.backend() == Backend::Postgres {
            // One relay at a time per database keeps per-key order across replicas.
            let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock(7106)")
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                return Ok(0);
            }
        }
        let rows: Vec<RelayRow> = sqlx::query_as(SELECT_ROWS)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        let Some(last_id) = rows.last().map(|r| r.0) else {
            return Ok(0);
        };
        // Consecutive runs of one topic are published together, preserving the global id order.
        for run in topic_runs(&rows) {
            let topic = &run[0].1;
            let records: Vec<Record> = run
                .iter()
                .zip(payloads(&self.db, &mut tx, run).await?)
                .filter_map(|(row, payload)| {
                    payload.map(|json| Record {
                        key: row.2.clone(),
                        payload: json.into_bytes().into(),
                    })
                })
                .collect();
            if records.is_empty() {
                continue;
            }
            self.bus
                .publish(topic, &records)
                .await
                .map_err(|e| crate::StoreError::Other(e.to_string()))?;
            metrics::counter!("battlescope_outbox_published_total", "topic" => topic.clone())
                .increment(records.len() as u64);
        }
        sqlx::query("DELETE FROM outbox WHERE id <= $1")
            .bind(last_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.len())
    }
}
