//! The configuration sections, one struct each, with their defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Secret;

/// Every service of the plan, named as its folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceName {
    Ingestion,
    Enrichment,
    Battle,
    Search,
    Notification,
    Bff,
    Authentication,
    Web,
}

impl ServiceName {
    pub const ALL: [ServiceName; 8] = [
        Self::Ingestion,
        Self::Enrichment,
        Self::Battle,
        Self::Search,
        Self::Notification,
        Self::Bff,
        Self::Authentication,
        Self::Web,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingestion => "ingestion",
            Self::Enrichment => "enrichment",
            Self::Battle => "battle",
            Self::Search => "search",
            Self::Notification => "notification",
            Self::Bff => "bff",
            Self::Authentication => "authentication",
            Self::Web => "web",
        }
    }

    /// The PostgreSQL database a service owns (`None`: it keeps no relational state).
    pub fn database_name(self) -> Option<&'static str> {
        match self {
            Self::Ingestion => Some("battlescope_ingestion"),
            Self::Enrichment => Some("battlescope_enrichment"),
            Self::Battle => Some("battlescope_battles"),
            Self::Notification => Some("battlescope_notifications"),
            Self::Authentication => Some("battlescope_auth"),
            Self::Search => Some("battlescope_search"),
            Self::Bff | Self::Web => None,
        }
    }

    /// The embedded SQLite file stem of a service.
    pub fn store_name(self) -> &'static str {
        match self {
            Self::Authentication => "auth",
            other => other.as_str(),
        }
    }
}

impl std::str::FromStr for ServiceName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|n| n.as_str() == s || (s == "auth" && *n == Self::Authentication))
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|n| n.as_str()).collect();
                format!("unknown service `{s}` (one of: {})", names.join(", "))
            })
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `json` (one object per line) or `pretty`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,bs_ingestion=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Empty: embedded SQLite files under `data_dir`. Otherwise a PostgreSQL server URL
    /// without a database (`postgres://user@host:5432`); each service uses its own database there.
    pub url: String,
    /// Connection pool size per service (0: backend default).
    pub max_connections: u32,
    /// Prefix of the per-service PostgreSQL database names (`battlescope` → `battlescope_auth`, …).
    pub database_prefix: String,
    /// Embedded SQLite: page cache per connection in KiB (0: SQLite's default of 2000). The
    /// all-in-one process holds ~30 connections (4 per database, 7 databases and the bus), so
    /// this is multiplied by ~30; the OS caches the files anyway.
    pub sqlite_cache_kib: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 0,
            database_prefix: "battlescope".into(),
            sqlite_cache_kib: 512,
        }
    }
}

impl StoreConfig {
    /// The PostgreSQL database of `service` (`None`: it keeps no relational state).
    pub fn database_name(&self, service: ServiceName) -> Option<String> {
        service
            .database_name()
            .map(|full| full.replacen("battlescope", &self.database_prefix, 1))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    pub kind: BusKind,
    /// Kafka bootstrap servers (comma-separated), for `kind = "kafka"`.
    pub brokers: String,
    /// Partitions per topic created by BattleScope on Kafka.
    pub partitions: i32,
    /// Kafka's idempotent producer (true: a retried batch is never written twice).
    /// Turn off only for a broker whose idempotence loses acknowledged records on a
    /// crash (Tansu 0.6); consumers are idempotent, so a duplicate is harmless.
    pub idempotent_producer: bool,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Embedded,
            brokers: "127.0.0.1:9092".into(),
            partitions: 3,
            idempotent_producer: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    Embedded,
    Kafka,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub kind: CacheKind,
    pub redis_url: String,
    /// Entries kept by the in-process cache (and its rate-limit counters).
    pub max_entries: u64,
    /// Bytes the in-process cache's entries may take (keys, values and ~160 bytes of
    /// bookkeeping each); 0: bounded by `max_entries` only. Values range from a name to a
    /// whole page, so an entry count alone does not bound the process's memory.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            kind: CacheKind::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            max_entries: 200_000,
            max_bytes: 32 << 20,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    Memory,
    Redis,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    pub kind: SearchKind,
    pub typesense_url: String,
    pub typesense_api_key: Secret,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            kind: SearchKind::Tantivy,
            typesense_url: "http://127.0.0.1:8108".into(),
            typesense_api_key: Secret::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchKind {
    Tantivy,
    Typesense,
}

/// Listening ports of `serve <service>` (the plan's ports).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortsConfig {
    /// Address the services bind in split mode.
    pub host: String,
    pub web: u16,
    pub ingestion: u16,
    pub enrichment: u16,
    pub battle: u16,
    pub search: u16,
    pub notification: u16,
    pub bff: u16,
    pub authentication: u16,
}

impl Default for PortsConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            web: 3000,
            ingestion: 3001,
            enrichment: 3002,
            battle: 3003,
            search: 3004,
            notification: 3005,
            bff: 3006,
            authentication: 3007,
        }
    }
}

