//! The incremental clusterer with *public* battle ids, and the translation of its events into
//! storage operations.
//!
//! Battle ids are the founding killmail's id (see the design doc §2.2). In live delivery the
//! clusterer and the store agree on them; after a restart the clusterer is rebuilt from the
//! stored working set in one batch and may name a battle that was extended backwards after
//! the earliest core kill. [`Engine::rebuild`] therefore maps each rebuilt battle to the stored
//! battle(s) holding its killmails (the oldest one survives, exactly as a merge would decide)
//! and keeps the mapping for the exceptions. Rebuild also returns the operations that make the
//! store agree with the rebuilt membership, so a store that fell behind heals on start.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bs_clustering::{
    BattleEvent, BattleId, ClusterKill, ClusterSettings, ClusterStats, Clusterer, TimeMs,
};
use bs_events::BattleStatus;

use super::geo::{Geo, SharedGeo};

/// What the engine needs besides the clustering thresholds.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineSettings {
    pub cluster: ClusterSettings,
    /// How late (by kill time, relative to the newest kill) a killmail may arrive and still
    /// extend, reopen or merge battles; older ones are stored but not clustered.
    pub reopen_window_ms: TimeMs,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            cluster: ClusterSettings::default(),
            reopen_window_ms: 72 * 3_600_000,
        }
    }
}

impl EngineSettings {
    /// Kills further than this before a kill can still change its clustering.
    pub fn reach_ms(&self) -> TimeMs {
        let s = &self.cluster;
        2 * s.density_window_ms + s.link_gap_ms + s.border_gap_ms
    }

    /// The oldest kill time the working set must hold when the newest kill is `max_kill_ms`.
    pub fn working_set_since(&self, max_kill_ms: TimeMs) -> TimeMs {
        max_kill_ms.saturating_sub(self.reopen_window_ms.saturating_add(self.reach_ms()))
    }
}

/// A change the store applies, in order, inside one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BattleOp {
    Create {
        battle_id: u64,
    },
    AddKills {
        battle_id: u64,
        killmail_ids: Vec<u64>,
    },
    RemoveKills {
        battle_id: u64,
        killmail_ids: Vec<u64>,
    },
    Merge {
        survivor: u64,
        absorbed: u64,
    },
    SetStatus {
        battle_id: u64,
        status: BattleStatus,
    },
}

impl BattleOp {
    /// The battle whose aggregates the op changes.
    pub fn battle(&self) -> u64 {
        match self {
            Self::Create { battle_id }
            | Self::AddKills { battle_id, .. }
            | Self::RemoveKills { battle_id, .. }
            | Self::SetStatus { battle_id, .. } => *battle_id,
            Self::Merge { survivor, .. } => *survivor,
        }
    }
}

/// What the store hands back to rebuild the engine.
#[derive(Clone, Debug, Default)]
pub struct WorkingSet {
    pub kills: Vec<ClusterKill>,
    /// killmail id → stored battle id (live or merged battles alike).
    pub battle_of: HashMap<u64, u64>,
    /// stored battle id → (founding kill time, status).
    pub battles: HashMap<u64, (TimeMs, BattleStatus)>,
}

/// Counters shown on `/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    pub cluster: ClusterStatsView,
    pub in_memory_kills: u64,
    pub live_battles: u64,
}

/// [`ClusterStats`] as JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClusterStatsView {
    pub accepted: u64,
    pub duplicates: u64,
    pub ignored_npc: u64,
    pub too_late: u64,
}

impl From<ClusterStats> for ClusterStatsView {
    fn from(s: ClusterStats) -> Self {
        Self {
            accepted: s.accepted,
            duplicates: s.duplicates,
            ignored_npc: s.ignored_npc,
            too_late: s.too_late,
        }
    }
}

/// The clusterer plus public ids.
pub struct Engine {
    clusterer: Clusterer<SharedGeo>,
    /// Clusterer id → public id, only where they differ (after a rebuild).
    public: HashMap<BattleId, u64>,
    settings: EngineSettings,
    max_kill_ms: TimeMs,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("kills", &self.clusterer.len())
            .field("mapped", &self.public.len())
            .finish()
    }
}

