//! What the service knows beyond the bundled SDE, and how it learns more without ever
//! stalling: names, types and systems from ESI, and market prices.
//!
//! Lookups go through layers, cheapest first: an in-process map, the shared [`Cache`]
//! (so replicas share what one learnt), the service database (`esi_names`, `esi_cache`,
//! which survive restarts and carry the TTLs), and only then ESI — always in bulk
//! (`POST /universe/names` for a whole batch's ids, never one id at a time), and always
//! under a deadline. When the deadline passes, the lookup keeps running in the
//! background and stores what it finds; the caller enriches with what it has, marks
//! the killmail pending and moves on. At most one ESI lookup runs at a time, so a slow
//! ESI never piles up requests.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bs_cache::Cache;
use bs_esi::{EsiClient, EsiError, NameCategory};
use bs_sde::{MarketPrices, StaticData};
use futures::StreamExt;
use parking_lot::RwLock;
use tokio::sync::Semaphore;

use crate::domain::{Catalog, ExtraSystem, ExtraType, Missing, NameBook, NameState};
use crate::store::{EnrichmentStore, NameEntry};
use crate::tickers::Tickers;

/// `esi_cache` kinds.
pub mod kind {
    pub const TYPE: &str = "type";
    pub const SYSTEM: &str = "system";
    pub const PRICES: &str = "prices";
}

/// How long ESI answers are kept.
#[derive(Clone, Debug)]
pub struct Ttls {
    /// Resolved names (`enrichment.name_ttl`).
    pub name: Duration,
    /// "Does not exist" answers, shorter so a fresh entity appears soon.
    pub unknown: Duration,
    /// Types and systems ESI described (static data: long).
    pub statics: Duration,
    /// Market prices (ESI refreshes them about daily).
    pub prices: Duration,
}

impl Default for Ttls {
    fn default() -> Self {
        Self {
            name: Duration::from_secs(7 * 86_400),
            unknown: Duration::from_secs(86_400),
            statics: Duration::from_secs(30 * 86_400),
            prices: Duration::from_secs(86_400),
        }
    }
}

/// Counters for `/status` and the benchmark.
#[derive(Debug, Default)]
pub struct KnowledgeStats {
    pub esi_name_calls: AtomicU64,
    pub esi_type_calls: AtomicU64,
    pub esi_system_calls: AtomicU64,
    pub esi_price_calls: AtomicU64,
    /// Lookups that were skipped because another was still running.
    pub esi_busy_skips: AtomicU64,
    /// Lookups that passed their deadline and finished in the background.
    pub esi_deadline_passed: AtomicU64,
    pub names_from_cache: AtomicU64,
    pub names_from_db: AtomicU64,
    pub names_from_esi: AtomicU64,
}

/// What to do when another ESI lookup is still running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EsiWait {
    Skip,
    Queue,
}

/// A name held in memory, with its expiry (unix ms).
#[derive(Clone, Debug)]
struct Held {
    name: Option<String>,
    expires_at: i64,
}

/// The in-process name map seen at one instant.
struct NamesAt<'a> {
    map: &'a HashMap<i64, Held>,
    now: i64,
}

impl NameBook for NamesAt<'_> {
    fn get(&self, id: i64) -> NameState<'_> {
        match self.map.get(&id) {
            Some(h) if h.expires_at > self.now => match &h.name {
                Some(n) => NameState::Known(n),
                None => NameState::DoesNotExist,
            },
            _ => NameState::Missing,
        }
    }
}

/// Names, extra types/systems and prices, behind the layers described above.
pub struct Knowledge {
    sde: &'static StaticData,
    store: Arc<dyn EnrichmentStore>,
    cache: Arc<dyn Cache>,
    /// `None` in offline mode (demo): ESI is never called, names stay pending.
    esi: Option<EsiClient>,
    ttls: Ttls,
    names: RwLock<HashMap<i64, Held>>,
    types: RwLock<HashMap<i64, Option<ExtraType>>>,
    systems: RwLock<HashMap<i64, Option<ExtraSystem>>>,
    prices: RwLock<(Arc<MarketPrices>, String)>,
    /// One ESI lookup at a time.
    esi_slot: Arc<Semaphore>,
    pub stats: KnowledgeStats,
    /// Corporation and alliance tickers (their own ESI slot).
    pub tickers: Arc<Tickers>,
}

/// Entries the in-process name map may hold before it is cleared (memory bound).
const MAX_NAMES_IN_MEMORY: usize = 2_000_000;

