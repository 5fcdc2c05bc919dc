//! Daily verification against zKillboard, and gap detection at start-up.
//!
//! After a UTC day closes (at `lifecycle.verify_at`, and again for `lifecycle.verify_days`
//! days, because zKillboard keeps adding late kills) the day's ids from
//! `history/YYYYMMDD.json` are compared with the killmails stored for that day:
//!
//! * ids stored → `stored`;
//! * ids the *active* ruleset filters out (known from the rejects table: the stored input is
//!   re-judged with the current ruleset, so a ruleset change is honoured) or that are invalid
//!   killmails → `filtered`, never reported as missing;
//! * the rest are fetched from ESI by hash through the backfill path
//!   ([`backfill::fetch_body`]) and stored like any backfilled killmail (one transaction
//!   with their `killmail.ingested` outbox rows) → `repaired`, or `still_missing` when ESI
//!   cannot serve them.
//!
//! `history/totals.json` gives the day's zKillboard count, recorded beside the result and used
//! by gap detection. One row per day in `verification_days` holds the latest result.
//!
//! Gap detection: at start, every day since the last verified day (at most
//! `lifecycle.gap_window_days` back) that has no stored killmail but a non-zero zKillboard
//! total is queued (`verification_queue`); the scheduler works the queue before the daily
//! window. One `GROUP BY`-free day-count query covers the whole window.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bs_config::LifecycleConfig;
use bs_domain::KillmailSource;
use bs_store::{dynamic_sql, from_millis, to_millis};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::domain::RejectReason;
use crate::pipeline::Prepared;
use crate::sources::backfill::{self, Upstreams};
use crate::sources::{IngestCtx, pause};
use crate::store::{Batch, IngestionStore};

/// Metric names.
pub mod metric {
    /// Counter, label `outcome` (`repaired`, `still_missing`, `filtered`).
    pub const KILLMAILS: &str = "battlescope_daily_verification_killmails_total";
    /// Counter, label `status` (`complete`, `incomplete`, `failed`).
    pub const DAYS: &str = "battlescope_daily_verification_days_total";
    /// Gauge: unix seconds of the last finished verification.
    pub const LAST_RUN: &str = "battlescope_daily_verification_last_run_timestamp";
    /// Gauge: days waiting in the verification queue.
    pub const QUEUED: &str = "battlescope_daily_verification_queued_days";
}

/// At most this many still-missing ids are kept per day.
const MAX_MISSING_IDS: usize = 1000;
/// ESI bodies fetched and stored per transaction.
const REPAIR_CHUNK: usize = 50;

/// The result of verifying one day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DayVerification {
    pub day: NaiveDate,
    /// zKillboard's `totals.json` count (None: the day is not listed).
    pub zkb_total: Option<i64>,
    /// Ids in `history/YYYYMMDD.json`.
    pub listed: i64,
    /// Listed ids filtered by the active ruleset (or invalid killmails).
    pub filtered: i64,
    /// `listed - filtered`.
    pub expected: i64,
    /// Expected ids already stored before the repair.
    pub stored: i64,
    /// Fetched and stored by this verification.
    pub repaired: i64,
    pub still_missing: i64,
    pub missing_ids: Vec<i64>,
    /// `complete` (nothing missing), `incomplete` or `failed`.
    pub status: String,
    pub error: Option<String>,
    /// `daily`, `gap`, `manual`.
    pub reason: String,
    pub verified_at: DateTime<Utc>,
    pub duration_ms: i64,
}

/// A day waiting for verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueuedDay {
    pub day: NaiveDate,
    pub reason: String,
    pub queued_at: DateTime<Utc>,
}

fn day_range_ms(day: NaiveDate) -> (i64, i64) {
    let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    (to_millis(start), to_millis(start) + 86_400_000)
}

