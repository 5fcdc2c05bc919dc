//! Corporation and alliance tickers (`[GSF]`, `CONDI`), so search finds entities by what
//! players see next to a name.
//!
//! ESI has no bulk ticker route: each player corporation and alliance is one
//! `GET /corporations/{id}` / `GET /alliances/{id}`. Tickers almost never change, so an answer
//! is kept a long time ([`Ttls::statics`]) in memory and in the service database
//! (`esi_cache`, kinds [`CORPORATION`] and [`ALLIANCE`], body = the ticker as a JSON string
//! or `null` for "does not exist"), loaded again at start. NPC corporations take theirs from
//! the SDE. The offline demo seeds the real tickers bundled in `data/names/esi-tickers.tsv.gz`
//! (from the ESI entity lists in `../shared/data/esi/entities/`).
//!
//! # Which tickers are asked for ([`TickerPolicy`])
//!
//! One GET per entity is what made tickers expensive: the 79k-killmail week names ~6,500
//! player corporations and ~780 alliances, and asking for all of them cost 0.094 ESI calls
//! per killmail against a goal of 0.05 (names in bulk cost 0.002). So:
//!
//! * **Alliance tickers are eager**: few (one call per ~100 killmails on that week) and what
//!   users type most (`[GSF]`, `CONDI`). An unknown one makes the killmail pending, like a
//!   name, and a later revision carries it.
//! * **Corporation tickers are fetched only for corporations that matter**: seen on at least
//!   [`TickerPolicy::corporation_min_killmails`] killmails (default 10) within
//!   [`TickerPolicy::window`] (7 days). Half the corporations of that week appear on fewer
//!   than five killmails; the 2,621 seen on ≥ 10 are the ones that show up in battle reports
//!   and get searched. They are asked for in the background ([`Tickers::fetch_wanted`], from
//!   the resolver), only while no name lookup is running, and under
//!   [`TickerPolicy::corporation_calls_per_minute`], so they never compete with names or
//!   killmail bodies. A corporation ticker is **never pending**: a killmail without one is
//!   complete, and the killmails after the fetch carry it (which is how search learns it).
//!
//! The pipeline never waits on these calls longer than it waits for names: [`fill`] only
//! reads memory and reports the missing alliance tickers (into [`Missing`], which makes the
//! killmail `names_pending`), and [`Tickers::resolve`] asks ESI after the names, under what
//! is left of the caller's deadline, on its own slot. What a deadline cut off keeps running
//! in the background; the resolver's later pass re-publishes the killmail with the tickers
//! and a higher `revision`, exactly as for late names.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bs_esi::{EsiClient, EsiError};
use bs_events::{Affiliation, KillmailEnriched};
use bs_sde::StaticData;
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Semaphore;

use crate::domain::{Enriched, Missing};
use crate::knowledge::{EsiWait, Ttls, millis};
use crate::store::EnrichmentStore;

/// `esi_cache` kind of corporation tickers.
pub const CORPORATION: &str = "corporation_ticker";
/// `esi_cache` kind of alliance tickers.
pub const ALLIANCE: &str = "alliance_ticker";

/// At most this many ESI calls in flight for tickers (the client has its own limits too).
const CONCURRENCY: usize = 8;
/// Fewer in flight for the background corporation fetches (low priority).
const BACKGROUND_CONCURRENCY: usize = 2;

/// Which corporation tickers are worth one ESI call each (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TickerPolicy {
    /// A player corporation's ticker is asked for once it was seen on this many killmails
    /// within [`Self::window`]. 1 asks for every corporation (the old behaviour).
    pub corporation_min_killmails: u32,
    /// How long sightings count.
    pub window: Duration,
    /// Upper bound on `GET /corporations/{id}` per minute (`u32::MAX`: none).
    pub corporation_calls_per_minute: u32,
}

impl Default for TickerPolicy {
    fn default() -> Self {
        Self {
            corporation_min_killmails: 10,
            window: Duration::from_secs(7 * 86_400),
            corporation_calls_per_minute: 60,
        }
    }
}

/// Killmail counts per corporation within the policy window. Pure (time as a parameter).
#[derive(Debug, Default)]
pub struct Sightings {
    /// id -> (killmails seen, start of its window, unix ms).
    seen: HashMap<i64, (u32, i64)>,
}

