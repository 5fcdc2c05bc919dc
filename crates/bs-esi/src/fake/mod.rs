//! `FakeEsi`: a local ESI that speaks the real protocol, for tests in every crate.
//!
//! It binds `127.0.0.1:0`, serves the routes BattleScope uses from real data
//! ([`FakeData`]), emits ESI's headers (`ETag`, `Expires`, `Last-Modified`,
//! `X-Ratelimit-*` on floating-window routes, `X-ESI-Error-Limit-*` on the others),
//! answers `304` to a matching `If-None-Match`, and enforces both limit regimes the
//! way ESI does: a floating token window per group (2xx = 2, 3xx = 1, 4xx = 5, 5xx = 0;
//! `429` + `Retry-After` when a success no longer fits) and a fixed error window
//! (`420` on every route once the non-2xx/3xx count reaches the limit).
//!
//! Faults are switched at run time through the handle: [`FakeEsi::set_down`] (503
//! "tranquility temporarily unavailable"), [`FakeEsi::fail_next`] (5xx bursts),
//! [`FakeEsi::throttle_next`] (429 without headers, as deep server code does),
//! [`FakeEsi::set_latency`], [`FakeEsi::spend_tokens`]/[`FakeEsi::spend_errors`] (other
//! clients on the same IP) and [`FakeSettings::overstate_remaining`]. Requests missing
//! `User-Agent` or `X-Compatibility-Date` get a 400 and are counted, so tests notice.
//!
//! [`FakeEsi::stats`] gives per-endpoint counters and the limit violations tests assert
//! on. The server stops when the handle is dropped.

mod data;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use data::{DataPaths, FakeData, FakeKillmail, FakeName};

use crate::limits::{is_error_status, token_cost};

/// Limits and cache behaviour of a fake. `Default` is ESI's production numbers.
#[derive(Clone, Debug)]
pub struct FakeSettings {
    /// Errors allowed per fixed window before 420 (ESI: 100).
    pub error_limit: u32,
    /// ESI: 60 s.
    pub error_window: Duration,
    /// Tokens per floating-window group (ESI 2026-08-18: killmail 3600, status 600).
    pub group_limits: BTreeMap<String, u32>,
    /// ESI: 15 min for every current group.
    pub rate_window: Duration,
    /// Overrides every route's cache lifetime; `Some(ZERO)` makes every response
    /// stale at once, so the next request revalidates with `If-None-Match`.
    pub cache_ttl: Option<Duration>,
    /// Report a `X-Ratelimit-Remaining` of the full limit whatever was used (a
    /// misbehaving header); enforcement still uses the true count.
    pub overstate_remaining: bool,
}

impl Default for FakeSettings {
    fn default() -> Self {
        Self {
            error_limit: 100,
            error_window: Duration::from_secs(60),
            group_limits: [("killmail".to_owned(), 3600), ("status".to_owned(), 600)]
                .into_iter()
                .collect(),
            rate_window: Duration::from_secs(15 * 60),
            cache_ttl: None,
            overstate_remaining: false,
        }
    }
}

/// Counters a test asserts on.
#[derive(Clone, Debug, Default)]
pub struct FakeStats {
    /// Requests received per endpoint (`killmail`, `universe_names`, …, `unknown`).
    pub requests: BTreeMap<String, u64>,
    /// Responses per (endpoint, status).
    pub responses: BTreeMap<(String, u16), u64>,
    /// 429s the floating window produced (not the injected ones).
    pub rate_limited: u64,
    /// 420s the error window produced.
    pub error_limited: u64,
    /// Requests without `User-Agent` or without a valid, non-future `X-Compatibility-Date`.
    pub missing_headers: u64,
    /// The lowest error budget left in any window.
    pub min_error_remain: u32,
    /// The most tokens ever in use per group.
    pub max_tokens_used: BTreeMap<String, u32>,
}

impl FakeStats {
    /// Requests received for `endpoint`.
    pub fn requests(&self, endpoint: &str) -> u64 {
        self.requests.get(endpoint).copied().unwrap_or(0)
    }

    /// Responses with `status` for `endpoint`.
    pub fn responses(&self, endpoint: &str, status: u16) -> u64 {
        self.responses
            .get(&(endpoint.to_owned(), status))
            .copied()
            .unwrap_or(0)
    }
}

#[derive(Debug)]
struct Window {
    spent: VecDeque<(Instant, u32)>,
}

