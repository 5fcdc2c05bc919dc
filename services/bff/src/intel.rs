//! Entity statistics (alliance, corporation, character) computed from enriched killmails.
//!
//! Pure: the caller fetches the killmails of the battles the entity took part in; this module
//! counts. A kill is a killmail with the entity among the attackers (and not the victim), a loss
//! one with the entity as victim; ISK efficiency is `destroyed / (destroyed + lost) × 100`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::model::Killmail;

/// Which kind of entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Alliance,
    Corporation,
    Character,
}

impl EntityKind {
    /// From the URL segment (`alliances`, `corporations`, `characters`, singular accepted).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "alliance" | "alliances" => Some(Self::Alliance),
            "corporation" | "corporations" => Some(Self::Corporation),
            "character" | "characters" => Some(Self::Character),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alliance => "alliance",
            Self::Corporation => "corporation",
            Self::Character => "character",
        }
    }

    /// The path segment of the entity pages.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Alliance => "alliances",
            Self::Corporation => "corporations",
            Self::Character => "characters",
        }
    }

    /// The battle list filter parameter.
    pub fn filter(self) -> &'static str {
        match self {
            Self::Alliance => "alliance_id",
            Self::Corporation => "corporation_id",
            Self::Character => "character_id",
        }
    }
}

/// A counted thing (ship type, opponent, system).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Top {
    pub id: i64,
    pub name: Option<String>,
    pub count: u32,
    /// Ship class for ships, security type for systems.
    pub extra: Option<String>,
}

/// Kills and losses on one day (UTC).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Day {
    pub date: String,
    pub kills: u32,
    pub losses: u32,
}

/// What an entity page shows.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct EntityStats {
    pub name: Option<String>,
    pub battles: u32,
    pub killmails: u32,
    pub kills: u32,
    pub losses: u32,
    pub isk_destroyed: f64,
    pub isk_lost: f64,
    /// 0..100, `None` when nothing was destroyed or lost.
    pub efficiency: Option<f64>,
    pub top_ships: Vec<Top>,
    /// Alliances (or corporations without alliance) fought against.
    pub top_opponents: Vec<Top>,
    pub top_systems: Vec<Top>,
    pub activity: Vec<Day>,
}

struct Who<'a> {
    character: (Option<i64>, &'a Option<String>),
    corporation: (Option<i64>, &'a Option<String>),
    alliance: (Option<i64>, &'a Option<String>),
}

impl Who<'_> {
    fn is(&self, kind: EntityKind, id: i64) -> bool {
        let got = match kind {
            EntityKind::Alliance => self.alliance.0,
            EntityKind::Corporation => self.corporation.0,
            EntityKind::Character => self.character.0,
        };
        got == Some(id)
    }

    fn name(&self, kind: EntityKind) -> Option<String> {
        match kind {
            EntityKind::Alliance => self.alliance.1.clone(),
            EntityKind::Corporation => self.corporation.1.clone(),
            EntityKind::Character => self.character.1.clone(),
        }
    }

    /// The group an opponent is counted under: its alliance, else its corporation.
    fn group(&self) -> Option<(i64, Option<String>)> {
        self.alliance
            .0
            .map(|a| (a, self.alliance.1.clone()))
            .or_else(|| self.corporation.0.map(|c| (c, self.corporation.1.clone())))
    }
}

fn bump(map: &mut HashMap<i64, Top>, id: i64, name: Option<String>, extra: Option<String>) {
    let e = map.entry(id).or_insert_with(|| Top {
        id,
        name: None,
        count: 0,
        extra: None,
    });
    e.count += 1;
    if e.name.is_none() {
        e.name = name;
    }
    if e.extra.is_none() {
        e.extra = extra;
    }
}

fn top(map: HashMap<i64, Top>, n: usize) -> Vec<Top> {
    let mut v: Vec<Top> = map.into_values().collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.id.cmp(&b.id)));
    v.truncate(n);
    v
}

