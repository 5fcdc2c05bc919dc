//! The HTTP API: `GET /search`, `GET /search/autocomplete` and `GET /entities/{type}/{id}`.
//!
//! Query syntax of `/search` (all parameters optional):
//! * `q`: free text; `types`: comma-separated collections (`alliance,system,battle`, plural or
//!   singular);
//! * `filters`: `;`-separated, each `field:v1|v2` (any of the values) or `field:min..max`
//!   (numeric range, either bound may be empty), e.g. `spaceType:nullsec;totalKills:10..`;
//! * `facets`: comma-separated facet fields; `sort`: `field[:asc|:desc]` (default desc) or the
//!   aliases `time`, `kills`, `isk`;
//! * `page` (1-based), `per_page` (≤ 100).
//!
//! `/search/autocomplete?q=&types=&limit=` searches every collection but `killmails` unless
//! `types` names them.
//!
//! Every hit carries `type`, `id`, `name`, `score` and `extra` (the stored document). A
//! backend that cannot be reached answers 503 `{"error":"search unavailable"}`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bs_search_index::{
    Collection, FacetCount, Filter, MAX_PER_PAGE, SearchError, SearchQuery, SortBy,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Search;
use crate::indexer::EntityKind;

pub fn router(search: Arc<Search>) -> Router {
    Router::new()
        .route("/search", get(search_handler))
        .route("/search/autocomplete", get(autocomplete))
        .route("/entities/{kind}/{id}", get(entity))
        .with_state(search)
}

/// Expected and unexpected failures, mapped to a status in one place.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    NotFound,
    Unavailable(String),
    Internal(String),
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::InvalidQuery(m) => ApiError::BadRequest(m),
            SearchError::Unavailable(m) => ApiError::Unavailable(m),
            SearchError::Backend(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest(m) => {
                (StatusCode::BAD_REQUEST, Json(json!({"error": m}))).into_response()
            }
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "entity not found"})),
            )
                .into_response(),
            ApiError::Unavailable(m) => {
                tracing::warn!(error = %m, "search backend unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"error": "search unavailable"})),
                )
                    .into_response()
            }
            ApiError::Internal(m) => {
                // Details go to the log, never to the client.
                tracing::error!(error = %m, "search api failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": "internal error"})),
                )
                    .into_response()
            }
        }
    }
}

fn parse_types(s: Option<&str>) -> Result<Vec<Collection>, ApiError> {
    let mut out = Vec::new();
    for part in s.unwrap_or("").split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let c: Collection = part.parse().map_err(ApiError::BadRequest)?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Parses the `filters` parameter (see the module doc).
pub fn parse_filters(s: &str) -> Result<Vec<Filter>, String> {
    let mut out = Vec::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (field, value) = part
            .split_once(':')
            .ok_or_else(|| format!("filter {part:?} is not field:value"))?;
        let field = field.trim().to_owned();
        if let Some((lo, hi)) = value.split_once("..") {
            let bound = |b: &str| -> Result<Option<f64>, String> {
                let b = b.trim();
                if b.is_empty() {
                    return Ok(None);
                }
                b.parse::<f64>()
                    .map(Some)
                    .map_err(|_| format!("bad number {b:?} in filter on {field}"))
            };
            out.push(Filter::Range {
                min: bound(lo)?,
                max: bound(hi)?,
                field,
            });
        } else {
            let values: Vec<String> = value
                .split('|')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
            if values.is_empty() {
                return Err(format!("filter on {field} has no values"));
            }
            out.push(Filter::AnyOf { field, values });
        }
    }
    Ok(out)
}

