//! The filter language of subscriptions: a serialisable AST ([`Filter`]), its compiled form
//! ([`Compiled`], with jump ranges and watchlists resolved to sets) and the pure matcher.
//!
//! Semantics (pinned by tests): `and` is true when every child is (an empty `and` is true),
//! `or` when at least one is (an empty `or` is false), `none_of` when no child is. A clause
//! that does not apply to the subject is false: killmail clauses (victim, ship, ISK, solo…)
//! never match a battle, and a `battle` clause never matches a killmail — so a filter with a
//! `battle` clause under `and` is a battle trigger, and `none_of` over killmail-only clauses is
//! vacuously true on battles.

use std::collections::{HashMap, HashSet};

use bs_events::{BattleSnapshot, KillmailEnriched};
use serde::{Deserialize, Serialize};

/// Which participants an entity or ship clause looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Victim,
    Attacker,
    #[default]
    Either,
}

/// A subscription filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Filter {
    And {
        of: Vec<Filter>,
    },
    Or {
        of: Vec<Filter>,
    },
    NoneOf {
        of: Vec<Filter>,
    },
    Character {
        ids: Vec<i64>,
        #[serde(default)]
        role: Role,
    },
    Corporation {
        ids: Vec<i64>,
        #[serde(default)]
        role: Role,
    },
    Alliance {
        ids: Vec<i64>,
        #[serde(default)]
        role: Role,
    },
    /// Any entity or system of a watchlist (by id, resolved when compiling).
    Watchlist {
        id: i64,
        #[serde(default)]
        role: Role,
    },
    System {
        ids: Vec<i64>,
    },
    Constellation {
        ids: Vec<i64>,
    },
    Region {
        ids: Vec<i64>,
    },
    /// Within `jumps` stargate jumps of `system_id` (0: the system itself).
    WithinJumps {
        system_id: i64,
        jumps: u32,
    },
    /// `highsec`, `lowsec`, `nullsec`, `wormhole`, `pochven`, `abyssal`.
    SecurityType {
        types: Vec<String>,
    },
    ShipType {
        ids: Vec<i64>,
        #[serde(default = "victim")]
        role: Role,
    },
    ShipGroup {
        ids: Vec<i64>,
        #[serde(default = "victim")]
        role: Role,
    },
    /// Ship classes as in `bs-sde` (`frigate`, `cruiser`, `capital`, `structure`, …).
    ShipClass {
        classes: Vec<String>,
        #[serde(default = "victim")]
        role: Role,
    },
    MinIsk {
        isk: f64,
    },
    MinPilots {
        pilots: u32,
    },
    /// Exactly one player attacker (zKillboard's flag when present).
    Solo,
    /// Two or more player attackers.
    Gang,
    /// Only NPC attackers (zKillboard's flag when present).
    Npc,
    /// A battle reached `min_kills` kills and/or `min_isk` ISK destroyed (both when both set).
    Battle {
        #[serde(default)]
        min_kills: Option<u32>,
        #[serde(default)]
        min_isk: Option<f64>,
    },
}

fn victim() -> Role {
    Role::Victim
}

/// A named set of entities and systems, owned by an account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchlistSet {
    #[serde(default)]
    pub characters: Vec<i64>,
    #[serde(default)]
    pub corporations: Vec<i64>,
    #[serde(default)]
    pub alliances: Vec<i64>,
    #[serde(default)]
    pub systems: Vec<i64>,
}

/// Why a filter cannot be compiled (an API 400, never a crash).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    #[error("unknown watchlist {0}")]
    UnknownWatchlist(i64),
    #[error("unknown system {0}")]
    UnknownSystem(i64),
    #[error("jumps must be at most {max}")]
    TooManyJumps { max: u32 },
    #[error("filter nests deeper than {max}")]
    TooDeep { max: usize },
    #[error("unknown security type `{0}`")]
    UnknownSecurityType(String),
}

/// The largest jump radius accepted (keeps the precomputed sets small).
pub const MAX_JUMPS: u32 = 15;
const MAX_DEPTH: usize = 16;
const SECURITY_TYPES: &[&str] = &[
    "highsec", "lowsec", "nullsec", "wormhole", "pochven", "abyssal",
];

/// The static data the compiler needs: the stargate graph.
pub trait Geography {
    /// Systems within `jumps` of `system` (including it), or `None` for an unknown system.
    fn within(&self, system: i64, jumps: u32) -> Option<Vec<i64>>;
}

impl Geography for bs_sde::StaticData {
    fn within(&self, system: i64, jumps: u32) -> Option<Vec<i64>> {
        let v = self.systems_within(system, jumps);
        (!v.is_empty()).then(|| v.into_iter().map(|(s, _)| s).collect())
    }
}