/// Counts `killmails` (deduplicated by id) for the entity `(kind, id)` over `battles` battles.
pub fn entity_stats(
    kind: EntityKind,
    id: i64,
    battles: u32,
    killmails: &[&Killmail],
) -> EntityStats {
    let mut s = EntityStats {
        battles,
        ..EntityStats::default()
    };
    let mut ships = HashMap::new();
    let mut opponents = HashMap::new();
    let mut systems = HashMap::new();
    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for k in killmails {
        if !seen.insert(k.killmail_id) {
            continue;
        }
        let victim = Who {
            character: (k.victim.character_id, &k.victim.character_name),
            corporation: (k.victim.corporation_id, &k.victim.corporation_name),
            alliance: (k.victim.alliance_id, &k.victim.alliance_name),
        };
        let attackers: Vec<(Who, &crate::model::Attacker)> = k
            .attackers
            .iter()
            .map(|a| {
                (
                    Who {
                        character: (a.character_id, &a.character_name),
                        corporation: (a.corporation_id, &a.corporation_name),
                        alliance: (a.alliance_id, &a.alliance_name),
                    },
                    a,
                )
            })
            .collect();
        let lost = victim.is(kind, id);
        let ours: Vec<&(Who, &crate::model::Attacker)> =
            attackers.iter().filter(|(w, _)| w.is(kind, id)).collect();
        if !lost && ours.is_empty() {
            continue;
        }
        s.killmails += 1;
        let isk = k.isk_total.unwrap_or(0.0);
        let date = k.killmail_time.get(..10).unwrap_or("").to_owned();
        let day = days.entry(date.clone()).or_insert_with(|| Day {
            date,
            ..Day::default()
        });
        if s.name.is_none() {
            s.name = if lost {
                victim.name(kind)
            } else {
                ours.first().and_then(|(w, _)| w.name(kind))
            };
        }
        bump(
            &mut systems,
            k.system_id,
            k.system_name.clone(),
            k.security_type.clone(),
        );
        if lost {
            s.losses += 1;
            s.isk_lost += isk;
            day.losses += 1;
            bump(
                &mut ships,
                k.ship_type_id,
                k.ship_type_name.clone(),
                k.ship_class.clone(),
            );
            for (w, _) in &attackers {
                if let Some((g, name)) = w.group()
                    && !w.is(kind, id)
                {
                    bump(&mut opponents, g, name, None);
                }
            }
        } else {
            s.kills += 1;
            s.isk_destroyed += isk;
            day.kills += 1;
            for (_, a) in &ours {
                if let Some(ship) = &a.ship {
                    bump(
                        &mut ships,
                        ship.type_id,
                        ship.type_name.clone(),
                        ship.class.clone(),
                    );
                }
            }
            if let Some((g, name)) = victim.group() {
                bump(&mut opponents, g, name, None);
            }
        }
    }
    let total = s.isk_destroyed + s.isk_lost;
    s.efficiency = (total > 0.0).then(|| s.isk_destroyed / total * 100.0);
    s.top_ships = top(ships, 15);
    s.top_opponents = top(opponents, 10);
    s.top_systems = top(systems, 10);
    s.activity = days.into_values().collect();
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attacker, Victim};

    fn km(id: i64, victim_alliance: i64, attacker_alliance: i64, isk: f64) -> Killmail {
        Killmail {
            killmail_id: id,
            killmail_time: "2021-11-28T19:00:00Z".into(),
            system_id: 30_000_142,
            isk_total: Some(isk),
            victim: Victim {
                alliance_id: Some(victim_alliance),
                ..Victim::default()
            },
            attackers: vec![Attacker {
                alliance_id: Some(attacker_alliance),
                ..Attacker::default()
            }],
            ..Killmail::default()
        }
    }

    #[test]
    fn efficiency_matches_the_spec_example() {
        // 450 destroyed, 320 lost → 58.44 %.
        let a = km(1, 2, 1, 450.0);
        let b = km(2, 1, 2, 320.0);
        let s = entity_stats(EntityKind::Alliance, 1, 1, &[&a, &b, &a]);
        assert_eq!((s.kills, s.losses, s.killmails), (1, 1, 2));
        let e = s.efficiency.unwrap();
        assert!((e - 58.44).abs() < 0.01, "{e}");
        assert_eq!(s.top_opponents[0].id, 2);
        assert_eq!(s.top_opponents[0].count, 2);
    }

    #[test]
    fn unrelated_killmails_do_not_count() {
        let a = km(1, 5, 6, 100.0);
        let s = entity_stats(EntityKind::Alliance, 1, 0, &[&a]);
        assert_eq!(s.killmails, 0);
        assert_eq!(s.efficiency, None);
    }
}
