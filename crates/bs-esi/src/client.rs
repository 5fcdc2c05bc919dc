//! `EsiClient`: the HTTP side — request building, waiting on the budget, retries,
//! conditional requests, metrics — and the typed endpoint methods.
//!
//! Every request goes through [`EsiClient::execute`], in this order: downtime pause,
//! fresh-cache short cut, concurrency permit, budget ticket (may wait up to
//! `max_wait`), send, record headers into the budget, then decide: return, retry with
//! jittered backoff (safe requests and retryable statuses only) or fail.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, Semaphore};

use crate::cache::{Entry, ResponseCache};
use crate::limits::{Budget, Decision, ErrorHeaders, Observed, RateHeaders, Ticket, WaitReason};
use crate::types::{
    Affiliation, Alliance, BulkLookup, Corporation, EntityName, MarketPrice, ServerStatus,
    SystemInfo, TypeInfo,
};
use crate::{EsiConfig, EsiError};

/// ESI's documented maximum ids per `/universe/names` and `/characters/affiliation` call.
pub const MAX_IDS_PER_CALL: usize = 1000;

/// A failed batch is split this many ways. Errors (100/min for the whole IP) are the
/// scarce resource, calls are not: a 4-way split isolates one bad id in 1000 with
/// 6 failing calls where halving needs 11, for about the same number of calls.
const SPLIT_WAYS: usize = 4;

/// 1000 ids split 4 ways reach one id in 5 steps; deeper means something else is wrong.
const MAX_BISECT_DEPTH: u32 = 8;

/// Metric names (Prometheus style), kept in one place.
pub mod metric {
    /// Counter, labels `endpoint`, `status` (`transport` when no response arrived).
    pub const REQUESTS: &str = "esi_requests_total";
    /// Gauge: the last known `X-ESI-Error-Limit-Remain`.
    pub const ERROR_LIMIT_REMAINING: &str = "esi_error_limit_remaining";
    /// Counter, label `reason` (`rate_limit`, `error_budget`, `in_flight`): calls that had to wait.
    pub const RATE_LIMIT_WAITS: &str = "esi_rate_limit_waits_total";
    /// Counter, label `endpoint`: retries after 5xx/transport errors.
    pub const RETRIES: &str = "esi_retries_total";
    /// Counter, labels `endpoint`, `kind` (`fresh`, `revalidated`).
    pub const CACHE_HITS: &str = "esi_cache_hits_total";
}

/// A cheap-to-clone handle; clones share budget, cache and concurrency limit.
#[derive(Clone, Debug)]
pub struct EsiClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    config: EsiConfig,
    base: String,
    compat: HeaderValue,
    budget: Mutex<Budget>,
    /// Wakes waiters whenever a response changes the budget.
    budget_changed: Notify,
    cache: Mutex<ResponseCache>,
    permits: Semaphore,
    /// Identical GETs in flight share one request (and one result, errors included),
    /// so a burst of lookups for one corporation costs one call, not N.
    in_flight: Mutex<HashMap<String, SharedResult>>,
}

type SharedResult = Shared<BoxFuture<'static, Result<Bytes, EsiError>>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

struct Request {
    endpoint: &'static str,
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    /// Safe to send twice. All routes here only read; the bulk POSTs are queries.
    idempotent: bool,
    cacheable: bool,
}

