//! Retention of the battle service's data, two rules of `[lifecycle]`:
//!
//! * `battles_months`: battles (ended or merged) whose end is older than the cutoff are deleted
//!   with everything keyed by them (killmail links, systems, participants, sides, aliases,
//!   side overrides), one `battle.deleted` each through the outbox;
//! * `enriched_killmails_months`: the service's copy of enriched killmails (`killmails`,
//!   `pilot_ship_history`, `ship_history_queue`) older than the cutoff — except killmails a kept battle still holds,
//!   so a report is never missing its own kills.
//!
//! Names are not named by any rule and are never deleted. Each batch (at most
//! `retention_batch` battles or killmails) is one transaction; runs are recorded in
//! `retention_runs`, counted in metrics, and scheduled daily at `lifecycle.retention_at`.

use std::sync::Arc;

use bs_config::LifecycleConfig;
use bs_events::DeletionReason;
use bs_runtime::Clock;
use bs_runtime::retention::{self as shared, delete_ids, months_cutoff, run_batches};
use bs_store::{Database, sqlx};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub use bs_runtime::retention::{RetentionRun, metric, run_id};

pub const BATTLES: &str = "battles";
pub const ENRICHED_KILLMAILS: &str = "enriched_killmails";

/// The newest runs first.
pub async fn runs(db: &Database, limit: i64) -> anyhow::Result<Vec<RetentionRun>> {
    shared::recent_runs(db, limit).await
}

/// Runs both rules once (battles first: their killmails become free to go). Returns the runs
/// of the rules that exist.
pub async fn run(
    db: &Database,
    clock: &dyn Clock,
    config: &LifecycleConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<RetentionRun>> {
    let now = clock.now();
    let id = run_id(now);
    let batch = i64::from(config.retention_batch.clamp(1, 10_000));
    let mut out = Vec::new();
    if let Some(cut) = months_cutoff(now, config.battles_months) {
        let cut_ms = cut.timestamp_millis();
        out.push(
            run_batches(db, clock, &id, BATTLES, cut, shutdown, || {
                battles_batch(db, cut_ms, batch, now)
            })
            .await?,
        );
    }
    if let Some(cut) = months_cutoff(now, config.enriched_killmails_months) {
        let cut_ms = cut.timestamp_millis();
        out.push(
            run_batches(db, clock, &id, ENRICHED_KILLMAILS, cut, shutdown, || {
                killmails_batch(db, cut_ms, batch)
            })
            .await?,
        );
    }
    Ok(out)
}

async fn battles_batch(
    db: &Database,
    cutoff_ms: i64,
    limit: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let mut tx = db.begin().await?;
    let ids: Vec<(i64,)> = sqlx::query_as(
        "SELECT battle_id FROM battles WHERE end_ms < $1 AND status <> 'active' ORDER BY end_ms, battle_id LIMIT $2",
    )
    .bind(cutoff_ms)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let ids: Vec<u64> = ids.into_iter().map(|r| r.0 as u64).collect();
    let n = crate::recluster::delete_battles(&mut tx, &ids, DeletionReason::Retention, true, now)
        .await?;
    tx.commit().await?;
    db.outbox_notify();
    Ok(n.max(1) as u64)
}

async fn killmails_batch(db: &Database, cutoff_ms: i64, limit: i64) -> anyhow::Result<u64> {
    let mut tx = db.begin().await?;
    let ids: Vec<(i64,)> = sqlx::query_as(
        "SELECT m.killmail_id FROM killmails m WHERE m.time_ms < $1 \
         AND NOT EXISTS (SELECT 1 FROM battle_killmails k WHERE k.killmail_id = m.killmail_id) \
         ORDER BY m.time_ms, m.killmail_id LIMIT $2",
    )
    .bind(cutoff_ms)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let ids: Vec<i64> = ids.into_iter().map(|(id,)| id).collect();
    // The history by its key, from the killmails' own pilot lines: before the killmails go.
    let unsigned: Vec<u64> = ids.iter().map(|&id| id as u64).collect();
    crate::store::delete_ship_history(&mut tx, db.backend(), &unsigned).await?;
    for table in ["ship_history_queue", "killmails"] {
        delete_ids(&mut tx, table, "killmail_id", &ids, 16).await?;
    }
    tx.commit().await?;
    Ok(ids.len() as u64)
}

/// The daily scheduler.
pub struct Retention {
    pub db: Database,
    pub clock: Arc<dyn Clock>,
    pub config: LifecycleConfig,
}

impl Retention {
    pub async fn run(self, shutdown: CancellationToken) {
        let at = self.config.retention_minute().unwrap_or(120);
        let (db, clock, config, token) = (&self.db, &*self.clock, &self.config, &shutdown);
        let job = move || async move { run(db, clock, config, token).await.map(drop) };
        shared::run_daily(
            self.db.clone(),
            Arc::clone(&self.clock),
            at,
            "battle",
            shutdown.clone(),
            job,
        )
        .await;
    }
}
