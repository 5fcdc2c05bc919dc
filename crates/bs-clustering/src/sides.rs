//! Side assignment: who fought whom, from the killmails of one battle.
//!
//! The unit is the alliance, else the corporation (pilots in NPC corporations are their own
//! unit), taken from each killmail line, i.e. membership at kill time. Every kill adds
//!
//! * a *hostile* edge from each attacking unit to the victim's unit, weighted by the unit's share
//!   of the damage, and
//! * a *friendly* edge between every two units that shot the same victim, weighted by the smaller
//!   of their shares.
//!
//! NPCs, hangers-on (an attacker with less than a quarter of the average share, or under 5 % on
//! small gangs) and friendly fire (a unit shooting itself: awox) add nothing, so they cannot flip a
//! side. Units are then placed greedily by activity (ties by entity id, so a rerun never mirrors)
//! on the side that maximises friendly − hostile weight plus half the hostility towards that
//! side's enemies ("the enemy of my enemy"), and a few local-move passes settle the result. A unit
//! that fits nowhere opens a new side, which is how third parties get their own. Manual overrides
//! win over everything.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::model::{ClusterKill, is_npc_corporation};

/// An EVE entity that can be put on a side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Entity {
    Alliance(u64),
    Corporation(u64),
    Character(u64),
}

/// Where an override puts an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SideTarget {
    /// The side with this index (sides are created up to it if needed).
    Side(usize),
    /// The side of another entity: robust against re-clustering, which may renumber sides.
    With(Entity),
}

/// A manual side override. Character overrides beat corporation ones, which beat alliance ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideOverride {
    pub entity: Entity,
    pub target: SideTarget,
}

/// Side assignment thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideSettings {
    /// Attackers under this share of a kill's damage are hangers-on (small gangs).
    pub min_damage_share: f64,
    /// On big kills the hanger-on cut is this fraction of the average share, if lower.
    pub hanger_on_fraction_of_average: f64,
    /// Hangers-on count at this fraction of their (already small) share.
    pub hanger_on_weight: f64,
    /// Weight of "the enemy of my enemy is my friend".
    pub enemy_of_enemy: f64,
    /// A side is significant with at least this share of the pilots or of the kill weight.
    pub significant_share: f64,
    /// Multi-party when more than this share of the hostile weight falls inside one side.
    pub multi_party_intra_hostility: f64,
    /// One-sided when a single side scored at least this share of the kill weight.
    pub one_sided_share: f64,
}

impl Default for SideSettings {
    fn default() -> Self {
        Self {
            min_damage_share: 0.05,
            hanger_on_fraction_of_average: 0.25,
            hanger_on_weight: 0.1,
            enemy_of_enemy: 0.5,
            significant_share: 0.10,
            multi_party_intra_hostility: 0.20,
            one_sided_share: 0.95,
        }
    }
}

/// One side: its units (alliances, else corporations, else characters), sorted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub index: usize,
    pub units: Vec<Entity>,
    /// Distinct pilots placed on this side.
    pub pilots: u32,
    /// Damage-share weight of the kills this side scored on other sides.
    pub kill_weight: f64,
}

/// The result of [`assign_sides`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sides {
    pub sides: Vec<Side>,
    /// Two sides do not describe the fight: a significant third side, or a lot of hostility
    /// inside one side.
    pub multi_party: bool,
    /// Only one side scored kills: a massacre or a gank, not a two-sided battle.
    pub one_sided: bool,
    unit_side: BTreeMap<Entity, usize>,
    overrides: BTreeMap<Entity, usize>,
}

/// The side unit of a participant: alliance, else corporation (unless NPC), else character.
#[must_use]
pub fn unit_of(
    character_id: Option<u64>,
    corporation_id: Option<u64>,
    alliance_id: Option<u64>,
) -> Option<Entity> {
    if let Some(a) = alliance_id {
        return Some(Entity::Alliance(a));
    }
    match (corporation_id, character_id) {
        (Some(c), _) if !is_npc_corporation(c) => Some(Entity::Corporation(c)),
        (_, Some(ch)) => Some(Entity::Character(ch)),
        (Some(c), None) => Some(Entity::Corporation(c)),
        (None, None) => None,
    }
}

