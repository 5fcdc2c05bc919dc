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

use std::sync::Arc;
use std::time::Duration;

use bs_bus::{EventBus, Record};
use bs_events::Envelope;
use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;

use crate::{Backend, Database, MigrationSet, StoreError, StoreResult};

/// The outbox table, for every database that publishes.
pub const MIGRATIONS: MigrationSet =
    crate::migrations!("outbox", [(1, "outbox"), (2, "outbox_zstd")]);

/// Rows moved per relay iteration.
const BATCH: i64 = 1000;

/// Payloads shorter than this stay text: compressing them saves little.
const COMPRESS_FROM: usize = 1024;

/// zstd level 1: about 3.5× on killmail JSON at several hundred MB/s per core.
const ZSTD_LEVEL: i32 = 1;

/// Rows per multi-row insert (5 parameters each).
const ROWS_PER_INSERT: usize = 200;

/// An event body as stored: JSON text, or zstd-compressed JSON when it is large.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Text(String),
    Zstd(Vec<u8>),
}

impl Payload {
    /// Stores `json` compressed when that pays. CPU only, so callers with a spare
    /// core (bulk import) can encode before they take the write lock.
    pub fn encode(json: String) -> Self {
        if json.len() < COMPRESS_FROM {
            return Self::Text(json);
        }
        // One compression context per thread: creating one per call cost more than
        // compressing a killmail.
        let compressed = COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
            }
            c.as_mut().and_then(|c| c.compress(json.as_bytes()).ok())
        });
        match compressed {
            // The compressor returns a buffer of `compress_bound` capacity (≈ the input size)
            // holding ≈ 30 % of it: shrink it, or each payload waiting in an import chunk keeps
            // ~3 KB of slack (31 MB at the import's peak in a heaptrack of the week).
            Some(mut z) if z.len() < json.len() => {
                z.shrink_to_fit();
                Self::Zstd(z)
            }
            _ => Self::Text(json),
        }
    }

    /// The JSON text.
    pub fn decode(&self) -> StoreResult<String> {
        match self {
            Self::Text(s) => Ok(s.clone()),
            Self::Zstd(z) => decompress(z),
        }
    }

    /// Bytes this payload occupies in the table.
    pub fn stored_len(&self) -> usize {
        match self {
            Self::Text(s) => s.len(),
            Self::Zstd(z) => z.len(),
        }
    }
}

thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
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
    let backend = if conn.backend_name() == "PostgreSQL" {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO outbox (topic, event_key, payload, payload_zstd, created_at) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let b = i * 5;
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            ));
        }
        let mut q = sqlx::query(crate::backend_sql(backend, sql));
        for r in chunk {
            let (text, blob) = match &r.payload {
                Payload::Text(s) => (s.clone(), None),
                Payload::Zstd(z) => (String::new(), Some(z.clone())),
            };
            q = q
                .bind(r.topic.clone())
                .bind(r.key.clone())
                .bind(text)
                .bind(blob)
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
    let time = serde_json::to_string(&time).unwrap_or_default();
    let key = serde_json::to_string(key).unwrap_or_default();
    let event_type = serde_json::to_string(event_type).unwrap_or_default();
    format!(
        "{{\"id\":\"{}\",\"type\":{event_type},\"version\":{version},\"time\":{time},\"key\":{key},\"payload\":{payload_json}}}",
        uuid::Uuid::now_v7()
    )
}

/// Events waiting in the outbox, oldest first, as `(topic, key, JSON)`: for tests and
/// diagnostics (the relay is what publishes them).
pub async fn peek(db: &Database, limit: i64) -> StoreResult<Vec<(String, String, String)>> {
    let rows: Vec<(String, String, String, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT topic, event_key, payload, payload_zstd FROM outbox ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(topic, key, text, blob)| {
            let json = match blob {
                Some(z) => decompress(&z)?,
                None => text,
            };
            Ok((topic, key, json))
        })
        .collect()
}

impl Database {
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

/// `(id, topic, key, text payload, compressed payload)` as the relay reads them.
type RelayRow = (i64, String, String, String, Option<Vec<u8>>);

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
        let rows: Vec<RelayRow> = sqlx::query_as(
            "SELECT id, topic, event_key, payload, payload_zstd FROM outbox ORDER BY id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last_id) = rows.last().map(|r| r.0) else {
            return Ok(0);
        };
        // Publish consecutive runs of one topic together, preserving the global id order.
        let mut start = 0;
        while start < rows.len() {
            let topic = &rows[start].1;
            let end = rows[start..]
                .iter()
                .position(|r| &r.1 != topic)
                .map_or(rows.len(), |p| start + p);
            let records = rows[start..end]
                .iter()
                .map(|(_, _, key, text, blob)| {
                    let payload = match blob {
                        Some(z) => decompress(z)?,
                        None => text.clone(),
                    };
                    Ok(Record {
                        key: key.clone(),
                        payload: payload.into_bytes().into(),
                    })
                })
                .collect::<StoreResult<Vec<Record>>>()?;
            self.bus
                .publish(topic, &records)
                .await
                .map_err(|e| crate::StoreError::Other(e.to_string()))?;
            metrics::counter!("battlescope_outbox_published_total", "topic" => topic.clone())
                .increment(records.len() as u64);
            start = end;
        }
        sqlx::query("DELETE FROM outbox WHERE id <= $1")
            .bind(last_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.len())
    }
}
