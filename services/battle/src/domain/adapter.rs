//! The edge mapping: a `killmail.enriched` payload becomes a [`ClusterKill`] (what clustering,
//! sides and reports need) plus the few location fields and names the service stores.
//!
//! Ship classes come from `bs_clustering::ShipClass::from_group` on the SDE group and category
//! the event carries, so reports use the clustering core's classes consistently (the event's
//! own `class` string follows bs-sde's table, which differs in a few groups).

use bs_clustering::{ClusterAttacker, ClusterKill, ClusterVictim, Ship, ShipClass};
use bs_events::{Affiliation, EnrichedShip, KillmailEnriched};
use serde::{Deserialize, Serialize};

/// A killmail as the battle service keeps it (one compact JSON row per killmail).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredKill {
    pub kill: ClusterKill,
    /// The enrichment revision; a re-published payload with a higher one replaces the row.
    pub revision: u32,
    pub region_id: Option<u32>,
    pub security_status: Option<f64>,
    /// `highsec` | `lowsec` | `nullsec` | `wormhole` | `pochven` | `abyssal`.
    pub security_type: Option<String>,
}

/// A name learned from an event: `kind` is `character`, `corporation`, `alliance`, `faction`,
/// `type`, `system` or `region`. It carries the killmail and enrichment revision it came
/// from: the store takes names only from killmail rows it really wrote (new, or a higher
/// revision: late-resolved names arrive that way), so an older redelivery never undoes them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NameRow {
    pub kind: &'static str,
    pub id: i64,
    pub name: String,
    pub killmail_id: u64,
    pub revision: u32,
}

/// Why an event cannot be used (counted, never a crash).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("id out of range: {0}")]
    IdOutOfRange(&'static str),
}

fn uid(v: Option<i64>) -> Option<u64> {
    v.and_then(|x| u64::try_from(x).ok()).filter(|&x| x > 0)
}

fn ship(s: &EnrichedShip) -> Ship {
    let group = s.group_id.and_then(|g| u32::try_from(g).ok()).unwrap_or(0);
    let category = s
        .category_id
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(0);
    Ship {
        type_id: u32::try_from(s.type_id).unwrap_or(0),
        group_id: group,
        class: if group == 0 && category == 0 {
            ShipClass::Other
        } else {
            ShipClass::from_group(group, category)
        },
    }
}

fn names_of(who: &Affiliation, out: &mut Vec<NameRow>) {
    let mut add = |kind: &'static str, id: Option<i64>, name: &Option<String>| {
        if let (Some(id), Some(name)) = (id, name) {
            out.push(NameRow {
                kind,
                id,
                name: name.clone(),
                killmail_id: 0,
                revision: 0,
            });
        }
    };
    add("character", who.character_id, &who.character_name);
    add("corporation", who.corporation_id, &who.corporation_name);
    add("alliance", who.alliance_id, &who.alliance_name);
    add("faction", who.faction_id, &who.faction_name);
}

/// Maps one enriched killmail; also returns every name it carries.
pub fn from_enriched(e: &KillmailEnriched) -> Result<(StoredKill, Vec<NameRow>), Rejection> {
    let killmail_id = uid(Some(e.killmail_id)).ok_or(Rejection::IdOutOfRange("killmail_id"))?;
    let system_id = u32::try_from(e.system.id).map_err(|_| Rejection::IdOutOfRange("system"))?;
    let mut names = Vec::new();
    names_of(&e.victim.who, &mut names);
    let victim = ClusterVictim {
        character_id: uid(e.victim.who.character_id),
        corporation_id: uid(e.victim.who.corporation_id),
        alliance_id: uid(e.victim.who.alliance_id),
        ship: ship(&e.victim.ship),
        damage_taken: u64::try_from(e.victim.damage_taken).unwrap_or(0),
    };
    let push_type = |s: &EnrichedShip, names: &mut Vec<NameRow>| {
        if let Some(n) = &s.type_name {
            names.push(NameRow {
                kind: "type",
                id: s.type_id,
                name: n.clone(),
                killmail_id: 0,
                revision: 0,
            });
        }
    };
    push_type(&e.victim.ship, &mut names);
    let attackers = e
        .attackers
        .iter()
        .map(|a| {
            names_of(&a.who, &mut names);
            if let Some(s) = &a.ship {
                push_type(s, &mut names);
            }
            ClusterAttacker {
                character_id: uid(a.who.character_id),
                corporation_id: uid(a.who.corporation_id),
                alliance_id: uid(a.who.alliance_id),
                ship: a.ship.as_ref().map(ship),
                damage_done: u64::try_from(a.damage_done).unwrap_or(0),
                final_blow: a.final_blow,
                is_npc: a.is_npc,
            }
        })
        .collect();
    if let Some(n) = &e.system.name {
        names.push(NameRow {
            kind: "system",
            id: e.system.id,
            name: n.clone(),
            killmail_id: 0,
            revision: 0,
        });
    }
    if let (Some(id), Some(n)) = (e.system.region_id, &e.system.region_name) {
        names.push(NameRow {
            kind: "region",
            id,
            name: n.clone(),
            killmail_id: 0,
            revision: 0,
        });
    }
    names.sort();
    names.dedup();
    for n in &mut names {
        n.killmail_id = killmail_id;
        n.revision = e.revision;
    }
    let kill = ClusterKill {
        killmail_id,
        time_ms: e.killmail_time.timestamp_millis(),
        system_id,
        victim,
        attackers,
        isk_value: if e.isk.total.is_finite() {
            e.isk.total.max(0.0)
        } else {
            0.0
        },
        isk_dropped: if e.isk.dropped.is_finite() {
            e.isk.dropped.max(0.0)
        } else {
            0.0
        },
    };
    Ok((
        StoredKill {
            kill,
            revision: e.revision,
            region_id: e.system.region_id.and_then(|r| u32::try_from(r).ok()),
            security_status: e.system.security_status,
            security_type: e.system.security_type.clone(),
        },
        names,
    ))
}
