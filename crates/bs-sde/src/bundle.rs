//! The compact bundle: a directory of small gzip'd TSV tables plus a JSON manifest.
//!
//! Format 1 (`manifest.json` says `"format": 1`). Every table is UTF-8, tab-separated, one
//! header line naming the columns (checked on load, so a format change cannot be misread),
//! `\n` line ends, empty cell = absent, booleans as `0`/`1`, floats in Rust's shortest
//! round-trip form. Names come last and never contain tabs or newlines (the writer replaces
//! them with spaces). Rows are sorted by their first column, so rebuilding from the same
//! input gives byte-identical files (gzip mtime is 0).
//!
//! | file | columns |
//! |---|---|
//! | `types.tsv.gz` | type_id, group_id, published, name |
//! | `groups.tsv.gz` | group_id, category_id, published, name |
//! | `categories.tsv.gz` | category_id, published, name |
//! | `regions.tsv.gz` | region_id, faction_id, name |
//! | `constellations.tsv.gz` | constellation_id, region_id, name |
//! | `systems.tsv.gz` | system_id, constellation_id, region_id, security_status, security_class, name |
//! | `jumps.tsv.gz` | system_a, system_b (one undirected stargate link per row, a < b) |
//! | `factions.tsv.gz` | faction_id, corporation_id, name |
//! | `npc_corporations.tsv.gz` | corporation_id, faction_id, ticker, name |

use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The bundle format this code writes and reads.
pub const BUNDLE_FORMAT: u32 = 1;

pub(crate) const MANIFEST: &str = "manifest.json";

/// One table of the bundle: its file name and header.
#[derive(Clone, Copy)]
pub(crate) struct Table {
    pub file: &'static str,
    pub header: &'static [&'static str],
}

pub(crate) const TYPES: Table = Table {
    file: "types.tsv.gz",
    header: &["type_id", "group_id", "published", "name"],
};
pub(crate) const GROUPS: Table = Table {
    file: "groups.tsv.gz",
    header: &["group_id", "category_id", "published", "name"],
};
pub(crate) const CATEGORIES: Table = Table {
    file: "categories.tsv.gz",
    header: &["category_id", "published", "name"],
};
pub(crate) const REGIONS: Table = Table {
    file: "regions.tsv.gz",
    header: &["region_id", "faction_id", "name"],
};
pub(crate) const CONSTELLATIONS: Table = Table {
    file: "constellations.tsv.gz",
    header: &["constellation_id", "region_id", "name"],
};
pub(crate) const SYSTEMS: Table = Table {
    file: "systems.tsv.gz",
    header: &[
        "system_id",
        "constellation_id",
        "region_id",
        "security_status",
        "security_class",
        "name",
    ],
};
pub(crate) const JUMPS: Table = Table {
    file: "jumps.tsv.gz",
    header: &["system_a", "system_b"],
};
pub(crate) const FACTIONS: Table = Table {
    file: "factions.tsv.gz",
    header: &["faction_id", "corporation_id", "name"],
};
pub(crate) const NPC_CORPORATIONS: Table = Table {
    file: "npc_corporations.tsv.gz",
    header: &["corporation_id", "faction_id", "ticker", "name"],
};

