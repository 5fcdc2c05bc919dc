//! The battle service's HTTP API (the BFF serves it under `/api/battles…` in all-in-one mode).
//!
//! * `GET /battles`: filters `from`, `to` (RFC 3339, kill time; battles overlapping the range),
//!   `system_id`, `region_id`, `security_type`, `alliance_id`, `corporation_id`, `character_id`,
//!   `min_kills`, `min_isk`, `min_pilots`, `status` (`active`|`ended`); `sort`
//!   (`start_time`|`kills`|`isk`|`pilots`|`duration`), `order` (`desc` default|`asc`), `limit`
//!   (≤ 500, default 50), `cursor` (the previous page's `next_cursor`).
//! * Names: listed battles carry `system_names`, `region_names` and, per side,
//!   `alliance_names`/`corporation_names` aligned with the id arrays; a report adds `name` on
//!   each side's `alliances`/`corporations` entry, `character_name`/`corporation_name`/
//!   `alliance_name` per participant, `ship_name` per ship, and the `names` table
//!   (`{kind: {id: name}}`). Names come from `killmail.enriched` (a later revision updates
//!   them); `null` where a name is still unknown.
//! * `GET /battles/{id}`: the full report. **A merged (absorbed) id answers `308 Permanent
//!   Redirect`** with `Location` pointing at the survivor (the same path with the id replaced,
//!   relative to the request, so it also works under the BFF prefix) and a JSON body
//!   `{"redirect_to": <survivor id>}` for clients that do not follow redirects. The same holds
//!   for `/timeline` and `PUT …/sides`.
//! * `GET /battles/{id}/timeline`: per-minute kills, losses and ISK per side.
//! * `PUT /battles/{id}/sides`: a manual override `{"entity": {"kind": "alliance", "id": 1},
//!   "target": {"side": 1} | {"with": {"kind": "corporation", "id": 2}}}`; authorised by the
//!   [`OverridePolicy`] hook (FC role or above, once authentication exists).
//! * `GET /characters/{id}/ships`: ships a pilot flew or lost, per type and per killmail.
//! * `GET /stats`: `battles_total`, `active`, `ended`, `merged`, `killmails`, rejections and
//!   clusterer counters.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bs_clustering::{BattleReport, SideOverride};
use bs_events::{BattleSnapshot, BattleStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::consumer::{Battles, snapshot_of};
use crate::store::{BattleQuery, BattleRow, Cursor, Lookup, SortKey};

/// Who may change sides. The BFF/auth layer will plug in a role check (FC or above); until
/// then every caller is allowed and the actor is taken from `x-battlescope-actor` if present.
pub trait OverridePolicy: Send + Sync + 'static {
    /// `Ok(actor)` to allow (the actor is stored with the override), `Err(reason)` to refuse.
    fn authorize(&self, headers: &HeaderMap, battle_id: u64) -> Result<Option<String>, String>;
}

/// Allows everyone (no authentication yet).
pub struct AllowAll;