#[derive(Debug)]
struct Mutable {
    settings: FakeSettings,
    down: bool,
    latency: Duration,
    fail_next: VecDeque<u16>,
    throttle_next: u32,
    error_window_start: Instant,
    errors_in_window: u32,
    groups: HashMap<String, Window>,
    stats: FakeStats,
}

#[derive(Debug)]
struct Shared {
    data: Arc<FakeData>,
    started: DateTime<Utc>,
    state: Mutex<Mutable>,
}

/// A running fake ESI; dropping it stops the server.
#[derive(Debug)]
pub struct FakeEsi {
    url: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl FakeEsi {
    /// Starts a fake with ESI's production limits on the shared default data.
    pub async fn start() -> Result<Self, String> {
        Self::start_with(FakeSettings::default(), FakeData::shared()?).await
    }

    /// Starts a fake with the given limits and data.
    pub async fn start_with(settings: FakeSettings, data: Arc<FakeData>) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let min_error_remain = settings.error_limit;
        let shared = Arc::new(Shared {
            data,
            started: Utc::now(),
            state: Mutex::new(Mutable {
                settings,
                down: false,
                latency: Duration::ZERO,
                fail_next: VecDeque::new(),
                throttle_next: 0,
                error_window_start: Instant::now(),
                errors_in_window: 0,
                groups: HashMap::new(),
                stats: FakeStats {
                    min_error_remain,
                    ..FakeStats::default()
                },
            }),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "fake esi stopped");
            }
        });
        Ok(Self {
            url: format!("http://{addr}"),
            shared,
            stop: Some(stop),
            task,
        })
    }

    /// The base URL to put in `EsiConfig::base_url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The data this fake serves.
    pub fn data(&self) -> &FakeData {
        &self.shared.data
    }

    /// While down, every route answers 503 like Tranquility during downtime.
    pub fn set_down(&self, down: bool) {
        self.shared.state.lock().down = down;
    }

    /// Delay before every response.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.state.lock().latency = latency;
    }

    /// The next `count` requests (any route) answer `status` (e.g. 502, 503, 504).
    pub fn fail_next(&self, count: usize, status: u16) {
        self.shared
            .state
            .lock()
            .fail_next
            .extend(std::iter::repeat_n(status, count));
    }

    /// The next `count` requests answer 429 with `Retry-After: 1` and no rate headers.
    pub fn throttle_next(&self, count: u32) {
        self.shared.state.lock().throttle_next += count;
    }

    /// Another client on the same IP spends `tokens` from `group`.
    pub fn spend_tokens(&self, group: &str, tokens: u32) {
        let mut s = self.shared.state.lock();
        s.groups
            .entry(group.to_owned())
            .or_insert_with(|| Window {
                spent: VecDeque::new(),
            })
            .spent
            .push_back((Instant::now(), tokens));
    }

    /// Another client on the same IP produces `errors` errors in the current window.
    pub fn spend_errors(&self, errors: u32) {
        let mut s = self.shared.state.lock();
        s.roll_error_window(Instant::now());
        s.errors_in_window += errors;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> FakeStats {
        self.shared.state.lock().stats.clone()
    }

    /// Stops the server now (the same as dropping the handle).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Keep-alive connections may hold graceful shutdown open; do not wait for them.
        self.task.abort();
    }
}

impl Drop for FakeEsi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

impl Mutable {
    fn roll_error_window(&mut self, now: Instant) {
        let window = self.settings.error_window;
        if now.duration_since(self.error_window_start) >= window {
            // Fixed windows on a grid from the start, like a per-minute counter.
            let elapsed = now.duration_since(self.error_window_start);
            let periods = elapsed.as_nanos() / window.as_nanos().max(1);
            let advance = window.saturating_mul(u32::try_from(periods).unwrap_or(u32::MAX));
            self.error_window_start += advance;
            self.errors_in_window = 0;
        }
    }

    fn error_reset(&self, now: Instant) -> u64 {
        let end = self.error_window_start + self.settings.error_window;
        // Round up so a client never sees "0" while the window is still open.
        end.saturating_duration_since(now)
            .as_millis()
            .div_ceil(1000) as u64
    }

    fn group_used(&mut self, group: &str, now: Instant) -> u32 {
        let window = self.settings.rate_window;
        let w = self
            .groups
            .entry(group.to_owned())
            .or_insert_with(|| Window {
                spent: VecDeque::new(),
            });
        while w
            .spent
            .front()
            .is_some_and(|&(at, _)| now.duration_since(at) >= window)
        {
            w.spent.pop_front();
        }
        w.spent.iter().map(|&(_, c)| c).sum()
    }