impl Sightings {
    /// Counts one killmail for corporation `id` at `now`; true when this sighting makes it
    /// reach the threshold (it is then forgotten: the caller asks for it once).
    pub fn see(&mut self, id: i64, now: i64, policy: &TickerPolicy) -> bool {
        if self.seen.len() > MAX_IN_MEMORY {
            self.seen.clear();
        }
        let window = millis(policy.window);
        let entry = self.seen.entry(id).or_insert((0, now));
        if now.saturating_sub(entry.1) > window {
            *entry = (0, now);
        }
        entry.0 += 1;
        if entry.0 >= policy.corporation_min_killmails.max(1) {
            self.seen.remove(&id);
            return true;
        }
        false
    }
}

/// A fixed one-minute window of corporation ticker calls.
#[derive(Debug, Default)]
struct Budget {
    minute: i64,
    used: u32,
}

impl Budget {
    /// Takes up to `want` calls at `now`; returns how many may be made.
    fn take(&mut self, want: usize, now: i64, per_minute: u32) -> usize {
        let minute = now.div_euclid(60_000);
        if minute != self.minute {
            *self = Self { minute, used: 0 };
        }
        let left = per_minute.saturating_sub(self.used) as usize;
        let n = want.min(left);
        self.used = self.used.saturating_add(n as u32);
        n
    }
}
/// Entries the in-process maps may hold before they are cleared (memory bound).
const MAX_IN_MEMORY: usize = 1_000_000;

const BUNDLED: &[u8] = include_bytes!("../../../data/names/esi-tickers.tsv.gz");

/// `(id, ticker)` rows.
pub type TickerRows = Vec<(i64, String)>;

/// The bundled snapshot: `(alliances, corporations)` as `(id, ticker)`. Lines are
/// `a<id>\t<ticker>` or `c<id>\t<ticker>` (old alliance ids are not in the 99M range, so the
/// kind is spelled out); malformed lines are skipped.
pub fn bundled() -> (TickerRows, TickerRows) {
    let mut text = String::new();
    let (mut alliances, mut corporations) = (Vec::new(), Vec::new());
    if flate2::read::GzDecoder::new(BUNDLED)
        .read_to_string(&mut text)
        .is_err()
    {
        return (alliances, corporations);
    }
    for line in text.lines() {
        let Some((key, ticker)) = line.split_once('\t') else {
            continue;
        };
        let (out, id) = match key.split_at_checked(1) {
            Some(("a", id)) => (&mut alliances, id),
            Some(("c", id)) => (&mut corporations, id),
            _ => continue,
        };
        if let Ok(id) = id.parse() {
            out.push((id, ticker.to_owned()));
        }
    }
    (alliances, corporations)
}

/// What is known about one entity's ticker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickerState<'a> {
    Known(&'a str),
    /// ESI says the entity does not exist.
    DoesNotExist,
    Missing,
}

/// A ticker held in memory, with its expiry (unix ms).
#[derive(Clone, Debug)]
struct Held {
    ticker: Option<String>,
    expires_at: i64,
}

/// Which ESI route an id's ticker comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Corporation,
    Alliance,
}

impl Kind {
    fn cache_kind(self) -> &'static str {
        match self {
            Kind::Corporation => CORPORATION,
            Kind::Alliance => ALLIANCE,
        }
    }
}

/// Counters for `/status` and tests.
#[derive(Debug, Default)]
pub struct TickerStats {
    pub esi_calls: AtomicU64,
    pub resolved: AtomicU64,
    pub deferred: AtomicU64,
}

/// Tickers in memory, backed by the service database and ESI.
pub struct Tickers {
    sde: &'static StaticData,
    store: Arc<dyn EnrichmentStore>,
    esi: Option<EsiClient>,
    ttls: Ttls,
    corporations: RwLock<HashMap<i64, Held>>,
    alliances: RwLock<HashMap<i64, Held>>,
    /// One ticker lookup at a time, separate from the name lookups' slot.
    slot: Arc<Semaphore>,
    policy: RwLock<TickerPolicy>,
    sightings: Mutex<Sightings>,
    /// Corporations that reached the threshold and wait for their background fetch.
    wanted: Mutex<BTreeSet<i64>>,
    /// Of those, taken by a fetch still running.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    budget: Mutex<Budget>,
    pub stats: TickerStats,
}

