//! The retention machinery every service shares: the record of a run, the daily schedule,
//! and the batch loop around a service's own "delete one batch" step.
//!
//! What a rule deletes, and what it announces (a `killmail.deleted` in the outbox, an audit
//! anchor, …), stays in the owning service: only the service knows its tables. What is the
//! same everywhere lives here, so every service's runs look, count and schedule alike:
//!
//! * each service's database has a `retention_runs` table (same columns in every service's
//!   migrations) with one row per (run id, kind); a run is saved as `running` first, so a
//!   crash mid-run leaves a visible trace, and then with its totals and final status;
//! * a rule runs in batches, each batch one transaction of the service, until a batch deletes
//!   nothing or shutdown is requested; a failing batch fails the run (recorded with its error)
//!   without touching the batches already committed;
//! * the scheduler runs once a day, only in the two hours after `lifecycle.retention_at`
//!   (never at start-up: an offline demo's years-old data must not vanish because the process
//!   happened to start at noon).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bs_store::sqlx::{self, Row as _};
use bs_store::{Database, dynamic_sql, from_millis, to_millis};
use chrono::{DateTime, Months, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::Clock;

/// Metric names, shared by every service (told apart by the `kind` label).
pub mod metric {
    /// Counter, label `kind`: rows deleted by retention.
    pub const DELETED: &str = "battlescope_retention_cleanup_deleted_total";
    /// Counter, labels `kind`, `status`: finished retention runs.
    pub const RUNS: &str = "battlescope_retention_cleanup_runs_total";
    /// Gauge, label `kind`: unix seconds of the last finished run.
    pub const LAST_RUN: &str = "battlescope_retention_cleanup_last_run_timestamp";
}

/// One kind of data cleaned by one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRun {
    pub id: String,
    pub kind: String,
    pub cutoff: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deleted: i64,
    pub batches: i64,
    /// `running`, `completed` or `failed`.
    pub status: String,
    pub error: Option<String>,
}

/// A run id: start time plus a process-wide sequence, so two runs started in the same
/// millisecond (a manual run beside the scheduled one) never share a row.
pub fn run_id(at: DateTime<Utc>) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        at.timestamp_millis(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// `now` minus `months`; `None` for 0 (the rule is off: keep forever).
pub fn months_cutoff(now: DateTime<Utc>, months: u32) -> Option<DateTime<Utc>> {
    (months > 0)
        .then(|| now.checked_sub_months(Months::new(months)))
        .flatten()
}

/// `now` minus `days`; `None` for 0 (the rule is off: keep forever).
pub fn days_cutoff(now: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    (days > 0)
        .then(|| now.checked_sub_signed(TimeDelta::days(i64::from(days))))
        .flatten()
}

/// Pure: is the daily run due at `now`, given the configured minute of the day and the
/// start of the last run? Only inside the two hours after the configured time, and once a
/// day: a process started later in the day waits for tomorrow.
pub fn due(now: DateTime<Utc>, at_minute: u32, last_started: Option<DateTime<Utc>>) -> bool {
    use chrono::Timelike as _;
    let minute = now.hour() * 60 + now.minute();
    if minute < at_minute || minute >= at_minute + 120 {
        return false;
    }
    let today_at = now
        .date_naive()
        .and_hms_opt(at_minute / 60, at_minute % 60, 0)
        .unwrap_or_default()
        .and_utc();
    last_started.is_none_or(|t| t < today_at)
}

/// Inserts or updates a run's row.
pub async fn save_run(db: &Database, r: &RetentionRun) -> anyhow::Result<()> {
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

/// The newest `limit` runs (clamped to 1..=500), newest first.
pub async fn recent_runs(db: &Database, limit: i64) -> anyhow::Result<Vec<RetentionRun>> {
    let rows = sqlx::query(
        "SELECT id, kind, cutoff_ms, started_at, finished_at, deleted, batches, status, error FROM retention_runs \
         ORDER BY started_at DESC, kind LIMIT $1",
    )
    .bind(limit.clamp(1, 500))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RetentionRun {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                cutoff: from_millis(r.try_get(2)?),
                started_at: from_millis(r.try_get(3)?),
                finished_at: r.try_get::<Option<i64>, _>(4)?.map(from_millis),
                deleted: r.try_get(5)?,
                batches: r.try_get(6)?,
                status: r.try_get(7)?,
                error: r.try_get(8)?,
            })
        })
        .collect()
}

