//! The JSON API under `/api` (documented in [`crate::openapi`]).
//!
//! Conventions, also stated in the OpenAPI document: ids (killmail, battle, character, …) and
//! ISK amounts are JSON **numbers** (ids fit in 53 bits; ISK is a float of whole ISK); times
//! are RFC 3339 UTC strings; lists page with an opaque `cursor` (send the previous answer's
//! `next_cursor`, absent on the last page); errors are `{"error": "<message>"}` with a 4xx/5xx
//! status, and a missing service answers 503 `{"error": "<service> unavailable", …}`.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bs_config::ServiceName;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{self, Denied};
use crate::clients::UpstreamError;
use crate::intel::{EntityKind, EntityStats, entity_stats};
use crate::model::{BattleRow, Killmail};
use crate::{AppState, view};

/// Every API path, as routed and as documented (a test holds the three together).
pub const ROUTES: &[&str] = &[
    "/api/stats",
    "/api/health",
    "/api/lifecycle",
    "/api/killmails/recent",
    "/api/killmails/{id}",
    "/api/battles",
    "/api/battles/{id}",
    "/api/battles/{id}/timeline",
    "/api/characters/{id}/ships",
    "/api/entities/{kind}/{id}",
    "/api/search",
    "/api/search/autocomplete",
    "/api/openapi.json",
    // The notification service's user API (crate::notify).
    "/api/subscriptions",
    "/api/subscriptions/{id}",
    "/api/subscriptions/{id}/test",
    "/api/notifications",
    "/api/notifications/read-all",
    "/api/notifications/{id}/read",
    "/api/watchlists",
    "/api/watchlists/{id}",
    "/api/dead-letters",
    "/api/ws",
    "/api/ws/public",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/stats", get(stats))
        .route("/api/health", get(health))
        .route("/api/killmails/recent", get(recent))
        .route("/api/killmails/{id}", get(killmail))
        .route("/api/battles", get(battles))
        .route("/api/battles/{id}", get(battle))
        .route("/api/battles/{id}/timeline", get(timeline))
        .route("/api/characters/{id}/ships", get(ships))
        .route("/api/entities/{kind}/{id}", get(entity))
        .route("/api/search", get(search))
        .route("/api/search/autocomplete", get(autocomplete))
        .route("/api/openapi.json", get(openapi))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such API route") })
}

/// `{"error": …}` with a status.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Maps an upstream failure to the API's answer.
pub fn upstream_error(e: &UpstreamError) -> Response {
    match e {
        UpstreamError::Unavailable { service, reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": format!("{service} unavailable"), "detail": reason })),
        )
            .into_response(),
        UpstreamError::NotFound => error(StatusCode::NOT_FOUND, "not found"),
        UpstreamError::BadRequest(m) => error(StatusCode::BAD_REQUEST, m.clone()),
        UpstreamError::Redirect(to) => {
            error(StatusCode::PERMANENT_REDIRECT, format!("moved to {to}"))
        }
        UpstreamError::Internal(m) => {
            tracing::warn!(error = %m, "bff upstream error");
            error(
                StatusCode::BAD_GATEWAY,
                "upstream answered something unexpected",
            )
        }
    }
}

fn denied(d: &Denied) -> Response {
    match d {
        Denied::NotAuthenticated => error(StatusCode::UNAUTHORIZED, "log in first"),
        Denied::Forbidden(r) => error(StatusCode::FORBIDDEN, format!("forbidden: {r}")),
        Denied::Unavailable(r) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "authentication unavailable", "detail": r })),
        )
            .into_response(),
    }
}

