//! The landing page, the dashboard, search, and the system and ship type pages.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bs_config::ServiceName;
use serde::Deserialize;

use super::battles::{BattleLine, battle_line, encode, query_map};
use super::{Layout, SystemView, gate, message, render, system_view};
use crate::api::{FeedFilter, FeedItem, Stats, gather_stats};
use crate::clients::{ServiceHealth, UpstreamError};
use crate::{AppState, auth, view};

#[derive(Template)]
#[template(path = "index.html")]
pub struct LandingPage {
    pub layout: Layout,
    pub rows: Vec<BattleLine>,
    pub killmails: String,
    pub battles: String,
}

pub async fn landing(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut layout = Layout::new("BattleScope", "home", &headers);
    // The landing page is always public; its battle list follows the battle-reports gate.
    let allowed = state
        .gate
        .check(&headers, auth::BATTLE_REPORTS)
        .await
        .is_ok();
    let (page, stats) = tokio::join!(
        async {
            if allowed {
                Some(state.upstreams.battles("limit=10").await)
            } else {
                None
            }
        },
        gather_stats(&state)
    );
    let rows = match page {
        Some(Ok(p)) => p.battles.iter().map(|b| battle_line(&state, b)).collect(),
        Some(Err(e)) => {
            layout.degraded(&e);
            Vec::new()
        }
        None => Vec::new(),
    };
    let n = |v: Option<i64>| v.map_or_else(|| "–".to_owned(), |x| x.to_string());
    render(&LandingPage {
        layout,
        rows,
        killmails: n(stats.killmails_total),
        battles: n(stats.battles_total),
    })
}

#[derive(Template)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    pub layout: Layout,
    pub health: Vec<ServiceHealth>,
    pub stats: Stats,
    pub kills_24h: u32,
    pub isk_24h: String,
    pub lag: String,
    pub active: Vec<BattleLine>,
    pub recent: Vec<FeedItem>,
    /// Verification, gaps and retention runs (`/api/lifecycle`).
    pub lifecycle: crate::lifecycle::Panel,
}

impl DashboardPage {
    pub fn n(v: &Option<i64>) -> String {
        v.map_or_else(|| "–".to_owned(), |x| x.to_string())
    }
}

pub async fn dashboard(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&state, &headers, auth::BATTLE_REPORTS).await {
        return r;
    }
    let mut layout = Layout::new("Dashboard", "dashboard", &headers);
    let filter = FeedFilter {
        limit: Some(10),
        ..FeedFilter::default()
    };
    let (health, stats, active, recent, lifecycle) = tokio::join!(
        state.upstreams.health(),
        gather_stats(&state),
        state.upstreams.battles("status=active&limit=10"),
        crate::api::feed(&state, &filter),
        crate::lifecycle::gather(&state.upstreams),
    );
    let active = match active {
        Ok(p) => p.battles.iter().map(|b| battle_line(&state, b)).collect(),
        Err(e) => {
            layout.degraded(&e);
            Vec::new()
        }
    };
    render(&DashboardPage {
        layout,
        kills_24h: stats.last_24h.kills,
        isk_24h: view::isk(stats.last_24h.isk_destroyed),
        lag: stats
            .ingestion_lag_seconds
            .map_or_else(|| "–".into(), view::duration),
        health,
        stats,
        active,
        recent: recent.unwrap_or_default(),
        lifecycle: crate::lifecycle::Panel::from(&lifecycle),
    })
}

/// A search hit as the search service returns it (lenient).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Hit {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: serde_json::Value,
    pub name: String,
}

impl Hit {
    pub fn href(&self) -> String {
        let id = match &self.id {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s.clone(),
            _ => String::new(),
        };
        match self.kind.as_str() {
            "battle" => format!("/battles/{id}"),
            "alliance" => format!("/intel/alliances/{id}"),
            "corporation" => format!("/intel/corporations/{id}"),
            "character" => format!("/intel/characters/{id}"),
            "system" => format!("/systems/{id}"),
            "type" | "ship" | "ship_type" => format!("/types/{id}"),
            _ => format!("/search?q={}", encode(&self.name)),
        }
    }
}

/// A facet: its name and `(value, count, link)` per value.
pub type Facet = (String, Vec<(String, u64, String)>);

#[derive(Template)]
#[template(path = "search.html")]
pub struct SearchPage {
    pub layout: Layout,
    pub hits: Vec<Hit>,
    /// (facet, [(value, count, href)]).
    pub facets: Vec<Facet>,
    pub searched: bool,
}