impl PortsConfig {
    pub fn port(&self, service: ServiceName) -> u16 {
        match service {
            ServiceName::Web => self.web,
            ServiceName::Ingestion => self.ingestion,
            ServiceName::Enrichment => self.enrichment,
            ServiceName::Battle => self.battle,
            ServiceName::Search => self.search,
            ServiceName::Notification => self.notification,
            ServiceName::Bff => self.bff,
            ServiceName::Authentication => self.authentication,
        }
    }
}

/// Where the BFF reaches the other services in split mode. Empty: `http://{ports.host}:{port}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceUrlsConfig {
    pub ingestion: String,
    pub enrichment: String,
    pub battle: String,
    pub search: String,
    pub notification: String,
    pub authentication: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestionConfig {
    /// Follow the live R2Z2 feed (`run`/`serve`; `demo` never does).
    pub live: bool,
    pub r2z2_url: String,
    pub zkb_url: String,
    pub everef_url: String,
    /// A RedisQ-compatible relay; empty disables the legacy source.
    pub redisq_url: String,
    /// Requests per second to R2Z2 (its documented limit is 20/s per IP).
    pub r2z2_requests_per_second: u32,
    /// Wait after a 404 at the R2Z2 head before asking again (zKillboard: 6 s).
    pub r2z2_head_wait: String,
    /// Wait after a 429; 5xx/HTML errors back off exponentially from a tenth of it.
    pub r2z2_backoff: String,
    /// Backfill jobs running at once.
    pub backfill_concurrency: u32,
    /// The RedisQ queue id (empty: derived from `contact`).
    pub redisq_queue_id: String,
}

