//! `/notifications`: the caller's notifications (unread first, mark one / all read, live
//! arrival over `/api/ws`) and their settings: subscriptions with a filter builder,
//! webhook targets (Discord or generic JSON) with delivery status and last error, watchlists
//! and failed deliveries.
//!
//! Every change is a plain POST form carrying the CSRF token (`csrf_token`, the value of the
//! readable `battlescope_csrf` cookie the authentication service sets at login), checked by
//! [`crate::notify::csrf_check`], answered with a 303 back to the page (post/redirect/get),
//! so everything works without JavaScript; the script only adds live arrival and
//! autocomplete of entity names. The data stays the notification service's: each read and
//! write goes to it with the caller's cookie.

use std::collections::BTreeSet;

use askama::Template;
use axum::extract::{Form, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use super::battles::{encode, query_map};
use super::{Layout, message, render};
use crate::notify::{self, CsrfRefusal};
use crate::{AppState, view};

/// Ship classes offered by the filter builder (the static data's class names).
pub const SHIP_CLASSES: &[&str] = &[
    "frigate",
    "destroyer",
    "cruiser",
    "logistics",
    "battlecruiser",
    "battleship",
    "capital",
    "supercapital",
    "industrial",
    "mining",
    "corvette",
    "shuttle",
    "capsule",
    "structure",
];

/// One notification row.
pub struct NoteRow {
    pub id: i64,
    pub read: bool,
    pub time: String,
    pub kind: String,
    pub text: String,
    pub href: String,
}

/// One webhook with its delivery status.
pub struct HookRow {
    pub url: String,
    pub kind: String,
    pub state: String,
    pub delivered: u64,
    pub pending: u64,
    pub failed: u64,
    pub last_error: String,
}

pub struct SubRow {
    pub id: i64,
    pub name: String,
    pub enabled: bool,
    pub websocket: bool,
    pub filter: String,
    pub hooks: Vec<HookRow>,
}

pub struct WatchRow {
    pub id: i64,
    pub name: String,
    pub members: String,
}

pub struct DeadRow {
    pub subscription: String,
    pub subject: String,
    pub attempts: u64,
    pub reason: String,
}

/// The subscription form's values (empty for a new one).
#[derive(Default)]
pub struct SubForm {
    /// Editing this subscription, or a new one.
    pub id: Option<i64>,
    pub name: String,
    pub enabled: bool,
    pub websocket: bool,
    pub characters: String,
    pub corporations: String,
    pub alliances: String,
    pub role: String,
    pub systems: String,
    pub regions: String,
    pub near_system: String,
    pub jumps: String,
    pub classes: BTreeSet<String>,
    pub min_isk: String,
    pub watchlist: String,
    pub battle: bool,
    pub battle_kills: String,
    pub battle_isk: String,
    /// A filter the builder cannot show, as JSON (it wins when not empty).
    pub advanced: String,
    /// `(url, kind)`; the form always has one empty row more.
    pub hooks: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "notifications.html")]
pub struct NotificationsPage {
    pub layout: Layout,
    pub csrf: String,
    pub ok: String,
    pub unread: usize,
    pub notes: Vec<NoteRow>,
    pub subs: Vec<SubRow>,
    pub watchlists: Vec<WatchRow>,
    pub dead: Vec<DeadRow>,
    pub form: SubForm,
    pub classes: &'static [&'static str],
}

impl NotificationsPage {
    pub fn checked(&self, class: &str) -> &'static str {
        if self.form.classes.contains(class) {
            "checked"
        } else {
            ""
        }
    }

    pub fn role_sel(&self, role: &str) -> &'static str {
        if self.form.role == role || (self.form.role.is_empty() && role == "either") {
            "selected"
        } else {
            ""
        }
    }

    pub fn watch_sel(&self, id: &i64) -> &'static str {
        if self.form.watchlist == id.to_string() {
            "selected"
        } else {
            ""
        }
    }
}

