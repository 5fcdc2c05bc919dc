//! Retention of the battle service's data, two rules of `[lifecycle]`:
//!
//! * `battles_months`: battles (ended or merged) whose end is older than the cutoff are deleted
//!   with everything keyed by them (killmail links, systems, participants, sides, aliases,
//!   side overrides), one `battle.deleted` each through the outbox;
//! * `enriched_killmails_months`: the service's copy of enriched killmails (`killmails`,
//!   `pilot_ship_history`) older than the cutoff — except killmails a kept battle still holds,
//!   so a report is never missing its own kills.
//!
//! Names are not named by any rule and are never deleted. Each batch (at most
//! `retention_batch` battles or killmails) is one transaction; runs are recorded in
//! `retention_runs`, counted in metrics, and scheduled daily at `lifecycle.retention_at`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bs_config::LifecycleConfig;
use bs_events::DeletionReason;
use bs_runtime::Clock;
use bs_store::sqlx::{self, Row};
use bs_store::{Database, dynamic_sql};
use chrono::{DateTime, Months, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Metric names.
pub mod metric {
    /// Counter, label `kind`: rows deleted by retention.
    pub const DELETED: &str = "battlescope_retention_cleanup_deleted_total";
    /// Counter, labels `kind`, `status`.
    pub const RUNS: &str = "battlescope_retention_cleanup_runs_total";
}

pub const BATTLES: &str = "battles";
pub const ENRICHED_KILLMAILS: &str = "enriched_killmails";

/// One kind of data cleaned by one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetentionRun {
    pub id: String,
    pub kind: String,
    pub cutoff: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deleted: i64,
    pub batches: i64,
    pub status: String,
    pub error: Option<String>,
}

/// A run id: start time plus a process-wide sequence (unique per database in practice).
pub fn run_id(at: DateTime<Utc>) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        at.timestamp_millis(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// `now` minus `months` (None: no rule).
pub fn cutoff(now: DateTime<Utc>, months: u32) -> Option<DateTime<Utc>> {
    (months > 0)
        .then(|| now.checked_sub_months(Months::new(months)))
        .flatten()
}

/// Pure: is a daily run due at `now`, given the last run's start?
pub fn due(now: DateTime<Utc>, at_minute: u32, last_started: Option<DateTime<Utc>>) -> bool {
    use chrono::Timelike as _;
    let minute = now.hour() * 60 + now.minute();
    if minute < at_minute {
        return false;
    }
    let today_at = now
        .date_naive()
        .and_hms_opt(at_minute / 60, at_minute % 60, 0)
        .unwrap_or_default()
        .and_utc();
    // Only inside the two hours after the configured time: a process started later in the
    // day waits for tomorrow instead of deleting at start-up.
    minute < at_minute + 120 && last_started.is_none_or(|t| t < today_at)
}

async fn save(db: &Database, r: &RetentionRun) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO retention_runs (id, kind, cutoff_ms, started_at, finished_at, deleted, batches, status, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id, kind) DO UPDATE SET finished_at = excluded.finished_at, \
         deleted = excluded.deleted, batches = excluded.batches, status = excluded.status, error = excluded.error",
    )
    .bind(r.id.clone())
    .bind(r.kind.clone())
    .bind(r.cutoff.timestamp_millis())
    .bind(r.started_at.timestamp_millis())
    .bind(r.finished_at.map(|t| t.timestamp_millis()))
    .bind(r.deleted)
    .bind(r.batches)
    .bind(r.status.clone())
    .bind(r.error.clone())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The newest runs first.
pub async fn runs(db: &Database, limit: i64) -> anyhow::Result<Vec<RetentionRun>> {
    let rows = sqlx::query(
        "SELECT id, kind, cutoff_ms, started_at, finished_at, deleted, batches, status, error FROM retention_runs \
         ORDER BY started_at DESC, kind LIMIT $1",
    )
    .bind(limit.clamp(1, 500))
    .fetch_all(db.pool())
    .await?;
    let t = crate::store::ms_to_time;
    rows.iter()
        .map(|r| {
            Ok(RetentionRun {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                cutoff: t(r.try_get(2)?),
                started_at: t(r.try_get(3)?),
                finished_at: r.try_get::<Option<i64>, _>(4)?.map(t),
                deleted: r.try_get(5)?,
                batches: r.try_get(6)?,
                status: r.try_get(7)?,
                error: r.try_get(8)?,
            })
        })
        .collect()
}

fn list(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
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
    for (kind, months) in [
        (BATTLES, config.battles_months),
        (ENRICHED_KILLMAILS, config.enriched_killmails_months),
    ] {
        let Some(cut) = cutoff(now, months) else {
            continue;
        };
        let mut r = RetentionRun {
            id: id.clone(),
            kind: kind.into(),
            cutoff: cut,
            started_at: clock.now(),
            finished_at: None,
            deleted: 0,
            batches: 0,
            status: "running".into(),
            error: None,
        };
        save(db, &r).await?;
        let result = loop {
            if shutdown.is_cancelled() {
                break Ok(());
            }
            let step = if kind == BATTLES {
                battles_batch(db, cut.timestamp_millis(), batch, now).await
            } else {
                killmails_batch(db, cut.timestamp_millis(), batch).await
            };
            match step {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    r.deleted += n as i64;
                    r.batches += 1;
                    metrics::counter!(metric::DELETED, "kind" => kind).increment(n as u64);
                }
                Err(e) => break Err(e),
            }
        };
        r.finished_at = Some(clock.now());
        match result {
            Ok(()) => r.status = "completed".into(),
            Err(e) => {
                r.status = "failed".into();
                r.error = Some(e.to_string());
            }
        }
        save(db, &r).await?;
        metrics::counter!(metric::RUNS, "kind" => kind, "status" => r.status.clone()).increment(1);
        tracing::info!(kind, deleted = r.deleted, batches = r.batches, cutoff = %cut, "retention run");
        out.push(r);
    }
    Ok(out)
}

async fn battles_batch(
    db: &Database,
    cutoff_ms: i64,
    limit: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
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
    Ok(n.max(1))
}

async fn killmails_batch(db: &Database, cutoff_ms: i64, limit: i64) -> anyhow::Result<usize> {
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
    for chunk in ids.chunks(16) {
        for table in ["pilot_ship_history", "killmails"] {
            let sql = format!(
                "DELETE FROM {table} WHERE killmail_id IN ({})",
                list(chunk.len())
            );
            let mut q = sqlx::query(dynamic_sql(sql));
            for (id,) in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok(ids.len())
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
        loop {
            let last = runs(&self.db, 1)
                .await
                .ok()
                .and_then(|r| r.first().map(|r| r.started_at));
            if due(self.clock.now(), at, last)
                && let Err(e) = run(&self.db, &*self.clock, &self.config, &shutdown).await
            {
                tracing::warn!(error = %e, "battle retention run failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
