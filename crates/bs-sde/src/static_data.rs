//! The loaded, indexed static data and every lookup the services need.
//!
//! Built once from a [`Bundle`]: hash maps by id, system records denormalised with their
//! constellation and region names and their [`SecurityType`], and a sorted adjacency list for
//! the stargate graph. All lookups are `&self`, allocation-free and return `None` for unknown
//! or out-of-range ids (the caller falls back to ESI), never panic.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
#[cfg(feature = "embedded")]
use std::sync::OnceLock;

use crate::bundle::{Bundle, TABLES};
use crate::error::Result;
use crate::security::{SecurityType, rounded_security, security_type};
use crate::ship_class::{GROUP_CAPSULE, STRUCTURE_CATEGORIES, ShipClass, ship_class_for};

/// An inventory type (ship, module, charge, structure ...).
#[derive(Debug, Clone, PartialEq)]
pub struct TypeInfo {
    pub id: i64,
    pub name: String,
    pub group_id: i64,
    pub published: bool,
}

/// An inventory group, e.g. 26 "Cruiser".
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    pub id: i64,
    pub name: String,
    pub category_id: i64,
    pub published: bool,
}

/// An inventory category, e.g. 6 "Ship".
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryInfo {
    pub id: i64,
    pub name: String,
    pub published: bool,
}

/// A solar system with everything a killmail reader shows about its location.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemInfo {
    pub id: i64,
    pub name: String,
    pub constellation_id: i64,
    pub constellation_name: String,
    pub region_id: i64,
    pub region_name: String,
    /// The true security status from the SDE (full precision).
    pub security_status: f64,
    /// The security status as EVE displays it (one decimal, see [`rounded_security`]).
    pub rounded_security: f64,
    pub security_type: SecurityType,
    /// The SDE's `securityClass` letter code, when present (meaning undocumented by CCP).
    pub security_class: Option<String>,
}

/// A constellation.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstellationInfo {
    pub id: i64,
    pub name: String,
    pub region_id: i64,
}

/// A region.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionInfo {
    pub id: i64,
    pub name: String,
    pub faction_id: Option<i64>,
}

/// An NPC faction (500000..599999), e.g. 500001 "Caldari State".
#[derive(Debug, Clone, PartialEq)]
pub struct FactionInfo {
    pub id: i64,
    pub name: String,
    /// The faction's executive NPC corporation.
    pub corporation_id: Option<i64>,
}

/// An NPC corporation (1000000..1999999).
#[derive(Debug, Clone, PartialEq)]
pub struct NpcCorporationInfo {
    pub id: i64,
    pub name: String,
    pub ticker: String,
    pub faction_id: Option<i64>,
}

/// Counts of what a [`StaticData`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticDataStats {
    pub types: usize,
    pub groups: usize,
    pub categories: usize,
    pub systems: usize,
    pub constellations: usize,
    pub regions: usize,
    /// Undirected stargate links.
    pub jumps: usize,
    pub factions: usize,
    pub npc_corporations: usize,
}

/// The static data, indexed. Cheap to share by reference; immutable once built.
#[derive(Debug)]
pub struct StaticData {
    types: HashMap<i64, TypeInfo>,
    groups: HashMap<i64, GroupInfo>,
    categories: HashMap<i64, CategoryInfo>,
    systems: HashMap<i64, SystemInfo>,
    constellations: HashMap<i64, ConstellationInfo>,
    regions: HashMap<i64, RegionInfo>,
    /// Sorted neighbour lists; only systems with at least one gate have an entry.
    adjacency: HashMap<i64, Vec<i64>>,
    jumps: usize,
    factions: HashMap<i64, FactionInfo>,
    npc_corporations: HashMap<i64, NpcCorporationInfo>,
    version: String,
    source: String,
}

