//! The incremental, order-independent battle clusterer.
//!
//! The rules (see docs/design/battle-clustering.md for the why and the numbers):
//!
//! 1. **Density.** A kill is a *core* kill when its system has at least `core_min_kills` kills
//!    (itself included) within ± `density_window_ms` of its kill time. NPC-only kills are not
//!    counted. Core status only ever turns on as kills arrive.
//! 2. **Links.** Two core kills are linked when they are at most `link_gap_ms` apart and either in
//!    the same system, or in gate-adjacent systems and sharing at least
//!    `cross_system_min_shared_pilots` pilots. Battles are the connected components of core kills,
//!    so adding kills only ever adds links: components grow and merge, they never split.
//! 3. **Borders.** A non-core kill joins the component of the nearest core kill within
//!    `border_gap_ms` (same system, or an adjacent system with shared pilots); ties go to the
//!    earlier core kill. Borders are the only part that can move when kills arrive.
//! 4. **Qualification.** A component is a battle once it has `min_battle_kills` core kills and
//!    `min_battle_pilots` distinct pilots on its core kills. Both only grow.
//!
//! Every rule is a function of the *set* of kills (with a total order on `(time, killmail_id)` for
//! ties), so membership does not depend on arrival order or batching. Neither do battle ids: a
//! battle's id is the killmail id of its **earliest core kill** (by `(time, killmail_id)`), which is
//! a function of the set too. A merge keeps the id of the *older* battle (smaller founding
//! `(time, killmail_id)`) and records the other as an alias; when a late kill gives a battle an
//! earlier core kill, the battle is renamed to it ([`BattleEvent::Renamed`]) and the old id stays
//! an alias, so no link dies. Only [`Clusterer::recluster`] and [`Clusterer::adopt_ids`] name
//! battles otherwise (they keep persisted ids).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::graph::SystemGraph;
use crate::model::{ClusterKill, MINUTE_MS, TimeMs};

/// A kill's total order: kill time, then killmail id.
type KillKey = (TimeMs, u64);

/// The least advance of the eviction horizon that triggers a new eviction pass.
pub const EVICTION_STEP_MS: TimeMs = 10 * MINUTE_MS;

/// Clustering thresholds. The defaults are justified on the real week in the design doc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// Half-width of the window in which a kill's system must see `core_min_kills` kills.
    pub density_window_ms: TimeMs,
    /// Kills (itself included) within the density window that make a kill a core kill.
    pub core_min_kills: u32,
    /// Largest gap between two linked core kills; also the quiet time after which a battle ends.
    pub link_gap_ms: TimeMs,
    /// Largest distance from a non-core kill to the core kill it attaches to.
    pub border_gap_ms: TimeMs,
    /// Core kills a component needs to be reported as a battle.
    pub min_battle_kills: u32,
    /// Distinct pilots on core kills a component needs to be reported as a battle.
    pub min_battle_pilots: u32,
    /// Whether kills without any player attacker take part at all.
    pub include_npc_kills: bool,
    /// Pilots two kills in adjacent systems must share to be linked; 0 disables multi-system.
    pub cross_system_min_shared_pilots: u32,
    /// Pilots two kills in the same system must share to be linked; 0 means time alone links.
    pub same_system_min_shared_pilots: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            density_window_ms: 5 * MINUTE_MS,
            core_min_kills: 4,
            link_gap_ms: 30 * MINUTE_MS,
            border_gap_ms: 10 * MINUTE_MS,
            min_battle_kills: 5,
            min_battle_pilots: 6,
            include_npc_kills: false,
            cross_system_min_shared_pilots: 2,
            same_system_min_shared_pilots: 0,
        }
    }
}

/// A battle's stable id: the killmail id of its founding kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BattleId(pub u64);

impl std::fmt::Display for BattleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The current shape of a battle, as carried on events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BattleSummary {
    pub id: BattleId,
    pub start_ms: TimeMs,
    pub end_ms: TimeMs,
    pub kills: u32,
    /// Sorted system ids.
    pub system_ids: Vec<u32>,
    pub ended: bool,
}

/// What changed, in the order a consumer should apply it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BattleEvent {
    /// A component qualified as a battle; all its killmails.
    Created {
        battle: BattleSummary,
        killmail_ids: Vec<u64>,
    },
    /// Killmails joined or left (a border kill moved to a closer battle).
    Updated {
        battle: BattleSummary,
        added: Vec<u64>,
        removed: Vec<u64>,
        /// The battle had ended and a late kill brought it back within the gap of `now`.
        reopened: bool,
    },
    /// `absorbed` now belongs to `survivor`; its id answers as an alias of `survivor`.
    Merged {
        survivor: BattleId,
        absorbed: BattleId,
    },
    /// The battle `from` gained an earlier core kill (a late kill extended it backwards, or made
    /// an earlier kill dense): it is `to` from now on, with the same killmails, and `from`
    /// answers as an alias of `to`. This keeps ids a function of the set of killmails: the
    /// same kills in any order end with the same ids. Comes after `merged` events and before
    /// `updated`/`created` ones of the same call.
    Renamed { from: BattleId, to: BattleId },
    /// No kill within the link gap of the latest `now`.
    Ended { battle: BattleSummary },
    /// Only from [`Clusterer::recluster`] with different settings: `from` keeps its id on the
    /// part holding its founding kill, the other parts got new ids.
    Split { from: BattleId, into: Vec<BattleId> },
    /// Only from [`Clusterer::recluster`]: the battle no longer qualifies. Its id stays an alias
    /// if its founding kill landed in another battle.
    Dissolved { id: BattleId },
}