impl Tickers {
    pub fn new(
        sde: &'static StaticData,
        store: Arc<dyn EnrichmentStore>,
        esi: Option<EsiClient>,
        ttls: Ttls,
    ) -> Self {
        Self {
            sde,
            store,
            esi,
            ttls,
            corporations: RwLock::new(HashMap::new()),
            alliances: RwLock::new(HashMap::new()),
            slot: Arc::new(Semaphore::new(1)),
            policy: RwLock::new(TickerPolicy::default()),
            sightings: Mutex::new(Sightings::default()),
            wanted: Mutex::new(BTreeSet::new()),
            in_flight: Arc::default(),
            budget: Mutex::new(Budget::default()),
            stats: TickerStats::default(),
        }
    }

    /// Replaces the policy (configuration, tests, the benchmark).
    pub fn set_policy(&self, policy: TickerPolicy) {
        *self.policy.write() = policy;
    }

    pub fn policy(&self) -> TickerPolicy {
        self.policy.read().clone()
    }

    /// Corporations waiting for their background ticker fetch (queued or being asked).
    pub fn wanted(&self) -> usize {
        self.wanted.lock().len() + self.in_flight.load(Ordering::Acquire)
    }

    /// Counts the player corporations of freshly enriched killmails (once per killmail)
    /// whose ticker is unknown; those reaching the policy threshold are queued for
    /// [`Self::fetch_wanted`]. Never does IO.
    pub fn observe<'a>(&self, events: impl IntoIterator<Item = &'a KillmailEnriched>, now: i64) {
        let policy = self.policy.read().clone();
        let mut due = Vec::new();
        {
            let mut sightings = self.sightings.lock();
            let mut corporations = BTreeSet::new();
            for event in events {
                corporations.clear();
                let people = std::iter::once(&event.victim.who)
                    .chain(event.attackers.iter().map(|a| &a.who));
                for who in people {
                    if let Some(id) = who.corporation_id.filter(|&i| i > 0)
                        && who.corporation_ticker.is_none()
                        && self.corporation(id, now).is_none()
                    {
                        corporations.insert(id);
                    }
                }
                for &id in &corporations {
                    if sightings.see(id, now, &policy) {
                        due.push(id);
                    }
                }
            }
        }
        if !due.is_empty() {
            self.wanted.lock().extend(due);
        }
    }

    /// Asks ESI for the queued corporation tickers, within the per-minute budget and on
    /// the ticker slot (skipped when a ticker lookup is running). Ids that got no answer
    /// (ESI said "wait", or the deadline passed) stay queued. Returns how many were asked.
    pub async fn fetch_wanted(self: &Arc<Self>, now: i64, deadline: Duration) -> usize {
        let Some(esi) = self.esi.clone() else {
            return 0;
        };
        let Ok(permit) = Arc::clone(&self.slot).try_acquire_owned() else {
            return 0;
        };
        let per_minute = self.policy.read().corporation_calls_per_minute;
        let ids: Vec<i64> = {
            let mut wanted = self.wanted.lock();
            let n = self.budget.lock().take(wanted.len(), now, per_minute);
            let ids: Vec<i64> = wanted.iter().copied().take(n).collect();
            for id in &ids {
                wanted.remove(id);
            }
            self.in_flight.fetch_add(ids.len(), Ordering::AcqRel);
            ids
        };
        if ids.is_empty() {
            return 0;
        }
        let asked = ids.len();
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            let _permit = permit;
            let kinds = ids.iter().map(|&id| (Kind::Corporation, id)).collect();
            this.ask(&esi, kinds, now, BACKGROUND_CONCURRENCY).await;
            // Whatever got no answer is asked again on a later pass.
            let unanswered: Vec<i64> = ids
                .into_iter()
                .filter(|&id| this.corporation(id, now).is_none())
                .collect();
            this.wanted.lock().extend(unanswered);
            this.in_flight.fetch_sub(asked, Ordering::AcqRel);
        });
        let _ = tokio::time::timeout(deadline, task).await;
        asked
    }

    fn map(&self, kind: Kind) -> &RwLock<HashMap<i64, Held>> {
        match kind {
            Kind::Corporation => &self.corporations,
            Kind::Alliance => &self.alliances,
        }
    }

    /// Loads the tickers earlier runs stored.
    pub async fn load(&self, now: i64) -> anyhow::Result<()> {
        for kind in [Kind::Corporation, Kind::Alliance] {
            let rows = self.store.cache_all(kind.cache_kind(), now).await?;
            let mut map = self.map(kind).write();
            for (id, body) in rows {
                // Unreadable bodies are skipped (asked again), never fatal.
                if let Ok(ticker) = serde_json::from_str::<Option<String>>(&body) {
                    // The stored expiry is not returned; a day from now bounds how long a
                    // replica keeps a loaded answer before the database is asked again.
                    let expires_at = now + millis(self.ttls.unknown);
                    map.insert(id, Held { ticker, expires_at });
                }
            }
        }
        Ok(())
    }

    /// Puts tickers known from elsewhere (the offline demo's bundled snapshot, see
    /// [`bundled`]) in memory, valid for the static-data TTL. Tickers already held win.
    pub fn seed(&self, (alliances, corporations): (TickerRows, TickerRows), now: i64) {
        let expires_at = now.saturating_add(millis(self.ttls.statics));
        for (kind, rows) in [
            (Kind::Alliance, alliances),
            (Kind::Corporation, corporations),
        ] {
            let mut map = self.map(kind).write();
            for (id, ticker) in rows {
                map.entry(id).or_insert(Held {
                    ticker: Some(ticker),
                    expires_at,
                });
            }
        }
    }

    fn state(&self, kind: Kind, id: i64, now: i64) -> Option<Option<String>> {
        self.map(kind)
            .read()
            .get(&id)
            .filter(|h| h.expires_at > now)
            .map(|h| h.ticker.clone())
    }

    /// The ticker of corporation `id` at `now` (NPC corporations from the SDE).
    pub fn corporation(&self, id: i64, now: i64) -> Option<Option<String>> {
        if let Some(npc) = self.sde.npc_corporation(id) {
            return Some(Some(npc.ticker.clone()).filter(|t| !t.is_empty()));
        }
        self.state(Kind::Corporation, id, now)
    }

    /// The ticker of alliance `id` at `now`.
    pub fn alliance(&self, id: i64, now: i64) -> Option<Option<String>> {
        self.state(Kind::Alliance, id, now)
    }

    /// Fills the tickers of every participant of `e` from memory; unknown ones go into
    /// `e.missing` and make the killmail pending. Never does IO.
    pub fn fill(&self, e: &mut Enriched, now: i64) {
        fill(
            &mut e.event,
            &mut e.missing,
            |id| self.corporation(id, now),
            |id| self.alliance(id, now),
        );
    }

    /// Resolves the tickers `missing` lacks through ESI, waiting at most `deadline`. True
    /// when nothing is left to ask for. With [`EsiWait::Skip`] a lookup already running
    /// means "not now".
    pub async fn resolve(
        self: &Arc<Self>,
        missing: &Missing,
        now: i64,
        deadline: Duration,
        wait: EsiWait,
    ) -> bool {
        let mut ids: Vec<(Kind, i64)> = Vec::new();
        for &id in &missing.alliance_tickers {
            if self.alliance(id, now).is_none() {
                ids.push((Kind::Alliance, id));
            }
        }
        for &id in &missing.corporation_tickers {
            if self.corporation(id, now).is_none() {
                ids.push((Kind::Corporation, id));
            }
        }
        if ids.is_empty() {
            return true;
        }
        let Some(esi) = self.esi.clone() else {
            return false;
        };
        let started = tokio::time::Instant::now();
        let permit = match wait {
            EsiWait::Skip => Arc::clone(&self.slot).try_acquire_owned().ok(),
            EsiWait::Queue => {
                tokio::time::timeout(deadline, Arc::clone(&self.slot).acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        let Some(permit) = permit else {
            return false;
        };
        let deadline = deadline.saturating_sub(started.elapsed());
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            let _permit = permit;
            this.ask(&esi, ids, now, CONCURRENCY).await
        });
        matches!(tokio::time::timeout(deadline, task).await, Ok(Ok(true)))
    }

    /// One GET per id, a few in flight; stops early when ESI says "wait". True when every
    /// id got an answer.
    async fn ask(
        &self,
        esi: &EsiClient,
        ids: Vec<(Kind, i64)>,
        now: i64,
        concurrency: usize,
    ) -> bool {
        let total = ids.len();
        let answers: Vec<(Kind, i64, Result<String, EsiError>)> = futures::stream::iter(ids)
            .map(|(kind, id)| async move {
                self.stats.esi_calls.fetch_add(1, Ordering::Relaxed);
                let r = match kind {
                    Kind::Corporation => esi.corporation(id).await.map(|c| c.ticker),
                    Kind::Alliance => esi.alliance(id).await.map(|a| a.ticker),
                };
                (kind, id, r)
            })
            .buffer_unordered(concurrency)
            // ESI said "wait" (or failed): the rest is deferred to a later pass.
            .take_while(|(_, _, r)| std::future::ready(!matches!(r, Err(e) if e.is_transient())))
            .collect()
            .await;
        let mut answered = 0usize;
        for (kind, id, r) in answers {
            let ticker = match r {
                Ok(t) => Some(t).filter(|t| !t.is_empty()),
                Err(EsiError::NotFound) => None,
                Err(e) => {
                    tracing::info!(id, error = %e, "ticker lookup deferred");
                    continue;
                }
            };
            answered += 1;
            self.remember(kind, id, ticker, now).await;
        }
        self.stats
            .resolved
            .fetch_add(answered as u64, Ordering::Relaxed);
        self.stats
            .deferred
            .fetch_add((total - answered) as u64, Ordering::Relaxed);
        answered == total
    }

    async fn remember(&self, kind: Kind, id: i64, ticker: Option<String>, now: i64) {
        let ttl = if ticker.is_some() {
            self.ttls.statics
        } else {
            self.ttls.unknown
        };
        let expires_at = now + millis(ttl);
        let body = serde_json::to_string(&ticker).unwrap_or_else(|_| "null".into());
        if let Err(e) = self
            .store
            .cache_put(kind.cache_kind(), id, &body, now, expires_at)
            .await
        {
            tracing::warn!(error = %e, id, "storing a ticker failed");
        }
        let mut map = self.map(kind).write();
        if map.len() > MAX_IN_MEMORY {
            map.clear();
        }
        map.insert(id, Held { ticker, expires_at });
    }
}