impl Sides {
    /// The side of one participant line (as of that killmail), overrides first.
    #[must_use]
    pub fn side_of(
        &self,
        character_id: Option<u64>,
        corporation_id: Option<u64>,
        alliance_id: Option<u64>,
    ) -> Option<usize> {
        let candidates = [
            character_id.map(Entity::Character),
            corporation_id.map(Entity::Corporation),
            alliance_id.map(Entity::Alliance),
        ];
        for e in candidates.into_iter().flatten() {
            if let Some(&s) = self.overrides.get(&e) {
                return Some(s);
            }
        }
        let unit = unit_of(character_id, corporation_id, alliance_id)?;
        self.unit_side.get(&unit).copied()
    }

    /// The side of a unit entity.
    #[must_use]
    pub fn side_of_unit(&self, unit: Entity) -> Option<usize> {
        self.overrides
            .get(&unit)
            .or_else(|| self.unit_side.get(&unit))
            .copied()
    }
}

#[derive(Default)]
struct Graph {
    // BTreeMaps: float sums must be taken in a fixed order for reruns to match exactly.
    hostile: BTreeMap<(Entity, Entity), f64>,
    friendly: BTreeMap<(Entity, Entity), f64>,
    activity: BTreeMap<Entity, f64>,
    adj: HashMap<Entity, BTreeSet<Entity>>,
}

fn pair(a: Entity, b: Entity) -> (Entity, Entity) {
    if a <= b { (a, b) } else { (b, a) }
}

impl Graph {
    fn add(&mut self, hostile: bool, a: Entity, b: Entity, w: f64) {
        if a == b || w <= 0.0 {
            return;
        }
        let map = if hostile {
            &mut self.hostile
        } else {
            &mut self.friendly
        };
        *map.entry(pair(a, b)).or_default() += w;
        *self.activity.entry(a).or_default() += w;
        *self.activity.entry(b).or_default() += w;
        self.adj.entry(a).or_default().insert(b);
        self.adj.entry(b).or_default().insert(a);
    }
    fn h(&self, a: Entity, b: Entity) -> f64 {
        self.hostile.get(&pair(a, b)).copied().unwrap_or(0.0)
    }
    fn f(&self, a: Entity, b: Entity) -> f64 {
        self.friendly.get(&pair(a, b)).copied().unwrap_or(0.0)
    }
}

/// Per kill: (attacking unit, its damage share) for the attackers that count.
fn counted_attackers(kill: &ClusterKill, settings: &SideSettings) -> Vec<(Entity, f64)> {
    let players: Vec<_> = kill
        .attackers
        .iter()
        .filter(|a| !a.is_npc && a.character_id.is_some())
        .collect();
    if players.is_empty() {
        return Vec::new();
    }
    let total: u64 = kill
        .victim
        .damage_taken
        .max(kill.attackers.iter().map(|a| a.damage_done).sum::<u64>());
    let n = players.len() as f64;
    let cut = settings
        .min_damage_share
        .min(settings.hanger_on_fraction_of_average / n);
    let mut by_unit: BTreeMap<Entity, f64> = BTreeMap::new();
    for a in &players {
        let share = if total == 0 {
            1.0 / n
        } else {
            a.damage_done as f64 / total as f64
        };
        // Hangers-on still place themselves (with their friends), at a weight too small to move
        // anybody else.
        // A zero-damage attacker (tackle, e-war) still shows whose side it is on.
        let w = if share + f64::EPSILON < cut {
            share.max(1e-3) * settings.hanger_on_weight
        } else {
            share
        };
        if let Some(u) = unit_of(a.character_id, a.corporation_id, a.alliance_id) {
            *by_unit.entry(u).or_default() += w;
        }
    }
    if by_unit.values().all(|&w| w <= 0.0) {
        by_unit.clear();
        // Everyone was a hanger-on (e.g. a structure did the damage): the top player counts.
        if let Some(top) = players.iter().max_by_key(|a| {
            (
                a.damage_done,
                a.final_blow,
                std::cmp::Reverse(a.character_id),
            )
        }) && let Some(u) = unit_of(top.character_id, top.corporation_id, top.alliance_id)
        {
            by_unit.insert(u, 1.0);
        }
    }
    by_unit.into_iter().collect()
}

