//! The battle report: a pure function of a battle's killmails and its sides.
//!
//! Every aggregate is recomputed from the killmail rows, so a redelivered killmail (deduplicated
//! by id here) can never double-count. Attribution: a loss goes to the victim's side; a kill goes
//! to the side of the final-blow pilot (the top-damage pilot when the final blow was an NPC or a
//! structure). A kill by the victim's own side (awox) is a loss but nobody's kill.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Timelike};
use serde::{Deserialize, Serialize};

use crate::graph::{SecurityType, SystemInfo};
use crate::model::{ClusterKill, MINUTE_MS, ShipClass, TimeMs, to_datetime};
use crate::sides::Sides;

/// One ship a pilot flew (or lost) in the battle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipUse {
    pub ship_type_id: u32,
    pub group_id: u32,
    pub class: ShipClass,
    pub lost: bool,
}

/// One pilot's line in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    pub character_id: u64,
    /// Affiliation on the pilot's first killmail of the battle.
    pub corporation_id: Option<u64>,
    pub alliance_id: Option<u64>,
    pub side: Option<usize>,
    /// Every ship flown, by type id; a pilot who reships keeps both.
    pub ships: Vec<ShipUse>,
    pub lost: bool,
    pub losses: u32,
    pub kills_involved: u32,
    pub final_blows: u32,
    pub damage_dealt: u64,
    pub damage_taken: u64,
}

/// An alliance or corporation on a side with its pilot count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityCount {
    pub id: u64,
    pub pilots: u32,
}

/// Per-side aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideReport {
    pub index: usize,
    pub pilots: u32,
    /// Sorted by pilots (desc), then id.
    pub alliances: Vec<EntityCount>,
    pub corporations: Vec<EntityCount>,
    pub alliance_ids: Vec<u64>,
    pub corporation_ids: Vec<u64>,
    pub kills: u32,
    pub losses: u32,
    pub isk_destroyed: f64,
    pub isk_lost: f64,
    /// The dropped part of `isk_lost` (loot the other side could take).
    pub isk_lost_dropped: f64,
    /// `isk_destroyed / (isk_destroyed + isk_lost)`, 0 when both are 0.
    pub efficiency: f64,
    /// Distinct (pilot, ship type) pairs fielded, per class and per SDE group.
    pub fielded_by_class: BTreeMap<ShipClass, u32>,
    pub lost_by_class: BTreeMap<ShipClass, u32>,
    pub fielded_by_group: BTreeMap<u32, u32>,
    pub lost_by_group: BTreeMap<u32, u32>,
}

/// Kills and ISK in one minute, per side (index = side).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineMinute {
    pub minute_ms: TimeMs,
    pub kills: Vec<u32>,
    pub isk_destroyed: Vec<f64>,
    pub losses: Vec<u32>,
}

/// The full battle report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BattleReport {
    pub system_ids: Vec<u32>,
    /// Filled by [`BattleReport::annotate_systems`]; empty without static data.
    pub region_ids: Vec<u32>,
    pub security_types: Vec<SecurityType>,
    pub start_ms: TimeMs,
    pub end_ms: TimeMs,
    pub duration_s: i64,
    pub total_kills: u32,
    pub total_isk_destroyed: f64,
    pub total_isk_dropped: f64,
    pub pilots: u32,
    pub multi_party: bool,
    pub one_sided: bool,
    pub sides: Vec<SideReport>,
    /// Losses whose victim has no side (no affiliation at all).
    pub unassigned_losses: u32,
    /// Sorted by side, then damage dealt (desc), then character id.
    pub participants: Vec<Participant>,
    pub timeline: Vec<TimelineMinute>,
    /// Ordered by kill time, then id.
    pub killmail_ids: Vec<u64>,
    /// zKillboard related pages for every (system, hour) with kills.
    pub related_links: Vec<String>,
}

/// The zKillboard "related" URL for a system and an hour.
#[must_use]
pub fn zkb_related_link(system_id: u32, t: TimeMs) -> String {
    let d = to_datetime(t);
    format!(
        "https://zkillboard.com/related/{system_id}/{:04}{:02}{:02}{:02}00/",
        d.year(),
        d.month(),
        d.day(),
        d.hour()
    )
}

/// The side credited with a kill: the final-blow pilot's, else the top-damage pilot's.
fn credited_side(kill: &ClusterKill, sides: &Sides) -> Option<usize> {
    let players = || {
        kill.attackers
            .iter()
            .filter(|a| !a.is_npc && a.character_id.is_some())
    };
    let who = players()
        .find(|a| a.final_blow)
        .or_else(|| players().max_by_key(|a| (a.damage_done, std::cmp::Reverse(a.character_id))))?;
    sides.side_of(who.character_id, who.corporation_id, who.alliance_id)
}

