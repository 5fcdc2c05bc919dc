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
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bs_bus::Delivery;
use bs_config::LifecycleConfig;
use bs_events::{BattleDeleted, Envelope, KillmailDeleted, topics};
use bs_runtime::Clock;
use bs_store::sqlx::{self, Row};
use bs_store::{Database, dynamic_sql};
use chrono::{DateTime, Months, Utc};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::domain::payload::{KIND_BATTLE, KIND_KILLMAIL};

/// The consumer group of the deletion consumer.
pub const CONSUMER_GROUP: &str = "notification-lifecycle";
/// The topics it consumes.
pub const TOPICS: &[&str] = &[topics::KILLMAIL_DELETED, topics::BATTLE_DELETED];
pub const NOTIFICATION_HISTORY: &str = "notification_history";

/// Metric names.
pub mod metric {
    /// Counter, label `kind`: rows deleted by retention.
    pub const DELETED: &str = "battlescope_retention_cleanup_deleted_total";
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

/// One retention run of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetentionRun {
    pub id: String,
    pub kind: String,
    pub cutoff: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deleted: i64,
    pub batches: i64,
    pub status: String,
    pub error: Option<String>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

async fn save(db: &Database, r: &RetentionRun) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO retention_runs (id, kind, cutoff_ms, started_at, finished_at, deleted, batches, status, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id, kind) DO UPDATE SET finished_at = excluded.finished_at, \
         deleted = excluded.deleted, batches = excluded.batches, status = excluded.status, error = excluded.error",
    )
    .bind(r.id.clone())
    .bind(r.kind.clone())
    .bind(ms(r.cutoff))
    .bind(ms(r.started_at))
    .bind(r.finished_at.map(ms))
    .bind(r.deleted)
    .bind(r.batches)
    .bind(r.status.clone())
    .bind(r.error.clone())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The newest runs first.
pub async fn runs(db: &Database, limit: i64) -> anyhow::Result<Vec<RetentionRun>> {
    let rows = sqlx::query(
        "SELECT id, kind, cutoff_ms, started_at, finished_at, deleted, batches, status, error FROM retention_runs \
         ORDER BY started_at DESC LIMIT $1",
    )
    .bind(limit.clamp(1, 500))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RetentionRun {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                cutoff: from_ms(r.try_get(2)?),
                started_at: from_ms(r.try_get(3)?),
                finished_at: r.try_get::<Option<i64>, _>(4)?.map(from_ms),
                deleted: r.try_get(5)?,
                batches: r.try_get(6)?,
                status: r.try_get(7)?,
                error: r.try_get(8)?,
            })
        })
        .collect()
}

/// Deletes history older than the rule's cutoff in batches; `None` when no rule applies.
pub async fn run_retention(
    db: &Database,
    clock: &dyn Clock,
    config: &LifecycleConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<RetentionRun>> {
    let now = clock.now();
    if config.notification_history_months == 0 {
        return Ok(None);
    }
    let Some(cut) = now.checked_sub_months(Months::new(config.notification_history_months)) else {
        return Ok(None);
    };
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut r = RetentionRun {
        id: format!("{}-{}", ms(now), SEQ.fetch_add(1, Ordering::Relaxed)),
        kind: NOTIFICATION_HISTORY.into(),
        cutoff: cut,
        started_at: now,
        finished_at: None,
        deleted: 0,
        batches: 0,
        status: "running".into(),
        error: None,
    };
    save(db, &r).await?;
    let limit = i64::from(config.retention_batch.clamp(1, 10_000));
    let result: anyhow::Result<()> = async {
        while !shutdown.is_cancelled() {
            let mut tx = db.begin().await?;
            let ids: Vec<(i64,)> = sqlx::query_as(
                "SELECT id FROM notifications WHERE created_ms < $1 ORDER BY created_ms, id LIMIT $2",
            )
            .bind(ms(cut))
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            if ids.is_empty() {
                break;
            }
            for chunk in ids.chunks(64) {
                let l = (1..=chunk.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let mut q = sqlx::query(dynamic_sql(format!(
                    "DELETE FROM notifications WHERE id IN ({l})"
                )));
                for (id,) in chunk {
                    q = q.bind(*id);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            r.deleted += ids.len() as i64;
            r.batches += 1;
            metrics::counter!(metric::DELETED, "kind" => NOTIFICATION_HISTORY)
                .increment(ids.len() as u64);
        }
        Ok(())
    }
    .await;
    r.finished_at = Some(clock.now());
    match result {
        Ok(()) => r.status = "completed".into(),
        Err(e) => {
            r.status = "failed".into();
            r.error = Some(e.to_string());
        }
    }
    save(db, &r).await?;
    Ok(Some(r))
}

/// The daily scheduler.
pub struct Retention {
    pub db: Database,
    pub clock: Arc<dyn Clock>,
    pub config: LifecycleConfig,
}

impl Retention {
    pub async fn run(self, shutdown: CancellationToken) {
        use chrono::Timelike as _;
        let at = self.config.retention_minute().unwrap_or(120);
        loop {
            let now = self.clock.now();
            let today_at = now
                .date_naive()
                .and_hms_opt(at / 60, at % 60, 0)
                .unwrap_or_default()
                .and_utc();
            let last = runs(&self.db, 1)
                .await
                .ok()
                .and_then(|r| r.first().map(|r| r.started_at));
            let minute = now.hour() * 60 + now.minute();
            // Only in the two hours after the configured time (no deletion at start-up).
            let due = minute >= at && minute < at + 120 && last.is_none_or(|t| t < today_at);
            if due
                && let Err(e) = run_retention(&self.db, &*self.clock, &self.config, &shutdown).await
            {
                tracing::warn!(error = %e, "notification retention failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
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
