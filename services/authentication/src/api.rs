//! The HTTP API (axum 0.8). Paths are the list, served as they are in
//! all-in-one mode; `/health`, `/ready` and `/metrics` are added by the binary.
//!
//! Cookie-authenticated state changes (POST/PUT/DELETE carrying the session cookie)
//! pass [`csrf_guard`] first: `Sec-Fetch-Site: cross-site` and a foreign `Origin` are
//! refused, and a CSRF token bound to the session (header `X-CSRF-Token`, or form field
//! `csrf_token` for plain HTML forms) is required. Tokens are handed out by `GET /me`
//! and in the readable `battlescope_csrf` cookie set at login.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Json, Router};
use bs_sso::Secret;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::gating::GatingConfig;
use crate::domain::rbac::{AdminOp, Feature, Role};
use crate::model::{
    Account, AccountQuery, AuditEntry, AuditQuery, Character, SessionRow, TokenStatus,
};
use crate::service::{
    AccountPatch, AuthError, AuthService, Authed, CallbackOutcome, NewSession, RequestMeta, metric,
};
use crate::settings::{CSRF_FIELD, CSRF_HEADER};

type AppState = Arc<AuthService>;

/// The route patterns browsers use directly (login, the caller's own account) plus
/// `/authorize`: in all-in-one mode these are served at the root of the one listener,
/// while the admin API (`/admin/*`) stays under `/services/authentication` so the web
/// UI's own `/admin` pages own that path (see [`user_facing`]).
pub const USER_FACING_PATHS: &[&str] = &["/auth/{*rest}", "/me", "/me/{*rest}", "/authorize"];

/// Only the user-facing part of this service's router (`service_router`, as returned by
/// [`router`]): requests to [`USER_FACING_PATHS`] are handed to it unchanged, so its CSRF
/// guard, cache headers and every route behave exactly as on the service's own port.
pub fn user_facing(service_router: Router) -> Router {
    // `route_service` refuses a `Router` itself; its service form is the same router.
    let inner = service_router.into_service::<Body>();
    USER_FACING_PATHS.iter().fold(Router::new(), |r, path| {
        r.route_service(path, inner.clone())
    })
}

/// The service router.
pub fn router(service: AppState) -> Router {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        .route("/auth/dev-login", get(dev_login_page).post(dev_login))
        .route("/me", get(me))
        .route("/me/characters", get(my_characters))
        .route("/me/characters/link", post(link_character))
        .route("/me/characters/primary", post(set_primary))
        .route("/me/characters/{id}", delete(unlink_character))
        .route("/me/sessions", get(my_sessions))
        .route("/me/sessions/{id}", delete(end_my_session))
        .route("/me/csrf", post(check_csrf))
        .route("/authorize", post(authorize))
        .route("/admin/accounts", get(admin_accounts))
        .route(
            "/admin/accounts/{id}",
            get(admin_account).put(admin_update_account),
        )
        .route(
            "/admin/accounts/{id}/sessions",
            get(admin_account_sessions).delete(admin_kill_account_sessions),
        )
        .route("/admin/sessions/{id}", delete(admin_end_session))
        .route("/admin/roles/grant", post(admin_grant_role))
        .route("/admin/config", get(admin_config).put(admin_put_config))
        .route("/admin/audit", get(admin_audit).post(admin_record_action))
        .route("/admin/audit/verify", get(admin_audit_verify))
        .layer(middleware::from_fn_with_state(service.clone(), csrf_guard))
        .layer(middleware::map_response(no_store))
        .with_state(service)
}

/// Nothing this service answers may be cached by a browser or a proxy: the answers are
/// per-user (sessions, CSRF tokens, roles) and redirects carry one-time `state`.
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ------------------------------------------------------------------ errors

/// An error as the API answers it: `{error, message}` with a status, optionally
/// clearing the session cookie (a blocked account's browser forgets its session).
pub struct ApiError {
    error: AuthError,
    clear_cookie: Option<(&'static str, bool)>,
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        Self {
            error,
            clear_cookie: None,
        }
    }
}

