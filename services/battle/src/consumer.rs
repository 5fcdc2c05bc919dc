//! The service core: the `killmail.enriched` consumer, the ticker that ends battles by kill-time
//! gap, and the sides refresher that publishes `battle.*` events.
//!
//! Flow per consumer batch: decode (bad records are counted and skipped), map at the edge,
//! cluster in memory ([`Engine`]), then write killmails, ship history, names and the battle
//! operations in one transaction. The battle rows (kills, ISK, pilots, systems, time span) are
//! therefore current as soon as the batch commits. Sides cost O(battle) to compute (≈ 15 ms
//! for a 1,000-kill battle), so they and the events are produced by the refresher, which picks
//! up dirty battles every [`REFRESH_INTERVAL`] and publishes through the outbox in the
//! transaction that clears the dirty flag: a battle's event trails its rows by well under a
//! second, and a crash in between only delays it (the dirty flag is persistent).
//!
//! Every batch queues its killmails' ship history (see `store::history`); the background loop
//! moves it into `pilot_ship_history` while the consumer is idle ([`HISTORY_IDLE`]), in
//! transactions of about [`HISTORY_MOVE_LINES`] lines, so a live update rarely waits for one
//! (a backlog, never idle, moves it in bulk once the queue is long).
//!
//! If a write fails, the in-memory engine is ahead of the store; it is rebuilt from the store
//! before the error is returned, so the retried batch is clustered again from a consistent
//! state (clustering depends only on the set of kills, so this is exact).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bs_bus::Delivery;
use bs_clustering::BattleReport;
use bs_events::{
    BattleCreated, BattleEnded, BattleMerged, BattleSnapshot, BattleStatus, BattleUpdated,
    Envelope, KillmailEnriched,
};
use bs_runtime::Clock;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::domain::adapter::from_enriched;
use crate::domain::{Engine, EngineSettings, EngineStats, Geo, StoredKill, snapshot};
use crate::store::{BattleRow, BattleStore, ChangeSet, SidesUpdate, ms_to_time};

/// How often the ticker ends quiet battles and the refresher publishes.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(500);

/// Dirty battles refreshed per pass.
const REFRESH_BATCH: u32 = 64;

/// Queued ship history moves only once no batch has arrived for this long.
pub const HISTORY_IDLE: Duration = Duration::from_millis(50);
/// Ship history lines per moving transaction (≈ 3–4 ms of SQLite writes here).
pub const HISTORY_MOVE_LINES: usize = 1_000;

/// The battle service's state and its three loops.
pub struct Battles {
    store: Arc<dyn BattleStore>,
    engine: Mutex<Engine>,
    geo: Arc<Geo>,
    clock: Arc<dyn Clock>,
    /// The settings in force; changed only with the engine lock held ([`Battles::apply_settings`]).
    settings: parking_lot::RwLock<EngineSettings>,
    /// Records that could not be decoded or mapped (counted, skipped).
    rejected: AtomicU64,
    /// Serialises refresh passes (ticker and tests may both call it).
    refreshing: Mutex<()>,
    /// battle id → (revision, killmails) of recently reported battles.
    kill_cache: parking_lot::Mutex<HashMap<u64, CachedKills>>,
    /// When the last batch arrived (the history mover waits for a quiet moment).
    last_batch: parking_lot::Mutex<std::time::Instant>,
}

/// (revision, killmails) of one battle.
type CachedKills = (u64, Arc<Vec<StoredKill>>);

/// Battles whose killmails stay parsed in memory.
const KILL_CACHE_BATTLES: usize = 16;

/// What one consumer batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub accepted: usize,
    pub rejected: usize,
    pub ops: usize,
}

fn now_ms(clock: &dyn Clock) -> i64 {
    clock.now().timestamp_millis()
}

impl Battles {
    /// Opens the service state: rebuilds the engine from the stored working set (the last
    /// reopen window by kill time) and heals the store if it lags behind.
    pub async fn open(
        store: Arc<dyn BattleStore>,
        geo: Arc<Geo>,
        clock: Arc<dyn Clock>,
        settings: EngineSettings,
    ) -> anyhow::Result<Self> {
        let engine = rebuild(&*store, &geo, &*clock, &settings).await?;
        Ok(Self {
            store,
            engine: Mutex::new(engine),
            geo,
            clock,
            settings: parking_lot::RwLock::new(settings),
            rejected: AtomicU64::new(0),
            refreshing: Mutex::new(()),
            kill_cache: parking_lot::Mutex::default(),
            last_batch: parking_lot::Mutex::new(std::time::Instant::now()),
        })
    }