impl EsiClient {
    /// Builds the client; fails only on an unusable configuration.
    pub fn new(config: EsiConfig) -> Result<Self, EsiError> {
        if config.user_agent.trim().is_empty() {
            return Err(EsiError::Config("user agent must identify the app".into()));
        }
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| EsiError::Config(e.to_string()))?;
        let compat = HeaderValue::from_str(&config.compatibility_date)
            .map_err(|e| EsiError::Config(format!("compatibility date: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: config.base_url.trim_end_matches('/').to_owned(),
                compat,
                budget: Mutex::new(Budget::new(
                    config.error_budget_margin,
                    config.rate_limit_margin,
                )),
                budget_changed: Notify::new(),
                cache: Mutex::new(ResponseCache::new(config.cache_capacity)),
                permits: Semaphore::new(config.max_concurrency.max(1)),
                in_flight: Mutex::new(HashMap::new()),
                config,
            }),
        })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The error budget ESI last reported for the current window (`None`: unknown/full).
    pub fn error_budget_remaining(&self) -> Option<u32> {
        self.inner.budget.lock().error_remain(Instant::now())
    }

    /// `GET /killmails/{id}/{hash}`: the verbatim ESI body.
    pub async fn killmail_raw(&self, killmail_id: i64, hash: &str) -> Result<Bytes, EsiError> {
        // A malformed pair would cost 5 tokens for a certain 422; refuse it locally.
        if killmail_id <= 0 || hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(EsiError::NotFound);
        }
        self.execute_shared(Request::get(
            "killmail",
            format!("/killmails/{killmail_id}/{hash}"),
        ))
        .await
    }

    /// `GET /killmails/{id}/{hash}` decoded into the caller's type.
    pub async fn killmail<T: DeserializeOwned>(
        &self,
        killmail_id: i64,
        hash: &str,
    ) -> Result<T, EsiError> {
        decode(&self.killmail_raw(killmail_id, hash).await?)
    }

    /// `POST /universe/names` for any number of ids: deduplicated, chunked by 1000,
    /// failed chunks split 4 ways, recursively, to isolate unknown ids.
    pub async fn names(&self, ids: &[i64]) -> BulkLookup<EntityName> {
        self.bulk("universe_names", "/universe/names", ids).await
    }

    /// `POST /characters/affiliation` for any number of characters, like [`Self::names`].
    pub async fn affiliations(&self, character_ids: &[i64]) -> BulkLookup<Affiliation> {
        self.bulk(
            "character_affiliation",
            "/characters/affiliation",
            character_ids,
        )
        .await
    }

    /// `GET /universe/types/{id}`.
    pub async fn type_info(&self, type_id: i64) -> Result<TypeInfo, EsiError> {
        self.get_json("universe_type", format!("/universe/types/{type_id}"))
            .await
    }

    /// `GET /universe/systems/{id}`.
    pub async fn system(&self, system_id: i64) -> Result<SystemInfo, EsiError> {
        self.get_json("universe_system", format!("/universe/systems/{system_id}"))
            .await
    }

    /// `GET /corporations/{id}`.
    pub async fn corporation(&self, corporation_id: i64) -> Result<Corporation, EsiError> {
        self.get_json("corporation", format!("/corporations/{corporation_id}"))
            .await
    }

    /// `GET /alliances/{id}`.
    pub async fn alliance(&self, alliance_id: i64) -> Result<Alliance, EsiError> {
        self.get_json("alliance", format!("/alliances/{alliance_id}"))
            .await
    }

    /// `GET /markets/prices`: every type's average and adjusted price.
    pub async fn market_prices(&self) -> Result<Vec<MarketPrice>, EsiError> {
        self.get_json("markets_prices", "/markets/prices".to_owned())
            .await
    }

    /// `GET /status`: used to detect the end of downtime.
    pub async fn status(&self) -> Result<ServerStatus, EsiError> {
        self.get_json("status", "/status".to_owned()).await
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: String,
    ) -> Result<T, EsiError> {
        decode(&self.execute_shared(Request::get(endpoint, path)).await?)
    }

    async fn bulk<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        ids: &[i64],
    ) -> BulkLookup<T> {
        let mut out = BulkLookup::default();
        let unique: BTreeSet<i64> = ids.iter().copied().collect();
        // Non-positive ids cannot exist; asking would fail a whole chunk.
        let (valid, invalid): (Vec<i64>, Vec<i64>) = unique.into_iter().partition(|&id| id > 0);
        out.unknown = invalid;
        let mut stack: Vec<(Vec<i64>, u32)> = valid
            .chunks(MAX_IDS_PER_CALL)
            .rev()
            .map(|c| (c.to_vec(), 0))
            .collect();
        while let Some((chunk, depth)) = stack.pop() {
            let body = serde_json::to_vec(&chunk).unwrap_or_default();
            let request = Request {
                endpoint,
                method: Method::Post,
                path: path.to_owned(),
                body: Some(body),
                idempotent: true,
                cacheable: false,
            };
            match self
                .execute(request)
                .await
                .and_then(|b| decode::<Vec<T>>(&b))
            {
                Ok(found) => out.found.extend(found),
                Err(EsiError::NotFound) if chunk.len() == 1 => out.unknown.extend(chunk),
                Err(EsiError::NotFound) if depth < MAX_BISECT_DEPTH => {
                    let part = chunk.len().div_ceil(SPLIT_WAYS);
                    for piece in chunk.chunks(part).rev() {
                        stack.push((piece.to_vec(), depth + 1));
                    }
                }
                Err(e) => {
                    out.deferred.extend(chunk);
                    // ESI said wait (or is failing): stop spending budget on this call.
                    if e.is_transient() {
                        out.deferred.extend(stack.drain(..).flat_map(|(c, _)| c));
                    }
                    out.error = Some(e);
                }
            }
        }
        out.unknown.sort_unstable();
        out.deferred.sort_unstable();
        out
    }

    /// [`Self::execute`], coalescing concurrent identical GETs.
    async fn execute_shared(&self, req: Request) -> Result<Bytes, EsiError> {
        if req.method != Method::Get {
            return self.execute(req).await;
        }
        let key = req.path.clone();
        let shared = {
            let mut in_flight = self.inner.in_flight.lock();
            if let Some(existing) = in_flight.get(&key) {
                existing.clone()
            } else {
                let this = self.clone();
                let done_key = key.clone();
                // A task, so the request completes (and leaves the map) even when
                // every caller gives up waiting.
                let task = tokio::spawn(async move {
                    let result = this.execute(req).await;
                    this.inner.in_flight.lock().remove(&done_key);
                    result
                });
                let fut = async move {
                    task.await
                        .unwrap_or_else(|e| Err(EsiError::Transport(format!("request task: {e}"))))
                }
                .boxed()
                .shared();
                in_flight.insert(key, fut.clone());
                fut
            }
        };
        shared.await
    }

    async fn execute(&self, req: Request) -> Result<Bytes, EsiError> {
        let inner = &*self.inner;
        let wall = inner.config.clock.now_utc();
        if let Some(until) = inner
            .config
            .downtime
            .as_ref()
            .and_then(|d| d.pause_until(wall))
        {
            return Err(EsiError::Downtime { until });
        }
        let cached = if req.cacheable {
            inner.cache.lock().get(&req.path)
        } else {
            None
        };
        if let Some(entry) = cached.as_ref().filter(|e| e.is_fresh(wall)) {
            metrics::counter!(metric::CACHE_HITS, "endpoint" => req.endpoint, "kind" => "fresh")
                .increment(1);
            return Ok(entry.body.clone());
        }
        let _permit = inner
            .permits
            .acquire()
            .await
            .map_err(|e| EsiError::Transport(e.to_string()))?;
        let deadline = Instant::now() + inner.config.max_wait;
        let retry = &inner.config.retry;
        let mut attempt = 0;
        loop {
            let ticket = TicketGuard {
                inner: &self.inner,
                ticket: Some(self.acquire(req.endpoint, deadline).await?),
            };
            let result = self.send(&req, cached.as_ref()).await;
            let seen = match &result {
                Ok((status, headers, _)) => observe(Some(*status), headers),
                Err(_) => Observed::default(),
            };
            ticket.finish(&seen);
            let status_label = seen
                .status
                .map_or_else(|| "transport".to_owned(), |s| s.to_string());
            metrics::counter!(metric::REQUESTS, "endpoint" => req.endpoint, "status" => status_label)
                .increment(1);

            let error = match result {
                Ok((status, headers, body)) => match status {
                    200..=299 => {
                        if req.cacheable {
                            let entry = entry_from(&headers, body.clone(), wall_now(inner));
                            inner.cache.lock().put(&req.path, entry);
                        }
                        return Ok(body);
                    }
                    304 => {
                        let Some(old) = cached else {
                            return Err(EsiError::Upstream {
                                status,
                                message: "304 without a cached body".into(),
                            });
                        };
                        metrics::counter!(metric::CACHE_HITS, "endpoint" => req.endpoint, "kind" => "revalidated")
                            .increment(1);
                        let mut entry = entry_from(&headers, old.body.clone(), wall_now(inner));
                        entry.etag = entry.etag.or(old.etag);
                        entry.last_modified = entry.last_modified.or(old.last_modified);
                        inner.cache.lock().put(&req.path, entry);
                        return Ok(old.body);
                    }
                    404 | 422 => return Err(EsiError::NotFound),
                    420 => {
                        let reset_in = seen.errors.map_or(Duration::from_secs(60), |e| e.reset);
                        return Err(EsiError::ErrorBudgetLow { reset_in });
                    }
                    // Retry-After is honoured by the budget's block on the next acquire.
                    429 => EsiError::RateLimited {
                        group: seen.rate.as_ref().map(|r| r.group.clone()),
                        retry_after: seen.retry_after.unwrap_or(Duration::from_secs(60)),
                    },
                    500 | 502 | 503 | 504 => EsiError::Upstream {
                        status,
                        message: error_message(&body),
                    },
                    _ => {
                        return Err(EsiError::Upstream {
                            status,
                            message: error_message(&body),
                        });
                    }
                },
                Err(e) => e,
            };
            if !req.idempotent || attempt >= retry.max_retries {
                return Err(error);
            }
            attempt += 1;
            metrics::counter!(metric::RETRIES, "endpoint" => req.endpoint).increment(1);
            if !matches!(error, EsiError::RateLimited { .. }) {
                let delay = backoff(retry.base_delay, retry.max_delay, attempt);
                if Instant::now() + delay > deadline {
                    return Err(error);
                }
                tokio::time::sleep(delay).await;
            }
        }
    }

    async fn send(
        &self,
        req: &Request,
        cached: Option<&Entry>,
    ) -> Result<(u16, HeaderMap, Bytes), EsiError> {
        let inner = &*self.inner;
        let url = format!("{}{}", inner.base, req.path);
        let mut builder = match req.method {
            Method::Get => inner.http.get(url),
            Method::Post => inner.http.post(url),
        }
        .header("X-Compatibility-Date", inner.compat.clone())
        .header(reqwest::header::ACCEPT, "application/json");
        if let Some(etag) = cached.and_then(|e| e.etag.as_deref()) {
            builder = builder.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(body) = &req.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = builder
            .send()
            .await
            .map_err(|e| EsiError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| EsiError::Transport(e.to_string()))?;
        Ok((status, headers, body))
    }

    async fn acquire(&self, endpoint: &'static str, deadline: Instant) -> Result<Ticket, EsiError> {
        let inner = &*self.inner;
        let mut counted = false;
        loop {
            // Register interest before looking, so a completion in between is not missed.
            let changed = inner.budget_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = Instant::now();
            let decision = inner.budget.lock().try_acquire(endpoint, now);
            let (wait, reason) = match decision {
                Decision::Go(ticket) => return Ok(ticket),
                Decision::Wait { wait, reason } => (wait, reason),
            };
            let gives_up = match reason {
                WaitReason::InFlight => now >= deadline,
                _ => now + wait > deadline,
            };
            if gives_up {
                return Err(match reason {
                    WaitReason::ErrorBudget => EsiError::ErrorBudgetLow { reset_in: wait },
                    WaitReason::RateLimit { group } => EsiError::RateLimited {
                        group: Some(group),
                        retry_after: wait,
                    },
                    WaitReason::InFlight => EsiError::RateLimited {
                        group: None,
                        retry_after: wait,
                    },
                });
            }
            if !counted {
                counted = true;
                let label = match reason {
                    WaitReason::RateLimit { .. } => "rate_limit",
                    WaitReason::ErrorBudget => "error_budget",
                    WaitReason::InFlight => "in_flight",
                };
                metrics::counter!(metric::RATE_LIMIT_WAITS, "reason" => label).increment(1);
            }
            tokio::select! {
                () = changed.as_mut() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Hands a ticket back to the budget exactly once, also when the caller's future is
/// dropped mid-request (a timeout around a call): otherwise its reservation and
/// in-flight error risk would leak and slowly close the gates.
struct TicketGuard<'a> {
    inner: &'a Inner,
    ticket: Option<Ticket>,
}

impl TicketGuard<'_> {
    fn finish(mut self, seen: &Observed) {
        if let Some(ticket) = self.ticket.take() {
            complete(self.inner, ticket, seen);
        }
    }
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            // Unknown outcome: recorded like a lost response (the pessimistic side).
            complete(self.inner, ticket, &Observed::default());
        }
    }
}