/// A filter ready to match: sets instead of lists, watchlists and jump ranges resolved.
#[derive(Clone, Debug)]
pub enum Compiled {
    And(Vec<Compiled>),
    Or(Vec<Compiled>),
    NoneOf(Vec<Compiled>),
    Entities {
        characters: HashSet<i64>,
        corporations: HashSet<i64>,
        alliances: HashSet<i64>,
        role: Role,
    },
    Systems(HashSet<i64>),
    Constellations(HashSet<i64>),
    Regions(HashSet<i64>),
    /// A watchlist: its entities (by role) or its systems.
    Watch {
        entities: Box<Compiled>,
        systems: HashSet<i64>,
    },
    SecurityTypes(Vec<String>),
    ShipTypes(HashSet<i64>, Role),
    ShipGroups(HashSet<i64>, Role),
    ShipClasses(Vec<String>, Role),
    MinIsk(f64),
    MinPilots(u32),
    Solo,
    Gang,
    Npc,
    Battle {
        min_kills: Option<u32>,
        min_isk: Option<f64>,
    },
}

/// What is being matched.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    Killmail(&'a KillmailEnriched),
    Battle(&'a BattleSnapshot),
}

fn set(ids: &[i64]) -> HashSet<i64> {
    ids.iter().copied().collect()
}

/// Compiles `filter`; `watchlists` are the owner's.
pub fn compile(
    filter: &Filter,
    geo: &dyn Geography,
    watchlists: &HashMap<i64, WatchlistSet>,
) -> Result<Compiled, FilterError> {
    compile_at(filter, geo, watchlists, 0)
}

fn compile_at(
    filter: &Filter,
    geo: &dyn Geography,
    watchlists: &HashMap<i64, WatchlistSet>,
    depth: usize,
) -> Result<Compiled, FilterError> {
    if depth > MAX_DEPTH {
        return Err(FilterError::TooDeep { max: MAX_DEPTH });
    }
    let all = |of: &[Filter]| -> Result<Vec<Compiled>, FilterError> {
        of.iter()
            .map(|f| compile_at(f, geo, watchlists, depth + 1))
            .collect()
    };
    Ok(match filter {
        Filter::And { of } => Compiled::And(all(of)?),
        Filter::Or { of } => Compiled::Or(all(of)?),
        Filter::NoneOf { of } => Compiled::NoneOf(all(of)?),
        Filter::Character { ids, role } => Compiled::Entities {
            characters: set(ids),
            corporations: HashSet::new(),
            alliances: HashSet::new(),
            role: *role,
        },
        Filter::Corporation { ids, role } => Compiled::Entities {
            characters: HashSet::new(),
            corporations: set(ids),
            alliances: HashSet::new(),
            role: *role,
        },
        Filter::Alliance { ids, role } => Compiled::Entities {
            characters: HashSet::new(),
            corporations: HashSet::new(),
            alliances: set(ids),
            role: *role,
        },
        Filter::Watchlist { id, role } => {
            let w = watchlists
                .get(id)
                .ok_or(FilterError::UnknownWatchlist(*id))?;
            Compiled::Watch {
                entities: Box::new(Compiled::Entities {
                    characters: set(&w.characters),
                    corporations: set(&w.corporations),
                    alliances: set(&w.alliances),
                    role: *role,
                }),
                systems: set(&w.systems),
            }
        }
        Filter::System { ids } => Compiled::Systems(set(ids)),
        Filter::Constellation { ids } => Compiled::Constellations(set(ids)),
        Filter::Region { ids } => Compiled::Regions(set(ids)),
        Filter::WithinJumps { system_id, jumps } => {
            if *jumps > MAX_JUMPS {
                return Err(FilterError::TooManyJumps { max: MAX_JUMPS });
            }
            let systems = geo
                .within(*system_id, *jumps)
                .ok_or(FilterError::UnknownSystem(*system_id))?;
            Compiled::Systems(systems.into_iter().collect())
        }
        Filter::SecurityType { types } => {
            let types: Vec<String> = types.iter().map(|t| t.to_ascii_lowercase()).collect();
            if let Some(bad) = types.iter().find(|t| !SECURITY_TYPES.contains(&t.as_str())) {
                return Err(FilterError::UnknownSecurityType(bad.clone()));
            }
            Compiled::SecurityTypes(types)
        }
        Filter::ShipType { ids, role } => Compiled::ShipTypes(set(ids), *role),
        Filter::ShipGroup { ids, role } => Compiled::ShipGroups(set(ids), *role),
        Filter::ShipClass { classes, role } => Compiled::ShipClasses(
            classes.iter().map(|c| c.to_ascii_lowercase()).collect(),
            *role,
        ),
        Filter::MinIsk { isk } => Compiled::MinIsk(*isk),
        Filter::MinPilots { pilots } => Compiled::MinPilots(*pilots),
        Filter::Solo => Compiled::Solo,
        Filter::Gang => Compiled::Gang,
        Filter::Npc => Compiled::Npc,
        Filter::Battle { min_kills, min_isk } => Compiled::Battle {
            min_kills: *min_kills,
            min_isk: *min_isk,
        },
    })
}