/// Runs one rule: records the run, calls `batch` until it deletes nothing (it returns the
/// rows it deleted and committed) or shutdown is requested, then records the totals and the
/// status and counts them in metrics. Only a failure to record the run is an `Err`; a failing
/// batch ends the run as `failed` with its error.
pub async fn run_batches<F, Fut>(
    db: &Database,
    clock: &dyn Clock,
    id: &str,
    kind: &'static str,
    cutoff: DateTime<Utc>,
    shutdown: &CancellationToken,
    mut batch: F,
) -> anyhow::Result<RetentionRun>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<u64>>,
{
    let mut r = RetentionRun {
        id: id.to_owned(),
        kind: kind.to_owned(),
        cutoff,
        started_at: clock.now(),
        finished_at: None,
        deleted: 0,
        batches: 0,
        status: "running".into(),
        error: None,
    };
    save_run(db, &r).await?;
    let result = loop {
        if shutdown.is_cancelled() {
            break Ok(());
        }
        match batch().await {
            Ok(0) => break Ok(()),
            Ok(n) => {
                r.deleted += i64::try_from(n).unwrap_or(i64::MAX);
                r.batches += 1;
                metrics::counter!(metric::DELETED, "kind" => kind).increment(n);
            }
            Err(e) => break Err(e),
        }
    };
    r.finished_at = Some(clock.now());
    match result {
        Ok(()) => r.status = "completed".into(),
        Err(e) => {
            r.status = "failed".into();
            r.error = Some(format!("{e:#}"));
        }
    }
    save_run(db, &r).await?;
    metrics::counter!(metric::RUNS, "kind" => kind, "status" => r.status.clone()).increment(1);
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(metric::LAST_RUN, "kind" => kind).set(clock.now().timestamp() as f64);
    if r.status == "failed" {
        tracing::warn!(kind, deleted = r.deleted, batches = r.batches, cutoff = %cutoff, error = r.error.as_deref().unwrap_or(""), "retention run failed");
    } else {
        tracing::info!(kind, deleted = r.deleted, batches = r.batches, cutoff = %cutoff, "retention run");
    }
    Ok(r)
}