/// The CSRF token for the page's forms: the readable cookie set at login.
fn csrf_token(headers: &HeaderMap) -> String {
    notify::cookie_value(headers, bs_authentication::settings::SECURE_CSRF_COOKIE)
        .or_else(|| notify::cookie_value(headers, bs_authentication::settings::CSRF_COOKIE))
        .unwrap_or("")
        .to_owned()
}

fn ids_text(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_i64)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A readable one-line description of a filter.
pub fn describe(f: &Value) -> String {
    let ids = |k: &str| ids_text(&f["ids"]).replace(", ", ",") + k;
    let role = || match f["role"].as_str() {
        Some("victim") => " (victim)",
        Some("attacker") => " (attacker)",
        _ => "",
    };
    let list = |sep: &str| {
        f["of"]
            .as_array()
            .map(|a| a.iter().map(describe).collect::<Vec<_>>().join(sep))
            .unwrap_or_default()
    };
    match f["type"].as_str().unwrap_or("") {
        "and" => list(" and "),
        "or" => format!("({})", list(" or ")),
        "none_of" => format!("none of ({})", list(", ")),
        "character" => format!("character {}{}", ids(""), role()),
        "corporation" => format!("corporation {}{}", ids(""), role()),
        "alliance" => format!("alliance {}{}", ids(""), role()),
        "watchlist" => format!("watchlist #{}{}", f["id"], role()),
        "system" => format!("system {}", ids("")),
        "constellation" => format!("constellation {}", ids("")),
        "region" => format!("region {}", ids("")),
        "within_jumps" => format!(
            "within {} jumps of {}",
            f["jumps"],
            super::system_view(f["system_id"].as_i64().unwrap_or(0)).name
        ),
        "security_type" => format!("space {}", f["types"]),
        "ship_class" => format!(
            "ship class {}",
            f["classes"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("/"))
                .unwrap_or_default()
        ),
        "ship_type" => format!("ship type {}", ids("")),
        "ship_group" => format!("ship group {}", ids("")),
        "min_isk" => format!("≥ {}", view::isk(f["isk"].as_f64().unwrap_or(0.0))),
        "min_pilots" => format!("≥ {} pilots", f["pilots"]),
        "battle" => {
            let mut s = "battle".to_owned();
            if let Some(k) = f["min_kills"].as_u64() {
                s.push_str(&format!(" ≥ {k} kills"));
            }
            if let Some(i) = f["min_isk"].as_f64() {
                s.push_str(&format!(" ≥ {}", view::isk(i)));
            }
            s
        }
        other => other.to_owned(),
    }
}

fn note_row(n: &Value) -> NoteRow {
    let s = &n["summary"];
    let kind = n["kind"].as_str().unwrap_or("").to_owned();
    let (text, href) = match kind.as_str() {
        "killmail" => {
            let victim = s["victim"]["character"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| {
                    s["victim"]["character_id"]
                        .as_i64()
                        .map(|i| format!("#{i}"))
                })
                .unwrap_or_else(|| "Someone".into());
            let ship = s["victim"]["ship"].as_str().map_or_else(
                || super::type_name(s["victim"]["ship_type_id"].as_i64().unwrap_or(0)),
                str::to_owned,
            );
            let system = s["system"].as_str().map_or_else(
                || super::system_view(s["system_id"].as_i64().unwrap_or(0)).name,
                str::to_owned,
            );
            (
                format!(
                    "{victim} lost a {ship} in {system} ({})",
                    view::isk(s["isk"].as_f64().unwrap_or(0.0))
                ),
                format!(
                    "https://zkillboard.com/kill/{}/",
                    s["killmail_id"].as_i64().unwrap_or(0)
                ),
            )
        }
        "battle" => (
            format!(
                "Battle {}: {} kills, {}",
                s["battle_id"],
                s["kills"],
                view::isk(s["isk"].as_f64().unwrap_or(0.0))
            ),
            format!("/battles/{}", s["battle_id"].as_i64().unwrap_or(0)),
        ),
        _ => (
            format!(
                "Test notification for “{}”",
                s["subscription"].as_str().unwrap_or("")
            ),
            String::new(),
        ),
    };
    NoteRow {
        id: n["id"].as_i64().unwrap_or(0),
        read: n["read"].as_bool().unwrap_or(false),
        time: n["created_at"]
            .as_str()
            .and_then(view::parse_time)
            .map_or_else(String::new, |t| view::time(&t)),
        kind,
        text,
        href,
    }
}

