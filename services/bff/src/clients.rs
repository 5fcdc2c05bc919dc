//! Typed wrappers over the services' [`ServiceClient`]s, with short-TTL caches of hot reads.
//!
//! One [`Upstreams`] per BFF. Every call goes through `ctx.services` (in-process router in
//! all-in-one mode, HTTP in split mode), so nothing here knows the topology. Caches are
//! in-process moka caches: the BFF is stateless and every replica may keep its own; misses of
//! the same key are coalesced, so a burst on the largest battle computes its report once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use bs_config::ServiceName;
use bs_runtime::{ClientError, ServiceDirectory};
use moka::future::Cache;
use serde::de::DeserializeOwned;

use crate::model::{BattlePage, Killmail, KillmailBulk, Report};
use crate::swr::Swr;

/// Why an upstream read failed, in the terms a page or the API answers with.
#[derive(Clone, Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{service} unavailable: {reason}")]
    Unavailable {
        service: ServiceName,
        reason: String,
    },
    #[error("not found")]
    NotFound,
    /// A merged battle: the survivor's id.
    #[error("moved to {0}")]
    Redirect(i64),
    #[error("{0}")]
    BadRequest(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl UpstreamError {
    fn unavailable(service: ServiceName, reason: impl Into<String>) -> Self {
        Self::Unavailable {
            service,
            reason: reason.into(),
        }
    }

    /// True when the service is missing or down (the page degrades instead of failing).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// The error message of a service's JSON error body, or the body itself.
fn message_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}

/// A battle report as fetched: the service's JSON (served as is by the API) and its parsed form.
pub struct CachedReport {
    pub raw: Bytes,
    pub report: Report,
}

/// Health of one service as the dashboard shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServiceHealth {
    pub service: String,
    /// `up`, `down` or `absent` (not deployed / not built).
    pub state: &'static str,
    pub latency_ms: f64,
    pub detail: String,
}

/// How long hot reads are cached.
#[derive(Clone, Copy, Debug)]
pub struct CacheTtls {
    pub list: Duration,
    pub report: Duration,
    pub killmail: Duration,
    pub stats: Duration,
    /// How long a stale value may still be served while it reloads.
    pub keep: Duration,
}

impl Default for CacheTtls {
    fn default() -> Self {
        Self {
            // Short enough that an active battle's page is never more than a poll behind.
            list: Duration::from_secs(2),
            report: Duration::from_secs(2),
            // Enriched killmails change only when late names arrive.
            killmail: Duration::from_secs(300),
            stats: Duration::from_secs(2),
            keep: Duration::from_secs(60),
        }
    }
}

/// `(kind, id)` → name.
type NameTable = HashMap<(String, i64), Arc<str>>;

/// The services the BFF reads, behind caches.
#[derive(Clone)]
pub struct Upstreams {
    services: ServiceDirectory,
    raw: Swr<String, Bytes>,
    reports: Swr<i64, Arc<CachedReport>>,
    killmails: Cache<i64, Arc<Killmail>>,
    /// Names seen in reports and killmails, `(kind, id)` → name, for pages that only have ids
    /// (the battle list). Long-lived: EVE names rarely change.
    names: Arc<parking_lot::RwLock<NameTable>>,
}

impl Upstreams {
    pub fn new(services: ServiceDirectory, ttls: CacheTtls) -> Self {
        Self {
            services,
            raw: Swr::new(ttls.list.min(ttls.stats), ttls.keep, 2_000),
            reports: Swr::new(ttls.report, ttls.keep, 200),
            killmails: Cache::builder()
                .max_capacity(50_000)
                .time_to_live(ttls.killmail)
                .build(),
            names: Arc::default(),
        }
    }

    /// True when `service` is registered (in this process or over HTTP).
    pub fn has(&self, service: ServiceName) -> bool {
        self.services.contains(service)
    }