/// True when the filter contains a battle clause (it is a battle trigger).
pub fn is_battle_trigger(filter: &Filter) -> bool {
    match filter {
        Filter::And { of } | Filter::Or { of } => of.iter().any(is_battle_trigger),
        Filter::Battle { .. } => true,
        _ => false,
    }
}

fn player_attackers(km: &KillmailEnriched) -> usize {
    km.attackers
        .iter()
        .filter(|a| !a.is_npc && a.who.character_id.is_some())
        .count()
}

/// Solo, gang and NPC as defined on [`Filter`].
pub fn is_solo(km: &KillmailEnriched) -> bool {
    match &km.zkb {
        Some(z) => z.solo,
        None => player_attackers(km) == 1,
    }
}

pub fn is_npc(km: &KillmailEnriched) -> bool {
    match &km.zkb {
        Some(z) => z.npc,
        None => km.attackers.iter().all(|a| a.is_npc),
    }
}

pub fn is_gang(km: &KillmailEnriched) -> bool {
    player_attackers(km) >= 2
}

fn entity_hit(
    who: &bs_events::Affiliation,
    ch: &HashSet<i64>,
    co: &HashSet<i64>,
    al: &HashSet<i64>,
) -> bool {
    who.character_id.is_some_and(|i| ch.contains(&i))
        || who.corporation_id.is_some_and(|i| co.contains(&i))
        || who.alliance_id.is_some_and(|i| al.contains(&i))
}

fn ship_hit(
    km: &KillmailEnriched,
    role: Role,
    hit: impl Fn(&bs_events::EnrichedShip) -> bool,
) -> bool {
    let v = matches!(role, Role::Victim | Role::Either) && hit(&km.victim.ship);
    v || (matches!(role, Role::Attacker | Role::Either)
        && km
            .attackers
            .iter()
            .any(|a| a.ship.as_ref().is_some_and(&hit)))
}

impl Compiled {
    /// Does the subject match? Pure: no IO, no clock.
    pub fn matches(&self, subject: Subject<'_>) -> bool {
        match subject {
            Subject::Killmail(km) => self.matches_killmail(km),
            Subject::Battle(b) => self.matches_battle(b),
        }
    }

    fn matches_killmail(&self, km: &KillmailEnriched) -> bool {
        match self {
            Self::And(of) => of.iter().all(|c| c.matches_killmail(km)),
            Self::Or(of) => of.iter().any(|c| c.matches_killmail(km)),
            Self::NoneOf(of) => !of.iter().any(|c| c.matches_killmail(km)),
            Self::Entities {
                characters,
                corporations,
                alliances,
                role,
            } => {
                let v = matches!(role, Role::Victim | Role::Either)
                    && entity_hit(&km.victim.who, characters, corporations, alliances);
                v || (matches!(role, Role::Attacker | Role::Either)
                    && km
                        .attackers
                        .iter()
                        .any(|a| entity_hit(&a.who, characters, corporations, alliances)))
            }
            Self::Watch { entities, systems } => {
                systems.contains(&km.system.id) || entities.matches_killmail(km)
            }
            Self::Systems(s) => s.contains(&km.system.id),
            Self::Constellations(s) => km.system.constellation_id.is_some_and(|c| s.contains(&c)),
            Self::Regions(s) => km.system.region_id.is_some_and(|r| s.contains(&r)),
            Self::SecurityTypes(t) => km
                .system
                .security_type
                .as_deref()
                .is_some_and(|s| t.iter().any(|x| x == s)),
            Self::ShipTypes(ids, role) => ship_hit(km, *role, |s| ids.contains(&s.type_id)),
            Self::ShipGroups(ids, role) => {
                ship_hit(km, *role, |s| s.group_id.is_some_and(|g| ids.contains(&g)))
            }
            Self::ShipClasses(cls, role) => ship_hit(km, *role, |s| {
                s.class
                    .as_deref()
                    .is_some_and(|c| cls.iter().any(|x| x == c))
            }),
            Self::MinIsk(isk) => km.isk.total >= *isk,
            Self::MinPilots(n) => km.pilot_count >= *n,
            Self::Solo => is_solo(km),
            Self::Gang => is_gang(km),
            Self::Npc => is_npc(km),
            Self::Battle { .. } => false,
        }
    }