fn raw_json(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Keeps only the query parameters a service documents, so the BFF never forwards junk.
pub fn forward_query(raw: Option<&str>, allowed: &[&str]) -> String {
    raw.unwrap_or("")
        .split('&')
        .filter(|kv| {
            let k = kv.split('=').next().unwrap_or("");
            !k.is_empty() && allowed.contains(&k) && kv.len() > k.len() + 1
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The battle list filters (the battle service's names).
pub const BATTLE_FILTERS: &[&str] = &[
    "from",
    "to",
    "system_id",
    "region_id",
    "security_type",
    "alliance_id",
    "corporation_id",
    "character_id",
    "min_kills",
    "min_isk",
    "min_pilots",
    "status",
    "sort",
    "order",
    "limit",
    "cursor",
];

// ---------------------------------------------------------------------------------------------
// Stats and health.

/// `GET /api/stats`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Distinct killmails stored by ingestion (`null` when ingestion is unavailable).
    pub killmails_total: Option<i64>,
    /// Battles known to the battle service (`null` when battle is unavailable).
    pub battles_total: Option<i64>,
    pub active_battles: Option<i64>,
    pub by_source: Value,
    /// Battles, kills and ISK destroyed in battles that ended within the last 24 h.
    pub last_24h: Last24h,
    pub ingestion_lag_seconds: Option<i64>,
    pub enrichment_names_pending: Option<i64>,
    /// Services that could not be read.
    pub unavailable: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Last24h {
    pub battles: u32,
    pub kills: u32,
    pub isk_destroyed: f64,
}

/// Gathers the statistics; never fails (missing parts are `null` and listed in `unavailable`).
pub async fn gather_stats(state: &AppState) -> Stats {
    let up = &state.upstreams;
    let now = state.clock.now();
    let since =
        (now - chrono::Duration::hours(24)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let recent_query = format!("from={}&limit=500", since.replace('+', "%2B"));
    let (ing, ing_status, bat, enr, recent) = tokio::join!(
        up.json::<Value>(ServiceName::Ingestion, "/stats", true),
        up.json::<Value>(ServiceName::Ingestion, "/status", true),
        up.json::<Value>(ServiceName::Battle, "/stats", true),
        up.json::<Value>(ServiceName::Enrichment, "/status", true),
        up.battles(&recent_query),
    );
    let mut s = Stats::default();
    let mut unavailable = Vec::new();
    match ing {
        Ok(v) => {
            s.killmails_total = v["killmails_total"].as_i64();
            s.by_source = v["by_source"].clone();
        }
        Err(_) => unavailable.push("ingestion".to_owned()),
    }
    if let Ok(v) = ing_status {
        s.ingestion_lag_seconds = v["live"]["lag_seconds"].as_i64();
    }
    match bat {
        Ok(v) => {
            s.battles_total = v["battles_total"].as_i64();
            s.active_battles = v["active"].as_i64();
        }
        Err(_) => unavailable.push("battle".to_owned()),
    }
    match enr {
        Ok(v) => s.enrichment_names_pending = v["names_pending"].as_i64(),
        Err(_) => unavailable.push("enrichment".to_owned()),
    }
    if let Ok(page) = recent {
        for b in &page.battles {
            s.last_24h.battles += 1;
            s.last_24h.kills += b.total_kills;
            s.last_24h.isk_destroyed += b.total_isk_destroyed;
        }
    }
    s.unavailable = unavailable;
    s
}

async fn stats(State(state): State<AppState>) -> Response {
    Json(gather_stats(&state).await).into_response()
}

async fn health(State(state): State<AppState>) -> Response {
    let services = state.upstreams.health().await;
    let degraded = services.iter().any(|s| s.state == "down");
    Json(json!({ "status": if degraded { "degraded" } else { "ok" }, "services": services }))
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Killmails.

/// Filters of the live feed.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct FeedFilter {
    pub security_type: Option<String>,
    pub region_id: Option<i64>,
    pub system_id: Option<i64>,
    /// Victim or any attacker.
    pub alliance_id: Option<i64>,
    /// The victim's ship class.
    pub ship_class: Option<String>,
    pub min_isk: Option<f64>,
    pub limit: Option<u32>,
}

impl FeedFilter {
    fn matches(&self, k: &FeedItem) -> bool {
        let eq = |want: &Option<String>, got: &Option<String>| {
            want.as_deref()
                .is_none_or(|w| w.is_empty() || got.as_deref() == Some(w))
        };
        eq(&self.security_type, &k.security_type)
            && eq(&self.ship_class, &k.ship_class)
            && self.region_id.is_none_or(|r| k.region_id == Some(r))
            && self.system_id.is_none_or(|s| k.system_id == s)
            && self.min_isk.is_none_or(|m| k.isk >= m)
            && self.alliance_id.is_none_or(|a| {
                k.victim_alliance_id == Some(a) || k.attacker_alliance_ids.contains(&a)
            })
    }
}

/// One row of the live feed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FeedItem {
    pub killmail_id: i64,
    pub time: String,
    pub system_id: i64,
    pub system_name: String,
    pub security: Option<f64>,
    pub security_colour: String,
    pub security_type: Option<String>,
    pub region_id: Option<i64>,
    pub region_name: Option<String>,
    pub ship_type_id: Option<i64>,
    pub ship_name: Option<String>,
    pub ship_class: Option<String>,
    pub isk: f64,
    pub isk_text: String,
    pub victim_id: Option<i64>,
    pub victim_name: Option<String>,
    pub victim_alliance_id: Option<i64>,
    pub victim_alliance_name: Option<String>,
    pub attacker_alliance_ids: Vec<i64>,
    pub attackers: usize,
    pub zkb_url: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct IngestedSummary {
    killmail_id: i64,
    system_id: i64,
    occurred_at: String,
    victim_alliance_id: Option<i64>,
    attacker_alliance_ids: Vec<i64>,
    isk_value: Option<f64>,
    participant_count: usize,
}

fn feed_item(s: &IngestedSummary, k: Option<&Killmail>) -> FeedItem {
    let sde = bs_sde::StaticData::bundled();
    let sys = sde.system(s.system_id);
    let security = k
        .and_then(|k| k.security_display)
        .or_else(|| sys.map(|x| x.rounded_security));
    FeedItem {
        killmail_id: s.killmail_id,
        time: {
            let raw = k.map_or(s.occurred_at.as_str(), |k| k.killmail_time.as_str());
            view::parse_time(raw).map_or_else(
                || raw.to_owned(),
                |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
            )
        },
        system_id: s.system_id,
        system_name: k
            .and_then(|k| k.system_name.clone())
            .or_else(|| sys.map(|x| x.name.clone()))
            .unwrap_or_else(|| format!("#{}", s.system_id)),
        security,
        security_colour: view::security_colour(security.unwrap_or(-1.0)).to_owned(),
        security_type: k
            .and_then(|k| k.security_type.clone())
            .or_else(|| sys.map(|x| x.security_type.as_str().to_owned())),
        region_id: k
            .and_then(|k| k.region_id)
            .or_else(|| sys.map(|x| x.region_id)),
        region_name: k
            .and_then(|k| k.region_name.clone())
            .or_else(|| sys.map(|x| x.region_name.clone())),
        ship_type_id: k.map(|k| k.ship_type_id),
        ship_name: k.and_then(|k| k.ship_type_name.clone()),
        ship_class: k.and_then(|k| k.ship_class.clone()),
        isk: k.and_then(|k| k.isk_total).or(s.isk_value).unwrap_or(0.0),
        isk_text: view::isk(k.and_then(|k| k.isk_total).or(s.isk_value).unwrap_or(0.0)),
        victim_id: k.and_then(|k| k.victim.character_id),
        victim_name: k.and_then(|k| {
            k.victim.character_name.clone().or_else(|| {
                k.victim
                    .character_id
                    .map(|id| crate::pages::name_or("character", id, None))
            })
        }),
        victim_alliance_id: s.victim_alliance_id,
        victim_alliance_name: k.and_then(|k| k.victim.alliance_name.clone()),
        attacker_alliance_ids: s.attacker_alliance_ids.clone(),
        attackers: k.map_or(s.participant_count.saturating_sub(1), |k| k.attackers.len()),
        zkb_url: format!("https://zkillboard.com/kill/{}/", s.killmail_id),
    }
}

/// The most recent killmails with names (enrichment) and the filter applied.
pub async fn feed(state: &AppState, filter: &FeedFilter) -> Result<Vec<FeedItem>, UpstreamError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Recent {
        items: Vec<IngestedSummary>,
    }
    let recent: Recent = state
        .upstreams
        .json(ServiceName::Ingestion, "/killmails/recent?limit=100", true)
        .await?;
    let ids: Vec<i64> = recent.items.iter().map(|s| s.killmail_id).collect();
    // Names are a nicety: the feed still works while enrichment is down.
    let enriched = state.upstreams.killmails(&ids).await.unwrap_or_default();
    let limit = filter.limit.unwrap_or(50).clamp(1, 100) as usize;
    Ok(recent
        .items
        .iter()
        .map(|s| feed_item(s, enriched.get(&s.killmail_id).map(AsRef::as_ref)))
        .filter(|i| filter.matches(i))
        .take(limit)
        .collect())
}

async fn recent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(filter): Query<FeedFilter>,
) -> Response {
    if let Err(d) = state.gate.check(&headers, auth::BATTLE_INTEL).await {
        return denied(&d);
    }
    match feed(&state, &filter).await {
        Ok(items) => Json(json!({ "count": items.len(), "items": items })).into_response(),
        Err(e) => upstream_error(&e),
    }
}

async fn killmail(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(d) = state.gate.check(&headers, auth::BATTLE_REPORTS).await {
        return denied(&d);
    }
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "killmail id must be a number");
    };
    match state
        .upstreams
        .fetch_cached(ServiceName::Enrichment, &format!("/killmails/{id}"))
        .await
    {
        Ok(b) => raw_json(b),
        Err(e) => upstream_error(&e),
    }
}

// ---------------------------------------------------------------------------------------------
// Battles.

async fn battles(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if let Err(d) = state.gate.check(&headers, auth::BATTLE_REPORTS).await {
        return denied(&d);
    }
    let q = forward_query(q.as_deref(), BATTLE_FILTERS);
    match state
        .upstreams
        .fetch_cached(ServiceName::Battle, &format!("/battles?{q}"))
        .await
    {
        Ok(b) => raw_json(b),
        Err(e) => upstream_error(&e),
    }
}

fn moved(to: i64, suffix: &str) -> Response {
    let mut r = (
        StatusCode::PERMANENT_REDIRECT,
        Json(json!({ "redirect_to": to })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/battles/{to}{suffix}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn battle(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(d) = state.gate.check(&headers, auth::BATTLE_REPORTS).await {
        return denied(&d);
    }
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "battle id must be a number");
    };
    match state.upstreams.report(id).await {
        Ok(r) => raw_json(r.raw.clone()),
        Err(UpstreamError::Redirect(to)) => moved(to, ""),
        Err(e) => upstream_error(&e),
    }
}

async fn timeline(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(d) = state.gate.check(&headers, auth::BATTLE_REPORTS).await {
        return denied(&d);
    }
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "battle id must be a number");
    };
    match state
        .upstreams
        .fetch_cached(ServiceName::Battle, &format!("/battles/{id}/timeline"))
        .await
    {
        Ok(b) => raw_json(b),
        Err(UpstreamError::Redirect(to)) => moved(to, "/timeline"),
        Err(e) => upstream_error(&e),
    }
}

async fn ships(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(d) = state.gate.check(&headers, auth::BATTLE_INTEL).await {
        return denied(&d);
    }
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "character id must be a number");
    };
    match state
        .upstreams
        .fetch_cached(ServiceName::Battle, &format!("/characters/{id}/ships"))
        .await
    {
        Ok(b) => raw_json(b),
        Err(e) => upstream_error(&e),
    }
}