    /// One GET, with statuses mapped to [`UpstreamError`]; 308 carries the merged battle's survivor.
    pub async fn fetch(&self, service: ServiceName, path: &str) -> Result<Bytes, UpstreamError> {
        let client = self.services.get(service).map_err(|e| match e {
            ClientError::NotRegistered(_) => {
                UpstreamError::unavailable(service, "not deployed in this installation")
            }
            other => UpstreamError::unavailable(service, other.to_string()),
        })?;
        let res = client
            .send(Method::GET, path, &HeaderMap::new(), None)
            .await
            .map_err(|e| UpstreamError::unavailable(service, e.to_string()))?;
        match res.status {
            s if s.is_success() => Ok(res.body),
            StatusCode::PERMANENT_REDIRECT | StatusCode::MOVED_PERMANENTLY => {
                let to = serde_json::from_slice::<serde_json::Value>(&res.body)
                    .ok()
                    .and_then(|v| v.get("redirect_to").and_then(serde_json::Value::as_i64));
                Err(to.map_or_else(
                    || UpstreamError::Internal("redirect without target".into()),
                    UpstreamError::Redirect,
                ))
            }
            StatusCode::NOT_FOUND => Err(UpstreamError::NotFound),
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                Err(UpstreamError::BadRequest(message_of(&res.body)))
            }
            s => Err(UpstreamError::unavailable(
                service,
                format!("answered {s}: {}", message_of(&res.body)),
            )),
        }
    }

    /// Any request, passed through as is (the notification proxy: the caller's `Cookie` goes
    /// in `headers`, the status and body come back for the caller to map). Only a missing or
    /// unreachable service is an error.
    pub async fn call(
        &self,
        service: ServiceName,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<bs_runtime::ServiceResponse, UpstreamError> {
        let client = self.services.get(service).map_err(|e| match e {
            ClientError::NotRegistered(_) => {
                UpstreamError::unavailable(service, "not deployed in this installation")
            }
            other => UpstreamError::unavailable(service, other.to_string()),
        })?;
        client
            .send(method, path, headers, body)
            .await
            .map_err(|e| UpstreamError::unavailable(service, e.to_string()))
    }

    /// [`Self::fetch`] behind the short raw cache.
    pub async fn fetch_cached(
        &self,
        service: ServiceName,
        path: &str,
    ) -> Result<Bytes, UpstreamError> {
        let key = format!("{}{}", service.as_str(), path);
        let this = self.clone();
        let path = path.to_owned();
        self.raw
            .get(key, move || {
                let this = this.clone();
                let path = path.clone();
                async move { this.fetch(service, &path).await }
            })
            .await
            .map_err(|e| (*e).clone())
    }

    /// GET and decode.
    pub async fn json<T: DeserializeOwned>(
        &self,
        service: ServiceName,
        path: &str,
        cached: bool,
    ) -> Result<T, UpstreamError> {
        let body = if cached {
            self.fetch_cached(service, path).await?
        } else {
            self.fetch(service, path).await?
        };
        serde_json::from_slice(&body).map_err(|e| UpstreamError::Internal(e.to_string()))
    }

    /// `GET /battles?…` of the battle service (`query` without the `?`).
    pub async fn battles(&self, query: &str) -> Result<BattlePage, UpstreamError> {
        self.json(ServiceName::Battle, &format!("/battles?{query}"), true)
            .await
    }

    /// `GET /battles/{id}`: the report, or [`UpstreamError::Redirect`] for a merged id.
    pub async fn report(&self, id: i64) -> Result<Arc<CachedReport>, UpstreamError> {
        let this = self.clone();
        self.reports
            .get(id, move || {
                let this = this.clone();
                async move {
                    let raw = this
                        .fetch(ServiceName::Battle, &format!("/battles/{id}"))
                        .await?;
                    let report: Report = serde_json::from_slice(&raw)
                        .map_err(|e| UpstreamError::Internal(e.to_string()))?;
                    for (kind, m) in &report.names {
                        for (id, name) in m {
                            if let Ok(id) = id.parse::<i64>() {
                                this.remember(kind, id, name);
                            }
                        }
                    }
                    Ok::<_, UpstreamError>(Arc::new(CachedReport { raw, report }))
                }
            })
            .await
            .map_err(|e| (*e).clone())
    }

    /// Enriched killmails by id (cached per id; the misses in bulk requests of ≤ 1000).
    pub async fn killmails(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, Arc<Killmail>>, UpstreamError> {
        let mut out = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for &id in ids {
            match self.killmails.get(&id).await {
                Some(k) => {
                    out.insert(id, k);
                }
                None => missing.push(id),
            }
        }
        for chunk in missing.chunks(1000) {
            let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
            let bulk: KillmailBulk = self
                .json(
                    ServiceName::Enrichment,
                    &format!("/killmails?ids={}", list.join(",")),
                    false,
                )
                .await?;
            for k in bulk.killmails {
                self.learn_names(&k);
                let k = Arc::new(k);
                self.killmails.insert(k.killmail_id, Arc::clone(&k)).await;
                out.insert(k.killmail_id, k);
            }
        }
        Ok(out)
    }

    /// A name seen before (`kind`: `alliance`, `corporation`, `character`, …).
    pub fn name(&self, kind: &str, id: i64) -> Option<Arc<str>> {
        self.names.read().get(&(kind.to_owned(), id)).cloned()
    }

    fn remember(&self, kind: &str, id: i64, name: &str) {
        let mut names = self.names.write();
        // Bounded without an LRU: names are cheap to relearn from the next report.
        if names.len() >= 200_000 {
            names.clear();
        }
        names.insert((kind.to_owned(), id), Arc::from(name));
    }

    fn learn_names(&self, k: &Killmail) {
        let put = |kind: &str, id: Option<i64>, name: &Option<String>| {
            if let (Some(id), Some(n)) = (id, name) {
                self.remember(kind, id, n);
            }
        };
        let v = &k.victim;
        put("character", v.character_id, &v.character_name);
        put("corporation", v.corporation_id, &v.corporation_name);
        put("alliance", v.alliance_id, &v.alliance_name);
        for a in &k.attackers {
            put("character", a.character_id, &a.character_name);
            put("corporation", a.corporation_id, &a.corporation_name);
            put("alliance", a.alliance_id, &a.alliance_name);
        }
    }

    /// Probes every service the UI depends on. A probe is a cheap read of the service's own
    /// API (its `/health` belongs to the binary, not to its router).
    pub async fn health(&self) -> Vec<ServiceHealth> {
        const PROBES: &[(ServiceName, &str)] = &[
            (ServiceName::Ingestion, "/stats"),
            (ServiceName::Enrichment, "/status"),
            (ServiceName::Battle, "/stats"),
            (ServiceName::Search, "/search/autocomplete?q=a&limit=1"),
            (ServiceName::Notification, "/status"),
            (ServiceName::Authentication, "/me"),
        ];
        let probes = PROBES.iter().map(|&(service, path)| async move {
            let started = Instant::now();
            let (state, detail) = match self.services.get(service) {
                Err(_) => ("absent", "not deployed in this installation".to_owned()),
                Ok(client) => match client
                    .send(Method::GET, path, &HeaderMap::new(), None)
                    .await
                {
                    // Any answer below 500 means the service is up (auth's `/me` is 401 anonymously).
                    Ok(r) if r.status.as_u16() < 500 => {
                        ("up", format!("{path} → {}", r.status.as_u16()))
                    }
                    Ok(r) => ("down", format!("{path} → {}", r.status.as_u16())),
                    Err(e) => ("down", e.to_string()),
                },
            };
            ServiceHealth {
                service: service.as_str().to_owned(),
                state,
                latency_ms: (started.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
                detail,
            }
        });
        futures::future::join_all(probes).await
    }
}