/// Counters for rejected or ignored input (bad input is counted, never a crash).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStats {
    pub accepted: u64,
    pub duplicates: u64,
    pub ignored_npc: u64,
    /// Kills older than the eviction horizon: they can no longer be placed consistently and
    /// need a rebuild of their window (see [`Clusterer::evict_settled`]).
    pub too_late: u64,
}

/// A battle dropped from memory by [`Clusterer::evict_settled`]: final, no kill can change it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvictedBattle {
    pub battle: BattleSummary,
    pub killmail_ids: Vec<u64>,
}

/// What the clusterer keeps per kill: enough to recluster without the full killmail.
#[derive(Debug, Clone)]
struct Node {
    key: (TimeMs, u64),
    system: u32,
    /// Sorted distinct player characters on the mail.
    pilots: Box<[u64]>,
    /// Kills in the system within the density window, itself included.
    density: u32,
    core: bool,
    /// Union-find parent; meaningful for core kills.
    parent: u32,
    /// For a non-core kill: the core kill it is attached to.
    border_of: Option<u32>,
    /// For a core kill: the non-core kills attached to it.
    borders: Vec<u32>,
    /// The battle this kill was last reported in, to diff membership into events.
    reported: Option<BattleId>,
    /// Evicted: unreachable, waiting for the next compaction.
    dead: bool,
}

#[derive(Debug, Clone, Default)]
struct SystemIndex {
    kills: BTreeMap<(TimeMs, u64), u32>,
    cores: BTreeMap<(TimeMs, u64), u32>,
}

/// A component of linked core kills, keyed by its union-find root.
#[derive(Debug, Clone)]
struct Comp {
    cores: Vec<u32>,
    battle: Option<BattleId>,
    /// Distinct pilots on the cores while not yet qualified; dropped once it qualified.
    pilots: Option<HashSet<u64>>,
    earliest: (TimeMs, u64),
    /// The latest core kill time; members are at most `border_gap` later.
    last: TimeMs,
}

#[derive(Debug, Clone)]
struct BattleMeta {
    founding: (TimeMs, u64),
    /// Any core kill of the battle; its union-find root is the battle's component.
    anchor: u32,
    summary: BattleSummary,
}

/// The incremental clusterer. Feed it kills in any order with [`Clusterer::insert`] or
/// [`Clusterer::insert_batch`], advance time with [`Clusterer::tick`].
#[derive(Debug, Clone)]
pub struct Clusterer<G: SystemGraph> {
    settings: ClusterSettings,
    graph: G,
    nodes: Vec<Node>,
    by_id: HashMap<u64, u32>,
    /// NPC-only kills seen (id -> kill time), for duplicate detection and pruning.
    ignored: HashMap<u64, TimeMs>,
    /// Kills before this time were evicted; older arrivals are rejected as too late.
    evicted_before: TimeMs,
    systems: HashMap<u32, SystemIndex>,
    /// Every live kill by (time, id), for eviction.
    timeline: BTreeMap<(TimeMs, u64), u32>,
    /// Evicted node slots not yet compacted away.
    dead: usize,
    comps: HashMap<u32, Comp>,
    battles: HashMap<BattleId, BattleMeta>,
    aliases: HashMap<BattleId, BattleId>,
    /// Battles not yet ended, so `tick` does not scan the whole history.
    active: BTreeSet<BattleId>,
    now: TimeMs,
    stats: ClusterStats,
    // Work lists of the current operation, drained by `reconcile`.
    dirty_nodes: Vec<u32>,
    dirty_comps: Vec<u32>,
    dirty_battles: BTreeSet<BattleId>,
    merges: Vec<(BattleId, BattleId)>,
}