    pub fn store(&self) -> &Arc<dyn BattleStore> {
        &self.store
    }

    pub fn geo(&self) -> &Arc<Geo> {
        &self.geo
    }

    /// The settings the clusterer runs with now.
    pub fn settings(&self) -> EngineSettings {
        self.settings.read().clone()
    }

    /// Runs the clusterer with `settings` from now on: the in-memory working set is rebuilt
    /// from the store under them (what a restart with these settings does), so new killmails
    /// are clustered with them at once; battles older than the working set keep their
    /// membership until a recluster. Returns the kill time the rebuilt working set starts at
    /// (`None` when nothing is stored). On failure the old settings stay in force.
    pub async fn apply_settings(&self, settings: EngineSettings) -> anyhow::Result<Option<i64>> {
        let mut engine = self.engine.lock().await;
        let since = self
            .store
            .max_kill_time()
            .await?
            .map(|max| settings.working_set_since(max));
        let fresh = rebuild(&*self.store, &self.geo, &*self.clock, &settings).await?;
        *engine = fresh;
        *self.settings.write() = settings;
        self.kill_cache.lock().clear();
        Ok(since)
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Runs `work` while no batch is clustered and no battle is ended, then rebuilds the
    /// in-memory clusterer from the store: re-clustering rewrites stored battles under it.
    pub async fn exclusive<T>(
        &self,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let mut engine = self.engine.lock().await;
        let out = work.await;
        self.recover(&mut engine).await;
        self.kill_cache.lock().clear();
        out
    }

    /// Records rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub async fn engine_stats(&self) -> EngineStats {
        self.engine.lock().await.stats()
    }

    /// The consumer handler: decode, then [`Battles::ingest`].
    pub async fn handle_deliveries(&self, batch: Vec<Delivery>) -> anyhow::Result<()> {
        let mut events = Vec::with_capacity(batch.len());
        for d in &batch {
            match Envelope::from_bytes(&d.payload).and_then(|e| e.decode::<KillmailEnriched>()) {
                Ok(e) => events.push(e),
                Err(e) => {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("battlescope_battle_rejected_total", "reason" => "decode")
                        .increment(1);
                    tracing::warn!(topic = %d.topic, offset = d.offset, error = %e, "rejected killmail.enriched record");
                }
            }
        }
        self.ingest(&events).await.map(|_| ())
    }

    /// Clusters and stores a batch of enriched killmails (idempotent).
    pub async fn ingest(&self, events: &[KillmailEnriched]) -> anyhow::Result<IngestReport> {
        *self.last_batch.lock() = std::time::Instant::now();
        let mut report = IngestReport::default();
        let mut changes = ChangeSet {
            now_ms: now_ms(&*self.clock),
            ..ChangeSet::default()
        };
        // Mapping is pure and per killmail: every core (a backlog batch is 2,000 of them).
        let mapped = bs_runtime::parallel::map(events, from_enriched);
        for (e, mapped) in events.iter().zip(mapped) {
            match mapped {
                Ok((kill, names)) => {
                    self.geo
                        .learn(kill.kill.system_id, kill.region_id, kill.security_status);
                    changes.kills.push(kill);
                    changes.names.extend(names);
                }
                Err(err) => {
                    report.rejected += 1;
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("battlescope_battle_rejected_total", "reason" => "mapping")
                        .increment(1);
                    tracing::warn!(killmail_id = e.killmail_id, error = %err, "rejected killmail");
                }
            }
        }
        report.accepted = changes.kills.len();
        if changes.kills.is_empty() {
            return Ok(report);
        }
        let mut engine = self.engine.lock().await;
        changes.ops = engine.apply(changes.kills.iter().map(|k| &k.kill));
        report.ops = changes.ops.len();
        if let Err(e) = self.store.apply(&changes).await {
            self.recover(&mut engine).await;
            return Err(e).context("storing a killmail batch");
        }
        metrics::counter!("battlescope_battle_killmails_total").increment(report.accepted as u64);
        Ok(report)
    }

