//! The fake's world: real killmails, names, corporations, alliances, types, systems
//! and market prices loaded from the repository's data folders.
//!
//! Sources (see `data/SOURCES.md` in the shared data): EVE Ref killmails (ESI bodies
//! plus `killmail_hash`), ESI name lists as of 2026-07, ESI alliance/corporation lists,
//! the SDE CSVs and a real `/markets/prices` snapshot. About 90 % of the 2021 pilots
//! have no known name; the fake gives every id that appears on a loaded killmail a name
//! that says it is generated (`Generated Pilot 12345`) so tests can tell, and so no
//! invented value is ever mistaken for a real one. Ids that appear nowhere are
//! unknown, which is what makes `/universe/names` fail whole batches like ESI does.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use serde::Deserialize;

use crate::NameCategory;

/// Where the fake reads its data from.
#[derive(Clone, Debug)]
pub struct DataPaths {
    /// `…/shared/data/esi`.
    pub esi_dir: PathBuf,
    /// `…/shared/data/sde`.
    pub sde_dir: PathBuf,
    /// ESI-format killmail JSONL (optionally gzip) files with `killmail_hash`.
    pub killmail_files: Vec<PathBuf>,
}

impl Default for DataPaths {
    /// The shared data folder (`BATTLESCOPE_SHARED_DATA`, else `../shared/data` next to
    /// the repository) and the repository's own fight fixtures in `data/killmails`.
    fn default() -> Self {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let shared = std::env::var_os("BATTLESCOPE_SHARED_DATA")
            .map_or_else(|| repo.join("../shared/data"), PathBuf::from);
        let mut killmail_files: Vec<PathBuf> = std::fs::read_dir(repo.join("data/killmails"))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.to_string_lossy().ends_with(".jsonl.gz"))
                    .collect()
            })
            .unwrap_or_default();
        killmail_files.sort();
        Self {
            esi_dir: shared.join("esi"),
            sde_dir: shared.join("sde"),
            killmail_files,
        }
    }
}

/// A killmail as the fake serves it.
#[derive(Clone, Debug)]
pub struct FakeKillmail {
    pub hash: String,
    /// The verbatim ESI body (EVE Ref's extra keys removed).
    pub body: Bytes,
    pub last_modified: Option<String>,
}

