//! Where killmails come from. Every source implements [`Source`] and feeds
//! the same [`Pipeline`](crate::pipeline::Pipeline) and store; only the way
//! it reads upstream differs.
//!
//! * [`r2z2::R2z2Source`]: the live feed (cursor, gaps, re-publication, expiry repair).
//! * [`backfill::BackfillRunner`]: zKillboard history + ESI, and EVE Ref archives, as jobs.
//! * [`files`]: local files (`battlescope import`).
//! * [`redisq::RedisqSource`]: the legacy long-poll feed.

pub mod backfill;
pub mod files;
pub mod r2z2;
pub mod redisq;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bs_runtime::Clock;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::pipeline::Pipeline;
use crate::store::SqlIngestionStore;

/// What every source shares.
pub struct IngestCtx {
    pub store: SqlIngestionStore,
    pub pipeline: Arc<Pipeline>,
    pub clock: Arc<dyn Clock>,
    pub live: Arc<LiveStatus>,
    pub contact: String,
}

/// A pluggable source of killmails.
#[async_trait]
pub trait Source: Send + 'static {
    fn name(&self) -> &'static str;
    /// Runs until `shutdown`; returns early only on an unrecoverable configuration error.
    async fn run(
        self: Box<Self>,
        ctx: Arc<IngestCtx>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()>;
}

/// The live feed's position, for `/status`.
#[derive(Debug, Default)]
pub struct LiveStatus {
    inner: Mutex<LiveState>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct LiveState {
    pub running: bool,
    /// The next sequence to fetch.
    pub cursor: Option<i64>,
    /// The newest sequence known to exist (from `sequence.json` or an entry).
    pub head: Option<i64>,
    /// `uploaded_at` of the last entry processed.
    pub last_uploaded_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

impl LiveStatus {
    pub fn snapshot(&self) -> LiveState {
        self.inner.lock().clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut LiveState)) {
        f(&mut self.inner.lock());
    }

    pub fn error(&self, message: String, at: DateTime<Utc>) {
        let mut s = self.inner.lock();
        s.last_error = Some(message);
        s.last_error_at = Some(at);
    }
}

/// Sleeps `d` unless `shutdown` fires first; false when cancelled.
pub async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.cancelled() => false,
    }
}

/// Parses a humantime duration from configuration, with a fallback.
pub fn duration(value: &str, fallback: Duration) -> Duration {
    humantime::parse_duration(value).unwrap_or(fallback)
}
