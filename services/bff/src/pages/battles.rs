//! `/battles` (the list) and `/battles/{id}` (the report).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{Layout, SystemView, gate, message, moved, name_or, render, system_view, type_name};
use crate::api::{BATTLE_FILTERS, forward_query};
use crate::clients::UpstreamError;
use crate::model::{BattleRow, Report};
use crate::{AppState, auth, svg, view};

/// One row of the battle list.
pub struct BattleLine {
    pub id: i64,
    pub system: SystemView,
    pub more_systems: usize,
    pub time: String,
    pub duration: String,
    pub kills: u32,
    pub isk: String,
    pub isk_title: String,
    pub isk_tier: &'static str,
    pub pilots: u32,
    pub versus: Vec<Versus>,
    pub active: bool,
}

/// One side in a list row: its main alliance (else corporation) by name, linked to the
/// entity page, with the side's pilot count.
pub struct Versus {
    pub label: String,
    pub pilots: u32,
    pub colour: &'static str,
    /// The entity page; empty for a side without alliance or corporation.
    pub href: String,
}

/// The entity page of an alliance, corporation or character.
fn entity_href(kind: &str, id: i64) -> String {
    format!("/intel/{kind}s/{id}")
}

pub fn battle_line(state: &AppState, b: &BattleRow) -> BattleLine {
    let start = view::parse_time(&b.start_time);
    let end = view::parse_time(&b.end_time);
    let secs = match (start, end) {
        (Some(s), Some(e)) => (e - s).num_seconds(),
        _ => 0,
    };
    let versus = b
        .sides
        .iter()
        .take(3)
        .enumerate()
        .map(|(i, s)| {
            // The name the battle service sent, else one this BFF has seen, else the id.
            let (label, href) = match s.main_entity() {
                Some((kind, id, name)) => {
                    let seen = state.upstreams.name(kind, id);
                    (
                        name_or(kind, id, name.or(seen.as_deref())),
                        entity_href(kind, id),
                    )
                }
                None => (format!("Side {}", i + 1), String::new()),
            };
            Versus {
                label,
                pilots: s.pilots,
                colour: view::side_colour(i),
                href,
            }
        })
        .collect();
    BattleLine {
        id: b.battle_id,
        system: system_view(b.system_ids.first().copied().unwrap_or(0)),
        more_systems: b.system_ids.len().saturating_sub(1),
        time: start.map(|t| view::time(&t)).unwrap_or_default(),
        duration: view::duration(secs),
        kills: b.total_kills,
        isk: view::isk(b.total_isk_destroyed),
        isk_title: view::isk_full(b.total_isk_destroyed),
        isk_tier: view::isk_tier(b.total_isk_destroyed),
        pilots: b.pilots,
        versus,
        active: b.status == "active",
    }
}

#[derive(Template)]
#[template(path = "battles.html")]
pub struct BattlesPage {
    pub layout: Layout,
    pub rows: Vec<BattleLine>,
    pub next: Option<String>,
    /// Current filter values, for the form.
    pub f: BTreeMap<String, String>,
    pub active_filters: usize,
}

impl BattlesPage {
    pub fn val(&self, k: &str) -> &str {
        self.f.get(k).map_or("", String::as_str)
    }

    pub fn sel(&self, k: &str, v: &str) -> &'static str {
        if self.val(k) == v { "selected" } else { "" }
    }
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses `a=1&b=2` into decoded pairs.
pub fn query_map(raw: Option<&str>) -> BTreeMap<String, String> {
    raw.unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if let Err(r) = gate(&state, &headers, auth::BATTLE_REPORTS).await {
        return r;
    }
    let mut f = query_map(q.as_deref());
    // Date inputs give `YYYY-MM-DD`; the battle API wants RFC 3339.
    for k in ["from", "to"] {
        if let Some(v) = f.get(k)
            && v.len() == 10
        {
            let t = if k == "from" {
                "T00:00:00Z"
            } else {
                "T23:59:59Z"
            };
            let full = format!("{v}{t}");
            f.insert(format!("{k}_rfc"), full);
        }
    }
    let mut forwarded: Vec<String> = Vec::new();
    for k in BATTLE_FILTERS {
        let v = match *k {
            "from" | "to" => f.get(&format!("{k}_rfc")).or_else(|| f.get(*k)),
            _ => f.get(*k),
        };
        if let Some(v) = v {
            forwarded.push(format!("{k}={}", encode(v)));
        }
    }
    let query = forward_query(Some(&forwarded.join("&")), BATTLE_FILTERS);
    let mut layout = Layout::new("Battles", "battles", &headers);
    let (rows, next) = match state.upstreams.battles(&query).await {
        Ok(page) => (
            page.battles
                .iter()
                .map(|b| battle_line(&state, b))
                .collect(),
            page.next_cursor.map(|c| {
                let mut keep: Vec<String> = f
                    .iter()
                    .filter(|(k, _)| k.as_str() != "cursor" && !k.ends_with("_rfc"))
                    .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                    .collect();
                keep.push(format!("cursor={}", encode(&c)));
                keep.join("&")
            }),
        ),
        Err(UpstreamError::BadRequest(m)) => {
            layout.notice = Some(format!("filter not understood: {m}"));
            (Vec::new(), None)
        }
        Err(e) => {
            layout.degraded(&e);
            (Vec::new(), None)
        }
    };
    let active_filters = f
        .keys()
        .filter(|k| {
            !matches!(k.as_str(), "sort" | "order" | "cursor" | "limit") && !k.ends_with("_rfc")
        })
        .count();
    render(&BattlesPage {
        layout,
        rows,
        next,
        f,
        active_filters,
    })
}