impl OverridePolicy for AllowAll {
    fn authorize(&self, headers: &HeaderMap, _battle_id: u64) -> Result<Option<String>, String> {
        Ok(headers
            .get("x-battlescope-actor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned))
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub battles: Arc<Battles>,
    pub policy: Arc<dyn OverridePolicy>,
}

/// The service router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/battles", get(list))
        .route("/battles/{id}", get(report))
        .route("/battles/{id}/timeline", get(timeline))
        .route(
            "/battles/{id}/sides",
            axum::routing::put(put_sides).get(get_sides),
        )
        .route("/characters/{id}/ships", get(ships))
        .route("/stats", get(stats))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    // Details go to the log, never to the client.
    tracing::warn!(error = %e, "battle api error");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// 308 to the survivor: the request path with the absorbed id segment replaced.
fn redirect(uri: &axum::http::Uri, from: u64, to: u64) -> Response {
    let path = uri.path();
    let segments: Vec<&str> = path.split('/').collect();
    let needle = from.to_string();
    let pos = segments.iter().rposition(|s| *s == needle);
    // Relative to the request so a prefix added by a proxy (the BFF's /api) is kept.
    // Relative to the request so a prefix added by a proxy (the BFF's /api) is kept:
    // `/battles/1` → `2`, `/battles/1/timeline` → `../2/timeline`.
    let location = match pos {
        Some(p) => {
            let rest = &segments[p + 1..];
            let mut l = "../".repeat(rest.len());
            l.push_str(&to.to_string());
            for seg in rest {
                l.push('/');
                l.push_str(seg);
            }
            l
        }
        None => to.to_string(),
    };
    let mut r = (
        StatusCode::PERMANENT_REDIRECT,
        Json(json!({ "redirect_to": to })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

enum Found {
    Row(Box<BattleRow>),
    Response(Response),
}

async fn find(state: &ApiState, uri: &axum::http::Uri, id: &str) -> Found {
    let Ok(id) = id.parse::<u64>() else {
        return Found::Response(error(StatusCode::BAD_REQUEST, "battle id must be a number"));
    };
    match state.battles.store().battle(id).await {
        Ok(Lookup::Found(row)) => Found::Row(row),
        Ok(Lookup::Redirect(to)) => Found::Response(redirect(uri, id, to)),
        Ok(Lookup::NotFound) => Found::Response(error(StatusCode::NOT_FOUND, "no such battle")),
        Err(e) => Found::Response(internal(e)),
    }
}

#[derive(Debug, Default, Deserialize)]
struct ListParams {
    from: Option<String>,
    to: Option<String>,
    system_id: Option<i64>,
    region_id: Option<i64>,
    security_type: Option<String>,
    alliance_id: Option<i64>,
    corporation_id: Option<i64>,
    character_id: Option<i64>,
    min_kills: Option<i64>,
    min_isk: Option<f64>,
    min_pilots: Option<i64>,
    status: Option<String>,
    sort: Option<SortKey>,
    order: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

fn parse_time(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("bad time `{s}` (RFC 3339)"))
}

fn query_of(p: ListParams) -> Result<BattleQuery, String> {
    let status = match p.status.as_deref() {
        None | Some("") | Some("all") => None,
        Some("active") => Some(BattleStatus::Active),
        Some("ended") => Some(BattleStatus::Ended),
        Some(other) => return Err(format!("bad status `{other}` (active|ended)")),
    };
    let ascending = match p.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => return Err(format!("bad order `{other}` (asc|desc)")),
    };
    Ok(BattleQuery {
        from_ms: p.from.as_deref().map(parse_time).transpose()?,
        to_ms: p.to.as_deref().map(parse_time).transpose()?,
        system_id: p.system_id,
        region_id: p.region_id,
        security_type: p.security_type,
        alliance_id: p.alliance_id,
        corporation_id: p.corporation_id,
        character_id: p.character_id,
        min_kills: p.min_kills,
        min_isk: p.min_isk,
        min_pilots: p.min_pilots,
        status,
        sort: p.sort.unwrap_or_default(),
        ascending,
        limit: p.limit.unwrap_or(50),
        cursor: match p.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(Cursor::decode(c).ok_or("bad cursor")?),
        },
    })
}

async fn list(
    State(state): State<ApiState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return error(StatusCode::BAD_REQUEST, "bad query parameters");
    };
    let query = match query_of(params) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match state.battles.store().battles(&query).await {
        Ok((rows, next)) => {
            let snapshots: Vec<BattleSnapshot> = rows.iter().map(snapshot_of).collect();
            let names = names_or_none(&state, &snapshot_ids(&snapshots)).await;
            let battles: Vec<Value> = snapshots
                .iter()
                .map(|b| {
                    let mut v = serde_json::to_value(b).unwrap_or(Value::Null);
                    name_snapshot(&mut v, &names);
                    v
                })
                .collect();
            Json(json!({ "battles": battles, "next_cursor": next })).into_response()
        }
        Err(e) => internal(e),
    }
}

/// Names keyed by (kind, id).
type Names = BTreeMap<(String, i64), String>;

/// Names of `ids`; on a store error the page goes out without names (ids still link).
async fn names_or_none(state: &ApiState, ids: &[i64]) -> Names {
    match state.battles.store().names(ids).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "battle names unavailable");
            Names::new()
        }
    }
}