/// A unit's friendly and hostile weight towards each side, over its placed neighbours.
fn per_side(
    g: &Graph,
    u: Entity,
    side_of: &HashMap<Entity, usize>,
    n: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut f = vec![0.0; n];
    let mut h = vec![0.0; n];
    if let Some(adj) = g.adj.get(&u) {
        for &v in adj {
            if v == u {
                continue;
            }
            if let Some(&s) = side_of.get(&v) {
                f[s] += g.f(u, v);
                h[s] += g.h(u, v);
            }
        }
    }
    (f, h)
}

/// Hostile (`sh`) and friendly (`sf`) weight between sides, over placed units.
#[derive(Default)]
struct SideMatrix {
    n: usize,
    sh: Vec<Vec<f64>>,
    sf: Vec<Vec<f64>>,
}

impl SideMatrix {
    fn add_side(&mut self) -> usize {
        self.n += 1;
        for row in self.sh.iter_mut().chain(self.sf.iter_mut()) {
            row.push(0.0);
        }
        self.sh.push(vec![0.0; self.n]);
        self.sf.push(vec![0.0; self.n]);
        self.n - 1
    }

    /// Adds (`sign` 1) or removes (−1) a unit on side `s`, given its per-side weights.
    fn shift(&mut self, s: usize, f: &[f64], h: &[f64], sign: f64) {
        for t in 0..f.len().min(self.n) {
            self.sh[s][t] += sign * h[t];
            self.sh[t][s] += sign * h[t];
            self.sf[s][t] += sign * f[t];
            self.sf[t][s] += sign * f[t];
        }
    }

    /// The unit's score on every side: friendly − hostile + `eoe` × its hostility towards the
    /// side's enemies. `own` is the unit's current side, whose contribution is taken out.
    fn scores(&self, own: Option<usize>, f: &[f64], h: &[f64], eoe: f64) -> Vec<f64> {
        let n = self.n;
        let without = |m: &Vec<Vec<f64>>, w: &[f64], x: usize, y: usize| {
            let mut v = m[x][y];
            if own == Some(x) {
                v -= w[y];
            }
            if own == Some(y) {
                v -= w[x];
            }
            v
        };
        (0..n)
            .map(|s| {
                let enemies: f64 = (0..n)
                    .filter(|&t| t != s && without(&self.sh, h, s, t) > without(&self.sf, f, s, t))
                    .map(|t| h[t])
                    .sum();
                f[s] - h[s] + eoe * enemies
            })
            .collect()
    }
}

