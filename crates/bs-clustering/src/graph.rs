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

/// Region and security of systems, for the report's region(s) and security type(s).
pub trait SystemInfo {
    /// The region of a system.
    fn region_of(&self, system: u32) -> Option<u32>;
    /// The raw SDE security status of a system.
    fn security_status(&self, system: u32) -> Option<f64>;
}

/// The five kinds of space a battle can be in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SecurityType {
    Highsec,
    Lowsec,
    Nullsec,
    Wormhole,
    Pochven,
}

/// Pochven's region id.
pub const POCHVEN_REGION: u32 = 10_000_070;

impl SecurityType {
    /// Classifies a system: J-space by id (31xxxxxx), Pochven by region, else by the security
    /// status rounded as the game shows it (to one decimal, but anything in (0, 0.05) shows as
    /// 0.1, i.e. lowsec).
    #[must_use]
    pub fn classify(system_id: u32, region_id: Option<u32>, security: f64) -> Self {
        if (31_000_000..32_000_000).contains(&system_id) {
            return Self::Wormhole;
        }
        if region_id == Some(POCHVEN_REGION) {
            return Self::Pochven;
        }
        let shown = if security > 0.0 && security < 0.05 {
            0.1
        } else {
            (security * 10.0).round() / 10.0
        };
        if shown >= 0.5 {
            Self::Highsec
        } else if shown > 0.0 {
            Self::Lowsec
        } else {
            Self::Nullsec
        }
    }
}
