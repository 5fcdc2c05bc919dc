//! The HTML pages, rendered on the server with askama.
//!
//! Every handler gathers its data through [`crate::clients::Upstreams`], turns it into a flat
//! view model of display strings (formatting lives in [`crate::view`], so templates stay
//! dumb) and renders. A missing service shows a notice in the page instead of failing.

mod account;
mod admin;
mod battles;

pub use account::{Viewer, with_viewer};
pub use battles::{KILLS_SHOWN, PILOTS_SHOWN};
mod intel;
mod misc;
mod notifications;

use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::AppState;
use crate::auth::Denied;
use crate::clients::UpstreamError;

/// The embedded stylesheet and script (hand-written, no build step).
pub const APP_CSS: &str = include_str!("../../static/app.css");
pub const APP_JS: &str = include_str!("../../static/app.js");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(account::landing))
        .route("/logout", post(account::logout))
        .route("/characters", get(account::characters))
        .route("/characters/primary", post(account::set_primary))
        .route("/characters/link", post(account::link))
        .route(
            "/characters/{id}/unlink",
            get(account::unlink_confirm).post(account::unlink),
        )
        .route("/characters/sessions/{id}/end", post(account::end_session))
        .route("/admin", get(admin::overview))
        .route("/admin/accounts", get(admin::accounts))
        .route("/admin/accounts/{id}", get(admin::account))
        .route("/admin/accounts/{id}/block", post(admin::block))
        .route("/admin/accounts/{id}/roles", post(admin::grant))
        .route(
            "/admin/accounts/{id}/sessions/end",
            post(admin::end_account_sessions),
        )
        .route("/admin/sessions/{id}/end", post(admin::end_session))
        .route("/admin/gating", get(admin::gating))
        .route("/admin/gating/entries", post(admin::gating_entry))
        .route("/admin/gating/settings", post(admin::gating_settings))
        .route("/admin/ingestion", get(admin::ingestion))
        .route("/admin/ingestion/ruleset", post(admin::save_ruleset))
        .route("/admin/ingestion/backfill", post(admin::start_backfill))
        .route(
            "/admin/ingestion/backfill/{id}/cancel",
            post(admin::cancel_backfill),
        )
        .route(
            "/admin/clusterer",
            get(admin::clusterer).post(admin::save_clusterer),
        )
        .route("/admin/clusterer/revert", post(admin::revert_clusterer))
        .route("/admin/audit", get(admin::audit))
        .route("/dashboard", get(misc::dashboard))
        .route("/search", get(misc::search))
        .route("/battles", get(battles::list))
        .route("/battles/{id}", get(battles::report))
        .route("/intel", get(intel::feed))
        .route("/intel/{kind}/{id}", get(intel::entity))
        .route("/alliances/{id}", get(intel::alliance_alias))
        .route("/corporations/{id}", get(intel::corporation_alias))
        .route("/characters/{id}", get(intel::character_alias))
        .route("/systems/{id}", get(misc::system))
        .route("/types/{id}", get(misc::ship_type))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/static/live.js", get(live_js))
        .route("/notifications", get(notifications::page))
        .route("/notifications/read-all", post(notifications::read_all))
        .route("/notifications/{id}/read", post(notifications::read_one))
        .route(
            "/notifications/subscriptions",
            post(notifications::create_sub),
        )
        .route(
            "/notifications/subscriptions/{id}",
            post(notifications::update_sub),
        )
        .route(
            "/notifications/subscriptions/{id}/test",
            post(notifications::test_sub),
        )
        .route(
            "/notifications/subscriptions/{id}/delete",
            post(notifications::delete_sub),
        )
        .route(
            "/notifications/watchlists",
            post(notifications::create_watch),
        )
        .route(
            "/notifications/watchlists/{id}/delete",
            post(notifications::delete_watch),
        )
}

/// Live updates over the notification WebSockets and name autocomplete (pages that use it).
pub const LIVE_JS: &str = include_str!("../../static/live.js");

async fn live_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        LIVE_JS,
    )
        .into_response()
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        APP_CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        APP_JS,
    )
        .into_response()
}

/// What the shared layout (header, nav, search box) needs.
pub struct Layout {
    pub title: String,
    /// Which nav entry is current.
    pub nav: &'static str,
    pub logged_in: bool,
    /// Shown above the content (a degraded service, a refusal).
    pub notice: Option<String>,
    /// The header search box's current text.
    pub q: String,
    /// The menu the viewer's roles allow, their name and the logout form's token.
    pub viewer: account::Nav,
}

impl Layout {
    pub fn new(title: impl Into<String>, nav: &'static str, headers: &HeaderMap) -> Self {
        Self::with_login(title, nav, crate::auth::Gate::has_session(headers))
    }

