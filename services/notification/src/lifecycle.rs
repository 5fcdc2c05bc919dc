//! Data lifecycle in the notification service:
//!
//! * **Forgetting what is gone**: a consumer (own group, [`CONSUMER_GROUP`]) of
//!   `killmail.deleted` and `battle.deleted` removes the history rows and the webhook
//!   deliveries still queued for that killmail or battle. Idempotent: deleting twice is a no-op.
//!   Deliveries already sent are kept as a record of what left the system (no rule names them).
//! * **Retention**: `lifecycle.notification_history_months` (0: keep forever) deletes history
//!   rows older than the cutoff (creation time) in bounded batches, daily at
//!   `lifecycle.retention_at`; runs are recorded in `retention_runs`. Subscriptions, webhooks
//!   and watchlists are never deleted by retention.
//! * `GET /lifecycle`: the rule and recent runs; `POST /admin/retention/run` runs it now.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bs_bus::Delivery;
use bs_config::LifecycleConfig;
use bs_events::{BattleDeleted, Envelope, KillmailDeleted, topics};
use bs_runtime::Clock;
use bs_runtime::retention;
use bs_store::Database;
use bs_store::sqlx;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::domain::payload::{KIND_BATTLE, KIND_KILLMAIL};

pub use bs_runtime::retention::RetentionRun;

/// The consumer group of the deletion consumer.
pub const CONSUMER_GROUP: &str = "notification-lifecycle";
/// The topics it consumes.
pub const TOPICS: &[&str] = &[topics::KILLMAIL_DELETED, topics::BATTLE_DELETED];
pub const NOTIFICATION_HISTORY: &str = "notification_history";

/// Metric names.
pub mod metric {
    /// Counter, label `kind`: rows deleted by retention.
    pub const DELETED: &str = bs_runtime::retention::metric::DELETED;
    /// Counter, label `topic`: history rows dropped because their subject was deleted.
    pub const FORGOTTEN: &str = "battlescope_notification_forgotten_total";
}

/// (kind, subject id) of a deletion record; `None` is a counted rejection.
pub fn subject_of(d: &Delivery) -> Option<(&'static str, i64)> {
    // The key is the id by contract; the payload is checked when it decodes.
    let env = Envelope::from_bytes(&d.payload).ok();
    match d.topic.as_str() {
        topics::KILLMAIL_DELETED => {
            let id = env
                .and_then(|e| e.decode::<KillmailDeleted>().ok())
                .map(|k| k.killmail_id)
                .or_else(|| d.key.parse().ok())?;
            Some((KIND_KILLMAIL, id))
        }
        topics::BATTLE_DELETED => {
            let id = env
                .and_then(|e| e.decode::<BattleDeleted>().ok())
                .map(|b| b.battle_id)
                .or_else(|| d.key.parse().ok())?;
            Some((KIND_BATTLE, id))
        }
        _ => None,
    }
}

/// Drops what a batch of deletions names; returns the history rows removed.
pub async fn forget(
    db: &Database,
    batch: &[Delivery],
    rejected: &AtomicU64,
) -> anyhow::Result<u64> {
    let mut tx = db.begin().await?;
    let mut removed = 0;
    for d in batch {
        let Some((kind, id)) = subject_of(d) else {
            rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = %d.topic, key = %d.key, "rejected deletion record");
            continue;
        };
        removed += sqlx::query("DELETE FROM notifications WHERE kind = $1 AND subject_id = $2")
            .bind(kind)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "DELETE FROM deliveries WHERE kind = $1 AND subject_id = $2 AND state = 'pending'",
        )
        .bind(kind)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        metrics::counter!(metric::FORGOTTEN, "topic" => d.topic.clone()).increment(1);
    }
    tx.commit().await?;
    Ok(removed)
}

/// The newest runs first.
pub async fn runs(db: &Database, limit: i64) -> anyhow::Result<Vec<RetentionRun>> {
    retention::recent_runs(db, limit).await
}

/// Deletes history older than the rule's cutoff in batches; `None` when no rule applies.
pub async fn run_retention(
    db: &Database,
    clock: &dyn Clock,
    config: &LifecycleConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<RetentionRun>> {
    let now = clock.now();
    let Some(cut) = retention::months_cutoff(now, config.notification_history_months) else {
        return Ok(None);
    };
    let limit = i64::from(config.retention_batch.clamp(1, 10_000));
    let run = retention::run_batches(
        db,
        clock,
        &retention::run_id(now),
        NOTIFICATION_HISTORY,
        cut,
        shutdown,
        || history_batch(db, cut.timestamp_millis(), limit),
    )
    .await?;
    Ok(Some(run))
}

/// One batch: the oldest `limit` history rows created before `cutoff_ms`.
async fn history_batch(db: &Database, cutoff_ms: i64, limit: i64) -> anyhow::Result<u64> {
    let mut tx = db.begin().await?;
    let ids: Vec<(i64,)> = sqlx::query_as(
        "SELECT id FROM notifications WHERE created_ms < $1 ORDER BY created_ms, id LIMIT $2",
    )
    .bind(cutoff_ms)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let ids: Vec<i64> = ids.into_iter().map(|(id,)| id).collect();
    let deleted = retention::delete_ids(&mut tx, "notifications", "id", &ids, 64).await?;
    tx.commit().await?;
    Ok(deleted)
}

/// The daily scheduler.
pub struct Retention {
    pub db: Database,
    pub clock: Arc<dyn Clock>,
    pub config: LifecycleConfig,
}

impl Retention {
    pub async fn run(self, shutdown: CancellationToken) {
        let at = self.config.retention_minute().unwrap_or(120);
        let (db, clock, config, token) = (&self.db, &*self.clock, &self.config, &shutdown);
        let job = move || async move { run_retention(db, clock, config, token).await.map(drop) };
        retention::run_daily(
            self.db.clone(),
            Arc::clone(&self.clock),
            at,
            "notification",
            shutdown.clone(),
            job,
        )
        .await;
    }
}

#[derive(Clone)]
pub struct LifecycleState {
    pub db: Database,
    pub clock: Arc<dyn Clock>,
    pub config: LifecycleConfig,
    pub shutdown: CancellationToken,
}

pub fn router(state: LifecycleState) -> Router {
    Router::new()
        .route("/lifecycle", get(status))
        .route("/admin/retention/run", post(run_now))
        .with_state(state)
}

fn internal(e: anyhow::Error) -> Response {
    tracing::error!(error = %e, "notification lifecycle api error");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": "internal error"})),
    )
        .into_response()
}

async fn status(State(s): State<LifecycleState>) -> Response {
    match runs(&s.db, 20).await {
        Ok(r) => Json(json!({
            "retention_at": s.config.retention_at,
            "rules": { NOTIFICATION_HISTORY: s.config.notification_history_months },
            "retention_runs": r,
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn run_now(State(s): State<LifecycleState>) -> Response {
    match run_retention(&s.db, &*s.clock, &s.config, &s.shutdown).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => internal(e),
    }
}
