//! What the enrichment knows at a given moment: the SDE, types and systems ESI told it
//! about, resolved names and market prices — borrowed, so building one per batch is free.

use std::collections::HashMap;

use bs_sde::{MarketPrices, StaticData};
use serde::{Deserialize, Serialize};

/// A type the bundled SDE does not have, as `GET /universe/types/{id}` described it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraType {
    pub name: String,
    pub group_id: i64,
}

/// A system the bundled SDE does not have, as `GET /universe/systems/{id}` described it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtraSystem {
    pub name: String,
    pub constellation_id: i64,
    pub security_status: f64,
}

/// What is known about a character, corporation or alliance name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameState<'a> {
    Known(&'a str),
    /// ESI says the id does not exist (cached so it is not asked again soon).
    DoesNotExist,
    /// Not resolved yet.
    Missing,
}

/// Resolved names: `Some(name)`, or `None` for ids ESI says do not exist.
pub trait NameBook: Sync {
    fn get(&self, id: i64) -> NameState<'_>;
}

impl NameBook for HashMap<i64, Option<String>> {
    fn get(&self, id: i64) -> NameState<'_> {
        match HashMap::get(self, &id) {
            Some(Some(name)) => NameState::Known(name),
            Some(None) => NameState::DoesNotExist,
            None => NameState::Missing,
        }
    }
}

/// Everything [`super::enrich`] reads.
pub struct Catalog<'a> {
    pub sde: &'a StaticData,
    /// Types fetched from ESI; `None`: ESI says the type does not exist.
    pub extra_types: &'a HashMap<i64, Option<ExtraType>>,
    /// Systems fetched from ESI; `None`: ESI says the system does not exist.
    pub extra_systems: &'a HashMap<i64, Option<ExtraSystem>>,
    pub names: &'a dyn NameBook,
    pub prices: &'a MarketPrices,
}

impl Catalog<'_> {
    pub(crate) fn extra_type(&self, id: i64) -> Option<&ExtraType> {
        self.extra_types.get(&id).and_then(Option::as_ref)
    }

    pub(crate) fn is_known_unknown_type(&self, id: i64) -> bool {
        matches!(self.extra_types.get(&id), Some(None))
    }

    pub(crate) fn system(&self, id: i64) -> Option<&ExtraSystem> {
        self.extra_systems.get(&id).and_then(Option::as_ref)
    }

    pub(crate) fn is_known_unknown_system(&self, id: i64) -> bool {
        matches!(self.extra_systems.get(&id), Some(None))
    }

    /// NPC corporations are in the SDE: no ESI call for them.
    pub(crate) fn npc_corporation_name(&self, id: i64) -> Option<&str> {
        self.sde.npc_corporation(id).map(|c| c.name.as_str())
    }
}
