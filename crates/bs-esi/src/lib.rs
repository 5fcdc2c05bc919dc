//! `bs-esi`: the ESI client BattleScope's services share, and a local fake ESI.
//!
//! [`EsiClient`] talks to ESI's public (token-less) routes the way CCP asks clients to:
//! an identifying `User-Agent`, `X-Compatibility-Date` on every request, `Expires` and
//! `ETag`/`If-None-Match` honoured through a small bounded cache, the floating-window
//! rate limits (`X-Ratelimit-*`, 429 + `Retry-After`) tracked per group so it waits
//! rather than overruns, the legacy error limit (`X-ESI-Error-Limit-*`, 420) with a
//! safety margin it never spends, jittered retries for safe requests only, a
//! concurrency semaphore, one shared request for concurrent identical GETs, and a pause
//! during the daily downtime.
//!
//! Calls never block for long: when ESI says "wait" for longer than
//! [`EsiConfig::max_wait`] they return [`EsiError::RateLimited`],
//! [`EsiError::ErrorBudgetLow`] or [`EsiError::Downtime`], and bulk lookups return what
//! they resolved plus the ids to retry ([`BulkLookup`]). Callers keep their pipeline
//! moving and fill names in later.
//!
//! [`fake::FakeEsi`] is an in-process axum server that speaks the same protocol, serves
//! real data (killmails, names, prices) and injects faults; every crate's tests use it.
//!
//! Architecture invariant: the budget model (`limits`) and the cache are pure — time
//! comes in as a parameter.

mod cache;
mod client;
mod config;
mod error;
pub mod fake;
mod limits;
mod types;

pub use client::{EsiClient, MAX_IDS_PER_CALL, metric};
pub use config::{
    Clock, DEFAULT_BASE_URL, DEFAULT_COMPATIBILITY_DATE, DowntimeWindow, EsiConfig, RetryConfig,
    SystemClock, user_agent_with_contact,
};
pub use error::EsiError;
pub use types::{
    Affiliation, Alliance, BulkLookup, Corporation, EntityName, MarketPrice, NameCategory,
    ServerStatus, SystemInfo, TypeInfo,
};