    /// Seconds until a success (2 tokens) fits in `group` again.
    fn retry_after(&mut self, group: &str, limit: u32, now: Instant) -> u64 {
        let mut used = self.group_used(group, now);
        let window = self.settings.rate_window;
        let Some(w) = self.groups.get(group) else {
            return 1;
        };
        for &(at, cost) in &w.spent {
            used = used.saturating_sub(cost);
            if used + 2 <= limit {
                let wait = (at + window).saturating_duration_since(now);
                return wait.as_millis().div_ceil(1000).max(1) as u64;
            }
        }
        window.as_secs().max(1)
    }
}

/// What a route computed, before limits and headers are applied.
struct Reply {
    status: u16,
    body: Bytes,
    ttl: Duration,
    last_modified: Option<String>,
    /// An injected 429 behaves like deep server code: no rate headers, no token cost.
    injected: bool,
}

impl Reply {
    fn json(status: u16, value: &serde_json::Value, ttl: Duration) -> Self {
        Self {
            status,
            body: Bytes::from(value.to_string()),
            ttl,
            last_modified: None,
            injected: false,
        }
    }

    fn error(status: u16, message: &str) -> Self {
        Self::json(status, &json!({ "error": message }), Duration::ZERO)
    }
}

/// Route name and regime: `Some(group)` for floating-window routes.
fn classify(method: &Method, segments: &[&str]) -> (&'static str, Option<&'static str>) {
    match (method.as_str(), segments) {
        ("GET", ["killmails", _, _]) => ("killmail", Some("killmail")),
        ("GET", ["status"]) => ("status", Some("status")),
        ("POST", ["universe", "names"]) => ("universe_names", None),
        ("GET", ["universe", "types", _]) => ("universe_type", None),
        ("GET", ["universe", "systems", _]) => ("universe_system", None),
        ("GET", ["corporations", _]) => ("corporation", None),
        ("GET", ["alliances", _]) => ("alliance", None),
        ("POST", ["characters", "affiliation"]) => ("character_affiliation", None),
        ("GET", ["markets", "prices"]) => ("markets_prices", None),
        _ => ("unknown", None),
    }
}

