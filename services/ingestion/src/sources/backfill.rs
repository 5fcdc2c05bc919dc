//! Backfill jobs: zKillboard history (id → hash per day, bodies from ESI) and
//! EVE Ref daily archives.
//!
//! A job is a row in `backfill_jobs`; each finished day is a row in
//! `backfill_days`, so a restarted job skips the days it already did
//! (resumable per day) and re-running a day adds nothing (every write is
//! deduplicated). Jobs run one at a time by default
//! (`ingestion.backfill_concurrency`), are cancelled by moving them to
//! `cancelled` (checked between batches), and report progress in memory
//! ([`Progress`]) for the API and the terminal.
//!
//! zKillboard history days are fetched only when they differ: the runner
//! compares `history/totals.json` with local per-day counts, and fetches
//! from ESI only ids not already stored or rejected (ESI allows ~2 killmails/s).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bs_domain::KillmailSource;
use bs_esi::{EsiClient, EsiError};
use bs_zkb::everef::EverefClient;
use bs_zkb::history::HistoryClient;
use bs_zkb::{DocumentFormat, KillmailDoc, parse::parse_killmail};
use chrono::{Days, NaiveDate};
use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{IngestCtx, pause};
use crate::domain::{RejectReason, Rejection};
use crate::pipeline::{Prepared, reject_record};
use crate::store::{Batch, BatchOutcome, GapRecord, IngestionStore, JobRecord};

/// Sources a job can use.
pub const SOURCES: &[&str] = &["zkb_history", "everef"];
/// The longest range one job may cover.
pub const MAX_DAYS: i64 = 3660;

/// Live progress of a running job.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Progress {
    pub percent: f64,
    pub killmails_per_second: f64,
    pub eta_seconds: Option<f64>,
    pub current_day: Option<NaiveDate>,
}

/// Progress of every job this process runs.
#[derive(Debug, Default)]
pub struct Registry {
    progress: Mutex<HashMap<String, Progress>>,
}

impl Registry {
    pub fn get(&self, id: &str) -> Option<Progress> {
        self.progress.lock().get(id).cloned()
    }
    fn set(&self, id: &str, p: Progress) {
        self.progress.lock().insert(id.to_owned(), p);
    }
}

/// Upstream clients a job needs.
#[derive(Clone)]
pub struct Upstreams {
    pub history: HistoryClient,
    pub everef: EverefClient,
    pub esi: EsiClient,
}

impl Upstreams {
    pub fn from_config(config: &bs_config::Config) -> anyhow::Result<Self> {
        let contact = &config.contact;
        let mut esi = bs_esi::EsiConfig::for_url(config.esi.url.clone());
        esi.user_agent = bs_zkb::user_agent(contact);
        esi.compatibility_date = config.esi.compatibility_date.clone();
        esi.max_concurrency = config.esi.max_concurrency.max(1) as usize;
        Ok(Self {
            history: HistoryClient::new(
                &config.ingestion.r2z2_url,
                contact,
                config.ingestion.r2z2_requests_per_second,
            )?,
            everef: EverefClient::new(&config.ingestion.everef_url, contact)?,
            esi: EsiClient::new(esi)?,
        })
    }
}

/// Creates a pending job.
pub async fn create_job(
    ctx: &IngestCtx,
    source: &str,
    from: NaiveDate,
    to: NaiveDate,
    note: &str,
) -> anyhow::Result<JobRecord> {
    anyhow::ensure!(
        SOURCES.contains(&source),
        "unknown backfill source `{source}` (one of: {})",
        SOURCES.join(", ")
    );
    anyhow::ensure!(from <= to, "from {from} is after to {to}");
    let days = (to - from).num_days() + 1;
    anyhow::ensure!(days <= MAX_DAYS, "{days} days is more than {MAX_DAYS}");
    let job = JobRecord {
        id: uuid::Uuid::now_v7().to_string(),
        source: source.to_owned(),
        from_day: from,
        to_day: to,
        status: "pending".into(),
        note: note.to_owned(),
        created_at: ctx.clock.now(),
        started_at: None,
        finished_at: None,
        days_total: days,
        days_done: 0,
        killmails_seen: 0,
        killmails_new: 0,
        error: None,
    };
    ctx.store.create_job(&job).await?;
    Ok(job)
}

