//! The battle service's lifecycle API (merged into its router):
//!
//! * `POST /admin/recluster {"from": RFC 3339 or YYYY-MM-DD, "to": …, "dry_run": bool}`:
//!   re-clusters the range ([`crate::recluster`]) and returns what changed (or would);
//! * `POST /admin/retention/run`: runs retention now;
//! * `GET /lifecycle`: the retention rules, recent retention runs and re-clustering runs.
//!
//! These are admin actions: the binary mounts the service behind the same gate as the other
//! admin routes; the service itself (like its override route) trusts its caller.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bs_config::LifecycleConfig;
use bs_store::Database;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::consumer::Battles;
use crate::{recluster, retention};

#[derive(Clone)]
pub struct LifecycleState {
    pub battles: Arc<Battles>,
    pub db: Database,
    pub config: LifecycleConfig,
    pub shutdown: CancellationToken,
}

pub fn router(state: LifecycleState) -> Router {
    Router::new()
        .route("/lifecycle", get(lifecycle))
        .route("/admin/recluster", post(post_recluster))
        .route("/admin/retention/run", post(post_retention))
        .with_state(state)
}

/// `GET /lifecycle`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BattleLifecycle {
    pub retention_at: String,
    /// kind → months (0: kept forever).
    pub rules: BTreeMap<String, u32>,
    pub retention_runs: Vec<serde_json::Value>,
    pub recluster_runs: Vec<serde_json::Value>,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn internal(e: anyhow::Error) -> Response {
    tracing::error!(error = %e, "battle lifecycle api error");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
}

/// The status document (also used in-process).
pub async fn status(s: &LifecycleState) -> anyhow::Result<BattleLifecycle> {
    let to_values = |v: Vec<serde_json::Value>| v;
    Ok(BattleLifecycle {
        retention_at: s.config.retention_at.clone(),
        rules: [
            (retention::BATTLES.to_owned(), s.config.battles_months),
            (
                retention::ENRICHED_KILLMAILS.to_owned(),
                s.config.enriched_killmails_months,
            ),
        ]
        .into(),
        retention_runs: to_values(
            retention::runs(&s.db, 20)
                .await?
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect(),
        ),
        recluster_runs: recluster::runs(&s.db, 20)
            .await?
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .collect(),
    })
}

async fn lifecycle(State(s): State<LifecycleState>) -> Response {
    match status(&s).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => internal(e),
    }
}

/// A time bound: RFC 3339, or a UTC day (`to` then means the end of that day).
pub fn parse_bound(s: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = s.parse::<DateTime<Utc>>() {
        return Ok(t);
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("`{s}` is neither RFC 3339 nor YYYY-MM-DD"))?;
    let start = d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    Ok(if end_of_day {
        start + chrono::Duration::milliseconds(86_400_000 - 1)
    } else {
        start
    })
}

#[derive(Deserialize)]
struct ReclusterRequest {
    from: String,
    to: String,
    #[serde(default)]
    dry_run: bool,
}

/// The longest range one request may re-cluster.
pub const MAX_RANGE_DAYS: i64 = 93;

async fn post_recluster(
    State(s): State<LifecycleState>,
    Json(req): Json<ReclusterRequest>,
) -> Response {
    let (from, to) = match (parse_bound(&req.from, false), parse_bound(&req.to, true)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    if from > to {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("from {from} is after to {to}"),
        );
    }
    if (to - from).num_days() > MAX_RANGE_DAYS {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("at most {MAX_RANGE_DAYS} days per request"),
        );
    }
    match recluster::recluster(&s.battles, &s.db, from, to, req.dry_run).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => internal(e),
    }
}

async fn post_retention(State(s): State<LifecycleState>) -> Response {
    match retention::run(&s.db, &**s.battles.clock(), &s.config, &s.shutdown).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => internal(e),
    }
}