/// Sets the tickers of every participant from the two lookups (`None` = unknown,
/// `Some(None)` = does not exist); adds the unknown alliance tickers to `missing` and marks
/// the event pending when there are any. An unknown corporation ticker is left empty and is
/// not pending: whether it is fetched at all is [`TickerPolicy`]'s call. Pure.
pub fn fill(
    event: &mut KillmailEnriched,
    missing: &mut Missing,
    corporation: impl Fn(i64) -> Option<Option<String>>,
    alliance: impl Fn(i64) -> Option<Option<String>>,
) {
    let before = missing.corporation_tickers.len() + missing.alliance_tickers.len();
    let mut one = |who: &mut Affiliation| {
        if let Some(id) = who.corporation_id.filter(|&i| i > 0)
            && let Some(t) = corporation(id)
        {
            who.corporation_ticker = t;
        }
        if let Some(id) = who.alliance_id.filter(|&i| i > 0) {
            match alliance(id) {
                Some(t) => who.alliance_ticker = t,
                None => {
                    missing.alliance_tickers.insert(id);
                }
            }
        }
    };
    one(&mut event.victim.who);
    for a in &mut event.attackers {
        one(&mut a.who);
    }
    if missing.corporation_tickers.len() + missing.alliance_tickers.len() > before {
        event.names_pending = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corporation_is_wanted_on_its_nth_killmail_within_the_window() {
        let policy = TickerPolicy {
            corporation_min_killmails: 3,
            window: Duration::from_secs(60),
            ..TickerPolicy::default()
        };
        let mut s = Sightings::default();
        assert!(!s.see(1, 0, &policy));
        assert!(!s.see(1, 1_000, &policy));
        // Two sightings, then the window passes: counting starts again.
        assert!(!s.see(1, 70_000, &policy));
        assert!(!s.see(1, 71_000, &policy));
        assert!(s.see(1, 72_000, &policy));
        // Seen once: never wanted.
        assert!(!s.see(2, 72_000, &policy));
    }

    #[test]
    fn the_budget_caps_calls_per_minute() {
        let mut b = Budget::default();
        assert_eq!(b.take(50, 1_000, 60), 50);
        assert_eq!(b.take(50, 2_000, 60), 10);
        assert_eq!(b.take(50, 3_000, 60), 0);
        assert_eq!(b.take(50, 61_000, 60), 50);
    }

    #[test]
    fn bundled_tickers_are_real() {
        let (alliances, corporations) = bundled();
        let a: HashMap<i64, String> = alliances.into_iter().collect();
        let c: HashMap<i64, String> = corporations.into_iter().collect();
        assert!(
            a.len() > 4_000 && c.len() > 20_000,
            "{} {}",
            a.len(),
            c.len()
        );
        // Goonswarm Federation (a pre-2010 alliance id) and People in Lousy Ships.
        assert_eq!(a.get(&1_354_830_081).map(String::as_str), Some("CONDI"));
        assert_eq!(a.get(&99_000_008).map(String::as_str), Some("PILS."));
        assert_eq!(c.get(&98_309_716).map(String::as_str), Some("DURST"));
    }
}
