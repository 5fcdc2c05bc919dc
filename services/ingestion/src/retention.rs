//! Retention of ingestion's data: the stored ESI JSON of killmails (`killmail_events`),
//! rule `lifecycle.raw_killmails_months` (0: keep forever).
//!
//! Nothing else here is ever deleted: rejects, gaps, cursors and backfill job records are not
//! named by a rule. A run deletes rows older than the cutoff (kill time) in bounded batches;
//! each batch is one transaction that also enqueues one `killmail.deleted` (scope `raw`) per
//! row in the outbox, so search and notifications drop what is gone and a crash mid-run
//! leaves nothing half-announced. Runs are recorded in `retention_runs` and counted in
//! metrics; the scheduler runs once a day at `lifecycle.retention_at`.

use std::sync::Arc;

use bs_config::LifecycleConfig;
use bs_runtime::retention::{
    self as shared, delete_killmails_batch, months_cutoff, run_batches, run_id,
};
use bs_store::{Database, to_millis};
use tokio_util::sync::CancellationToken;

use crate::sources::IngestCtx;

pub use bs_runtime::retention::{RetentionRun, metric};

/// The kind of data this service's rule covers.
pub const RAW_KILLMAILS: &str = "raw_killmails";

/// The newest `limit` runs, newest first.
pub async fn runs(db: &Database, limit: i64) -> anyhow::Result<Vec<RetentionRun>> {
    shared::recent_runs(db, limit).await
}

/// Deletes killmails older than the rule's cutoff, in batches of `batch`; records the run.
/// Returns `None` when no rule applies (months = 0).
pub async fn run(
    ctx: &IngestCtx,
    config: &LifecycleConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<RetentionRun>> {
    let now = ctx.clock.now();
    let Some(cut) = months_cutoff(now, config.raw_killmails_months) else {
        return Ok(None);
    };
    let db = ctx.store.database();
    let batch = i64::from(config.retention_batch.clamp(1, 10_000));
    let run = run_batches(
        db,
        &*ctx.clock,
        &run_id(now),
        RAW_KILLMAILS,
        cut,
        shutdown,
        || {
            delete_killmails_batch(
                db,
                "SELECT killmail_id, occurred_at FROM killmail_events WHERE occurred_at < $1 \
                 ORDER BY occurred_at, killmail_id LIMIT $2",
                "killmail_events",
                "raw",
                to_millis(cut),
                batch,
                now,
            )
        },
    )
    .await?;
    Ok(Some(run))
}

/// The daily scheduler.
pub struct Retention {
    pub config: LifecycleConfig,
}

impl Retention {
    pub async fn run(self, ctx: Arc<IngestCtx>, shutdown: CancellationToken) {
        let at = self.config.retention_minute().unwrap_or(120);
        let (c, config, token) = (&*ctx, &self.config, &shutdown);
        let job = move || async move { run(c, config, token).await.map(drop) };
        let db = ctx.store.database().clone();
        shared::run_daily(
            db,
            Arc::clone(&ctx.clock),
            at,
            "ingestion",
            shutdown.clone(),
            job,
        )
        .await;
    }
}