/// Ids a listed battle shows: its sides' main alliances and corporations, systems, regions.
fn snapshot_ids(battles: &[BattleSnapshot]) -> Vec<i64> {
    let mut ids: Vec<i64> = Vec::new();
    for b in battles {
        for s in &b.sides {
            ids.extend(&s.alliance_ids);
            ids.extend(&s.corporation_ids);
        }
        ids.extend(&b.system_ids);
        ids.extend(&b.region_ids);
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn name_of(names: &Names, kind: &str, id: Option<i64>) -> Value {
    id.and_then(|id| names.get(&(kind.to_owned(), id)))
        .map_or(Value::Null, |n| Value::String(n.clone()))
}

/// `[name|null, …]` aligned with the id array `v[ids]`.
fn aligned_names(v: &Value, ids: &str, kind: &str, names: &Names) -> Value {
    Value::Array(
        v[ids]
            .as_array()
            .map(|a| a.iter().map(|x| name_of(names, kind, x.as_i64())).collect())
            .unwrap_or_default(),
    )
}

/// Adds `system_names`/`region_names` to a battle and `alliance_names`/`corporation_names` to
/// each side, aligned with the id arrays (`null` where the name is unknown).
fn name_battle_and_sides(v: &mut Value, names: &Names) {
    let systems = aligned_names(v, "system_ids", "system", names);
    let regions = aligned_names(v, "region_ids", "region", names);
    if let Some(sides) = v.get_mut("sides").and_then(Value::as_array_mut) {
        for side in sides {
            let alliances = aligned_names(side, "alliance_ids", "alliance", names);
            let corporations = aligned_names(side, "corporation_ids", "corporation", names);
            for (list, kind) in [("alliances", "alliance"), ("corporations", "corporation")] {
                if let Some(entries) = side.get_mut(list).and_then(Value::as_array_mut) {
                    for e in entries {
                        let n = name_of(names, kind, e["id"].as_i64());
                        if let Value::Object(m) = e {
                            m.insert("name".into(), n);
                        }
                    }
                }
            }
            if let Value::Object(m) = side {
                m.insert("alliance_names".into(), alliances);
                m.insert("corporation_names".into(), corporations);
            }
        }
    }
    if let Value::Object(m) = v {
        m.insert("system_names".into(), systems);
        m.insert("region_names".into(), regions);
    }
}

/// A listed battle with names.
fn name_snapshot(v: &mut Value, names: &Names) {
    name_battle_and_sides(v, names);
}

/// A report with names inline: battle and sides as in the list, plus each participant's
/// `character_name`, `corporation_name`, `alliance_name` and each ship's `ship_name`.
fn name_report(v: &mut Value, names: &Names) {
    name_battle_and_sides(v, names);
    if let Some(ps) = v.get_mut("participants").and_then(Value::as_array_mut) {
        for p in ps {
            let character = name_of(names, "character", p["character_id"].as_i64());
            let corporation = name_of(names, "corporation", p["corporation_id"].as_i64());
            let alliance = name_of(names, "alliance", p["alliance_id"].as_i64());
            if let Some(ships) = p.get_mut("ships").and_then(Value::as_array_mut) {
                for sh in ships {
                    let n = name_of(names, "type", sh["ship_type_id"].as_i64());
                    if let Value::Object(m) = sh {
                        m.insert("ship_name".into(), n);
                    }
                }
            }
            if let Value::Object(m) = p {
                m.insert("character_name".into(), character);
                m.insert("corporation_name".into(), corporation);
                m.insert("alliance_name".into(), alliance);
            }
        }
    }
}

/// Every id in the report that may have a name.
fn report_ids(report: &BattleReport) -> Vec<i64> {
    let mut ids: Vec<i64> = Vec::new();
    let mut push = |x: u64| ids.push(i64::try_from(x).unwrap_or(0));
    for p in &report.participants {
        push(p.character_id);
        p.corporation_id
            .into_iter()
            .chain(p.alliance_id)
            .for_each(&mut push);
        for s in &p.ships {
            push(u64::from(s.ship_type_id));
        }
    }
    for s in &report.sides {
        s.alliance_ids
            .iter()
            .chain(&s.corporation_ids)
            .for_each(|&x| push(x));
    }
    report.system_ids.iter().for_each(|&x| push(u64::from(x)));
    report.region_ids.iter().for_each(|&x| push(u64::from(x)));
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The report JSON: the clustering report plus id, status, times and names.
async fn report_json(state: &ApiState, row: &BattleRow) -> Result<Value, Response> {
    let report = state
        .battles
        .compute_report_at(row.battle_id, row.revision)
        .await
        .map_err(internal)?;
    let names = names_or_none(state, &report_ids(&report)).await;
    let overrides = state
        .battles
        .store()
        .overrides(row.battle_id)
        .await
        .map_err(internal)?;
    let mut by_kind: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for ((kind, id), name) in &names {
        by_kind
            .entry(kind.clone())
            .or_default()
            .insert(id.to_string(), name.clone());
    }
    let mut v = serde_json::to_value(&report).map_err(internal)?;
    name_report(&mut v, &names);
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), json!(row.battle_id));
        m.insert("status".into(), json!(row.status));
        m.insert(
            "start_time".into(),
            json!(crate::store::ms_to_time(report.start_ms)),
        );
        m.insert(
            "end_time".into(),
            json!(crate::store::ms_to_time(report.end_ms)),
        );
        m.insert("revision".into(), json!(row.revision));
        m.insert("overrides".into(), json!(overrides));
        m.insert("names".into(), json!(by_kind));
    }
    Ok(v)
}

