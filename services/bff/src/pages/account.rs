//! Who is looking (the viewer), the role-aware navigation, the login landing and the
//! characters page.
//!
//! The viewer comes from the authentication service's `GET /me`, asked **once per page
//! request** by [`with_viewer`] (a middleware on the page routes) with the browser's cookie
//! forwarded. It lives in a task-local for the request, so every page's [`super::Layout`]
//! gets the menu the viewer's roles allow without each handler threading it through.
//!
//! State changes are plain HTML forms (`POST`, then a 303 back to the page: they work
//! without JavaScript). Every form carries the session's CSRF token (`csrf_token`); the BFF
//! has no key to check it, so it forwards it to the authentication service, which checks it
//! for its own actions and answers `POST /me/csrf` for the others (see [`verify_csrf`]).
//! Calls go through [`crate::clients::Upstreams::call`] (in-process or HTTP, never by
//! assuming the topology).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use bs_config::ServiceName;
use bs_runtime::ServiceResponse;
use serde::Deserialize;

use super::battles::{BattleLine, battle_line};
use super::{Layout, message, render};
use crate::clients::UpstreamError;
use crate::{AppState, auth, view};

// ------------------------------------------------------------------ the viewer

/// A character as `/me` describes it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CharacterInfo {
    pub character_id: i64,
    pub name: String,
    pub corporation_id: Option<i64>,
    pub alliance_id: Option<i64>,
    pub primary: bool,
    /// `valid`, `dead` (log in with it again) or `none` (no grant stored).
    pub token_status: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RoleInfo {
    pub role: String,
    pub rank: i64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SessionInfo {
    pub id: String,
}

/// The authentication service's `GET /me` (lenient: unknown fields are ignored).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Me {
    pub account_id: String,
    pub display_name: String,
    pub super_admin: bool,
    pub characters: Vec<CharacterInfo>,
    pub roles: BTreeMap<String, RoleInfo>,
    pub csrf_token: String,
    pub session: SessionInfo,
}

/// Where the browser's session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// No session cookie.
    Anonymous,
    LoggedIn,
    /// A cookie the service no longer accepts (expired, revoked: logged out elsewhere, the
    /// corporation or alliance lost access).
    Ended,
    Blocked,
    /// The authentication service could not answer.
    Unknown,
}

/// Who is looking at a page.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub me: Option<Me>,
    pub presence: Presence,
    /// `web.public_pages`: anonymous visitors may read the battle pages.
    pub public: bool,
    /// `Set-Cookie` headers from the service (a refused session is cleared in the browser).
    pub set_cookies: Vec<HeaderValue>,
}

/// The rank that passes every check (SuperAdmin).
const TOP_RANK: i64 = i64::MAX;
/// Role ranks as the authentication service defines them (User 10 … Admin 40).
pub const RANK_USER: i64 = 10;
pub const RANK_ADMIN: i64 = 40;

impl Viewer {
    pub fn anonymous(public: bool) -> Self {
        Self {
            me: None,
            presence: Presence::Anonymous,
            public,
            set_cookies: Vec::new(),
        }
    }

    /// The viewer's rank in `feature` (0: none).
    pub fn rank(&self, feature: &str) -> i64 {
        match &self.me {
            Some(m) if m.super_admin => TOP_RANK,
            Some(m) => m.roles.get(feature).map_or(0, |r| r.rank),
            None => 0,
        }
    }

    /// May read a battle feature's pages (the same rule as [`crate::auth::Gate`]).
    pub fn can_read(&self, feature: &str) -> bool {
        self.public || self.rank(feature) >= RANK_USER
    }

    /// Admin or SuperAdmin: the `/admin` section.
    pub fn is_admin(&self) -> bool {
        self.rank("admin") >= RANK_ADMIN
    }

    pub fn csrf(&self) -> &str {
        self.me.as_ref().map_or("", |m| m.csrf_token.as_str())
    }

    /// The primary character's name, else the account's display name.
    pub fn name(&self) -> String {
        self.me.as_ref().map_or_else(String::new, |m| {
            m.characters
                .iter()
                .find(|c| c.primary)
                .map_or_else(|| m.display_name.clone(), |c| c.name.clone())
        })
    }
}

tokio::task_local! {
    static VIEWER: Arc<Viewer>;
}

/// The viewer of the page being rendered, when [`with_viewer`] runs around the handler.
pub fn current() -> Option<Arc<Viewer>> {
    VIEWER.try_with(Arc::clone).ok()
}