/// Every table, in the order the version hash covers them.
pub(crate) const TABLES: [Table; 9] = [
    TYPES,
    GROUPS,
    CATEGORIES,
    REGIONS,
    CONSTELLATIONS,
    SYSTEMS,
    JUMPS,
    FACTIONS,
    NPC_CORPORATIONS,
];

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypeRow {
    pub id: i64,
    pub group_id: i64,
    pub published: bool,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GroupRow {
    pub id: i64,
    pub category_id: i64,
    pub published: bool,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CategoryRow {
    pub id: i64,
    pub published: bool,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RegionRow {
    pub id: i64,
    pub faction_id: Option<i64>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConstellationRow {
    pub id: i64,
    pub region_id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SystemRow {
    pub id: i64,
    pub constellation_id: i64,
    pub region_id: i64,
    pub security_status: f64,
    pub security_class: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FactionRow {
    pub id: i64,
    pub corporation_id: Option<i64>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NpcCorporationRow {
    pub id: i64,
    pub faction_id: Option<i64>,
    pub ticker: String,
    pub name: String,
}

/// What the manifest records about a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleManifest {
    /// Always [`BUNDLE_FORMAT`] for bundles this code can read.
    pub format: u32,
    /// Where the data came from (free text, e.g. the input path layout and SDE build).
    pub source: String,
    /// The SDE build number when the source states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sde_build: Option<i64>,
    /// Row counts per table, for humans and for a cheap sanity check.
    #[serde(default)]
    pub counts: std::collections::BTreeMap<String, usize>,
    /// Input rows skipped during import because they were malformed.
    #[serde(default)]
    pub rejected_rows: usize,
}

/// Static data in the bundle's row form: what importers produce and the loader consumes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bundle {
    pub(crate) source: String,
    pub(crate) sde_build: Option<i64>,
    pub(crate) rejected_rows: usize,
    pub(crate) types: Vec<TypeRow>,
    pub(crate) groups: Vec<GroupRow>,
    pub(crate) categories: Vec<CategoryRow>,
    pub(crate) regions: Vec<RegionRow>,
    pub(crate) constellations: Vec<ConstellationRow>,
    pub(crate) systems: Vec<SystemRow>,
    pub(crate) jumps: Vec<(i64, i64)>,
    pub(crate) factions: Vec<FactionRow>,
    pub(crate) npc_corporations: Vec<NpcCorporationRow>,
}

impl Bundle {
    /// The manifest this bundle would be written with (counts included).
    pub fn manifest(&self) -> BundleManifest {
        let counts = [
            ("types", self.types.len()),
            ("groups", self.groups.len()),
            ("categories", self.categories.len()),
            ("regions", self.regions.len()),
            ("constellations", self.constellations.len()),
            ("systems", self.systems.len()),
            ("jumps", self.jumps.len()),
            ("factions", self.factions.len()),
            ("npc_corporations", self.npc_corporations.len()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        BundleManifest {
            format: BUNDLE_FORMAT,
            source: self.source.clone(),
            sde_build: self.sde_build,
            counts,
            rejected_rows: self.rejected_rows,
        }
    }

    /// Sorts every table and normalises the jump list (a < b, no duplicates, no self links),
    /// so that equal data always serialises to equal bytes.
    pub(crate) fn normalise(&mut self) {
        self.types.sort_by_key(|r| r.id);
        self.types.dedup_by_key(|r| r.id);
        self.groups.sort_by_key(|r| r.id);
        self.groups.dedup_by_key(|r| r.id);
        self.categories.sort_by_key(|r| r.id);
        self.categories.dedup_by_key(|r| r.id);
        self.regions.sort_by_key(|r| r.id);
        self.regions.dedup_by_key(|r| r.id);
        self.constellations.sort_by_key(|r| r.id);
        self.constellations.dedup_by_key(|r| r.id);
        self.systems.sort_by_key(|r| r.id);
        self.systems.dedup_by_key(|r| r.id);
        for j in &mut self.jumps {
            if j.0 > j.1 {
                *j = (j.1, j.0);
            }
        }
        self.jumps.retain(|j| j.0 != j.1);
        self.jumps.sort_unstable();
        self.jumps.dedup();
        self.factions.sort_by_key(|r| r.id);
        self.factions.dedup_by_key(|r| r.id);
        self.npc_corporations.sort_by_key(|r| r.id);
        self.npc_corporations.dedup_by_key(|r| r.id);
    }

    /// Writes the bundle into `dir` (created if needed), replacing any bundle files there.
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut b = self.clone();
        b.normalise();
        for table in TABLES {
            let text = b.table_text(table);
            write_gz(&dir.join(table.file), text.as_bytes())?;
        }
        let manifest =
            serde_json::to_string_pretty(&b.manifest()).map_err(|source| Error::Json {
                file: MANIFEST.into(),
                source,
            })?;
        let path = dir.join(MANIFEST);
        std::fs::write(&path, manifest + "\n").map_err(|e| Error::io(path, e))
    }

    /// Reads a bundle directory written by [`Bundle::write_dir`].
    pub fn read_dir(dir: &Path) -> Result<Bundle> {
        let read = |name: &str| -> Result<Vec<u8>> {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::MissingFile(path.display().to_string())
                } else {
                    Error::io(path, e)
                }
            })
        };
        let manifest = read(MANIFEST)?;
        let mut files = Vec::with_capacity(TABLES.len());
        for t in TABLES {
            files.push(read(t.file)?);
        }
        let refs: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
        Bundle::decode(&manifest, &refs).map(|(b, _)| b)
    }

    /// Decodes a manifest and the gzip'd tables (in [`TABLES`] order). Also returns the
    /// content hash of the uncompressed tables, which is the data's version.
    pub(crate) fn decode(manifest: &[u8], gz_tables: &[&[u8]]) -> Result<(Bundle, u64)> {
        let manifest: BundleManifest =
            serde_json::from_slice(manifest).map_err(|source| Error::Json {
                file: MANIFEST.into(),
                source,
            })?;
        if manifest.format != BUNDLE_FORMAT {
            return Err(Error::format(
                MANIFEST,
                format!(
                    "format {} (this build reads {BUNDLE_FORMAT})",
                    manifest.format
                ),
            ));
        }
        let mut hash = Fnv64::new();
        let mut texts = Vec::with_capacity(TABLES.len());
        for (table, gz) in TABLES.iter().zip(gz_tables) {
            let mut text = String::new();
            flate2::read::GzDecoder::new(*gz)
                .read_to_string(&mut text)
                .map_err(|e| Error::format(table.file, format!("not gzip'd utf-8: {e}")))?;
            hash.write(table.file.as_bytes());
            hash.write(text.as_bytes());
            texts.push(text);
        }
        if texts.len() != TABLES.len() {
            return Err(Error::format("bundle", "missing tables"));
        }
        let mut b = Bundle {
            source: manifest.source,
            sde_build: manifest.sde_build,
            rejected_rows: manifest.rejected_rows,
            ..Bundle::default()
        };
        rows(&texts[0], TYPES, |c| {
            b.types.push(TypeRow {
                id: int(c[0])?,
                group_id: int(c[1])?,
                published: boolean(c[2])?,
                name: c[3].to_string(),
            });
            Some(())
        })?;
        rows(&texts[1], GROUPS, |c| {
            b.groups.push(GroupRow {
                id: int(c[0])?,
                category_id: int(c[1])?,
                published: boolean(c[2])?,
                name: c[3].to_string(),
            });
            Some(())
        })?;
        rows(&texts[2], CATEGORIES, |c| {
            b.categories.push(CategoryRow {
                id: int(c[0])?,
                published: boolean(c[1])?,
                name: c[2].to_string(),
            });
            Some(())
        })?;
        rows(&texts[3], REGIONS, |c| {
            b.regions.push(RegionRow {
                id: int(c[0])?,
                faction_id: opt_int(c[1])?,
                name: c[2].to_string(),
            });
            Some(())
        })?;
        rows(&texts[4], CONSTELLATIONS, |c| {
            b.constellations.push(ConstellationRow {
                id: int(c[0])?,
                region_id: int(c[1])?,
                name: c[2].to_string(),
            });
            Some(())
        })?;
        rows(&texts[5], SYSTEMS, |c| {
            b.systems.push(SystemRow {
                id: int(c[0])?,
                constellation_id: int(c[1])?,
                region_id: int(c[2])?,
                security_status: c[3].parse().ok()?,
                security_class: (!c[4].is_empty()).then(|| c[4].to_string()),
                name: c[5].to_string(),
            });
            Some(())
        })?;
        rows(&texts[6], JUMPS, |c| {
            b.jumps.push((int(c[0])?, int(c[1])?));
            Some(())
        })?;
        rows(&texts[7], FACTIONS, |c| {
            b.factions.push(FactionRow {
                id: int(c[0])?,
                corporation_id: opt_int(c[1])?,
                name: c[2].to_string(),
            });
            Some(())
        })?;
        rows(&texts[8], NPC_CORPORATIONS, |c| {
            b.npc_corporations.push(NpcCorporationRow {
                id: int(c[0])?,
                faction_id: opt_int(c[1])?,
                ticker: c[2].to_string(),
                name: c[3].to_string(),
            });
            Some(())
        })?;
        Ok((b, hash.finish()))
    }

    pub(crate) fn table_text(&self, table: Table) -> String {
        let mut out = table.header.join("\t");
        out.push('\n');
        let mut line = |cells: &[&str]| {
            out.push_str(&cells.join("\t"));
            out.push('\n');
        };
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let flag = |b: bool| if b { "1" } else { "0" };
        match table.file {
            f if f == TYPES.file => {
                for r in &self.types {
                    line(&[
                        &r.id.to_string(),
                        &r.group_id.to_string(),
                        flag(r.published),
                        &clean(&r.name),
                    ]);
                }
            }
            f if f == GROUPS.file => {
                for r in &self.groups {
                    line(&[
                        &r.id.to_string(),
                        &r.category_id.to_string(),
                        flag(r.published),
                        &clean(&r.name),
                    ]);
                }
            }
            f if f == CATEGORIES.file => {
                for r in &self.categories {
                    line(&[&r.id.to_string(), flag(r.published), &clean(&r.name)]);
                }
            }
            f if f == REGIONS.file => {
                for r in &self.regions {
                    line(&[&r.id.to_string(), &opt(r.faction_id), &clean(&r.name)]);
                }
            }
            f if f == CONSTELLATIONS.file => {
                for r in &self.constellations {
                    line(&[&r.id.to_string(), &r.region_id.to_string(), &clean(&r.name)]);
                }
            }
            f if f == SYSTEMS.file => {
                for r in &self.systems {
                    line(&[
                        &r.id.to_string(),
                        &r.constellation_id.to_string(),
                        &r.region_id.to_string(),
                        &r.security_status.to_string(),
                        &clean(r.security_class.as_deref().unwrap_or("")),
                        &clean(&r.name),
                    ]);
                }
            }
            f if f == JUMPS.file => {
                for (a, b) in &self.jumps {
                    line(&[&a.to_string(), &b.to_string()]);
                }
            }
            f if f == FACTIONS.file => {
                for r in &self.factions {
                    line(&[&r.id.to_string(), &opt(r.corporation_id), &clean(&r.name)]);
                }
            }
            _ => {
                for r in &self.npc_corporations {
                    line(&[
                        &r.id.to_string(),
                        &opt(r.faction_id),
                        &clean(&r.ticker),
                        &clean(&r.name),
                    ]);
                }
            }
        }
        out
    }
}

/// Replaces the two characters the TSV form cannot carry.
fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

pub(crate) fn write_gz(path: &Path, bytes: &[u8]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    enc.write_all(bytes).map_err(|e| Error::io(path, e))?;
    enc.finish().map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// Iterates the data rows of a table after checking its header; `f` returns `None` for a row
/// it cannot parse, which fails the load (a bundle is generated, so a bad row means damage).
pub(crate) fn rows(
    text: &str,
    table: Table,
    mut f: impl FnMut(&[&str]) -> Option<()>,
) -> Result<()> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    if header.split('\t').ne(table.header.iter().copied()) {
        return Err(Error::format(
            table.file,
            format!("header {header:?}, expected {:?}", table.header.join("\t")),
        ));
    }
    let mut cells: Vec<&str> = Vec::with_capacity(table.header.len());
    for (n, line) in lines.enumerate() {
        cells.clear();
        cells.extend(line.split('\t'));
        if cells.len() != table.header.len() || f(&cells).is_none() {
            return Err(Error::format(
                table.file,
                format!("bad row {}: {line:?}", n + 2),
            ));
        }
    }
    Ok(())
}

pub(crate) fn int(s: &str) -> Option<i64> {
    s.parse().ok()
}

pub(crate) fn opt_int(s: &str) -> Option<Option<i64>> {
    if s.is_empty() {
        Some(None)
    } else {
        s.parse().ok().map(Some)
    }
}

fn boolean(s: &str) -> Option<bool> {
    match s {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

/// FNV-1a, 64 bit: a stable content hash without another dependency (not for security).
pub(crate) struct Fnv64(u64);

impl Fnv64 {
    pub(crate) fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}
