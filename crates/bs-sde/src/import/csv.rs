//! The CSV layout of `shared/data/sde` (the Fuzzwork-style table names of the old SDE:
//! `invTypes.csv.gz`, `invGroups.csv`, `mapSolarSystems.csv.gz` ...), with an optional newer
//! type list (EVEShipFit's `types.csv.gz`/`groups.csv`/`categories.csv`) merged over it so that
//! ships added after the base export resolve.
//!
//! Each file may be plain or gzip'd (`name.csv` or `name.csv.gz`). Columns are found by header
//! name, so column order and extra columns do not matter. Malformed rows are skipped and
//! counted in the bundle's `rejected_rows`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::bundle::{
    Bundle, CategoryRow, ConstellationRow, FactionRow, GroupRow, NpcCorporationRow, RegionRow,
    SystemRow, TypeRow,
};
use crate::error::{Error, Result};

/// Reads the CSV layout at `dir`, merging `overlay` (a directory with the newer `types.csv`,
/// `groups.csv`, `categories.csv`) over it: the overlay wins for name, group and published flag.
pub fn build_from_csv(dir: &Path, overlay: Option<&Path>) -> Result<Bundle> {
    let mut b = Bundle {
        source: format!(
            "csv:{}",
            dir.file_name().and_then(|s| s.to_str()).unwrap_or("sde")
        ),
        ..Bundle::default()
    };
    let mut rejected = 0usize;

    let mut types: BTreeMap<i64, TypeRow> = BTreeMap::new();
    let mut groups: BTreeMap<i64, GroupRow> = BTreeMap::new();
    let mut categories: BTreeMap<i64, CategoryRow> = BTreeMap::new();
    let mut layers = vec![(dir.to_path_buf(), "invTypes", "invGroups", "invCategories")];
    if let Some(o) = overlay {
        layers.push((o.to_path_buf(), "types", "groups", "categories"));
        b.source.push_str(&format!(
            "+csv:{}",
            o.file_name().and_then(|s| s.to_str()).unwrap_or("overlay")
        ));
    }
    for (layer_dir, t, g, c) in &layers {
        let table = read_table(layer_dir, t)?;
        rejected += table.each(&["typeID", "groupID", "published", "typeName"], |c| {
            let row = TypeRow {
                id: c[0].parse().ok()?,
                group_id: c[1].parse().ok()?,
                published: c[2] == "1",
                name: c[3].to_string(),
            };
            types.insert(row.id, row);
            Some(())
        });
        let table = read_table(layer_dir, g)?;
        rejected += table.each(&["groupID", "categoryID", "published", "groupName"], |c| {
            let row = GroupRow {
                id: c[0].parse().ok()?,
                category_id: c[1].parse().ok()?,
                published: c[2] == "1",
                name: c[3].to_string(),
            };
            groups.insert(row.id, row);
            Some(())
        });
        let table = read_table(layer_dir, c)?;
        rejected += table.each(&["categoryID", "published", "categoryName"], |c| {
            let row = CategoryRow {
                id: c[0].parse().ok()?,
                published: c[1] == "1",
                name: c[2].to_string(),
            };
            categories.insert(row.id, row);
            Some(())
        });
    }
    b.types = types.into_values().collect();
    b.groups = groups.into_values().collect();
    b.categories = categories.into_values().collect();

    rejected +=
        read_table(dir, "mapRegions")?.each(&["regionID", "factionID", "regionName"], |c| {
            b.regions.push(RegionRow {
                id: c[0].parse().ok()?,
                faction_id: opt(c[1])?,
                name: c[2].to_string(),
            });
            Some(())
        });
    rejected += read_table(dir, "mapConstellations")?.each(
        &["constellationID", "regionID", "constellationName"],
        |c| {
            b.constellations.push(ConstellationRow {
                id: c[0].parse().ok()?,
                region_id: c[1].parse().ok()?,
                name: c[2].to_string(),
            });
            Some(())
        },
    );
    rejected += read_table(dir, "mapSolarSystems")?.each(
        &[
            "solarSystemID",
            "constellationID",
            "regionID",
            "security",
            "securityClass",
            "solarSystemName",
        ],
        |c| {
            b.systems.push(SystemRow {
                id: c[0].parse().ok()?,
                constellation_id: c[1].parse().ok()?,
                region_id: c[2].parse().ok()?,
                security_status: c[3].parse().ok()?,
                security_class: (!c[4].is_empty()).then(|| c[4].to_string()),
                name: c[5].to_string(),
            });
            Some(())
        },
    );
    // Prefer the ready-made jump list; derive it from stargates when only those are present.
    if let Some(jumps) = try_read_table(dir, "mapSolarSystemJumps")? {
        rejected += jumps.each(&["fromSolarSystemID", "toSolarSystemID"], |c| {
            b.jumps.push((c[0].parse().ok()?, c[1].parse().ok()?));
            Some(())
        });
    } else {
        let mut gate_system: BTreeMap<i64, i64> = BTreeMap::new();
        let mut links = Vec::new();
        rejected += read_table(dir, "mapStargates")?.each(
            &["stargateID", "solarSystemID", "destinationStargateID"],
            |c| {
                let (gate, system, dest) =
                    (c[0].parse().ok()?, c[1].parse().ok()?, c[2].parse().ok()?);
                gate_system.insert(gate, system);
                links.push((system, dest));
                Some(())
            },
        );
        for (system, dest_gate) in links {
            match gate_system.get(&dest_gate) {
                Some(&other) => b.jumps.push((system, other)),
                None => rejected += 1,
            }
        }
    }
    if let Some(t) = try_read_table(dir, "chrFactions")? {
        rejected += t.each(&["factionID", "corporationID", "factionName"], |c| {
            b.factions.push(FactionRow {
                id: c[0].parse().ok()?,
                corporation_id: opt(c[1])?,
                name: c[2].to_string(),
            });
            Some(())
        });
    }
    if let Some(t) = try_read_table(dir, "npcCorporations")? {
        rejected += t.each(
            &[
                "corporationID",
                "factionID",
                "tickerName",
                "corporationName",
            ],
            |c| {
                b.npc_corporations.push(NpcCorporationRow {
                    id: c[0].parse().ok()?,
                    faction_id: opt(c[1])?,
                    ticker: c[2].to_string(),
                    name: c[3].to_string(),
                });
                Some(())
            },
        );
    }
    b.rejected_rows = rejected;
    b.normalise();
    Ok(b)
}