/// A name the fake resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeName {
    pub name: String,
    pub category: NameCategory,
    /// True when no real name is known and the fake made one up.
    pub generated: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Ticketed {
    pub name: String,
    pub ticker: String,
    pub alliance_id: Option<i64>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Affil {
    pub corporation_id: i64,
    pub alliance_id: Option<i64>,
    pub faction_id: Option<i64>,
}

#[derive(Clone, Debug)]
pub(crate) struct TypeRow {
    pub name: String,
    pub group_id: i64,
    pub published: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct SystemRow {
    pub name: String,
    pub constellation_id: i64,
    pub security_status: f64,
    pub security_class: Option<String>,
}

/// Everything the fake serves. Load once, share between fakes with `Arc`.
#[derive(Debug, Default)]
pub struct FakeData {
    pub(crate) killmails: HashMap<i64, FakeKillmail>,
    pub(crate) names: HashMap<i64, FakeName>,
    pub(crate) corporations: HashMap<i64, Ticketed>,
    pub(crate) alliances: HashMap<i64, Ticketed>,
    pub(crate) affiliations: HashMap<i64, Affil>,
    pub(crate) types: HashMap<i64, TypeRow>,
    pub(crate) systems: HashMap<i64, SystemRow>,
    pub(crate) prices: Bytes,
    /// `killmail_time` of the sighting behind each affiliation / alliance link.
    character_seen: HashMap<i64, String>,
    corporation_seen: HashMap<i64, String>,
}

/// One parsed killmail line, before it is merged into the data set.
struct ParsedKillmail {
    id: i64,
    time: String,
    parties: Vec<Party>,
    served: FakeKillmail,
}

fn parse_killmails(path: &Path) -> Result<Vec<ParsedKillmail>, String> {
    let text = read_bytes(path)?;
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let km: KmLine = serde_json::from_slice(line)
            .map_err(|e| format!("{}: bad killmail line: {e}", path.display()))?;
        let mut body = String::from_utf8_lossy(line).into_owned();
        strip_key(&mut body, "killmail_hash", &km.killmail_hash);
        if let Some(lm) = &km.http_last_modified {
            strip_key(&mut body, "http_last_modified", lm);
        }
        let mut parties = Vec::with_capacity(km.attackers.len() + 1);
        parties.push(km.victim);
        parties.extend(km.attackers);
        out.push(ParsedKillmail {
            id: km.killmail_id,
            time: km.killmail_time,
            parties,
            served: FakeKillmail {
                hash: km.killmail_hash,
                body: Bytes::from(body),
                last_modified: km.http_last_modified,
            },
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
struct KmLine {
    killmail_id: i64,
    killmail_time: String,
    killmail_hash: String,
    #[serde(default)]
    http_last_modified: Option<String>,
    victim: Party,
    attackers: Vec<Party>,
}

#[derive(Deserialize, Clone, Copy)]
struct Party {
    character_id: Option<i64>,
    corporation_id: Option<i64>,
    alliance_id: Option<i64>,
    faction_id: Option<i64>,
}

#[derive(Deserialize)]
struct IdName {
    id: i64,
    name: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    ticker: Option<String>,
}

#[derive(Deserialize)]
struct CharacterName {
    character_id: i64,
    name: String,
}

impl FakeData {
    /// The default data set, loaded once per process and shared.
    pub fn shared() -> Result<Arc<Self>, String> {
        static SHARED: OnceLock<Result<Arc<FakeData>, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::load(&DataPaths::default()).map(Arc::new))
            .clone()
    }

    /// Loads the data set from `paths`.
    pub fn load(paths: &DataPaths) -> Result<Self, String> {
        let mut data = Self::default();
        let esi = &paths.esi_dir;
        let sde = &paths.sde_dir;

        // Static data first, so real names of types and systems win over nothing.
        let types_path = sde.join("eveshipfit-build3650286/types.csv.gz");
        for row in csv_rows(&types_path)? {
            let (Some(id), Some(group_id)) = (num(&row, 0), num(&row, 1)) else {
                continue;
            };
            let name = field(&row, 3).to_owned();
            data.types.insert(
                id,
                TypeRow {
                    name: name.clone(),
                    group_id,
                    published: field(&row, 4) == "1",
                },
            );
            data.put_name(id, name, NameCategory::InventoryType);
        }
        for row in csv_rows(&sde.join("mapSolarSystems.csv.gz"))? {
            let (Some(id), Some(constellation_id)) = (num(&row, 0), num(&row, 2)) else {
                continue;
            };
            let name = field(&row, 1).to_owned();
            let class = field(&row, 5);
            data.systems.insert(
                id,
                SystemRow {
                    name: name.clone(),
                    constellation_id,
                    security_status: field(&row, 4).parse().unwrap_or(0.0),
                    security_class: (!class.is_empty()).then(|| class.to_owned()),
                },
            );
            data.put_name(id, name, NameCategory::SolarSystem);
        }
        for (file, category) in [
            ("mapRegions.csv", NameCategory::Region),
            ("mapConstellations.csv", NameCategory::Constellation),
            ("chrFactions.csv", NameCategory::Faction),
        ] {
            for row in csv_rows(&sde.join(file))? {
                if let Some(id) = num(&row, 0) {
                    data.put_name(id, field(&row, 1).to_owned(), category);
                }
            }
        }
        for row in csv_rows(&sde.join("npcCorporations.csv"))? {
            if let Some(id) = num(&row, 0) {
                let name = field(&row, 1).to_owned();
                data.corporations.insert(
                    id,
                    Ticketed {
                        name: name.clone(),
                        ticker: field(&row, 2).to_owned(),
                        alliance_id: None,
                    },
                );
                data.put_name(id, name, NameCategory::Corporation);
            }
        }

        // Real ESI names (2026-07): players' entities override static rows with the same id.
        let mixed: Vec<IdName> = read_json(&esi.join("entities/id-name-mixed-2026-07.json.gz"))?;
        for row in mixed {
            let category = match row.category.as_deref() {
                Some("character" | "npc_character") => NameCategory::Character,
                Some("corporation" | "npc_corporation") => NameCategory::Corporation,
                Some("alliance") => NameCategory::Alliance,
                Some("inventory_type") => NameCategory::InventoryType,
                Some("solar_system") => NameCategory::SolarSystem,
                // `legacy_unknown`: the category cannot be known, so the fake does not guess.
                _ => continue,
            };
            data.put_name(row.id, row.name, category);
        }
        let characters: Vec<CharacterName> = read_json(&esi.join("characters-id-name.json.gz"))?;
        for row in characters {
            data.put_name(row.character_id, row.name, NameCategory::Character);
        }
        for (file, category) in [
            (
                "entities/alliances-id-name-ticker.json.gz",
                NameCategory::Alliance,
            ),
            (
                "entities/corporations-id-name-ticker.json.gz",
                NameCategory::Corporation,
            ),
        ] {
            let rows: Vec<IdName> = read_json(&esi.join(file))?;
            for row in rows {
                let entry = Ticketed {
                    name: row.name.clone(),
                    ticker: row.ticker.unwrap_or_default(),
                    alliance_id: None,
                };
                match category {
                    NameCategory::Alliance => data.alliances.insert(row.id, entry),
                    _ => data.corporations.insert(row.id, entry),
                };
                data.put_name(row.id, row.name, category);
            }
        }
        data.prices = Bytes::from(read_bytes(&esi.join("markets-prices-2025-05-13.json.gz"))?);

        // Parsing dominates (the week is 79k killmails): one thread per file, then
        // apply in file order so the result does not depend on scheduling.
        let parsed: Vec<Result<Vec<ParsedKillmail>, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = paths
                .killmail_files
                .iter()
                .map(|file| scope.spawn(move || parse_killmails(file)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("killmail parser panicked".to_owned()))
                })
                .collect()
        });
        for file in parsed {
            data.apply_killmails(file?);
        }
        Ok(data)
    }

    fn put_name(&mut self, id: i64, name: String, category: NameCategory) {
        self.names.insert(
            id,
            FakeName {
                name,
                category,
                generated: false,
            },
        );
    }

    /// Adds the killmails of one JSONL file and everything they imply (affiliations,
    /// corporation→alliance links, generated names for ids without a real one).
    pub fn load_killmails(&mut self, path: &Path) -> Result<(), String> {
        self.apply_killmails(parse_killmails(path)?);
        Ok(())
    }

    fn apply_killmails(&mut self, killmails: Vec<ParsedKillmail>) {
        for km in killmails {
            for p in &km.parties {
                self.note_party(*p, &km.time);
            }
            self.killmails.insert(km.id, km.served);
        }
    }

    /// The latest sighting (by `killmail_time`) decides affiliations and alliance links.
    fn note_party(&mut self, p: Party, time: &str) {
        if let Some(id) = p.character_id {
            self.generate(id, NameCategory::Character, "Pilot");
            if let Some(corporation_id) = p.corporation_id
                && self
                    .character_seen
                    .get(&id)
                    .is_none_or(|t| t.as_str() <= time)
            {
                self.character_seen.insert(id, time.to_owned());
                self.affiliations.insert(
                    id,
                    Affil {
                        corporation_id,
                        alliance_id: p.alliance_id,
                        faction_id: p.faction_id,
                    },
                );
            }
        }
        if let Some(corp) = p.corporation_id {
            self.generate(corp, NameCategory::Corporation, "Corporation");
            let name = self
                .names
                .get(&corp)
                .map(|n| n.name.clone())
                .unwrap_or_default();
            let entry = self.corporations.entry(corp).or_insert_with(|| Ticketed {
                ticker: format!("G{}", corp % 10_000),
                name,
                alliance_id: None,
            });
            if self
                .corporation_seen
                .get(&corp)
                .is_none_or(|t| t.as_str() <= time)
            {
                self.corporation_seen.insert(corp, time.to_owned());
                entry.alliance_id = p.alliance_id;
            }
        }
        if let Some(alliance) = p.alliance_id {
            self.generate(alliance, NameCategory::Alliance, "Alliance");
            let name = self
                .names
                .get(&alliance)
                .map(|n| n.name.clone())
                .unwrap_or_default();
            self.alliances.entry(alliance).or_insert_with(|| Ticketed {
                ticker: format!("G{}", alliance % 10_000),
                name,
                alliance_id: None,
            });
        }
    }

    fn generate(&mut self, id: i64, category: NameCategory, word: &str) {
        self.names.entry(id).or_insert_with(|| FakeName {
            name: format!("Generated {word} {id}"),
            category,
            generated: true,
        });
    }

    /// Adds (or replaces) a name, e.g. a test's own character. Marked as not generated:
    /// the caller vouches for it.
    pub fn insert_name(&mut self, id: i64, name: &str, category: NameCategory) {
        self.put_name(id, name.to_owned(), category);
    }

    /// Sets what `/characters/affiliation` answers for `character_id`.
    pub fn insert_affiliation(
        &mut self,
        character_id: i64,
        corporation_id: i64,
        alliance_id: Option<i64>,
    ) {
        self.affiliations.insert(
            character_id,
            Affil {
                corporation_id,
                alliance_id,
                faction_id: None,
            },
        );
    }

    /// The killmail with this id, if loaded.
    pub fn killmail(&self, killmail_id: i64) -> Option<&FakeKillmail> {
        self.killmails.get(&killmail_id)
    }

    /// Ids of all loaded killmails (unordered).
    pub fn killmail_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.killmails.keys().copied()
    }

    /// The name `/universe/names` returns for `id`, if the id is known.
    pub fn name(&self, id: i64) -> Option<&FakeName> {
        self.names.get(&id)
    }

    /// Character ids with an affiliation (those seen on a loaded killmail).
    pub fn affiliated_characters(&self) -> impl Iterator<Item = i64> + '_ {
        self.affiliations.keys().copied()
    }
}

