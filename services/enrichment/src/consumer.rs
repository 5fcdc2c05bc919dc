//! The pipeline: `killmail.ingested` batches in, enriched rows and `killmail.enriched`
//! events out (one transaction, through the outbox), and the background passes that fill
//! in names later and re-enrich after a rules or static-data change.
//!
//! Idempotency: each stored row carries a fingerprint of its input and the versions that
//! produced it. A delivery whose input, rules version and static-data version match the
//! stored row is a redelivery and changes nothing — no write, no event. An update with
//! new content (e.g. zKillboard re-published it with values) is enriched again and
//! published with a higher `revision`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bs_bus::Delivery;
use bs_domain::{Killmail, KillmailSource, Zkb};
use bs_events::{Event as _, KillmailEnriched, KillmailIngested};
use bs_runtime::Clock;
use serde::{Deserialize, Serialize};

use crate::domain::{self, Input, Missing, RULES_VERSION};
use crate::knowledge::{EsiWait, Knowledge};
use crate::store::{EnrichedRow, EnrichmentStore, SourceRow};

/// Timing of the pipeline.
#[derive(Clone, Debug)]
pub struct PipelineSettings {
    /// How long a batch may wait for ESI before it is published with pending names.
    pub inline_deadline: Duration,
    /// How long the background resolver waits for ESI per pass.
    pub resolver_deadline: Duration,
    /// Pause between resolver passes when there was nothing to do.
    pub resolver_idle: Duration,
    /// Rows per resolver/re-enrichment page.
    pub page: i64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            inline_deadline: Duration::from_millis(1500),
            resolver_deadline: Duration::from_secs(30),
            resolver_idle: Duration::from_secs(5),
            page: 500,
        }
    }
}

/// Counters for `/status`.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub consumed: AtomicU64,
    pub rejected: AtomicU64,
    pub duplicates: AtomicU64,
    pub published: AtomicU64,
    pub updates_published: AtomicU64,
    pub published_pending: AtomicU64,
}

/// What one batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub received: usize,
    pub rejected: usize,
    pub duplicates: usize,
    pub published: usize,
    pub pending: usize,
}

/// The input of a row as stored, and what its fingerprint is computed over.
#[derive(Serialize, Deserialize)]
struct StoredInput {
    hash: String,
    source: KillmailSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zkb: Option<Zkb>,
    killmail: Killmail,
}

/// Enriches killmails and keeps the store and the bus in step.
pub struct Enricher {
    pub knowledge: Arc<Knowledge>,
    store: Arc<dyn EnrichmentStore>,
    clock: Arc<dyn Clock>,
    settings: PipelineSettings,
    /// Serialises read-decide-write between the consumer and the background passes, so
    /// revisions never go backwards.
    write_lock: tokio::sync::Mutex<()>,
    /// Bumped after every committed write, so a batch knows whether what it read is stale.
    write_generation: AtomicU64,
    pub stats: PipelineStats,
}

struct Prepared {
    killmail_id: i64,
    source_event: String,
    input_hash: String,
    input: StoredInput,
}

impl Enricher {
    pub fn new(
        knowledge: Arc<Knowledge>,
        store: Arc<dyn EnrichmentStore>,
        clock: Arc<dyn Clock>,
        settings: PipelineSettings,
    ) -> Self {
        Self {
            knowledge,
            store,
            clock,
            settings,
            write_lock: tokio::sync::Mutex::new(()),
            write_generation: AtomicU64::new(0),
            stats: PipelineStats::default(),
        }
    }

