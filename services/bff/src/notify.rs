//! The notification service's user API through the BFF: `/api/subscriptions…`,
//! `/api/notifications…`, `/api/watchlists…`, `/api/dead-letters`, and the WebSockets
//! `/api/ws` (the caller's live matches) and `/api/ws/public` (the anonymous feed).
//!
//! JSON routes are passed through [`crate::clients::Upstreams::call`] (in-process router in
//! all-in-one mode, HTTP in split mode) with the caller's `Cookie`, so the notification
//! service resolves the account itself and one user never sees another's data. State
//! changes carrying a session cookie must pass [`csrf_check`] first (header `X-CSRF-Token`
//! for scripts, form field `csrf_token` for the HTML forms of [`crate::pages`]).
//!
//! WebSockets: the service client reads whole responses, so a socket cannot pass through
//! it. The BFF accepts the browser's socket itself and feeds it from a long-poll relay on
//! the notification service (`POST /ws/relay`, `GET /ws/relay/{token}`): the same hub
//! connection, the same slow-client rule, and the same code path in both topologies.
//! `Origin` is checked here (cross-site WebSocket hijacking) before the relay is opened.

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bs_config::ServiceName;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{self, error, upstream_error};
use crate::clients::UpstreamError;
use crate::{AppState, auth};

/// The proxied paths (also in [`crate::api::ROUTES`] and the OpenAPI document).
pub const ROUTES: &[&str] = &[
    "/api/subscriptions",
    "/api/subscriptions/{id}",
    "/api/subscriptions/{id}/test",
    "/api/notifications",
    "/api/notifications/read-all",
    "/api/notifications/{id}/read",
    "/api/watchlists",
    "/api/watchlists/{id}",
    "/api/dead-letters",
    "/api/ws",
    "/api/ws/public",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/subscriptions", get(pass).post(pass))
        .route("/api/subscriptions/{id}", get(pass).put(pass).delete(pass))
        .route("/api/subscriptions/{id}/test", post(pass))
        .route("/api/notifications", get(pass))
        .route("/api/notifications/read-all", post(pass))
        .route("/api/notifications/{id}/read", post(pass))
        .route("/api/watchlists", get(pass).post(pass))
        .route("/api/watchlists/{id}", axum::routing::delete(pass))
        .route("/api/dead-letters", get(pass))
        .route("/api/ws", get(ws_user))
        .route("/api/ws/public", get(ws_public))
}

// ---------------------------------------------------------------------------------------------
// CSRF.

/// Why a state change was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsrfRefusal {
    /// `Sec-Fetch-Site: cross-site` or a foreign `Origin`.
    CrossSite,
    /// No session cookie: log in.
    NotAuthenticated,
    /// Missing or wrong token.
    Token,
    /// The authentication service could not answer.
    Unavailable(String),
}

/// `scheme://host[:port]` of a URL, as browsers send it in `Origin`.
pub fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    )
}

/// True when the request's `Origin` (if any) is the installation's own.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(o) => o.trim_end_matches('/') == origin_of(&state.config.public_url),
    }
}

fn cookie_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::COOKIE).and_then(|v| v.to_str().ok())
}