fn error_body(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.error;
        let message = e.to_string();
        let mut response = match e {
            AuthError::NotAuthenticated => {
                error_body(StatusCode::UNAUTHORIZED, "not_authenticated", &message)
            }
            AuthError::Blocked => error_body(StatusCode::FORBIDDEN, "account_blocked", &message),
            AuthError::Forbidden(reason) => error_body(StatusCode::FORBIDDEN, reason, &message),
            AuthError::NotFound => error_body(StatusCode::NOT_FOUND, "not_found", &message),
            AuthError::Conflict { code, .. } => error_body(StatusCode::CONFLICT, code, &message),
            AuthError::BadRequest(_) => {
                error_body(StatusCode::BAD_REQUEST, "bad_request", &message)
            }
            AuthError::SsoNotConfigured => error_body(
                StatusCode::SERVICE_UNAVAILABLE,
                "sso_not_configured",
                &message,
            ),
            AuthError::RateLimited => {
                error_body(StatusCode::TOO_MANY_REQUESTS, "rate_limited", &message)
            }
            AuthError::Busy => error_body(StatusCode::SERVICE_UNAVAILABLE, "busy", &message),
            AuthError::Login(f) => error_body(StatusCode::BAD_REQUEST, f.code(), &message),
            AuthError::Internal(err) => {
                // The detail goes to the log only; the client gets a generic message.
                tracing::error!(error = %format!("{err:#}"), "authentication service internal error");
                error_body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        };
        if let Some((name, secure)) = self.clear_cookie {
            append_cookie(&mut response, &clear_cookie(name, "/", secure));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

// ------------------------------------------------------------------ cookies

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
    http_only: bool,
    secure: bool,
) -> String {
    let mut c = format!("{name}={value}; Path={path}; Max-Age={max_age}; SameSite=Lax");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

fn clear_cookie(name: &str, path: &str, secure: bool) -> String {
    set_cookie(name, "", path, 0, true, secure)
}

fn append_cookie(r: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn session_cookies(s: &AuthService, r: &mut Response, session: &NewSession) {
    let settings = s.settings();
    let secure = settings.secure_cookies;
    let max_age = settings.session.absolute.num_seconds();
    append_cookie(
        r,
        &set_cookie(
            settings.session_cookie(),
            session.session_id.expose(),
            "/",
            max_age,
            true,
            secure,
        ),
    );
    append_cookie(
        r,
        &set_cookie(
            settings.csrf_cookie(),
            &session.csrf_token,
            "/",
            max_age,
            false,
            secure,
        ),
    );
}

fn clear_session_cookies(s: &AuthService, r: &mut Response) {
    let settings = s.settings();
    append_cookie(
        r,
        &clear_cookie(settings.session_cookie(), "/", settings.secure_cookies),
    );
    append_cookie(
        r,
        &clear_cookie(settings.csrf_cookie(), "/", settings.secure_cookies),
    );
}

// ------------------------------------------------------------------ extractors

/// Where the request came from (see [`client_ip`]).
pub struct Meta(pub RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(meta_of(parts)))
    }
}

/// The client address. Proxy headers are trusted only from a loopback peer or an
/// in-process caller (no peer at all: the BFF driving this router directly), and then
/// only the last `X-Forwarded-For` hop, the one that trusted hop appended itself.
fn client_ip(parts: &Parts) -> String {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let trusted_hop = peer.is_none_or(|ip| ip.is_loopback());
    let forwarded = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .and_then(|v| v.parse::<std::net::IpAddr>().ok());
    match (trusted_hop, forwarded, peer) {
        (true, Some(ip), _) => ip.to_string(),
        (_, _, Some(ip)) => ip.to_string(),
        _ => "unknown".to_owned(),
    }
}

fn meta_of(parts: &Parts) -> RequestMeta {
    let ip = client_ip(parts);
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(256)
        .collect();
    RequestMeta { ip, user_agent }
}

/// A request with a valid session (401 otherwise, 403 for a blocked account).
pub struct Session(pub Authed);

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let name = s.settings().session_cookie();
        let Some(id) = cookie_value(&parts.headers, name) else {
            return Err(AuthError::NotAuthenticated.into());
        };
        match s.authenticate(id).await {
            Ok(a) => Ok(Self(a)),
            Err(error @ (AuthError::Blocked | AuthError::NotAuthenticated)) => Err(ApiError {
                error,
                clear_cookie: Some((name, s.settings().secure_cookies)),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// A request that may carry a valid session.
pub struct MaybeSession(pub Option<Authed>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let Some(id) = cookie_value(&parts.headers, s.settings().session_cookie()) else {
            return Ok(Self(None));
        };
        match s.authenticate(id).await {
            Ok(a) => Ok(Self(Some(a))),
            Err(AuthError::NotAuthenticated | AuthError::Blocked) => Ok(Self(None)),
            Err(e) => Err(e.into()),
        }
    }
}

// ------------------------------------------------------------------ CSRF

/// Paths whose unsafe methods are not cookie-authenticated state changes of a session:
/// `/authorize` is service-to-service (the subject is in the body), and the dev login
/// starts a session rather than acting on one (its `Origin` is still checked).
const CSRF_TOKEN_EXEMPT: &[&str] = &["/authorize", "/auth/dev-login"];
const MAX_FORM_BYTES: usize = 64 * 1024;

fn reject(reason: &'static str) -> Response {
    metrics::counter!(metric::REJECTIONS, "reason" => reason).increment(1);
    error_body(
        StatusCode::FORBIDDEN,
        reason,
        "cross-site or unverified state-changing request refused",
    )
}

/// Refuses cross-site and token-less state changes (see the module doc).
pub async fn csrf_guard(State(s): State<AppState>, request: Request, next: Next) -> Response {
    let unsafe_method = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !unsafe_method {
        return next.run(request).await;
    }
    let headers = request.headers();
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return reject("csrf_cross_site");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != s.settings().public_origin()
    {
        return reject("csrf_origin");
    }
    let path = request.uri().path().to_owned();
    if CSRF_TOKEN_EXEMPT.contains(&path.as_str()) {
        return next.run(request).await;
    }
    let Some(session_id) = cookie_value(headers, s.settings().session_cookie()).map(str::to_owned)
    else {
        // Not cookie-authenticated: the handler answers 401 where a session is needed.
        return next.run(request).await;
    };
    if let Some(token) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return if s.csrf_valid(&session_id, token) {
            next.run(request).await
        } else {
            reject("csrf_token")
        };
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return reject("csrf_token");
    }
    // A plain HTML form: the token is a body field. Buffer (bounded) and put it back.
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return error_body(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "form body too large",
        );
    };
    let token = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    if !token.is_some_and(|t| s.csrf_valid(&session_id, &t)) {
        return reject("csrf_token");
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

// ------------------------------------------------------------------ wire types

#[derive(Serialize)]
struct CharacterView {
    character_id: i64,
    name: String,
    corporation_id: Option<i64>,
    alliance_id: Option<i64>,
    scopes: Vec<String>,
    primary: bool,
    /// `valid`, `dead` (log in with it again) or `none` (no grant stored).
    token_status: &'static str,
    linked_at: DateTime<Utc>,
}

async fn character_views(
    s: &AuthService,
    account: &Account,
) -> Result<Vec<CharacterView>, AuthError> {
    let mut out = Vec::new();
    for c in s.store().characters_of(&account.id).await? {
        let token_status = match s.store().token(c.character_id).await? {
            Some(t) if t.status == TokenStatus::Valid => "valid",
            Some(_) => "dead",
            None => "none",
        };
        out.push(character_view(c, account, token_status));
    }
    Ok(out)
}

fn character_view(c: Character, account: &Account, token_status: &'static str) -> CharacterView {
    CharacterView {
        primary: account.primary_character_id == Some(c.character_id),
        character_id: c.character_id,
        name: c.name,
        corporation_id: c.corporation_id,
        alliance_id: c.alliance_id,
        scopes: c.scopes,
        token_status,
        linked_at: c.linked_at,
    }
}

#[derive(Serialize)]
struct SessionView {
    id: String,
    method: String,
    via_character_id: i64,
    created_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    ip: String,
    user_agent: String,
    current: bool,
}

fn session_view(s: SessionRow, current: Option<&str>) -> SessionView {
    SessionView {
        current: current == Some(s.public_id.as_str()),
        id: s.public_id,
        method: s.method,
        via_character_id: s.via_character_id,
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        expires_at: s.expires_at,
        ip: s.ip,
        user_agent: s.user_agent,
    }
}

#[derive(Serialize)]
struct AccountView {
    id: String,
    display_name: String,
    primary_character_id: Option<i64>,
    blocked: bool,
    block_reason: Option<String>,
    super_admin: bool,
    created_at: DateTime<Utc>,
    last_login_at: Option<DateTime<Utc>>,
}

fn account_view(a: Account) -> AccountView {
    AccountView {
        id: a.id,
        display_name: a.display_name,
        primary_character_id: a.primary_character_id,
        blocked: a.blocked,
        block_reason: a.block_reason,
        super_admin: a.super_admin,
        created_at: a.created_at,
        last_login_at: a.last_login_at,
    }
}

// ------------------------------------------------------------------ /auth

#[derive(Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
}

/// `GET /auth/login`: 303 to EVE SSO. With a valid session it links another character.
async fn login(
    State(s): State<AppState>,
    Meta(meta): Meta,
    MaybeSession(current): MaybeSession,
    Query(q): Query<LoginQuery>,
) -> ApiResult<Response> {
    s.rate_limit("login", &meta.ip, s.settings().rate_limits.login)
        .await?;
    let start = s
        .begin_login(q.return_to.as_deref(), current.as_ref())
        .await?;
    Ok(redirect_to_sso(
        &s,
        &start.authorize_url,
        &start.preauth_cookie,
    ))
}

fn redirect_to_sso(s: &AuthService, url: &str, preauth: &Secret<String>) -> Response {
    let mut r = see_other(url);
    let ttl = s.settings().login_state_ttl.num_seconds();
    append_cookie(
        &mut r,
        &set_cookie(
            s.settings().preauth_cookie(),
            preauth.expose(),
            "/auth",
            ttl,
            true,
            s.settings().secure_cookies,
        ),
    );
    r
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

/// `GET /auth/callback`: SSO's redirect back. Always ends in a 303: to `return_to` on
/// success, to `/?auth_error=<code>` otherwise.
async fn callback(
    State(s): State<AppState>,
    Meta(meta): Meta,
    MaybeSession(current): MaybeSession,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> ApiResult<Response> {
    s.rate_limit("callback", &meta.ip, s.settings().rate_limits.callback)
        .await?;
    let preauth = cookie_value(&headers, s.settings().preauth_cookie());
    let outcome = match (q.code.as_deref(), q.state.as_deref()) {
        (Some(code), Some(state)) if !code.is_empty() && !state.is_empty() => {
            s.complete_callback(code, state, preauth, current.as_ref(), &meta)
                .await
        }
        (_, Some(state)) => {
            // The user declined at SSO (or a broken link): burn the state all the same.
            let _ = s.complete_callback("", state, None, None, &meta).await;
            Err(AuthError::Login(crate::service::LoginFailure::AuthFailed))
        }
        _ => Err(AuthError::Login(crate::service::LoginFailure::InvalidState)),
    };
    let secure = s.settings().secure_cookies;
    let mut r = match outcome {
        Ok(CallbackOutcome::LoggedIn { session, return_to }) => {
            let mut r = see_other(&return_to);
            // A new session id at every login: whatever cookie the browser had is replaced.
            if let Some(old) = current {
                let _ = s
                    .store()
                    .revoke_session(&old.session.id_hash, "replaced_by_login", s.now())
                    .await;
            }
            session_cookies(&s, &mut r, &session);
            r
        }
        Ok(CallbackOutcome::Linked { return_to, .. }) => see_other(&return_to),
        Err(AuthError::Login(f)) => see_other(&format!("/?auth_error={}", f.code())),
        Err(e) => return Err(e.into()),
    };
    append_cookie(
        &mut r,
        &clear_cookie(s.settings().preauth_cookie(), "/auth", secure),
    );
    Ok(r)
}

/// `POST /auth/logout`: revokes the session on the server; 204.
async fn logout(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(id) = cookie_value(&headers, s.settings().session_cookie()) {
        s.logout(id, &meta).await?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    clear_session_cookies(&s, &mut r);
    Ok(r)
}

/// `GET /auth/dev-login`: a clearly labelled form (development only).
async fn dev_login_page(State(s): State<AppState>) -> ApiResult<Response> {
    if !s.settings().dev_login {
        return Err(AuthError::NotFound.into());
    }
    Ok(Html(
        "<!doctype html><title>Development login</title>\
         <h1>Development login (not EVE SSO)</h1>\
         <p>This server runs with <code>auth.dev_login</code> on a loopback address. \
         Anyone who can reach it can log in as any character id. Never enable it on a public server.</p>\
         <form method=post action=/auth/dev-login>\
         <label>Character id <input name=character_id required inputmode=numeric></label> \
         <label>Name <input name=name></label> <button>Log in</button></form>",
    )
    .into_response())
}

#[derive(Deserialize)]
struct DevLoginForm {
    character_id: i64,
    #[serde(default)]
    name: String,
    return_to: Option<String>,
}

/// `POST /auth/dev-login`: logs in as a character without SSO (development only).
async fn dev_login(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Form(f): Form<DevLoginForm>,
) -> ApiResult<Response> {
    if !s.settings().dev_login || !is_local_peer(&meta) {
        return Err(AuthError::NotFound.into());
    }
    s.rate_limit("login", &meta.ip, s.settings().rate_limits.login)
        .await?;
    let session = s.dev_login(f.character_id, &f.name, &meta).await?;
    let to = f
        .return_to
        .as_deref()
        .and_then(bs_sso::safe_return_to)
        .unwrap_or_else(|| "/".to_owned());
    let mut r = see_other(&to);
    session_cookies(&s, &mut r, &session);
    Ok(r)
}

/// The peer is loopback, or unknown (in-process calls carry no peer address).
fn is_local_peer(meta: &RequestMeta) -> bool {
    meta.ip == "unknown"
        || meta
            .ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

// ------------------------------------------------------------------ /me

async fn me(State(s): State<AppState>, Session(a): Session) -> ApiResult<Json<serde_json::Value>> {
    let roles = s
        .store()
        .roles_of(&a.account.id)
        .await
        .map_err(AuthError::from)?;
    let characters = character_views(&s, &a.account).await?;
    let primary = characters
        .iter()
        .find(|c| c.primary)
        .map(|c| json!({"character_id": c.character_id, "name": c.name}));
    let roles: serde_json::Map<String, serde_json::Value> = roles
        .into_iter()
        .map(|(f, r)| {
            (
                f.key().to_owned(),
                json!({"role": r.key(), "rank": r.rank()}),
            )
        })
        .collect();
    Ok(Json(json!({
        "account_id": a.account.id,
        "display_name": a.account.display_name,
        "super_admin": a.account.super_admin,
        "primary_character": primary,
        "characters": characters,
        "roles": roles,
        "csrf_token": s.csrf_token(&a.session_id)?,
        "session": {"id": a.session.public_id, "created_at": a.session.created_at, "expires_at": a.session.expires_at, "method": a.session.method},
    })))
}

async fn my_characters(
    State(s): State<AppState>,
    Session(a): Session,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(
        json!({"characters": character_views(&s, &a.account).await?}),
    ))
}

/// `POST /me/characters/link`: 303 to EVE SSO to add a character to this account.
/// A script asking with `Accept: application/json` gets `{redirect_url}` (and the same
/// pre-auth cookie) instead, since `fetch` cannot follow a cross-origin redirect usefully.
async fn link_character(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> ApiResult<Response> {
    s.rate_limit("login", &meta.ip, s.settings().rate_limits.login)
        .await?;
    let start = s.begin_login(q.return_to.as_deref(), Some(&a)).await?;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let mut r = redirect_to_sso(&s, &start.authorize_url, &start.preauth_cookie);
    if wants_json {
        let cookies: Vec<HeaderValue> = r
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        r = Json(json!({"redirect_url": start.authorize_url})).into_response();
        for c in cookies {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    Ok(r)
}

#[derive(Deserialize)]
struct PrimaryBody {
    character_id: i64,
}

async fn set_primary(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    Json(b): Json<PrimaryBody>,
) -> ApiResult<StatusCode> {
    s.set_primary(&a, b.character_id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unlink_character(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.unlink(&a, id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn my_sessions(
    State(s): State<AppState>,
    Session(a): Session,
) -> ApiResult<Json<serde_json::Value>> {
    let current = a.session.public_id.clone();
    let sessions: Vec<SessionView> = s
        .sessions_of(&a.account.id)
        .await?
        .into_iter()
        .map(|x| session_view(x, Some(&current)))
        .collect();
    Ok(Json(json!({"sessions": sessions})))
}

async fn end_my_session(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let owner = a.account.id.clone();
    s.end_session(&a, &id, Some(&owner), &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /me/csrf`: 204 when the session is valid and the request passed [`csrf_guard`]
/// (its token is bound to this session). Lets the web UI check the token of a form whose
/// effect lands in another service (which has no session to bind a token to).
async fn check_csrf(Session(_): Session) -> StatusCode {
    StatusCode::NO_CONTENT
}

// ------------------------------------------------------------------ /authorize

/// `POST /authorize` body: the subject (an account id, or a session id as found in the
/// user's cookie), the feature and the action.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeBody {
    pub account_id: Option<String>,
    pub session_id: Option<String>,
    pub feature: String,
    pub action: String,
}

/// `POST /authorize` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeAnswer {
    pub allow: bool,
    pub reason: String,
    pub account_id: Option<String>,
    /// How long the caller may cache the answer (0: do not cache; blocks apply at once).
    pub cache_ttl_seconds: u32,
}

async fn authorize(
    State(s): State<AppState>,
    Json(b): Json<AuthorizeBody>,
) -> ApiResult<Json<AuthorizeAnswer>> {
    let (account_id, decision) = match (b.account_id, b.session_id) {
        (Some(account), None) => {
            let d = s.authorize_account(&account, &b.feature, &b.action).await?;
            (Some(account), d)
        }
        (None, Some(session)) => s.authorize_session(&session, &b.feature, &b.action).await?,
        _ => {
            return Err(AuthError::BadRequest(
                "give exactly one of account_id and session_id".into(),
            )
            .into());
        }
    };
    Ok(Json(AuthorizeAnswer {
        allow: decision.allow,
        reason: decision.reason.as_str().to_owned(),
        account_id,
        cache_ttl_seconds: 0,
    }))
}

// ------------------------------------------------------------------ /admin

#[derive(Deserialize)]
struct AccountsQuery {
    query: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn admin_accounts(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    Query(q): Query<AccountsQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    s.require_admin(&a, AdminOp::Read, &meta).await?;
    let (accounts, total) = s
        .list_accounts(&AccountQuery {
            query: q.query,
            limit: q.limit.unwrap_or(50).clamp(1, 200),
            offset: q.offset.unwrap_or(0),
        })
        .await?;
    let accounts: Vec<AccountView> = accounts.into_iter().map(account_view).collect();
    Ok(Json(json!({"accounts": accounts, "total": total})))
}

async fn admin_account(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    s.require_admin(&a, AdminOp::Read, &meta).await?;
    let account = s
        .store()
        .account(&id)
        .await
        .map_err(AuthError::from)?
        .ok_or(AuthError::NotFound)?;
    let characters = character_views(&s, &account).await?;
    let roles: serde_json::Map<String, serde_json::Value> = s
        .store()
        .roles_of(&id)
        .await
        .map_err(AuthError::from)?
        .into_iter()
        .map(|(f, r)| (f.key().to_owned(), json!(r.key())))
        .collect();
    Ok(Json(
        json!({"account": account_view(account), "characters": characters, "roles": roles}),
    ))
}

async fn admin_update_account(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    Path(id): Path<String>,
    Json(patch): Json<AccountPatch>,
) -> ApiResult<Json<serde_json::Value>> {
    let account = s.update_account(&a, &id, &patch, &meta).await?;
    Ok(Json(json!({"account": account_view(account)})))
}

async fn admin_account_sessions(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    s.require_admin(&a, AdminOp::Read, &meta).await?;
    let sessions: Vec<SessionView> = s
        .sessions_of(&id)
        .await?
        .into_iter()
        .map(|x| session_view(x, None))
        .collect();
    Ok(Json(json!({"sessions": sessions})))
}

async fn admin_kill_account_sessions(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let revoked = s.kill_account_sessions(&a, &id, &meta).await?;
    Ok(Json(json!({"revoked": revoked})))
}

async fn admin_end_session(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.require_admin(&a, AdminOp::ManageAccounts, &meta).await?;
    s.end_session(&a, &id, None, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    account_id: String,
    feature: String,
    /// A role key, or `null` to revoke.
    role: Option<String>,
}

async fn admin_grant_role(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    Json(b): Json<GrantBody>,
) -> ApiResult<StatusCode> {
    let feature: Feature = b
        .feature
        .parse()
        .map_err(|()| AuthError::BadRequest(format!("unknown feature `{}`", b.feature)))?;
    let role = b
        .role
        .as_deref()
        .map(|r| {
            r.parse::<Role>()
                .map_err(|()| AuthError::BadRequest(format!("unknown role `{r}`")))
        })
        .transpose()?;
    s.grant_role(&a, &b.account_id, feature, role, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn admin_config(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
) -> ApiResult<Json<GatingConfig>> {
    s.require_admin(&a, AdminOp::Read, &meta).await?;
    Ok(Json(s.gating_config().await?))
}

async fn admin_put_config(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    Json(config): Json<GatingConfig>,
) -> ApiResult<Json<serde_json::Value>> {
    let locked_out = s.put_config(&a, &config, &meta).await?;
    Ok(Json(
        json!({"config": config, "accounts_locked_out": locked_out}),
    ))
}

#[derive(Deserialize)]
struct AuditParams {
    action: Option<String>,
    actor: Option<String>,
    target_id: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

async fn admin_audit(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    Query(q): Query<AuditParams>,
) -> ApiResult<Json<serde_json::Value>> {
    s.require_admin(&a, AdminOp::Read, &meta).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let entries = s
        .audit_log(&AuditQuery {
            action: q.action,
            actor_account_id: q.actor,
            target_id: q.target_id,
            before_seq: q.before,
            limit,
        })
        .await?;
    let next_before = (i64::try_from(entries.len()).unwrap_or(0) == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(
        json!({"entries": entries, "next_before": next_before}),
    ))
}

#[derive(Deserialize)]
struct RecordBody {
    action: String,
    target_type: String,
    target_id: String,
    #[serde(default = "empty_object")]
    metadata: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    json!({})
}

/// `POST /admin/audit`: records an admin change made in another service (the BFF calls it
/// after an ingestion ruleset, backfill job or clusterer change) under the caller's account.
async fn admin_record_action(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
    Json(b): Json<RecordBody>,
) -> ApiResult<(StatusCode, Json<AuditEntry>)> {
    let entry = s
        .record_admin_action(
            &a,
            &b.action,
            (&b.target_type, &b.target_id),
            &meta,
            b.metadata,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

async fn admin_audit_verify(
    State(s): State<AppState>,
    Meta(meta): Meta,
    Session(a): Session,
) -> ApiResult<Json<serde_json::Value>> {
    s.require_admin(&a, AdminOp::Read, &meta).await?;
    let verdict = s
        .store()
        .verify_audit_chain()
        .await
        .map_err(AuthError::from)?;
    // Where the walk started: the newest retention anchor (null: from the genesis hash).
    let anchor = s.store().audit_anchor().await.map_err(AuthError::from)?;
    Ok(Json(match verdict {
        Ok(n) => json!({"ok": true, "entries": n, "anchor": anchor}),
        Err(seq) => json!({"ok": false, "broken_at": seq, "anchor": anchor}),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{CSRF_COOKIE, SESSION_COOKIE};

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; battlescope_session=abc ; b="),
        );
        assert_eq!(cookie_value(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie_value(&h, "a"), Some("1"));
        assert_eq!(cookie_value(&h, "b"), None);
        assert_eq!(cookie_value(&h, "battlescope"), None);
    }

    #[test]
    fn session_cookie_attributes() {
        let c = set_cookie(SESSION_COOKIE, "v", "/", 60, true, true);
        assert_eq!(
            c,
            "battlescope_session=v; Path=/; Max-Age=60; SameSite=Lax; HttpOnly; Secure"
        );
        let c = set_cookie(CSRF_COOKIE, "t", "/", 60, false, false);
        assert!(!c.contains("HttpOnly") && !c.contains("Secure"));
    }
}
