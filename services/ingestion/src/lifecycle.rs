//! The lifecycle API of the ingestion service (merged into its router):
//!
//! * `GET /lifecycle`: last verified day, the latest verification of recent days, queued days,
//!   gaps (days still missing killmails), the retention rule and recent retention runs;
//! * `GET /verification/days?limit=`: verification history, newest first;
//! * `POST /verification/run {"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}`: verifies (and
//!   repairs) those days now, at most 31, and returns their results;
//! * `POST /retention/run`: runs retention now and returns the run.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use bs_config::LifecycleConfig;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::api::ApiError;
use crate::retention::{self, RetentionRun};
use crate::sources::IngestCtx;
use crate::sources::backfill::Upstreams;
use crate::verification::{self, DayVerification, QueuedDay};

/// The most days one `POST /verification/run` covers.
pub const MAX_RUN_DAYS: i64 = 31;

#[derive(Clone)]
pub struct LifecycleState {
    pub ctx: Arc<IngestCtx>,
    pub upstreams: Upstreams,
    pub config: LifecycleConfig,
    pub shutdown: CancellationToken,
}

/// `GET /lifecycle`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IngestionLifecycle {
    pub verification: VerificationStatus,
    pub retention: RetentionStatus,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VerificationStatus {
    pub enabled: bool,
    pub verify_at: String,
    pub last_verified_day: Option<NaiveDate>,
    /// Latest verification per day, newest first (30 days).
    pub days: Vec<serde_json::Value>,
    pub queued: Vec<serde_json::Value>,
    /// Days whose last verification left killmails missing or failed.
    pub gaps: Vec<NaiveDate>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RetentionStatus {
    pub retention_at: String,
    /// kind → months (0: kept forever).
    pub rules: std::collections::BTreeMap<String, u32>,
    pub runs: Vec<serde_json::Value>,
}

pub fn router(state: LifecycleState) -> Router {
    Router::new()
        .route("/lifecycle", get(lifecycle))
        .route("/verification/days", get(days))
        .route("/verification/run", post(run_verification))
        .route("/retention/run", post(run_retention))
        .with_state(state)
}

fn values<T: Serialize>(items: &[T]) -> Vec<serde_json::Value> {
    items
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect()
}

/// The status document (also used in-process).
pub async fn status(state: &LifecycleState) -> anyhow::Result<IngestionLifecycle> {
    let ctx = &state.ctx;
    let days = verification::history(ctx, 30).await?;
    let queued: Vec<QueuedDay> = verification::queued(ctx).await?;
    let mut gaps: Vec<NaiveDate> = days
        .iter()
        .filter(|d| d.still_missing > 0 || d.status == "failed")
        .map(|d| d.day)
        .collect();
    gaps.extend(queued.iter().filter(|q| q.reason == "gap").map(|q| q.day));
    gaps.sort_unstable();
    gaps.dedup();
    let runs = retention::runs(ctx.store.database(), 20).await?;
    Ok(IngestionLifecycle {
        verification: VerificationStatus {
            enabled: state.config.verify,
            verify_at: state.config.verify_at.clone(),
            last_verified_day: verification::last_verified(ctx).await?,
            days: values(&days),
            queued: values(&queued),
            gaps,
        },
        retention: RetentionStatus {
            retention_at: state.config.retention_at.clone(),
            rules: [(
                retention::RAW_KILLMAILS.to_owned(),
                state.config.raw_killmails_months,
            )]
            .into(),
            runs: values(&runs),
        },
    })
}

async fn lifecycle(State(s): State<LifecycleState>) -> Result<Json<IngestionLifecycle>, ApiError> {
    Ok(Json(status(&s).await?))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn days(
    State(s): State<LifecycleState>,
    Query(q): Query<Limit>,
) -> Result<Json<Vec<DayVerification>>, ApiError> {
    Ok(Json(
        verification::history(&s.ctx, q.limit.unwrap_or(30)).await?,
    ))
}

#[derive(Deserialize)]
struct RunRequest {
    from: NaiveDate,
    to: Option<NaiveDate>,
}

async fn run_verification(
    State(s): State<LifecycleState>,
    Json(req): Json<RunRequest>,
) -> Result<Json<Vec<DayVerification>>, ApiError> {
    let to = req.to.unwrap_or(req.from);
    if to < req.from {
        return Err(ApiError::Invalid(format!(
            "from {} is after to {to}",
            req.from
        )));
    }
    if (to - req.from).num_days() + 1 > MAX_RUN_DAYS {
        return Err(ApiError::Invalid(format!(
            "at most {MAX_RUN_DAYS} days per request"
        )));
    }
    if to >= s.ctx.clock.now().date_naive() {
        return Err(ApiError::Invalid(
            "only closed UTC days can be verified".into(),
        ));
    }
    let mut out = Vec::new();
    for day in req.from.iter_days().take_while(|d| *d <= to) {
        out.push(verification::verify_day(&s.ctx, &s.upstreams, day, "manual", &s.shutdown).await?);
    }
    Ok(Json(out))
}

async fn run_retention(
    State(s): State<LifecycleState>,
) -> Result<Json<Option<RetentionRun>>, ApiError> {
    Ok(Json(retention::run(&s.ctx, &s.config, &s.shutdown).await?))
}