    fn sde_version(&self) -> &str {
        self.knowledge.sde().version()
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// The consumer handler: decodes, counts bad records as rejections (never an error, so
    /// the group cannot stall on them), and enriches the rest.
    pub async fn handle_deliveries(&self, batch: Vec<Delivery>) -> anyhow::Result<()> {
        let mut events = Vec::with_capacity(batch.len());
        let mut rejected = 0u64;
        for d in &batch {
            match decode_ingested(&d.payload) {
                Ok(ev) => events.push(ev),
                Err(e) => {
                    rejected += 1;
                    tracing::warn!(offset = d.offset, error = %e, "rejected killmail.ingested record");
                }
            }
        }
        if rejected > 0 {
            self.stats.rejected.fetch_add(rejected, Ordering::Relaxed);
            metrics::counter!("battlescope_enrichment_rejected_total").increment(rejected);
        }
        self.handle_events(events).await?;
        Ok(())
    }

    /// Enriches a batch of ingested killmails, resolving their names in bulk.
    pub async fn handle_events(
        &self,
        events: Vec<KillmailIngested>,
    ) -> anyhow::Result<BatchReport> {
        let mut report = BatchReport {
            received: events.len(),
            ..BatchReport::default()
        };
        self.stats
            .consumed
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        // The last delivery of a killmail in a batch wins (it is the newest upstream).
        let mut by_id: HashMap<i64, usize> = HashMap::with_capacity(events.len());
        let mut prepared: Vec<Prepared> = Vec::with_capacity(events.len());
        // Serialising each input (its stored copy and fingerprint) is per event: every core.
        for p in bs_runtime::parallel::map_owned(events, prepare) {
            match by_id.get(&p.killmail_id) {
                Some(&i) => prepared[i] = p,
                None => {
                    by_id.insert(p.killmail_id, prepared.len());
                    prepared.push(p);
                }
            }
        }
        let ids: Vec<i64> = prepared.iter().map(|p| p.killmail_id).collect();
        let generation = self.write_generation.load(Ordering::Acquire);
        let existing = self.store.existing(&ids).await?;
        let sde_version = self.sde_version().to_owned();
        let before = prepared.len();
        prepared.retain(|p| {
            !existing.get(&p.killmail_id).is_some_and(|e| {
                same_input(&e.input_hash, p)
                    && e.version == RULES_VERSION
                    && e.sde_version == sde_version
            })
        });
        report.duplicates = before - prepared.len();
        self.stats
            .duplicates
            .fetch_add(report.duplicates as u64, Ordering::Relaxed);
        if prepared.is_empty() {
            return Ok(report);
        }

        let now = self.now_ms();
        let mut enriched = self.enrich_all(&prepared, now);
        let mut missing = Missing::default();
        for e in &enriched {
            missing.extend(&e.missing);
        }
        if !missing.is_empty() {
            self.knowledge
                .resolve(&missing, now, self.settings.inline_deadline, EsiWait::Skip)
                .await;
            enriched = self.enrich_all(&prepared, now);
        }
        // Once per new killmail: which corporations earn a ticker lookup (crate::tickers).
        self.knowledge
            .tickers
            .observe(enriched.iter().map(|e| &e.event), now);

        let _guard = self.write_lock.lock().await;
        // Re-read under the lock only if another writer (the resolver) committed meanwhile.
        let existing = if self.write_generation.load(Ordering::Acquire) == generation {
            existing
        } else {
            self.store.existing(&ids).await?
        };
        let mut rows = Vec::with_capacity(prepared.len());
        let time = self.clock.now();
        for (p, e) in prepared.into_iter().zip(enriched) {
            let mut event = e.event;
            let old = existing.get(&p.killmail_id);
            if old.is_some_and(|o| {
                same_input(&o.input_hash, &p)
                    && o.version == RULES_VERSION
                    && o.sde_version == sde_version
            }) {
                report.duplicates += 1;
                continue;
            }
            event.revision = old.map_or(0, |o| o.revision + 1);
            // An event that fails its own contract is bad input: counted, never retried
            // (an error here would stall the consumer group on it forever). The store
            // serialises the event once, for its row and its envelope.
            if let Err(e) = event.validate() {
                tracing::warn!(killmail_id = p.killmail_id, error = %e, "rejected enriched killmail");
                report.rejected += 1;
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if event.names_pending {
                report.pending += 1;
            }
            if old.is_some() {
                self.stats.updates_published.fetch_add(1, Ordering::Relaxed);
            }
            rows.push(EnrichedRow {
                event,
                input_hash: p.input_hash,
                sde_version: sde_version.clone(),
                source_event: p.source_event,
                now,
            });
        }
        report.published = rows.len();
        self.store.write(rows, time).await?;
        self.write_generation.fetch_add(1, Ordering::AcqRel);
        self.stats
            .published
            .fetch_add(report.published as u64, Ordering::Relaxed);
        self.stats
            .published_pending
            .fetch_add(report.pending as u64, Ordering::Relaxed);
        metrics::counter!("battlescope_enrichment_published_total")
            .increment(report.published as u64);
        Ok(report)
    }

    fn enrich_all(&self, prepared: &[Prepared], now: i64) -> Vec<domain::Enriched> {
        // Per killmail and independent: every core (the catalog is read-only here).
        self.knowledge.with_catalog(now, |catalog| {
            bs_runtime::parallel::map(prepared, |p| {
                let input = Input {
                    killmail: &p.input.killmail,
                    hash: &p.input.hash,
                    zkb: p.input.zkb.as_ref(),
                    source: p.input.source,
                };
                let mut e = domain::enrich(input, catalog);
                self.knowledge.tickers.fill(&mut e, now);
                e
            })
        })
    }

    /// One pass of the background resolver over every pending row: resolve their missing
    /// names in bulk (waiting for ESI up to the resolver deadline), then re-publish the
    /// rows whose content changed. Returns how many updates were published.
    pub async fn resolve_pending_once(&self) -> anyhow::Result<usize> {
        // Corporation tickers first (budgeted, low priority): the rows re-published below
        // then carry the ones that arrived.
        self.knowledge
            .fetch_wanted_tickers(self.now_ms(), self.settings.resolver_deadline)
            .await;
        let mut after = 0;
        let mut updated = 0;
        loop {
            let rows = self.store.pending(after, self.settings.page).await?;
            let Some(last) = rows.last().map(|r| r.killmail_id) else {
                break;
            };
            after = last;
            let (n, esi_complete) = self
                .refresh_rows(rows, self.settings.resolver_deadline, EsiWait::Queue)
                .await?;
            updated += n;
            if !esi_complete && n == 0 {
                // ESI is still unhealthy: stop here rather than walk every pending row;
                // the next pass (after a backoff) starts again from the beginning.
                break;
            }
        }
        Ok(updated)
    }

    /// Re-enriches rows written by another rules or static-data version. Returns how many
    /// updates were published.
    pub async fn reenrich_stale_once(&self) -> anyhow::Result<usize> {
        let mut after = 0;
        let mut updated = 0;
        let sde_version = self.sde_version().to_owned();
        loop {
            let rows = self
                .store
                .stale(RULES_VERSION, &sde_version, after, self.settings.page)
                .await?;
            let Some(last) = rows.last().map(|r| r.killmail_id) else {
                break;
            };
            after = last;
            updated += self
                .refresh_rows(rows, self.settings.inline_deadline, EsiWait::Skip)
                .await?
                .0;
        }
        Ok(updated)
    }

    /// Re-enriches stored rows (resolving what they miss first) and re-publishes the ones
    /// whose content changed. Returns (updates published, whether ESI answered everything).
    async fn refresh_rows(
        &self,
        rows: Vec<SourceRow>,
        deadline: Duration,
        wait: EsiWait,
    ) -> anyhow::Result<(usize, bool)> {
        let mut prepared = Vec::with_capacity(rows.len());
        let mut old: HashMap<i64, (u32, String)> = HashMap::with_capacity(rows.len());
        for r in rows {
            match parse_stored(&r.source_event) {
                Some(input) => {
                    old.insert(r.killmail_id, (r.revision, r.payload));
                    prepared.push(Prepared {
                        killmail_id: r.killmail_id,
                        source_event: r.source_event,
                        input_hash: r.input_hash,
                        input,
                    });
                }
                None => tracing::warn!(
                    killmail_id = r.killmail_id,
                    "stored input unreadable; skipped"
                ),
            }
        }
        let now = self.now_ms();
        let mut missing = Missing::default();
        for e in self.enrich_all(&prepared, now) {
            missing.extend(&e.missing);
        }
        let esi_complete =
            missing.is_empty() || self.knowledge.resolve(&missing, now, deadline, wait).await;
        let _guard = self.write_lock.lock().await;
        let ids: Vec<i64> = prepared.iter().map(|p| p.killmail_id).collect();
        let existing = self.store.existing(&ids).await?;
        let enriched = self.enrich_all(&prepared, now);
        let sde_version = self.sde_version().to_owned();
        let time = self.clock.now();
        let mut rows = Vec::new();
        for (p, e) in prepared.into_iter().zip(enriched) {
            let (Some((revision, payload)), Some(current)) =
                (old.get(&p.killmail_id), existing.get(&p.killmail_id))
            else {
                continue;
            };
            if current.revision != *revision {
                // The consumer wrote a newer revision meanwhile; the next pass sees it.
                continue;
            }
            let mut event = e.event;
            event.revision = *revision;
            let versions_differ =
                current.version != RULES_VERSION || current.sde_version != sde_version;
            if !versions_differ && same_payload(payload, &event) {
                continue;
            }
            event.revision = revision + 1;
            if event.validate().is_err() {
                // Cannot happen for a row that was published before; never stall on it.
                tracing::warn!(
                    killmail_id = p.killmail_id,
                    "re-enriched killmail failed validation"
                );
                continue;
            }
            rows.push(EnrichedRow {
                event,
                input_hash: p.input_hash,
                sde_version: sde_version.clone(),
                source_event: p.source_event,
                now,
            });
        }
        let written = rows.len();
        self.store.write(rows, time).await?;
        self.write_generation.fetch_add(1, Ordering::AcqRel);
        self.stats
            .updates_published
            .fetch_add(written as u64, Ordering::Relaxed);
        self.stats
            .published
            .fetch_add(written as u64, Ordering::Relaxed);
        Ok((written, esi_complete))
    }

    /// The background loop: re-enrich stale rows once, then resolve pending names until
    /// shutdown, backing off while nothing changes.
    pub async fn run_background(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        match self.reenrich_stale_once().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(updated = n, "re-enriched rows of an older version"),
            Err(e) => tracing::warn!(error = %e, "re-enrichment failed"),
        }
        let mut idle = self.settings.resolver_idle;
        while !shutdown.is_cancelled() {
            let progressed = match self.resolve_pending_once().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "name resolver pass failed");
                    false
                }
            };
            idle = if progressed {
                self.settings.resolver_idle
            } else {
                (idle * 2).min(Duration::from_secs(120))
            };
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
}