/// Splits a battle's participants into sides. Deterministic for a given set of kills, whatever
/// their order.
#[must_use]
pub fn assign_sides(
    kills: &[&ClusterKill],
    overrides: &[SideOverride],
    settings: &SideSettings,
) -> Sides {
    // Sort by (time, id) so floating-point sums do not depend on the caller's order.
    let mut kills: Vec<&ClusterKill> = kills.to_vec();
    kills.sort_by_key(|k| k.key());
    let kills = &kills[..];
    let mut g = Graph::default();
    let mut unit_pilots: BTreeMap<Entity, BTreeSet<u64>> = BTreeMap::new();
    let mut kill_edges: Vec<(Entity, Vec<(Entity, f64)>)> = Vec::new();
    for k in kills {
        let v = &k.victim;
        let victim_unit = unit_of(v.character_id, v.corporation_id, v.alliance_id);
        if let Some(u) = victim_unit {
            let e = unit_pilots.entry(u).or_default();
            e.extend(v.character_id);
            g.activity.entry(u).or_default();
        }
        for a in k.attackers.iter().filter(|a| !a.is_npc) {
            if let (Some(ch), Some(u)) = (
                a.character_id,
                unit_of(a.character_id, a.corporation_id, a.alliance_id),
            ) {
                unit_pilots.entry(u).or_default().insert(ch);
                g.activity.entry(u).or_default();
            }
        }
        let att = counted_attackers(k, settings);
        if let Some(vu) = victim_unit {
            for &(u, s) in &att {
                g.add(true, u, vu, s);
            }
            kill_edges.push((vu, att.clone()));
        }
        for (i, &(u1, s1)) in att.iter().enumerate() {
            for &(u2, s2) in &att[i + 1..] {
                g.add(false, u1, u2, s1.min(s2));
            }
        }
    }

    // Placement order: most active first, ties by entity (deterministic, never mirrored).
    let mut order: Vec<Entity> = g.activity.keys().copied().collect();
    order.sort_by(|a, b| {
        let wa = g.activity[a] + unit_pilots.get(a).map_or(0, BTreeSet::len) as f64 * 1e-6;
        let wb = g.activity[b] + unit_pilots.get(b).map_or(0, BTreeSet::len) as f64 * 1e-6;
        wb.total_cmp(&wa).then(a.cmp(b))
    });

    let mut side_of: HashMap<Entity, usize> = HashMap::new();
    // Side-level hostility/friendship between placed units, kept up to date as units are placed
    // and moved; a recount per score would cost O(edges) per unit.
    let mut m = SideMatrix::default();
    for &u in &order {
        let (f, h) = per_side(&g, u, &side_of, m.n);
        let sc = m.scores(None, &f, &h, settings.enemy_of_enemy);
        let best = sc
            .iter()
            .enumerate()
            .filter(|&(_, &v)| v > 0.0)
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i);
        let s = best.unwrap_or_else(|| m.add_side());
        m.shift(s, &f, &h, 1.0);
        side_of.insert(u, s);
    }
    // Local moves: a unit moves when another side scores clearly better. Bounded passes.
    for _ in 0..6 {
        let mut moved = false;
        for &u in &order {
            let cur = side_of[&u];
            let (f, h) = per_side(&g, u, &side_of, m.n);
            let sc = m.scores(Some(cur), &f, &h, settings.enemy_of_enemy);
            let (best, best_score) = sc
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
                .map_or((cur, 0.0), |(i, &v)| (i, v));
            if best != cur && best_score > sc[cur] + 1e-9 && best_score > 0.0 {
                m.shift(cur, &f, &h, -1.0);
                m.shift(best, &f, &h, 1.0);
                side_of.insert(u, best);
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }

    // Number sides by pilots (desc), then by their smallest unit: stable and never mirrored.
    let mut groups: BTreeMap<usize, Vec<Entity>> = BTreeMap::new();
    for (&u, &s) in &side_of {
        groups.entry(s).or_default().push(u);
    }
    let mut sides: Vec<(u32, Vec<Entity>)> = groups
        .into_values()
        .map(|mut units| {
            units.sort();
            let pilots: BTreeSet<u64> = units
                .iter()
                .filter_map(|u| unit_pilots.get(u))
                .flatten()
                .copied()
                .collect();
            (pilots.len() as u32, units)
        })
        .collect();
    sides.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut unit_side: BTreeMap<Entity, usize> = BTreeMap::new();
    for (i, (_, units)) in sides.iter().enumerate() {
        for &u in units {
            unit_side.insert(u, i);
        }
    }
    let mut out_sides: Vec<Side> = sides
        .into_iter()
        .enumerate()
        .map(|(index, (pilots, units))| Side {
            index,
            units,
            pilots,
            kill_weight: 0.0,
        })
        .collect();

    // Overrides win: resolve targets against the computed numbering.
    let mut resolved: BTreeMap<Entity, usize> = BTreeMap::new();
    for o in overrides {
        let target = match o.target {
            SideTarget::Side(i) => Some(i),
            SideTarget::With(e) => resolved
                .get(&e)
                .or_else(|| unit_side.get(&e))
                .copied()
                .or_else(|| {
                    // A character or corporation anchor: find its unit through the kills.
                    kills.iter().find_map(|k| {
                        std::iter::once((
                            k.victim.character_id,
                            k.victim.corporation_id,
                            k.victim.alliance_id,
                        ))
                        .chain(
                            k.attackers
                                .iter()
                                .map(|a| (a.character_id, a.corporation_id, a.alliance_id)),
                        )
                        .find(|&(ch, co, al)| match e {
                            Entity::Character(x) => ch == Some(x),
                            Entity::Corporation(x) => co == Some(x),
                            Entity::Alliance(x) => al == Some(x),
                        })
                        .and_then(|(ch, co, al)| unit_of(ch, co, al))
                        .and_then(|u| unit_side.get(&u).copied())
                    })
                }),
        };
        if let Some(t) = target {
            while out_sides.len() <= t {
                out_sides.push(Side {
                    index: out_sides.len(),
                    units: Vec::new(),
                    pilots: 0,
                    kill_weight: 0.0,
                });
            }
            resolved.insert(o.entity, t);
            if let Some(old) = unit_side.get(&o.entity).copied()
                && old != t
            {
                unit_side.insert(o.entity, t);
                out_sides[old].units.retain(|&u| u != o.entity);
                out_sides[t].units.push(o.entity);
                out_sides[t].units.sort();
            }
        }
    }
    let mut result = Sides {
        sides: out_sides,
        multi_party: false,
        one_sided: false,
        unit_side,
        overrides: resolved,
    };

    // Pilot counts and kill weight after overrides.
    let mut side_pilots: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); result.sides.len()];
    for k in kills {
        let v = &k.victim;
        if let (Some(ch), Some(s)) = (
            v.character_id,
            result.side_of(v.character_id, v.corporation_id, v.alliance_id),
        ) {
            side_pilots[s].insert(ch);
        }
        for a in k.attackers.iter().filter(|a| !a.is_npc) {
            if let (Some(ch), Some(s)) = (
                a.character_id,
                result.side_of(a.character_id, a.corporation_id, a.alliance_id),
            ) {
                side_pilots[s].insert(ch);
            }
        }
    }
    let mut intra = 0.0;
    let mut total_h = 0.0;
    let mut kill_w = vec![0.0; result.sides.len()];
    for (vu, att) in &kill_edges {
        let vs = result.side_of_unit(*vu);
        for &(u, s) in att {
            if u == *vu {
                continue;
            }
            total_h += s;
            let us = result.side_of_unit(u);
            if us.is_some() && us == vs {
                intra += s;
            } else if let Some(x) = us {
                kill_w[x] += s;
            }
        }
    }
    for (i, side) in result.sides.iter_mut().enumerate() {
        side.pilots = side_pilots[i].len() as u32;
        side.kill_weight = kill_w[i];
    }
    let all_pilots: u32 = result.sides.iter().map(|s| s.pilots).sum();
    let all_kw: f64 = kill_w.iter().sum();
    let significant = result
        .sides
        .iter()
        .filter(|s| {
            (all_pilots > 0
                && f64::from(s.pilots) >= settings.significant_share * f64::from(all_pilots))
                || (all_kw > 0.0 && s.kill_weight >= settings.significant_share * all_kw)
        })
        .count();
    result.multi_party = significant >= 3
        || (total_h > 0.0 && intra / total_h > settings.multi_party_intra_hostility);
    result.one_sided = all_kw <= 0.0
        || result
            .sides
            .iter()
            .any(|s| s.kill_weight >= settings.one_sided_share * all_kw);
    result
}