impl Engine {
    /// An empty engine.
    pub fn new(settings: EngineSettings, geo: Arc<Geo>) -> Self {
        Self {
            clusterer: Clusterer::new(settings.cluster.clone(), SharedGeo(geo)),
            public: HashMap::new(),
            settings,
            max_kill_ms: TimeMs::MIN,
        }
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The newest kill time seen (`i64::MIN` when none).
    pub fn max_kill_ms(&self) -> TimeMs {
        self.max_kill_ms
    }

    /// Rebuilds from the stored working set and returns the operations that align the store
    /// with the rebuilt membership (idempotent: none when the store already agrees).
    pub fn rebuild(
        settings: EngineSettings,
        geo: Arc<Geo>,
        ws: &WorkingSet,
        now_ms: TimeMs,
    ) -> (Self, Vec<BattleOp>) {
        let mut engine = Self::new(settings, geo);
        engine.max_kill_ms = ws
            .kills
            .iter()
            .map(|k| k.time_ms)
            .max()
            .unwrap_or(TimeMs::MIN);
        // The rebuild's own events describe "from nothing", not a change: drop them.
        let _ = engine.clusterer.insert_batch(ws.kills.iter());
        let mut by_stored: HashMap<u64, HashSet<u64>> = HashMap::new();
        for (&k, &b) in &ws.battle_of {
            by_stored.entry(b).or_default().insert(k);
        }
        let live = |b: &u64| {
            ws.battles
                .get(b)
                .is_some_and(|(_, s)| *s != BattleStatus::Merged)
        };
        let mut ops = Vec::new();
        let battles: Vec<BattleId> = engine.clusterer.battles().iter().map(|s| s.id).collect();
        for b in battles {
            let members = engine.clusterer.killmail_ids(b);
            let mut candidates: Vec<u64> = members
                .iter()
                .filter_map(|k| ws.battle_of.get(k))
                .copied()
                .filter(live)
                .collect();
            candidates.sort_by_key(|c| (ws.battles.get(c).map_or(TimeMs::MAX, |x| x.0), *c));
            candidates.dedup();
            let public = candidates.first().copied().unwrap_or(b.0);
            if public != b.0 {
                engine.public.insert(b, public);
            }
            if !ws.battles.contains_key(&public) {
                ops.push(BattleOp::Create { battle_id: public });
            }
            let mut seen = BTreeSet::new();
            for &other in candidates.iter().skip(1) {
                if seen.insert(other) {
                    ops.push(BattleOp::Merge {
                        survivor: public,
                        absorbed: other,
                    });
                }
            }
            let missing: Vec<u64> = members
                .iter()
                .copied()
                .filter(|k| ws.battle_of.get(k) != Some(&public))
                .collect();
            if !missing.is_empty() {
                ops.push(BattleOp::AddKills {
                    battle_id: public,
                    killmail_ids: missing,
                });
            }
            let member_set: HashSet<u64> = members.iter().copied().collect();
            let mut extra: Vec<u64> = by_stored
                .get(&public)
                .map(|ks| {
                    ks.iter()
                        .copied()
                        .filter(|k| !member_set.contains(k))
                        .collect()
                })
                .unwrap_or_default();
            // Only kills the rebuild saw can be judged; older ones stay where they are.
            let loaded: HashSet<u64> = ws.kills.iter().map(|k| k.killmail_id).collect();
            extra.retain(|k| loaded.contains(k));
            if !extra.is_empty() {
                extra.sort_unstable();
                ops.push(BattleOp::RemoveKills {
                    battle_id: public,
                    killmail_ids: extra,
                });
            }
        }
        ops.extend(engine.tick(now_ms));
        (engine, ops)
    }

    fn pid(&self, b: BattleId) -> u64 {
        self.public.get(&b).copied().unwrap_or(b.0)
    }

    /// The public id of the battle a killmail belongs to in memory.
    pub fn battle_of(&self, killmail_id: u64) -> Option<u64> {
        self.clusterer.battle_of(killmail_id).map(|b| self.pid(b))
    }

    /// Clusters a batch; redelivered killmails are counted no-ops.
    pub fn apply<'a>(&mut self, kills: impl IntoIterator<Item = &'a ClusterKill>) -> Vec<BattleOp> {
        let kills: Vec<&ClusterKill> = kills.into_iter().collect();
        for k in &kills {
            self.max_kill_ms = self.max_kill_ms.max(k.time_ms);
        }
        let events = self.clusterer.insert_batch(kills);
        self.translate(events)
    }

