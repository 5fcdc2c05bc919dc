//! The HTTP API: `GET /killmails/{id}`, `GET /killmails?ids=1,2,3` and `GET /status`.
//!
//! A killmail is served as its published `killmail.enriched` payload plus flat fields
//! readers want at the top level (`ship_type_name`, `system_name`, `region_name`,
//! `security_status`, `security_type`, `isk_total`, …), so the BFF can proxy it as
//! `/api/killmails/{id}` unchanged.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bs_events::KillmailEnriched;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::consumer::Enricher;
use crate::store::EnrichmentStore;

/// Most ids one bulk request may ask for.
pub const MAX_BULK_IDS: usize = 1000;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    pub enricher: Arc<Enricher>,
    pub store: Arc<dyn EnrichmentStore>,
    pub clock: Arc<dyn bs_runtime::Clock>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/killmails", get(bulk))
        .route("/killmails/{id}", get(one))
        .route("/status", get(status))
        .with_state(state)
}

/// Expected and unexpected failures, mapped to a status in one place.
#[derive(Debug)]
enum ApiError {
    NotFound,
    BadRequest(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "killmail not found"})),
            )
                .into_response(),
            Self::BadRequest(m) => {
                (StatusCode::BAD_REQUEST, Json(json!({"error": m}))).into_response()
            }
            Self::Internal(m) => {
                // Details go to the log, never to the client.
                tracing::error!(error = %m, "enrichment api failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": "internal error"})),
                )
                    .into_response()
            }
        }
    }
}

impl From<bs_store::StoreError> for ApiError {
    fn from(e: bs_store::StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// The API form of an enriched killmail: the event payload plus flat reader fields.
pub fn killmail_view(ev: &KillmailEnriched) -> Value {
    let mut v = serde_json::to_value(ev).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        let ship = &ev.victim.ship;
        let flat = json!({
            "ship_type_id": ship.type_id,
            "ship_type_name": ship.type_name,
            "ship_group_id": ship.group_id,
            "ship_group_name": ship.group_name,
            "ship_class": ship.class,
            "system_id": ev.system.id,
            "system_name": ev.system.name,
            "constellation_id": ev.system.constellation_id,
            "constellation_name": ev.system.constellation_name,
            "region_id": ev.system.region_id,
            "region_name": ev.system.region_name,
            "security_status": ev.system.security_status,
            "security_display": ev.system.security_status.map(bs_sde::rounded_security),
            "security_type": ev.system.security_type,
            "isk_destroyed": ev.isk.destroyed,
            "isk_dropped": ev.isk.dropped,
            "isk_total": ev.isk.total,
            "value_source": ev.isk.value_source,
            "zkillboard_url": format!("https://zkillboard.com/kill/{}/", ev.killmail_id),
        });
        if let Value::Object(flat) = flat {
            map.extend(flat);
        }
    }
    v
}

fn parse_view(payload: &str) -> Result<Value, ApiError> {
    let ev: KillmailEnriched = serde_json::from_str(payload)
        .map_err(|e| ApiError::Internal(format!("stored payload: {e}")))?;
    Ok(killmail_view(&ev))
}

async fn one(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest("killmail id must be an integer".into()))?;
    let payload = s.store.payload(id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(parse_view(&payload)?))
}

#[derive(Deserialize)]
struct BulkQuery {
    #[serde(default)]
    ids: String,
}

async fn bulk(
    State(s): State<ApiState>,
    Query(q): Query<BulkQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut ids = Vec::new();
    for part in q.ids.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        ids.push(
            part.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("bad killmail id `{part}`")))?,
        );
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > MAX_BULK_IDS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BULK_IDS} ids per request"
        )));
    }
    let mut views: Vec<Value> = s
        .store
        .payloads(&ids)
        .await?
        .iter()
        .map(|p| parse_view(p))
        .collect::<Result<_, _>>()?;
    views.sort_by_key(|v| v.get("killmail_id").and_then(Value::as_i64));
    let found: std::collections::HashSet<i64> = views
        .iter()
        .filter_map(|v| v.get("killmail_id").and_then(Value::as_i64))
        .collect();
    let missing: Vec<i64> = ids.into_iter().filter(|id| !found.contains(id)).collect();
    Ok(Json(json!({ "killmails": views, "missing": missing })))
}

async fn status(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let now = s.clock.now().timestamp_millis();
    let counts = s.store.counts(now).await?;
    let k = &s.enricher.knowledge;
    let p = &s.enricher.stats;
    let ks = &k.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Ok(Json(json!({
        "killmails": counts.killmails,
        "names_pending": counts.names_pending,
        "names_cached": counts.names_cached,
        "names_in_memory": k.names_in_memory(),
        "esi_cache_entries": counts.esi_cache_entries,
        "outbox_pending": counts.outbox_pending,
        "static_data_version": k.sde().version(),
        "rules_version": crate::domain::RULES_VERSION,
        "prices": k.prices_source(),
        "esi": {
            "enabled": k.esi().is_some(),
            "base_url": k.esi().map(|e| e.base_url().to_owned()),
            "error_budget_remaining": k.esi().and_then(bs_esi::EsiClient::error_budget_remaining),
            "name_calls": load(&ks.esi_name_calls),
            "type_calls": load(&ks.esi_type_calls),
            "system_calls": load(&ks.esi_system_calls),
            "price_calls": load(&ks.esi_price_calls),
            "busy_skips": load(&ks.esi_busy_skips),
            "deadline_passed": load(&ks.esi_deadline_passed),
        },
        "names_resolved": {
            "cache": load(&ks.names_from_cache),
            "database": load(&ks.names_from_db),
            "esi": load(&ks.names_from_esi),
        },
        "pipeline": {
            "consumed": load(&p.consumed),
            "rejected": load(&p.rejected),
            "duplicates": load(&p.duplicates),
            "published": load(&p.published),
            "updates_published": load(&p.updates_published),
            "published_with_pending_names": load(&p.published_pending),
        },
    })))
}