#[cfg(feature = "embedded")]
mod embedded {
    //! The bundle compiled into the binary (data/sde at build time).
    macro_rules! sde_file {
        ($name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../data/sde/",
                $name
            ))
        };
    }
    pub(super) const MANIFEST: &[u8] = sde_file!("manifest.json");
    /// In the order of `bundle::TABLES`.
    pub(super) const TABLES: [&[u8]; 9] = [
        sde_file!("types.tsv.gz"),
        sde_file!("groups.tsv.gz"),
        sde_file!("categories.tsv.gz"),
        sde_file!("regions.tsv.gz"),
        sde_file!("constellations.tsv.gz"),
        sde_file!("systems.tsv.gz"),
        sde_file!("jumps.tsv.gz"),
        sde_file!("factions.tsv.gz"),
        sde_file!("npc_corporations.tsv.gz"),
    ];
}

impl StaticData {
    /// The bundle embedded in the binary, decoded on first use and shared afterwards.
    ///
    /// # Panics
    /// Only if the embedded bundle is damaged, which the crate's tests rule out for every build
    /// (the data is compiled in, so it cannot change at run time).
    #[cfg(feature = "embedded")]
    pub fn bundled() -> &'static StaticData {
        static DATA: OnceLock<StaticData> = OnceLock::new();
        DATA.get_or_init(|| {
            Self::decode_embedded()
                .unwrap_or_else(|e| panic!("embedded static data bundle is damaged: {e}"))
        })
    }

    /// Decodes the embedded bundle afresh (no caching); for measuring load time.
    #[cfg(feature = "embedded")]
    pub fn decode_embedded() -> Result<StaticData> {
        debug_assert_eq!(embedded::TABLES.len(), TABLES.len());
        let (bundle, hash) = Bundle::decode(embedded::MANIFEST, &embedded::TABLES)?;
        Ok(Self::from_bundle_with_hash(bundle, hash))
    }

    /// Loads a bundle directory (as written by [`Bundle::write_dir`], e.g. by
    /// `battlescope sde import`), to use instead of the embedded one.
    pub fn load_dir(dir: &Path) -> Result<StaticData> {
        let read = |name: &str| -> Result<Vec<u8>> {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    crate::Error::MissingFile(path.display().to_string())
                } else {
                    crate::Error::io(path, e)
                }
            })
        };
        let manifest = read(crate::bundle::MANIFEST)?;
        let files = TABLES
            .iter()
            .map(|t| read(t.file))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
        let (bundle, hash) = Bundle::decode(&manifest, &refs)?;
        Ok(Self::from_bundle_with_hash(bundle, hash))
    }

    /// Indexes an in-memory bundle (e.g. straight from an importer).
    pub fn from_bundle(mut bundle: Bundle) -> StaticData {
        bundle.normalise();
        // Hash the same bytes a written bundle would carry, so the version does not depend
        // on whether the data went through a directory first.
        let mut dir_hash = crate::bundle::Fnv64::new();
        for t in TABLES {
            dir_hash.write(t.file.as_bytes());
            dir_hash.write(bundle.table_text(t).as_bytes());
        }
        let hash = dir_hash.finish();
        Self::from_bundle_with_hash(bundle, hash)
    }

    fn from_bundle_with_hash(b: Bundle, hash: u64) -> StaticData {
        let regions: HashMap<i64, RegionInfo> = b
            .regions
            .into_iter()
            .map(|r| {
                (
                    r.id,
                    RegionInfo {
                        id: r.id,
                        name: r.name,
                        faction_id: r.faction_id,
                    },
                )
            })
            .collect();
        let constellations: HashMap<i64, ConstellationInfo> = b
            .constellations
            .into_iter()
            .map(|c| {
                (
                    c.id,
                    ConstellationInfo {
                        id: c.id,
                        name: c.name,
                        region_id: c.region_id,
                    },
                )
            })
            .collect();
        let systems = b
            .systems
            .into_iter()
            .map(|s| {
                let constellation_name = constellations
                    .get(&s.constellation_id)
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                let region_name = regions
                    .get(&s.region_id)
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                let info = SystemInfo {
                    id: s.id,
                    security_type: security_type(s.id, s.region_id, s.security_status),
                    rounded_security: rounded_security(s.security_status),
                    name: s.name,
                    constellation_id: s.constellation_id,
                    constellation_name,
                    region_id: s.region_id,
                    region_name,
                    security_status: s.security_status,
                    security_class: s.security_class,
                };
                (s.id, info)
            })
            .collect();
        let mut adjacency: HashMap<i64, Vec<i64>> = HashMap::new();
        for &(a, c) in &b.jumps {
            adjacency.entry(a).or_default().push(c);
            adjacency.entry(c).or_default().push(a);
        }
        for list in adjacency.values_mut() {
            list.sort_unstable();
            list.dedup();
        }
        let version = match b.sde_build {
            Some(build) => format!("sde{build}-{hash:016x}"),
            None => format!("sde-{hash:016x}"),
        };
        StaticData {
            types: b
                .types
                .into_iter()
                .map(|t| {
                    (
                        t.id,
                        TypeInfo {
                            id: t.id,
                            name: t.name,
                            group_id: t.group_id,
                            published: t.published,
                        },
                    )
                })
                .collect(),
            groups: b
                .groups
                .into_iter()
                .map(|g| {
                    (
                        g.id,
                        GroupInfo {
                            id: g.id,
                            name: g.name,
                            category_id: g.category_id,
                            published: g.published,
                        },
                    )
                })
                .collect(),
            categories: b
                .categories
                .into_iter()
                .map(|c| {
                    (
                        c.id,
                        CategoryInfo {
                            id: c.id,
                            name: c.name,
                            published: c.published,
                        },
                    )
                })
                .collect(),
            systems,
            constellations,
            regions,
            jumps: b.jumps.len(),
            adjacency,
            factions: b
                .factions
                .into_iter()
                .map(|f| {
                    (
                        f.id,
                        FactionInfo {
                            id: f.id,
                            name: f.name,
                            corporation_id: f.corporation_id,
                        },
                    )
                })
                .collect(),
            npc_corporations: b
                .npc_corporations
                .into_iter()
                .map(|c| {
                    (
                        c.id,
                        NpcCorporationInfo {
                            id: c.id,
                            name: c.name,
                            ticker: c.ticker,
                            faction_id: c.faction_id,
                        },
                    )
                })
                .collect(),
            version,
            source: b.source,
        }
    }

    /// A stable identifier of the data's content (`sde<build>-<hash>`): store it with enriched
    /// rows and re-enrich when it changes.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where the data was imported from (the manifest's `source`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// How much data is loaded.
    pub fn stats(&self) -> StaticDataStats {
        StaticDataStats {
            types: self.types.len(),
            groups: self.groups.len(),
            categories: self.categories.len(),
            systems: self.systems.len(),
            constellations: self.constellations.len(),
            regions: self.regions.len(),
            jumps: self.jumps,
            factions: self.factions.len(),
            npc_corporations: self.npc_corporations.len(),
        }
    }

    pub fn type_info(&self, type_id: i64) -> Option<&TypeInfo> {
        self.types.get(&type_id)
    }

    pub fn group(&self, group_id: i64) -> Option<&GroupInfo> {
        self.groups.get(&group_id)
    }

    pub fn category(&self, category_id: i64) -> Option<&CategoryInfo> {
        self.categories.get(&category_id)
    }

    /// The group of a type (one lookup instead of two).
    pub fn type_group(&self, type_id: i64) -> Option<&GroupInfo> {
        self.group(self.type_info(type_id)?.group_id)
    }

    /// The category of a type.
    pub fn type_category(&self, type_id: i64) -> Option<&CategoryInfo> {
        self.category(self.type_group(type_id)?.category_id)
    }

    pub fn system(&self, system_id: i64) -> Option<&SystemInfo> {
        self.systems.get(&system_id)
    }

    pub fn constellation(&self, constellation_id: i64) -> Option<&ConstellationInfo> {
        self.constellations.get(&constellation_id)
    }

    pub fn region(&self, region_id: i64) -> Option<&RegionInfo> {
        self.regions.get(&region_id)
    }

    pub fn faction(&self, faction_id: i64) -> Option<&FactionInfo> {
        self.factions.get(&faction_id)
    }

    pub fn npc_corporation(&self, corporation_id: i64) -> Option<&NpcCorporationInfo> {
        self.npc_corporations.get(&corporation_id)
    }

    /// Whether the id is an NPC corporation: in the SDE, or in CCP's NPC range 1000000..1999999
    /// (the range also covers NPC corporations newer than the bundle).
    pub fn is_npc_corporation(&self, corporation_id: i64) -> bool {
        self.npc_corporations.contains_key(&corporation_id)
            || (1_000_000..=1_999_999).contains(&corporation_id)
    }

    /// Whether the id is an NPC faction (SDE or CCP's faction range 500000..599999).
    pub fn is_faction(&self, faction_id: i64) -> bool {
        self.factions.contains_key(&faction_id) || (500_000..=599_999).contains(&faction_id)
    }

    /// The player-facing class of a type (see [`crate::ship_class`]); `None` for unknown types.
    pub fn ship_class(&self, type_id: i64) -> Option<ShipClass> {
        let group = self.type_group(type_id)?;
        Some(ship_class_for(group.id, group.category_id))
    }

    /// Whether the type is a capsule (pod).
    pub fn is_capsule(&self, type_id: i64) -> bool {
        self.type_info(type_id)
            .is_some_and(|t| t.group_id == GROUP_CAPSULE)
    }

    /// Whether the type is a structure (Upwell, starbase, sovereignty, orbital).
    pub fn is_structure(&self, type_id: i64) -> bool {
        self.type_group(type_id)
            .is_some_and(|g| STRUCTURE_CATEGORIES.contains(&g.category_id))
    }

    /// Systems one stargate jump away, sorted by id; empty for unknown or gate-less systems.
    pub fn neighbours(&self, system_id: i64) -> &[i64] {
        self.adjacency
            .get(&system_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The fewest stargate jumps from `a` to `b` (0 when equal); `None` when unknown or not
    /// connected by gates (wormhole space, Pochven's outside, abyssal ...).
    pub fn jumps_between(&self, a: i64, b: i64) -> Option<u32> {
        if !self.systems.contains_key(&a) || !self.systems.contains_key(&b) {
            return None;
        }
        if a == b {
            return Some(0);
        }
        let mut seen: HashSet<i64> = HashSet::from([a]);
        let mut queue = VecDeque::from([(a, 0u32)]);
        while let Some((s, d)) = queue.pop_front() {
            for &n in self.neighbours(s) {
                if n == b {
                    return Some(d + 1);
                }
                if seen.insert(n) {
                    queue.push_back((n, d + 1));
                }
            }
        }
        None
    }

    /// Every system within `max_jumps` gate jumps of `system_id` (itself at 0), as
    /// `(system_id, jumps)` sorted by jumps then id. Empty for an unknown system.
    pub fn systems_within(&self, system_id: i64, max_jumps: u32) -> Vec<(i64, u32)> {
        if !self.systems.contains_key(&system_id) {
            return Vec::new();
        }
        let mut out = vec![(system_id, 0u32)];
        let mut seen: HashSet<i64> = HashSet::from([system_id]);
        let mut frontier = vec![system_id];
        for d in 1..=max_jumps {
            let mut next = Vec::new();
            for s in frontier {
                for &n in self.neighbours(s) {
                    if seen.insert(n) {
                        next.push(n);
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            next.sort_unstable();
            out.extend(next.iter().map(|&n| (n, d)));
            frontier = next;
        }
        out
    }

    /// Iterates all types (unordered), e.g. to build a name index.
    pub fn types(&self) -> impl Iterator<Item = &TypeInfo> {
        self.types.values()
    }

    /// Iterates all systems (unordered).
    pub fn systems(&self) -> impl Iterator<Item = &SystemInfo> {
        self.systems.values()
    }
}