pub async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if let Err(r) = gate(&state, &headers, auth::SEARCH).await {
        return r;
    }
    let f = query_map(q.as_deref());
    let text = f.get("q").cloned().unwrap_or_default();
    let mut layout = Layout::new("Search", "search", &headers);
    layout.q.clone_from(&text);
    let mut hits = Vec::new();
    let mut facets = Vec::new();
    if !text.trim().is_empty() {
        let mut query = format!("q={}&facets=type", encode(&text));
        if let Some(t) = f.get("types") {
            query.push_str(&format!("&types={}", encode(t)));
        }
        match state
            .upstreams
            .json::<serde_json::Value>(ServiceName::Search, &format!("/search?{query}"), true)
            .await
        {
            Ok(v) => {
                hits = serde_json::from_value(v["hits"].clone()).unwrap_or_default();
                if let Some(obj) = v["facets"].as_object() {
                    for (name, values) in obj {
                        let list = facet_values(values)
                            .into_iter()
                            .map(|(val, n)| {
                                let href =
                                    format!("/search?q={}&types={}", encode(&text), encode(&val));
                                (val, n, href)
                            })
                            .collect();
                        facets.push((name.clone(), list));
                    }
                }
            }
            Err(e @ UpstreamError::Unavailable { .. }) => {
                layout.notice = Some(
                    "search unavailable: the search service is not running; browse battles instead"
                        .into(),
                );
                tracing::debug!(error = %e, "search unavailable");
            }
            Err(e) => layout.degraded(&e),
        }
    }
    render(&SearchPage {
        layout,
        hits,
        facets,
        searched: !text.trim().is_empty(),
    })
}

/// Facet values as `{value: count}` or `[{value, count}]`.
fn facet_values(v: &serde_json::Value) -> Vec<(String, u64)> {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
            .collect(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| {
                (
                    x["value"].as_str().unwrap_or("").to_owned(),
                    x["count"].as_u64().unwrap_or(0),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[derive(Template)]
#[template(path = "place.html")]
pub struct PlacePage {
    pub layout: Layout,
    pub heading: String,
    pub image: String,
    /// (label, value).
    pub facts: Vec<(String, String)>,
    pub system: Option<SystemView>,
    pub rows: Vec<BattleLine>,
    pub zkb: String,
}

pub async fn system(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = gate(&state, &headers, auth::BATTLE_REPORTS).await {
        return r;
    }
    let Some(id) = id
        .parse::<i64>()
        .ok()
        .filter(|&i| bs_sde::StaticData::bundled().system(i).is_some())
    else {
        return message(
            StatusCode::NOT_FOUND,
            &headers,
            "No such system",
            "This solar system is not in the static data.",
            false,
        );
    };
    let sys = system_view(id);
    let mut layout = Layout::new(sys.name.clone(), "search", &headers);
    let rows = match state
        .upstreams
        .battles(&format!("system_id={id}&limit=50"))
        .await
    {
        Ok(p) => p.battles.iter().map(|b| battle_line(&state, b)).collect(),
        Err(e) => {
            layout.degraded(&e);
            Vec::new()
        }
    };
    render(&PlacePage {
        layout,
        heading: sys.name.clone(),
        image: String::new(),
        facts: vec![
            ("Region".into(), sys.region.clone()),
            ("Space".into(), sys.security_type.clone()),
        ],
        zkb: format!("https://zkillboard.com/system/{id}/"),
        system: Some(sys),
        rows,
    })
}

pub async fn ship_type(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let sde = bs_sde::StaticData::bundled();
    let Some(t) = id.parse::<i64>().ok().and_then(|i| sde.type_info(i)) else {
        return message(
            StatusCode::NOT_FOUND,
            &headers,
            "No such type",
            "This type is not in the static data.",
            false,
        );
    };
    let group = sde
        .type_group(t.id)
        .map(|g| g.name.clone())
        .unwrap_or_default();
    let class = sde
        .ship_class(t.id)
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default();
    render(&PlacePage {
        layout: Layout::new(t.name.clone(), "search", &headers),
        heading: t.name.clone(),
        image: state.images.render(t.id, 256),
        facts: vec![("Group".into(), group), ("Class".into(), class)],
        system: None,
        rows: Vec::new(),
        zkb: format!("https://zkillboard.com/ship/{}/", t.id),
    })
}