impl Default for IngestionConfig {
    fn default() -> Self {
        Self {
            live: true,
            r2z2_url: "https://r2z2.zkillboard.com".into(),
            zkb_url: "https://zkillboard.com".into(),
            everef_url: "https://data.everef.net".into(),
            redisq_url: String::new(),
            r2z2_requests_per_second: 8,
            r2z2_head_wait: "6s".into(),
            r2z2_backoff: "10s".into(),
            backfill_concurrency: 1,
            redisq_queue_id: String::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EsiConfig {
    pub url: String,
    /// The `X-Compatibility-Date` sent with every request.
    pub compatibility_date: String,
    pub max_concurrency: u32,
}

impl Default for EsiConfig {
    fn default() -> Self {
        Self {
            url: "https://esi.evetech.net".into(),
            compatibility_date: "2025-08-26".into(),
            max_concurrency: 8,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichmentConfig {
    /// Refresh market prices from ESI daily (off: the bundled snapshot only).
    pub refresh_prices: bool,
    /// How long resolved names stay fresh.
    pub name_ttl: String,
    /// A player corporation's ticker is asked from ESI (one call each) once the corporation
    /// was seen on this many killmails within `ticker_window`; 1 asks for every corporation.
    /// Alliance tickers are always asked (few alliances, many killmails each).
    pub corporation_ticker_min_killmails: u32,
    /// How long sightings count toward `corporation_ticker_min_killmails`.
    pub ticker_window: String,
    /// Upper bound on background `GET /corporations/{id}` calls per minute (0: no bound).
    pub corporation_ticker_calls_per_minute: u32,
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        // Ticker defaults measured on the real week (services/enrichment/src/tickers.rs):
        // half the corporations appear on fewer than 10 killmails and are never shown with a
        // ticker in a report's side summary.
        Self {
            refresh_prices: true,
            name_ttl: "7d".into(),
            corporation_ticker_min_killmails: 10,
            ticker_window: "7d".into(),
            corporation_ticker_calls_per_minute: 60,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BattleConfig {
    /// Largest quiet gap (by kill time) inside one battle.
    pub gap: String,
    /// Fewest kills for a cluster to count as a battle.
    pub min_kills: u32,
    /// Fewest distinct pilots for a cluster to count as a battle.
    pub min_pilots: u32,
    /// How late (kill time, relative to the newest kill) a killmail may still extend, reopen or
    /// merge battles; the clusterer keeps this window in memory and rebuilds it on start.
    pub reopen_window: String,
}

impl Default for BattleConfig {
    fn default() -> Self {
        // The thresholds justified on the real week in docs/design/battle-clustering.md §4.
        Self {
            gap: "30m".into(),
            min_kills: 5,
            min_pilots: 6,
            reopen_window: "72h".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationConfig {
    /// Killmails older than this (by kill time) never notify, so backfill floods no one.
    pub max_age: String,
    /// Hosts (`host[:port]`, comma-separated) exempt from the public-address webhook rule.
    pub webhook_allowed_hosts: String,
    /// Serve an anonymous public live feed over WebSocket.
    pub public_feed: bool,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        Self {
            max_age: "1h".into(),
            webhook_allowed_hosts: String::new(),
            public_feed: true,
        }
    }
}

impl NotificationConfig {
    pub fn max_age(&self) -> Result<Duration, String> {
        humantime::parse_duration(&self.max_age)
            .map_err(|e| format!("notification.max_age `{}`: {e}", self.max_age))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsoConfig {
    pub url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: String,
}

impl Default for SsoConfig {
    fn default() -> Self {
        Self {
            url: "https://login.eveonline.com".into(),
            client_id: String::new(),
            client_secret: Secret::default(),
            scopes: "publicData".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Token encryption keys, `kid:base64key` comma-separated; the first is active.
    pub token_keys: Secret,
    /// The character that becomes SuperAdmin on first login (0: none).
    pub superadmin_character_id: i64,
    /// A clearly labelled development login (loopback only; `demo` turns it on without SSO credentials).
    pub dev_login: bool,
    pub session_idle: String,
    pub session_absolute: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_keys: Secret::default(),
            superadmin_character_id: 0,
            dev_login: false,
            session_idle: "7d".into(),
            session_absolute: "30d".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// EVE image server (portraits, logos, ship renders).
    pub image_url: String,
    /// Pages visible without logging in.
    pub public_pages: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            image_url: "https://images.evetech.net".into(),
            public_pages: true,
        }
    }
}

/// Data lifecycle: daily verification against zKillboard, retention, re-clustering.
/// Times of day are UTC `HH:MM`; a retention of 0 keeps that kind of data forever (a kind no
/// rule names is never deleted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Compare each closed UTC day with zKillboard's history and repair what is missing.
    pub verify: bool,
    /// When a closed day is verified (UTC, the day after).
    pub verify_at: String,
    /// Days re-verified on each run (zKillboard publishes late kills for a few days).
    pub verify_days: u32,
    /// At start, how far back to look for days without data (0: no gap detection).
    pub gap_window_days: u32,
    /// When retention runs each day (UTC).
    pub retention_at: String,
    /// Rows deleted per transaction (bounded batches keep locks and events small).
    pub retention_batch: u32,
    /// Ingestion's stored ESI JSON (`killmail_events`), months.
    pub raw_killmails_months: u32,
    /// Enriched killmails (enrichment, and the battle service's copy), months.
    pub enriched_killmails_months: u32,
    /// Battles (by end time), months.
    pub battles_months: u32,
    /// Notification history, months.
    pub notification_history_months: u32,
    /// The authentication audit log, days.
    pub audit_log_days: u32,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            verify: true,
            verify_at: "03:00".into(),
            verify_days: 3,
            gap_window_days: 30,
            retention_at: "02:00".into(),
            retention_batch: 1000,
            raw_killmails_months: 60,
            enriched_killmails_months: 60,
            battles_months: 60,
            notification_history_months: 12,
            audit_log_days: 90,
        }
    }
}

impl LifecycleConfig {
    /// Turns every retention rule off (0 = keep forever). For tests that replay the recorded
    /// 2021 week under the wall clock: the default 60 months have passed for it, so a service
    /// started in the daily retention window (02:00–04:00 UTC) would delete it mid-test.
    /// (The offline demo schedules no retention at all.)
    pub fn keep_forever(&mut self) {
        self.raw_killmails_months = 0;
        self.enriched_killmails_months = 0;
        self.battles_months = 0;
        self.notification_history_months = 0;
        self.audit_log_days = 0;
    }

    /// `verify_at` as minutes after midnight UTC.
    pub fn verify_minute(&self) -> Result<u32, String> {
        parse_hhmm(&self.verify_at).map_err(|e| format!("lifecycle.verify_at: {e}"))
    }

    /// `retention_at` as minutes after midnight UTC.
    pub fn retention_minute(&self) -> Result<u32, String> {
        parse_hhmm(&self.retention_at).map_err(|e| format!("lifecycle.retention_at: {e}"))
    }
}

/// `HH:MM` (24 h) → minutes after midnight.
pub fn parse_hhmm(s: &str) -> Result<u32, String> {
    let (h, m) = s
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not HH:MM"))?;
    let h: u32 = h.parse().map_err(|_| format!("`{s}` is not HH:MM"))?;
    let m: u32 = m.parse().map_err(|_| format!("`{s}` is not HH:MM"))?;
    if h > 23 || m > 59 {
        return Err(format!("`{s}` is not a time of day"));
    }
    Ok(h * 60 + m)
}
