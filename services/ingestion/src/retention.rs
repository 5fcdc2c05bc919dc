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
use std::time::Duration;

use bs_config::LifecycleConfig;
use bs_events::{DeletionReason, Envelope, KillmailDeleted};
use bs_store::{Database, dynamic_sql, from_millis, to_millis};
use chrono::{DateTime, Months, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::sources::{IngestCtx, pause};

/// Metric names.
pub mod metric {
    /// Counter, label `kind`: rows deleted by retention.
    pub const DELETED: &str = "battlescope_retention_cleanup_deleted_total";
    /// Counter, labels `kind`, `status`: retention runs.
    pub const RUNS: &str = "battlescope_retention_cleanup_runs_total";
    /// Gauge: unix seconds of the last finished run.
    pub const LAST_RUN: &str = "battlescope_retention_cleanup_last_run_timestamp";
}

/// The kind of data this service's rule covers.
pub const RAW_KILLMAILS: &str = "raw_killmails";

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
    /// `running`, `completed`, `failed`.
    pub status: String,
    pub error: Option<String>,
}

/// `now` minus `months` (None: no rule, keep forever).
pub fn cutoff(now: DateTime<Utc>, months: u32) -> Option<DateTime<Utc>> {
    if months == 0 {
        return None;
    }
    now.checked_sub_months(Months::new(months))
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
    .bind(to_millis(r.cutoff))
    .bind(to_millis(r.started_at))
    .bind(r.finished_at.map(to_millis))
    .bind(r.deleted)
    .bind(r.batches)
    .bind(r.status.clone())
    .bind(r.error.clone())
    .execute(db.pool())
    .await?;
    Ok(())
}

type RunRow = (
    String,
    String,
    i64,
    i64,
    Option<i64>,
    i64,
    i64,
    String,
    Option<String>,
);

/// The newest `limit` runs, newest first.
pub async fn runs(db: &Database, limit: i64) -> anyhow::Result<Vec<RetentionRun>> {
    let rows: Vec<RunRow> = sqlx::query_as(
        "SELECT id, kind, cutoff_ms, started_at, finished_at, deleted, batches, status, error FROM retention_runs \
         ORDER BY started_at DESC, kind LIMIT $1",
    )
    .bind(limit.clamp(1, 500))
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RetentionRun {
            id: r.0,
            kind: r.1,
            cutoff: from_millis(r.2),
            started_at: from_millis(r.3),
            finished_at: r.4.map(from_millis),
            deleted: r.5,
            batches: r.6,
            status: r.7,
            error: r.8,
        })
        .collect())
}

/// Deletes killmails older than the rule's cutoff, in batches of `batch`; records the run.
/// Returns `None` when no rule applies (months = 0).
pub async fn run(
    ctx: &IngestCtx,
    config: &LifecycleConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<RetentionRun>> {
    let now = ctx.clock.now();
    let Some(cut) = cutoff(now, config.raw_killmails_months) else {
        return Ok(None);
    };
    let db = ctx.store.database();
    let mut r = RetentionRun {
        id: uuid::Uuid::now_v7().to_string(),
        kind: RAW_KILLMAILS.into(),
        cutoff: cut,
        started_at: now,
        finished_at: None,
        deleted: 0,
        batches: 0,
        status: "running".into(),
        error: None,
    };
    save(db, &r).await?;
    let batch = i64::from(config.retention_batch.clamp(1, 10_000));
    let result = loop {
        if shutdown.is_cancelled() {
            break Ok(());
        }
        match delete_batch(db, to_millis(cut), batch, now).await {
            Ok(0) => break Ok(()),
            Ok(n) => {
                r.deleted += n as i64;
                r.batches += 1;
                metrics::counter!(metric::DELETED, "kind" => RAW_KILLMAILS).increment(n);
            }
            Err(e) => break Err(e),
        }
    };
    r.finished_at = Some(ctx.clock.now());
    match result {
        Ok(()) => r.status = "completed".into(),
        Err(e) => {
            r.status = "failed".into();
            r.error = Some(e.to_string());
        }
    }
    save(db, &r).await?;
    metrics::counter!(metric::RUNS, "kind" => RAW_KILLMAILS, "status" => r.status.clone())
        .increment(1);
    metrics::gauge!(metric::LAST_RUN).set(ctx.clock.now().timestamp() as f64);
    tracing::info!(kind = RAW_KILLMAILS, deleted = r.deleted, batches = r.batches, cutoff = %cut, status = %r.status, "retention run");
    Ok(Some(r))
}

/// One batch: the oldest `limit` rows before `cutoff_ms`, deleted with their events.
async fn delete_batch(
    db: &Database,
    cutoff_ms: i64,
    limit: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let mut tx = db.begin().await?;
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT killmail_id, occurred_at FROM killmail_events WHERE occurred_at < $1 ORDER BY occurred_at, killmail_id LIMIT $2",
    )
    .bind(cutoff_ms)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    for chunk in rows.chunks(90) {
        let sql = format!(
            "DELETE FROM killmail_events WHERE killmail_id IN ({})",
            (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut q = sqlx::query(dynamic_sql(sql));
        for (id, _) in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *tx).await?;
    }
    for (id, at) in &rows {
        let event = KillmailDeleted {
            killmail_id: *id,
            killmail_time: from_millis(*at),
            scope: "raw".into(),
            reason: DeletionReason::Retention,
        };
        bs_store::outbox::enqueue(&mut tx, &Envelope::wrap(&event, now)?).await?;
    }
    tx.commit().await?;
    db.outbox_notify();
    Ok(rows.len() as u64)
}

/// The daily scheduler.
pub struct Retention {
    pub config: LifecycleConfig,
}

impl Retention {
    pub async fn run(self, ctx: Arc<IngestCtx>, shutdown: CancellationToken) {
        let at = self.config.retention_minute().unwrap_or(120);
        loop {
            let last = runs(ctx.store.database(), 1)
                .await
                .ok()
                .and_then(|r| r.first().map(|r| r.started_at));
            if due(ctx.clock.now(), at, last)
                && let Err(e) = run(&ctx, &self.config, &shutdown).await
            {
                tracing::warn!(error = %e, "retention run failed");
            }
            if !pause(Duration::from_secs(60), &shutdown).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_runs_start_once_after_the_configured_time() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert!(!due(t("2026-12-01T01:59:00Z"), 120, None));
        assert!(due(t("2026-12-01T02:00:00Z"), 120, None));
        assert!(!due(
            t("2026-12-01T05:00:00Z"),
            120,
            Some(t("2026-12-01T02:00:10Z"))
        ));
        assert!(due(
            t("2026-12-02T02:01:00Z"),
            120,
            Some(t("2026-12-01T02:00:10Z"))
        ));
        assert!(
            !due(t("2026-12-01T05:00:00Z"), 120, None),
            "a late start waits for tomorrow"
        );
        assert_eq!(cutoff(t("2026-12-01T00:00:00Z"), 0), None);
        assert_eq!(
            cutoff(t("2026-12-01T00:00:00Z"), 60),
            Some(t("2021-12-01T00:00:00Z"))
        );
    }
}
