//! A helper that turns an ESI-format killmail (`/killmails/{id}/{hash}/`, optionally with a
//! zKillboard `zkb` block) into a [`ClusterKill`].
//!
//! Static data comes through the [`TypeInfo`] trait so this crate needs no SDE crate; the battle
//! service implements it over its static data, tests over a tiny CSV subset. Bad input is a
//! typed rejection, never a panic.

use chrono::DateTime;
use serde_json::Value;

use crate::model::{
    ClusterAttacker, ClusterKill, ClusterVictim, Ship, ShipClass, is_npc_corporation,
};

/// Static data lookups the adapter needs.
pub trait TypeInfo {
    /// (group id, category id) of a type, if known.
    fn group_of(&self, type_id: u32) -> Option<(u32, u32)>;
    /// An estimated unit price, used only when the mail has no `zkb.totalValue`.
    fn price(&self, _type_id: u32) -> Option<f64> {
        None
    }
}

/// Why a JSON value is not a usable killmail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsiRejection {
    MissingField(&'static str),
    BadTime(String),
}

impl std::fmt::Display for EsiRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingField(name) => write!(f, "missing field {name}"),
            Self::BadTime(t) => write!(f, "bad killmail_time {t}"),
        }
    }
}

impl std::error::Error for EsiRejection {}

fn u64_field(v: &Value, name: &str) -> Option<u64> {
    v.get(name).and_then(Value::as_u64)
}

fn ship(type_id: u32, types: &impl TypeInfo) -> Ship {
    let (group_id, category_id) = types.group_of(type_id).unwrap_or((0, 0));
    Ship {
        type_id,
        group_id,
        class: ShipClass::from_group(group_id, category_id),
    }
}

/// Sums (destroyed + dropped, dropped) item value recursively (containers hold items).
fn item_values(items: &[Value], types: &impl TypeInfo) -> (f64, f64) {
    let mut total = 0.0;
    let mut dropped = 0.0;
    for item in items {
        let Some(type_id) = u64_field(item, "item_type_id") else {
            continue;
        };
        let price = u32::try_from(type_id)
            .ok()
            .and_then(|t| types.price(t))
            .unwrap_or(0.0);
        let d = u64_field(item, "quantity_dropped").unwrap_or(0) as f64;
        let x = u64_field(item, "quantity_destroyed").unwrap_or(0) as f64;
        total += price * (d + x);
        dropped += price * d;
        if let Some(inner) = item.get("items").and_then(Value::as_array) {
            let (t, dr) = item_values(inner, types);
            total += t;
            dropped += dr;
        }
    }
    (total, dropped)
}

/// Converts one ESI killmail. Accepts both a bare ESI killmail and zKillboard/R2Z2 shapes where
/// the ESI part sits under `killmail` or `esi` next to a `zkb` block.
pub fn from_esi_json(v: &Value, types: &impl TypeInfo) -> Result<ClusterKill, EsiRejection> {
    let zkb = v.get("zkb");
    let km = v.get("esi").or_else(|| v.get("killmail")).unwrap_or(v);
    let killmail_id =
        u64_field(km, "killmail_id").ok_or(EsiRejection::MissingField("killmail_id"))?;
    let time = km
        .get("killmail_time")
        .and_then(Value::as_str)
        .ok_or(EsiRejection::MissingField("killmail_time"))?;
    let time_ms = DateTime::parse_from_rfc3339(time)
        .map_err(|_| EsiRejection::BadTime(time.to_owned()))?
        .timestamp_millis();
    let system_id = u64_field(km, "solar_system_id")
        .and_then(|s| u32::try_from(s).ok())
        .ok_or(EsiRejection::MissingField("solar_system_id"))?;
    let victim = km
        .get("victim")
        .ok_or(EsiRejection::MissingField("victim"))?;
    let victim_type = u64_field(victim, "ship_type_id")
        .and_then(|s| u32::try_from(s).ok())
        .ok_or(EsiRejection::MissingField("victim.ship_type_id"))?;
    let victim_ship = ship(victim_type, types);
    let attackers = km
        .get("attackers")
        .and_then(Value::as_array)
        .ok_or(EsiRejection::MissingField("attackers"))?
        .iter()
        .map(|a| {
            let character_id = u64_field(a, "character_id");
            let corporation_id = u64_field(a, "corporation_id");
            ClusterAttacker {
                character_id,
                corporation_id,
                alliance_id: u64_field(a, "alliance_id"),
                ship: u64_field(a, "ship_type_id")
                    .and_then(|s| u32::try_from(s).ok())
                    .map(|t| ship(t, types)),
                damage_done: u64_field(a, "damage_done").unwrap_or(0),
                final_blow: a
                    .get("final_blow")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                is_npc: character_id.is_none() && corporation_id.is_none_or(is_npc_corporation),
            }
        })
        .collect();
    let (isk_value, isk_dropped) = match zkb
        .and_then(|z| z.get("totalValue"))
        .and_then(Value::as_f64)
    {
        Some(total) => (
            total,
            zkb.and_then(|z| z.get("droppedValue"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
        ),
        None => {
            let hull = types.price(victim_type).unwrap_or(0.0);
            let items = victim
                .get("items")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            let (t, d) = item_values(items, types);
            (hull + t, d)
        }
    };
    Ok(ClusterKill {
        killmail_id,
        time_ms,
        system_id,
        victim: ClusterVictim {
            character_id: u64_field(victim, "character_id"),
            corporation_id: u64_field(victim, "corporation_id"),
            alliance_id: u64_field(victim, "alliance_id"),
            ship: victim_ship,
            damage_taken: u64_field(victim, "damage_taken").unwrap_or(0),
        },
        attackers,
        isk_value,
        isk_dropped,
    })
}
