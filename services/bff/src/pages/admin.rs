//! The `/admin` section (Admin or SuperAdmin on the `admin` feature): accounts, roles,
//! corporation/alliance gating, ingestion rulesets and backfill jobs, clusterer settings and
//! the audit log.
//!
//! Every page first checks the viewer's role (401 page for visitors, a clear 403 page for
//! everyone else); the services decide again on their side (the authentication service keeps
//! account, SuperAdmin and gating changes for SuperAdmins, and its refusal is shown). Forms
//! post here, carry the CSRF token and end in a 303 back to their page; a refused form is
//! shown again with the reason. Forms whose effect lands in the ingestion service have their
//! token checked through [`super::account::verify_csrf`] first, since that service has no
//! sessions; so do the clusterer forms, whose settings the battle service stores and applies.
//! Changes that land in services without sessions (rulesets, backfill jobs, clusterer
//! settings) are recorded in the authentication service's audit log once they succeeded
//! (`POST /admin/audit`, under the viewer's session, so the actor cannot be chosen), next to
//! its own entries; the battle service also keeps who changed its settings.

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bs_config::ServiceName;
use serde::Deserialize;
use serde_json::{Value, json};

use super::account::{
    Fields, FlashQuery, Fwd, Me, Viewer, call_json, csrf_refused, error_code, error_message, field,
    flash, flash_text, require_login, see_other, session_rows, unavailable, verify_csrf,
};
use super::battles::{encode, query_map};
use super::{Layout, form_post, message, render};
use crate::{AppState, view};

/// The features roles are granted in, and the role ladder (keys as the service spells them).
pub const FEATURES: &[&str] = &[
    "battle-reports",
    "battle-intel",
    "search",
    "notifications",
    "admin",
];
pub const ROLES: &[&str] = &["user", "fc", "director", "admin"];
/// Security classes a ruleset can track.
pub const SECURITY_TYPES: &[&str] = &["highsec", "lowsec", "nullsec", "wormhole", "pochven"];
/// Backfill sources the ingestion service knows.
pub const SOURCES: &[&str] = &["everef", "zkb_history"];

/// An admin viewer, or the page refusing the request.
async fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<Me, Response> {
    let (v, me): (std::sync::Arc<Viewer>, Me) = require_login(state, headers).await?;
    if v.is_admin() {
        Ok(me)
    } else {
        Err(message(
            StatusCode::FORBIDDEN,
            headers,
            "Administrators only",
            "This page is for Admins and SuperAdmins of this BattleScope installation. Your \
             account does not have that role; ask an administrator if you need it.",
            false,
        ))
    }
}

/// The guard of an admin form whose effect lands outside the authentication service: the
/// Admin role, then the CSRF token (checked with the authentication service, since the other
/// services have no sessions).
async fn admin_checked(
    state: &AppState,
    headers: &HeaderMap,
    fwd: &Fwd,
    token: &str,
) -> Result<(), Response> {
    require_admin(state, headers).await?;
    verify_csrf(state, headers, fwd, token).await
}

/// What every admin page shows around its content.
pub struct AdminFrame {
    /// Which admin tab is current.
    pub tab: &'static str,
    pub csrf: String,
    pub ok: String,
    pub error: String,
    pub super_admin: bool,
}

fn frame(
    title: &str,
    tab: &'static str,
    headers: &HeaderMap,
    me: &Me,
    q: &FlashQuery,
) -> (Layout, AdminFrame) {
    let (ok, error) = flash(q);
    let frame = AdminFrame {
        tab,
        csrf: me.csrf_token.clone(),
        ok,
        error,
        super_admin: me.super_admin,
    };
    (Layout::new(title, "admin", headers), frame)
}

/// A call to the authentication service's API on behalf of the browser.
async fn auth_call(
    state: &AppState,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Result<Value, String> {
    match call_json(
        state,
        ServiceName::Authentication,
        method,
        path,
        headers,
        body,
    )
    .await
    {
        Ok(r) if r.status.is_success() => {
            Ok(serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        }
        Ok(r) => Err(error_message(&r)),
        Err(e) => Err(super::notice_of(&e)),
    }
}

/// The result of a form's call: a 303 to `page` with `ok`, or with the service's code.
/// One service call of a form.
struct Call<'a> {
    service: ServiceName,
    method: Method,
    path: &'a str,
    headers: HeaderMap,
    body: Option<&'a Value>,
    /// Recorded in the audit log once the call succeeded.
    audit: Option<Audit<'a>>,
}

impl<'a> Call<'a> {
    /// A change in the authentication service, with the browser's headers and the form's CSRF
    /// token; that service checks the session itself and audits its own changes.
    fn authentication(
        method: Method,
        path: &'a str,
        headers: HeaderMap,
        body: Option<&'a Value>,
    ) -> Self {
        Self {
            service: ServiceName::Authentication,
            method,
            path,
            headers,
            body,
            audit: None,
        }
    }

    /// A change in a service without sessions (the BFF checked the role and the token), recorded
    /// in the audit log once it succeeded.
    fn recorded(
        service: ServiceName,
        method: Method,
        path: &'a str,
        body: Option<&'a Value>,
        audit: Audit<'a>,
    ) -> Self {
        Self {
            service,
            method,
            path,
            headers: HeaderMap::new(),
            body,
            audit: Some(audit),
        }
    }
}

/// An admin change another service made, as the authentication service's audit log keeps it
/// (`POST /admin/audit`, under the viewer's session).
struct Audit<'a> {
    /// The browser's headers with the form's CSRF token.
    headers: HeaderMap,
    action: &'a str,
    target_type: &'a str,
    /// `None`: the `id` of the service's answer (a job just created).
    target_id: Option<&'a str>,
    metadata: Value,
}

