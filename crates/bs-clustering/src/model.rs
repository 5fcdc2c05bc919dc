//! The input model: the minimal, already-enriched view of a killmail that clustering, side
//! assignment and reports need.
//!
//! It deliberately does not depend on any other BattleScope crate: the battle service converts
//! its enriched killmail into a [`ClusterKill`] at the edge. Times are milliseconds since the
//! Unix epoch (UTC) of the *kill*, never of arrival.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type TimeMs = i64;

/// One minute in milliseconds.
pub const MINUTE_MS: TimeMs = 60_000;

/// Converts a kill time to chrono, for presentation.
#[must_use]
pub fn to_datetime(t: TimeMs) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A coarse ship class, for "ships fielded/lost per class" and for display. Finer detail is
/// kept in the group id next to it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum ShipClass {
    Capsule,
    Shuttle,
    Corvette,
    Frigate,
    Destroyer,
    Cruiser,
    Logistics,
    Battlecruiser,
    Battleship,
    Capital,
    Supercapital,
    Industrial,
    Mining,
    Structure,
    Deployable,
    Fighter,
    Drone,
    #[default]
    Other,
}

impl ShipClass {
    /// Maps an SDE group id (and its category id) to a class. Unknown groups fall back on the
    /// category (structures, deployables, fighters, drones), then on `Other`.
    #[must_use]
    pub fn from_group(group_id: u32, category_id: u32) -> Self {
        match group_id {
            29 => Self::Capsule,
            31 => Self::Shuttle,
            237 => Self::Corvette,
            25 | 324 | 830 | 831 | 834 | 893 | 1022 | 1283 => Self::Frigate,
            420 | 541 | 1305 | 1534 => Self::Destroyer,
            26 | 358 | 833 | 894 | 906 | 963 | 1972 => Self::Cruiser,
            832 | 1527 => Self::Logistics,
            419 | 540 | 1201 => Self::Battlecruiser,
            27 | 898 | 900 => Self::Battleship,
            485 | 547 | 883 | 1538 | 4594 => Self::Capital,
            30 | 659 => Self::Supercapital,
            28 | 380 | 513 | 902 | 941 | 1202 => Self::Industrial,
            463 | 543 => Self::Mining,
            _ => match category_id {
                65 | 23 | 40 | 39 => Self::Structure,
                22 => Self::Deployable,
                87 => Self::Fighter,
                18 => Self::Drone,
                _ => Self::Other,
            },
        }
    }
}

/// The ship a victim lost or an attacker flew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Ship {
    pub type_id: u32,
    /// SDE group id; 0 when unknown.
    pub group_id: u32,
    pub class: ShipClass,
}

/// The victim of a killmail. Affiliation is as of kill time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClusterVictim {
    pub character_id: Option<u64>,
    pub corporation_id: Option<u64>,
    pub alliance_id: Option<u64>,
    pub ship: Ship,
    pub damage_taken: u64,
}

/// One attacker line of a killmail. Affiliation is as of kill time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClusterAttacker {
    pub character_id: Option<u64>,
    pub corporation_id: Option<u64>,
    pub alliance_id: Option<u64>,
    /// None for some structures and NPCs.
    pub ship: Option<Ship>,
    pub damage_done: u64,
    pub final_blow: bool,
    /// An NPC (no character and an NPC corporation, or a faction only). Player structures are not
    /// NPCs, but they have no pilot either.
    pub is_npc: bool,
}

/// The minimal killmail that clustering, sides and reports need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClusterKill {
    pub killmail_id: u64,
    /// Kill time, ms since the epoch (UTC).
    pub time_ms: TimeMs,
    pub system_id: u32,
    pub victim: ClusterVictim,
    pub attackers: Vec<ClusterAttacker>,
    /// Total value destroyed + dropped (zKillboard `totalValue`), ISK.
    pub isk_value: f64,
    /// The dropped part of `isk_value`, ISK.
    pub isk_dropped: f64,
}

/// EVE's NPC corporations live in 1,000,000..2,000,000.
#[must_use]
pub fn is_npc_corporation(corporation_id: u64) -> bool {
    (1_000_000..2_000_000).contains(&corporation_id)
}

impl ClusterKill {
    /// True when at least one attacker is a player character. Kills without one (NPCs,
    /// structures alone) never seed or extend a battle by default.
    #[must_use]
    pub fn has_player_attacker(&self) -> bool {
        self.attackers
            .iter()
            .any(|a| a.character_id.is_some() && !a.is_npc)
    }

    /// The distinct player characters on the mail (victim and attackers), sorted.
    #[must_use]
    pub fn pilots(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .attackers
            .iter()
            .filter(|a| !a.is_npc)
            .filter_map(|a| a.character_id)
            .chain(self.victim.character_id)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The killmail's ordering key: kill time, then id. Used wherever "earliest" or "older" must
    /// be total and deterministic.
    #[must_use]
    pub fn key(&self) -> (TimeMs, u64) {
        (self.time_ms, self.killmail_id)
    }
}