/// Asks the authentication service who the browser is (one `GET /me`).
pub async fn load_viewer(state: &AppState, headers: &HeaderMap) -> Viewer {
    let public = state.config.web.public_pages;
    if !auth::Gate::has_session(headers) {
        return Viewer::anonymous(public);
    }
    let fwd = forwarded(headers, None);
    let mut v = Viewer::anonymous(public);
    match state
        .upstreams
        .call(ServiceName::Authentication, Method::GET, "/me", &fwd, None)
        .await
    {
        Ok(res) => {
            v.set_cookies = res
                .headers
                .get_all(header::SET_COOKIE)
                .iter()
                .cloned()
                .collect();
            match res.status {
                StatusCode::OK => match serde_json::from_slice::<Me>(&res.body) {
                    Ok(me) => {
                        v.me = Some(me);
                        v.presence = Presence::LoggedIn;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable /me answer");
                        v.presence = Presence::Unknown;
                    }
                },
                StatusCode::UNAUTHORIZED => v.presence = Presence::Ended,
                StatusCode::FORBIDDEN => v.presence = Presence::Blocked,
                _ => v.presence = Presence::Unknown,
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "authentication unavailable for /me");
            v.presence = Presence::Unknown;
        }
    }
    v
}

/// The viewer for a handler: the request's (from the middleware), or asked now.
pub async fn viewer(state: &AppState, headers: &HeaderMap) -> Arc<Viewer> {
    match current() {
        Some(v) => v,
        None => Arc::new(load_viewer(state, headers).await),
    }
}

/// Middleware on the page routes: loads the viewer once, runs the handler with it, and
/// passes on the service's cookie changes (a refused session is forgotten by the browser).
pub async fn with_viewer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/static/") {
        return next.run(request).await;
    }
    let viewer = Arc::new(load_viewer(&state, request.headers()).await);
    let cookies = viewer.set_cookies.clone();
    let mut response = VIEWER.scope(viewer, next.run(request)).await;
    for c in cookies {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

// ------------------------------------------------------------------ navigation

/// One header link.
#[derive(Clone, Debug)]
pub struct MenuItem {
    pub href: &'static str,
    pub label: &'static str,
    /// Matches [`Layout::nav`] for the current page.
    pub key: &'static str,
}

/// What the header shows for this viewer.
#[derive(Clone, Debug, Default)]
pub struct Nav {
    pub menu: Vec<MenuItem>,
    /// The logged-in user's name (primary character).
    pub user: String,
    /// For the header's logout form.
    pub csrf: String,
}

const fn item(href: &'static str, label: &'static str, key: &'static str) -> MenuItem {
    MenuItem { href, label, key }
}

/// The header for the current request's viewer, its logged-in state and a notice (an ended
/// session). Without a viewer (a handler outside the middleware) the public menu.
pub fn nav(logged_in_hint: bool) -> (Nav, bool, Option<String>) {
    let Some(v) = current() else {
        let menu = vec![
            item("/battles", "Battles", "battles"),
            item("/intel", "Intel", "intel"),
            item("/dashboard", "Dashboard", "dashboard"),
        ];
        return (
            Nav {
                menu,
                ..Nav::default()
            },
            logged_in_hint,
            None,
        );
    };
    let mut menu = Vec::new();
    if v.can_read(auth::BATTLE_REPORTS) {
        menu.push(item("/battles", "Battles", "battles"));
    }
    if v.can_read(auth::BATTLE_INTEL) {
        menu.push(item("/intel", "Intel", "intel"));
    }
    if v.can_read(auth::BATTLE_REPORTS) {
        menu.push(item("/dashboard", "Dashboard", "dashboard"));
    }
    if v.me.is_some() {
        if v.rank("notifications") >= RANK_USER {
            menu.push(item("/notifications", "Notifications", "notifications"));
        }
        menu.push(item("/characters", "Characters", "characters"));
    }
    if v.is_admin() {
        menu.push(item("/admin", "Admin", "admin"));
    }
    let notice = match v.presence {
        Presence::Ended => Some(
            "You have been logged out: your session ended or was revoked (for example because \
             your corporation or alliance is no longer allowed here). Log in again."
                .to_owned(),
        ),
        Presence::Blocked => Some("This account is blocked; contact an administrator.".to_owned()),
        Presence::Unknown => {
            Some("Authentication is unavailable right now; you appear logged out.".to_owned())
        }
        Presence::Anonymous | Presence::LoggedIn => None,
    };
    (
        Nav {
            menu,
            user: v.name(),
            csrf: v.csrf().to_owned(),
        },
        v.me.is_some(),
        notice,
    )
}

// ------------------------------------------------------------------ forwarding

/// Headers of the browser's request that the services need: the cookie (the session),
/// `Origin` and `Sec-Fetch-Site` (the service's cross-site checks), the user agent (its
/// session list and audit log), and where the request came from.
pub fn forwarded(headers: &HeaderMap, peer: Option<IpAddr>) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [
        header::COOKIE,
        header::ORIGIN,
        header::USER_AGENT,
        HeaderName::from_static("sec-fetch-site"),
        HeaderName::from_static("x-request-id"),
    ] {
        for v in headers.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    // The client address: a direct peer as it is; behind a local proxy (or in process) the
    // last `X-Forwarded-For` hop, the one that proxy added. A browser's own header is never
    // passed on from a remote peer, so it cannot choose its audit address.
    let trusted = peer.is_none_or(|ip| ip.is_loopback());
    let hop = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .and_then(|v| v.parse::<IpAddr>().ok());
    let client = match (trusted, hop, peer) {
        (true, Some(ip), _) | (_, _, Some(ip)) => Some(ip),
        _ => None,
    };
    if let Some(ip) = client
        && let Ok(v) = HeaderValue::from_str(&ip.to_string())
    {
        out.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    out
}

/// The forwarded headers of a request (see [`forwarded`]).
pub struct Fwd(pub HeaderMap);

impl<S: Send + Sync> FromRequestParts<S> for Fwd {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Self(forwarded(&parts.headers, peer)))
    }
}