/// The envelope with its payload left as text, so the killmail is parsed once, straight
/// into its type (`Envelope::from_bytes` + `decode` builds a JSON tree, clones it and
/// converts it: most of the cost of a delivery). Same checks as `Envelope::decode`.
#[derive(Deserialize)]
struct WireEnvelope<'a> {
    #[allow(dead_code)]
    id: serde::de::IgnoredAny,
    #[serde(rename = "type")]
    event_type: std::borrow::Cow<'a, str>,
    version: u32,
    #[allow(dead_code)]
    time: chrono::DateTime<chrono::Utc>,
    #[allow(dead_code)]
    key: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
}

fn decode_ingested(bytes: &[u8]) -> Result<KillmailIngested, bs_events::EventError> {
    use bs_events::EventError;
    let env: WireEnvelope<'_> =
        serde_json::from_slice(bytes).map_err(|e| EventError::Malformed(e.to_string()))?;
    if env.event_type != KillmailIngested::TOPIC {
        return Err(EventError::WrongType {
            expected: KillmailIngested::TOPIC,
            actual: env.event_type.into_owned(),
        });
    }
    if env.version > KillmailIngested::VERSION {
        return Err(EventError::UnsupportedVersion {
            event_type: env.event_type.into_owned(),
            version: env.version,
            supported: KillmailIngested::VERSION,
        });
    }
    serde_json::from_str(env.payload.get()).map_err(|e| EventError::Invalid(e.to_string()))
}