fn sub_row(s: &Value) -> SubRow {
    SubRow {
        id: s["id"].as_i64().unwrap_or(0),
        name: s["name"].as_str().unwrap_or("").to_owned(),
        enabled: s["enabled"].as_bool().unwrap_or(false),
        websocket: s["websocket"].as_bool().unwrap_or(false),
        filter: describe(&s["filter"]),
        hooks: s["webhooks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|h| {
                        let st = &h["status"];
                        HookRow {
                            url: h["url"].as_str().unwrap_or("").to_owned(),
                            kind: h["kind"].as_str().unwrap_or("").to_owned(),
                            state: if h["enabled"].as_bool().unwrap_or(false) {
                                "active".into()
                            } else {
                                format!(
                                    "disabled: {}",
                                    h["disabled_reason"].as_str().unwrap_or("by the service")
                                )
                            },
                            delivered: st["delivered"].as_u64().unwrap_or(0),
                            pending: st["pending"].as_u64().unwrap_or(0),
                            failed: st["failed"].as_u64().unwrap_or(0),
                            last_error: st["last_error"].as_str().unwrap_or("").to_owned(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The builder's view of a stored filter, or `None` when it has a shape the builder does not
/// make (it is then edited as JSON).
fn prefill(f: &Value, form: &mut SubForm) -> bool {
    let clauses: Vec<&Value> = match f["type"].as_str() {
        Some("and") => f["of"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        _ => vec![f],
    };
    let mut seen = BTreeSet::new();
    for c in clauses {
        let t = c["type"].as_str().unwrap_or("");
        let parts: Vec<&Value> = if t == "or" {
            c["of"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default()
        } else {
            vec![c]
        };
        let kinds: BTreeSet<&str> = parts.iter().filter_map(|p| p["type"].as_str()).collect();
        let entity = kinds
            .iter()
            .all(|k| matches!(*k, "character" | "corporation" | "alliance"));
        let area = kinds
            .iter()
            .all(|k| matches!(*k, "system" | "region" | "within_jumps"));
        let group = if entity && !kinds.is_empty() {
            "entities"
        } else if area && !kinds.is_empty() {
            "area"
        } else if parts.len() == 1 {
            t
        } else {
            return false;
        };
        if !seen.insert(group.to_owned()) {
            return false;
        }
        for p in parts {
            match p["type"].as_str().unwrap_or("") {
                k @ ("character" | "corporation" | "alliance") => {
                    let role = p["role"].as_str().unwrap_or("either").to_owned();
                    if !form.role.is_empty() && form.role != role {
                        return false;
                    }
                    form.role = role;
                    let ids = ids_text(&p["ids"]);
                    match k {
                        "character" => form.characters = ids,
                        "corporation" => form.corporations = ids,
                        _ => form.alliances = ids,
                    }
                }
                "system" => form.systems = ids_text(&p["ids"]),
                "region" => form.regions = ids_text(&p["ids"]),
                "within_jumps" => {
                    form.near_system = p["system_id"].to_string();
                    form.jumps = p["jumps"].to_string();
                }
                "ship_class" if p["role"].as_str().unwrap_or("victim") == "victim" => {
                    form.classes = p["classes"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                }
                "min_isk" => form.min_isk = format!("{:.0}", p["isk"].as_f64().unwrap_or(0.0)),
                "watchlist" if p["role"].as_str().unwrap_or("either") == "either" => {
                    form.watchlist = p["id"].to_string();
                }
                "battle" => {
                    form.battle = true;
                    form.battle_kills = p["min_kills"]
                        .as_u64()
                        .map(|k| k.to_string())
                        .unwrap_or_default();
                    form.battle_isk = p["min_isk"]
                        .as_f64()
                        .map(|i| format!("{i:.0}"))
                        .unwrap_or_default();
                }
                _ => return false,
            }
        }
    }
    true
}

fn form_of(sub: &Value) -> SubForm {
    let mut form = SubForm {
        id: sub["id"].as_i64(),
        name: sub["name"].as_str().unwrap_or("").to_owned(),
        enabled: sub["enabled"].as_bool().unwrap_or(true),
        websocket: sub["websocket"].as_bool().unwrap_or(true),
        ..SubForm::default()
    };
    let mut built = SubForm::default();
    if prefill(&sub["filter"], &mut built) {
        form = SubForm {
            id: form.id,
            name: form.name,
            enabled: form.enabled,
            websocket: form.websocket,
            ..built
        };
    } else {
        form.advanced = serde_json::to_string_pretty(&sub["filter"]).unwrap_or_default();
    }
    form.hooks = sub["webhooks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    (
                        h["url"].as_str().unwrap_or("").to_owned(),
                        h["kind"].as_str().unwrap_or("json").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    form
}

/// The page. Anonymous visitors get the login page (401).
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let q = query_map(q.as_deref());
    let get = |path: &'static str| notify::call(&state, &headers, Method::GET, path, None);
    let (notes, subs, lists, dead) = tokio::join!(
        get("/notifications?limit=200"),
        get("/subscriptions"),
        get("/watchlists"),
        get("/dead-letters"),
    );
    let mut layout = Layout::new("Notifications", "notifications", &headers);
    let (notes, subs, lists, dead) = match (notes, subs, lists, dead) {
        (Ok(n), Ok(s), Ok(l), Ok(d)) => (n, s, l, d),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                &headers,
                "Notifications unavailable",
                &super::notice_of(&e),
                false,
            );
        }
    };
    match notes.0.as_u16() {
        200 => {}
        401 => {
            return message(
                StatusCode::UNAUTHORIZED,
                &headers,
                "Log in to see your notifications",
                "Notifications belong to your account: log in with EVE Online first.",
                true,
            );
        }
        403 => {
            return message(
                StatusCode::FORBIDDEN,
                &headers,
                "No access",
                "Your account does not have the notifications feature; contact an administrator.",
                false,
            );
        }
        s => {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                &headers,
                "Notifications unavailable",
                &format!("The notification service answered {s}; try again in a moment."),
                false,
            );
        }
    }
    if let Some(e) = q.get("error") {
        layout.notice = Some(e.clone());
    }
    let arr = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let notes: Vec<NoteRow> = arr(&notes.1).iter().map(note_row).collect();
    let sub_values = arr(&subs.1);
    let subs_rows: Vec<SubRow> = sub_values.iter().map(sub_row).collect();
    let watchlists: Vec<WatchRow> = arr(&lists.1)
        .iter()
        .map(|w| {
            let mut parts = Vec::new();
            for k in ["characters", "corporations", "alliances", "systems"] {
                let t = ids_text(&w[k]);
                if !t.is_empty() {
                    parts.push(format!("{k}: {t}"));
                }
            }
            WatchRow {
                id: w["id"].as_i64().unwrap_or(0),
                name: w["name"].as_str().unwrap_or("").to_owned(),
                members: parts.join("; "),
            }
        })
        .collect();
    let name_of = |id: i64| {
        subs_rows
            .iter()
            .find(|s| s.id == id)
            .map_or_else(|| format!("#{id}"), |s| s.name.clone())
    };
    let dead: Vec<DeadRow> = arr(&dead.1)
        .iter()
        .map(|d| DeadRow {
            subscription: name_of(d["subscription_id"].as_i64().unwrap_or(0)),
            subject: format!("{} {}", d["kind"].as_str().unwrap_or(""), d["subject_id"]),
            attempts: d["attempts"].as_u64().unwrap_or(0),
            reason: d["reason"].as_str().unwrap_or("").to_owned(),
        })
        .collect();
    let mut form = q
        .get("edit")
        .and_then(|id| id.parse::<i64>().ok())
        .and_then(|id| sub_values.iter().find(|s| s["id"].as_i64() == Some(id)))
        .map(form_of)
        .unwrap_or(SubForm {
            enabled: true,
            websocket: true,
            ..SubForm::default()
        });
    form.hooks.push((String::new(), "discord".into()));
    render(&NotificationsPage {
        layout,
        csrf: csrf_token(&headers),
        ok: q.get("ok").cloned().unwrap_or_default(),
        unread: notes.iter().filter(|n| !n.read).count(),
        notes,
        subs: subs_rows,
        watchlists,
        dead,
        form,
        classes: SHIP_CLASSES,
    })
}

// ---------------------------------------------------------------------------------------------
// Forms.

type Pairs = Vec<(String, String)>;

fn field<'a>(p: &'a Pairs, k: &str) -> &'a str {
    p.iter().find(|(n, _)| n == k).map_or("", |(_, v)| v.trim())
}

fn back(ok: Option<&str>, error: Option<&str>, edit: Option<i64>) -> Response {
    let mut q = Vec::new();
    if let Some(m) = ok {
        q.push(format!("ok={}", encode(m)));
    }
    if let Some(m) = error {
        q.push(format!("error={}", encode(m)));
    }
    if let Some(id) = edit {
        q.push(format!("edit={id}"));
    }
    let to = if q.is_empty() {
        "/notifications".to_owned()
    } else {
        format!("/notifications?{}", q.join("&"))
    };
    Redirect::to(&to).into_response()
}

/// The CSRF check for a form, as a refusal page.
async fn checked(state: &AppState, headers: &HeaderMap, p: &Pairs) -> Result<(), Response> {
    let token = field(p, "csrf_token");
    notify::csrf_check(state, headers, Some(token))
        .await
        .map_err(|r| match r {
            CsrfRefusal::NotAuthenticated => message(
                StatusCode::UNAUTHORIZED,
                headers,
                "Log in first",
                "Your session has ended; log in again.",
                true,
            ),
            CsrfRefusal::Unavailable(_) => message(
                StatusCode::SERVICE_UNAVAILABLE,
                headers,
                "Authentication unavailable",
                "The form cannot be checked right now; try again in a moment.",
                false,
            ),
            CsrfRefusal::CrossSite | CsrfRefusal::Token => message(
                StatusCode::FORBIDDEN,
                headers,
                "Form refused",
                "This form was not sent from your BattleScope page (missing or stale CSRF token). Reload the page and try again.",
                false,
            ),
        })
}

/// Sends a change to the notification service and redirects back with its outcome.
async fn change(
    state: &AppState,
    headers: &HeaderMap,
    method: Method,
    path: &str,
    body: Option<Value>,
    done: &str,
    edit: Option<i64>,
) -> Response {
    let body = body.map(|b| b.to_string().into_bytes());
    match notify::call(state, headers, method, path, body).await {
        Ok((s, _)) if s.is_success() => back(Some(done), None, None),
        Ok((s, v)) if s == StatusCode::UNAUTHORIZED => {
            let _ = v;
            message(
                StatusCode::UNAUTHORIZED,
                headers,
                "Log in first",
                "Your session has ended; log in again.",
                true,
            )
        }
        Ok((s, v)) => {
            let detail = v["detail"]
                .as_str()
                .filter(|d| !d.is_empty())
                .or_else(|| v["error"].as_str())
                .map_or_else(
                    || format!("the notification service answered {s}"),
                    str::to_owned,
                );
            back(None, Some(&format!("Not saved: {detail}")), edit)
        }
        Err(e) => back(None, Some(&super::notice_of(&e)), edit),
    }
}

/// A form with nothing but its token: check it, make the change, redirect back.
async fn plain(
    state: &AppState,
    headers: &HeaderMap,
    p: &Pairs,
    method: Method,
    path: &str,
    done: &str,
) -> Response {
    super::form_post(
        checked(state, headers, p),
        change(state, headers, method, path, None, done, None),
    )
    .await
}

fn id_list(p: &Pairs, k: &str) -> Result<Vec<i64>, String> {
    field(p, k)
        .split([',', ' ', ';', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| format!("{k}: “{s}” is not an id (pick names from the suggestions)"))
        })
        .collect()
}

fn number(p: &Pairs, k: &str) -> Result<Option<f64>, String> {
    let v = field(p, k).replace([',', '_', ' '], "");
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .map(Some)
        .ok_or_else(|| format!("{k}: “{v}” is not a number"))
}

/// The filter built from the form: AND of the filled-in clauses; within a clause, the
/// entity lists (and the area choices) are alternatives.
pub fn build_filter(p: &Pairs) -> Result<Value, String> {
    let advanced = field(p, "advanced");
    if !advanced.is_empty() {
        return serde_json::from_str(advanced).map_err(|e| format!("filter JSON: {e}"));
    }
    let mut clauses = Vec::new();
    let role = match field(p, "role") {
        r @ ("victim" | "attacker") => r,
        _ => "either",
    };
    let mut entities = Vec::new();
    for (k, t) in [
        ("characters", "character"),
        ("corporations", "corporation"),
        ("alliances", "alliance"),
    ] {
        let ids = id_list(p, k)?;
        if !ids.is_empty() {
            entities.push(json!({ "type": t, "ids": ids, "role": role }));
        }
    }
    let mut area = Vec::new();
    let systems = id_list(p, "systems")?;
    if !systems.is_empty() {
        area.push(json!({ "type": "system", "ids": systems }));
    }
    let regions = id_list(p, "regions")?;
    if !regions.is_empty() {
        area.push(json!({ "type": "region", "ids": regions }));
    }
    let near = id_list(p, "near_system")?;
    if let Some(&system) = near.first() {
        let jumps = number(p, "jumps")?.unwrap_or(0.0);
        area.push(json!({ "type": "within_jumps", "system_id": system, "jumps": jumps as u32 }));
    }
    for group in [entities, area] {
        match group.len() {
            0 => {}
            1 => clauses.extend(group),
            _ => clauses.push(json!({ "type": "or", "of": group })),
        }
    }
    let classes: Vec<&str> = p
        .iter()
        .filter(|(k, v)| k == "ship_class" && SHIP_CLASSES.contains(&v.as_str()))
        .map(|(_, v)| v.as_str())
        .collect();
    if !classes.is_empty() {
        clauses.push(json!({ "type": "ship_class", "classes": classes, "role": "victim" }));
    }
    if let Some(isk) = number(p, "min_isk")? {
        clauses.push(json!({ "type": "min_isk", "isk": isk }));
    }
    if let Ok(w) = field(p, "watchlist").parse::<i64>() {
        clauses.push(json!({ "type": "watchlist", "id": w, "role": "either" }));
    }
    if !field(p, "battle").is_empty() {
        let kills = number(p, "battle_kills")?.map(|k| k as u32);
        let isk = number(p, "battle_isk")?;
        clauses.push(json!({ "type": "battle", "min_kills": kills, "min_isk": isk }));
    }
    match clauses.len() {
        0 => Err("choose at least one condition (an entity, a place, a ship class, ISK, a watchlist or a battle trigger)".into()),
        1 => Ok(clauses.remove(0)),
        _ => Ok(json!({ "type": "and", "of": clauses })),
    }
}

fn subscription_body(p: &Pairs) -> Result<Value, String> {
    let name = field(p, "name");
    if name.is_empty() {
        return Err("give the subscription a name".into());
    }
    let filter = build_filter(p)?;
    let mut hooks = Vec::new();
    for i in 0..5 {
        let url = field(p, &format!("webhook_url_{i}"));
        if url.is_empty() {
            continue;
        }
        let kind = if field(p, &format!("webhook_kind_{i}")) == "json" {
            "json"
        } else {
            "discord"
        };
        hooks.push(json!({ "url": url, "kind": kind }));
    }
    Ok(json!({
        "name": name,
        "filter": filter,
        "enabled": !field(p, "enabled").is_empty(),
        "websocket": !field(p, "websocket").is_empty(),
        "webhooks": hooks,
    }))
}

pub async fn create_sub(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(p): Form<Pairs>,
) -> Response {
    if let Err(r) = checked(&state, &headers, &p).await {
        return r;
    }
    match subscription_body(&p) {
        Ok(body) => {
            change(
                &state,
                &headers,
                Method::POST,
                "/subscriptions",
                Some(body),
                "Subscription created",
                None,
            )
            .await
        }
        Err(e) => back(None, Some(&format!("Not saved: {e}")), None),
    }
}

pub async fn update_sub(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(p): Form<Pairs>,
) -> Response {
    if let Err(r) = checked(&state, &headers, &p).await {
        return r;
    }
    match subscription_body(&p) {
        Ok(body) => {
            change(
                &state,
                &headers,
                Method::PUT,
                &format!("/subscriptions/{id}"),
                Some(body),
                "Subscription saved",
                Some(id),
            )
            .await
        }
        Err(e) => back(None, Some(&format!("Not saved: {e}")), Some(id)),
    }
}

pub async fn test_sub(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(p): Form<Pairs>,
) -> Response {
    plain(
        &state,
        &headers,
        &p,
        Method::POST,
        &format!("/subscriptions/{id}/test"),
        "Test notification sent",
    )
    .await
}

pub async fn delete_sub(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(p): Form<Pairs>,
) -> Response {
    plain(
        &state,
        &headers,
        &p,
        Method::DELETE,
        &format!("/subscriptions/{id}"),
        "Subscription deleted",
    )
    .await
}

pub async fn read_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(p): Form<Pairs>,
) -> Response {
    plain(
        &state,
        &headers,
        &p,
        Method::POST,
        &format!("/notifications/{id}/read"),
        "Marked as read",
    )
    .await
}

pub async fn read_all(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(p): Form<Pairs>,
) -> Response {
    plain(
        &state,
        &headers,
        &p,
        Method::POST,
        "/notifications/read-all",
        "All marked as read",
    )
    .await
}

pub async fn create_watch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(p): Form<Pairs>,
) -> Response {
    if let Err(r) = checked(&state, &headers, &p).await {
        return r;
    }
    let body = (|| -> Result<Value, String> {
        let name = field(&p, "name");
        if name.is_empty() {
            return Err("give the watchlist a name".into());
        }
        Ok(json!({
            "name": name,
            "characters": id_list(&p, "characters")?,
            "corporations": id_list(&p, "corporations")?,
            "alliances": id_list(&p, "alliances")?,
            "systems": id_list(&p, "systems")?,
        }))
    })();
    match body {
        Ok(b) => {
            change(
                &state,
                &headers,
                Method::POST,
                "/watchlists",
                Some(b),
                "Watchlist created",
                None,
            )
            .await
        }
        Err(e) => back(None, Some(&format!("Not saved: {e}")), None),
    }
}

pub async fn delete_watch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(p): Form<Pairs>,
) -> Response {
    plain(
        &state,
        &headers,
        &p,
        Method::DELETE,
        &format!("/watchlists/{id}"),
        "Watchlist deleted",
    )
    .await
}