    fn matches_battle(&self, b: &BattleSnapshot) -> bool {
        let in_sides = |ch: &HashSet<i64>, co: &HashSet<i64>, al: &HashSet<i64>| {
            // Battles carry corporations and alliances per side, not characters.
            let _ = ch;
            b.sides.iter().any(|s| {
                s.alliance_ids.iter().any(|a| al.contains(a))
                    || s.corporation_ids.iter().any(|c| co.contains(c))
            })
        };
        match self {
            Self::And(of) => of.iter().all(|c| c.matches_battle(b)),
            Self::Or(of) => of.iter().any(|c| c.matches_battle(b)),
            Self::NoneOf(of) => !of.iter().any(|c| c.matches_battle(b)),
            Self::Entities {
                characters,
                corporations,
                alliances,
                ..
            } => in_sides(characters, corporations, alliances),
            Self::Watch { entities, systems } => {
                b.system_ids.iter().any(|s| systems.contains(s)) || entities.matches_battle(b)
            }
            Self::Systems(s) => b.system_ids.iter().any(|x| s.contains(x)),
            Self::Regions(s) => b.region_ids.iter().any(|x| s.contains(x)),
            Self::SecurityTypes(t) => b.security_types.iter().any(|s| t.contains(s)),
            Self::MinIsk(isk) => b.total_isk_destroyed >= *isk,
            Self::MinPilots(n) => b.pilots >= *n,
            Self::Battle { min_kills, min_isk } => {
                min_kills.is_none_or(|k| b.total_kills >= k)
                    && min_isk.is_none_or(|i| b.total_isk_destroyed >= i)
            }
            // Constellations are not in the battle snapshot; killmail-only clauses.
            Self::Constellations(_)
            | Self::ShipTypes(..)
            | Self::ShipGroups(..)
            | Self::ShipClasses(..)
            | Self::Solo
            | Self::Gang
            | Self::Npc => false,
        }
    }
}

/// An index key: a value a killmail carries and a filter may require.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    System(i64),
    Constellation(i64),
    Region(i64),
    Character(i64),
    Corporation(i64),
    Alliance(i64),
    ShipType(i64),
}

impl Compiled {
    /// Keys of which a matching killmail must carry at least one, or `None` when the filter
    /// needs no particular key (it is checked against every killmail). Sound, not minimal:
    /// roles are ignored, so the index only narrows the candidates.
    pub fn anchors(&self) -> Option<Vec<Key>> {
        let ents = |ch: &HashSet<i64>, co: &HashSet<i64>, al: &HashSet<i64>| {
            let mut v: Vec<Key> = ch.iter().map(|&i| Key::Character(i)).collect();
            v.extend(co.iter().map(|&i| Key::Corporation(i)));
            v.extend(al.iter().map(|&i| Key::Alliance(i)));
            v
        };
        match self {
            Self::And(of) => of.iter().filter_map(Compiled::anchors).min_by_key(Vec::len),
            Self::Or(of) => {
                let mut out = Vec::new();
                for c in of {
                    out.extend(c.anchors()?);
                }
                (!of.is_empty()).then_some(out)
            }
            Self::Entities {
                characters,
                corporations,
                alliances,
                ..
            } => Some(ents(characters, corporations, alliances)),
            Self::Watch { entities, systems } => {
                let mut v = entities.anchors().unwrap_or_default();
                v.extend(systems.iter().map(|&s| Key::System(s)));
                Some(v)
            }
            Self::Systems(s) => Some(s.iter().map(|&i| Key::System(i)).collect()),
            Self::Constellations(s) => Some(s.iter().map(|&i| Key::Constellation(i)).collect()),
            Self::Regions(s) => Some(s.iter().map(|&i| Key::Region(i)).collect()),
            Self::ShipTypes(s, _) => Some(s.iter().map(|&i| Key::ShipType(i)).collect()),
            _ => None,
        }
    }
}

/// Every key a killmail carries (see [`Compiled::anchors`]).
pub fn killmail_keys(km: &KillmailEnriched, out: &mut Vec<Key>) {
    out.clear();
    out.push(Key::System(km.system.id));
    if let Some(c) = km.system.constellation_id {
        out.push(Key::Constellation(c));
    }
    if let Some(r) = km.system.region_id {
        out.push(Key::Region(r));
    }
    let mut who = |w: &bs_events::Affiliation| {
        if let Some(i) = w.character_id {
            out.push(Key::Character(i));
        }
        if let Some(i) = w.corporation_id {
            out.push(Key::Corporation(i));
        }
        if let Some(i) = w.alliance_id {
            out.push(Key::Alliance(i));
        }
    };
    who(&km.victim.who);
    for a in &km.attackers {
        who(&a.who);
    }
    out.push(Key::ShipType(km.victim.ship.type_id));
    for a in &km.attackers {
        if let Some(s) = &a.ship {
            out.push(Key::ShipType(s.type_id));
        }
    }
}
