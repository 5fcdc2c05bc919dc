//! The one error type of the ESI client.
//!
//! Callers branch on the variant: `NotFound` is permanent (do not ask again soon),
//! `RateLimited`, `ErrorBudgetLow` and `Downtime` mean "ESI said wait" and carry how
//! long, `Upstream`/`Transport` are transient or unexpected, `Decode` is a contract break.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Everything an ESI call can fail with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EsiError {
    /// 404 (or 422 for a bad killmail id/hash pair): the entity does not exist.
    #[error("esi: not found")]
    NotFound,
    /// A floating-window group is out of tokens for longer than the client may wait.
    #[error("esi: rate limited (group {group:?}), retry in {retry_after:?}")]
    RateLimited {
        group: Option<String>,
        retry_after: Duration,
    },
    /// The legacy error budget is at its safety margin (or ESI answered 420).
    #[error("esi: error budget low, resets in {reset_in:?}")]
    ErrorBudgetLow { reset_in: Duration },
    /// The client does not send during the daily downtime window.
    #[error("esi: paused for daily downtime until {until}")]
    Downtime { until: DateTime<Utc> },
    /// Any other non-success status, after the retries allowed for it.
    #[error("esi: upstream status {status}: {message}")]
    Upstream { status: u16, message: String },
    /// Connect, timeout or body-read failure, after the retries allowed for it.
    #[error("esi: transport: {0}")]
    Transport(String),
    /// The configuration cannot work (empty user agent, bad compatibility date).
    #[error("esi: invalid configuration: {0}")]
    Config(String),
    /// A 2xx body that does not match the expected shape.
    #[error("esi: decode: {0}")]
    Decode(String),
}

impl EsiError {
    /// True when asking again later may succeed (not `NotFound`, `Decode`, `Config`).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::NotFound | Self::Decode(_) | Self::Config(_))
    }
}