/// Queues the history repair of an expired R2Z2 range. The days: from three
/// days (zKillboard's longest publication delay) before the older of the
/// outage start and the newest stored live kill, to today; only days whose
/// counts differ from `totals.json` are fetched.
pub async fn queue_repair(
    ctx: &IngestCtx,
    gap: &GapRecord,
    after_gap: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<String> {
    let now = ctx.clock.now();
    let newest_live = ctx
        .store
        .recent(1)
        .await?
        .first()
        .map(|k| k.occurred_at)
        .unwrap_or(now);
    // The kill time of the first entry after the gap bounds it too (sequences are not in kill-time order).
    let from = newest_live
        .min(after_gap.unwrap_or(now))
        .min(now)
        .date_naive()
        - Days::new(3);
    let job = create_job(
        ctx,
        "zkb_history",
        from,
        now.date_naive(),
        &format!(
            "repair of expired r2z2 sequences {}..={}",
            gap.first_sequence, gap.last_sequence
        ),
    )
    .await?;
    Ok(job.id)
}

/// Runs pending jobs one after another until shutdown.
pub struct BackfillRunner {
    pub upstreams: Upstreams,
    pub registry: Arc<Registry>,
}

impl BackfillRunner {
    pub async fn run(self, ctx: Arc<IngestCtx>, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let next = match ctx.store.jobs(200).await {
                // Oldest first; a job left `running` by a crash is resumed.
                Ok(jobs) => jobs
                    .into_iter()
                    .rev()
                    .find(|j| j.status == "pending" || j.status == "running"),
                Err(e) => {
                    tracing::warn!(error = %e, "listing backfill jobs failed");
                    None
                }
            };
            match next {
                Some(job) => {
                    if let Err(e) = run_job(
                        &ctx,
                        &self.upstreams,
                        &self.registry,
                        &job.id,
                        &shutdown,
                        None,
                    )
                    .await
                    {
                        tracing::warn!(job = %job.id, error = %e, "backfill job failed");
                    }
                }
                None => {
                    if !pause(Duration::from_millis(500), &shutdown).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Runs one job to the end (or until cancelled/shutdown). `bar` shows progress on a terminal.
pub async fn run_job(
    ctx: &IngestCtx,
    up: &Upstreams,
    registry: &Registry,
    job_id: &str,
    shutdown: &CancellationToken,
    bar: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<JobRecord> {
    let job = ctx
        .store
        .job(job_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no job {job_id}"))?;
    if !ctx
        .store
        .transition_job(
            job_id,
            &["pending", "running"],
            "running",
            ctx.clock.now(),
            None,
        )
        .await?
    {
        return Ok(job);
    }
    let done = ctx.store.done_days(job_id).await?;
    let mut days: Vec<NaiveDate> = job
        .from_day
        .iter_days()
        .take_while(|d| *d <= job.to_day)
        .filter(|d| !done.contains(d))
        .collect();
    // For history, skip days whose zKillboard total equals the local count.
    if job.source == "zkb_history" {
        let totals: BTreeMap<NaiveDate, u64> = with_retry(shutdown, || up.history.totals())
            .await?
            .unwrap_or_default();
        let local = ctx.store.day_counts(job.from_day, job.to_day).await?;
        let mut skipped = Vec::new();
        days.retain(|d| {
            let want = totals.get(d).copied().unwrap_or(0) as i64;
            let keep = want > local.get(d).copied().unwrap_or(0);
            if !keep {
                skipped.push(*d);
            }
            keep
        });
        ctx.store
            .skip_days(job_id, &skipped, ctx.clock.now())
            .await?;
    }
    let started = Instant::now();
    let total_days = job.days_total.max(1) as f64;
    let mut processed: u64 = 0;
    if let Some(b) = bar {
        b.set_length(job.days_total as u64);
        b.set_position((job.days_total as usize - days.len()) as u64);
    }
    for day in days {
        if shutdown.is_cancelled() {
            break;
        }
        if is_cancelled(ctx, job_id).await {
            break;
        }
        let already = ctx.store.job(job_id).await?.map_or(0, |j| j.days_done) as f64;
        let rate = processed as f64 / started.elapsed().as_secs_f64().max(0.001);
        let remaining = total_days - already;
        let per_day = started.elapsed().as_secs_f64()
            / (job.days_total as f64 - remaining - (job.days_done as f64)).max(1.0);
        registry.set(
            job_id,
            Progress {
                percent: 100.0 * already / total_days,
                killmails_per_second: rate,
                eta_seconds: (processed > 0).then_some(per_day * remaining),
                current_day: Some(day),
            },
        );
        let result = match job.source.as_str() {
            "everef" => everef_day(ctx, up, job_id, day, shutdown).await,
            _ => history_day(ctx, up, job_id, day, shutdown).await,
        };
        let (seen, new) = match result {
            Ok(Some(n)) => n,
            // Shutdown or cancel mid-day: the day stays unfinished and is redone on resume.
            Ok(None) => break,
            Err(e) => {
                ctx.store
                    .transition_job(
                        job_id,
                        &["running"],
                        "failed",
                        ctx.clock.now(),
                        Some(&e.to_string()),
                    )
                    .await?;
                return Err(e);
            }
        };
        processed += seen;
        ctx.store
            .finish_day(job_id, day, seen as i64, new as i64, ctx.clock.now())
            .await?;
        if let Some(b) = bar {
            b.inc(1);
            b.set_message(format!(
                "{day}: {new} new of {seen}, {:.0} killmails/s",
                processed as f64 / started.elapsed().as_secs_f64().max(0.001)
            ));
        }
    }
    if !shutdown.is_cancelled() && !is_cancelled(ctx, job_id).await {
        ctx.store
            .transition_job(job_id, &["running"], "completed", ctx.clock.now(), None)
            .await?;
    }
    let job = ctx
        .store
        .job(job_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("job {job_id} vanished"))?;
    registry.set(
        job_id,
        Progress {
            percent: 100.0 * job.days_done as f64 / total_days,
            ..Progress::default()
        },
    );
    Ok(job)
}

async fn is_cancelled(ctx: &IngestCtx, job_id: &str) -> bool {
    matches!(ctx.store.job(job_id).await, Ok(Some(j)) if j.status == "cancelled")
}

/// Retries transient upstream failures with backoff; `Ok(None)` on shutdown.
async fn with_retry<T, F, Fut>(shutdown: &CancellationToken, mut f: F) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, bs_zkb::FetchError>>,
{
    let mut attempt = 0u32;
    loop {
        match f().await {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.is_transient() && attempt < 12 => {
                let wait = Duration::from_millis(250 * 2u64.pow(attempt.min(7)));
                tracing::debug!(error = %e, "backfill fetch failed; retrying");
                if !pause(wait, shutdown).await {
                    return Ok(None);
                }
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn store(
    ctx: &IngestCtx,
    job_id: &str,
    prepared: Vec<Prepared>,
    outcome: &mut BatchOutcome,
) -> anyhow::Result<()> {
    let mut batch = Batch::default();
    for p in prepared {
        match p {
            Prepared::Accept(mut k) => {
                k.backfill_job_id = Some(job_id.to_owned());
                batch.killmails.push(*k);
            }
            Prepared::Reject(r) => batch.rejects.push(r),
            Prepared::Reference { .. } | Prepared::Empty => {}
        }
    }
    let o = ctx.store.apply(batch, ctx.clock.now()).await?;
    outcome.inserted.extend(o.inserted);
    outcome.duplicates += o.duplicates;
    outcome.rejects_new += o.rejects_new;
    Ok(())
}

/// One EVE Ref day; `Ok(None)` when interrupted.
async fn everef_day(
    ctx: &IngestCtx,
    up: &Upstreams,
    job_id: &str,
    day: NaiveDate,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(u64, u64)>> {
    let Some(archive) = with_retry(shutdown, || up.everef.day_archive(day)).await? else {
        return Ok(None);
    };
    let Some(archive) = archive else {
        return Ok(Some((0, 0)));
    };
    let pipeline = Arc::clone(&ctx.pipeline);
    let now = ctx.clock.now();
    let prepared = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        bs_zkb::everef::for_each_json::<_, std::io::Error>(archive.as_ref(), true, |_, body| {
            out.push(pipeline.prepare(&body, KillmailSource::Everef, now));
            Ok(())
        })
        .map(|()| out)
    })
    .await??;
    let seen = prepared.len() as u64;
    let mut outcome = BatchOutcome::default();
    let mut iter = prepared.into_iter().peekable();
    while iter.peek().is_some() {
        if is_cancelled(ctx, job_id).await || shutdown.is_cancelled() {
            return Ok(None);
        }
        let chunk: Vec<Prepared> = iter.by_ref().take(1000).collect();
        store(ctx, job_id, chunk, &mut outcome).await?;
    }
    Ok(Some((seen, outcome.inserted.len() as u64)))
}

/// One zKillboard history day: ids not known locally are fetched from ESI.
async fn history_day(
    ctx: &IngestCtx,
    up: &Upstreams,
    job_id: &str,
    day: NaiveDate,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(u64, u64)>> {
    let Some(pairs) = with_retry(shutdown, || up.history.day(day)).await? else {
        return Ok(None);
    };
    let Some(pairs) = pairs else {
        return Ok(Some((0, 0)));
    };
    let ids: Vec<i64> = pairs.iter().map(|p| p.0).collect();
    let known = ctx.store.known_ids(&ids).await?;
    let missing: Vec<(i64, String)> = pairs
        .into_iter()
        .filter(|(id, _)| !known.contains(id))
        .collect();
    let seen = ids.len() as u64;
    let mut outcome = BatchOutcome::default();
    for chunk in missing.chunks(50) {
        if is_cancelled(ctx, job_id).await || shutdown.is_cancelled() {
            return Ok(None);
        }
        let mut prepared = Vec::with_capacity(chunk.len());
        for (id, hash) in chunk {
            match fetch_body(
                ctx,
                &up.esi,
                *id,
                hash,
                KillmailSource::ZkbHistory,
                shutdown,
            )
            .await
            {
                Some(p) => prepared.push(p),
                None => return Ok(None),
            }
        }
        store(ctx, job_id, prepared, &mut outcome).await?;
    }
    Ok(Some((seen, outcome.inserted.len() as u64)))
}

/// Fetches a killmail body from ESI and prepares it; `None` on shutdown.
pub async fn fetch_body(
    ctx: &IngestCtx,
    esi: &EsiClient,
    id: i64,
    hash: &str,
    source: KillmailSource,
    shutdown: &CancellationToken,
) -> Option<Prepared> {
    fetch_body_with(ctx, esi, id, hash, None, source, shutdown).await
}

/// As [`fetch_body`], attaching a known zkb block.
pub async fn fetch_body_with(
    ctx: &IngestCtx,
    esi: &EsiClient,
    id: i64,
    hash: &str,
    zkb: Option<bs_domain::Zkb>,
    source: KillmailSource,
    shutdown: &CancellationToken,
) -> Option<Prepared> {
    let mut attempt = 0u32;
    loop {
        if shutdown.is_cancelled() {
            return None;
        }
        match esi.killmail_raw(id, hash).await {
            Ok(body) => {
                let text = String::from_utf8_lossy(&body);
                return Some(match parse_killmail(&text) {
                    Ok(killmail) => {
                        let doc = KillmailDoc {
                            format: DocumentFormat::Esi,
                            killmail,
                            hash: Some(hash.to_owned()),
                            zkb,
                            wrapper_id: Some(id),
                            sequence_id: None,
                            sequence_updated: None,
                            uploaded_at: None,
                        };
                        ctx.pipeline
                            .prepare_doc(&body, doc, source, ctx.clock.now())
                    }
                    Err(e) => Prepared::Reject(reject_record(
                        &body,
                        Some(id),
                        &Rejection::from(e),
                        source,
                    )),
                });
            }
            Err(EsiError::NotFound) => {
                let r = Rejection::new(
                    RejectReason::BodyUnavailable,
                    format!("esi has no killmail {id}/{hash}"),
                );
                let raw = format!("{{\"killmail_id\":{id},\"hash\":\"{hash}\"}}");
                return Some(Prepared::Reject(reject_record(
                    raw.as_bytes(),
                    Some(id),
                    &r,
                    source,
                )));
            }
            Err(e) => {
                tracing::debug!(killmail_id = id, error = %e, "esi killmail fetch failed; retrying");
                let wait = Duration::from_millis(500 * 2u64.pow(attempt.min(6)));
                if !pause(wait, shutdown).await {
                    return None;
                }
                attempt += 1;
            }
        }
    }
}
