//! Typed ESI responses, holding only the fields BattleScope uses.
//!
//! Unknown fields are ignored, so additive ESI changes (which land in existing
//! compatibility dates) never break decoding.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::EsiError;

/// `POST /universe/names` categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameCategory {
    Alliance,
    Character,
    Constellation,
    Corporation,
    InventoryType,
    Region,
    SolarSystem,
    Station,
    Faction,
    #[serde(other)]
    Other,
}

/// One row of `POST /universe/names`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityName {
    pub id: i64,
    pub name: String,
    pub category: NameCategory,
}

/// One row of `POST /characters/affiliation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affiliation {
    pub character_id: i64,
    pub corporation_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alliance_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faction_id: Option<i64>,
}

/// The result of a bulk lookup that never fails as a whole.
///
/// `unknown` ids were isolated by bisection and ESI says they do not exist; `deferred`
/// ids could not be resolved now (ESI slow, down, out of budget) and should be retried
/// later — `error` says why.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkLookup<T> {
    pub found: Vec<T>,
    pub unknown: Vec<i64>,
    pub deferred: Vec<i64>,
    pub error: Option<EsiError>,
}

impl<T> Default for BulkLookup<T> {
    fn default() -> Self {
        Self {
            found: Vec::new(),
            unknown: Vec::new(),
            deferred: Vec::new(),
            error: None,
        }
    }
}

/// `GET /universe/types/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TypeInfo {
    pub type_id: i64,
    pub name: String,
    pub group_id: i64,
    #[serde(default)]
    pub published: bool,
}

/// `GET /universe/systems/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub system_id: i64,
    pub name: String,
    pub constellation_id: i64,
    pub security_status: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_class: Option<String>,
}

/// `GET /corporations/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Corporation {
    pub name: String,
    pub ticker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alliance_id: Option<i64>,
}

/// `GET /alliances/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alliance {
    pub name: String,
    pub ticker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_corporation_id: Option<i64>,
}

/// One row of `GET /markets/prices`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarketPrice {
    pub type_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjusted_price: Option<f64>,
}

/// `GET /status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub players: i64,
    pub server_version: String,
    pub start_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<bool>,
}