fn opt(s: &str) -> Option<Option<i64>> {
    if s.is_empty() {
        Some(None)
    } else {
        s.parse().ok().map(Some)
    }
}

/// A parsed CSV file: header plus records.
pub(crate) struct CsvTable {
    header: Vec<String>,
    records: Vec<Vec<String>>,
}

impl CsvTable {
    /// Calls `f` with the named columns of every record; returns how many records were
    /// rejected (missing column or `f` returned `None`). A missing header column rejects all.
    pub(crate) fn each(&self, columns: &[&str], mut f: impl FnMut(&[&str]) -> Option<()>) -> usize {
        let idx: Option<Vec<usize>> = columns
            .iter()
            .map(|c| self.header.iter().position(|h| h == c))
            .collect();
        let Some(idx) = idx else {
            return self.records.len().max(1);
        };
        let mut rejected = 0;
        let mut cells: Vec<&str> = Vec::with_capacity(idx.len());
        for rec in &self.records {
            cells.clear();
            for &i in &idx {
                match rec.get(i) {
                    Some(v) => cells.push(v),
                    None => break,
                }
            }
            if cells.len() != idx.len() || f(&cells).is_none() {
                rejected += 1;
            }
        }
        rejected
    }
}

fn read_table(dir: &Path, stem: &str) -> Result<CsvTable> {
    try_read_table(dir, stem)?.ok_or_else(|| {
        Error::MissingFile(dir.join(format!("{stem}.csv[.gz]")).display().to_string())
    })
}

pub(crate) fn try_read_table(dir: &Path, stem: &str) -> Result<Option<CsvTable>> {
    for (file, gz) in [
        (format!("{stem}.csv.gz"), true),
        (format!("{stem}.csv"), false),
    ] {
        let path = dir.join(&file);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        let mut text = String::new();
        if gz {
            flate2::read::GzDecoder::new(bytes.as_slice())
                .read_to_string(&mut text)
                .map_err(|e| Error::io(&path, e))?;
        } else {
            text =
                String::from_utf8(bytes).map_err(|e| Error::format(file.clone(), e.to_string()))?;
        }
        let mut records = parse_csv(&text);
        if records.is_empty() {
            return Err(Error::format(file, "empty csv"));
        }
        let header = records.remove(0);
        return Ok(Some(CsvTable { header, records }));
    }
    Ok(None)
}

/// RFC 4180 records: commas, `"` quoting with `""` escapes, quoted newlines, `\n` or `\r\n`.
pub(crate) fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(ch) = chars.next() {
        any = true;
        if in_quotes {
            if ch == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(ch);
            }
            continue;
        }
        match ch {
            '"' => in_quotes = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                any = false;
            }
            _ => field.push(ch),
        }
    }
    if any {
        record.push(field);
        records.push(record);
    }
    records
}

#[cfg(test)]
mod tests {
    use super::parse_csv;

    #[test]
    fn csv_quotes_and_newlines() {
        let recs = parse_csv("a,b\n1,\"x, \"\"y\"\"\"\n2,\"multi\nline\"\r\n3,");
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[1], vec!["1", "x, \"y\""]);
        assert_eq!(recs[2], vec!["2", "multi\nline"]);
        assert_eq!(recs[3], vec!["3", ""]);
    }
}