/// A side in the report.
pub struct SideView {
    pub index: usize,
    pub colour: &'static str,
    pub title: String,
    pub pilots: u32,
    pub kills: u32,
    pub losses: u32,
    pub isk_destroyed: String,
    pub isk_lost: String,
    pub efficiency: String,
    pub eff_width: f64,
    pub eff_class: &'static str,
    /// (logo url, name, pilots, entity page).
    pub groups: Vec<(String, String, u32, String)>,
}

/// One composition row: class, colour, per side (fielded, lost, bar width %).
pub struct ClassRow {
    pub class: String,
    pub colour: &'static str,
    pub cells: Vec<(u32, u32, f64)>,
}

pub struct PilotRow {
    pub id: i64,
    pub name: String,
    pub portrait: String,
    pub corp: String,
    pub alliance: String,
    pub ships: String,
    pub lost: bool,
    pub damage: u64,
    pub kills: u32,
}

pub struct SidePilots {
    /// Pilots on the side (the list may be cut to [`PILOTS_SHOWN`]).
    pub total: usize,
    pub index: usize,
    pub colour: &'static str,
    pub title: String,
    pub pilots: Vec<PilotRow>,
}

pub struct KillRow {
    pub id: i64,
    pub value: f64,
    pub time: String,
    pub victim: String,
    pub victim_id: i64,
    pub ship: String,
    pub ship_id: i64,
    pub isk: String,
    pub isk_tier: &'static str,
    pub system: String,
    pub colour: &'static str,
}

#[derive(Template)]
#[template(path = "battle.html")]
pub struct ReportPage {
    pub layout: Layout,
    pub full: bool,
    pub kills_total: usize,
    pub id: i64,
    pub active: bool,
    pub revision: u64,
    pub systems: Vec<SystemView>,
    pub time: String,
    pub end: String,
    pub duration: String,
    pub kills: u32,
    pub isk: String,
    pub isk_title: String,
    pub pilots: u32,
    pub sides: Vec<SideView>,
    pub timeline_svg: String,
    pub composition: Vec<ClassRow>,
    pub side_pilots: Vec<SidePilots>,
    pub kill_rows: Vec<KillRow>,
    pub related: Vec<String>,
    pub img: String,
}

/// A name the battle service sent inline (`None` when absent or empty).
fn inline(n: &Option<String>) -> Option<&str> {
    n.as_deref().filter(|n| !n.is_empty())
}

/// An alliance's or corporation's name on a report: inline, else the report's name table,
/// else one this BFF has seen, else the id.
fn entity_name(state: &AppState, r: &Report, kind: &str, e: &crate::model::EntityCount) -> String {
    let seen = state.upstreams.name(kind, e.id);
    name_or(
        kind,
        e.id,
        inline(&e.name).or(r.name(kind, e.id)).or(seen.as_deref()),
    )
}

fn side_title(state: &AppState, r: &Report, s: &crate::model::Side) -> String {
    let mut parts: Vec<String> = s
        .alliances
        .iter()
        .take(2)
        .map(|a| entity_name(state, r, "alliance", a))
        .collect();
    if parts.is_empty() {
        parts = s
            .corporations
            .iter()
            .take(2)
            .map(|c| entity_name(state, r, "corporation", c))
            .collect();
    }
    if parts.is_empty() {
        format!("Side {}", s.index + 1)
    } else {
        parts.join(", ")
    }
}

/// `?full=1` shows every participant and killmail; by default a report shows the
/// [`PILOTS_SHOWN`] top pilots per side and the [`KILLS_SHOWN`] most valuable killmails, which
/// keeps the largest battle's page light enough for a phone.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ReportParams {
    pub full: Option<String>,
}

/// Pilots per side on the default report page (by damage dealt).
pub const PILOTS_SHOWN: usize = 25;
/// Killmails on the default report page (most valuable first).
pub const KILLS_SHOWN: usize = 40;

