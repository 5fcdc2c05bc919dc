//! Retention of enriched killmails (`lifecycle.enriched_killmails_months`, 0: keep forever):
//! rows of `enriched_killmails` whose kill time is older than the cutoff are deleted in
//! bounded batches, each batch one transaction with one `killmail.deleted` (scope `enriched`)
//! per row in the outbox, so search and notifications drop them too. Names, the ESI cache
//! and prices are named by no rule and never deleted. Runs are recorded in `retention_runs`;
//! the scheduler runs once a day in the two hours after `lifecycle.retention_at` (never
//! offline: the demo's bundled fights are years old). `GET /lifecycle` and
//! `POST /admin/retention/run` expose it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bs_config::LifecycleConfig;
use bs_runtime::Clock;
use bs_runtime::retention::{
    self as shared, delete_killmails_batch, months_cutoff, run_batches, run_id,
};
use bs_store::Database;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use bs_runtime::retention::RetentionRun;

pub const ENRICHED_KILLMAILS: &str = "enriched_killmails";

/// Counter, label `kind`: rows deleted by retention.
pub const METRIC_DELETED: &str = shared::metric::DELETED;

/// The newest runs first.
pub async fn runs(db: &Database, limit: i64) -> anyhow::Result<Vec<RetentionRun>> {
    shared::recent_runs(db, limit).await
}

/// Deletes enriched killmails past the cutoff; `None` when no rule applies.
pub async fn run(
    db: &Database,
    clock: &dyn Clock,
    config: &LifecycleConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<RetentionRun>> {
    let now = clock.now();
    let Some(cut) = months_cutoff(now, config.enriched_killmails_months) else {
        return Ok(None);
    };
    let limit = i64::from(config.retention_batch.clamp(1, 10_000));
    let run = run_batches(
        db,
        clock,
        &run_id(now),
        ENRICHED_KILLMAILS,
        cut,
        shutdown,
        || {
            delete_killmails_batch(
                db,
                "SELECT killmail_id, killmail_time FROM enriched_killmails WHERE killmail_time < $1 \
                 ORDER BY killmail_time, killmail_id LIMIT $2",
                ENRICHED_KILLMAILS,
                "enriched",
                cut.timestamp_millis(),
                limit,
                now,
            )
        },
    )
    .await?;
    Ok(Some(run))
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
        let job = move || async move { run(db, clock, config, token).await.map(drop) };
        shared::run_daily(
            self.db.clone(),
            Arc::clone(&self.clock),
            at,
            "enrichment",
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