fn shared_count(a: &[u64], b: &[u64]) -> u32 {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

fn range_keys(t: TimeMs, half: TimeMs) -> std::ops::RangeInclusive<(TimeMs, u64)> {
    (t.saturating_sub(half), 0)..=(t.saturating_add(half), u64::MAX)
}

impl<G: SystemGraph> Clusterer<G> {
    /// An empty clusterer.
    pub fn new(settings: ClusterSettings, graph: G) -> Self {
        Self {
            settings,
            graph,
            nodes: Vec::new(),
            by_id: HashMap::new(),
            ignored: HashMap::new(),
            evicted_before: TimeMs::MIN,
            systems: HashMap::new(),
            timeline: BTreeMap::new(),
            dead: 0,
            comps: HashMap::new(),
            battles: HashMap::new(),
            aliases: HashMap::new(),
            active: BTreeSet::new(),
            now: TimeMs::MIN,
            stats: ClusterStats::default(),
            dirty_nodes: Vec::new(),
            dirty_comps: Vec::new(),
            dirty_battles: BTreeSet::new(),
            merges: Vec::new(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// The adjacency in force.
    pub fn graph(&self) -> &G {
        &self.graph
    }

    /// Counters for accepted, duplicate and ignored kills.
    pub fn stats(&self) -> ClusterStats {
        self.stats
    }

    /// Adds one kill and reports what changed. A redelivered killmail is a counted no-op.
    pub fn insert(&mut self, kill: &ClusterKill) -> Vec<BattleEvent> {
        self.insert_one(kill);
        self.reconcile()
    }

    /// Adds many kills and reports the net change once; the result is the same as inserting
    /// them one by one, apart from intermediate events.
    pub fn insert_batch<'a>(
        &mut self,
        kills: impl IntoIterator<Item = &'a ClusterKill>,
    ) -> Vec<BattleEvent> {
        for k in kills {
            self.insert_one(k);
        }
        self.reconcile()
    }

    /// Advances time (never backwards) and ends every battle whose last kill is at least the
    /// link gap before `now`.
    pub fn tick(&mut self, now: TimeMs) -> Vec<BattleEvent> {
        self.now = self.now.max(now);
        let gap = self.settings.link_gap_ms;
        let mut ended: Vec<BattleSummary> = Vec::new();
        let mut still_active = BTreeSet::new();
        for id in std::mem::take(&mut self.active) {
            let Some(meta) = self.battles.get_mut(&id) else {
                continue;
            };
            if meta.summary.ended {
                continue;
            }
            if meta.summary.end_ms.saturating_add(gap) <= self.now {
                meta.summary.ended = true;
                ended.push(meta.summary.clone());
            } else {
                still_active.insert(id);
            }
        }
        self.active = still_active;
        ended
            .into_iter()
            .map(|battle| BattleEvent::Ended { battle })
            .collect()
    }

    /// The latest `now` seen by [`Clusterer::tick`].
    pub fn now(&self) -> TimeMs {
        self.now
    }

    /// Follows aliases: the live id a (possibly merged) battle id answers with.
    pub fn resolve(&self, id: BattleId) -> Option<BattleId> {
        let mut cur = id;
        // Aliases form chains at most as long as the number of merges; bound the walk anyway.
        for _ in 0..=self.aliases.len() {
            if self.battles.contains_key(&cur) {
                return Some(cur);
            }
            cur = *self.aliases.get(&cur)?;
        }
        None
    }

    /// Every absorbed id and the live id it redirects to.
    pub fn aliases(&self) -> Vec<(BattleId, BattleId)> {
        let mut v: Vec<_> = self
            .aliases
            .keys()
            .filter_map(|&a| self.resolve(a).map(|s| (a, s)))
            .collect();
        v.sort();
        v
    }

    /// The battle a killmail currently belongs to.
    pub fn battle_of(&self, killmail_id: u64) -> Option<BattleId> {
        let &idx = self.by_id.get(&killmail_id)?;
        self.current_battle(idx)
    }

    /// A battle's summary (after resolving aliases).
    pub fn battle(&self, id: BattleId) -> Option<&BattleSummary> {
        self.battles.get(&self.resolve(id)?).map(|m| &m.summary)
    }

    /// All live battles, ordered by start then id.
    pub fn battles(&self) -> Vec<&BattleSummary> {
        let mut v: Vec<_> = self.battles.values().map(|m| &m.summary).collect();
        v.sort_by_key(|s| (s.start_ms, s.id));
        v
    }

    /// A battle's killmail ids ordered by kill time then id.
    pub fn killmail_ids(&self, id: BattleId) -> Vec<u64> {
        let Some(meta) = self.resolve(id).and_then(|id| self.battles.get(&id)) else {
            return Vec::new();
        };
        let mut members = self.members(self.find_ro(meta.anchor));
        members.sort_by_key(|&i| self.nodes[i as usize].key);
        members
            .into_iter()
            .map(|i| self.nodes[i as usize].key.1)
            .collect()
    }

    /// The membership as a canonical partition: every battle's sorted killmail ids, sorted.
    /// Two clusterers fed the same set of kills return the same value.
    pub fn partition(&self) -> Vec<Vec<u64>> {
        let mut out: Vec<Vec<u64>> = self
            .battles
            .keys()
            .map(|&id| {
                let mut v = self.killmail_ids(id);
                v.sort_unstable();
                v
            })
            .collect();
        out.sort();
        out
    }

    /// Re-clusters every kill seen so far under new settings, keeping ids where possible: the
    /// part that holds an old battle's founding kill keeps that battle's id (the oldest one wins
    /// when several land together, the others become aliases).
    pub fn recluster(&mut self, settings: ClusterSettings) -> Vec<BattleEvent>
    where
        G: Clone,
    {
        let mut fresh = Self::new(settings, self.graph.clone());
        fresh.now = self.now;
        fresh.stats = self.stats;
        fresh.ignored = std::mem::take(&mut self.ignored);
        fresh.evicted_before = self.evicted_before;
        let mut order: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&i| !self.nodes[i as usize].dead)
            .collect();
        order.sort_by_key(|&i| self.nodes[i as usize].key);
        for &i in &order {
            let n = &self.nodes[i as usize];
            fresh.insert_sketch(n.key, n.system, n.pilots.clone());
        }
        let _ = fresh.reconcile();
        // Map each new component to the old battles whose founding kill it holds.
        let mut old: Vec<(BattleId, (TimeMs, u64))> = self
            .battles
            .iter()
            .map(|(&id, m)| (id, m.founding))
            .collect();
        old.sort_by_key(|&(_, f)| f);
        let new_ids: Vec<BattleId> = fresh.battles.keys().copied().collect();
        let mut renamed: HashMap<BattleId, BattleId> = HashMap::new(); // fresh id -> kept id
        let mut events = Vec::new();
        for (old_id, founding) in &old {
            let Some(new_id) = fresh.battle_of(founding.1) else {
                events.push(BattleEvent::Dissolved { id: *old_id });
                continue;
            };
            match renamed.get(&new_id) {
                None => {
                    renamed.insert(new_id, *old_id);
                }
                Some(&kept) => {
                    fresh.aliases.insert(*old_id, kept);
                    events.push(BattleEvent::Merged {
                        survivor: kept,
                        absorbed: *old_id,
                    });
                }
            }
        }
        // Rename fresh battles to the kept ids.
        let metas: Vec<(BattleId, BattleMeta)> = new_ids
            .into_iter()
            .filter_map(|id| fresh.battles.remove(&id).map(|m| (id, m)))
            .collect();
        for (new_id, mut meta) in metas {
            let id = renamed.get(&new_id).copied().unwrap_or(new_id);
            meta.summary.id = id;
            let root = fresh.find(meta.anchor);
            if let Some(c) = fresh.comps.get_mut(&root) {
                c.battle = Some(id);
            }
            meta.summary.ended = meta
                .summary
                .end_ms
                .saturating_add(fresh.settings.link_gap_ms)
                <= fresh.now;
            fresh.battles.insert(id, meta);
        }
        fresh.active = fresh
            .battles
            .iter()
            .filter(|(_, m)| !m.summary.ended)
            .map(|(&id, _)| id)
            .collect();
        for (&a, &b) in &self.aliases {
            fresh.aliases.entry(a).or_insert(b);
        }
        // Splits: an old battle whose kills now sit in several battles.
        for (old_id, _) in &old {
            let Some(meta) = self.battles.get(old_id) else {
                continue;
            };
            let mut parts: BTreeSet<BattleId> = BTreeSet::new();
            for i in self.members(self.find_ro(meta.anchor)) {
                if let Some(b) = fresh.battle_of(self.nodes[i as usize].key.1) {
                    parts.insert(b);
                }
            }
            if parts.len() > 1 {
                events.push(BattleEvent::Split {
                    from: *old_id,
                    into: parts.into_iter().collect(),
                });
            }
        }
        // Report every live battle's new shape.
        let mut ids: Vec<BattleId> = fresh.battles.keys().copied().collect();
        ids.sort();
        for id in ids {
            let kill_ids = fresh.killmail_ids(id);
            let Some(summary) = fresh.battles.get(&id).map(|m| m.summary.clone()) else {
                continue;
            };
            if self.battles.contains_key(&id) {
                let before: HashSet<u64> = self.killmail_ids(id).into_iter().collect();
                let after: HashSet<u64> = kill_ids.iter().copied().collect();
                let mut added: Vec<u64> = after.difference(&before).copied().collect();
                let mut removed: Vec<u64> = before.difference(&after).copied().collect();
                added.sort_unstable();
                removed.sort_unstable();
                if !added.is_empty()
                    || !removed.is_empty()
                    || self.battles.get(&id).is_none_or(|m| m.summary != summary)
                {
                    events.push(BattleEvent::Updated {
                        battle: summary,
                        added,
                        removed,
                        reopened: false,
                    });
                }
            } else {
                events.push(BattleEvent::Created {
                    battle: summary,
                    killmail_ids: kill_ids,
                });
            }
        }
        for n in 0..fresh.nodes.len() {
            fresh.nodes[n].reported = fresh.current_battle(n as u32);
        }
        *self = fresh;
        events
    }

    /// Drops every battle and kill that no kill arriving at most `max_lateness_ms` after its kill
    /// time can still change, and returns the dropped battles (final: persist them).
    /// Cheap to call on every tick: a pass runs only once the horizon has moved by
    /// [`EVICTION_STEP_MS`].
    ///
    /// A new kill at time `t ≥ now − max_lateness` only reaches kills within
    /// `density_window + link_gap + border_gap` of `t`, so components whose last kill is older
    /// than `now − max_lateness − 2·density_window − link_gap − border_gap` are settled. Stored
    /// density counters of the remaining kills keep counting the dropped ones, so membership stays
    /// exactly as without eviction. Later arrivals older than the horizon are counted as
    /// `too_late` instead of being clustered inconsistently.
    pub fn evict_settled(&mut self, max_lateness_ms: TimeMs) -> Vec<EvictedBattle> {
        let s = &self.settings;
        let reach = 2 * s.density_window_ms + s.link_gap_ms + s.border_gap_ms;
        if self.now == TimeMs::MIN {
            return Vec::new();
        }
        let horizon = self
            .now
            .saturating_sub(max_lateness_ms.saturating_add(reach));
        // A pass is O(kills held): run one only when the horizon moved by a step, so calling this
        // on every tick stays cheap. Keeping kills a little longer is always correct.
        if horizon < self.evicted_before.saturating_add(EVICTION_STEP_MS) {
            return Vec::new();
        }
        let bg = self.settings.border_gap_ms;
        let candidates: Vec<u32> = self
            .timeline
            .range(..(horizon, 0))
            .map(|(_, &i)| i)
            .collect();
        let mut evicted = Vec::new();
        for i in candidates {
            let (dead, core, border_of) = {
                let n = &self.nodes[i as usize];
                (n.dead, n.core, n.border_of)
            };
            if dead {
                continue;
            }
            let anchor = match (core, border_of) {
                (true, _) => i,
                (false, Some(b)) => b,
                (false, None) => {
                    // Noise: in no component, older than the horizon.
                    self.kill_node(i);
                    continue;
                }
            };
            let root = self.find(anchor);
            let settled = self
                .comps
                .get(&root)
                .is_some_and(|c| c.last.saturating_add(bg) < horizon);
            if !settled {
                continue;
            }
            let Some(comp) = self.comps.remove(&root) else {
                continue;
            };
            let members = self.comp_members(&comp.cores);
            if let Some(id) = comp.battle
                && let Some(meta) = self.battles.remove(&id)
            {
                self.active.remove(&id);
                let mut keys: Vec<(TimeMs, u64)> = members
                    .iter()
                    .map(|&m| self.nodes[m as usize].key)
                    .collect();
                keys.sort_unstable();
                let mut battle = meta.summary;
                battle.ended = true;
                evicted.push(EvictedBattle {
                    battle,
                    killmail_ids: keys.into_iter().map(|k| k.1).collect(),
                });
            }
            for m in members {
                self.kill_node(m);
            }
        }
        self.ignored.retain(|_, t| *t >= horizon);
        if !evicted.is_empty() {
            let live: Vec<BattleId> = self
                .aliases
                .keys()
                .copied()
                .filter(|&a| self.resolve(a).is_some())
                .collect();
            self.aliases.retain(|a, _| live.contains(a));
        }
        self.evicted_before = horizon;
        // Compact once half the arena is dead: amortised O(1) per evicted kill.
        if self.dead * 2 > self.nodes.len() {
            self.compact();
        }
        evicted.sort_by_key(|e| (e.battle.start_ms, e.battle.id));
        evicted
    }

    /// Unlinks an evicted kill from every index; its slot is reclaimed by `compact`.
    fn kill_node(&mut self, i: u32) {
        let n = &mut self.nodes[i as usize];
        if n.dead {
            return;
        }
        n.dead = true;
        n.pilots = Box::default();
        n.borders = Vec::new();
        let (key, system) = (n.key, n.system);
        self.dead += 1;
        self.by_id.remove(&key.1);
        self.timeline.remove(&key);
        if let Some(sys) = self.systems.get_mut(&system) {
            sys.kills.remove(&key);
            sys.cores.remove(&key);
            if sys.kills.is_empty() {
                self.systems.remove(&system);
            }
        }
    }

    /// Drops dead slots from the node arena and remaps every index.
    fn compact(&mut self) {
        let n = self.nodes.len();
        let mut remap = vec![u32::MAX; n];
        let old = std::mem::take(&mut self.nodes);
        for (i, node) in old.into_iter().enumerate() {
            if !node.dead {
                remap[i] = self.nodes.len() as u32;
                self.nodes.push(node);
            }
        }
        for node in &mut self.nodes {
            node.parent = remap[node.parent as usize];
            node.border_of = node.border_of.map(|b| remap[b as usize]);
            for b in &mut node.borders {
                *b = remap[*b as usize];
            }
        }
        for sys in self.systems.values_mut() {
            for i in sys.kills.values_mut().chain(sys.cores.values_mut()) {
                *i = remap[*i as usize];
            }
        }
        for i in self.timeline.values_mut() {
            *i = remap[*i as usize];
        }
        let comps = std::mem::take(&mut self.comps);
        self.comps = comps
            .into_iter()
            .map(|(root, mut c)| {
                for x in &mut c.cores {
                    *x = remap[*x as usize];
                }
                (remap[root as usize], c)
            })
            .collect();
        for meta in self.battles.values_mut() {
            meta.anchor = remap[meta.anchor as usize];
        }
        for i in self.by_id.values_mut() {
            *i = remap[*i as usize];
        }
        self.dead = 0;
    }

    /// The number of kills held in memory.
    pub fn len(&self) -> usize {
        self.nodes.len() - self.dead
    }

    /// True when no kill is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-applies persisted battle ids after a rebuild from stored killmails (e.g. on restart).
    ///
    /// A [`BattleId`] is the killmail id of its founding kill, so each given id names a kill.
    /// Every live battle holding such a kill takes that id; when several land in one battle the
    /// oldest founding kill wins and the others become aliases (with `merged` events). Ids of
    /// kills no longer held are ignored. Membership is untouched.
    pub fn adopt_ids(&mut self, ids: impl IntoIterator<Item = BattleId>) -> Vec<BattleEvent> {
        // Current battle -> the persisted ids it holds, with their founding kill's key.
        let mut by_current: BTreeMap<BattleId, Vec<(KillKey, BattleId)>> = BTreeMap::new();
        for id in ids {
            let Some(&idx) = self.by_id.get(&id.0) else {
                continue;
            };
            if let Some(cur) = self.current_battle(idx) {
                by_current
                    .entry(cur)
                    .or_default()
                    .push((self.nodes[idx as usize].key, id));
            }
        }
        let mut events = Vec::new();
        for (cur, mut known) in by_current {
            known.sort_unstable();
            known.dedup();
            let keep = known[0].1;
            if keep != cur
                && let Some(mut meta) = self.battles.remove(&cur)
            {
                meta.summary.id = keep;
                let root = self.find(meta.anchor);
                let members = self.members(root);
                if let Some(c) = self.comps.get_mut(&root) {
                    c.battle = Some(keep);
                }
                for m in members {
                    if self.nodes[m as usize].reported == Some(cur) {
                        self.nodes[m as usize].reported = Some(keep);
                    }
                }
                if self.active.remove(&cur) {
                    self.active.insert(keep);
                }
                for target in self.aliases.values_mut() {
                    if *target == cur {
                        *target = keep;
                    }
                }
                self.aliases.remove(&keep);
                self.battles.insert(keep, meta);
            }
            for &(_, other) in &known[1..] {
                if other != keep {
                    self.aliases.insert(other, keep);
                    events.push(BattleEvent::Merged {
                        survivor: keep,
                        absorbed: other,
                    });
                }
            }
        }
        events
    }

    // ----- internals -----

    fn insert_one(&mut self, kill: &ClusterKill) {
        if self.by_id.contains_key(&kill.killmail_id)
            || self.ignored.contains_key(&kill.killmail_id)
        {
            self.stats.duplicates += 1;
            return;
        }
        if kill.time_ms < self.evicted_before {
            self.stats.too_late += 1;
            return;
        }
        if !self.settings.include_npc_kills && !kill.has_player_attacker() {
            self.stats.ignored_npc += 1;
            self.ignored.insert(kill.killmail_id, kill.time_ms);
            return;
        }
        self.stats.accepted += 1;
        self.insert_sketch(kill.key(), kill.system_id, kill.pilots().into_boxed_slice());
    }

    fn insert_sketch(&mut self, key: (TimeMs, u64), system: u32, pilots: Box<[u64]>) {
        let idx = self.nodes.len() as u32;
        self.by_id.insert(key.1, idx);
        let sys = self.systems.entry(system).or_default();
        let near: Vec<u32> = sys
            .kills
            .range(range_keys(key.0, self.settings.density_window_ms))
            .map(|(_, &i)| i)
            .collect();
        sys.kills.insert(key, idx);
        self.nodes.push(Node {
            key,
            system,
            pilots,
            density: 1 + near.len() as u32,
            core: false,
            parent: idx,
            border_of: None,
            borders: Vec::new(),
            reported: None,
            dead: false,
        });
        self.timeline.insert(key, idx);
        let min = self.settings.core_min_kills;
        let mut newly = Vec::new();
        for j in near {
            let n = &mut self.nodes[j as usize];
            n.density += 1;
            if !n.core && n.density >= min {
                newly.push(j);
            }
        }
        if self.nodes[idx as usize].density >= min {
            newly.push(idx);
        }
        for c in newly {
            self.make_core(c);
        }
        if !self.nodes[idx as usize].core {
            self.recompute_border(idx);
        }
        self.dirty_nodes.push(idx);
    }

    fn make_core(&mut self, c: u32) {
        let (key, system) = {
            let n = &mut self.nodes[c as usize];
            n.core = true;
            (n.key, n.system)
        };
        if let Some(b) = self.nodes[c as usize].border_of.take() {
            self.nodes[b as usize].borders.retain(|&x| x != c);
        }
        self.dirty_nodes.push(c);
        let pilots: HashSet<u64> = self.nodes[c as usize].pilots.iter().copied().collect();
        self.comps.insert(
            c,
            Comp {
                cores: vec![c],
                battle: None,
                pilots: Some(pilots),
                earliest: key,
                last: key.0,
            },
        );
        self.dirty_comps.push(c);
        let Some(sys) = self.systems.get_mut(&system) else {
            return;
        };
        sys.cores.insert(key, c);
        let gap = self.settings.link_gap_ms;
        let same_min = self.settings.same_system_min_shared_pilots;
        let mut links: Vec<u32> = sys
            .cores
            .range(range_keys(key.0, gap))
            .map(|(_, &j)| j)
            .filter(|&j| j != c)
            .collect();
        if same_min > 0 {
            links.retain(|&j| {
                shared_count(
                    &self.nodes[c as usize].pilots,
                    &self.nodes[j as usize].pilots,
                ) >= same_min
            });
        }
        let bg = self.settings.border_gap_ms;
        let mut border_candidates: Vec<u32> = sys
            .kills
            .range(range_keys(key.0, bg))
            .map(|(_, &j)| j)
            .filter(|&j| !self.nodes[j as usize].core)
            .collect();
        let cross_min = self.settings.cross_system_min_shared_pilots;
        if cross_min > 0 {
            for &nb in self.graph.neighbours(system) {
                let Some(s2) = self.systems.get(&nb) else {
                    continue;
                };
                for (_, &j) in s2.cores.range(range_keys(key.0, gap)) {
                    if shared_count(
                        &self.nodes[c as usize].pilots,
                        &self.nodes[j as usize].pilots,
                    ) >= cross_min
                    {
                        links.push(j);
                    }
                }
                border_candidates.extend(
                    s2.kills
                        .range(range_keys(key.0, bg))
                        .map(|(_, &j)| j)
                        .filter(|&j| !self.nodes[j as usize].core),
                );
            }
        }
        for j in links {
            self.union(c, j);
        }
        for j in border_candidates {
            self.recompute_border(j);
        }
    }

    /// Attaches a non-core kill to its nearest core kill within the border gap, if any.
    fn recompute_border(&mut self, j: u32) {
        let (key, system, core) = {
            let n = &self.nodes[j as usize];
            (n.key, n.system, n.core)
        };
        if core {
            return;
        }
        let bg = self.settings.border_gap_ms;
        // Best = smallest (|dt|, core key).
        let mut best: Option<(TimeMs, (TimeMs, u64), u32)> = None;
        let mut consider = |dt: TimeMs, k: (TimeMs, u64), i: u32| {
            if dt <= bg && best.is_none_or(|(bdt, bk, _)| (dt, k) < (bdt, bk)) {
                best = Some((dt, k, i));
            }
        };
        if let Some(sys) = self.systems.get(&system) {
            if let Some((&k, &i)) = sys.cores.range(..key).next_back() {
                consider(key.0 - k.0, k, i);
            }
            if let Some((&k, &i)) = sys.cores.range(key..).next() {
                consider(k.0 - key.0, k, i);
            }
        }
        let cross_min = self.settings.cross_system_min_shared_pilots;
        if cross_min > 0 {
            for &nb in self.graph.neighbours(system) {
                let Some(s2) = self.systems.get(&nb) else {
                    continue;
                };
                for (&k, &i) in s2.cores.range(range_keys(key.0, bg)) {
                    if shared_count(
                        &self.nodes[j as usize].pilots,
                        &self.nodes[i as usize].pilots,
                    ) >= cross_min
                    {
                        consider((k.0 - key.0).abs(), k, i);
                    }
                }
            }
        }
        let new = best.map(|(_, _, i)| i);
        let old = self.nodes[j as usize].border_of;
        if new == old {
            return;
        }
        if let Some(o) = old {
            self.nodes[o as usize].borders.retain(|&x| x != j);
        }
        if let Some(n) = new {
            self.nodes[n as usize].borders.push(j);
        }
        self.nodes[j as usize].border_of = new;
        self.dirty_nodes.push(j);
    }

    fn find(&mut self, mut i: u32) -> u32 {
        let mut root = i;
        while self.nodes[root as usize].parent != root {
            root = self.nodes[root as usize].parent;
        }
        while self.nodes[i as usize].parent != root {
            let next = self.nodes[i as usize].parent;
            self.nodes[i as usize].parent = root;
            i = next;
        }
        root
    }

    fn find_ro(&self, mut i: u32) -> u32 {
        while self.nodes[i as usize].parent != i {
            i = self.nodes[i as usize].parent;
        }
        i
    }

    fn union(&mut self, a: u32, b: u32) {
        let ra = self.find(a);
        let rb = self.find(b);
        if ra == rb {
            return;
        }
        let (Some(ca), Some(cb)) = (self.comps.remove(&ra), self.comps.remove(&rb)) else {
            return;
        };
        // Union by size keeps trees shallow for the read-only find.
        let (root, child, mut big, small) = if ca.cores.len() >= cb.cores.len() {
            (ra, rb, ca, cb)
        } else {
            (rb, ra, cb, ca)
        };
        self.nodes[child as usize].parent = root;
        let battle = match (big.battle, small.battle) {
            (Some(x), Some(y)) => {
                // Both battles exist while their components do; a missing one sorts last.
                let founding = |id: BattleId| {
                    self.battles
                        .get(&id)
                        .map_or((TimeMs::MAX, id.0), |m| m.founding)
                };
                let (fx, fy) = (founding(x), founding(y));
                let (survivor, absorbed) = if fx <= fy { (x, y) } else { (y, x) };
                self.battles.remove(&absorbed);
                self.aliases.insert(absorbed, survivor);
                self.merges.push((survivor, absorbed));
                self.dirty_battles.remove(&absorbed);
                self.dirty_battles.insert(survivor);
                // The absorbed kills move with the merge event, not as "added".
                let moved: Vec<u32> = if absorbed == x {
                    self.comp_members(&big.cores)
                } else {
                    self.comp_members(&small.cores)
                };
                for i in moved {
                    if self.nodes[i as usize].reported == Some(absorbed) {
                        self.nodes[i as usize].reported = Some(survivor);
                    }
                }
                Some(survivor)
            }
            (Some(x), None) => {
                let m = self.comp_members(&small.cores);
                self.dirty_nodes.extend(m);
                self.dirty_battles.insert(x);
                Some(x)
            }
            (None, Some(y)) => {
                let m = self.comp_members(&big.cores);
                self.dirty_nodes.extend(m);
                self.dirty_battles.insert(y);
                Some(y)
            }
            (None, None) => None,
        };
        big.cores.extend_from_slice(&small.cores);
        big.earliest = big.earliest.min(small.earliest);
        big.last = big.last.max(small.last);
        big.pilots = match (big.pilots, small.pilots) {
            (Some(mut p), Some(q)) => {
                p.extend(q);
                Some(p)
            }
            _ => None,
        };
        big.battle = battle;
        if let Some(b) = battle
            && let Some(meta) = self.battles.get_mut(&b)
        {
            meta.anchor = root;
        }
        self.comps.insert(root, big);
        self.dirty_comps.push(root);
    }

    fn comp_members(&self, cores: &[u32]) -> Vec<u32> {
        let mut v = Vec::with_capacity(cores.len() * 2);
        for &c in cores {
            v.push(c);
            v.extend_from_slice(&self.nodes[c as usize].borders);
        }
        v
    }

    fn members(&self, root: u32) -> Vec<u32> {
        self.comps
            .get(&root)
            .map_or_else(Vec::new, |c| self.comp_members(&c.cores))
    }

    fn current_battle(&self, idx: u32) -> Option<BattleId> {
        let n = &self.nodes[idx as usize];
        let core = if n.core { idx } else { n.border_of? };
        self.comps.get(&self.find_ro(core))?.battle
    }

    fn qualifies(&self, comp: &Comp) -> bool {
        comp.cores.len() as u32 >= self.settings.min_battle_kills
            && comp
                .pilots
                .as_ref()
                .is_none_or(|p| p.len() as u32 >= self.settings.min_battle_pilots)
    }

    fn summarize(&self, id: BattleId, anchor: u32, ended: bool) -> BattleSummary {
        let members = self.members(self.find_ro(anchor));
        let mut start = TimeMs::MAX;
        let mut end = TimeMs::MIN;
        let mut systems: Vec<u32> = Vec::new();
        for &i in &members {
            let n = &self.nodes[i as usize];
            start = start.min(n.key.0);
            end = end.max(n.key.0);
            if !systems.contains(&n.system) {
                systems.push(n.system);
            }
        }
        systems.sort_unstable();
        BattleSummary {
            id,
            start_ms: start,
            end_ms: end,
            kills: members.len() as u32,
            system_ids: systems,
            ended,
        }
    }

    /// Gives the battle `from` (component `root`) the id of its new earliest core kill; `from`
    /// becomes an alias. Returns the new id.
    fn rename(&mut self, root: u32, from: BattleId, earliest: KillKey) -> BattleId {
        let to = BattleId(earliest.1);
        let Some(mut meta) = self.battles.remove(&from) else {
            return from;
        };
        meta.founding = earliest;
        meta.summary.id = to;
        let members = self.members(root);
        if let Some(c) = self.comps.get_mut(&root) {
            c.battle = Some(to);
        }
        for m in members {
            if self.nodes[m as usize].reported == Some(from) {
                self.nodes[m as usize].reported = Some(to);
            }
        }
        if self.active.remove(&from) {
            self.active.insert(to);
        }
        if self.dirty_battles.remove(&from) {
            self.dirty_battles.insert(to);
        }
        // Keep alias chains one step long.
        for target in self.aliases.values_mut() {
            if *target == from {
                *target = to;
            }
        }
        self.aliases.remove(&to);
        self.aliases.insert(from, to);
        self.battles.insert(to, meta);
        // The summary now carries the new id: an `updated` follows the rename.
        self.dirty_battles.insert(to);
        to
    }

    /// Turns the work lists of the last operation into events.
    fn reconcile(&mut self) -> Vec<BattleEvent> {
        let mut events: Vec<BattleEvent> = self
            .merges
            .drain(..)
            .map(|(survivor, absorbed)| BattleEvent::Merged { survivor, absorbed })
            .collect();
        // New battles.
        let mut created: BTreeSet<BattleId> = BTreeSet::new();
        let mut roots: Vec<u32> = std::mem::take(&mut self.dirty_comps)
            .into_iter()
            .map(|r| self.find(r))
            .collect();
        roots.sort_unstable();
        roots.dedup();
        for root in roots {
            let Some(comp) = self.comps.get(&root) else {
                continue;
            };
            if let Some(id) = comp.battle {
                // Ids follow the earliest core kill, which only ever moves earlier.
                let earliest = comp.earliest;
                if self.battles.get(&id).is_some_and(|m| earliest < m.founding) {
                    let to = self.rename(root, id, earliest);
                    events.push(BattleEvent::Renamed { from: id, to });
                }
                continue;
            }
            if !self.qualifies(comp) {
                continue;
            }
            let earliest = comp.earliest;
            let id = BattleId(earliest.1);
            let members = self.comp_members(&comp.cores);
            if let Some(c) = self.comps.get_mut(&root) {
                c.battle = Some(id);
                c.pilots = None;
            }
            self.battles.insert(
                id,
                BattleMeta {
                    founding: earliest,
                    anchor: root,
                    summary: BattleSummary {
                        id,
                        start_ms: earliest.0,
                        end_ms: earliest.0,
                        kills: 0,
                        system_ids: Vec::new(),
                        ended: false,
                    },
                },
            );
            created.insert(id);
            self.dirty_nodes.extend(members);
        }
        // Membership diffs.
        let mut added: HashMap<BattleId, Vec<u64>> = HashMap::new();
        let mut removed: HashMap<BattleId, Vec<u64>> = HashMap::new();
        let mut dirty = std::mem::take(&mut self.dirty_nodes);
        dirty.sort_unstable();
        dirty.dedup();
        for i in dirty {
            let cur = self.current_battle(i);
            // A kill last reported under an id merged or renamed since then counts as reported
            // under the live id (a rename re-points the members it holds at that moment).
            let reported = self.nodes[i as usize]
                .reported
                .map(|r| self.resolve(r).unwrap_or(r));
            let n = &mut self.nodes[i as usize];
            n.reported = reported;
            if cur == n.reported {
                continue;
            }
            if let Some(old) = n.reported {
                removed.entry(old).or_default().push(n.key.1);
                self.dirty_battles.insert(old);
            }
            if let Some(new) = cur {
                added.entry(new).or_default().push(n.key.1);
                self.dirty_battles.insert(new);
            }
            n.reported = cur;
        }
        self.dirty_battles.extend(created.iter().copied());
        for id in std::mem::take(&mut self.dirty_battles) {
            let Some(meta) = self.battles.get(&id) else {
                continue;
            };
            let was_ended = meta.summary.ended;
            let mut summary = self.summarize(id, meta.anchor, was_ended);
            let reopened =
                was_ended && summary.end_ms.saturating_add(self.settings.link_gap_ms) > self.now;
            if reopened {
                summary.ended = false;
            }
            let changed = summary != meta.summary;
            if !summary.ended {
                self.active.insert(id);
            }
            if let Some(m) = self.battles.get_mut(&id) {
                m.summary = summary.clone();
            }
            if created.contains(&id) {
                let killmail_ids = self.killmail_ids(id);
                events.push(BattleEvent::Created {
                    battle: summary,
                    killmail_ids,
                });
            } else {
                let mut a = added.remove(&id).unwrap_or_default();
                let mut r = removed.remove(&id).unwrap_or_default();
                if a.is_empty() && r.is_empty() && !changed {
                    continue;
                }
                a.sort_unstable();
                r.sort_unstable();
                events.push(BattleEvent::Updated {
                    battle: summary,
                    added: a,
                    removed: r,
                    reopened,
                });
            }
        }
        events
    }
}
