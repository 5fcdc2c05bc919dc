//! CCP's official SDE in the JSON Lines variant (the format since the 2025 SDE rework):
//! `eve-online-static-data-<build>-jsonl.zip`, or that archive extracted into a directory.
//!
//! One JSON object per line; integer keys are carried as `_key`; localised names are objects
//! (`{"en": "Rifter", "de": ...}`) and English is taken. Fields read, per file:
//!
//! | file | fields |
//! |---|---|
//! | `types.jsonl` | `_key`, `groupID`, `published`, `name` |
//! | `groups.jsonl` | `_key`, `categoryID`, `published`, `name` |
//! | `categories.jsonl` | `_key`, `published`, `name` |
//! | `mapRegions.jsonl` | `_key`, `factionID`, `name` |
//! | `mapConstellations.jsonl` | `_key`, `regionID`, `name` |
//! | `mapSolarSystems.jsonl` | `_key`, `constellationID`, `regionID`, `securityStatus`, `securityClass`, `name` |
//! | `mapStargates.jsonl` | `solarSystemID`, `destination.solarSystemID` |
//! | `factions.jsonl` (optional) | `_key`, `corporationID`, `name` |
//! | `npcCorporations.jsonl` (optional) | `_key`, `factionID`, `tickerName`, `name` |
//! | `_sde.jsonl` (optional) | `buildNumber` |
//!
//! Lines that are not JSON or lack a required field are skipped and counted as rejected rows.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::zip::ZipArchive;
use crate::bundle::{
    Bundle, CategoryRow, ConstellationRow, FactionRow, GroupRow, NpcCorporationRow, RegionRow,
    SystemRow, TypeRow,
};
use crate::error::{Error, Result};

pub(crate) enum Source {
    Dir(PathBuf),
    Zip(Box<ZipArchive>),
}

impl Source {
    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Source::Dir(dir) => {
                let path = dir.join(name);
                match std::fs::read(&path) {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io(path, e)),
                }
            }
            Source::Zip(zip) => match zip.find(name) {
                Some(entry) => zip.read(&entry).map(Some),
                None => Ok(None),
            },
        }
    }

    fn required(&mut self, name: &str) -> Result<Vec<u8>> {
        self.read(name)?
            .ok_or_else(|| Error::MissingFile(name.to_string()))
    }
}

/// Whether a directory looks like an extracted JSONL SDE.
pub(crate) fn is_jsonl_dir(dir: &Path) -> bool {
    dir.join("types.jsonl").is_file() && dir.join("mapSolarSystems.jsonl").is_file()
}

pub(crate) fn import(mut src: Source, label: String) -> Result<Bundle> {
    let mut b = Bundle {
        source: label,
        ..Bundle::default()
    };
    let mut rejected = 0usize;

    if let Some(bytes) = src.read("_sde.jsonl")? {
        each_line(&bytes, &mut 0, |v| {
            b.sde_build = v.get("buildNumber").and_then(Value::as_i64);
            Some(())
        });
    }
    each_line(&src.required("types.jsonl")?, &mut rejected, |v| {
        b.types.push(TypeRow {
            id: key(v)?,
            group_id: int(v, "groupID")?,
            published: flag(v, "published"),
            name: name(v)?,
        });
        Some(())
    });
    each_line(&src.required("groups.jsonl")?, &mut rejected, |v| {
        b.groups.push(GroupRow {
            id: key(v)?,
            category_id: int(v, "categoryID")?,
            published: flag(v, "published"),
            name: name(v)?,
        });
        Some(())
    });
    each_line(&src.required("categories.jsonl")?, &mut rejected, |v| {
        b.categories.push(CategoryRow {
            id: key(v)?,
            published: flag(v, "published"),
            name: name(v)?,
        });
        Some(())
    });
    each_line(&src.required("mapRegions.jsonl")?, &mut rejected, |v| {
        b.regions.push(RegionRow {
            id: key(v)?,
            faction_id: v.get("factionID").and_then(Value::as_i64),
            name: name(v)?,
        });
        Some(())
    });
    each_line(
        &src.required("mapConstellations.jsonl")?,
        &mut rejected,
        |v| {
            b.constellations.push(ConstellationRow {
                id: key(v)?,
                region_id: int(v, "regionID")?,
                name: name(v)?,
            });
            Some(())
        },
    );
    // `regionID` is denormalised in the official files; fall back to the constellation's.
    let region_of: std::collections::HashMap<i64, i64> = b
        .constellations
        .iter()
        .map(|c| (c.id, c.region_id))
        .collect();
    each_line(
        &src.required("mapSolarSystems.jsonl")?,
        &mut rejected,
        |v| {
            let constellation_id = int(v, "constellationID")?;
            b.systems.push(SystemRow {
                id: key(v)?,
                constellation_id,
                region_id: int(v, "regionID")
                    .or_else(|| region_of.get(&constellation_id).copied())?,
                security_status: v.get("securityStatus").and_then(Value::as_f64)?,
                security_class: v
                    .get("securityClass")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                name: name(v)?,
            });
            Some(())
        },
    );
    each_line(&src.required("mapStargates.jsonl")?, &mut rejected, |v| {
        let from = int(v, "solarSystemID")?;
        let to = v
            .get("destination")
            .and_then(|d| d.get("solarSystemID"))
            .and_then(Value::as_i64)?;
        b.jumps.push((from, to));
        Some(())
    });
    if let Some(bytes) = src.read("factions.jsonl")? {
        each_line(&bytes, &mut rejected, |v| {
            b.factions.push(FactionRow {
                id: key(v)?,
                corporation_id: v.get("corporationID").and_then(Value::as_i64),
                name: name(v)?,
            });
            Some(())
        });
    }
    if let Some(bytes) = src.read("npcCorporations.jsonl")? {
        each_line(&bytes, &mut rejected, |v| {
            b.npc_corporations.push(NpcCorporationRow {
                id: key(v)?,
                faction_id: v.get("factionID").and_then(Value::as_i64),
                ticker: v
                    .get("tickerName")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                name: name(v)?,
            });
            Some(())
        });
    }
    b.rejected_rows = rejected;
    b.normalise();
    Ok(b)
}

fn each_line(bytes: &[u8], rejected: &mut usize, mut f: impl FnMut(&Value) -> Option<()>) {
    for line in bytes.split(|&c| c == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let ok = serde_json::from_slice::<Value>(line)
            .ok()
            .and_then(|v| f(&v));
        if ok.is_none() {
            *rejected += 1;
        }
    }
}

fn key(v: &Value) -> Option<i64> {
    v.get("_key").and_then(Value::as_i64)
}

fn int(v: &Value, field: &str) -> Option<i64> {
    v.get(field).and_then(Value::as_i64)
}

fn flag(v: &Value, field: &str) -> bool {
    match v.get(field) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// The English name: `name.en` for localised objects, or `name` when it is a plain string.
fn name(v: &Value) -> Option<String> {
    match v.get("name")? {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => m.get("en").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}
