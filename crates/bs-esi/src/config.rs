//! Client configuration and the injected wall clock.
//!
//! The wall clock is only used for the downtime window and for `Expires`; rate-limit
//! windows use the monotonic tokio clock. Both enter the pure logic as parameters.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};

/// The production ESI base URL; operators override it with `BATTLESCOPE_ESI_URL`.
pub const DEFAULT_BASE_URL: &str = "https://esi.evetech.net";

/// The compatibility date this client was written and tested against (OpenAPI 2026-08-18).
pub const DEFAULT_COMPATIBILITY_DATE: &str = "2026-08-18";

/// A source of wall-clock time, injectable so tests can stand at 11:05 UTC.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_utc(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_utc(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Retry policy for safe requests on retryable failures (5xx, transport errors).
#[derive(Clone, Debug)]
pub struct RetryConfig {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff ceiling; doubles per attempt, full jitter below it.
    pub base_delay: Duration,
    /// Upper bound of one backoff.
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// The daily Tranquility downtime during which nothing is sent.
#[derive(Clone, Debug)]
pub struct DowntimeWindow {
    pub start: NaiveTime,
    pub length: Duration,
}

impl Default for DowntimeWindow {
    fn default() -> Self {
        Self {
            start: NaiveTime::from_hms_opt(11, 0, 0).unwrap_or_default(),
            length: Duration::from_secs(15 * 60),
        }
    }
}

impl DowntimeWindow {
    /// When `now` falls inside the window, the instant it ends.
    pub fn pause_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = now.date_naive().and_time(self.start).and_utc();
        let end = start + chrono::Duration::from_std(self.length).ok()?;
        (now >= start && now < end).then_some(end)
    }
}

/// Everything the client needs; `Default` is production-ready except `user_agent`.
#[derive(Clone, Debug)]
pub struct EsiConfig {
    /// Without trailing slash, e.g. `https://esi.evetech.net` or a fake's URL.
    pub base_url: String,
    /// Must identify the app and a contact (ESI best practice), e.g.
    /// `BattleScope/0.1 (ops@example.org; +https://github.com/…)`.
    pub user_agent: String,
    /// Sent as `X-Compatibility-Date` on every request.
    pub compatibility_date: String,
    /// Requests in flight at once (a semaphore).
    pub max_concurrency: usize,
    /// Connect timeout of the HTTP client.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// How long one call may wait for rate-limit tokens or the error budget before it
    /// gives up with `RateLimited`/`ErrorBudgetLow`. Keeps callers from stalling.
    pub max_wait: Duration,
    /// Stop sending to error-limited routes when this many errors remain in the window.
    pub error_budget_margin: u32,
    /// Tokens per floating-window group that are never spent (covers 4xx costing 5
    /// where 2 were reserved, and other clients on the same IP).
    pub rate_limit_margin: u32,
    pub retry: RetryConfig,
    /// `None` disables the downtime pause (e.g. against a fake that is never down).
    pub downtime: Option<DowntimeWindow>,
    /// Bounded response cache (entries) for ETag/Expires.
    pub cache_capacity: usize,
    pub clock: Arc<dyn Clock>,
}

impl Default for EsiConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            user_agent: format!(
                "BattleScope/{} (+https://github.com/battlescope/battlescope)",
                env!("CARGO_PKG_VERSION")
            ),
            compatibility_date: DEFAULT_COMPATIBILITY_DATE.to_owned(),
            max_concurrency: 8,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            max_wait: Duration::from_secs(10),
            error_budget_margin: 20,
            rate_limit_margin: 6,
            retry: RetryConfig::default(),
            downtime: Some(DowntimeWindow::default()),
            cache_capacity: 10_000,
            clock: Arc::new(SystemClock),
        }
    }
}

/// An identifying `User-Agent` with the operator's contact (e-mail or URL), as ESI asks.
pub fn user_agent_with_contact(contact: &str) -> String {
    format!(
        "BattleScope/{} ({contact}; +https://github.com/battlescope/battlescope)",
        env!("CARGO_PKG_VERSION")
    )
}

impl EsiConfig {
    /// The default configuration pointed at `base_url` (a fake in tests).
    pub fn for_url(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            ..Self::default()
        }
    }
}