/// A cookie's value from a `Cookie` header.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookie_header(headers)?
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Checks a cookie-authenticated state change the way the authentication service checks its
/// own (`Sec-Fetch-Site`, `Origin`, a token bound to the session). Only that service holds
/// the key that binds tokens to sessions, so the token goes to it with the session:
/// `POST /me/csrf` answers 204 when its CSRF guard let the request through. Against an
/// authentication service without that route (404), a state-changing route that changes
/// nothing does the same job: ending a session that does not exist
/// (`DELETE /me/sessions/csrf-check`: the guard answers 403 for a bad token, the handler 404).
pub async fn csrf_check(
    state: &AppState,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<(), CsrfRefusal> {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    if cross_site || !same_origin(state, headers) {
        return Err(CsrfRefusal::CrossSite);
    }
    let Some(cookie) = cookie_header(headers).filter(|_| auth::Gate::has_session(headers)) else {
        return Err(CsrfRefusal::NotAuthenticated);
    };
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(CsrfRefusal::Token);
    };
    let mut probe = HeaderMap::new();
    let (Ok(c), Ok(t)) = (HeaderValue::from_str(cookie), HeaderValue::from_str(token)) else {
        return Err(CsrfRefusal::Token);
    };
    probe.insert(header::COOKIE, c);
    probe.insert(HeaderName::from_static("x-csrf-token"), t);
    let ask = |method: Method, path: &'static str| {
        state
            .upstreams
            .call(ServiceName::Authentication, method, path, &probe, None)
    };
    let res = ask(Method::POST, "/me/csrf")
        .await
        .map_err(|e| CsrfRefusal::Unavailable(e.to_string()))?;
    let status = match res.status.as_u16() {
        404 => {
            let res = ask(Method::DELETE, "/me/sessions/csrf-check")
                .await
                .map_err(|e| CsrfRefusal::Unavailable(e.to_string()))?;
            match res.status.as_u16() {
                404 => 204,
                s => s,
            }
        }
        s => s,
    };
    match status {
        200..=299 => Ok(()),
        401 => Err(CsrfRefusal::NotAuthenticated),
        400..=499 => Err(CsrfRefusal::Token),
        s => Err(CsrfRefusal::Unavailable(format!(
            "authentication answered {s}"
        ))),
    }
}

fn csrf_refused(r: &CsrfRefusal) -> Response {
    match r {
        CsrfRefusal::CrossSite => error(
            StatusCode::FORBIDDEN,
            "cross-site state-changing request refused",
        ),
        CsrfRefusal::NotAuthenticated => error(StatusCode::UNAUTHORIZED, "log in first"),
        CsrfRefusal::Token => error(
            StatusCode::FORBIDDEN,
            "csrf_token: send the X-CSRF-Token header (from GET /me or the battlescope_csrf cookie)",
        ),
        CsrfRefusal::Unavailable(d) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "authentication unavailable", "detail": d })),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON pass-through.

/// The headers a call to the notification service carries: the caller's cookie only.
pub fn identity(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Some(c) = headers.get(header::COOKIE) {
        out.insert(header::COOKIE, c.clone());
    }
    out
}

/// One call to the notification service as the caller; the answer as JSON (status, body).
pub async fn call(
    state: &AppState,
    headers: &HeaderMap,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Value), UpstreamError> {
    let mut h = identity(headers);
    if body.is_some() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let res = state
        .upstreams
        .call(ServiceName::Notification, method, path, &h, body)
        .await?;
    let v = if res.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&res.body).unwrap_or(Value::Null)
    };
    Ok((res.status, v))
}

/// Passes a `/api/…` request to the same path of the notification service.
async fn pass(
    State(state): State<AppState>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let unsafe_method = !matches!(method, Method::GET | Method::HEAD);
    if unsafe_method && auth::Gate::has_session(&headers) {
        let token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if let Err(r) = csrf_check(&state, &headers, token).await {
            return csrf_refused(&r);
        }
    }
    let path = uri.path().strip_prefix("/api").unwrap_or(uri.path());
    // Only the one documented parameter is forwarded.
    let q = api::forward_query(uri.query(), &["limit"]);
    let target = if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{q}")
    };
    let mut h = identity(&headers);
    if !body.is_empty() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let body = (!body.is_empty()).then(|| body.to_vec());
    match state
        .upstreams
        .call(ServiceName::Notification, method, &target, &h, body)
        .await
    {
        Ok(res) => {
            let mut r = (res.status, res.body).into_response();
            if let Some(ct) = res.headers.get(header::CONTENT_TYPE) {
                r.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
            }
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => upstream_error(&e),
    }
}

// ---------------------------------------------------------------------------------------------
// WebSockets.

type Upgrade = Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

fn not_a_socket() -> Response {
    error(
        StatusCode::UPGRADE_REQUIRED,
        "this is a WebSocket endpoint: connect with a WebSocket client",
    )
}

/// Opens a relay as the caller; a refusal is answered as the service answered it.
async fn open_relay(
    state: &AppState,
    headers: &HeaderMap,
    body: Value,
) -> Result<String, Response> {
    let (status, v) = call(
        state,
        headers,
        Method::POST,
        "/ws/relay",
        Some(body.to_string().into_bytes()),
    )
    .await
    .map_err(|e| upstream_error(&e))?;
    match v["token"].as_str() {
        Some(t) if status.is_success() => Ok(t.to_owned()),
        _ => Err((status, Json(v)).into_response()),
    }
}