pub async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Result<axum::extract::Query<ReportParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let full = params
        .ok()
        .and_then(|p| p.0.full)
        .is_some_and(|v| !v.is_empty() && v != "0");
    if let Err(r) = gate(&state, &headers, auth::BATTLE_REPORTS).await {
        return r;
    }
    let Ok(id) = id.parse::<i64>() else {
        return message(
            StatusCode::BAD_REQUEST,
            &headers,
            "Bad battle id",
            "A battle id is a number.",
            false,
        );
    };
    let logged_in = crate::auth::Gate::has_session(&headers);
    let st = state.clone();
    let page = state
        .report_pages
        .get((id, full, logged_in), move || {
            let st = st.clone();
            async move { render_report(&st, id, full, logged_in).await }
        })
        .await;
    match page {
        Ok(html) => axum::response::Html(html).into_response(),
        Err(e) => match &*e {
            UpstreamError::Redirect(to) => moved(&format!("/battles/{to}")),
            UpstreamError::NotFound => message(
                StatusCode::NOT_FOUND,
                &headers,
                "No such battle",
                "This battle does not exist (yet).",
                false,
            ),
            other => message(
                StatusCode::SERVICE_UNAVAILABLE,
                &headers,
                "Battle reports unavailable",
                &super::notice_of(other),
                false,
            ),
        },
    }
}

