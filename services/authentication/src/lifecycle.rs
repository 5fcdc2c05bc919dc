//! Audit-log retention (#12): `lifecycle.audit_log_days` (0: keep forever) removes audit
//! entries older than the cutoff, daily in the two hours after `lifecycle.retention_at`
//! (never at start-up), in batches of `lifecycle.retention_batch`, one transaction each.
//!
//! The log is hash-chained and the schema refuses UPDATE/DELETE, so a prune first writes
//! an anchor (seq and hash of the last entry it removes) and only then deletes the prefix
//! the anchor covers (the delete trigger allows nothing else); verification starts from
//! the newest anchor. Each batch appends, in its own transaction, an `audit.pruned` entry
//! (count, cutoff, the anchor) to the chain itself, so every prune is on record in what
//! remains and verification can tell an anchor the service wrote from one it did not.
//! Runs (totals) are recorded in `retention_runs`; `GET /lifecycle` shows the rule, the
//! newest anchor and the recent runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bs_config::LifecycleConfig;
use bs_runtime::Clock;
use bs_store::Database;
use bs_store::sqlx::{self, Row as _};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::store::AuthStore;

/// The retention kind (rules, runs, metrics label).
pub const AUDIT_LOG: &str = "audit_log";

/// Metric names.
pub mod metric {
    /// Counter, label `kind`: rows deleted by retention (shared with the other services).
    pub const DELETED: &str = "battlescope_retention_cleanup_deleted_total";
    /// Counter, labels `kind`, `status`: retention runs (shared with the other services).
    pub const RUNS: &str = "battlescope_retention_cleanup_runs_total";
    /// Gauge, label `kind`: unix seconds of the last finished run.
    pub const LAST_RUN: &str = "battlescope_retention_cleanup_last_run_timestamp";
}

/// One retention run.
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

/// Prunes the audit log up to the rule's cutoff in batches; `None` when no rule applies.
pub async fn run_retention(
    store: &dyn AuthStore,
    db: &Database,
    clock: &dyn Clock,
    config: &LifecycleConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<RetentionRun>> {
    let now = clock.now();
    if config.audit_log_days == 0 {
        return Ok(None);
    }
    let Some(cut) = now.checked_sub_signed(TimeDelta::days(i64::from(config.audit_log_days)))
    else {
        return Ok(None);
    };
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut r = RetentionRun {
        id: format!("{}-{}", ms(now), SEQ.fetch_add(1, Ordering::Relaxed)),
        kind: AUDIT_LOG.into(),
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
            let Some(a) = store.prune_audit_batch(cut, limit, clock.now()).await? else {
                break;
            };
            r.deleted += a.pruned;
            r.batches += 1;
            metrics::counter!(metric::DELETED, "kind" => AUDIT_LOG)
                .increment(u64::try_from(a.pruned).unwrap_or(0));
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
    metrics::counter!(metric::RUNS, "kind" => AUDIT_LOG, "status" => r.status.clone()).increment(1);
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(metric::LAST_RUN, "kind" => AUDIT_LOG).set(clock.now().timestamp() as f64);
    save(db, &r).await?;
    Ok(Some(r))
}

/// The daily scheduler.
pub struct Retention {
    pub store: Arc<dyn AuthStore>,
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
                && let Err(e) = run_retention(
                    &*self.store,
                    &self.db,
                    &*self.clock,
                    &self.config,
                    &shutdown,
                )
                .await
            {
                tracing::warn!(error = %e, "audit retention failed");
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
    pub store: Arc<dyn AuthStore>,
    pub db: Database,
    pub config: LifecycleConfig,
}

/// `GET /lifecycle` (read-only, like the other services' documents).
pub fn router(state: LifecycleState) -> Router {
    Router::new()
        .route("/lifecycle", get(status))
        .with_state(state)
}

fn internal(e: anyhow::Error) -> Response {
    tracing::error!(error = %e, "authentication lifecycle api error");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": "internal error"})),
    )
        .into_response()
}

async fn status(State(s): State<LifecycleState>) -> Response {
    let anchor = match s.store.audit_anchor().await {
        Ok(a) => a,
        Err(e) => return internal(e.into()),
    };
    match runs(&s.db, 20).await {
        // Rules are in days here (the other services' are months); the key says so.
        Ok(r) => Json(json!({
            "retention_at": s.config.retention_at,
            "rules": { "audit_log_days": s.config.audit_log_days },
            "audit_anchor": anchor,
            "retention_runs": r,
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}