async fn ws_user(State(state): State<AppState>, headers: HeaderMap, up: Upgrade) -> Response {
    let Ok(up) = up else {
        return not_a_socket();
    };
    if !same_origin(&state, &headers) {
        return error(StatusCode::FORBIDDEN, "origin");
    }
    match open_relay(&state, &headers, json!({})).await {
        Ok(token) => up.on_upgrade(move |socket| relay(state, token, socket)),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct PublicQuery {
    filter: Option<String>,
}

async fn ws_public(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    up: Upgrade,
) -> Response {
    let Ok(up) = up else {
        return not_a_socket();
    };
    if let Err(d) = state.gate.check(&headers, auth::BATTLE_INTEL).await {
        return match d {
            auth::Denied::NotAuthenticated => error(StatusCode::UNAUTHORIZED, "log in first"),
            auth::Denied::Forbidden(r) => error(StatusCode::FORBIDDEN, format!("forbidden: {r}")),
            auth::Denied::Unavailable(_) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "authentication unavailable",
            ),
        };
    }
    let q: PublicQuery = match serde_urlencoded_query(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let filter = match q.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        None => Value::Null,
        Some(f) => match serde_json::from_str::<Value>(f) {
            Ok(v) => v,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("filter: {e}")),
        },
    };
    // The public feed needs no identity: no cookie goes to the notification service.
    match open_relay(
        &state,
        &HeaderMap::new(),
        json!({ "public": true, "filter": filter }),
    )
    .await
    {
        Ok(token) => up.on_upgrade(move |socket| relay(state, token, socket)),
        Err(r) => r,
    }
}

/// The socket's query (`filter`), or why it is malformed.
fn serde_urlencoded_query(raw: Option<&str>) -> Result<PublicQuery, String> {
    let uri: axum::http::Uri = format!("/?{}", raw.unwrap_or(""))
        .parse()
        .map_err(|_| "bad query".to_owned())?;
    axum::extract::Query::<PublicQuery>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|e| e.to_string())
}

/// How long one relay poll waits (the service caps it at 8 s).
const POLL_WAIT_MS: u64 = 8_000;

/// Feeds the browser's socket from the relay until either side ends, then closes the relay.
/// A relay the hub dropped (too slow) closes the socket with 1013, as the service's own
/// socket does.
async fn relay(state: AppState, token: String, mut socket: WebSocket) {
    let path = format!("/ws/relay/{token}?wait_ms={POLL_WAIT_MS}");
    let none = HeaderMap::new();
    let close_code = 'relay: loop {
        let poll = state
            .upstreams
            .call(ServiceName::Notification, Method::GET, &path, &none, None);
        tokio::pin!(poll);
        // What the browser sends (pongs, pings) must not cancel the poll in flight: a poll
        // dropped after the service took messages off the queue would lose them.
        let answer = loop {
            tokio::select! {
                a = &mut poll => break a,
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break 'relay None,
                    Some(Ok(_)) => {}
                },
            }
        };
        let batch: Value = match answer {
            Ok(r) if r.status.is_success() => serde_json::from_slice(&r.body).unwrap_or_default(),
            Ok(_) | Err(_) => break Some(1011),
        };
        let messages = batch["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() && socket.send(Message::Ping(Bytes::new())).await.is_err() {
            break None;
        }
        for m in messages {
            if let Some(text) = m.as_str()
                && socket.send(Message::Text(text.into())).await.is_err()
            {
                break 'relay None;
            }
        }
        if batch["closed"].as_bool() == Some(true) {
            break Some(1013);
        }
    };
    if let Some(code) = close_code {
        let reason = if code == 1013 {
            "too slow"
        } else {
            "upstream error"
        };
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
    let _ = state
        .upstreams
        .call(
            ServiceName::Notification,
            Method::DELETE,
            &format!("/ws/relay/{token}"),
            &none,
            None,
        )
        .await;
}
