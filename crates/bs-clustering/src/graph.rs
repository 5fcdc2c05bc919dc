//! Stargate adjacency as the clusterer sees it: a trait, so the battle service can back it with
//! its static data and tests with a CSV subset.

use std::collections::HashMap;

/// Which systems are one jump apart.
pub trait SystemGraph {
    /// The systems one stargate jump from `system` (empty for wormholes and unknown systems).
    fn neighbours(&self, system: u32) -> &[u32];

    /// True when `a` and `b` are one jump apart.
    fn adjacent(&self, a: u32, b: u32) -> bool {
        self.neighbours(a).contains(&b)
    }
}

/// No adjacency at all: every battle stays in one system.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAdjacency;

impl SystemGraph for NoAdjacency {
    fn neighbours(&self, _system: u32) -> &[u32] {
        &[]
    }
}

/// An adjacency list built from (from, to) jump pairs; stored symmetrically and sorted.
#[derive(Debug, Clone, Default)]
pub struct AdjacencyMap {
    map: HashMap<u32, Vec<u32>>,
}

impl AdjacencyMap {
    /// Builds the map from jump pairs in any direction; duplicates are removed.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let mut map: HashMap<u32, Vec<u32>> = HashMap::new();
        for (a, b) in pairs {
            if a == b {
                continue;
            }
            map.entry(a).or_default().push(b);
            map.entry(b).or_default().push(a);
        }
        for v in map.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
        Self { map }
    }

    /// The number of systems with at least one gate.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no pairs were given.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl SystemGraph for AdjacencyMap {
    fn neighbours(&self, system: u32) -> &[u32] {
        self.map.get(&system).map_or(&[], Vec::as_slice)
    }
}