impl<'a> Audit<'a> {
    fn new(fwd: &Fwd, csrf: &str, action: &'a str, target_type: &'a str) -> Self {
        Self {
            headers: fwd.with_csrf(csrf),
            action,
            target_type,
            target_id: None,
            metadata: json!({}),
        }
    }

    fn target(mut self, id: &'a str) -> Self {
        self.target_id = Some(id);
        self
    }

    fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Records a change that has been made already: a failure to record it is logged and counted
/// (`battlescope_bff_audit_failures_total`), never shown as a failed change.
async fn record(state: &AppState, audit: Audit<'_>, answer: &[u8]) {
    let created: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
    let target_id = match audit.target_id {
        Some(id) => id.to_owned(),
        None => created["id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| created["id"].as_i64().map(|n| n.to_string()))
            .unwrap_or_else(|| "unknown".to_owned()),
    };
    let body = json!({
        "action": audit.action,
        "target_type": audit.target_type,
        "target_id": target_id,
        "metadata": audit.metadata,
    });
    if let Err(e) = auth_call(
        state,
        Method::POST,
        "/admin/audit",
        &audit.headers,
        Some(&body),
    )
    .await
    {
        metrics::counter!("battlescope_bff_audit_failures_total", "action" => audit.action.to_owned())
            .increment(1);
        tracing::error!(action = audit.action, target = %target_id, error = %e, "admin change made but not recorded in the audit log");
    }
}

async fn act(
    state: &AppState,
    headers: &HeaderMap,
    call: Call<'_>,
    page: &str,
    ok: &str,
) -> Response {
    let sep = if page.contains('?') { '&' } else { '?' };
    let service = call.service;
    let audit = call.audit;
    match call_json(
        state,
        service,
        call.method,
        call.path,
        &call.headers,
        call.body,
    )
    .await
    {
        Ok(r) if r.status.is_success() => {
            if let Some(a) = audit {
                record(state, a, &r.body).await;
            }
            see_other(&format!("{page}{sep}ok={ok}"), &[])
        }
        Ok(r) if r.status == StatusCode::UNAUTHORIZED => super::account::login_required(headers),
        Ok(r) => {
            let code = error_code(&r);
            if code.starts_with("csrf_") {
                return csrf_refused(headers);
            }
            // Validation messages of the ingestion service are shown as they are (escaped).
            let text = if service == ServiceName::Authentication {
                flash_text(&code)
            } else {
                error_message(&r)
            };
            message(
                if r.status.is_client_error() {
                    r.status
                } else {
                    StatusCode::BAD_GATEWAY
                },
                headers,
                "Not saved",
                &format!("{text} Nothing was changed."),
                false,
            )
        }
        Err(e) => unavailable(headers, &e),
    }
}

// ------------------------------------------------------------------ overview

#[derive(Template)]
#[template(path = "admin.html")]
pub struct OverviewPage {
    pub layout: Layout,
    pub f: AdminFrame,
    pub accounts: String,
    pub jobs_running: usize,
    pub denied: usize,
    /// Verification, gaps and retention runs, as on the dashboard (`/api/lifecycle`).
    pub lifecycle: crate::lifecycle::Panel,
}

/// `GET /admin`.
pub async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Query(q): Query<FlashQuery>,
) -> Response {
    let me = match require_admin(&state, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let (mut layout, f) = frame("Admin", "overview", &headers, &me, &q);
    let (accounts, config, jobs, lifecycle) = tokio::join!(
        auth_call(&state, Method::GET, "/admin/accounts?limit=1", &fwd.0, None),
        auth_call(&state, Method::GET, "/admin/config", &fwd.0, None),
        state
            .upstreams
            .json::<Value>(ServiceName::Ingestion, "/backfill/jobs", false),
        crate::lifecycle::gather(&state.upstreams),
    );
    let accounts = match accounts {
        Ok(v) => v["total"].as_i64().map_or("–".into(), |n| n.to_string()),
        Err(e) => {
            layout.notice = Some(e);
            "–".into()
        }
    };
    let denied = config.map_or(0, |c| {
        ["denied_alliances", "denied_corporations"]
            .iter()
            .map(|k| c[*k].as_array().map_or(0, Vec::len))
            .sum()
    });
    let jobs_running = jobs.map_or(0, |j| {
        j["jobs"].as_array().map_or(0, |a| {
            a.iter()
                .filter(|x| matches!(x["status"].as_str(), Some("running" | "pending")))
                .count()
        })
    });
    render(&OverviewPage {
        layout,
        f,
        accounts,
        jobs_running,
        denied,
        lifecycle: crate::lifecycle::Panel::from(&lifecycle),
    })
}

// ------------------------------------------------------------------ accounts

pub struct AccountLine {
    pub id: String,
    pub name: String,
    pub portrait: String,
    pub blocked: bool,
    pub block_reason: String,
    pub super_admin: bool,
    pub created: String,
    pub last_login: String,
}

fn time_of(v: &Value) -> String {
    v.as_str()
        .and_then(view::parse_time)
        .map_or_else(|| "–".to_owned(), |t| view::time(&t))
}

fn account_line(state: &AppState, a: &Value) -> AccountLine {
    AccountLine {
        id: a["id"].as_str().unwrap_or_default().to_owned(),
        name: a["display_name"].as_str().unwrap_or_default().to_owned(),
        portrait: a["primary_character_id"]
            .as_i64()
            .map(|c| state.images.portrait(c, 32))
            .unwrap_or_default(),
        blocked: a["blocked"].as_bool().unwrap_or(false),
        block_reason: a["block_reason"].as_str().unwrap_or_default().to_owned(),
        super_admin: a["super_admin"].as_bool().unwrap_or(false),
        created: time_of(&a["created_at"]),
        last_login: time_of(&a["last_login_at"]),
    }
}

#[derive(Template)]
#[template(path = "admin_accounts.html")]
pub struct AccountsPage {
    pub layout: Layout,
    pub f: AdminFrame,
    pub q: String,
    pub accounts: Vec<AccountLine>,
    pub total: i64,
    pub prev: String,
    pub next: String,
}

/// `GET /admin/accounts?q=&offset=`.
pub async fn accounts(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    RawQuery(raw): RawQuery,
) -> Response {
    let me = match require_admin(&state, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let qm = query_map(raw.as_deref());
    let flash_q = FlashQuery {
        ok: qm.get("ok").cloned(),
        error: qm.get("error").cloned(),
    };
    let (mut layout, f) = frame("Accounts", "accounts", &headers, &me, &flash_q);
    let text = qm.get("q").cloned().unwrap_or_default();
    let offset: i64 = qm
        .get("offset")
        .and_then(|o| o.parse().ok())
        .unwrap_or(0)
        .max(0);
    const PAGE: i64 = 50;
    let path = format!(
        "/admin/accounts?limit={PAGE}&offset={offset}{}",
        if text.trim().is_empty() {
            String::new()
        } else {
            format!("&query={}", encode(text.trim()))
        }
    );
    let (accounts, total) = match auth_call(&state, Method::GET, &path, &fwd.0, None).await {
        Ok(v) => (
            v["accounts"]
                .as_array()
                .map(|a| a.iter().map(|x| account_line(&state, x)).collect())
                .unwrap_or_default(),
            v["total"].as_i64().unwrap_or(0),
        ),
        Err(e) => {
            layout.notice = Some(e);
            (Vec::new(), 0)
        }
    };
    let link = |o: i64| format!("/admin/accounts?q={}&offset={o}", encode(&text));
    render(&AccountsPage {
        layout,
        f,
        prev: if offset > 0 {
            link((offset - PAGE).max(0))
        } else {
            String::new()
        },
        next: if offset + PAGE < total {
            link(offset + PAGE)
        } else {
            String::new()
        },
        q: text,
        accounts,
        total,
    })
}

#[derive(Template)]
#[template(path = "admin_account.html")]
pub struct AccountPage {
    pub layout: Layout,
    pub f: AdminFrame,
    pub account: AccountLine,
    pub characters: Vec<super::account::CharacterRow>,
    /// (feature, current role key or "").
    pub roles: Vec<(String, String)>,
    pub sessions: Vec<super::account::SessionRow>,
    pub roles_list: &'static [&'static str],
}

/// `GET /admin/accounts/{id}`: characters, roles per feature, sessions.
pub async fn account(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Path(id): Path<String>,
    Query(q): Query<FlashQuery>,
) -> Response {
    let me = match require_admin(&state, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let (mut layout, f) = frame("Account", "accounts", &headers, &me, &q);
    let id_enc = encode(&id);
    let (detail_path, sessions_path) = (
        format!("/admin/accounts/{id_enc}"),
        format!("/admin/accounts/{id_enc}/sessions"),
    );
    let (detail, sessions) = tokio::join!(
        call_json(
            &state,
            ServiceName::Authentication,
            Method::GET,
            &detail_path,
            &fwd.0,
            None
        ),
        auth_call(&state, Method::GET, &sessions_path, &fwd.0, None),
    );
    let detail: Value = match detail {
        Ok(r) if r.status.is_success() => serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        Ok(r) if r.status == StatusCode::NOT_FOUND => {
            return message(
                StatusCode::NOT_FOUND,
                &headers,
                "No such account",
                "There is no account with this id.",
                false,
            );
        }
        Ok(r) => {
            return message(
                r.status,
                &headers,
                "Account unavailable",
                &error_message(&r),
                false,
            );
        }
        Err(e) => return unavailable(&headers, &e),
    };
    let chars: Vec<super::account::CharacterInfo> =
        serde_json::from_value(detail["characters"].clone()).unwrap_or_default();
    let names: HashMap<i64, String> = chars
        .iter()
        .map(|c| (c.character_id, c.name.clone()))
        .collect();
    let sessions = match sessions {
        Ok(v) => session_rows(&v, &names),
        Err(e) => {
            layout.notice = Some(e);
            Vec::new()
        }
    };
    let roles = FEATURES
        .iter()
        .map(|feat| {
            (
                (*feat).to_owned(),
                detail["roles"][*feat]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    layout.title = format!(
        "Account {}",
        detail["account"]["display_name"]
            .as_str()
            .unwrap_or_default()
    );
    render(&AccountPage {
        layout,
        f,
        account: account_line(&state, &detail["account"]),
        characters: super::account::character_rows(&state, &chars),
        roles,
        sessions,
        roles_list: ROLES,
    })
}

/// `POST /admin/accounts/{id}/block` (`blocked` = `1`/`0`, `reason`).
pub async fn block(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    if let Err(r) = require_admin(&state, &headers).await {
        return r;
    }
    let blocked = field(&form, "blocked") == "1";
    let reason = field(&form, "reason");
    let body = json!({
        "blocked": blocked,
        "block_reason": if blocked && !reason.is_empty() { Some(reason) } else { None },
    });
    let id_enc = encode(&id);
    act(
        &state,
        &headers,
        Call::authentication(
            Method::PUT,
            &format!("/admin/accounts/{id_enc}"),
            fwd.with_csrf(field(&form, "csrf_token")),
            Some(&body),
        ),
        &format!("/admin/accounts/{id_enc}"),
        if blocked { "blocked" } else { "unblocked" },
    )
    .await
}

/// `POST /admin/accounts/{id}/roles` (`feature`, `role`; an empty role revokes).
pub async fn grant(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    if let Err(r) = require_admin(&state, &headers).await {
        return r;
    }
    let role = field(&form, "role");
    let body = json!({
        "account_id": id,
        "feature": field(&form, "feature"),
        "role": if role.is_empty() { None } else { Some(role) },
    });
    act(
        &state,
        &headers,
        Call::authentication(
            Method::POST,
            "/admin/roles/grant",
            fwd.with_csrf(field(&form, "csrf_token")),
            Some(&body),
        ),
        &format!("/admin/accounts/{}", encode(&id)),
        "role_saved",
    )
    .await
}

/// `POST /admin/accounts/{id}/sessions/end`: ends every session of the account.
pub async fn end_account_sessions(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    if let Err(r) = require_admin(&state, &headers).await {
        return r;
    }
    let id_enc = encode(&id);
    act(
        &state,
        &headers,
        Call::authentication(
            Method::DELETE,
            &format!("/admin/accounts/{id_enc}/sessions"),
            fwd.with_csrf(field(&form, "csrf_token")),
            None,
        ),
        &format!("/admin/accounts/{id_enc}"),
        "sessions_ended",
    )
    .await
}

/// `POST /admin/sessions/{id}/end` (`account_id` to come back to).
pub async fn end_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Path(sid): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    if let Err(r) = require_admin(&state, &headers).await {
        return r;
    }
    act(
        &state,
        &headers,
        Call::authentication(
            Method::DELETE,
            &format!("/admin/sessions/{}", encode(&sid)),
            fwd.with_csrf(field(&form, "csrf_token")),
            None,
        ),
        &format!("/admin/accounts/{}", encode(field(&form, "account_id"))),
        "session_ended",
    )
    .await
}

// ------------------------------------------------------------------ gating

/// The four gating lists: (config key, label, entity kind).
pub const LISTS: &[(&str, &str, &str)] = &[
    ("allowed_alliances", "Allowed alliances", "alliance"),
    (
        "allowed_corporations",
        "Allowed corporations",
        "corporation",
    ),
    ("denied_alliances", "Denied alliances", "alliance"),
    ("denied_corporations", "Denied corporations", "corporation"),
];

pub struct Entry {
    pub id: i64,
    pub name: String,
    pub logo: String,
    pub href: String,
}

pub struct GateList {
    pub key: &'static str,
    pub label: &'static str,
    pub kind: &'static str,
    pub entries: Vec<Entry>,
}

#[derive(Template)]
#[template(path = "admin_gating.html")]
pub struct GatingPage {
    pub layout: Layout,
    pub f: AdminFrame,
    pub lists: Vec<GateList>,
    pub require_membership: bool,
    pub default_role: String,
    pub roles_list: &'static [&'static str],
    pub locked_out: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GatingQuery {
    pub ok: Option<String>,
    pub error: Option<String>,
    pub locked_out: Option<u64>,
}

/// `GET /admin/gating`: the corporation/alliance allow and deny lists.
pub async fn gating(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Query(q): Query<GatingQuery>,
) -> Response {
    let me = match require_admin(&state, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let flash_q = FlashQuery {
        ok: q.ok.clone(),
        error: q.error.clone(),
    };
    let (mut layout, f) = frame("Access rules", "gating", &headers, &me, &flash_q);
    let config = match auth_call(&state, Method::GET, "/admin/config", &fwd.0, None).await {
        Ok(c) => c,
        Err(e) => {
            layout.notice = Some(e);
            Value::Null
        }
    };
    let lists = LISTS
        .iter()
        .map(|&(key, label, kind)| GateList {
            key,
            label,
            kind,
            entries: config[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_i64)
                        .map(|id| Entry {
                            id,
                            name: super::name_or(
                                kind,
                                id,
                                state.upstreams.name(kind, id).as_deref(),
                            ),
                            logo: if kind == "alliance" {
                                state.images.alliance(id, 32)
                            } else {
                                state.images.corporation(id, 32)
                            },
                            href: format!("/intel/{kind}s/{id}"),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    render(&GatingPage {
        layout,
        f,
        lists,
        require_membership: config["require_membership"].as_bool().unwrap_or(false),
        default_role: config["default_role"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        roles_list: ROLES,
        locked_out: q
            .locked_out
            .filter(|n| *n > 0)
            .map(|n| format!("{n} account(s) lost access and were logged out."))
            .unwrap_or_default(),
    })
}

/// An entity id from what an admin typed: `123`, `Name [123]` / `Name (123)`, or an exact
/// name looked up through the search service.
async fn entity_id(state: &AppState, kind: &str, text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(id) = text.parse::<i64>() {
        return (id > 0).then_some(id);
    }
    let inner = text
        .rsplit_once(['[', '('])
        .map(|(_, rest)| rest.trim_end_matches([']', ')']).trim());
    if let Some(id) = inner.and_then(|s| s.parse::<i64>().ok()) {
        return (id > 0).then_some(id);
    }
    if text.is_empty() {
        return None;
    }
    let v: Value = state
        .upstreams
        .json(
            ServiceName::Search,
            &format!(
                "/search/autocomplete?q={}&types={kind}&limit=10",
                encode(text)
            ),
            false,
        )
        .await
        .ok()?;
    v["hits"].as_array()?.iter().find_map(|h| {
        let same = h["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(text));
        let id = h["id"]
            .as_i64()
            .or_else(|| h["id"].as_str().and_then(|s| s.parse().ok()));
        if same { id } else { None }
    })
}

/// Reads the config, applies `change`, writes it back; 303 to the gating page.
async fn change_config(
    state: &AppState,
    headers: &HeaderMap,
    fwd: &Fwd,
    token: &str,
    change: impl FnOnce(&mut Value) -> Result<(), &'static str>,
) -> Response {
    let mut config = match auth_call(state, Method::GET, "/admin/config", &fwd.0, None).await {
        Ok(c) if c.is_object() => c,
        Ok(_) => return see_other("/admin/gating?error=not_found", &[]),
        Err(e) => {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                headers,
                "Access rules unavailable",
                &e,
                false,
            );
        }
    };
    if let Err(code) = change(&mut config) {
        return see_other(&format!("/admin/gating?error={code}"), &[]);
    }
    match call_json(
        state,
        ServiceName::Authentication,
        Method::PUT,
        "/admin/config",
        &fwd.with_csrf(token),
        Some(&config),
    )
    .await
    {
        Ok(r) if r.status.is_success() => {
            let n = serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|v| v["accounts_locked_out"].as_u64())
                .unwrap_or(0);
            see_other(
                &format!("/admin/gating?ok=gating_saved&locked_out={n}"),
                &[],
            )
        }
        Ok(r) if r.status == StatusCode::UNAUTHORIZED => super::account::login_required(headers),
        Ok(r) => {
            let code = error_code(&r);
            if code.starts_with("csrf_") {
                csrf_refused(headers)
            } else {
                see_other(&format!("/admin/gating?error={}", encode(&code)), &[])
            }
        }
        Err(e) => unavailable(headers, &e),
    }
}

/// `POST /admin/gating/entries` (`list`, `entity`, `op` = `add` | `remove`).
pub async fn gating_entry(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Form(form): Form<Fields>,
) -> Response {
    if let Err(r) = require_admin(&state, &headers).await {
        return r;
    }
    let list = field(&form, "list").to_owned();
    let Some(&(key, _, kind)) = LISTS.iter().find(|(k, _, _)| *k == list) else {
        return see_other("/admin/gating?error=not_found", &[]);
    };
    let remove = field(&form, "op") == "remove";
    let id = entity_id(&state, kind, field(&form, "entity")).await;
    let token = field(&form, "csrf_token").to_owned();
    change_config(&state, &headers, &fwd, &token, move |c| {
        let id = id.ok_or("invalid_entity")?;
        let mut set: BTreeSet<i64> = c[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        if remove {
            set.remove(&id);
        } else {
            set.insert(id);
        }
        c[key] = json!(set);
        Ok(())
    })
    .await
}

/// `POST /admin/gating/settings` (`require_membership`, `default_role`).
pub async fn gating_settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Form(form): Form<Fields>,
) -> Response {
    if let Err(r) = require_admin(&state, &headers).await {
        return r;
    }
    let require = field(&form, "require_membership") == "on";
    let role = field(&form, "default_role").to_owned();
    let token = field(&form, "csrf_token").to_owned();
    change_config(&state, &headers, &fwd, &token, move |c| {
        if !role.is_empty() && !ROLES.contains(&role.as_str()) {
            return Err("invalid_role");
        }
        c["require_membership"] = json!(require);
        c["default_role"] = if role.is_empty() {
            Value::Null
        } else {
            json!(role)
        };
        Ok(())
    })
    .await
}

// ------------------------------------------------------------------ ingestion

pub struct JobLine {
    pub id: String,
    pub source: String,
    pub days: String,
    pub status: String,
    pub percent: String,
    pub percent_value: f64,
    pub detail: String,
    pub error: String,
    pub cancellable: bool,
}

#[derive(Template)]
#[template(path = "admin_ingestion.html")]
pub struct IngestionPage {
    pub layout: Layout,
    pub f: AdminFrame,
    pub available: bool,
    pub min_pilots: String,
    pub systems: String,
    pub alliances: String,
    pub corporations: String,
    pub characters: String,
    /// (key, checked).
    pub security: Vec<(&'static str, bool)>,
    pub only_tracked: bool,
    pub updated: String,
    pub jobs: Vec<JobLine>,
    pub sources: &'static [&'static str],
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

fn job_line(j: &Value) -> JobLine {
    let status = j["status"].as_str().unwrap_or_default().to_owned();
    let percent = j["progress"]["percent"]
        .as_f64()
        .or_else(|| j["percent"].as_f64())
        .unwrap_or(0.0);
    let mut detail = format!(
        "{} of {} days, {} killmails seen, {} new",
        j["days_done"].as_i64().unwrap_or(0),
        j["days_total"].as_i64().unwrap_or(0),
        j["killmails_seen"].as_i64().unwrap_or(0),
        j["killmails_new"].as_i64().unwrap_or(0),
    );
    if let Some(rate) = j["progress"]["killmails_per_second"].as_f64() {
        detail.push_str(&format!(", {rate:.0}/s"));
    }
    if let Some(eta) = j["progress"]["eta_seconds"].as_f64() {
        detail.push_str(&format!(", about {} left", view::duration(eta as i64)));
    }
    JobLine {
        id: j["id"].as_str().unwrap_or_default().to_owned(),
        source: j["source"].as_str().unwrap_or_default().to_owned(),
        days: format!(
            "{} → {}",
            j["from_day"].as_str().unwrap_or_default(),
            j["to_day"].as_str().unwrap_or_default()
        ),
        cancellable: matches!(status.as_str(), "pending" | "running"),
        status,
        percent: format!("{percent:.0}%"),
        percent_value: percent,
        detail,
        error: j["error"].as_str().unwrap_or_default().to_owned(),
    }
}

/// `GET /admin/ingestion`: the ruleset and the backfill jobs.
pub async fn ingestion(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FlashQuery>,
) -> Response {
    let me = match require_admin(&state, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let (mut layout, f) = frame("Ingestion", "ingestion", &headers, &me, &q);
    let (ruleset, jobs) = tokio::join!(
        state
            .upstreams
            .json::<Value>(ServiceName::Ingestion, "/rulesets", false),
        state
            .upstreams
            .json::<Value>(ServiceName::Ingestion, "/backfill/jobs", false),
    );
    let available = ruleset.is_ok();
    let r = match ruleset {
        Ok(r) => r,
        Err(e) => {
            layout.degraded(&e);
            Value::Null
        }
    };
    let tracked: Vec<&str> = r["tracked_security_types"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let jobs = jobs
        .ok()
        .and_then(|j| {
            j["jobs"]
                .as_array()
                .map(|a| a.iter().map(job_line).collect())
        })
        .unwrap_or_default();
    render(&IngestionPage {
        layout,
        available,
        min_pilots: r["min_pilots"].as_u64().unwrap_or(0).to_string(),
        systems: ids_text(&r["tracked_system_ids"]),
        alliances: ids_text(&r["tracked_alliance_ids"]),
        corporations: ids_text(&r["tracked_corporation_ids"]),
        characters: ids_text(&r["tracked_character_ids"]),
        security: SECURITY_TYPES
            .iter()
            .map(|s| (*s, tracked.contains(s)))
            .collect(),
        only_tracked: r["only_tracked_entities"].as_bool().unwrap_or(false),
        updated: time_of(&r["updated_at"]),
        jobs,
        sources: SOURCES,
        f,
    })
}

/// `1, 2 3` → `[1, 2, 3]`; anything else is refused by name.
fn parse_ids(text: &str, what: &str) -> Result<Vec<i64>, String> {
    text.split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .ok()
                .filter(|i| *i > 0)
                .ok_or_else(|| format!("{what}: `{s}` is not an id"))
        })
        .collect()
}

/// `POST /admin/ingestion/ruleset`.
pub async fn save_ruleset(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    RawForm(pairs): RawForm,
) -> Response {
    if let Err(r) = require_admin(&state, &headers).await {
        return r;
    }
    let one = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.trim())
    };
    if let Err(r) = verify_csrf(&state, &headers, &fwd, one("csrf_token")).await {
        return r;
    }
    let parsed = (|| -> Result<Value, String> {
        let min_pilots: u32 = match one("min_pilots") {
            "" => 0,
            s => s
                .parse()
                .map_err(|_| format!("min_pilots: `{s}` is not a number"))?,
        };
        let security: Vec<&str> = pairs
            .iter()
            .filter(|(n, _)| n == "tracked_security_types")
            .map(|(_, v)| v.as_str())
            .filter(|v| SECURITY_TYPES.contains(v))
            .collect();
        Ok(json!({
            "min_pilots": min_pilots,
            "tracked_system_ids": parse_ids(one("tracked_system_ids"), "systems")?,
            "tracked_security_types": security,
            "tracked_alliance_ids": parse_ids(one("tracked_alliance_ids"), "alliances")?,
            "tracked_corporation_ids": parse_ids(one("tracked_corporation_ids"), "corporations")?,
            "tracked_character_ids": parse_ids(one("tracked_character_ids"), "characters")?,
            "only_tracked_entities": one("only_tracked_entities") == "on",
        }))
    })();
    let body = match parsed {
        Ok(b) => b,
        Err(m) => {
            return message(
                StatusCode::UNPROCESSABLE_ENTITY,
                &headers,
                "Not saved",
                &format!("{m}. Nothing was changed."),
                false,
            );
        }
    };
    act(
        &state,
        &headers,
        Call::recorded(
            ServiceName::Ingestion,
            Method::PUT,
            "/rulesets",
            Some(&body),
            Audit::new(
                &fwd,
                one("csrf_token"),
                "ingestion.ruleset.update",
                "ruleset",
            )
            .target("1")
            .metadata(body.clone()),
        ),
        "/admin/ingestion",
        "ruleset_saved",
    )
    .await
}

/// `POST /admin/ingestion/backfill` (`from`, `to`, `source`).
pub async fn start_backfill(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Form(form): Form<Fields>,
) -> Response {
    let body = json!({
        "from": field(&form, "from"),
        "to": field(&form, "to"),
        "source": field(&form, "source"),
    });
    form_post(
        admin_checked(&state, &headers, &fwd, field(&form, "csrf_token")),
        act(
            &state,
            &headers,
            Call::recorded(
                ServiceName::Ingestion,
                Method::POST,
                "/backfill/jobs",
                Some(&body),
                Audit::new(
                    &fwd,
                    field(&form, "csrf_token"),
                    "ingestion.backfill.start",
                    "backfill_job",
                )
                .metadata(body.clone()),
            ),
            "/admin/ingestion",
            "job_started",
        ),
    )
    .await
}

/// `POST /admin/ingestion/backfill/{id}/cancel`.
pub async fn cancel_backfill(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Path(id): Path<String>,
    Form(form): Form<Fields>,
) -> Response {
    let path = format!("/backfill/jobs/{}", encode(&id));
    form_post(
        admin_checked(&state, &headers, &fwd, field(&form, "csrf_token")),
        act(
            &state,
            &headers,
            Call::recorded(
                ServiceName::Ingestion,
                Method::DELETE,
                &path,
                None,
                Audit::new(
                    &fwd,
                    field(&form, "csrf_token"),
                    "ingestion.backfill.cancel",
                    "backfill_job",
                )
                .target(&id),
            ),
            "/admin/ingestion",
            "job_cancelled",
        ),
    )
    .await
}

/// Every `name=value` pair of a form body, repeated names kept (checkbox groups).
pub struct RawForm(pub Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawForm {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self(form_pairs(&bytes).into_iter().collect()))
    }
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space, `%XX` a byte).
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes.get(i) {
                Some(b'+') => out.push(b' '),
                Some(b'%') => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    if let Some(b) = hex {
                        out.push(b);
                        i += 2;
                    } else {
                        out.push(b'%');
                    }
                }
                Some(&b) => out.push(b),
                None => break,
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

// ------------------------------------------------------------------ clusterer

/// One setting as the form shows it.
pub struct SettingLine {
    /// Form field and battle service key (`gap`, `min_kills`, `min_pilots`, `reopen_window`).
    pub name: &'static str,
    /// The `[battle]` configuration key it overrides.
    pub key: &'static str,
    pub value: String,
    pub default: String,
    pub meaning: &'static str,
    /// The refusal of this field after a post, if any.
    pub error: String,
}

#[derive(Template)]
#[template(path = "admin_clusterer.html")]
pub struct ClustererPage {
    pub layout: Layout,
    pub f: AdminFrame,
    /// The battle service answered `GET /settings`.
    pub available: bool,
    pub lines: Vec<SettingLine>,
    /// `config` or `stored`.
    pub source: String,
    pub changed: String,
    /// Live battles built with other settings than the ones in force (0: none).
    pub older_battles: i64,
    pub applied_since: String,
    /// Every refusal of the last post, in one sentence.
    pub errors: String,
    /// (counter, value) from the battle service's `/stats`.
    pub engine: Vec<(String, String)>,
}

/// The settings of the form, in order: (field, config key, meaning).
const CLUSTERER_FIELDS: &[(&str, &str, &str)] = &[
    (
        "gap",
        "battle.gap",
        "largest quiet gap (by kill time) inside one battle; also ends a battle",
    ),
    (
        "min_kills",
        "battle.min_kills",
        "fewest core kills for a cluster to count as a battle",
    ),
    (
        "min_pilots",
        "battle.min_pilots",
        "fewest distinct pilots for a cluster to count as a battle",
    ),
    (
        "reopen_window",
        "battle.reopen_window",
        "how late a killmail may still extend, reopen or merge battles (kept in memory)",
    ),
];

fn setting_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The clusterer page from the battle service's `/settings` and `/stats`; after a refused post
/// `entered` holds the values typed and `refusal` the service's answer.
async fn clusterer_page(
    state: &AppState,
    headers: &HeaderMap,
    me: &Me,
    q: &FlashQuery,
    entered: Option<&Fields>,
    refusal: Option<&Value>,
) -> ClustererPage {
    // Flash codes of this page; the shared table answers the rest.
    let local = |code: &Option<String>| match code.as_deref() {
        Some("clusterer_saved") => {
            Some("Clusterer settings saved; new killmails are clustered with them now.".to_owned())
        }
        Some("clusterer_reverted") => {
            Some("Clusterer settings reverted to the configuration.".to_owned())
        }
        _ => None,
    };
    let (mut layout, mut f) = frame("Clusterer", "clusterer", headers, me, q);
    if let Some(t) = local(&q.ok) {
        f.ok = t;
    }
    let doc = state
        .upstreams
        .json::<Value>(ServiceName::Battle, "/settings", false)
        .await;
    let doc = match doc {
        Ok(v) => Some(v),
        Err(e) => {
            layout.degraded(&e);
            None
        }
    };
    let field_errors: HashMap<String, String> = refusal
        .and_then(|r| r["errors"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some((
                        e["field"].as_str()?.to_owned(),
                        e["message"].as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let lines = CLUSTERER_FIELDS
        .iter()
        .map(|&(name, key, meaning)| {
            let from_doc = |part: &str| {
                doc.as_ref()
                    .map(|d| setting_text(&d[part][name]))
                    .unwrap_or_default()
            };
            SettingLine {
                name,
                key,
                value: entered.map_or_else(|| from_doc("effective"), |e| field(e, name).to_owned()),
                default: from_doc("config"),
                meaning,
                error: field_errors.get(name).cloned().unwrap_or_default(),
            }
        })
        .collect();
    let d = doc.clone().unwrap_or(Value::Null);
    let changed = match (d["changed_by"].as_str(), &d["changed_at"]) {
        (by, at) if !at.is_null() => {
            format!(
                "changed {} by {}",
                time_of(at),
                by.unwrap_or("an unknown admin")
            )
        }
        _ => String::new(),
    };
    let engine = match state
        .upstreams
        .json::<Value>(ServiceName::Battle, "/stats", false)
        .await
    {
        Ok(v) => {
            let mut out: Vec<(String, String)> = [
                "battles_total",
                "active",
                "ended",
                "merged",
                "killmails",
                "rejected",
            ]
            .iter()
            .map(|k| ((*k).to_owned(), v[*k].to_string()))
            .collect();
            if let Some(m) = v["clusterer"].as_object() {
                out.extend(
                    m.iter()
                        .map(|(k, x)| (format!("clusterer.{k}"), x.to_string())),
                );
            }
            out
        }
        Err(e) => {
            layout.degraded(&e);
            Vec::new()
        }
    };
    ClustererPage {
        layout,
        f,
        available: doc.is_some(),
        lines,
        source: d["source"].as_str().unwrap_or_default().to_owned(),
        changed,
        older_battles: d["battles_with_older_settings"].as_i64().unwrap_or(0),
        applied_since: if d["applied_since"].is_null() {
            String::new()
        } else {
            time_of(&d["applied_since"])
        },
        errors: refusal
            .and_then(|r| r["message"].as_str())
            .unwrap_or_default()
            .to_owned(),
        engine,
    }
}

/// `GET /admin/clusterer`: the clustering settings in force (stored by an admin, or the
/// configuration's), a form to change them, and whether stored battles predate them.
pub async fn clusterer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FlashQuery>,
) -> Response {
    let me = match require_admin(&state, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    render(&clusterer_page(&state, &headers, &me, &q, None, None).await)
}

/// Who changed the settings, as the battle service stores it.
fn actor(me: &Me) -> String {
    format!("{} (account {})", me.display_name, me.account_id)
}

/// `POST /admin/clusterer` (`gap`, `min_kills`, `min_pilots`, `reopen_window`): stores them in
/// the battle service, which applies them to new killmails at once. A refusal shows the form
/// again with the values typed and the reasons (422).
pub async fn save_clusterer(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Form(form): Form<Fields>,
) -> Response {
    let me = match require_admin(&state, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    if let Err(r) = verify_csrf(&state, &headers, &fwd, field(&form, "csrf_token")).await {
        return r;
    }
    let mut body = json!({ "changed_by": actor(&me) });
    for &(name, _, _) in CLUSTERER_FIELDS {
        body[name] = json!(field(&form, name).trim());
    }
    match call_json(
        &state,
        ServiceName::Battle,
        Method::PUT,
        "/settings",
        &HeaderMap::new(),
        Some(&body),
    )
    .await
    {
        Ok(r) if r.status.is_success() => {
            tracing::info!(account = %me.account_id, settings = %body, "clusterer settings changed");
            let audit = Audit::new(
                &fwd,
                field(&form, "csrf_token"),
                "battle.settings.update",
                "battle_settings",
            )
            .target("clusterer")
            .metadata(body.clone());
            record(&state, audit, &r.body).await;
            see_other("/admin/clusterer?ok=clusterer_saved", &[])
        }
        Ok(r) if r.status == StatusCode::BAD_REQUEST => {
            let refusal: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let page = clusterer_page(
                &state,
                &headers,
                &me,
                &FlashQuery::default(),
                Some(&form),
                Some(&refusal),
            )
            .await;
            let mut resp = render(&page);
            *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            resp
        }
        Ok(r) => message(
            StatusCode::BAD_GATEWAY,
            &headers,
            "Not saved",
            &format!("{} Nothing was changed.", error_message(&r)),
            false,
        ),
        Err(e) => unavailable(&headers, &e),
    }
}

/// `POST /admin/clusterer/revert`: forgets the stored settings; the configuration applies
/// (the battle service logs the change).
pub async fn revert_clusterer(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Form(form): Form<Fields>,
) -> Response {
    form_post(
        admin_checked(&state, &headers, &fwd, field(&form, "csrf_token")),
        act(
            &state,
            &headers,
            Call::recorded(
                ServiceName::Battle,
                Method::DELETE,
                "/settings",
                None,
                Audit::new(
                    &fwd,
                    field(&form, "csrf_token"),
                    "battle.settings.revert",
                    "battle_settings",
                )
                .target("clusterer"),
            ),
            "/admin/clusterer",
            "clusterer_reverted",
        ),
    )
    .await
}

// ------------------------------------------------------------------ audit

pub struct AuditLine {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub ip: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
pub struct AuditPage {
    pub layout: Layout,
    pub f: AdminFrame,
    pub action: String,
    pub actor: String,
    pub target: String,
    pub entries: Vec<AuditLine>,
    pub older: String,
}

/// `GET /admin/audit?action=&actor=&target=&before=`: newest first, 50 a page.
pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    RawQuery(raw): RawQuery,
) -> Response {
    let me = match require_admin(&state, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let qm = query_map(raw.as_deref());
    let (mut layout, f) = frame("Audit log", "audit", &headers, &me, &FlashQuery::default());
    let get = |k: &str| qm.get(k).map(|s| s.trim().to_owned()).unwrap_or_default();
    let (action, actor, target) = (get("action"), get("actor"), get("target"));
    let mut path = "/admin/audit?limit=50".to_owned();
    for (k, v) in [
        ("action", &action),
        ("actor", &actor),
        ("target_id", &target),
    ] {
        if !v.is_empty() {
            path.push_str(&format!("&{k}={}", encode(v)));
        }
    }
    if let Some(b) = qm.get("before").and_then(|b| b.parse::<i64>().ok()) {
        path.push_str(&format!("&before={b}"));
    }
    let (entries, next) = match auth_call(&state, Method::GET, &path, &fwd.0, None).await {
        Ok(v) => (
            v["entries"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| AuditLine {
                            seq: e["seq"].as_i64().unwrap_or(0),
                            at: time_of(&e["at"]),
                            actor: e["actor_account_id"]
                                .as_str()
                                .unwrap_or("system")
                                .to_owned(),
                            action: e["action"].as_str().unwrap_or_default().to_owned(),
                            target: format!(
                                "{} {}",
                                e["target_type"].as_str().unwrap_or_default(),
                                e["target_id"].as_str().unwrap_or_default()
                            ),
                            ip: e["ip"].as_str().unwrap_or_default().to_owned(),
                            detail: {
                                let d = e["metadata"].to_string();
                                if d.len() > 300 {
                                    format!("{}…", d.chars().take(300).collect::<String>())
                                } else {
                                    d
                                }
                            },
                        })
                        .collect()
                })
                .unwrap_or_default(),
            v["next_before"].as_i64(),
        ),
        Err(e) => {
            layout.notice = Some(e);
            (Vec::new(), None)
        }
    };
    let older = next.map_or_else(String::new, |b| {
        format!(
            "/admin/audit?action={}&actor={}&target={}&before={b}",
            encode(&action),
            encode(&actor),
            encode(&target)
        )
    });
    render(&AuditPage {
        layout,
        f,
        action,
        actor,
        target,
        entries,
        older,
    })
}