fn segments(path: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Old clients use versioned prefixes (`/latest/…/`, `/v1/…/`); serve both forms.
    if parts.first().is_some_and(|p| {
        matches!(*p, "latest" | "legacy" | "dev")
            || (p.starts_with('v') && p[1..].parse::<u32>().is_ok())
    }) {
        parts.remove(0);
    }
    parts
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segs = segments(uri.path());
    let (endpoint, group) = classify(&method, &segs);
    let latency = {
        let mut s = shared.state.lock();
        *s.stats.requests.entry(endpoint.to_owned()).or_default() += 1;
        s.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let now = Instant::now();
    let has_agent = headers.get("user-agent").is_some_and(|v| !v.is_empty());
    // ESI rejects dates in the future (and below its minimum); an absent date would
    // silently get the oldest behaviour, which a test must notice.
    let date_ok = headers
        .get("x-compatibility-date")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
        .is_some_and(|d| d <= Utc::now().date_naive());
    let missing = !has_agent || !date_ok;

    // Limits and faults first, under one lock; then the route (pure lookups).
    let pre = {
        let mut s = shared.state.lock();
        s.roll_error_window(now);
        let limit = group.and_then(|g| s.settings.group_limits.get(g).copied());
        if missing {
            s.stats.missing_headers += 1;
            Some(Reply::error(
                400,
                "a User-Agent and a valid X-Compatibility-Date are required",
            ))
        } else if s.errors_in_window >= s.settings.error_limit {
            s.stats.error_limited += 1;
            Some(Reply::error(
                420,
                "This software has exceeded the error limit for ESI. If you are a user, please contact the maker of this software. If you are the developer, please look into how you are handling errors.",
            ))
        } else if s.down {
            Some(Reply::error(
                503,
                "The datasource tranquility is temporarily unavailable",
            ))
        } else if let (Some(g), Some(limit)) = (group, limit) {
            if s.group_used(g, now) + 2 > limit {
                s.stats.rate_limited += 1;
                let retry = s.retry_after(g, limit, now);
                let mut reply = Reply::error(429, "Too many requests");
                reply.ttl = Duration::from_secs(retry);
                Some(reply)
            } else {
                s.fault()
            }
        } else {
            s.fault()
        }
    };
    let reply = match pre {
        Some(r) => r,
        None => route(&shared, endpoint, &segs, &body),
    };
    finish(&shared, endpoint, group, &headers, reply, now)
}

impl Mutable {
    fn fault(&mut self) -> Option<Reply> {
        if let Some(status) = self.fail_next.pop_front() {
            let message = match status {
                504 => "Timeout contacting tranquility",
                503 => "The datasource tranquility is temporarily unavailable",
                _ => "Internal error",
            };
            return Some(Reply::error(status, message));
        }
        if self.throttle_next > 0 {
            self.throttle_next -= 1;
            let mut reply = Reply::error(429, "Too many requests");
            reply.ttl = Duration::from_secs(1);
            reply.injected = true;
            return Some(reply);
        }
        None
    }
}

fn finish(
    shared: &Shared,
    endpoint: &str,
    group: Option<&'static str>,
    request: &HeaderMap,
    reply: Reply,
    now: Instant,
) -> Response {
    let wall = Utc::now();
    let injected_429 = reply.injected;
    let etag = format!("\"{:016x}\"", {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        reply.body.hash(&mut h);
        h.finish()
    });
    let not_modified = reply.status == 200
        && request
            .get("if-none-match")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let status = if not_modified { 304 } else { reply.status };

    let mut out = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.insert(name, v);
        }
    };
    {
        let mut s = shared.state.lock();
        *s.stats
            .responses
            .entry((endpoint.to_owned(), status))
            .or_default() += 1;
        let limit = group.and_then(|g| s.settings.group_limits.get(g).copied());
        match (group, limit) {
            (Some(g), Some(limit)) if !injected_429 => {
                let cost = token_cost(status);
                if cost > 0 {
                    s.groups
                        .entry(g.to_owned())
                        .or_insert_with(|| Window {
                            spent: VecDeque::new(),
                        })
                        .spent
                        .push_back((now, cost));
                }
                let used = s.group_used(g, now);
                let max = s.stats.max_tokens_used.entry(g.to_owned()).or_default();
                *max = (*max).max(used);
                let remaining = if s.settings.overstate_remaining {
                    limit
                } else {
                    limit.saturating_sub(used)
                };
                put("x-ratelimit-group", g.to_owned());
                put(
                    "x-ratelimit-limit",
                    format!("{limit}/{}", window_label(s.settings.rate_window)),
                );
                put("x-ratelimit-remaining", remaining.to_string());
                put("x-ratelimit-used", used.to_string());
            }
            (Some(_), Some(_)) => {}
            _ => {
                // 420s themselves do not count again; everything else non-2xx/3xx does.
                if is_error_status(status) && status != 420 {
                    s.errors_in_window += 1;
                }
                let remain = s.settings.error_limit.saturating_sub(s.errors_in_window);
                s.stats.min_error_remain = s.stats.min_error_remain.min(remain);
                if !injected_429 {
                    put("x-esi-error-limit-remain", remain.to_string());
                    put("x-esi-error-limit-reset", s.error_reset(now).to_string());
                }
            }
        }
    }
    if status == 429 {
        put("retry-after", reply.ttl.as_secs().max(1).to_string());
    }
    if status == 200 || status == 304 {
        let expires = wall + chrono::Duration::from_std(reply.ttl).unwrap_or_default();
        put("etag", etag);
        put("expires", http_date(expires));
        put(
            "cache-control",
            format!("public, max-age={}", reply.ttl.as_secs()),
        );
        let modified = reply
            .last_modified
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map_or(shared.started, |d| d.with_timezone(&Utc));
        put("last-modified", http_date(modified));
    }
    put("content-type", "application/json; charset=utf-8".to_owned());
    let body = if status == 304 {
        Body::empty()
    } else {
        Body::from(reply.body)
    };
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *response.headers_mut() = out;
    response
}

