//! The ESI killmail document and zKillboard's metadata block.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A killmail exactly as ESI serves it. Unknown fields are ignored on input;
/// optional fields are omitted on output, so a round trip is faithful.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Killmail {
    pub killmail_id: i64,
    pub killmail_time: DateTime<Utc>,
    pub solar_system_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moon_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub war_id: Option<i64>,
    pub victim: Victim,
    pub attackers: Vec<Attacker>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Victim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub character_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corporation_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alliance_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faction_id: Option<i64>,
    pub ship_type_id: i64,
    pub damage_taken: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Item>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attacker {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub character_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corporation_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alliance_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faction_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_type_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weapon_type_id: Option<i64>,
    pub damage_done: i64,
    pub final_blow: bool,
    pub security_status: f64,
}

impl Attacker {
    /// NPCs usually have no character but a faction; some carry an NPC-range
    /// character id. Ranges, not just a missing id, decide.
    pub fn is_npc(&self) -> bool {
        match self.character_id {
            None => {
                self.corporation_id.is_none_or(crate::is_npc_corporation)
                    || self.faction_id.is_some()
            }
            Some(id) => crate::is_npc_character(id),
        }
    }
}

/// An item in the victim's cargo or fitting; containers nest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub item_type_id: i64,
    pub flag: i64,
    pub singleton: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity_destroyed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity_dropped: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Item>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

/// zKillboard's metadata block (R2Z2 `zkb`, RedisQ `package.zkb`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Zkb {
    #[serde(
        default,
        rename = "locationID",
        skip_serializing_if = "Option::is_none"
    )]
    pub location_id: Option<i64>,
    #[serde(default)]
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroyed_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<i64>,
    #[serde(default)]
    pub npc: bool,
    #[serde(default)]
    pub solo: bool,
    #[serde(default)]
    pub awox: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

/// Where a killmail entered BattleScope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KillmailSource {
    R2z2,
    Redisq,
    ZkbHistory,
    Everef,
    File,
}

impl KillmailSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::R2z2 => "r2z2",
            Self::Redisq => "redisq",
            Self::ZkbHistory => "zkb_history",
            Self::Everef => "everef",
            Self::File => "file",
        }
    }
}

impl Killmail {
    /// zKillboard's page for this killmail.
    pub fn zkillboard_url(&self) -> String {
        format!("https://zkillboard.com/kill/{}/", self.killmail_id)
    }

    /// Distinct player characters on the mail (victim and attackers).
    pub fn pilot_count(&self) -> usize {
        let mut ids: Vec<i64> = self
            .attackers
            .iter()
            .filter(|a| !a.is_npc())
            .filter_map(|a| a.character_id)
            .chain(self.victim.character_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = r#"{"attackers":[{"alliance_id":386292982,"character_id":1370443714,"corporation_id":1089040789,"damage_done":536,"final_blow":true,"security_status":-1.5,"ship_type_id":35683,"weapon_type_id":3178},{"alliance_id":386292982,"corporation_id":1089040789,"damage_done":0,"final_blow":false,"security_status":0,"ship_type_id":26888}],"killmail_id":96977835,"killmail_time":"2021-11-27T20:43:47Z","solar_system_id":30002355,"victim":{"character_id":2119401469,"corporation_id":1000170,"damage_taken":536,"items":[{"flag":19,"item_type_id":21857,"quantity_destroyed":1,"singleton":0},{"flag":27,"item_type_id":3636,"quantity_dropped":1,"singleton":0}],"position":{"x":-2571634012388.994,"y":-173567138143.29782,"z":581899803899.1661},"ship_type_id":588},"killmail_hash":"b2e5daacc5ac754ad9c32c02c6fbacee16126aef"}"#;

    #[test]
    fn parses_a_real_everef_killmail() {
        let km: Killmail = serde_json::from_str(REAL).unwrap();
        assert_eq!(km.killmail_id, 96_977_835);
        assert_eq!(km.attackers.len(), 2);
        assert_eq!(km.victim.items.len(), 2);
        // The second attacker is a player structure/drone without a character, in a player corp.
        assert!(!km.attackers[1].is_npc());
        assert_eq!(km.pilot_count(), 2);
        let back: Killmail = serde_json::from_str(&serde_json::to_string(&km).unwrap()).unwrap();
        assert_eq!(back, km);
    }

    #[test]
    fn npc_attackers_are_detected_by_range() {
        let npc = Attacker {
            character_id: Some(3_019_582),
            corporation_id: Some(1_000_274),
            alliance_id: None,
            faction_id: Some(500_024),
            ship_type_id: None,
            weapon_type_id: None,
            damage_done: 10,
            final_blow: true,
            security_status: 0.0,
        };
        assert!(npc.is_npc());
        let rat = Attacker {
            character_id: None,
            corporation_id: Some(1_000_125),
            ..npc.clone()
        };
        assert!(rat.is_npc());
    }
}