fn prepare(ev: KillmailIngested) -> Prepared {
    let input = StoredInput {
        hash: ev.hash,
        source: ev.source,
        zkb: ev.zkb,
        killmail: ev.killmail,
    };
    let source_event = crate::store::json(&input).unwrap_or_default();
    Prepared {
        killmail_id: input.killmail.killmail_id,
        input_hash: fingerprint(&source_event),
        source_event,
        input,
    }
}

fn parse_stored(source_event: &str) -> Option<StoredInput> {
    serde_json::from_str(source_event).ok()
}

/// Whether a stored payload equals `event` (same revision assumed).
fn same_payload(stored: &str, event: &KillmailEnriched) -> bool {
    serde_json::from_str::<KillmailEnriched>(stored).is_ok_and(|s| &s == event)
}

/// The fingerprint of a stored input: `x3` and its XXH3-64 as hex, stable across builds,
/// enough to detect a change. (Until 2026-12 it was [`legacy_fingerprint`], byte by byte,
/// 3 % of a warm batch's CPU; [`same_input`] still reads those.)
pub fn fingerprint(text: &str) -> String {
    format!("x3{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// Whether a stored fingerprint, of either format, is the one of `p`'s input.
fn same_input(stored: &str, p: &Prepared) -> bool {
    if stored.starts_with("x3") {
        stored == p.input_hash
    } else {
        stored == legacy_fingerprint(&p.source_event)
    }
}

/// FNV-1a 64 of the stored input, the fingerprint of rows written before 2026-12.
pub fn legacy_fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