#[derive(Default)]
struct SideAcc {
    pilots: BTreeSet<u64>,
    alliances: BTreeMap<u64, BTreeSet<u64>>,
    corporations: BTreeMap<u64, BTreeSet<u64>>,
    kills: u32,
    losses: u32,
    isk_destroyed: f64,
    isk_lost: f64,
    isk_lost_dropped: f64,
    /// (pilot or killmail for pilot-less victims, ship type) -> (class, group).
    fielded: BTreeMap<(u64, u32), (ShipClass, u32)>,
    lost_by_class: BTreeMap<ShipClass, u32>,
    lost_by_group: BTreeMap<u32, u32>,
}

fn counts(m: &BTreeMap<u64, BTreeSet<u64>>) -> Vec<EntityCount> {
    let mut v: Vec<EntityCount> = m
        .iter()
        .map(|(&id, p)| EntityCount {
            id,
            pilots: p.len() as u32,
        })
        .collect();
    v.sort_by(|a, b| b.pilots.cmp(&a.pilots).then(a.id.cmp(&b.id)));
    v
}

/// Builds the report of one battle from its killmails (any order, duplicates ignored).
#[must_use]
pub fn build_report(kills: &[&ClusterKill], sides: &Sides) -> BattleReport {
    let mut kills: Vec<&ClusterKill> = kills.to_vec();
    kills.sort_by_key(|k| k.key());
    kills.dedup_by_key(|k| k.killmail_id);
    let n_sides = sides.sides.len();
    let mut acc: Vec<SideAcc> = (0..n_sides).map(|_| SideAcc::default()).collect();
    let mut participants: BTreeMap<u64, Participant> = BTreeMap::new();
    let mut systems: BTreeSet<u32> = BTreeSet::new();
    let mut links: BTreeSet<(u32, TimeMs)> = BTreeSet::new();
    let mut total_isk = 0.0;
    let mut total_dropped = 0.0;
    let mut unassigned_losses = 0;
    let start = kills.first().map_or(0, |k| k.time_ms);
    let end = kills.last().map_or(0, |k| k.time_ms);
    let first_minute = start - start.rem_euclid(MINUTE_MS);
    let minutes = if kills.is_empty() {
        0
    } else {
        ((end - first_minute) / MINUTE_MS + 1) as usize
    };
    let mut timeline: Vec<TimelineMinute> = (0..minutes)
        .map(|i| TimelineMinute {
            minute_ms: first_minute + i as i64 * MINUTE_MS,
            kills: vec![0; n_sides],
            isk_destroyed: vec![0.0; n_sides],
            losses: vec![0; n_sides],
        })
        .collect();

    for k in &kills {
        systems.insert(k.system_id);
        links.insert((k.system_id, k.time_ms - k.time_ms.rem_euclid(3_600_000)));
        total_isk += k.isk_value;
        total_dropped += k.isk_dropped;
        let minute = ((k.time_ms - first_minute) / MINUTE_MS) as usize;
        let v = &k.victim;
        let victim_side = sides.side_of(v.character_id, v.corporation_id, v.alliance_id);
        match victim_side {
            Some(s) if s < n_sides => {
                let a = &mut acc[s];
                a.losses += 1;
                a.isk_lost += k.isk_value;
                a.isk_lost_dropped += k.isk_dropped;
                *a.lost_by_class.entry(v.ship.class).or_default() += 1;
                *a.lost_by_group.entry(v.ship.group_id).or_default() += 1;
                let who = v.character_id.unwrap_or(k.killmail_id);
                a.fielded
                    .insert((who, v.ship.type_id), (v.ship.class, v.ship.group_id));
                if let Some(ch) = v.character_id {
                    a.pilots.insert(ch);
                    if let Some(al) = v.alliance_id {
                        a.alliances.entry(al).or_default().insert(ch);
                    }
                    if let Some(co) = v.corporation_id {
                        a.corporations.entry(co).or_default().insert(ch);
                    }
                }
                if let Some(t) = timeline.get_mut(minute) {
                    t.losses[s] += 1;
                }
            }
            _ => unassigned_losses += 1,
        }
        if let Some(s) = credited_side(k, sides)
            && s < n_sides
            && Some(s) != victim_side
        {
            acc[s].kills += 1;
            acc[s].isk_destroyed += k.isk_value;
            if let Some(t) = timeline.get_mut(minute) {
                t.kills[s] += 1;
                t.isk_destroyed[s] += k.isk_value;
            }
        }
        if let Some(ch) = v.character_id {
            let p = participants.entry(ch).or_insert_with(|| Participant {
                character_id: ch,
                corporation_id: v.corporation_id,
                alliance_id: v.alliance_id,
                side: victim_side,
                ships: Vec::new(),
                lost: false,
                losses: 0,
                kills_involved: 0,
                final_blows: 0,
                damage_dealt: 0,
                damage_taken: 0,
            });
            p.lost = true;
            p.losses += 1;
            p.damage_taken += v.damage_taken;
            add_ship(
                &mut p.ships,
                v.ship.type_id,
                v.ship.group_id,
                v.ship.class,
                true,
            );
        }
        for at in k.attackers.iter().filter(|a| !a.is_npc) {
            let Some(ch) = at.character_id else {
                continue;
            };
            let side = sides.side_of(at.character_id, at.corporation_id, at.alliance_id);
            let p = participants.entry(ch).or_insert_with(|| Participant {
                character_id: ch,
                corporation_id: at.corporation_id,
                alliance_id: at.alliance_id,
                side,
                ships: Vec::new(),
                lost: false,
                losses: 0,
                kills_involved: 0,
                final_blows: 0,
                damage_dealt: 0,
                damage_taken: 0,
            });
            p.kills_involved += 1;
            p.damage_dealt += at.damage_done;
            p.final_blows += u32::from(at.final_blow);
            if let Some(ship) = at.ship {
                add_ship(&mut p.ships, ship.type_id, ship.group_id, ship.class, false);
            }
            if let Some(s) = side.filter(|&s| s < n_sides) {
                let a = &mut acc[s];
                a.pilots.insert(ch);
                if let Some(al) = at.alliance_id {
                    a.alliances.entry(al).or_default().insert(ch);
                }
                if let Some(co) = at.corporation_id {
                    a.corporations.entry(co).or_default().insert(ch);
                }
                if let Some(ship) = at.ship {
                    a.fielded
                        .insert((ch, ship.type_id), (ship.class, ship.group_id));
                }
            }
        }
    }

    let side_reports: Vec<SideReport> = acc
        .into_iter()
        .enumerate()
        .map(|(index, a)| {
            let mut fielded_by_class = BTreeMap::new();
            let mut fielded_by_group = BTreeMap::new();
            for &(class, group) in a.fielded.values() {
                *fielded_by_class.entry(class).or_default() += 1;
                *fielded_by_group.entry(group).or_default() += 1;
            }
            let alliances = counts(&a.alliances);
            let corporations = counts(&a.corporations);
            let denom = a.isk_destroyed + a.isk_lost;
            SideReport {
                index,
                pilots: a.pilots.len() as u32,
                alliance_ids: alliances.iter().map(|e| e.id).collect(),
                corporation_ids: corporations.iter().map(|e| e.id).collect(),
                alliances,
                corporations,
                kills: a.kills,
                losses: a.losses,
                isk_destroyed: a.isk_destroyed,
                isk_lost: a.isk_lost,
                isk_lost_dropped: a.isk_lost_dropped,
                efficiency: if denom > 0.0 {
                    a.isk_destroyed / denom
                } else {
                    0.0
                },
                fielded_by_class,
                lost_by_class: a.lost_by_class,
                fielded_by_group,
                lost_by_group: a.lost_by_group,
            }
        })
        .collect();

    let mut participants: Vec<Participant> = participants.into_values().collect();
    for p in &mut participants {
        p.ships.sort_by_key(|s| s.ship_type_id);
    }
    participants.sort_by(|a, b| {
        a.side
            .unwrap_or(usize::MAX)
            .cmp(&b.side.unwrap_or(usize::MAX))
            .then(b.damage_dealt.cmp(&a.damage_dealt))
            .then(a.character_id.cmp(&b.character_id))
    });
    BattleReport {
        system_ids: systems.into_iter().collect(),
        region_ids: Vec::new(),
        security_types: Vec::new(),
        start_ms: start,
        end_ms: end,
        duration_s: (end - start) / 1000,
        total_kills: kills.len() as u32,
        total_isk_destroyed: total_isk,
        total_isk_dropped: total_dropped,
        pilots: participants.len() as u32,
        multi_party: sides.multi_party,
        one_sided: sides.one_sided,
        sides: side_reports,
        unassigned_losses,
        participants,
        timeline,
        killmail_ids: kills.iter().map(|k| k.killmail_id).collect(),
        related_links: links
            .into_iter()
            .map(|(s, t)| zkb_related_link(s, t))
            .collect(),
    }
}

impl BattleReport {
    /// Fills the region(s) and security type(s) from static data (sorted, distinct).
    pub fn annotate_systems(&mut self, info: &impl SystemInfo) {
        let mut regions = BTreeSet::new();
        let mut kinds = BTreeSet::new();
        for &s in &self.system_ids {
            let region = info.region_of(s);
            regions.extend(region);
            if let Some(sec) = info.security_status(s) {
                kinds.insert(SecurityType::classify(s, region, sec));
            }
        }
        self.region_ids = regions.into_iter().collect();
        self.security_types = kinds.into_iter().collect();
    }
}

fn add_ship(ships: &mut Vec<ShipUse>, type_id: u32, group_id: u32, class: ShipClass, lost: bool) {
    if let Some(s) = ships.iter_mut().find(|s| s.ship_type_id == type_id) {
        s.lost |= lost;
    } else {
        ships.push(ShipUse {
            ship_type_id: type_id,
            group_id,
            class,
            lost,
        });
    }
}