    async fn recover(&self, engine: &mut Engine) {
        let settings = self.settings();
        match rebuild(&*self.store, &self.geo, &*self.clock, &settings).await {
            Ok(fresh) => *engine = fresh,
            Err(e) => {
                tracing::warn!(error = %e, "cannot rebuild the clusterer from the store; keeping the in-memory state")
            }
        }
    }

    /// Ends battles quiet for the gap (kill time vs the clock) and evicts settled ones.
    pub async fn tick(&self) -> anyhow::Result<()> {
        let now = now_ms(&*self.clock);
        let mut engine = self.engine.lock().await;
        let ops = engine.tick(now);
        if ops.is_empty() {
            return Ok(());
        }
        let changes = ChangeSet {
            ops,
            now_ms: now,
            ..ChangeSet::default()
        };
        if let Err(e) = self.store.apply(&changes).await {
            self.recover(&mut engine).await;
            return Err(e).context("ending battles");
        }
        Ok(())
    }

    /// Computes sides for dirty battles and publishes their events; returns how many battles
    /// were refreshed. Loops until no battle is dirty.
    pub async fn refresh(&self) -> anyhow::Result<usize> {
        let _one = self.refreshing.lock().await;
        let mut done = 0;
        loop {
            let ids = self.store.dirty_battles(REFRESH_BATCH).await?;
            if ids.is_empty() {
                return Ok(done);
            }
            let mut progressed = false;
            for id in ids {
                if self.refresh_one(id).await? {
                    done += 1;
                    progressed = true;
                }
            }
            if !progressed {
                // Every battle changed under us: the next pass picks them up again.
                return Ok(done);
            }
        }
    }

    async fn refresh_one(&self, id: u64) -> anyhow::Result<bool> {
        let Some(row) = self.store.row(id).await? else {
            return Ok(false);
        };
        let time = self.clock.now();
        if row.status == BattleStatus::Merged {
            let mut events = Vec::new();
            if row
                .published_status
                .is_some_and(|s| s != BattleStatus::Merged)
            {
                events.push(Envelope::wrap(&BattleMerged(snapshot_of(&row)), time)?);
            }
            let update = SidesUpdate {
                battle_id: id,
                seen_revision: row.revision,
                sides: None,
                published_status: BattleStatus::Merged,
                events,
                report: None,
            };
            return Ok(self.store.save_sides(&update).await?);
        }
        let report = self.compute_fresh(id, row.revision).await?;
        let sides = snapshot::side_snapshots(&report);
        let mut snap = snapshot_of(&row);
        snap.sides = sides.clone();
        snap.multi_party = report.multi_party;
        snap.one_sided = report.one_sided;
        let mut events = Vec::new();
        if row.total_kills > 0 {
            match row.published_status {
                None => {
                    events.push(Envelope::wrap(&BattleCreated(snap.clone()), time)?);
                    if row.status == BattleStatus::Ended {
                        events.push(Envelope::wrap(&BattleEnded(snap), time)?);
                    }
                }
                Some(BattleStatus::Active) if row.status == BattleStatus::Ended => {
                    events.push(Envelope::wrap(&BattleEnded(snap), time)?);
                }
                Some(_) => events.push(Envelope::wrap(&BattleUpdated(snap), time)?),
            }
        }
        let published = if row.total_kills > 0 {
            row.status
        } else {
            row.published_status.unwrap_or(row.status)
        };
        let json = serde_json::to_string(&report).context("serialising a report")?;
        let update = SidesUpdate {
            battle_id: id,
            seen_revision: row.revision,
            sides: Some((sides, report.multi_party, report.one_sided)),
            published_status: published,
            events,
            report: Some(json),
        };
        Ok(self.store.save_sides(&update).await?)
    }

    /// The full report of a stored battle (sides with the stored overrides), computed off the
    /// async threads.
    pub async fn compute_report(&self, id: u64) -> anyhow::Result<BattleReport> {
        let revision = self.store.row(id).await?.map_or(u64::MAX, |r| r.revision);
        self.compute_report_at(id, revision).await
    }

