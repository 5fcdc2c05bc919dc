//! The transactional outbox.
//!
//! A service never publishes directly after a commit (a crash in between would
//! lose the event). It calls [`enqueue`] inside the transaction that changes
//! its state; [`OutboxRelay`] later publishes the rows in id order and deletes
//! them once the bus has them. A crash between publish and delete republishes
//! a batch: delivery is at least once and consumers are idempotent.

use std::sync::Arc;
use std::time::Duration;

use bs_bus::{EventBus, Record};
use bs_events::Envelope;
use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;

use crate::{Backend, Database, MigrationSet, StoreResult};

/// The outbox table, for every database that publishes.
pub const MIGRATIONS: MigrationSet = crate::migrations!("outbox", [(1, "outbox")]);

/// Rows moved per relay iteration.
const BATCH: i64 = 1000;

/// Adds an event to the outbox within the caller's transaction.
pub async fn enqueue(conn: &mut AnyConnection, envelope: &Envelope) -> StoreResult<()> {
    let payload =
        serde_json::to_string(envelope).map_err(|e| crate::StoreError::Other(e.to_string()))?;
    sqlx::query(
        "INSERT INTO outbox (topic, event_key, payload, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&envelope.event_type)
    .bind(&envelope.key)
    .bind(payload)
    .bind(envelope.time.timestamp_millis())
    .execute(conn)
    .await?;
    Ok(())
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
        let rows: Vec<(i64, String, String, String)> =
            sqlx::query_as("SELECT id, topic, event_key, payload FROM outbox ORDER BY id LIMIT $1")
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
            let records: Vec<Record> = rows[start..end]
                .iter()
                .map(|(_, _, key, payload)| Record {
                    key: key.clone(),
                    payload: payload.clone().into_bytes().into(),
                })
                .collect();
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