// ---------------------------------------------------------------------------------------------
// Entities.

/// Most battles whose killmails an entity page reads.
pub const ENTITY_BATTLES: usize = 25;

/// An entity page's data.
#[derive(Clone, Debug, Serialize)]
pub struct EntityView {
    pub kind: EntityKind,
    pub id: i64,
    pub stats: EntityStats,
    /// Battles the entity was in, most recent first (at most 100).
    pub battles: Vec<BattleRow>,
    /// How many of them the statistics cover (the most recent [`ENTITY_BATTLES`]).
    pub battles_counted: usize,
}

/// Battles of the entity, then the killmails of the most recent ones, counted.
pub async fn entity_view(
    state: &AppState,
    kind: EntityKind,
    id: i64,
) -> Result<EntityView, UpstreamError> {
    let page = state
        .upstreams
        .battles(&format!("{}={id}&limit=100", kind.filter()))
        .await?;
    let counted: Vec<&BattleRow> = page.battles.iter().take(ENTITY_BATTLES).collect();
    let reports =
        futures::future::join_all(counted.iter().map(|b| state.upstreams.report(b.battle_id)))
            .await;
    let mut ids: Vec<i64> = Vec::new();
    let mut seen = HashSet::new();
    for r in reports.iter().flatten() {
        for &k in &r.report.killmail_ids {
            if seen.insert(k) {
                ids.push(k);
            }
        }
    }
    let kms = state.upstreams.killmails(&ids).await?;
    let list: Vec<&Killmail> = ids
        .iter()
        .filter_map(|i| kms.get(i).map(AsRef::as_ref))
        .collect();
    let mut stats = entity_stats(
        kind,
        id,
        u32::try_from(page.battles.len()).unwrap_or(u32::MAX),
        &list,
    );
    if stats.name.is_none() {
        // The battle reports carry the names the battle service knows.
        stats.name = reports
            .iter()
            .flatten()
            .find_map(|r| r.report.name(kind.as_str(), id).map(str::to_owned));
    }
    Ok(EntityView {
        kind,
        id,
        stats,
        battles_counted: counted.len(),
        battles: page.battles,
    })
}