/// Parses `sort`, resolving the aliases for the searched collections.
fn parse_sort(s: &str, types: &[Collection]) -> Option<SortBy> {
    let s = s.trim();
    if s.is_empty() || s == "relevance" {
        return None;
    }
    let (field, dir) = s.split_once(':').unwrap_or((s, "desc"));
    let only_killmails = types == [Collection::Killmails];
    let field = match field {
        "time" if only_killmails => "killmailTime",
        "time" => "startTime",
        "kills" => "totalKills",
        "isk" if only_killmails => "iskValue",
        "isk" => "totalIskDestroyed",
        "name" => "sName",
        f => f,
    };
    Some(SortBy {
        field: field.to_owned(),
        desc: !dir.eq_ignore_ascii_case("asc"),
    })
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    q: Option<String>,
    types: Option<String>,
    filters: Option<String>,
    facets: Option<String>,
    sort: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn search_handler(
    State(s): State<Arc<Search>>,
    Query(p): Query<SearchParams>,
) -> Result<Json<Value>, ApiError> {
    let types = parse_types(p.types.as_deref())?;
    let filters =
        parse_filters(p.filters.as_deref().unwrap_or("")).map_err(ApiError::BadRequest)?;
    let facets: Vec<String> = p
        .facets
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    let sort = parse_sort(p.sort.as_deref().unwrap_or(""), &types);
    let page = p.page.unwrap_or(1);
    let per_page = p.per_page.unwrap_or(20);
    let query = SearchQuery {
        q: p.q.unwrap_or_default(),
        types,
        filters,
        facets,
        sort,
        page,
        per_page,
    };
    let res = s.index.search(&query).await?;
    Ok(Json(json!({
        "hits": res.hits,
        "facets": res.facets,
        "total": res.total,
        "page": page,
        "per_page": per_page,
    })))
}

#[derive(Debug, Deserialize)]
struct AutocompleteParams {
    q: Option<String>,
    types: Option<String>,
    limit: Option<usize>,
}

async fn autocomplete(
    State(s): State<Arc<Search>>,
    Query(p): Query<AutocompleteParams>,
) -> Result<Json<Value>, ApiError> {
    let mut types = parse_types(p.types.as_deref())?;
    if types.is_empty() {
        // Killmails only on request: their ISK-based activity would bury the entities and
        // battles a user types the name of (a 10 B ISK kill mentions "The Initiative." too).
        types = Collection::ALL
            .into_iter()
            .filter(|c| *c != Collection::Killmails)
            .collect();
    }
    let q = p.q.unwrap_or_default();
    let limit = p.limit.unwrap_or(10).clamp(1, MAX_PER_PAGE);
    if q.trim().is_empty() {
        return Ok(Json(json!({ "hits": [] })));
    }
    let hits = s.index.autocomplete(&q, &types, limit).await?;
    Ok(Json(json!({ "hits": hits })))
}

/// Counts matching documents of one collection.
async fn total(s: &Search, c: Collection, filters: Vec<Filter>) -> Result<u64, ApiError> {
    let q = SearchQuery {
        types: vec![c],
        filters,
        per_page: 1,
        ..SearchQuery::default()
    };
    Ok(s.index.search(&q).await?.total)
}

/// `GET /entities/{type}/{id}`: name, kill/loss/battle counts, recent battles and top ships
/// (lost by the entity, or lost in the system) for the UI's entity pages.
async fn entity(
    State(s): State<Arc<Search>>,
    Path((kind, id)): Path<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    let collection: Collection = kind.parse().map_err(ApiError::BadRequest)?;
    let kind = EntityKind::of(collection)
        .ok_or_else(|| ApiError::BadRequest(format!("{collection} has no entity page")))?;
    let sid = id.to_string();
    let eq = |f: &str| vec![Filter::eq(f, sid.clone())];
    // (battle filter, kills filter, losses filter)
    let (battles_f, kills_f, losses_f) = match kind {
        EntityKind::Alliance => (
            Some(eq("allianceIds")),
            Some(eq("attackerAllianceIds")),
            Some(eq("victimAllianceId")),
        ),
        EntityKind::Corporation => (
            Some(eq("corpIds")),
            Some(eq("attackerCorpIds")),
            Some(eq("victimCorpId")),
        ),
        EntityKind::Character => (None, None, Some(eq("victimCharacterId"))),
        EntityKind::System => (Some(eq("systemId")), Some(eq("systemId")), None),
        EntityKind::ShipType => (None, None, Some(eq("shipTypeId"))),
        EntityKind::Region => (Some(eq("regionId")), Some(eq("regionId")), None),
        // Battle and killmail documents carry no constellation.
        EntityKind::Constellation => (None, None, None),
    };
    let mirror = s.with_indexer(|ix| ix.entity(kind, id).cloned());
    let name = match &mirror {
        Some(e) if e.name.is_some() => e.name.clone(),
        _ => {
            let sde = bs_sde::StaticData::bundled();
            match kind {
                EntityKind::System => sde.system(id).map(|x| x.name.clone()),
                EntityKind::ShipType => sde.type_info(id).map(|x| x.name.clone()),
                EntityKind::Corporation => sde.npc_corporation(id).map(|x| x.name.clone()),
                EntityKind::Region => sde.region(id).map(|x| x.name.clone()),
                EntityKind::Constellation => sde.constellation(id).map(|x| x.name.clone()),
                _ => None,
            }
        }
    };
    let kills = match kills_f {
        Some(f) => total(&s, Collection::Killmails, f).await?,
        None => mirror.as_ref().map_or(0, |e| u64::from(e.kills)),
    };
    let losses = match &losses_f {
        Some(f) => total(&s, Collection::Killmails, f.clone()).await?,
        None => 0,
    };
    let (recent, battle_count) = match battles_f {
        Some(f) => {
            let q = SearchQuery {
                types: vec![Collection::Battles],
                filters: f,
                sort: Some(SortBy {
                    field: "startTime".into(),
                    desc: true,
                }),
                per_page: 10,
                ..SearchQuery::default()
            };
            let r = s.index.search(&q).await?;
            (r.hits, r.total)
        }
        None => (Vec::new(), 0),
    };
    let ship_filter = match kind {
        EntityKind::System => Some(eq("systemId")),
        EntityKind::Region => Some(eq("regionId")),
        EntityKind::ShipType | EntityKind::Constellation => None,
        _ => losses_f,
    };
    let top_ships: Vec<FacetCount> = match ship_filter {
        Some(f) => {
            let q = SearchQuery {
                types: vec![Collection::Killmails],
                filters: f,
                facets: vec!["shipTypeName".into()],
                per_page: 1,
                ..SearchQuery::default()
            };
            let mut r = s.index.search(&q).await?;
            let mut v = r.facets.remove("shipTypeName").unwrap_or_default();
            v.truncate(10);
            v
        }
        None => Vec::new(),
    };
    let Some(name) = name else {
        if kills == 0 && losses == 0 && battle_count == 0 {
            return Err(ApiError::NotFound);
        }
        return Ok(Json(entity_json(
            collection,
            &sid,
            None,
            kills,
            losses,
            battle_count,
            mirror.map_or(0, |e| e.last_seen),
            recent,
            top_ships,
        )));
    };
    Ok(Json(entity_json(
        collection,
        &sid,
        Some(name),
        kills,
        losses,
        battle_count,
        mirror.map_or(0, |e| e.last_seen),
        recent,
        top_ships,
    )))
}

#[allow(
    clippy::too_many_arguments,
    reason = "a flat JSON shape, built in one place"
)]
fn entity_json(
    collection: Collection,
    id: &str,
    name: Option<String>,
    kills: u64,
    losses: u64,
    battles: u64,
    last_seen: i64,
    recent: Vec<bs_search_index::Hit>,
    top_ships: Vec<FacetCount>,
) -> Value {
    json!({
        "type": collection,
        "id": id,
        "name": name,
        "kills": kills,
        "losses": losses,
        "battles": battles,
        "last_seen_at": (last_seen > 0).then_some(last_seen),
        "recent_battles": recent,
        "top_ships": top_ships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_values_and_ranges() {
        let f = parse_filters("spaceType:nullsec|lowsec; totalKills:10..").unwrap();
        assert_eq!(
            f,
            vec![
                Filter::AnyOf {
                    field: "spaceType".into(),
                    values: vec!["nullsec".into(), "lowsec".into()]
                },
                Filter::Range {
                    field: "totalKills".into(),
                    min: Some(10.0),
                    max: None
                },
            ]
        );
        assert!(parse_filters("nofield").is_err());
        assert!(parse_filters("iskValue:x..3").is_err());
        assert!(parse_filters("a:").is_err());
    }

    #[test]
    fn sort_aliases_follow_the_types() {
        assert_eq!(
            parse_sort("isk", &[Collection::Killmails]).unwrap().field,
            "iskValue"
        );
        let s = parse_sort("time:asc", &[]).unwrap();
        assert_eq!((s.field.as_str(), s.desc), ("startTime", false));
        assert!(parse_sort("", &[]).is_none());
    }
}