impl Knowledge {
    pub fn new(
        sde: &'static StaticData,
        store: Arc<dyn EnrichmentStore>,
        cache: Arc<dyn Cache>,
        esi: Option<EsiClient>,
        ttls: Ttls,
    ) -> Self {
        let tickers = Arc::new(Tickers::new(
            sde,
            Arc::clone(&store),
            esi.clone(),
            ttls.clone(),
        ));
        Self {
            tickers,
            sde,
            store,
            cache,
            esi,
            ttls,
            names: RwLock::new(HashMap::new()),
            types: RwLock::new(HashMap::new()),
            systems: RwLock::new(HashMap::new()),
            prices: RwLock::new((Arc::new(MarketPrices::bundled().clone()), "bundled".into())),
            esi_slot: Arc::new(Semaphore::new(1)),
            stats: KnowledgeStats::default(),
        }
    }

    pub fn sde(&self) -> &'static StaticData {
        self.sde
    }

    pub fn esi(&self) -> Option<&EsiClient> {
        self.esi.as_ref()
    }

    /// Loads what earlier runs learnt (types, systems, prices) from the database.
    pub async fn load(&self, now: i64) -> anyhow::Result<()> {
        self.tickers.load(now).await?;
        for (id, body) in self.store.cache_all(kind::TYPE, now).await? {
            let value: Option<ExtraType> = serde_json::from_str(&body).unwrap_or(None);
            self.types.write().insert(id, value);
        }
        for (id, body) in self.store.cache_all(kind::SYSTEM, now).await? {
            let value: Option<ExtraSystem> = serde_json::from_str(&body).unwrap_or(None);
            self.systems.write().insert(id, value);
        }
        if let Some((_, body)) = self.store.cache_all(kind::PRICES, now).await?.pop()
            && let Ok(prices) = MarketPrices::from_esi_json(body.as_bytes())
            && !prices.is_empty()
        {
            *self.prices.write() = (Arc::new(prices), "esi (stored)".into());
        }
        Ok(())
    }

    /// Puts names known from elsewhere (the offline demo's bundled snapshot) into
    /// the in-process map, valid for the name TTL from `now`. Names already held win.
    pub fn seed_names(&self, names: impl IntoIterator<Item = (i64, String)>, now: i64) {
        let expires_at = now.saturating_add(self.ttls.name.as_millis() as i64);
        let mut map = self.names.write();
        for (id, name) in names {
            map.entry(id).or_insert(Held {
                name: Some(name),
                expires_at,
            });
        }
    }

    /// Runs `f` with a catalog of everything known at `now`. Synchronous: the locks are
    /// held only while `f` runs and never across an await.
    pub fn with_catalog<R>(&self, now: i64, f: impl FnOnce(&Catalog<'_>) -> R) -> R {
        let names = self.names.read();
        let types = self.types.read();
        let systems = self.systems.read();
        let prices = Arc::clone(&self.prices.read().0);
        let book = NamesAt { map: &names, now };
        let catalog = Catalog {
            sde: self.sde,
            extra_types: &types,
            extra_systems: &systems,
            names: &book,
            prices: &prices,
        };
        f(&catalog)
    }

    /// Where the current prices come from (`bundled`, `esi …`).
    pub fn prices_source(&self) -> String {
        self.prices.read().1.clone()
    }

    /// Names held in memory.
    pub fn names_in_memory(&self) -> usize {
        self.names.read().len()
    }

    /// Resolves `missing` through the cache, the database and finally ESI (bulk), waiting
    /// at most `deadline` for ESI. Returns true when nothing is left to ask for.
    ///
    /// With [`EsiWait::Skip`] (the consumer) a lookup already in flight means "not now";
    /// with [`EsiWait::Queue`] (the background resolver) it waits for it, within `deadline`.
    pub async fn resolve(
        self: &Arc<Self>,
        missing: &Missing,
        now: i64,
        deadline: Duration,
        wait: EsiWait,
    ) -> bool {
        // Names first, tickers after them with what is left of the deadline: tickers are
        // the lower priority and must not take ESI's answers (or its error budget) from the
        // names. (Run side by side, a 5xx burst was absorbed by whichever requests came
        // first, so names sometimes resolved and sometimes not: `faults::esi_5xx_bursts`.)
        let started = tokio::time::Instant::now();
        let names = self.resolve_names(missing, now, deadline, wait).await;
        let left = deadline.saturating_sub(started.elapsed());
        let tickers = self.tickers.resolve(missing, now, left, wait).await;
        names && tickers
    }

    /// The background fetch of corporation tickers the policy wants
    /// ([`Tickers::fetch_wanted`]), only while no name lookup is running (low priority).
    pub async fn fetch_wanted_tickers(&self, now: i64, deadline: Duration) -> usize {
        if self.esi_slot.available_permits() == 0 {
            return 0;
        }
        self.tickers.fetch_wanted(now, deadline).await
    }

    async fn resolve_names(
        self: &Arc<Self>,
        missing: &Missing,
        now: i64,
        deadline: Duration,
        wait: EsiWait,
    ) -> bool {
        let mut names: Vec<i64> = missing.names.iter().copied().collect();
        if !names.is_empty() {
            names = self.names_from_cache(names, now).await;
        }
        if !names.is_empty() {
            names = self.names_from_db(names, now).await;
        }
        let types: Vec<i64> = missing.types.iter().copied().collect();
        let systems: Vec<i64> = missing.systems.iter().copied().collect();
        if names.is_empty() && types.is_empty() && systems.is_empty() {
            return true;
        }
        let Some(esi) = self.esi.clone() else {
            return false;
        };
        let started = tokio::time::Instant::now();
        let permit = match wait {
            EsiWait::Skip => Arc::clone(&self.esi_slot).try_acquire_owned().ok(),
            EsiWait::Queue => {
                tokio::time::timeout(deadline, Arc::clone(&self.esi_slot).acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        let Some(permit) = permit else {
            // Another lookup is running (ESI is slow): do not queue behind it.
            self.stats.esi_busy_skips.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let deadline = deadline.saturating_sub(started.elapsed());
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            let _permit = permit;
            this.ask_esi(&esi, names, types, systems, now).await
        });
        match tokio::time::timeout(deadline, task).await {
            Ok(Ok(complete)) => complete,
            Ok(Err(_)) => false,
            Err(_) => {
                self.stats
                    .esi_deadline_passed
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    fn remember_names(&self, entries: impl IntoIterator<Item = (i64, Option<String>, i64)>) {
        let mut map = self.names.write();
        if map.len() > MAX_NAMES_IN_MEMORY {
            map.clear();
        }
        for (id, name, expires_at) in entries {
            map.insert(id, Held { name, expires_at });
        }
    }

    async fn names_from_cache(&self, ids: Vec<i64>, now: i64) -> Vec<i64> {
        let cache = &self.cache;
        let answers: Vec<(i64, Option<Vec<u8>>)> = futures::stream::iter(ids)
            .map(|id| async move {
                let hit = cache.get(&cache_key(id)).await.ok().flatten();
                (id, hit)
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let mut rest = Vec::new();
        let mut found = Vec::new();
        // The cache's own TTL governs; in memory they live one name TTL from now at most.
        let expires = now + millis(self.ttls.unknown);
        for (id, hit) in answers {
            match hit {
                Some(bytes) if bytes.is_empty() => found.push((id, None, expires)),
                Some(bytes) => match String::from_utf8(bytes) {
                    Ok(name) => found.push((id, Some(name), expires)),
                    Err(_) => rest.push(id),
                },
                None => rest.push(id),
            }
        }
        self.stats
            .names_from_cache
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        self.remember_names(found);
        rest.sort_unstable();
        rest
    }

    async fn names_from_db(&self, ids: Vec<i64>, now: i64) -> Vec<i64> {
        let entries = match self.store.names(&ids, now).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "reading cached names failed");
                return ids;
            }
        };
        let expires = now + millis(self.ttls.unknown);
        let known: std::collections::HashSet<i64> = entries.iter().map(|e| e.id).collect();
        self.stats
            .names_from_db
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        for e in &entries {
            let ttl = if e.name.is_some() {
                self.ttls.name
            } else {
                self.ttls.unknown
            };
            let _ = self
                .cache
                .set(
                    &cache_key(e.id),
                    e.name.as_deref().unwrap_or("").as_bytes(),
                    ttl,
                )
                .await;
        }
        self.remember_names(entries.into_iter().map(|e| (e.id, e.name, expires)));
        ids.into_iter().filter(|id| !known.contains(id)).collect()
    }

    /// Asks ESI for everything still missing and stores the answers. True when every id
    /// got an answer (a name, or "does not exist").
    async fn ask_esi(
        &self,
        esi: &EsiClient,
        names: Vec<i64>,
        types: Vec<i64>,
        systems: Vec<i64>,
        now: i64,
    ) -> bool {
        let mut complete = true;
        if !names.is_empty() {
            let calls = names.len().div_ceil(bs_esi::MAX_IDS_PER_CALL) as u64;
            self.stats
                .esi_name_calls
                .fetch_add(calls, Ordering::Relaxed);
            let lookup = esi.names(&names).await;
            if let Some(e) = &lookup.error {
                tracing::info!(error = %e, deferred = lookup.deferred.len(), "some names deferred");
            }
            complete &= lookup.deferred.is_empty();
            let mut entries: Vec<NameEntry> = lookup
                .found
                .iter()
                .map(|n| NameEntry {
                    id: n.id,
                    name: Some(n.name.clone()),
                    category: Some(category(n.category).to_owned()),
                })
                .collect();
            let found = entries.len();
            entries.extend(lookup.unknown.iter().map(|&id| NameEntry {
                id,
                name: None,
                category: None,
            }));
            self.stats
                .names_from_esi
                .fetch_add(found as u64, Ordering::Relaxed);
            self.store_names(&entries[..found], now, self.ttls.name)
                .await;
            self.store_names(&entries[found..], now, self.ttls.unknown)
                .await;
        }
        for id in types {
            self.stats.esi_type_calls.fetch_add(1, Ordering::Relaxed);
            let value = match esi.type_info(id).await {
                Ok(t) => Some(ExtraType {
                    name: t.name,
                    group_id: t.group_id,
                }),
                Err(EsiError::NotFound) => None,
                Err(e) => {
                    tracing::info!(type_id = id, error = %e, "type lookup deferred");
                    complete = false;
                    continue;
                }
            };
            self.store_static(kind::TYPE, id, &value, now).await;
            self.types.write().insert(id, value);
        }
        for id in systems {
            self.stats.esi_system_calls.fetch_add(1, Ordering::Relaxed);
            let value = match esi.system(id).await {
                Ok(s) => Some(ExtraSystem {
                    name: s.name,
                    constellation_id: s.constellation_id,
                    security_status: s.security_status,
                }),
                Err(EsiError::NotFound) => None,
                Err(e) => {
                    tracing::info!(system_id = id, error = %e, "system lookup deferred");
                    complete = false;
                    continue;
                }
            };
            self.store_static(kind::SYSTEM, id, &value, now).await;
            self.systems.write().insert(id, value);
        }
        complete
    }

    async fn store_names(&self, entries: &[NameEntry], now: i64, ttl: Duration) {
        if entries.is_empty() {
            return;
        }
        let expires = now + millis(ttl);
        if let Err(e) = self.store.put_names(entries, now, expires).await {
            tracing::warn!(error = %e, "storing names failed");
        }
        for e in entries {
            let _ = self
                .cache
                .set(
                    &cache_key(e.id),
                    e.name.as_deref().unwrap_or("").as_bytes(),
                    ttl,
                )
                .await;
        }
        self.remember_names(entries.iter().map(|e| (e.id, e.name.clone(), expires)));
    }

    async fn store_static<T: serde::Serialize>(
        &self,
        kind: &str,
        id: i64,
        value: &Option<T>,
        now: i64,
    ) {
        let ttl = if value.is_some() {
            self.ttls.statics
        } else {
            self.ttls.unknown
        };
        let body = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
        if let Err(e) = self
            .store
            .cache_put(kind, id, &body, now, now + millis(ttl))
            .await
        {
            tracing::warn!(error = %e, kind, id, "storing an ESI answer failed");
        }
    }

    /// Fetches `/markets/prices`, stores and uses it. Returns false in offline mode.
    pub async fn refresh_prices(&self, now: i64) -> anyhow::Result<bool> {
        let Some(esi) = &self.esi else {
            return Ok(false);
        };
        self.stats.esi_price_calls.fetch_add(1, Ordering::Relaxed);
        let rows = esi.market_prices().await?;
        let body = serde_json::to_string(&rows)?;
        let prices = MarketPrices::from_esi_json(body.as_bytes())?;
        if prices.is_empty() {
            anyhow::bail!("esi returned no prices");
        }
        self.store
            .cache_put(kind::PRICES, 0, &body, now, now + millis(self.ttls.prices))
            .await?;
        let when = bs_store::from_millis(now).format("%Y-%m-%d %H:%M UTC");
        *self.prices.write() = (Arc::new(prices), format!("esi {when}"));
        Ok(true)
    }

    /// Ids in `missing` that are still unresolved now (for tests and `/status`).
    pub fn still_missing(&self, ids: &BTreeSet<i64>, now: i64) -> usize {
        let names = self.names.read();
        let book = NamesAt { map: &names, now };
        ids.iter()
            .filter(|&&id| matches!(book.get(id), NameState::Missing))
            .count()
    }
}

fn category(c: NameCategory) -> &'static str {
    match c {
        NameCategory::Alliance => "alliance",
        NameCategory::Character => "character",
        NameCategory::Constellation => "constellation",
        NameCategory::Corporation => "corporation",
        NameCategory::InventoryType => "inventory_type",
        NameCategory::Region => "region",
        NameCategory::SolarSystem => "solar_system",
        NameCategory::Station => "station",
        NameCategory::Faction => "faction",
        NameCategory::Other => "other",
    }
}

fn cache_key(id: i64) -> String {
    format!("enrichment:name:{id}")
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}
