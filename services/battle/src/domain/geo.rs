//! Static-data lookups the clustering core asks for through its traits: stargate adjacency
//! ([`SystemGraph`]) and region/security ([`SystemInfo`]).
//!
//! bs-sde exposes `neighbours(system)` but no iteration over systems, so the adjacency map is
//! built once by probing the k-space id range (30,000,000–30,199,999; wormholes, Pochven's
//! filaments and abyssal space have no gates anyway). Locations carried by the events override
//! the static data, so a system newer than the bundle still gets its region.

use std::collections::HashMap;

use bs_clustering::{AdjacencyMap, SystemGraph, SystemInfo};
use bs_sde::StaticData;
use parking_lot::RwLock;

/// (region, security status) of a system.
type Location = (Option<u32>, Option<f64>);

/// Adjacency plus region/security per system.
pub struct Geo {
    adjacency: AdjacencyMap,
    sde: Option<&'static StaticData>,
    /// (region, security status) learned from events.
    learned: RwLock<HashMap<u32, Location>>,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo")
            .field("systems_with_gates", &self.adjacency.len())
            .finish()
    }
}

impl Geo {
    /// Builds the adjacency from static data.
    pub fn from_static_data(sde: &'static StaticData) -> Self {
        let mut pairs = Vec::new();
        for s in 30_000_000i64..30_200_000 {
            for &n in sde.neighbours(s) {
                if let (Ok(a), Ok(b)) = (u32::try_from(s), u32::try_from(n))
                    && a < b
                {
                    pairs.push((a, b));
                }
            }
        }
        Self {
            adjacency: AdjacencyMap::from_pairs(pairs),
            sde: Some(sde),
            learned: RwLock::default(),
        }
    }

    /// No gates and no static data (tests of single-system behaviour).
    pub fn empty() -> Self {
        Self {
            adjacency: AdjacencyMap::default(),
            sde: None,
            learned: RwLock::default(),
        }
    }

    /// Remembers a system's location as an event described it.
    pub fn learn(&self, system: u32, region: Option<u32>, security: Option<f64>) {
        if region.is_none() && security.is_none() {
            return;
        }
        let known = self.learned.read().get(&system).copied();
        if known != Some((region, security)) {
            self.learned.write().insert(system, (region, security));
        }
    }

    /// Systems with at least one gate.
    pub fn systems_with_gates(&self) -> usize {
        self.adjacency.len()
    }
}

impl SystemGraph for Geo {
    fn neighbours(&self, system: u32) -> &[u32] {
        self.adjacency.neighbours(system)
    }
}

impl SystemInfo for Geo {
    fn region_of(&self, system: u32) -> Option<u32> {
        if let Some((Some(r), _)) = self.learned.read().get(&system) {
            return Some(*r);
        }
        self.sde?
            .system(i64::from(system))
            .and_then(|s| u32::try_from(s.region_id).ok())
    }

    fn security_status(&self, system: u32) -> Option<f64> {
        if let Some((_, Some(s))) = self.learned.read().get(&system) {
            return Some(*s);
        }
        self.sde?
            .system(i64::from(system))
            .map(|s| s.security_status)
    }
}

/// Shared form handed to the clusterer (it owns its graph).
#[derive(Clone, Debug)]
pub struct SharedGeo(pub std::sync::Arc<Geo>);

impl SystemGraph for SharedGeo {
    fn neighbours(&self, system: u32) -> &[u32] {
        self.0.neighbours(system)
    }
}
