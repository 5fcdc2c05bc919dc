//! The R2Z2 live feed (eve-platform.md §1.3, reliability-security.md §2).
//!
//! Cursor = the next sequence to fetch, stored in the transaction that stores
//! what the previous sequence carried, so it never moves past an unhandled
//! entry. Per sequence `n`:
//!
//! * **200**: prepare the entry (a reject is still "handled"), refetch `M` if it
//!   says `sequence_updated: M` and upsert both, then commit with cursor `n+1`.
//! * **404**: if `n+1` exists, or `sequence.json` is past `n`, `n` is a gap: record
//!   it and move on. A run of 404s ending far below `sequence.json` means the
//!   cursor expired (an outage longer than retention): find the oldest
//!   retained sequence by bisection, record the range as `expired` and queue a
//!   zKillboard-history repair job for the days it may cover. Otherwise `n` is
//!   the head: wait (`r2z2_head_wait`, 6 s) and ask again.
//! * **429**: wait `r2z2_backoff` (plus jitter). **5xx / HTML 200 / transport**:
//!   exponential backoff from a tenth of it, capped at a minute.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bs_domain::KillmailSource;
use bs_zkb::r2z2::{EntryFetch, R2z2Client};
use bs_zkb::{Document, FetchError, parse_document};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::{IngestCtx, Source, pause};
use crate::pipeline::{Prepared, metric, reject_record};
use crate::store::{Batch, GapRecord, IngestionStore};

/// The cursor's name in `ingest_cursors`.
pub const CURSOR: &str = "r2z2";
/// `sequence.json` trails the head by up to this much (zKillboard rewrites it past 51).
pub const SEQUENCE_LAG: i64 = 51;
/// Consecutive missing sequences from which a gap counts as expired and is repaired.
const EXPIRED_RUN: i64 = 10;

/// Timing knobs (from configuration; tests shorten them).
#[derive(Clone, Debug)]
pub struct R2z2Options {
    pub head_wait: Duration,
    pub backoff: Duration,
}

impl Default for R2z2Options {
    fn default() -> Self {
        Self {
            head_wait: Duration::from_secs(6),
            backoff: Duration::from_secs(10),
        }
    }
}

/// The live R2Z2 source.
pub struct R2z2Source {
    client: R2z2Client,
    options: R2z2Options,
}

/// Shutdown happened while waiting.
struct Cancelled;

impl R2z2Source {
    pub fn new(client: R2z2Client, options: R2z2Options) -> Self {
        Self { client, options }
    }

    async fn backoff(
        &self,
        ctx: &IngestCtx,
        e: &FetchError,
        attempt: u32,
        shutdown: &CancellationToken,
    ) -> Result<(), Cancelled> {
        ctx.live.error(e.to_string(), ctx.clock.now());
        let base = match e {
            FetchError::RateLimited { retry_after } => retry_after
                .unwrap_or(self.options.backoff)
                .max(self.options.backoff),
            _ => {
                let first = self.options.backoff / 10;
                (first * 2u32.saturating_pow(attempt.min(10))).min(Duration::from_secs(60))
            }
        };
        // Jitter spreads retries of several replicas (and other clients on the IP).
        let jitter = base.mul_f64(rand::rng().random_range(0.0..0.5));
        tracing::debug!(error = %e, wait_ms = (base + jitter).as_millis() as u64, "r2z2 backoff");
        if pause(base + jitter, shutdown).await {
            Ok(())
        } else {
            Err(Cancelled)
        }
    }

    /// Fetches sequence `n`, retrying transient failures until it is a 200 or a 404.
    async fn fetch(
        &self,
        ctx: &IngestCtx,
        n: i64,
        shutdown: &CancellationToken,
    ) -> Result<Option<Bytes>, Cancelled> {
        let mut attempt = 0;
        loop {
            if shutdown.is_cancelled() {
                return Err(Cancelled);
            }
            match self.client.entry(n).await {
                Ok(EntryFetch::Found(body)) => return Ok(Some(body)),
                Ok(EntryFetch::NotFound) => return Ok(None),
                Err(e) => {
                    self.backoff(ctx, &e, attempt, shutdown).await?;
                    attempt += 1;
                }
            }
        }
    }

    async fn sequence(
        &self,
        ctx: &IngestCtx,
        shutdown: &CancellationToken,
    ) -> Result<i64, Cancelled> {
        let mut attempt = 0;
        loop {
            if shutdown.is_cancelled() {
                return Err(Cancelled);
            }
            match self.client.sequence().await {
                Ok(s) => {
                    ctx.live
                        .update(|l| l.head = Some(l.head.map_or(s, |h| h.max(s))));
                    return Ok(s);
                }
                Err(e) => {
                    self.backoff(ctx, &e, attempt, shutdown).await?;
                    attempt += 1;
                }
            }
        }
    }