impl Fwd {
    /// The headers plus the form's CSRF token as `X-CSRF-Token`.
    pub fn with_csrf(&self, token: &str) -> HeaderMap {
        let mut h = self.0.clone();
        if let Ok(v) = HeaderValue::from_str(token) {
            h.insert(HeaderName::from_static("x-csrf-token"), v);
        }
        h
    }
}

/// A form as sent: every field by name (missing fields are the handler's to explain).
pub type Fields = HashMap<String, String>;

pub fn field<'a>(f: &'a Fields, name: &str) -> &'a str {
    f.get(name).map_or("", |s| s.trim())
}

/// One call to a service with a JSON body.
pub async fn call_json(
    state: &AppState,
    service: ServiceName,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Option<&serde_json::Value>,
) -> Result<ServiceResponse, UpstreamError> {
    let mut headers = headers.clone();
    let body = body.map(|b| {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        b.to_string().into_bytes()
    });
    state
        .upstreams
        .call(service, method, path, &headers, body)
        .await
}

/// The `error` code of a service's JSON error body.
pub fn error_code(res: &ServiceResponse) -> String {
    serde_json::from_slice::<serde_json::Value>(&res.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("status_{}", res.status.as_u16()))
}

/// The human message of a service's JSON error body (`message`, else `error`).
pub fn error_message(res: &ServiceResponse) -> String {
    serde_json::from_slice::<serde_json::Value>(&res.body)
        .ok()
        .and_then(|v| {
            v["message"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("the service answered {}", res.status))
}

/// The page for a refused form: its token is missing, stale or from another site.
pub fn csrf_refused(headers: &HeaderMap) -> Response {
    message(
        StatusCode::FORBIDDEN,
        headers,
        "Form refused",
        "This form was not accepted: it has expired or did not come from this site \
         (missing or invalid CSRF token). Reload the page and try again.",
        false,
    )
}

/// The page for a service that could not be reached during a form.
pub fn unavailable(headers: &HeaderMap, e: &UpstreamError) -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        headers,
        "Service unavailable",
        &format!(
            "{}; nothing was changed. Try again in a moment.",
            super::notice_of(e)
        ),
        false,
    )
}

