//! The HTTP API (the BFF proxies it under `/api/…`; the WebSocket at `/api/ws`):
//!
//! * `GET|POST /subscriptions`, `GET|PUT|DELETE /subscriptions/{id}`, `POST /subscriptions/{id}/test`
//! * `GET /notifications` (unread first), `POST /notifications/{id}/read`, `POST /notifications/read-all`
//! * `GET|POST /watchlists`, `DELETE /watchlists/{id}`
//! * `GET /dead-letters`: the owner's failed webhook deliveries (with the reason)
//! * `GET /ws`: the account's live matches; `GET /ws/public?filter=<json>`: the anonymous
//!   public feed (when `notification.public_feed`), optionally filtered.
//! * `POST /ws/relay` (`{"public": bool, "filter": …}`), `GET|DELETE /ws/relay/{token}`: the
//!   same streams read by long polls, for the BFF, which serves the browser's socket itself
//!   (see [`crate::delivery::relay`]).
//!
//! Every route but `/ws/public` resolves the account from the `Cookie` header through the
//! authentication service and requires `notifications`/`view` (each account manages its own
//! subscriptions, so the lowest role is enough). `/ws` also checks `Origin` against
//! `public_url` (cross-site WebSocket hijacking); a missing `Origin` (not a browser) passes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::consumer::Notifier;
use crate::delivery::relay::Relays;
use crate::delivery::ws::{Message, QUEUE};
use crate::domain::{WatchlistSet, filter};
use crate::ssrf::{self, AllowList};
use crate::store::{NewMatch, NewSubscription};

/// Who is calling.
#[derive(Clone, Debug, PartialEq)]
pub enum Access {
    Allowed(String),
    Denied(String),
    Unauthenticated,
}

/// Resolves a request's `Cookie` header to an account allowed to use notifications.
#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    async fn resolve(&self, cookie: Option<&str>) -> Result<Access, String>;
}

/// The production resolver: the authentication service through the service directory.
pub struct AuthAccounts(pub bs_runtime::ServiceDirectory);

#[async_trait]
impl Accounts for AuthAccounts {
    async fn resolve(&self, cookie: Option<&str>) -> Result<Access, String> {
        let Some(cookie) = cookie else {
            return Ok(Access::Unauthenticated);
        };
        let client =
            bs_authentication::AuthClient::from_services(&self.0).map_err(|e| e.to_string())?;
        let answer = client
            .authorize(
                bs_authentication::Subject::SessionCookie(cookie),
                "notifications",
                "view",
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(match (answer.allow, answer.account_id) {
            (true, Some(a)) => Access::Allowed(a),
            (_, None) if answer.reason == "not_authenticated" => Access::Unauthenticated,
            _ => Access::Denied(answer.reason),
        })
    }
}

#[derive(Clone)]
pub struct ApiState {
    pub notifier: Arc<Notifier>,
    pub accounts: Arc<dyn Accounts>,
    pub allow: AllowList,
    pub public_url: String,
    /// Long-poll relays on `notifier.hub`.
    pub relays: Arc<Relays>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/subscriptions", get(list_subs).post(create_sub))
        .route(
            "/subscriptions/{id}",
            get(get_sub).put(put_sub).delete(delete_sub),
        )
        .route("/subscriptions/{id}/test", post(test_sub))
        .route("/notifications", get(list_notes))
        .route("/notifications/read-all", post(read_all))
        .route("/notifications/{id}/read", post(read_one))
        .route("/watchlists", get(list_watch).post(create_watch))
        .route("/watchlists/{id}", axum::routing::delete(delete_watch))
        .route("/dead-letters", get(dead_letters))
        .route("/ws", get(ws_user))
        .route("/ws/public", get(ws_public))
        .route("/ws/relay", post(relay_open))
        .route("/ws/relay/{token}", get(relay_poll).delete(relay_close))
        .with_state(state)
}

/// API errors, mapped to status codes in one place; internals never leak.
#[derive(Debug)]
pub enum ApiError {
    Unauthenticated,
    Forbidden(String),
    NotFound,
    BadRequest(String),
    Unavailable(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail) = match self {
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "not_authenticated", String::new()),
            Self::Forbidden(r) => (StatusCode::FORBIDDEN, "forbidden", r),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", String::new()),
            Self::BadRequest(r) => (StatusCode::BAD_REQUEST, "bad_request", r),
            Self::Unavailable(r) => {
                tracing::warn!(error = %r, "authentication unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    String::new(),
                )
            }
            Self::Internal(r) => {
                tracing::error!(error = %r, "notification api error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", String::new())
            }
        };
        (status, Json(json!({ "error": code, "detail": detail }))).into_response()
    }
}