    /// Ends battles quiet for the gap (by kill time, against `now_ms`) and drops settled
    /// battles from memory: the store keeps them, final.
    pub fn tick(&mut self, now_ms: TimeMs) -> Vec<BattleOp> {
        let events = self.clusterer.tick(now_ms);
        let ops = self.translate(events);
        if self.max_kill_ms != TimeMs::MIN {
            // Eviction is relative to the newest *kill*, not to the wall clock, so a backfill of
            // an old week clusters exactly like live traffic did.
            let lateness = now_ms
                .saturating_sub(self.max_kill_ms)
                .max(0)
                .saturating_add(self.settings.reopen_window_ms);
            for e in self.clusterer.evict_settled(lateness) {
                self.public.remove(&e.battle.id);
            }
        }
        ops
    }

    fn translate(&mut self, events: Vec<BattleEvent>) -> Vec<BattleOp> {
        let mut ops = Vec::new();
        for e in events {
            match e {
                BattleEvent::Created {
                    battle,
                    killmail_ids,
                } => {
                    let id = self.pid(battle.id);
                    ops.push(BattleOp::Create { battle_id: id });
                    ops.push(BattleOp::AddKills {
                        battle_id: id,
                        killmail_ids,
                    });
                }
                BattleEvent::Updated {
                    battle,
                    added,
                    removed,
                    reopened,
                } => {
                    let id = self.pid(battle.id);
                    if !removed.is_empty() {
                        ops.push(BattleOp::RemoveKills {
                            battle_id: id,
                            killmail_ids: removed,
                        });
                    }
                    if !added.is_empty() {
                        ops.push(BattleOp::AddKills {
                            battle_id: id,
                            killmail_ids: added,
                        });
                    }
                    if reopened {
                        ops.push(BattleOp::SetStatus {
                            battle_id: id,
                            status: BattleStatus::Active,
                        });
                    }
                }
                BattleEvent::Merged { survivor, absorbed } => {
                    let s = self.pid(survivor);
                    let a = self.pid(absorbed);
                    self.public.remove(&absorbed);
                    ops.push(BattleOp::Merge {
                        survivor: s,
                        absorbed: a,
                    });
                }
                BattleEvent::Renamed { from, to } => {
                    // The battle gained an earlier core kill: a new row under the new id takes
                    // over the old one, which answers as an alias (a merge into a fresh id).
                    let a = self.pid(from);
                    self.public.remove(&from);
                    let s = self.pid(to);
                    ops.push(BattleOp::Create { battle_id: s });
                    ops.push(BattleOp::Merge {
                        survivor: s,
                        absorbed: a,
                    });
                }
                BattleEvent::Ended { battle } => {
                    ops.push(BattleOp::SetStatus {
                        battle_id: self.pid(battle.id),
                        status: BattleStatus::Ended,
                    });
                }
                // Only `recluster` produces these, and the service never reclusters.
                BattleEvent::Split { .. } | BattleEvent::Dissolved { .. } => {
                    tracing::warn!("unexpected split/dissolved event from the clusterer");
                }
            }
        }
        ops
    }

    /// Counters for `/stats`.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            cluster: self.clusterer.stats().into(),
            in_memory_kills: self.clusterer.len() as u64,
            live_battles: self.clusterer.battles().len() as u64,
        }
    }
}