    /// [`Battles::compute_report`] for a known revision. The report the sides refresher stored
    /// for that revision is read back when there is one (one row instead of every killmail:
    /// the refresher has just computed it); otherwise it is computed, from killmails cached per
    /// revision, so the refresher and repeated reads of a big battle parse them once.
    pub async fn compute_report_at(&self, id: u64, revision: u64) -> anyhow::Result<BattleReport> {
        if let Some((stored, json)) = self.store.stored_report(id).await?
            && stored == revision
        {
            let parsed =
                tokio::task::spawn_blocking(move || serde_json::from_str::<BattleReport>(&json))
                    .await?;
            match parsed {
                Ok(r) => return Ok(r),
                // An unreadable row (an older report format) is recomputed, never an error.
                Err(e) => {
                    tracing::warn!(battle_id = id, error = %e, "stored report unreadable; recomputing")
                }
            }
        }
        self.compute_fresh(id, revision).await
    }

    /// The report recomputed from the battle's killmails, whatever is stored (benchmarks and
    /// checks).
    pub async fn recompute_report(&self, id: u64) -> anyhow::Result<BattleReport> {
        let revision = self.store.row(id).await?.map_or(u64::MAX, |r| r.revision);
        self.compute_fresh(id, revision).await
    }

    /// The report computed from the battle's killmails and overrides.
    async fn compute_fresh(&self, id: u64, revision: u64) -> anyhow::Result<BattleReport> {
        let cached = self
            .kill_cache
            .lock()
            .get(&id)
            .filter(|(r, _)| *r == revision)
            .map(|(_, k)| Arc::clone(k));
        let kills = match cached {
            Some(k) => k,
            None => {
                let k = Arc::new(self.store.kills_of(id).await?);
                let mut cache = self.kill_cache.lock();
                if cache.len() >= KILL_CACHE_BATTLES && !cache.contains_key(&id) {
                    // Drop the least recently changed battle.
                    if let Some(&old) = cache.iter().min_by_key(|(_, (r, _))| *r).map(|(b, _)| b) {
                        cache.remove(&old);
                    }
                }
                cache.insert(id, (revision, Arc::clone(&k)));
                k
            }
        };
        let overrides = self.store.overrides(id).await?;
        let geo = Arc::clone(&self.geo);
        let report =
            tokio::task::spawn_blocking(move || snapshot::report(&kills, &overrides, &geo)).await?;
        Ok(report)
    }

    /// Moves queued ship history while no batch arrives; returns the killmails moved.
    pub async fn move_history(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        while self.last_batch.lock().elapsed() >= HISTORY_IDLE {
            let n = self.store.move_ship_history(HISTORY_MOVE_LINES).await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        Ok(total)
    }

    /// Runs the ticker, the refresher and the history mover until shutdown.
    pub async fn run_background(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "battle ticker failed; retrying");
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "sides refresh failed; retrying");
            }
            if let Err(e) = self.move_history().await {
                tracing::warn!(error = %e, "moving ship history failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

async fn rebuild(
    store: &dyn BattleStore,
    geo: &Arc<Geo>,
    clock: &dyn Clock,
    settings: &EngineSettings,
) -> anyhow::Result<Engine> {
    let now = now_ms(clock);
    let Some(max) = store.max_kill_time().await? else {
        return Ok(Engine::new(settings.clone(), Arc::clone(geo)));
    };
    let ws = store.working_set(settings.working_set_since(max)).await?;
    let (engine, ops) = Engine::rebuild(settings.clone(), Arc::clone(geo), &ws, now);
    if !ops.is_empty() {
        store
            .apply(&ChangeSet {
                ops,
                now_ms: now,
                ..ChangeSet::default()
            })
            .await
            .context("aligning the store with the rebuilt clusterer")?;
    }
    tracing::info!(
        kills = ws.kills.len(),
        "battle clusterer rebuilt from the store"
    );
    Ok(engine)
}

/// The event summary of a stored battle (its stored sides).
pub fn snapshot_of(row: &BattleRow) -> BattleSnapshot {
    let id = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
    BattleSnapshot {
        battle_id: id(row.battle_id),
        status: row.status,
        merged_into: if row.status == BattleStatus::Merged {
            Some(id(row.merged_into.unwrap_or(row.battle_id)))
        } else {
            None
        },
        system_ids: row.system_ids.clone(),
        region_ids: row.region_ids.clone(),
        security_types: row.security_types.clone(),
        start_time: ms_to_time(row.start_ms),
        end_time: ms_to_time(row.end_ms.max(row.start_ms)),
        total_kills: row.total_kills,
        total_isk_destroyed: row.total_isk,
        pilots: row.pilots,
        multi_party: row.multi_party,
        one_sided: row.one_sided,
        sides: row.sides.clone(),
        revision: row.revision,
    }
}