/// Checks a form's CSRF token with the authentication service (`POST /me/csrf`), for forms
/// whose effect lands in another service. Answers the refusal page otherwise.
pub async fn verify_csrf(
    state: &AppState,
    headers: &HeaderMap,
    fwd: &Fwd,
    token: &str,
) -> Result<(), Response> {
    if token.is_empty() {
        return Err(csrf_refused(headers));
    }
    match state
        .upstreams
        .call(
            ServiceName::Authentication,
            Method::POST,
            "/me/csrf",
            &fwd.with_csrf(token),
            None,
        )
        .await
    {
        Ok(r) if r.status == StatusCode::NO_CONTENT || r.status.is_success() => Ok(()),
        Ok(r) if r.status == StatusCode::UNAUTHORIZED => Err(login_required(headers)),
        Ok(r) if r.status == StatusCode::FORBIDDEN => Err(csrf_refused(headers)),
        Ok(r) => Err(message(
            StatusCode::SERVICE_UNAVAILABLE,
            headers,
            "Authentication unavailable",
            &format!(
                "The form could not be checked ({}); nothing was changed.",
                r.status
            ),
            false,
        )),
        Err(e) => Err(unavailable(headers, &e)),
    }
}

/// 401 with a login button.
pub fn login_required(headers: &HeaderMap) -> Response {
    super::denied(&auth::Denied::NotAuthenticated, headers)
}