/// The daily scheduler: every minute, asks whether a run is due (by the start of the newest
/// run in `db`'s `retention_runs`) and if so awaits `job`; returns when `shutdown` fires.
/// `service` names the service in the log line of a failed job.
pub async fn run_daily<F, Fut>(
    db: Database,
    clock: Arc<dyn Clock>,
    at_minute: u32,
    service: &'static str,
    shutdown: CancellationToken,
    mut job: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    loop {
        let last = recent_runs(&db, 1)
            .await
            .ok()
            .and_then(|r| r.first().map(|r| r.started_at));
        if due(clock.now(), at_minute, last)
            && let Err(e) = job().await
        {
            tracing::warn!(service, error = %e, "retention run failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// `DELETE FROM {table} WHERE {column} IN (…)` for `ids`, in statements of at most `chunk`
/// ids, inside the caller's transaction; returns the rows deleted. `table` and `column` are
/// the caller's constants, never input.
pub async fn delete_ids(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    table: &str,
    column: &str,
    ids: &[i64],
    chunk: usize,
) -> anyhow::Result<u64> {
    let mut deleted = 0;
    for part in ids.chunks(chunk.max(1)) {
        let list = (1..=part.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut q = sqlx::query(dynamic_sql(format!(
            "DELETE FROM {table} WHERE {column} IN ({list})"
        )));
        for id in part {
            q = q.bind(*id);
        }
        deleted += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(deleted)
}

/// One batch of a rule over stored killmails: `select` (binding `$1` = cutoff in unix ms,
/// `$2` = limit) yields `(killmail_id, kill time in unix ms)` rows; they are deleted from
/// `table` and one `killmail.deleted` of `scope` each is enqueued in the outbox, in one
/// transaction, so consumers never miss a deletion nor hear of one that rolled back.
pub async fn delete_killmails_batch(
    db: &Database,
    select: &'static str,
    table: &'static str,
    scope: &'static str,
    cutoff_ms: i64,
    limit: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<u64> {
    use bs_events::{DeletionReason, Envelope, KillmailDeleted};
    let mut tx = db.begin().await?;
    let rows: Vec<(i64, i64)> = sqlx::query_as(select)
        .bind(cutoff_ms)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    delete_ids(&mut tx, table, "killmail_id", &ids, 90).await?;
    for (id, at) in &rows {
        let event = KillmailDeleted {
            killmail_id: *id,
            killmail_time: from_millis(*at),
            scope: scope.into(),
            reason: DeletionReason::Retention,
        };
        bs_store::outbox::enqueue(&mut tx, &Envelope::wrap(&event, now)?).await?;
    }
    tx.commit().await?;
    db.outbox_notify();
    Ok(rows.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn daily_runs_start_once_in_the_two_hours_after_the_configured_time() {
        assert!(!due(t("2026-12-01T01:59:00Z"), 120, None));
        assert!(due(t("2026-12-01T02:00:00Z"), 120, None));
        assert!(due(t("2026-12-01T03:59:00Z"), 120, None));
        assert!(
            !due(t("2026-12-01T04:00:00Z"), 120, None),
            "a late start waits for tomorrow"
        );
        let ran = Some(t("2026-12-01T02:00:10Z"));
        assert!(!due(t("2026-12-01T02:30:00Z"), 120, ran), "once a day");
        assert!(due(t("2026-12-02T02:01:00Z"), 120, ran));
        assert!(
            due(
                t("2026-12-01T02:30:00Z"),
                120,
                Some(t("2026-11-30T02:00:00Z"))
            ),
            "yesterday's run does not count"
        );
    }

    #[test]
    fn a_zero_rule_keeps_forever() {
        let now = t("2026-12-01T00:00:00Z");
        assert_eq!(months_cutoff(now, 0), None);
        assert_eq!(days_cutoff(now, 0), None);
        assert_eq!(months_cutoff(now, 60), Some(t("2021-12-01T00:00:00Z")));
        assert_eq!(days_cutoff(now, 30), Some(t("2026-11-01T00:00:00Z")));
    }

    #[test]
    fn run_ids_are_unique_within_one_millisecond() {
        let now = t("2026-12-01T00:00:00Z");
        assert_ne!(run_id(now), run_id(now));
        assert!(run_id(now).starts_with(&now.timestamp_millis().to_string()));
    }

    struct Fixed(DateTime<Utc>);

    impl Clock for Fixed {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    async fn database() -> Database {
        let path = std::env::temp_dir().join(format!(
            "bs-runtime-retention-{}-{}.db",
            std::process::id(),
            run_id(Utc::now())
        ));
        let db = Database::open(&bs_store::StoreTarget::Sqlite(path), 1)
            .await
            .unwrap();
        for sql in [
            "CREATE TABLE retention_runs (id TEXT NOT NULL, kind TEXT NOT NULL, cutoff_ms BIGINT NOT NULL, \
             started_at BIGINT NOT NULL, finished_at BIGINT, deleted BIGINT NOT NULL, batches BIGINT NOT NULL, \
             status TEXT NOT NULL, error TEXT, PRIMARY KEY (id, kind))",
            "CREATE TABLE items (id BIGINT PRIMARY KEY)",
        ] {
            sqlx::query(sql).execute(db.pool()).await.unwrap();
        }
        db
    }

    #[tokio::test]
    async fn a_run_deletes_in_batches_until_nothing_is_left_and_records_its_totals() {
        let db = database().await;
        for id in 0..25_i64 {
            sqlx::query("INSERT INTO items (id) VALUES ($1)")
                .bind(id)
                .execute(db.pool())
                .await
                .unwrap();
        }
        let clock = Fixed(t("2026-12-01T02:00:00Z"));
        let step = || async {
            let mut tx = db.begin().await?;
            let ids: Vec<(i64,)> = sqlx::query_as("SELECT id FROM items ORDER BY id LIMIT 10")
                .fetch_all(&mut *tx)
                .await?;
            let ids: Vec<i64> = ids.into_iter().map(|(id,)| id).collect();
            let n = delete_ids(&mut tx, "items", "id", &ids, 3).await?;
            tx.commit().await?;
            Ok(n)
        };
        let cut = t("2026-11-01T00:00:00Z");
        let token = CancellationToken::new();
        let run = run_batches(&db, &clock, "r1", "items", cut, &token, step)
            .await
            .unwrap();
        assert_eq!((run.deleted, run.batches), (25, 3));
        assert_eq!(run.status, "completed");
        let left: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM items")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(left.0, 0);
        assert_eq!(recent_runs(&db, 5).await.unwrap(), vec![run]);
    }

    #[tokio::test]
    async fn a_failing_batch_fails_the_run_and_keeps_what_was_committed() {
        let db = database().await;
        let clock = Fixed(t("2026-12-01T02:00:00Z"));
        let mut calls = 0;
        let step = || {
            calls += 1;
            let n = calls;
            async move {
                if n == 1 {
                    Ok(7)
                } else {
                    Err(anyhow::anyhow!("disk on fire"))
                }
            }
        };
        let token = CancellationToken::new();
        let run = run_batches(&db, &clock, "r2", "items", clock.0, &token, step)
            .await
            .unwrap();
        assert_eq!((run.deleted, run.batches), (7, 1));
        assert_eq!(run.status, "failed");
        assert_eq!(run.error.as_deref(), Some("disk on fire"));
        let stored = recent_runs(&db, 1).await.unwrap();
        assert_eq!(stored[0].status, "failed");
    }

    #[tokio::test]
    async fn a_cancelled_run_stops_before_its_next_batch() {
        let db = database().await;
        let clock = Fixed(t("2026-12-01T02:00:00Z"));
        let token = CancellationToken::new();
        token.cancel();
        // A batch that ran would fail the run.
        let run = run_batches(&db, &clock, "r3", "items", clock.0, &token, || async {
            Err::<u64, _>(anyhow::anyhow!("a batch started after shutdown"))
        })
        .await
        .unwrap();
        assert_eq!(
            (run.deleted, run.batches, run.status.as_str()),
            (0, 0, "completed")
        );
    }
}
