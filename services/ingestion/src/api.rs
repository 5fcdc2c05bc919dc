//! The ingestion HTTP API (mounted by the binary; `/health`, `/ready` and
//! `/metrics` are added there).
//!
//! `GET /killmails/recent`, `GET /killmails/{id}`, `GET /status`, `GET /stats`,
//! `GET|PUT /rulesets`, `POST|GET /backfill/jobs`, `GET|DELETE /backfill/jobs/{id}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::Ruleset;
use crate::sources::IngestCtx;
use crate::sources::backfill::{Progress, Registry, create_job};
use crate::store::{IngestionStore, JobRecord, StoredKillmail};

/// What the handlers share; also the in-process API of the service.
#[derive(Clone)]
pub struct IngestionApi {
    pub ctx: Arc<IngestCtx>,
    pub registry: Arc<Registry>,
}

/// `GET /stats`: what the BFF shows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Distinct killmails stored.
    pub killmails_total: i64,
    pub by_source: BTreeMap<String, i64>,
}

/// API errors, mapped to statuses in one place; internals never leak.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<bs_store::StoreError> for ApiError {
    fn from(e: bs_store::StoreError) -> Self {
        Self::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal(e) => {
                tracing::error!(error = %e, "ingestion api error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

impl IngestionApi {
    /// Distinct killmails stored and counts by source.
    pub async fn stats(&self) -> anyhow::Result<Stats> {
        let s = self.ctx.store.stats().await?;
        Ok(Stats {
            killmails_total: s.killmails_total,
            by_source: s.by_source,
        })
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/killmails/recent", get(recent))
            .route("/killmails/{id}", get(killmail))
            .route("/status", get(status))
            .route("/stats", get(stats))
            .route("/rulesets", get(get_ruleset).put(put_ruleset))
            .route("/backfill/jobs", get(list_jobs).post(post_job))
            .route("/backfill/jobs/{id}", get(get_job).delete(cancel_job))
            .with_state(self)
    }
}

#[derive(Deserialize)]
struct RecentQuery {
    limit: Option<i64>,
}

/// A killmail without its raw body, for lists.
#[derive(Serialize)]
struct Summary {
    killmail_id: i64,
    system_id: i64,
    occurred_at: chrono::DateTime<chrono::Utc>,
    victim_alliance_id: Option<i64>,
    attacker_alliance_ids: Vec<i64>,
    isk_value: Option<f64>,
    zkb_url: String,
    source: String,
    participant_count: usize,
}

impl From<&StoredKillmail> for Summary {
    fn from(k: &StoredKillmail) -> Self {
        let participants = k
            .killmail
            .get("attackers")
            .and_then(|a| a.as_array())
            .map_or(0, Vec::len)
            + 1;
        Self {
            killmail_id: k.killmail_id,
            system_id: k.system_id,
            occurred_at: k.occurred_at,
            victim_alliance_id: k.victim_alliance_id,
            attacker_alliance_ids: k.attacker_alliance_ids.clone(),
            isk_value: k.isk_value,
            zkb_url: k.zkb_url.clone(),
            source: k.source.clone(),
            participant_count: participants,
        }
    }
}

async fn recent(
    State(api): State<IngestionApi>,
    Query(q): Query<RecentQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 100);
    let rows = api.ctx.store.recent(limit).await?;
    let items: Vec<Summary> = rows.iter().map(Summary::from).collect();
    Ok(Json(json!({ "count": items.len(), "items": items })))
}

async fn killmail(
    State(api): State<IngestionApi>,
    Path(id): Path<i64>,
) -> ApiResult<Json<StoredKillmail>> {
    api.ctx
        .store
        .killmail(id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

async fn status(State(api): State<IngestionApi>) -> ApiResult<Json<serde_json::Value>> {
    let s = api.ctx.store.stats().await?;
    let live = api.ctx.live.snapshot();
    let cursor = match live.cursor {
        Some(c) => Some(c),
        None => api.ctx.store.cursor(crate::sources::r2z2::CURSOR).await?,
    };
    let now = api.ctx.clock.now();
    let lag_sequences = match (cursor, live.head) {
        (Some(c), Some(h)) => Some((h + 1 - c).max(0)),
        _ => None,
    };
    let lag_seconds = live
        .last_uploaded_at
        .map(|u| (now - u).num_seconds().max(0));
    let gaps = api.ctx.store.gaps(20).await?;
    Ok(Json(json!({
        "live": { "running": live.running, "cursor": cursor, "head": live.head,
                  "lag_sequences": lag_sequences, "lag_seconds": lag_seconds,
                  "last_uploaded_at": live.last_uploaded_at },
        "killmails_total": s.killmails_total,
        "by_source": s.by_source,
        "duplicates": s.duplicates,
        "updates": s.updates,
        "hash_conflicts": s.conflicts,
        "rejects_by_reason": s.rejects_by_reason,
        "gaps": { "count": s.gaps, "sequences": s.gap_sequences, "recent": gaps },
        "outbox_pending": s.outbox_pending,
        "last_error": live.last_error,
        "last_error_at": live.last_error_at,
    })))
}

async fn stats(State(api): State<IngestionApi>) -> ApiResult<Json<Stats>> {
    Ok(Json(api.stats().await?))
}

async fn get_ruleset(State(api): State<IngestionApi>) -> ApiResult<Json<Ruleset>> {
    Ok(Json(api.ctx.store.ruleset().await?))
}

async fn put_ruleset(
    State(api): State<IngestionApi>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Ruleset>> {
    let ruleset: Ruleset = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Invalid(format!("invalid ruleset: {e}")))?;
    ruleset
        .check()
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    let saved = api
        .ctx
        .store
        .put_ruleset(&ruleset, api.ctx.clock.now())
        .await?;
    // Applies to killmails arriving from now on.
    api.ctx.pipeline.set_ruleset(saved.clone());
    Ok(Json(saved))
}

#[derive(Deserialize)]
struct NewJob {
    from: NaiveDate,
    to: NaiveDate,
    #[serde(default = "default_source")]
    source: String,
}

fn default_source() -> String {
    "everef".into()
}

#[derive(Serialize)]
struct JobView {
    #[serde(flatten)]
    job: JobRecord,
    percent: f64,
    progress: Option<Progress>,
}

fn view(api: &IngestionApi, job: JobRecord) -> JobView {
    let percent = if job.days_total > 0 {
        100.0 * job.days_done as f64 / job.days_total as f64
    } else {
        0.0
    };
    let progress = api
        .registry
        .get(&job.id)
        .filter(|_| job.status == "running");
    JobView {
        job,
        percent,
        progress,
    }
}

async fn post_job(
    State(api): State<IngestionApi>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let req: NewJob = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Invalid(format!("invalid job: {e}")))?;
    let job = create_job(&api.ctx, &req.source, req.from, req.to, "api")
        .await
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    Ok((StatusCode::CREATED, Json(view(&api, job))))
}

async fn list_jobs(State(api): State<IngestionApi>) -> ApiResult<Json<serde_json::Value>> {
    let jobs: Vec<JobView> = api
        .ctx
        .store
        .jobs(100)
        .await?
        .into_iter()
        .map(|j| view(&api, j))
        .collect();
    Ok(Json(json!({ "jobs": jobs })))
}

async fn get_job(
    State(api): State<IngestionApi>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let job = api.ctx.store.job(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(view(&api, job)))
}

/// Cancels a pending or running job; cancelling a finished job changes nothing.
async fn cancel_job(
    State(api): State<IngestionApi>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    api.ctx.store.job(&id).await?.ok_or(ApiError::NotFound)?;
    api.ctx
        .store
        .transition_job(
            &id,
            &["pending", "running"],
            "cancelled",
            api.ctx.clock.now(),
            None,
        )
        .await?;
    let job = api.ctx.store.job(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(view(&api, job)))
}