/// A 303 back to a page, with `Set-Cookie` headers to pass on.
pub fn see_other(to: &str, cookies: &[HeaderValue]) -> Response {
    let mut r = Redirect::to(to).into_response();
    for c in cookies {
        r.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    r
}

fn set_cookies(res: &ServiceResponse) -> Vec<HeaderValue> {
    res.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect()
}

/// A logged-in viewer, or the 401 page.
pub async fn require_login(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Arc<Viewer>, Me), Response> {
    let v = viewer(state, headers).await;
    match (&v.me, v.presence) {
        (Some(me), _) => {
            let me = me.clone();
            Ok((v, me))
        }
        (None, Presence::Unknown) => Err(super::denied(
            &auth::Denied::Unavailable(String::new()),
            headers,
        )),
        (None, Presence::Blocked) => Err(message(
            StatusCode::FORBIDDEN,
            headers,
            "Account blocked",
            "This account is blocked; contact an administrator.",
            false,
        )),
        (None, _) => Err(login_required(headers)),
    }
}

// ------------------------------------------------------------------ flash messages

/// The message a page shows after a form (`?ok=<code>` / `?error=<code>`): fixed texts, so a
/// crafted link cannot put words in the page.
pub fn flash_text(code: &str) -> String {
    match code {
        "primary_set" => "Primary character changed.".into(),
        "unlinked" => "Character unlinked.".into(),
        "linked" => "Character linked.".into(),
        "session_ended" => "Session ended.".into(),
        "blocked" => "Account blocked; its sessions are ended.".into(),
        "unblocked" => "Account unblocked.".into(),
        "role_saved" => "Role saved.".into(),
        "sessions_ended" => "Sessions ended.".into(),
        "gating_saved" => "Access rules saved.".into(),
        "ruleset_saved" => "Ruleset saved; it applies to killmails arriving from now on.".into(),
        "job_started" => "Backfill job started.".into(),
        "job_cancelled" => "Backfill job cancelled.".into(),
        "primary_not_allowed" => {
            "That character's corporation or alliance is not allowed, so it cannot be primary."
                .into()
        }
        "self_block" => "You cannot block your own account.".into(),
        "last_superadmin" => "The last SuperAdmin cannot be removed or blocked.".into(),
        "invalid_entity" => {
            "Give an alliance or corporation by its numeric id, `Name [id]`, or its exact name."
                .into()
        }
        "cannot_unlink_last" | "last_character" => {
            "That is the account's only character; it cannot be unlinked.".into()
        }
        "cannot_unlink_primary" | "primary_character" => {
            "Make another character primary before unlinking this one.".into()
        }
        "not_found" => "Not found (it may have been removed already).".into(),
        "insufficient_permissions" | "no_role" | "forbidden" => {
            "Your role does not allow this (account, SuperAdmin and access-rule changes need \
             SuperAdmin)."
                .into()
        }
        "csrf_token" | "csrf_origin" | "csrf_cross_site" => {
            "The form expired; reload the page and try again.".into()
        }
        "rate_limited" => "Too many requests; slow down.".into(),
        "sso_not_configured" => "EVE SSO is not configured on this server.".into(),
        // Only a code-shaped value is echoed, so a crafted link cannot write sentences here.
        other
            if other.len() <= 40
                && other
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()) =>
        {
            format!("The request was refused ({other}).")
        }
        _ => "The request was refused.".into(),
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct FlashQuery {
    pub ok: Option<String>,
    pub error: Option<String>,
}

/// `(ok text, error text)` for a page.
pub fn flash(q: &FlashQuery) -> (String, String) {
    (
        q.ok.as_deref().map(flash_text).unwrap_or_default(),
        q.error.as_deref().map(flash_text).unwrap_or_default(),
    )
}

// ------------------------------------------------------------------ the landing

/// A failed login as the page explains it, with its status.
pub fn login_failure(code: &str) -> (StatusCode, &'static str, &'static str) {
    match code {
        "org_not_allowed" => (
            StatusCode::FORBIDDEN,
            "Your corporation or alliance is not allowed here",
            "This BattleScope installation admits only some corporations and alliances, and \
             your main character's corporation or alliance is not among them (or is denied). \
             If you think this is wrong, ask the operator.",
        ),
        "invalid_state" => (
            StatusCode::BAD_REQUEST,
            "That login link is no longer valid",
            "The login request was unknown, expired, already used, or started in another \
             browser. Start the login again from this page.",
        ),
        "sso_unavailable" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "EVE Online login is unavailable",
            "EVE SSO did not answer. This is usually temporary: try again in a few minutes.",
        ),
        "auth_failed" => (
            StatusCode::UNAUTHORIZED,
            "The login was not completed",
            "EVE SSO did not confirm the login (it may have been cancelled). Try again.",
        ),
        "character_exists" => (
            StatusCode::CONFLICT,
            "That character belongs to another account",
            "The character is already linked to another BattleScope account. Unlink it \
             there first, then link it here.",
        ),
        "account_blocked" => (
            StatusCode::FORBIDDEN,
            "This account is blocked",
            "An administrator blocked this account. Contact them if you think this is wrong.",
        ),
        "session_lost" => (
            StatusCode::UNAUTHORIZED,
            "Your session ended",
            "Your session ended before the character could be linked. Log in again, then \
             link the character.",
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "The login failed",
            "The login could not be completed. Try again.",
        ),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub error_heading: String,
    pub error_body: String,
    pub info: String,
    /// Recent battles, when the operator made them public.
    pub rows: Vec<BattleLine>,
    pub public: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LandingQuery {
    pub auth_error: Option<String>,
    pub logged_out: Option<String>,
}

/// `GET /`: the login landing for visitors and for every failed login (the callback ends in
/// `/?auth_error=<code>`); the usual landing page for a logged-in user.
pub async fn landing(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LandingQuery>,
) -> Response {
    let v = viewer(&state, &headers).await;
    if v.me.is_some() && q.auth_error.is_none() {
        return super::misc::landing(State(state), headers).await;
    }
    let mut layout = Layout::new("Log in", "home", &headers);
    let (status, error_heading, error_body) = match q.auth_error.as_deref() {
        Some(code) => {
            let (s, h, b) = login_failure(code);
            (s, h.to_owned(), b.to_owned())
        }
        None => (StatusCode::OK, String::new(), String::new()),
    };
    let info = if q.logged_out.is_some() && v.me.is_none() {
        layout.notice = None;
        "You are logged out.".to_owned()
    } else {
        String::new()
    };
    let mut rows = Vec::new();
    if v.public {
        match state.upstreams.battles("limit=10").await {
            Ok(p) => rows = p.battles.iter().map(|b| battle_line(&state, b)).collect(),
            Err(e) => layout.degraded(&e),
        }
    }
    let page = LoginPage {
        layout,
        error_heading,
        error_body,
        info,
        rows,
        public: v.public,
    };
    (status, render(&page)).into_response()
}

/// `POST /logout`: ends the session on the server, clears the cookies, back to `/`.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Form(f): Form<Fields>,
) -> Response {
    match state
        .upstreams
        .call(
            ServiceName::Authentication,
            Method::POST,
            "/auth/logout",
            &fwd.with_csrf(field(&f, "csrf_token")),
            None,
        )
        .await
    {
        Ok(r) if r.status.is_success() => see_other("/?logged_out=1", &set_cookies(&r)),
        Ok(r) if r.status == StatusCode::FORBIDDEN => csrf_refused(&headers),
        Ok(r) => see_other(
            &format!("/?auth_error={}", error_code(&r)),
            &set_cookies(&r),
        ),
        Err(e) => unavailable(&headers, &e),
    }
}

// ------------------------------------------------------------------ characters

/// A character row.
pub struct CharacterRow {
    pub id: i64,
    pub name: String,
    pub portrait: String,
    pub corporation: String,
    pub corporation_href: String,
    pub alliance: String,
    pub alliance_href: String,
    pub token_ok: bool,
    /// `valid`, `needs re-login`, `no token stored`.
    pub token: &'static str,
    pub primary: bool,
}

/// A session row.
pub struct SessionRow {
    pub id: String,
    pub method: String,
    pub via: String,
    pub created: String,
    pub last_seen: String,
    pub ip: String,
    pub user_agent: String,
    pub current: bool,
}

pub fn character_rows(state: &AppState, chars: &[CharacterInfo]) -> Vec<CharacterRow> {
    chars
        .iter()
        .map(|c| {
            let named = |kind: &str, id: Option<i64>| match id {
                Some(id) => super::name_or(kind, id, state.upstreams.name(kind, id).as_deref()),
                None => String::new(),
            };
            CharacterRow {
                id: c.character_id,
                name: c.name.clone(),
                portrait: state.images.portrait(c.character_id, 64),
                corporation: named("corporation", c.corporation_id),
                corporation_href: c
                    .corporation_id
                    .map(|i| format!("/intel/corporations/{i}"))
                    .unwrap_or_default(),
                alliance: named("alliance", c.alliance_id),
                alliance_href: c
                    .alliance_id
                    .map(|i| format!("/intel/alliances/{i}"))
                    .unwrap_or_default(),
                token_ok: c.token_status == "valid",
                token: match c.token_status.as_str() {
                    "valid" => "valid",
                    "dead" => "needs re-login",
                    _ => "no token stored",
                },
                primary: c.primary,
            }
        })
        .collect()
}

/// Sessions as the service lists them (`{sessions: […]}`).
pub fn session_rows(v: &serde_json::Value, names: &HashMap<i64, String>) -> Vec<SessionRow> {
    let t = |s: &serde_json::Value| {
        s.as_str()
            .and_then(view::parse_time)
            .map_or_else(String::new, |t| view::time(&t))
    };
    v["sessions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    let via = s["via_character_id"].as_i64().unwrap_or(0);
                    SessionRow {
                        id: s["id"].as_str().unwrap_or_default().to_owned(),
                        method: s["method"].as_str().unwrap_or_default().to_owned(),
                        via: names
                            .get(&via)
                            .cloned()
                            .unwrap_or_else(|| format!("Pilot {via}")),
                        created: t(&s["created_at"]),
                        last_seen: t(&s["last_seen_at"]),
                        ip: s["ip"].as_str().unwrap_or_default().to_owned(),
                        user_agent: s["user_agent"]
                            .as_str()
                            .unwrap_or_default()
                            .chars()
                            .take(80)
                            .collect(),
                        current: s["current"].as_bool().unwrap_or(false),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "characters.html")]
pub struct CharactersPage {
    pub layout: Layout,
    pub characters: Vec<CharacterRow>,
    pub sessions: Vec<SessionRow>,
    pub csrf: String,
    pub ok: String,
    pub error: String,
}

/// `GET /characters`: the account's characters and sessions.
pub async fn characters(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Query(q): Query<FlashQuery>,
) -> Response {
    let (_, me) = match require_login(&state, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut layout = Layout::new("Characters", "characters", &headers);
    let names: HashMap<i64, String> = me
        .characters
        .iter()
        .map(|c| (c.character_id, c.name.clone()))
        .collect();
    let sessions = match state
        .upstreams
        .call(
            ServiceName::Authentication,
            Method::GET,
            "/me/sessions",
            &fwd.0,
            None,
        )
        .await
    {
        Ok(r) if r.status.is_success() => serde_json::from_slice(&r.body)
            .map(|v| session_rows(&v, &names))
            .unwrap_or_default(),
        Ok(r) => {
            layout.notice = Some(format!("sessions unavailable: {}", error_message(&r)));
            Vec::new()
        }
        Err(e) => {
            layout.degraded(&e);
            Vec::new()
        }
    };
    let (ok, error) = flash(&q);
    render(&CharactersPage {
        layout,
        characters: character_rows(&state, &me.characters),
        sessions,
        csrf: me.csrf_token.clone(),
        ok,
        error,
    })
}

/// Where a refused auth action sends the browser back to, with the service's code.
fn back_with(res: &ServiceResponse, page: &str, ok: &str, headers: &HeaderMap) -> Response {
    let sep = if page.contains('?') { '&' } else { '?' };
    match res.status {
        s if s.is_success() => see_other(&format!("{page}{sep}ok={ok}"), &set_cookies(res)),
        StatusCode::UNAUTHORIZED => login_required(headers),
        _ => match error_code(res).as_str() {
            c if c.starts_with("csrf_") => csrf_refused(headers),
            c => see_other(
                &format!("{page}{sep}error={}", super::battles::encode(c)),
                &set_cookies(res),
            ),
        },
    }
}

/// `POST /characters/primary` (`character_id`).
pub async fn set_primary(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Form(f): Form<Fields>,
) -> Response {
    let Ok(id) = field(&f, "character_id").parse::<i64>() else {
        return see_other("/characters?error=not_found", &[]);
    };
    match call_json(
        &state,
        ServiceName::Authentication,
        Method::POST,
        "/me/characters/primary",
        &fwd.with_csrf(field(&f, "csrf_token")),
        Some(&serde_json::json!({ "character_id": id })),
    )
    .await
    {
        Ok(r) => back_with(&r, "/characters", "primary_set", &headers),
        Err(e) => unavailable(&headers, &e),
    }
}

/// `POST /characters/link`: starts EVE SSO for another character of this account; the
/// callback comes back to `/characters`.
pub async fn link(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Form(f): Form<Fields>,
) -> Response {
    let mut h = fwd.with_csrf(field(&f, "csrf_token"));
    // JSON answer instead of a 303, so an HTTP client in split mode does not follow it.
    h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    match state
        .upstreams
        .call(
            ServiceName::Authentication,
            Method::POST,
            "/me/characters/link?return_to=%2Fcharacters%3Fok%3Dlinked",
            &h,
            None,
        )
        .await
    {
        Ok(r) if r.status.is_success() => {
            let url = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v["redirect_url"].as_str().map(str::to_owned));
            match url {
                Some(u) => see_other(&u, &set_cookies(&r)),
                None => message(
                    StatusCode::BAD_GATEWAY,
                    &headers,
                    "Login unavailable",
                    "The authentication service gave no EVE SSO address.",
                    false,
                ),
            }
        }
        Ok(r) => back_with(&r, "/characters", "", &headers),
        Err(e) => unavailable(&headers, &e),
    }
}

#[derive(Template)]
#[template(path = "characters_unlink.html")]
pub struct UnlinkPage {
    pub layout: Layout,
    pub character: CharacterRow,
    pub csrf: String,
}

/// `GET /characters/{id}/unlink`: the confirmation step.
pub async fn unlink_confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let (_, me) = match require_login(&state, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(c) = me.characters.iter().find(|c| c.character_id == id) else {
        return message(
            StatusCode::NOT_FOUND,
            &headers,
            "No such character",
            "This character is not linked to your account.",
            false,
        );
    };
    let Some(character) = character_rows(&state, std::slice::from_ref(c)).pop() else {
        return see_other("/characters", &[]);
    };
    render(&UnlinkPage {
        layout: Layout::new("Unlink character", "characters", &headers),
        character,
        csrf: me.csrf_token.clone(),
    })
}

/// `POST /characters/{id}/unlink`.
pub async fn unlink(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Path(id): Path<i64>,
    Form(f): Form<Fields>,
) -> Response {
    match state
        .upstreams
        .call(
            ServiceName::Authentication,
            Method::DELETE,
            &format!("/me/characters/{id}"),
            &fwd.with_csrf(field(&f, "csrf_token")),
            None,
        )
        .await
    {
        Ok(r) => back_with(&r, "/characters", "unlinked", &headers),
        Err(e) => unavailable(&headers, &e),
    }
}

/// `POST /characters/sessions/{id}/end`: ends one of the user's sessions (the current one
/// too: that is a logout).
pub async fn end_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    fwd: Fwd,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let current = current().and_then(|v| v.me.as_ref().map(|m| m.session.id.clone()));
    match state
        .upstreams
        .call(
            ServiceName::Authentication,
            Method::DELETE,
            &format!("/me/sessions/{}", super::battles::encode(&id)),
            &fwd.with_csrf(field(&f, "csrf_token")),
            None,
        )
        .await
    {
        Ok(r) if r.status.is_success() && current.as_deref() == Some(id.as_str()) => {
            see_other("/?logged_out=1", &set_cookies(&r))
        }
        Ok(r) => back_with(&r, "/characters", "session_ended", &headers),
        Err(e) => unavailable(&headers, &e),
    }
}