    pub fn with_login(title: impl Into<String>, nav: &'static str, logged_in: bool) -> Self {
        let (viewer, logged_in, notice) = account::nav(logged_in);
        Self {
            title: title.into(),
            nav,
            logged_in,
            notice,
            q: String::new(),
            viewer,
        }
    }

    pub fn degraded(&mut self, e: &UpstreamError) {
        self.notice = Some(notice_of(e));
    }
}

/// The shape every form post shares: `guard` (the viewer's role, the form's CSRF token)
/// answers its refusal page, or `change` runs (the upstream call, ending in a 303 back with a
/// flash message, or a refusal page). `change` is a future, so none of it runs when the guard
/// refuses.
pub async fn form_post(
    guard: impl Future<Output = Result<(), Response>>,
    change: impl Future<Output = Response>,
) -> Response {
    match guard.await {
        Ok(()) => change.await,
        Err(refusal) => refusal,
    }
}

/// The text shown when a service cannot answer.
pub fn notice_of(e: &UpstreamError) -> String {
    match e {
        UpstreamError::Unavailable { service, .. } => {
            format!("{service} unavailable: this part of the page is missing for now")
        }
        UpstreamError::NotFound => "not found".into(),
        UpstreamError::BadRequest(m) => format!("bad request: {m}"),
        UpstreamError::Redirect(to) => format!("moved to {to}"),
        UpstreamError::Internal(_) => "a service answered something unexpected".into(),
    }
}

/// A plain message page (errors, refusals).
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub layout: Layout,
    pub heading: String,
    pub body: String,
    pub login: bool,
}

pub fn message(
    status: StatusCode,
    headers: &HeaderMap,
    heading: &str,
    body: &str,
    login: bool,
) -> Response {
    let page = MessagePage {
        layout: Layout::new(heading, "", headers),
        heading: heading.into(),
        body: body.into(),
        login,
    };
    (status, render(&page)).into_response()
}

/// Renders a template; a template error is logged and answered 500 without details.
pub fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A refused page: log in, or a clear "no access" message.
pub fn denied(d: &Denied, headers: &HeaderMap) -> Response {
    match d {
        Denied::NotAuthenticated => message(
            StatusCode::UNAUTHORIZED,
            headers,
            "Log in to see this page",
            "This BattleScope installation requires an EVE Online login.",
            true,
        ),
        Denied::Forbidden(r) => message(
            StatusCode::FORBIDDEN,
            headers,
            "No access",
            &format!("Your account does not have this feature ({r}); contact an administrator."),
            false,
        ),
        Denied::Unavailable(_) => message(
            StatusCode::SERVICE_UNAVAILABLE,
            headers,
            "Authentication unavailable",
            "Access cannot be checked right now; try again in a moment.",
            false,
        ),
    }
}

/// Checks a feature for a page.
pub async fn gate(state: &AppState, headers: &HeaderMap, feature: &str) -> Result<(), Response> {
    state
        .gate
        .check(headers, feature)
        .await
        .map_err(|d| denied(&d, headers))
}

/// 308 to another page.
pub fn moved(to: &str) -> Response {
    Redirect::permanent(to).into_response()
}

/// Display names with an id fallback.
pub fn name_or(kind: &str, id: i64, name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => match kind {
            "alliance" => format!("Alliance {id}"),
            "corporation" => format!("Corp {id}"),
            "character" => format!("Pilot {id}"),
            "type" => format!("Type {id}"),
            _ => format!("#{id}"),
        },
    }
}

/// System display: name, rounded security, its colour, region.
pub struct SystemView {
    pub id: i64,
    pub name: String,
    pub security: String,
    pub colour: &'static str,
    pub region: String,
    pub region_id: i64,
    pub security_type: String,
}

pub fn system_view(id: i64) -> SystemView {
    match bs_sde::StaticData::bundled().system(id) {
        Some(s) => SystemView {
            id,
            name: s.name.clone(),
            security: format!("{:.1}", s.rounded_security),
            colour: crate::view::security_colour(s.rounded_security),
            region: s.region_name.clone(),
            region_id: s.region_id,
            security_type: s.security_type.as_str().to_owned(),
        },
        None => SystemView {
            id,
            name: format!("System {id}"),
            security: "?".into(),
            colour: "#9ca3af",
            region: String::new(),
            region_id: 0,
            security_type: String::new(),
        },
    }
}

/// A ship type's name from static data.
pub fn type_name(id: i64) -> String {
    bs_sde::StaticData::bundled()
        .type_info(id)
        .map_or_else(|| format!("Type {id}"), |t| t.name.clone())
}