async fn entity(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    if let Err(d) = state.gate.check(&headers, auth::BATTLE_INTEL).await {
        return denied(&d);
    }
    let Some(kind) = EntityKind::parse(&kind) else {
        return error(
            StatusCode::BAD_REQUEST,
            "kind must be alliance, corporation or character",
        );
    };
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "id must be a number");
    };
    match entity_view(&state, kind, id).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => upstream_error(&e),
    }
}

// ---------------------------------------------------------------------------------------------
// Search.

/// The search service's parameters.
pub const SEARCH_PARAMS: &[&str] = &["q", "types", "filters", "facets", "sort", "page", "limit"];

async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if let Err(d) = state.gate.check(&headers, auth::SEARCH).await {
        return denied(&d);
    }
    let q = forward_query(q.as_deref(), SEARCH_PARAMS);
    match state
        .upstreams
        .fetch_cached(ServiceName::Search, &format!("/search?{q}"))
        .await
    {
        Ok(b) => raw_json(b),
        Err(e) => upstream_error(&e),
    }
}

async fn autocomplete(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if let Err(d) = state.gate.check(&headers, auth::SEARCH).await {
        return denied(&d);
    }
    let q = forward_query(q.as_deref(), &["q", "types", "limit"]);
    match state
        .upstreams
        .fetch_cached(ServiceName::Search, &format!("/search/autocomplete?{q}"))
        .await
    {
        Ok(b) => raw_json(b),
        Err(e) => upstream_error(&e),
    }
}

async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}