fn window_label(window: Duration) -> String {
    let secs = window.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn route(shared: &Shared, endpoint: &str, segs: &[&str], body: &[u8]) -> Reply {
    let data = &*shared.data;
    let ttl_override = shared.state.lock().settings.cache_ttl;
    let id = |i: usize| segs.get(i).and_then(|s| s.parse::<i64>().ok());
    let mut reply = match endpoint {
        "killmail" => match (id(1), segs.get(2)) {
            (Some(kid), Some(hash)) => match data.killmail(kid).filter(|k| k.hash == *hash) {
                Some(k) => Reply {
                    status: 200,
                    body: k.body.clone(),
                    // Killmails are immutable; ESI caches them for a month.
                    ttl: DAY * 30,
                    last_modified: k.last_modified.clone(),
                    injected: false,
                },
                None => Reply::error(422, "Invalid killmail_id and/or killmail_hash"),
            },
            _ => Reply::error(422, "Invalid killmail_id and/or killmail_hash"),
        },
        "universe_names" => bulk(body, |ids| {
            let rows: Option<Vec<serde_json::Value>> = ids
                .iter()
                .map(|i| {
                    data.name(*i).map(|n| {
                        json!({ "id": i, "name": n.name, "category": category_str(n.category) })
                    })
                })
                .collect();
            rows.map_or_else(
                || Reply::error(404, "Ensure all IDs are valid before resolving."),
                |rows| Reply::json(200, &json!(rows), HOUR),
            )
        }),
        "character_affiliation" => bulk(body, |ids| {
            let rows: Option<Vec<serde_json::Value>> = ids
                .iter()
                .map(|i| {
                    data.affiliations.get(i).map(|a| {
                        let mut row =
                            json!({ "character_id": i, "corporation_id": a.corporation_id });
                        if let Some(x) = a.alliance_id {
                            row["alliance_id"] = json!(x);
                        }
                        if let Some(x) = a.faction_id {
                            row["faction_id"] = json!(x);
                        }
                        row
                    })
                })
                .collect();
            // Assumed like /universe/names: "all characters must exist, or none will be returned".
            rows.map_or_else(
                || Reply::error(404, "Invalid character ID"),
                |rows| Reply::json(200, &json!(rows), HOUR),
            )
        }),
        "universe_type" => match id(2).and_then(|i| data.types.get(&i).map(|t| (i, t))) {
            Some((i, t)) => Reply::json(
                200,
                &json!({ "type_id": i, "name": t.name, "group_id": t.group_id, "published": t.published, "description": "" }),
                DAY,
            ),
            None => Reply::error(404, "Type not found"),
        },
        "universe_system" => match id(2).and_then(|i| data.systems.get(&i).map(|t| (i, t))) {
            Some((i, s)) => {
                let mut row = json!({
                    "system_id": i,
                    "name": s.name,
                    "constellation_id": s.constellation_id,
                    "security_status": s.security_status,
                });
                if let Some(class) = &s.security_class {
                    row["security_class"] = json!(class);
                }
                Reply::json(200, &row, DAY)
            }
            None => Reply::error(404, "Solar system not found"),
        },
        "corporation" => match id(1).and_then(|i| data.corporations.get(&i)) {
            Some(c) => {
                let mut row = json!({ "name": c.name, "ticker": c.ticker });
                if let Some(a) = c.alliance_id {
                    row["alliance_id"] = json!(a);
                }
                Reply::json(200, &row, HOUR)
            }
            None => Reply::error(404, "Corporation not found"),
        },
        "alliance" => match id(1).and_then(|i| data.alliances.get(&i)) {
            Some(a) => Reply::json(200, &json!({ "name": a.name, "ticker": a.ticker }), HOUR),
            None => Reply::error(404, "Alliance not found"),
        },
        "markets_prices" => Reply {
            status: 200,
            body: data.prices.clone(),
            ttl: HOUR,
            last_modified: None,
            injected: false,
        },
        "status" => Reply::json(
            200,
            // Synthetic: the fake has no server; the version says so.
            &json!({
                "players": 0,
                "server_version": "fake-esi",
                "start_time": shared.started.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "vip": false,
            }),
            Duration::from_secs(30),
        ),
        _ => Reply::error(404, "Not found"),
    };
    if reply.status == 200
        && let Some(ttl) = ttl_override
    {
        reply.ttl = ttl;
    }
    reply
}

/// Validates a bulk id body like ESI (`minItems` 1, `maxItems` 1000, `uniqueItems`).
fn bulk(body: &[u8], resolve: impl FnOnce(&[i64]) -> Reply) -> Reply {
    let Ok(ids) = serde_json::from_slice::<Vec<i64>>(body) else {
        return Reply::error(400, "body must be a JSON array of integers");
    };
    if ids.is_empty() || ids.len() > crate::MAX_IDS_PER_CALL {
        return Reply::error(400, "between 1 and 1000 ids are allowed");
    }
    if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
        return Reply::error(400, "ids must be unique");
    }
    resolve(&ids)
}

fn category_str(c: crate::NameCategory) -> &'static str {
    use crate::NameCategory as C;
    match c {
        C::Alliance => "alliance",
        C::Character => "character",
        C::Constellation => "constellation",
        C::Corporation => "corporation",
        C::InventoryType => "inventory_type",
        C::Region => "region",
        C::SolarSystem => "solar_system",
        C::Station => "station",
        C::Faction => "faction",
        C::Other => "other",
    }
}
