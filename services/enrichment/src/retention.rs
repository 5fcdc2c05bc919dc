//! Retention of enriched killmails (`lifecycle.enriched_killmails_months`, 0: keep forever):
//! rows of `enriched_killmails` whose kill time is older than the cutoff are deleted in
//! bounded batches, each batch one transaction with one `killmail.deleted` (scope `enriched`)
//! per row in the outbox, so search and notifications drop them too. Names, the ESI cache
//! and prices are named by no rule and never deleted. Runs are recorded in `retention_runs`;
//! the scheduler runs once a day in the two hours after `lifecycle.retention_at` (never
//! offline: the demo's bundled fights are years old). `GET /lifecycle` and
//! `POST /admin/retention/run` expose it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bs_config::LifecycleConfig;
use bs_events::{DeletionReason, Envelope, KillmailDeleted};
use bs_runtime::Clock;
use bs_store::sqlx::{self, Row};
use bs_store::{Database, dynamic_sql};
use chrono::{DateTime, Months, Utc};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub const ENRICHED_KILLMAILS: &str = "enriched_killmails";

/// Counter, label `kind`: rows deleted by retention.
pub const METRIC_DELETED: &str = "battlescope_retention_cleanup_deleted_total";

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
    .bind(r.cutoff.timestamp_millis())
    .bind(r.started_at.timestamp_millis())
    .bind(r.finished_at.map(|t| t.timestamp_millis()))
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

/// Deletes enriched killmails past the cutoff; `None` when no rule applies.
pub async fn run(
    db: &Database,
    clock: &dyn Clock,
    config: &LifecycleConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<RetentionRun>> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = clock.now();
    if config.enriched_killmails_months == 0 {
        return Ok(None);
    }
    let Some(cut) = now.checked_sub_months(Months::new(config.enriched_killmails_months)) else {
        return Ok(None);
    };
    let mut r = RetentionRun {
        id: format!(
            "{}-{}",
            now.timestamp_millis(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ),
        kind: ENRICHED_KILLMAILS.into(),
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
            let rows: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT killmail_id, killmail_time FROM enriched_killmails WHERE killmail_time < $1 \
                 ORDER BY killmail_time, killmail_id LIMIT $2",
            )
            .bind(cut.timestamp_millis())
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                break;
            }
            for chunk in rows.chunks(64) {
                let l = (1..=chunk.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let mut q = sqlx::query(dynamic_sql(format!(
                    "DELETE FROM enriched_killmails WHERE killmail_id IN ({l})"
                )));
                for (id, _) in chunk {
                    q = q.bind(*id);
                }
                q.execute(&mut *tx).await?;
            }
            for (id, at) in &rows {
                let e = KillmailDeleted {
                    killmail_id: *id,
                    killmail_time: from_ms(*at),
                    scope: "enriched".into(),
                    reason: DeletionReason::Retention,
                };
                bs_store::outbox::enqueue(&mut tx, &Envelope::wrap(&e, now)?).await?;
            }
            tx.commit().await?;
            db.outbox_notify();
            r.deleted += rows.len() as i64;
            r.batches += 1;
            metrics::counter!(METRIC_DELETED, "kind" => ENRICHED_KILLMAILS)
                .increment(rows.len() as u64);
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
            let due = minute >= at && minute < at + 120 && last.is_none_or(|t| t < today_at);
            if due && let Err(e) = run(&self.db, &*self.clock, &self.config, &shutdown).await {
                tracing::warn!(error = %e, "enrichment retention failed");
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
    tracing::error!(error = %e, "enrichment lifecycle api error");
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
            "rules": { ENRICHED_KILLMAILS: s.config.enriched_killmails_months },
            "retention_runs": r,
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn run_now(State(s): State<LifecycleState>) -> Response {
    match run(&s.db, &*s.clock, &s.config, &s.shutdown).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => internal(e),
    }
}