async fn report(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
) -> Response {
    let row = match find(&state, &uri, &id).await {
        Found::Row(r) => r,
        Found::Response(r) => return r,
    };
    match report_json(&state, &row).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn timeline(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
) -> Response {
    let row = match find(&state, &uri, &id).await {
        Found::Row(r) => r,
        Found::Response(r) => return r,
    };
    match state
        .battles
        .compute_report_at(row.battle_id, row.revision)
        .await
    {
        Ok(r) => Json(json!({
            "id": row.battle_id,
            "sides": r.sides.len(),
            "start_time": crate::store::ms_to_time(r.start_ms),
            "end_time": crate::store::ms_to_time(r.end_ms),
            "minutes": r.timeline,
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

async fn get_sides(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
) -> Response {
    let row = match find(&state, &uri, &id).await {
        Found::Row(r) => r,
        Found::Response(r) => return r,
    };
    match state.battles.store().overrides(row.battle_id).await {
        Ok(o) => {
            Json(json!({ "id": row.battle_id, "overrides": o, "sides": row.sides })).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn put_sides(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<SideOverride>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let row = match find(&state, &uri, &id).await {
        Found::Row(r) => r,
        Found::Response(r) => return r,
    };
    let actor = match state.policy.authorize(&headers, row.battle_id) {
        Ok(a) => a,
        Err(reason) => return error(StatusCode::FORBIDDEN, reason),
    };
    let Ok(Json(o)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "body must be {\"entity\": {\"kind\", \"id\"}, \"target\": {\"side\": n} | {\"with\": entity}}",
        );
    };
    let now = chrono::Utc::now().timestamp_millis();
    if let Err(e) = state
        .battles
        .store()
        .put_override(row.battle_id, &o, actor.as_deref(), now)
        .await
    {
        return internal(e);
    }
    // Sides and the `battle.updated` event follow through the refresher; reads recompute now.
    (
        StatusCode::ACCEPTED,
        Json(json!({ "id": row.battle_id, "override": o })),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct ShipParams {
    limit: Option<u32>,
}

async fn ships(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(p): Query<ShipParams>,
) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "character id must be a number");
    };
    let rows = match state
        .battles
        .store()
        .ship_history(id, p.limit.unwrap_or(200))
        .await
    {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    // Per ship type: flown, lost, first and last seen.
    let mut per: BTreeMap<u32, (u32, u32, i64, i64)> = BTreeMap::new();
    for r in &rows {
        let e = per
            .entry(r.ship_type_id)
            .or_insert((0, 0, i64::MAX, i64::MIN));
        e.0 += 1;
        e.1 += u32::from(r.lost);
        e.2 = e.2.min(r.time_ms);
        e.3 = e.3.max(r.time_ms);
    }
    let ids: Vec<i64> = per.keys().map(|&t| i64::from(t)).collect();
    let names = state.battles.store().names(&ids).await.unwrap_or_default();
    let name = |t: u32| names.get(&("type".to_owned(), i64::from(t))).cloned();
    let mut ships: Vec<Value> = per
        .iter()
        .map(|(&t, &(flown, lost, first, last))| {
            json!({
                "ship_type_id": t, "ship_name": name(t), "killmails": flown, "lost": lost,
                "first_seen": crate::store::ms_to_time(first), "last_seen": crate::store::ms_to_time(last),
            })
        })
        .collect();
    ships.sort_by(|a, b| b["killmails"].as_u64().cmp(&a["killmails"].as_u64()));
    let history: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "killmail_id": r.killmail_id, "ship_type_id": r.ship_type_id, "ship_name": name(r.ship_type_id),
                "time": crate::store::ms_to_time(r.time_ms), "system_id": r.system_id, "lost": r.lost, "battle_id": r.battle_id,
            })
        })
        .collect();
    Json(json!({ "character_id": id, "ships": ships, "history": history })).into_response()
}

async fn stats(State(state): State<ApiState>) -> Response {
    let counts = match state.battles.store().counts().await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let engine = state.battles.engine_stats().await;
    Json(json!({
        "battles_total": counts.battles_total,
        "active": counts.active,
        "ended": counts.ended,
        "merged": counts.merged,
        "killmails": counts.killmails,
        "rejected": state.battles.rejected(),
        "clusterer": engine,
    }))
    .into_response()
}