impl From<bs_store::StoreError> for ApiError {
    fn from(e: bs_store::StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

async fn account(s: &ApiState, headers: &HeaderMap) -> Result<String, ApiError> {
    let cookie = headers
        .get(axum::http::header::COOKIE)
        .and_then(|v| v.to_str().ok());
    match s.accounts.resolve(cookie).await {
        Ok(Access::Allowed(a)) => Ok(a),
        Ok(Access::Denied(r)) => Err(ApiError::Forbidden(r)),
        Ok(Access::Unauthenticated) => Err(ApiError::Unauthenticated),
        Err(e) => Err(ApiError::Unavailable(e)),
    }
}

/// Checks a subscription body: the filter compiles against the owner's watchlists and
/// every webhook URL passes the SSRF form check.
async fn validate(s: &ApiState, account: &str, new: &NewSubscription) -> Result<(), ApiError> {
    let lists: HashMap<i64, WatchlistSet> = s
        .notifier
        .store
        .list_watchlists(account)
        .await?
        .into_iter()
        .map(|w| (w.id, w.members))
        .collect();
    filter::compile(&new.filter, &*s.notifier.geo, &lists)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if new.name.trim().is_empty() || new.name.len() > 200 {
        return Err(ApiError::BadRequest("name must be 1–200 characters".into()));
    }
    if new.webhooks.len() > 5 {
        return Err(ApiError::BadRequest("at most 5 webhooks".into()));
    }
    for h in &new.webhooks {
        ssrf::check_url(&h.url, &s.allow)
            .map_err(|e| ApiError::BadRequest(format!("webhook {}: {e}", h.url)))?;
    }
    Ok(())
}

async fn reload(s: &ApiState) -> Result<(), ApiError> {
    s.notifier
        .reload()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn list_subs(State(s): State<ApiState>, h: HeaderMap) -> Result<Response, ApiError> {
    let a = account(&s, &h).await?;
    Ok(Json(s.notifier.store.list_subscriptions(&a).await?).into_response())
}

async fn create_sub(
    State(s): State<ApiState>,
    h: HeaderMap,
    Json(new): Json<NewSubscription>,
) -> Result<Response, ApiError> {
    let a = account(&s, &h).await?;
    validate(&s, &a, &new).await?;
    let sub = s
        .notifier
        .store
        .create_subscription(&a, &new, s.notifier.clock.now())
        .await?;
    reload(&s).await?;
    Ok((StatusCode::CREATED, Json(sub)).into_response())
}

async fn get_sub(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let a = account(&s, &h).await?;
    let sub = s
        .notifier
        .store
        .get_subscription(&a, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(sub).into_response())
}

async fn put_sub(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<i64>,
    Json(new): Json<NewSubscription>,
) -> Result<Response, ApiError> {
    let a = account(&s, &h).await?;
    validate(&s, &a, &new).await?;
    let sub = s
        .notifier
        .store
        .update_subscription(&a, id, &new, s.notifier.clock.now())
        .await?
        .ok_or(ApiError::NotFound)?;
    reload(&s).await?;
    Ok(Json(sub).into_response())
}

async fn delete_sub(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let a = account(&s, &h).await?;
    if !s.notifier.store.delete_subscription(&a, id).await? {
        return Err(ApiError::NotFound);
    }
    reload(&s).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Sends a test notification through every channel of the subscription (history, WebSocket,
/// webhooks), keyed by the current millisecond so each test is its own delivery.
async fn test_sub(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let a = account(&s, &h).await?;
    let sub = s
        .notifier
        .store
        .get_subscription(&a, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let now = s.notifier.clock.now();
    let subject = now.timestamp_millis();
    let summary = json!({ "kind": "test", "subscription": sub.name, "time": now });
    let key = format!("{id}/test/{subject}");
    let m = NewMatch {
        subscription_id: id,
        account_id: a.clone(),
        kind: "test",
        subject_id: subject,
        summary: summary.clone(),
        discord_body: json!({
            "username": "BattleScope", "allowed_mentions": { "parse": [] },
            "content": format!("Test notification for subscription \u{201c}{}\u{201d} ({key})", sub.name.chars().take(100).collect::<String>()),
        }),
        json_body: crate::domain::payload::generic(&summary, id, &key),
    };
    let fresh = s.notifier.store.record_matches(&[m], now).await?;
    for n in &fresh {
        if sub.websocket {
            let msg: Message = json!({ "type": "notification", "notification": n })
                .to_string()
                .into();
            s.notifier.hub.publish(&a, &msg);
        }
    }
    s.notifier.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "queued": fresh.len() }))).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
}

async fn list_notes(
    State(s): State<ApiState>,
    h: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let a = account(&s, &h).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    Ok(Json(s.notifier.store.list_notifications(&a, limit).await?).into_response())
}

async fn read_one(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let a = account(&s, &h).await?;
    if !s
        .notifier
        .store
        .mark_read(&a, id, s.notifier.clock.now())
        .await?
    {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn read_all(State(s): State<ApiState>, h: HeaderMap) -> Result<Response, ApiError> {
    let a = account(&s, &h).await?;
    let n = s
        .notifier
        .store
        .mark_all_read(&a, s.notifier.clock.now())
        .await?;
    Ok(Json(json!({ "marked": n })).into_response())
}

#[derive(Deserialize)]
struct NewWatchlist {
    name: String,
    #[serde(flatten)]
    members: WatchlistSet,
}

async fn list_watch(State(s): State<ApiState>, h: HeaderMap) -> Result<Response, ApiError> {
    let a = account(&s, &h).await?;
    Ok(Json(s.notifier.store.list_watchlists(&a).await?).into_response())
}

async fn create_watch(
    State(s): State<ApiState>,
    h: HeaderMap,
    Json(w): Json<NewWatchlist>,
) -> Result<Response, ApiError> {
    let a = account(&s, &h).await?;
    let size = w.members.characters.len()
        + w.members.corporations.len()
        + w.members.alliances.len()
        + w.members.systems.len();
    if w.name.trim().is_empty() || size > 10_000 {
        return Err(ApiError::BadRequest(
            "a watchlist needs a name and at most 10000 members".into(),
        ));
    }
    let list = s
        .notifier
        .store
        .create_watchlist(&a, &w.name, &w.members, s.notifier.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(list)).into_response())
}

async fn delete_watch(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let a = account(&s, &h).await?;
    if !s.notifier.store.delete_watchlist(&a, id).await? {
        return Err(ApiError::NotFound);
    }
    reload(&s).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn dead_letters(State(s): State<ApiState>, h: HeaderMap) -> Result<Response, ApiError> {
    let a = account(&s, &h).await?;
    Ok(Json(s.notifier.store.dead_letters(&a).await?).into_response())
}

/// `scheme://host[:port]` of a URL, as browsers send it in `Origin`.
fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    Some(u.origin().ascii_serialization())
}

async fn ws_user(
    State(s): State<ApiState>,
    h: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if let Some(origin) = h.get(axum::http::header::ORIGIN) {
        let ok = origin
            .to_str()
            .ok()
            .zip(origin_of(&s.public_url))
            .is_some_and(|(o, want)| o.trim_end_matches('/') == want);
        if !ok {
            return Err(ApiError::Forbidden("origin".into()));
        }
    }
    let a = account(&s, &h).await?;
    let hub = Arc::clone(&s.notifier.hub);
    let (id, rx) = hub.join(&a, QUEUE);
    Ok(small_buffers(upgrade).on_upgrade(move |socket| async move {
        pump(socket, rx, &hub).await;
        hub.leave(&a, id);
    }))
}

#[derive(Deserialize)]
struct PublicQuery {
    /// A filter (JSON) applied to the public feed.
    filter: Option<String>,
}

async fn ws_public(
    State(s): State<ApiState>,
    Query(q): Query<PublicQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if !s.notifier.settings.public_feed {
        return Err(ApiError::NotFound);
    }
    let compiled = public_filter(&s, q.filter.as_deref())?;
    let hub = Arc::clone(&s.notifier.hub);
    let (id, rx) = hub.join_public(compiled, QUEUE);
    Ok(small_buffers(upgrade).on_upgrade(move |socket| async move {
        pump(socket, rx, &hub).await;
        hub.leave_public(id);
    }))
}

/// Compiles a public feed filter (JSON text). Anonymous: no watchlists.
fn public_filter(
    s: &ApiState,
    raw: Option<&str>,
) -> Result<Option<Arc<crate::domain::Compiled>>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(None);
    };
    let f: filter::Filter =
        serde_json::from_str(raw).map_err(|e| ApiError::BadRequest(format!("filter: {e}")))?;
    Ok(Some(Arc::new(
        filter::compile(&f, &*s.notifier.geo, &HashMap::new())
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
    )))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RelayOpen {
    /// The anonymous public feed instead of the caller's stream.
    public: bool,
    /// The public feed's filter (a JSON filter object).
    filter: Option<filter::Filter>,
}

/// Opens a relay: the caller's stream (cookie, like `/ws`) or the public feed. The BFF
/// checks the browser's `Origin` before it gets here.
async fn relay_open(
    State(s): State<ApiState>,
    h: HeaderMap,
    body: Option<Json<RelayOpen>>,
) -> Result<Response, ApiError> {
    let open = body.map(|Json(b)| b).unwrap_or_default();
    let token = if open.public {
        if !s.notifier.settings.public_feed {
            return Err(ApiError::NotFound);
        }
        let raw = open
            .filter
            .map(|f| serde_json::to_string(&f).unwrap_or_default());
        let compiled = public_filter(&s, raw.as_deref())?;
        s.relays.open_public(compiled, QUEUE)
    } else {
        let a = account(&s, &h).await?;
        s.relays.open_account(&a, QUEUE)
    };
    Ok((StatusCode::CREATED, Json(json!({ "token": token }))).into_response())
}

#[derive(Deserialize)]
struct PollQuery {
    wait_ms: Option<u64>,
}

/// Up to `wait_ms` (≤ 8 s) for messages: `{"messages": ["<json>", …], "closed": bool}`.
async fn relay_poll(
    State(s): State<ApiState>,
    Path(token): Path<String>,
    Query(q): Query<PollQuery>,
) -> Response {
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(5_000));
    let batch = s.relays.poll(&token, wait).await;
    let messages: Vec<&str> = batch.messages.iter().map(AsRef::as_ref).collect();
    Json(json!({ "messages": messages, "closed": batch.closed })).into_response()
}

async fn relay_close(State(s): State<ApiState>, Path(token): Path<String>) -> Response {
    s.relays.close(&token);
    StatusCode::NO_CONTENT.into_response()
}

/// Clients only send control frames, so the default 128 KiB read buffer per connection
/// would be almost all of a connection's memory; small buffers keep 10k sockets cheap.
fn small_buffers(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
}

/// How long one socket write may stall before the socket is closed. The timer is only
/// registered when a write does not complete at once, so the fast path pays nothing for it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Moves hub messages to the socket until either side ends. The hub closing our channel
/// means we were too slow: we say so (1013, try again later) and close.
/// Each socket has its own pump task, so one killmail's N writes run on every worker thread
/// at once; the text handed to the socket is the hub's shared bytes (no copy per client).
async fn pump(
    mut socket: WebSocket,
    mut rx: tokio::sync::mpsc::Receiver<Message>,
    hub: &crate::Hub,
) {
    let mut ping = tokio::time::interval(Duration::from_secs(30));
    ping.tick().await;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => {
                    // A write that cannot finish is a reader that stopped reading: the hub
                    // drops it once its queue is full, and this ends its socket.
                    match tokio::time::timeout(WRITE_TIMEOUT, socket.send(WsMessage::Text(m.text()))).await {
                        Ok(Ok(())) => hub.wrote(),
                        Ok(Err(_)) | Err(_) => break,
                    }
                }
                None => {
                    let _ = socket.send(WsMessage::Close(Some(CloseFrame { code: 1013, reason: "too slow".into() }))).await;
                    break;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(WsMessage::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
}
