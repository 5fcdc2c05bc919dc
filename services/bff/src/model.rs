//! Local read models of the services' JSON answers.
//!
//! Deliberately lenient (`#[serde(default)]` everywhere): the services evolve, and a missing or
//! new field must degrade a page, never break it. The JSON API passes the services' own JSON
//! through unchanged; these types are only what the HTML pages read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A battle as listed (`bs_events::BattleSnapshot`, read leniently).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct BattleRow {
    pub battle_id: i64,
    pub status: String,
    pub merged_into: Option<i64>,
    pub system_ids: Vec<i64>,
    pub region_ids: Vec<i64>,
    pub security_types: Vec<String>,
    pub start_time: String,
    pub end_time: String,
    pub total_kills: u32,
    pub total_isk_destroyed: f64,
    pub pilots: u32,
    pub multi_party: bool,
    pub one_sided: bool,
    pub sides: Vec<SideSummary>,
    pub revision: u64,
    /// Aligned with `system_ids` / `region_ids`; `None` where the battle service has no name.
    pub system_names: Vec<Option<String>>,
    pub region_names: Vec<Option<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SideSummary {
    pub index: u32,
    pub pilots: u32,
    pub kills: u32,
    pub losses: u32,
    pub isk_destroyed: f64,
    pub isk_lost: f64,
    pub alliance_ids: Vec<i64>,
    pub corporation_ids: Vec<i64>,
    /// Aligned with `alliance_ids` / `corporation_ids`; `None` where the name is unknown.
    pub alliance_names: Vec<Option<String>>,
    pub corporation_names: Vec<Option<String>>,
}

impl SideSummary {
    /// The side's main entity: its first alliance, else its first corporation, with the name
    /// the battle service sent (`None`: unknown) — `(kind, id, name)`.
    pub fn main_entity(&self) -> Option<(&'static str, i64, Option<&str>)> {
        if let Some(&a) = self.alliance_ids.first() {
            return Some((
                "alliance",
                a,
                self.alliance_names.first().and_then(|n| n.as_deref()),
            ));
        }
        self.corporation_ids.first().map(|&c| {
            (
                "corporation",
                c,
                self.corporation_names.first().and_then(|n| n.as_deref()),
            )
        })
    }
}

/// `GET /battles` of the battle service.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct BattlePage {
    pub battles: Vec<BattleRow>,
    pub next_cursor: Option<String>,
}

/// The full report of `GET /battles/{id}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Report {
    pub id: i64,
    pub status: String,
    pub system_ids: Vec<i64>,
    pub region_ids: Vec<i64>,
    pub security_types: Vec<String>,
    pub start_time: String,
    pub end_time: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub duration_s: i64,
    pub total_kills: u32,
    pub total_isk_destroyed: f64,
    pub total_isk_dropped: f64,
    pub pilots: u32,
    pub multi_party: bool,
    pub one_sided: bool,
    pub sides: Vec<Side>,
    pub unassigned_losses: u32,
    pub participants: Vec<Participant>,
    pub timeline: Vec<Minute>,
    pub killmail_ids: Vec<i64>,
    pub related_links: Vec<String>,
    pub revision: u64,
    /// kind (`character`, `corporation`, `alliance`, `type`, `system`, `region`) → id → name.
    pub names: BTreeMap<String, BTreeMap<String, String>>,
}

impl Report {
    /// A name from the report's name table.
    pub fn name(&self, kind: &str, id: i64) -> Option<&str> {
        self.names
            .get(kind)
            .and_then(|m| m.get(&id.to_string()))
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct EntityCount {
    pub id: i64,
    pub pilots: u32,
    /// Sent inline by the battle service (`None`: unknown).
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Side {
    pub index: usize,
    pub pilots: u32,
    pub alliances: Vec<EntityCount>,
    pub corporations: Vec<EntityCount>,
    pub alliance_ids: Vec<i64>,
    pub corporation_ids: Vec<i64>,
    pub kills: u32,
    pub losses: u32,
    pub isk_destroyed: f64,
    pub isk_lost: f64,
    pub isk_lost_dropped: f64,
    /// 0..1.
    pub efficiency: f64,
    pub fielded_by_class: BTreeMap<String, u32>,
    pub lost_by_class: BTreeMap<String, u32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ShipUse {
    pub ship_type_id: i64,
    pub group_id: i64,
    pub class: String,
    pub lost: bool,
    pub ship_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Participant {
    pub character_id: i64,
    pub corporation_id: Option<i64>,
    pub alliance_id: Option<i64>,
    /// Names sent inline by the battle service (`None`: unknown).
    pub character_name: Option<String>,
    pub corporation_name: Option<String>,
    pub alliance_name: Option<String>,
    pub side: Option<usize>,
    pub ships: Vec<ShipUse>,
    pub lost: bool,
    pub losses: u32,
    pub kills_involved: u32,
    pub final_blows: u32,
    pub damage_dealt: u64,
    pub damage_taken: u64,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Minute {
    pub minute_ms: i64,
    pub kills: Vec<u32>,
    pub isk_destroyed: Vec<f64>,
    pub losses: Vec<u32>,
}

/// An enriched killmail (`GET /killmails/{id}` of enrichment), the fields pages read.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Killmail {
    pub killmail_id: i64,
    pub killmail_time: String,
    pub ship_type_id: i64,
    pub ship_type_name: Option<String>,
    pub ship_group_name: Option<String>,
    pub ship_class: Option<String>,
    pub system_id: i64,
    pub system_name: Option<String>,
    pub region_id: Option<i64>,
    pub region_name: Option<String>,
    pub security_display: Option<f64>,
    pub security_type: Option<String>,
    pub isk_total: Option<f64>,
    pub victim: Victim,
    pub attackers: Vec<Attacker>,
}

/// Who: the flattened affiliation of a victim or attacker.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Victim {
    pub character_id: Option<i64>,
    pub character_name: Option<String>,
    pub corporation_id: Option<i64>,
    pub corporation_name: Option<String>,
    pub alliance_id: Option<i64>,
    pub alliance_name: Option<String>,
    pub damage_taken: i64,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Attacker {
    pub character_id: Option<i64>,
    pub character_name: Option<String>,
    pub corporation_id: Option<i64>,
    pub corporation_name: Option<String>,
    pub alliance_id: Option<i64>,
    pub alliance_name: Option<String>,
    pub damage_done: i64,
    pub final_blow: bool,
    pub ship: Option<ShipRef>,
}

/// An attacker's ship as the enriched killmail carries it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ShipRef {
    pub type_id: i64,
    pub type_name: Option<String>,
    pub class: Option<String>,
}

/// `GET /killmails?ids=` of enrichment.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct KillmailBulk {
    pub killmails: Vec<Killmail>,
    pub missing: Vec<i64>,
}
