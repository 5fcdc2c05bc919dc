//! `/intel` (the live feed) and the entity pages `/intel/{alliances|corporations|characters}/{id}`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::battles::{BattleLine, battle_line};
use super::{Layout, gate, message, moved, name_or, render};
use crate::api::{FeedFilter, FeedItem, entity_view};
use crate::intel::EntityKind;
use crate::{AppState, auth, svg, view};

#[derive(Template)]
#[template(path = "intel.html")]
pub struct FeedPage {
    pub layout: Layout,
    pub items: Vec<FeedItem>,
    pub f: FeedFilter,
    pub img: String,
    pub classes: &'static [&'static str],
}

impl FeedPage {
    pub fn sel(&self, field: &str, v: &str) -> &'static str {
        let cur = match field {
            "security_type" => self.f.security_type.as_deref(),
            "ship_class" => self.f.ship_class.as_deref(),
            _ => None,
        };
        if cur == Some(v) { "selected" } else { "" }
    }

    pub fn num(v: &Option<i64>) -> String {
        v.map(|x| x.to_string()).unwrap_or_default()
    }

    pub fn min_isk(&self) -> String {
        self.f
            .min_isk
            .map(|x| format!("{x:.0}"))
            .unwrap_or_default()
    }
}

pub async fn feed(
    State(state): State<AppState>,
    headers: HeaderMap,
    filter: Result<Query<FeedFilter>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(r) = gate(&state, &headers, auth::BATTLE_INTEL).await {
        return r;
    }
    let f = filter.map(|Query(f)| f).unwrap_or_default();
    let mut layout = Layout::new("Intel: live feed", "intel", &headers);
    let items = match crate::api::feed(&state, &f).await {
        Ok(i) => i,
        Err(e) => {
            layout.degraded(&e);
            Vec::new()
        }
    };
    render(&FeedPage {
        layout,
        items,
        f,
        img: state.config.web.image_url.trim_end_matches('/').to_owned(),
        classes: &view::CLASS_ORDER[..13],
    })
}

pub struct TopRow {
    pub name: String,
    pub count: u32,
    pub extra: String,
    pub href: String,
    pub img: String,
}

#[derive(Template)]
#[template(path = "entity.html")]
pub struct EntityPage {
    pub layout: Layout,
    pub kind: &'static str,
    pub id: i64,
    pub name: String,
    pub logo: String,
    pub battles: u32,
    pub counted: usize,
    pub kills: u32,
    pub losses: u32,
    pub isk_destroyed: String,
    pub isk_lost: String,
    pub efficiency: String,
    pub eff_class: &'static str,
    pub eff_width: f64,
    pub ships: Vec<TopRow>,
    pub opponents: Vec<TopRow>,
    pub systems: Vec<TopRow>,
    pub activity_svg: String,
    pub rows: Vec<BattleLine>,
    pub zkb: String,
}

pub async fn entity(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    if let Err(r) = gate(&state, &headers, auth::BATTLE_INTEL).await {
        return r;
    }
    let (Some(kind), Ok(id)) = (EntityKind::parse(&kind), id.parse::<i64>()) else {
        return message(
            StatusCode::NOT_FOUND,
            &headers,
            "Not found",
            "No such entity page.",
            false,
        );
    };
    let img = &state.images;
    let logo = match kind {
        EntityKind::Alliance => img.alliance(id, 128),
        EntityKind::Corporation => img.corporation(id, 128),
        EntityKind::Character => img.portrait(id, 128),
    };
    let mut layout = Layout::new(format!("{} {id}", kind.as_str()), "intel", &headers);
    let v = match entity_view(&state, kind, id).await {
        Ok(v) => v,
        Err(e) => {
            layout.degraded(&e);
            return render(&EntityPage {
                layout,
                kind: kind.as_str(),
                id,
                name: name_or(kind.as_str(), id, None),
                logo,
                battles: 0,
                counted: 0,
                kills: 0,
                losses: 0,
                isk_destroyed: "–".into(),
                isk_lost: "–".into(),
                efficiency: "–".into(),
                eff_class: "",
                eff_width: 0.0,
                ships: Vec::new(),
                opponents: Vec::new(),
                systems: Vec::new(),
                activity_svg: svg::activity(&[]),
                rows: Vec::new(),
                zkb: String::new(),
            });
        }
    };
    let s = &v.stats;
    let name = name_or(kind.as_str(), id, s.name.as_deref());
    layout.title = name.clone();
    let eff = s.efficiency.unwrap_or(0.0);
    let days: Vec<(String, u32, u32)> = s
        .activity
        .iter()
        .map(|d| (d.date.clone(), d.kills, d.losses))
        .collect();
    render(&EntityPage {
        layout,
        kind: kind.as_str(),
        id,
        name,
        logo,
        battles: s.battles,
        counted: v.battles_counted,
        kills: s.kills,
        losses: s.losses,
        isk_destroyed: view::isk(s.isk_destroyed),
        isk_lost: view::isk(s.isk_lost),
        efficiency: s
            .efficiency
            .map_or_else(|| "–".into(), |e| format!("{e:.1}%")),
        eff_class: view::efficiency_class(eff),
        eff_width: eff.clamp(0.0, 100.0),
        ships: s
            .top_ships
            .iter()
            .map(|t| TopRow {
                name: t.name.clone().unwrap_or_else(|| super::type_name(t.id)),
                count: t.count,
                extra: t.extra.clone().unwrap_or_default(),
                href: format!("/types/{}", t.id),
                img: img.icon(t.id, 32),
            })
            .collect(),
        opponents: s
            .top_opponents
            .iter()
            .map(|t| {
                // Alliance ids are 99xxxxxx; anything else is a corporation.
                let alliance = t.id >= 99_000_000 && t.id < 100_000_000;
                TopRow {
                    name: t.name.clone().unwrap_or_else(|| {
                        name_or(
                            if alliance { "alliance" } else { "corporation" },
                            t.id,
                            None,
                        )
                    }),
                    count: t.count,
                    extra: String::new(),
                    href: format!(
                        "/intel/{}/{}",
                        if alliance {
                            "alliances"
                        } else {
                            "corporations"
                        },
                        t.id
                    ),
                    img: if alliance {
                        img.alliance(t.id, 32)
                    } else {
                        img.corporation(t.id, 32)
                    },
                }
            })
            .collect(),
        systems: s
            .top_systems
            .iter()
            .map(|t| {
                let sys = super::system_view(t.id);
                TopRow {
                    name: t.name.clone().unwrap_or(sys.name),
                    count: t.count,
                    extra: sys.security,
                    href: format!("/systems/{}", t.id),
                    img: String::new(),
                }
            })
            .collect(),
        activity_svg: svg::activity(&days),
        rows: v
            .battles
            .iter()
            .take(50)
            .map(|b| battle_line(&state, b))
            .collect(),
        zkb: format!("https://zkillboard.com/{}/{id}/", kind.as_str()),
    })
}

pub async fn alliance_alias(Path(id): Path<String>) -> Response {
    moved(&format!("/intel/alliances/{id}"))
}

pub async fn corporation_alias(Path(id): Path<String>) -> Response {
    moved(&format!("/intel/corporations/{id}"))
}

pub async fn character_alias(Path(id): Path<String>) -> Response {
    moved(&format!("/intel/characters/{id}"))
}