fn complete(inner: &Inner, ticket: Ticket, seen: &Observed) {
    let now = Instant::now();
    let remain = {
        let mut budget = inner.budget.lock();
        budget.complete(ticket, seen, now);
        budget.error_remain(now)
    };
    if let Some(remain) = remain {
        metrics::gauge!(metric::ERROR_LIMIT_REMAINING).set(f64::from(remain));
    }
    inner.budget_changed.notify_waiters();
}

impl Request {
    fn get(endpoint: &'static str, path: String) -> Self {
        Self {
            endpoint,
            method: Method::Get,
            path,
            body: None,
            idempotent: true,
            cacheable: true,
        }
    }
}

fn wall_now(inner: &Inner) -> DateTime<Utc> {
    inner.config.clock.now_utc()
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, EsiError> {
    serde_json::from_slice(body).map_err(|e| EsiError::Decode(e.to_string()))
}

/// Full jitter: uniform in `[0, min(max, base * 2^attempt)]`.
fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(max);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_num<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    header_str(headers, name).and_then(|v| v.trim().parse().ok())
}

/// Extracts everything the budget cares about from response headers.
fn observe(status: Option<u16>, headers: &HeaderMap) -> Observed {
    let rate = header_str(headers, "x-ratelimit-group").and_then(|group| {
        let (limit, window) =
            crate::limits::parse_limit(header_str(headers, "x-ratelimit-limit")?)?;
        Some(RateHeaders {
            group: group.to_owned(),
            limit,
            window,
            remaining: header_num(headers, "x-ratelimit-remaining"),
        })
    });
    let errors = match (
        header_num::<u32>(headers, "x-esi-error-limit-remain"),
        header_num::<u64>(headers, "x-esi-error-limit-reset"),
    ) {
        (Some(remain), Some(reset)) => Some(ErrorHeaders {
            remain,
            reset: Duration::from_secs(reset),
        }),
        _ => None,
    };
    Observed {
        status,
        rate,
        errors,
        retry_after: header_num::<u64>(headers, "retry-after").map(Duration::from_secs),
    }
}