    /// Prepares an entry body; returns it and the sequence it asks to refetch.
    fn prepare(
        &self,
        ctx: &IngestCtx,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> (Prepared, Option<i64>, Option<i64>) {
        match parse_document(body) {
            Ok(Document::Killmail(doc)) => {
                let updated = doc.sequence_updated;
                let uploaded = doc.uploaded_at;
                (
                    ctx.pipeline
                        .prepare_doc(body, *doc, KillmailSource::R2z2, now),
                    updated,
                    uploaded,
                )
            }
            // An entry is always a killmail; anything else is rejected through the same path.
            _ => (
                ctx.pipeline.prepare(body, KillmailSource::R2z2, now),
                None,
                None,
            ),
        }
    }

    async fn handle_entry(
        &self,
        ctx: &IngestCtx,
        n: i64,
        body: Bytes,
        gaps: Vec<GapRecord>,
        shutdown: &CancellationToken,
    ) -> Result<(), Cancelled> {
        let now = ctx.clock.now();
        let mut batch = Batch {
            upsert: true,
            cursor: Some((CURSOR.into(), n + 1)),
            gaps,
            ..Batch::default()
        };
        let (prepared, updated, uploaded) = self.prepare(ctx, &body, now);
        push(&mut batch, prepared, &body);
        if let Some(m) = updated.filter(|m| *m < n) {
            // Re-published: fetch M again and upsert it in the same step.
            if let Some(again) = self.fetch(ctx, m, shutdown).await? {
                let (p, _, _) = self.prepare(ctx, &again, now);
                push(&mut batch, p, &again);
            }
        }
        self.commit(ctx, batch, shutdown).await?;
        ctx.live.update(|l| {
            l.cursor = Some(n + 1);
            l.head = Some(l.head.map_or(n, |h| h.max(n)));
            if let Some(u) = uploaded.and_then(|u| DateTime::from_timestamp(u, 0)) {
                l.last_uploaded_at = Some(u);
            }
        });
        Ok(())
    }

    /// Commits a step, retrying database errors (the step is idempotent).
    async fn commit(
        &self,
        ctx: &IngestCtx,
        batch: Batch,
        shutdown: &CancellationToken,
    ) -> Result<(), Cancelled> {
        let mut attempt = 0u32;
        loop {
            match ctx.store.apply(batch.clone(), ctx.clock.now()).await {
                Ok(outcome) => {
                    metrics::counter!(metric::INGESTED, "source" => "r2z2")
                        .increment(outcome.inserted.len() as u64);
                    metrics::counter!(metric::DUPLICATES, "source" => "r2z2")
                        .increment(outcome.duplicates);
                    metrics::counter!(metric::UPDATES).increment(outcome.updated.len() as u64);
                    for g in &batch.gaps {
                        metrics::counter!(metric::R2Z2_GAPS, "kind" => g.kind.clone())
                            .increment((g.last_sequence - g.first_sequence + 1) as u64);
                    }
                    return Ok(());
                }
                Err(e) => {
                    ctx.live.error(format!("store: {e}"), ctx.clock.now());
                    tracing::warn!(error = %e, "storing an r2z2 step failed; retrying");
                    let wait = Duration::from_millis(200 * u64::from(1 + attempt.min(25)));
                    if !pause(wait, shutdown).await {
                        return Err(Cancelled);
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// The first retained sequence in `(lo, hi]` where `lo` is missing and `hi` exists.
    async fn bisect(
        &self,
        ctx: &IngestCtx,
        mut lo: i64,
        mut hi: i64,
        shutdown: &CancellationToken,
    ) -> Result<(i64, Bytes), Cancelled> {
        let mut hi_body = None;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match self.fetch(ctx, mid, shutdown).await? {
                Some(body) => {
                    hi = mid;
                    hi_body = Some(body);
                }
                None => lo = mid,
            }
        }
        let body = match hi_body {
            Some(b) => b,
            None => self.fetch(ctx, hi, shutdown).await?.unwrap_or_default(),
        };
        Ok((hi, body))
    }

    async fn run_inner(
        &self,
        ctx: &IngestCtx,
        shutdown: &CancellationToken,
    ) -> Result<(), Cancelled> {
        let stored = ctx.store.cursor(CURSOR).await.ok().flatten();
        let mut next = match stored {
            Some(c) => c,
            // Only without a stored cursor does the feed start at sequence.json.
            None => self.sequence(ctx, shutdown).await?,
        };
        ctx.live.update(|l| {
            l.running = true;
            l.cursor = Some(next);
        });
        let mut known_head = next - 1;
        // The body of `next` when a probe already fetched it.
        let mut prefetched: Option<Bytes> = None;
        loop {
            if shutdown.is_cancelled() {
                return Err(Cancelled);
            }
            let body = match prefetched.take() {
                Some(b) => Some(b),
                None => self.fetch(ctx, next, shutdown).await?,
            };
            if let Some(body) = body {
                self.handle_entry(ctx, next, body, Vec::new(), shutdown)
                    .await?;
                known_head = known_head.max(next);
                next += 1;
                continue;
            }
            // 404: the head, a hole, or an expired cursor?
            if known_head <= next {
                known_head = known_head.max(self.sequence(ctx, shutdown).await?);
            }
            let after = self.fetch(ctx, next + 1, shutdown).await?;
            metrics::gauge!(metric::R2Z2_LAG).set((known_head - next).max(0) as f64);
            match after {
                Some(body) => {
                    // n+1 exists. Ask for n once more: it may have been published between
                    // the two requests (the head moves); only a second 404 makes it a hole.
                    if let Some(late) = self.fetch(ctx, next, shutdown).await? {
                        self.handle_entry(ctx, next, late, Vec::new(), shutdown)
                            .await?;
                        known_head = known_head.max(next + 1);
                        next += 1;
                        prefetched = Some(body);
                        continue;
                    }
                    let gap = GapRecord {
                        first_sequence: next,
                        last_sequence: next,
                        kind: "missing".into(),
                        repair_job_id: None,
                    };
                    self.handle_entry(ctx, next + 1, body, vec![gap], shutdown)
                        .await?;
                    known_head = known_head.max(next + 1);
                    next += 2;
                }
                None if known_head > next + 1 => {
                    // Two misses below a known newer sequence. A short run of holes is walked
                    // (so no entry is skipped); a long one is an expired range, bisected.
                    let mut found = None;
                    for k in (next + 2)..(next + EXPIRED_RUN).min(known_head + 1) {
                        if let Some(body) = self.fetch(ctx, k, shutdown).await? {
                            found = Some((k, body));
                            break;
                        }
                    }
                    let (first, body) = match found {
                        Some(f) => f,
                        None => {
                            self.bisect(
                                ctx,
                                (next + EXPIRED_RUN - 1).min(known_head - 1),
                                known_head,
                                shutdown,
                            )
                            .await?
                        }
                    };
                    if body.is_empty() {
                        // The known head itself vanished (expired meanwhile); ask again later.
                        known_head = next;
                        if !pause(self.options.head_wait, shutdown).await {
                            return Err(Cancelled);
                        }
                        continue;
                    }
                    let run = first - next;
                    let kind = if run >= EXPIRED_RUN {
                        "expired"
                    } else {
                        "missing"
                    };
                    let mut gap = GapRecord {
                        first_sequence: next,
                        last_sequence: first - 1,
                        kind: kind.into(),
                        repair_job_id: None,
                    };
                    if kind == "expired" {
                        tracing::warn!(
                            from = next,
                            to = first - 1,
                            "r2z2 cursor expired upstream; repairing from history"
                        );
                        let after = match parse_document(&body) {
                            Ok(Document::Killmail(k)) => Some(k.killmail.killmail_time),
                            _ => None,
                        };
                        match super::backfill::queue_repair(ctx, &gap, after).await {
                            Ok(job) => gap.repair_job_id = Some(job),
                            Err(e) => ctx
                                .live
                                .error(format!("queueing the repair: {e}"), ctx.clock.now()),
                        }
                    }
                    self.handle_entry(ctx, first, body, vec![gap], shutdown)
                        .await?;
                    next = first + 1;
                }
                None => {
                    // At the head: not published yet.
                    ctx.live.update(|l| l.cursor = Some(next));
                    if !pause(self.options.head_wait, shutdown).await {
                        return Err(Cancelled);
                    }
                }
            }
        }
    }
}

fn push(batch: &mut Batch, prepared: Prepared, body: &[u8]) {
    match prepared {
        Prepared::Accept(k) => batch.killmails.push(*k),
        Prepared::Reject(r) => batch.rejects.push(r),
        // An R2Z2 entry always embeds its body; a reference here is malformed input.
        Prepared::Reference { killmail_id, .. } => batch.rejects.push(reject_record(
            body,
            Some(killmail_id),
            &crate::domain::Rejection::new(
                crate::domain::RejectReason::MissingField,
                "missing field esi",
            ),
            KillmailSource::R2z2,
        )),
        Prepared::Empty => {}
    }
}

#[async_trait]
impl Source for R2z2Source {
    fn name(&self) -> &'static str {
        "r2z2"
    }

    async fn run(
        self: Box<Self>,
        ctx: Arc<IngestCtx>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        tracing::info!(url = self.client.base_url(), "r2z2 live feed started");
        let _ = self.run_inner(&ctx, &shutdown).await;
        ctx.live.update(|l| l.running = false);
        Ok(())
    }
}