/// Renders a report page (cached by the caller per battle, view and login state).
async fn render_report(
    state: &AppState,
    id: i64,
    full: bool,
    logged_in: bool,
) -> Result<axum::body::Bytes, UpstreamError> {
    let cached = state.upstreams.report(id).await?;
    let r = &cached.report;
    let mut layout = Layout::with_login(format!("Battle {id}"), "battles", logged_in);
    let img = &state.images;
    let sides: Vec<SideView> = r
        .sides
        .iter()
        .map(|s| {
            let eff = s.efficiency * 100.0;
            let mut groups: Vec<(String, String, u32, String)> = s
                .alliances
                .iter()
                .take(8)
                .map(|a| {
                    (
                        img.alliance(a.id, 32),
                        entity_name(state, r, "alliance", a),
                        a.pilots,
                        entity_href("alliance", a.id),
                    )
                })
                .collect();
            if groups.is_empty() {
                groups = s
                    .corporations
                    .iter()
                    .take(8)
                    .map(|c| {
                        (
                            img.corporation(c.id, 32),
                            entity_name(state, r, "corporation", c),
                            c.pilots,
                            entity_href("corporation", c.id),
                        )
                    })
                    .collect();
            }
            SideView {
                index: s.index,
                colour: view::side_colour(s.index),
                title: side_title(state, r, s),
                pilots: s.pilots,
                kills: s.kills,
                losses: s.losses,
                isk_destroyed: view::isk(s.isk_destroyed),
                isk_lost: view::isk(s.isk_lost),
                efficiency: format!("{eff:.1}%"),
                eff_width: (eff.clamp(0.0, 100.0) * 10.0).round() / 10.0,
                eff_class: view::efficiency_class(eff),
                groups,
            }
        })
        .collect();
    // Composition: every class any side fielded, in display order.
    let max_fielded = r
        .sides
        .iter()
        .flat_map(|s| s.fielded_by_class.values().copied())
        .max()
        .unwrap_or(1)
        .max(1);
    let mut classes: Vec<&str> = view::CLASS_ORDER
        .iter()
        .copied()
        .filter(|c| r.sides.iter().any(|s| s.fielded_by_class.contains_key(*c)))
        .collect();
    for s in &r.sides {
        for c in s.fielded_by_class.keys() {
            if !classes.contains(&c.as_str()) {
                classes.push(c.as_str());
            }
        }
    }
    let composition = classes
        .iter()
        .map(|&c| ClassRow {
            class: c.to_owned(),
            colour: view::class_colour(c),
            cells: r
                .sides
                .iter()
                .map(|s| {
                    let f = s.fielded_by_class.get(c).copied().unwrap_or(0);
                    let l = s.lost_by_class.get(c).copied().unwrap_or(0);
                    (
                        f,
                        l,
                        (f64::from(f) / f64::from(max_fielded) * 1000.0).round() / 10.0,
                    )
                })
                .collect(),
        })
        .collect();
    let mut side_pilots: Vec<SidePilots> = sides
        .iter()
        .map(|s| SidePilots {
            index: s.index,
            colour: s.colour,
            title: s.title.clone(),
            pilots: Vec::new(),
            total: 0,
        })
        .collect();
    for p in &r.participants {
        let Some(side) = p
            .side
            .and_then(|i| side_pilots.iter_mut().find(|s| s.index == i))
        else {
            continue;
        };
        let mut ships: Vec<String> = Vec::new();
        for s in &p.ships {
            let n = inline(&s.ship_name)
                .or(r.name("type", s.ship_type_id))
                .map_or_else(|| type_name(s.ship_type_id), str::to_owned);
            let n = if s.lost { format!("{n} †") } else { n };
            if !ships.contains(&n) {
                ships.push(n);
            }
        }
        side.total += 1;
        if !full && side.pilots.len() >= PILOTS_SHOWN {
            continue;
        }
        side.pilots.push(PilotRow {
            id: p.character_id,
            name: name_or(
                "character",
                p.character_id,
                inline(&p.character_name).or(r.name("character", p.character_id)),
            ),
            portrait: img.portrait(p.character_id, 32),
            corp: p
                .corporation_id
                .map(|c| {
                    name_or(
                        "corporation",
                        c,
                        inline(&p.corporation_name).or(r.name("corporation", c)),
                    )
                })
                .unwrap_or_default(),
            alliance: p
                .alliance_id
                .map(|a| {
                    name_or(
                        "alliance",
                        a,
                        inline(&p.alliance_name).or(r.name("alliance", a)),
                    )
                })
                .unwrap_or_default(),
            ships: ships.join(", "),
            lost: p.lost,
            damage: p.damage_dealt,
            kills: p.kills_involved,
        });
    }
    // The killmail list, from enrichment (names, ISK); a missing enrichment shows ids only.
    let kms = match state.upstreams.killmails(&r.killmail_ids).await {
        Ok(k) => k,
        Err(e) => {
            layout.degraded(&e);
            Default::default()
        }
    };
    let victim_side: std::collections::HashMap<i64, usize> = r
        .participants
        .iter()
        .filter_map(|p| p.side.map(|s| (p.character_id, s)))
        .collect();
    let mut kill_rows: Vec<KillRow> = r
        .killmail_ids
        .iter()
        .rev()
        .map(|&kid| match kms.get(&kid) {
            Some(k) => {
                let vid = k.victim.character_id.unwrap_or(0);
                let isk = k.isk_total.unwrap_or(0.0);
                KillRow {
                    id: kid,
                    value: isk,
                    time: k.killmail_time.get(11..19).unwrap_or("").to_owned(),
                    victim: k
                        .victim
                        .character_name
                        .clone()
                        .or_else(|| r.name("character", vid).map(str::to_owned))
                        .or_else(|| k.victim.corporation_name.clone())
                        .unwrap_or_else(|| name_or("character", vid, None)),
                    victim_id: vid,
                    ship: k
                        .ship_type_name
                        .clone()
                        .unwrap_or_else(|| type_name(k.ship_type_id)),
                    ship_id: k.ship_type_id,
                    isk: view::isk(isk),
                    isk_tier: view::isk_tier(isk),
                    system: k
                        .system_name
                        .clone()
                        .unwrap_or_else(|| system_view(k.system_id).name),
                    colour: victim_side
                        .get(&vid)
                        .map_or("#6b7280", |&s| view::side_colour(s)),
                }
            }
            None => KillRow {
                id: kid,
                value: 0.0,
                time: String::new(),
                victim: String::new(),
                victim_id: 0,
                ship: String::new(),
                ship_id: 0,
                isk: String::new(),
                isk_tier: "isk-t0",
                system: String::new(),
                colour: "#6b7280",
            },
        })
        .collect();
    let kills_total = kill_rows.len();
    if !full && kill_rows.len() > KILLS_SHOWN {
        kill_rows.sort_by(|a, b| b.value.total_cmp(&a.value));
        kill_rows.truncate(KILLS_SHOWN);
    }
    let start = view::parse_time(&r.start_time);
    let end = view::parse_time(&r.end_time);
    let page = ReportPage {
        full,
        kills_total,
        layout,
        id: r.id,
        active: r.status == "active",
        revision: r.revision,
        systems: r.system_ids.iter().map(|&s| system_view(s)).collect(),
        time: start.map(|t| view::time(&t)).unwrap_or_default(),
        end: end
            .map(|t| t.format("%H:%M").to_string())
            .unwrap_or_default(),
        duration: view::duration(r.duration_s),
        kills: r.total_kills,
        isk: view::isk(r.total_isk_destroyed),
        isk_title: view::isk_full(r.total_isk_destroyed),
        pilots: r.pilots,
        timeline_svg: svg::timeline(&r.timeline, r.sides.len()),
        sides,
        composition,
        side_pilots,
        kill_rows,
        related: r.related_links.clone(),
        img: state.config.web.image_url.trim_end_matches('/').to_owned(),
    };
    page.render().map(axum::body::Bytes::from).map_err(|e| {
        tracing::error!(error = %e, "report template failed");
        UpstreamError::Internal("template".into())
    })
}