fn entry_from(headers: &HeaderMap, body: Bytes, now: DateTime<Utc>) -> Entry {
    let max_age = header_str(headers, "cache-control").and_then(|cc| {
        cc.split(',')
            .filter_map(|d| d.trim().strip_prefix("max-age="))
            .find_map(|v| v.parse::<i64>().ok())
    });
    let expires = header_str(headers, "expires")
        .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
        .map(|d| d.with_timezone(&Utc))
        .or_else(|| max_age.map(|s| now + chrono::Duration::seconds(s)));
    Entry {
        body,
        etag: header_str(headers, "etag").map(str::to_owned),
        last_modified: header_str(headers, "last-modified").map(str::to_owned),
        expires,
    }
}

/// ESI error bodies are `{"error": "..."}`; fall back to a short prefix of the body.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    serde_json::from_slice::<ErrorBody>(body).map_or_else(
        |_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        |e| e.error,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_below_the_doubling_ceiling() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 0..10 {
            let d = backoff(base, max, attempt);
            assert!(d <= (base * 2u32.pow(attempt)).min(max), "{attempt}: {d:?}");
        }
    }

    #[test]
    fn entry_reads_expires_and_validators() {
        let mut h = HeaderMap::new();
        h.insert("etag", HeaderValue::from_static("\"abc\""));
        h.insert(
            "expires",
            HeaderValue::from_static("Tue, 01 Dec 2026 08:00:00 GMT"),
        );
        let now = DateTime::parse_from_rfc3339("2026-12-01T07:59:00Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default();
        let e = entry_from(&h, Bytes::new(), now);
        assert_eq!(e.etag.as_deref(), Some("\"abc\""));
        assert!(e.is_fresh(now));
        assert!(!e.is_fresh(now + chrono::Duration::seconds(60)));
    }

    #[test]
    fn observe_parses_both_header_families() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-group", HeaderValue::from_static("killmail"));
        h.insert("x-ratelimit-limit", HeaderValue::from_static("3600/15m"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("3598"));
        h.insert("retry-after", HeaderValue::from_static("7"));
        let seen = observe(Some(429), &h);
        let rate = seen.rate.unwrap_or_else(|| panic!("rate headers"));
        assert_eq!(
            (rate.limit, rate.window, rate.remaining),
            (3600, Duration::from_secs(900), Some(3598))
        );
        assert_eq!(seen.retry_after, Some(Duration::from_secs(7)));
        let mut h = HeaderMap::new();
        h.insert("x-esi-error-limit-remain", HeaderValue::from_static("87"));
        h.insert("x-esi-error-limit-reset", HeaderValue::from_static("41"));
        assert_eq!(
            observe(Some(200), &h).errors,
            Some(ErrorHeaders {
                remain: 87,
                reset: Duration::from_secs(41)
            })
        );
    }
}