/// Removes `"key":"value"` and its separating comma from a compact JSON object.
fn strip_key(body: &mut String, key: &str, value: &str) {
    let pair = format!("\"{key}\":{}", serde_json::Value::String(value.to_owned()));
    for needle in [format!(",{pair}"), format!("{pair},"), pair] {
        if let Some(at) = body.find(&needle) {
            body.replace_range(at..at + needle.len(), "");
            return;
        }
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    let result = if path.extension().is_some_and(|e| e == "gz") {
        MultiGzDecoder::new(BufReader::new(file)).read_to_end(&mut out)
    } else {
        BufReader::new(file).read_to_end(&mut out)
    };
    result.map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(out)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    serde_json::from_slice(&read_bytes(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

/// Rows of a CSV file after its header; handles quoted fields with `""` escapes.
fn csv_rows(path: &Path) -> Result<Vec<Vec<String>>, String> {
    let bytes = read_bytes(path)?;
    let mut rows = Vec::new();
    for line in BufReader::new(bytes.as_slice()).lines().skip(1) {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        rows.push(split_csv(&line));
    }
    Ok(rows)
}

fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    fields.push(current);
    fields
}

fn field(row: &[String], i: usize) -> &str {
    row.get(i).map_or("", String::as_str)
}

fn num(row: &[String], i: usize) -> Option<i64> {
    field(row, i).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_handles_quotes_and_commas() {
        assert_eq!(
            split_csv(r#"3958,1083,30,"GDN-9 ""Nightstalker"" Combat Goggles",1"#),
            vec![
                "3958",
                "1083",
                "30",
                r#"GDN-9 "Nightstalker" Combat Goggles"#,
                "1"
            ]
        );
        assert_eq!(
            split_csv("4358,\"Exotic Dancers, Male\",,"),
            vec!["4358", "Exotic Dancers, Male", "", ""]
        );
    }

    #[test]
    fn strip_key_removes_the_pair_and_one_comma() {
        let mut s = r#"{"a":1,"killmail_hash":"ab","z":2}"#.to_owned();
        strip_key(&mut s, "killmail_hash", "ab");
        assert_eq!(s, r#"{"a":1,"z":2}"#);
        let mut s = r#"{"a":1,"http_last_modified":"2021-11-30T11:37:22Z"}"#.to_owned();
        strip_key(&mut s, "http_last_modified", "2021-11-30T11:37:22Z");
        assert_eq!(s, r#"{"a":1}"#);
    }
}