fn day_str(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

fn parse_day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

fn list(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Ids stored for `day` (kill time).
async fn stored_ids(ctx: &IngestCtx, day: NaiveDate) -> anyhow::Result<BTreeSet<i64>> {
    let (from, to) = day_range_ms(day);
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT killmail_id FROM killmail_events WHERE occurred_at >= $1 AND occurred_at < $2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(ctx.store.database().pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Rejects of these ids: id → (reason, stored input).
async fn rejects_of(
    ctx: &IngestCtx,
    ids: &[i64],
) -> anyhow::Result<HashMap<i64, Vec<(String, String)>>> {
    let mut out: HashMap<i64, Vec<(String, String)>> = HashMap::new();
    for chunk in ids.chunks(90) {
        let sql = format!(
            "SELECT killmail_id, reason, raw FROM ingest_rejects WHERE killmail_id IN ({})",
            list(chunk.len())
        );
        let mut q = sqlx::query_as::<_, (i64, String, String)>(dynamic_sql(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        for (id, reason, raw) in q.fetch_all(ctx.store.database().pool()).await? {
            out.entry(id).or_default().push((reason, raw));
        }
    }
    Ok(out)
}

fn is_ruleset_reason(reason: &str) -> bool {
    RejectReason::ALL
        .iter()
        .any(|r| r.is_ruleset() && r.as_str() == reason)
}

/// Reasons that say the killmail itself is bad (re-fetching cannot help).
fn is_invalid_reason(reason: &str) -> bool {
    !is_ruleset_reason(reason)
        && reason != RejectReason::BodyUnavailable.as_str()
        && reason != RejectReason::HashConflict.as_str()
}

/// What verification decided for one listed id that is not stored.
enum Judgement {
    Filtered,
    /// The stored input passes the current ruleset: store it without asking ESI.
    Readmit(Box<Prepared>),
    Fetch,
}

fn judge(
    ctx: &IngestCtx,
    hash: &str,
    rejects: Option<&Vec<(String, String)>>,
    now: DateTime<Utc>,
) -> Judgement {
    let Some(rejects) = rejects else {
        return Judgement::Fetch;
    };
    if rejects.iter().any(|(r, _)| is_invalid_reason(r)) {
        return Judgement::Filtered;
    }
    for (reason, raw) in rejects {
        if !is_ruleset_reason(reason) {
            continue;
        }
        // Re-judge the kept input with the active ruleset (a truncated input fails to parse
        // and is fetched again instead). The input may be a bare ESI body: the hash is
        // zKillboard's, exactly as the backfill path attaches it.
        let Ok(killmail) = bs_zkb::parse::parse_killmail(raw) else {
            continue;
        };
        let doc = bs_zkb::KillmailDoc {
            format: bs_zkb::DocumentFormat::Esi,
            wrapper_id: Some(killmail.killmail_id),
            killmail,
            hash: Some(hash.to_owned()),
            zkb: None,
            sequence_id: None,
            sequence_updated: None,
            uploaded_at: None,
        };
        match ctx
            .pipeline
            .prepare_doc(raw.as_bytes(), doc, KillmailSource::ZkbHistory, now)
        {
            Prepared::Reject(r) if is_ruleset_reason(&r.reason) => return Judgement::Filtered,
            p @ Prepared::Accept(_) => return Judgement::Readmit(Box::new(p)),
            _ => {}
        }
    }
    Judgement::Fetch
}

/// Verifies one day and records the result. Upstream errors are recorded as `failed`.
pub async fn verify_day(
    ctx: &IngestCtx,
    up: &Upstreams,
    day: NaiveDate,
    reason: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<DayVerification> {
    let started = Instant::now();
    let result = match verify_inner(ctx, up, day, reason, shutdown).await {
        Ok(Some(r)) => r,
        Ok(None) => anyhow::bail!("verification of {day} interrupted by shutdown"),
        Err(e) => DayVerification {
            day,
            zkb_total: None,
            listed: 0,
            filtered: 0,
            expected: 0,
            stored: 0,
            repaired: 0,
            still_missing: 0,
            missing_ids: Vec::new(),
            status: "failed".into(),
            error: Some(e.to_string()),
            reason: reason.to_owned(),
            verified_at: ctx.clock.now(),
            duration_ms: 0,
        },
    };
    let result = DayVerification {
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        ..result
    };
    record(ctx, &result).await?;
    metrics::counter!(metric::DAYS, "status" => result.status.clone()).increment(1);
    metrics::counter!(metric::KILLMAILS, "outcome" => "repaired").increment(result.repaired as u64);
    metrics::counter!(metric::KILLMAILS, "outcome" => "still_missing")
        .increment(result.still_missing as u64);
    metrics::counter!(metric::KILLMAILS, "outcome" => "filtered").increment(result.filtered as u64);
    metrics::gauge!(metric::LAST_RUN).set(result.verified_at.timestamp() as f64);
    tracing::info!(
        %day, expected = result.expected, stored = result.stored, repaired = result.repaired,
        still_missing = result.still_missing, status = %result.status, "day verified"
    );
    Ok(result)
}

async fn verify_inner(
    ctx: &IngestCtx,
    up: &Upstreams,
    day: NaiveDate,
    reason: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<DayVerification>> {
    let Some(totals) = retry(shutdown, || up.history.totals()).await? else {
        return Ok(None);
    };
    let Some(pairs) = retry(shutdown, || up.history.day(day)).await? else {
        return Ok(None);
    };
    let pairs: Vec<(i64, String)> = pairs.unwrap_or_default();
    let now = ctx.clock.now();
    let stored = stored_ids(ctx, day).await?;
    let absent: Vec<(i64, String)> = pairs
        .iter()
        .filter(|(id, _)| !stored.contains(id))
        .cloned()
        .collect();
    let absent_ids: Vec<i64> = absent.iter().map(|p| p.0).collect();
    let rejects = rejects_of(ctx, &absent_ids).await?;
    let mut filtered = 0i64;
    let mut readmit = Vec::new();
    let mut fetch = Vec::new();
    for (id, hash) in absent {
        match judge(ctx, &hash, rejects.get(&id), now) {
            Judgement::Filtered => filtered += 1,
            Judgement::Readmit(p) => readmit.push(*p),
            Judgement::Fetch => fetch.push((id, hash)),
        }
    }
    let mut repaired: BTreeSet<i64> = BTreeSet::new();
    if !readmit.is_empty() {
        repaired.extend(store_prepared(ctx, readmit).await?);
    }
    for chunk in fetch.chunks(REPAIR_CHUNK) {
        let mut prepared = Vec::with_capacity(chunk.len());
        for (id, hash) in chunk {
            match backfill::fetch_body(
                ctx,
                &up.esi,
                *id,
                hash,
                KillmailSource::ZkbHistory,
                shutdown,
            )
            .await
            {
                Some(Prepared::Reject(r)) if is_ruleset_reason(&r.reason) => {
                    filtered += 1;
                    prepared.push(Prepared::Reject(r));
                }
                Some(Prepared::Reject(r)) if is_invalid_reason(&r.reason) => {
                    filtered += 1;
                    prepared.push(Prepared::Reject(r));
                }
                Some(p) => prepared.push(p),
                None => return Ok(None),
            }
        }
        repaired.extend(store_prepared(ctx, prepared).await?);
    }
    // What is stored now decides what is still missing (a concurrent live insert counts).
    let after = stored_ids(ctx, day).await?;
    let listed = pairs.len() as i64;
    let expected = listed - filtered;
    let still: Vec<i64> = fetch
        .iter()
        .map(|p| p.0)
        .filter(|id| !after.contains(id))
        .filter(|id| !repaired.contains(id))
        .collect();
    // Fetched ids the ruleset filtered are not missing.
    let filtered_fetched: BTreeSet<i64> = rejects_of(ctx, &still)
        .await?
        .into_iter()
        .filter(|(_, rs)| {
            rs.iter()
                .any(|(r, _)| is_ruleset_reason(r) || is_invalid_reason(r))
        })
        .map(|(id, _)| id)
        .collect();
    let missing: Vec<i64> = still
        .into_iter()
        .filter(|id| !filtered_fetched.contains(id))
        .collect();
    let stored_before = pairs.iter().filter(|(id, _)| stored.contains(id)).count() as i64;
    Ok(Some(DayVerification {
        day,
        zkb_total: totals.get(&day).map(|n| *n as i64),
        listed,
        filtered,
        expected,
        stored: stored_before,
        repaired: repaired.len() as i64,
        still_missing: missing.len() as i64,
        status: if missing.is_empty() {
            "complete".into()
        } else {
            "incomplete".into()
        },
        missing_ids: missing.into_iter().take(MAX_MISSING_IDS).collect(),
        error: None,
        reason: reason.to_owned(),
        verified_at: ctx.clock.now(),
        duration_ms: 0,
    }))
}

/// Stores prepared documents as one batch; returns the ids really inserted.
async fn store_prepared(ctx: &IngestCtx, prepared: Vec<Prepared>) -> anyhow::Result<Vec<i64>> {
    let mut batch = Batch::default();
    for p in prepared {
        match p {
            Prepared::Accept(k) => batch.killmails.push(*k),
            Prepared::Reject(r) => batch.rejects.push(r),
            Prepared::Reference { .. } | Prepared::Empty => {}
        }
    }
    let outcome = ctx.store.apply(batch, ctx.clock.now()).await?;
    Ok(outcome.inserted)
}

async fn retry<T, F, Fut>(shutdown: &CancellationToken, mut f: F) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, bs_zkb::FetchError>>,
{
    let mut attempt = 0u32;
    loop {
        match f().await {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.is_transient() && attempt < 8 => {
                if !pause(
                    Duration::from_millis(250 * 2u64.pow(attempt.min(6))),
                    shutdown,
                )
                .await
                {
                    return Ok(None);
                }
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn record(ctx: &IngestCtx, r: &DayVerification) -> anyhow::Result<()> {
    let mut tx = ctx.store.database().begin().await?;
    sqlx::query(
        "INSERT INTO verification_days (day, zkb_total, listed, filtered, expected, stored, repaired, still_missing, missing_ids, \
         status, error, reason, verified_at, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (day) DO UPDATE SET zkb_total = excluded.zkb_total, listed = excluded.listed, filtered = excluded.filtered, \
         expected = excluded.expected, stored = excluded.stored, repaired = excluded.repaired, still_missing = excluded.still_missing, \
         missing_ids = excluded.missing_ids, status = excluded.status, error = excluded.error, reason = excluded.reason, \
         verified_at = excluded.verified_at, duration_ms = excluded.duration_ms",
    )
    .bind(day_str(r.day))
    .bind(r.zkb_total)
    .bind(r.listed)
    .bind(r.filtered)
    .bind(r.expected)
    .bind(r.stored)
    .bind(r.repaired)
    .bind(r.still_missing)
    .bind(serde_json::to_string(&r.missing_ids)?)
    .bind(r.status.clone())
    .bind(r.error.clone())
    .bind(r.reason.clone())
    .bind(to_millis(r.verified_at))
    .bind(r.duration_ms)
    .execute(&mut *tx)
    .await?;
    if r.status != "failed" {
        sqlx::query("DELETE FROM verification_queue WHERE day = $1")
            .bind(day_str(r.day))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

type DayRow = (
    String,
    Option<i64>,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    String,
    String,
    Option<String>,
    String,
    i64,
    i64,
);

/// The latest verification of the newest `limit` days, newest first.
pub async fn history(ctx: &IngestCtx, limit: i64) -> anyhow::Result<Vec<DayVerification>> {
    let rows: Vec<DayRow> = sqlx::query_as(
        "SELECT day, zkb_total, listed, filtered, expected, stored, repaired, still_missing, missing_ids, status, error, reason, \
         verified_at, duration_ms FROM verification_days ORDER BY day DESC LIMIT $1",
    )
    .bind(limit.clamp(1, 1000))
    .fetch_all(ctx.store.database().pool())
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(DayVerification {
                day: parse_day(&r.0)?,
                zkb_total: r.1,
                listed: r.2,
                filtered: r.3,
                expected: r.4,
                stored: r.5,
                repaired: r.6,
                still_missing: r.7,
                missing_ids: serde_json::from_str(&r.8).unwrap_or_default(),
                status: r.9,
                error: r.10,
                reason: r.11,
                verified_at: from_millis(r.12),
                duration_ms: r.13,
            })
        })
        .collect())
}

/// Days waiting for verification, oldest first.
pub async fn queued(ctx: &IngestCtx) -> anyhow::Result<Vec<QueuedDay>> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT day, reason, queued_at FROM verification_queue ORDER BY day")
            .fetch_all(ctx.store.database().pool())
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(d, reason, at)| {
            Some(QueuedDay {
                day: parse_day(&d)?,
                reason,
                queued_at: from_millis(at),
            })
        })
        .collect())
}

/// Queues days (idempotent: a queued day keeps its first reason).
pub async fn enqueue(ctx: &IngestCtx, days: &[NaiveDate], reason: &str) -> anyhow::Result<()> {
    let now = to_millis(ctx.clock.now());
    let mut tx = ctx.store.database().begin().await?;
    for d in days {
        sqlx::query(
            "INSERT INTO verification_queue (day, reason, queued_at) VALUES ($1, $2, $3) ON CONFLICT (day) DO NOTHING",
        )
        .bind(day_str(*d))
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The last verified day (any status but failed).
pub async fn last_verified(ctx: &IngestCtx) -> anyhow::Result<Option<NaiveDate>> {
    let (d,): (Option<String>,) =
        sqlx::query_as("SELECT MAX(day) FROM verification_days WHERE status <> 'failed'")
            .fetch_one(ctx.store.database().pool())
            .await?;
    Ok(d.as_deref().and_then(parse_day))
}

/// Pure: the days of `from..=to` with no stored killmail but a non-zero zKillboard total
/// (when totals are known; without totals every empty day is a gap).
pub fn gap_days(
    from: NaiveDate,
    to: NaiveDate,
    local: &BTreeMap<NaiveDate, i64>,
    totals: Option<&BTreeMap<NaiveDate, u64>>,
) -> Vec<NaiveDate> {
    from.iter_days()
        .take_while(|d| *d <= to)
        .filter(|d| local.get(d).copied().unwrap_or(0) == 0)
        .filter(|d| totals.is_none_or(|t| t.get(d).copied().unwrap_or(0) > 0))
        .collect()
}

/// Start-up gap detection: queues the days since the last verified day (at most
/// `window_days` back, up to yesterday) that have no data. Returns the queued days.
pub async fn detect_gaps(
    ctx: &IngestCtx,
    up: Option<&Upstreams>,
    window_days: u32,
) -> anyhow::Result<Vec<NaiveDate>> {
    if window_days == 0 {
        return Ok(Vec::new());
    }
    let today = ctx.clock.now().date_naive();
    let Some(yesterday) = today.checked_sub_days(Days::new(1)) else {
        return Ok(Vec::new());
    };
    let floor = today
        .checked_sub_days(Days::new(u64::from(window_days)))
        .unwrap_or(today);
    let from = match last_verified(ctx).await? {
        Some(d) => d.succ_opt().unwrap_or(d).max(floor),
        // Never verified: start at the oldest stored day in the window (a fresh, empty
        // install does not backfill on its own).
        None => {
            let (min,): (Option<i64>,) = sqlx::query_as(
                "SELECT MIN(occurred_at) FROM killmail_events WHERE occurred_at >= $1",
            )
            .bind(day_range_ms(floor).0)
            .fetch_one(ctx.store.database().pool())
            .await?;
            match min {
                Some(ms) => from_millis(ms).date_naive(),
                None => return Ok(Vec::new()),
            }
        }
    };
    if from > yesterday {
        return Ok(Vec::new());
    }
    let local = ctx.store.day_counts(from, yesterday).await?;
    let totals = match up {
        Some(up) => up.history.totals().await.ok(),
        None => None,
    };
    let gaps = gap_days(from, yesterday, &local, totals.as_ref());
    if !gaps.is_empty() {
        enqueue(ctx, &gaps, "gap").await?;
        tracing::warn!(days = gaps.len(), first = %gaps[0], "days without data queued for verification");
    }
    Ok(gaps)
}

/// Pure: the closed days due for the daily verification at `now`: the last `window` days that
/// closed at least `at_minute` minutes ago.
pub fn due_days(now: DateTime<Utc>, at_minute: u32, window: u32) -> Vec<NaiveDate> {
    let today = now.date_naive();
    let minute = now.time().hour_minute();
    // Before the verification time, yesterday is not due yet.
    let newest = if minute >= at_minute {
        today.checked_sub_days(Days::new(1))
    } else {
        today.checked_sub_days(Days::new(2))
    };
    let Some(newest) = newest else {
        return Vec::new();
    };
    (0..u64::from(window.max(1)))
        .filter_map(|i| newest.checked_sub_days(Days::new(i)))
        .rev()
        .collect()
}

trait HourMinute {
    fn hour_minute(&self) -> u32;
}

impl HourMinute for chrono::NaiveTime {
    fn hour_minute(&self) -> u32 {
        use chrono::Timelike as _;
        self.hour() * 60 + self.minute()
    }
}

/// The scheduler: gap detection once, then the queue and the daily window, forever.
pub struct Verifier {
    pub upstreams: Upstreams,
    pub config: LifecycleConfig,
}

impl Verifier {
    pub async fn run(self, ctx: Arc<IngestCtx>, shutdown: CancellationToken) {
        let at = self.config.verify_minute().unwrap_or(180);
        if let Err(e) = detect_gaps(&ctx, Some(&self.upstreams), self.config.gap_window_days).await
        {
            tracing::warn!(error = %e, "gap detection failed");
        }
        // Days verified by the daily window in this process (a `complete` day is not redone;
        // an incomplete one is retried on the next pass, i.e. hourly).
        let mut done: HashMap<NaiveDate, DateTime<Utc>> = HashMap::new();
        loop {
            if let Err(e) = self.pass(&ctx, at, &mut done, &shutdown).await {
                tracing::warn!(error = %e, "verification pass failed");
            }
            if !pause(Duration::from_secs(60), &shutdown).await {
                return;
            }
        }
    }

    async fn pass(
        &self,
        ctx: &IngestCtx,
        at: u32,
        done: &mut HashMap<NaiveDate, DateTime<Utc>>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let queue = queued(ctx).await?;
        metrics::gauge!(metric::QUEUED).set(queue.len() as f64);
        for q in queue {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            verify_day(ctx, &self.upstreams, q.day, &q.reason, shutdown).await?;
        }
        let now = ctx.clock.now();
        let recorded: HashMap<NaiveDate, DayVerification> = history(ctx, 64)
            .await?
            .into_iter()
            .map(|d| (d.day, d))
            .collect();
        for day in due_days(now, at, self.config.verify_days) {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            // Each closed day is verified once per day of the window (late kills appear
            // for a few days); incomplete or failed days are retried hourly.
            let last = done
                .get(&day)
                .copied()
                .or_else(|| recorded.get(&day).map(|d| d.verified_at));
            let fresh = last.is_some_and(|t| {
                let ok = recorded.get(&day).is_some_and(|d| d.status == "complete");
                if ok {
                    t.date_naive() == now.date_naive()
                } else {
                    now - t < chrono::Duration::hours(1)
                }
            });
            if fresh {
                continue;
            }
            let r = verify_day(ctx, &self.upstreams, day, "daily", shutdown).await?;
            done.insert(day, r.verified_at);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_day(s).unwrap()
    }

    #[test]
    fn due_days_wait_for_the_configured_time() {
        let early: DateTime<Utc> = "2021-12-03T02:59:00Z".parse().unwrap();
        assert_eq!(
            due_days(early, 180, 2),
            vec![d("2021-11-30"), d("2021-12-01")]
        );
        let late: DateTime<Utc> = "2021-12-03T03:00:00Z".parse().unwrap();
        assert_eq!(
            due_days(late, 180, 2),
            vec![d("2021-12-01"), d("2021-12-02")]
        );
        assert_eq!(due_days(late, 180, 0), vec![d("2021-12-02")]);
    }

    #[test]
    fn gaps_are_empty_days_zkillboard_has_kills_for() {
        let local: BTreeMap<NaiveDate, i64> = [(d("2021-11-27"), 5), (d("2021-11-29"), 1)].into();
        let totals: BTreeMap<NaiveDate, u64> = [
            (d("2021-11-27"), 5),
            (d("2021-11-28"), 9),
            (d("2021-11-29"), 1),
        ]
        .into();
        let from = d("2021-11-27");
        let to = d("2021-11-30");
        assert_eq!(
            gap_days(from, to, &local, Some(&totals)),
            vec![d("2021-11-28")]
        );
        assert_eq!(
            gap_days(from, to, &local, None),
            vec![d("2021-11-28"), d("2021-11-30")]
        );
    }
}
