//! Where characters stand now: `POST /characters/affiliation` through `bs-esi`, behind
//! a trait so tests and the offline demo can supply their own answers.

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::domain::gating::Affiliation;

/// The result of a lookup: what was found; missing ids were not resolvable now
/// (callers keep what they knew: a failed lookup never locks anyone out or in).
pub type Affiliations = HashMap<i64, Affiliation>;

#[async_trait]
pub trait AffiliationSource: Send + Sync + 'static {
    async fn affiliations(&self, character_ids: &[i64]) -> Affiliations;
}

/// ESI's affiliation endpoint (bulk, chunked and bisected by `bs-esi`).
pub struct EsiAffiliations(pub bs_esi::EsiClient);

#[async_trait]
impl AffiliationSource for EsiAffiliations {
    async fn affiliations(&self, character_ids: &[i64]) -> Affiliations {
        let lookup = self.0.affiliations(character_ids).await;
        if let Some(err) = &lookup.error {
            tracing::warn!(error = %err, deferred = lookup.deferred.len(), "affiliation lookup incomplete");
        }
        lookup
            .found
            .into_iter()
            .map(|a| {
                (
                    a.character_id,
                    Affiliation {
                        corporation_id: a.corporation_id,
                        alliance_id: a.alliance_id,
                    },
                )
            })
            .collect()
    }
}

/// Fixed, changeable answers (tests, `demo` without network).
#[derive(Default)]
pub struct StaticAffiliations {
    map: Mutex<HashMap<i64, Affiliation>>,
    /// When set, every lookup fails (ESI down).
    down: Mutex<bool>,
}

impl StaticAffiliations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, character_id: i64, corporation_id: i64, alliance_id: Option<i64>) {
        self.map.lock().insert(
            character_id,
            Affiliation {
                corporation_id,
                alliance_id,
            },
        );
    }

    pub fn set_down(&self, down: bool) {
        *self.down.lock() = down;
    }
}

#[async_trait]
impl AffiliationSource for StaticAffiliations {
    async fn affiliations(&self, character_ids: &[i64]) -> Affiliations {
        if *self.down.lock() {
            return Affiliations::new();
        }
        let map = self.map.lock();
        character_ids
            .iter()
            .filter_map(|id| map.get(id).map(|a| (*id, *a)))
            .collect()
    }
}

/// No source at all: nothing is ever resolved.
pub struct NoAffiliations;

#[async_trait]
impl AffiliationSource for NoAffiliations {
    async fn affiliations(&self, _: &[i64]) -> Affiliations {
        Affiliations::new()
    }
}
