//! Collections, their document types and their field schemas.
//!
//! Field names follow the plan's Typesense schemas (camelCase on the wire, ids as strings, times
//! as Unix seconds, ISK as whole ISK in `i64`). Every collection also gets the helper fields of
//! [`IndexedDoc`] (`sName`, `sCompact`, `sAlt`, `sText`, `sActivity`), written by this crate, never
//! by callers: they carry the normalised name forms from [`crate::text`] and the activity used
//! for ranking.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::text;

/// One searchable collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Collection {
    Battles,
    Killmails,
    Characters,
    Corporations,
    Alliances,
    Systems,
    ShipTypes,
    Regions,
    Constellations,
}

impl Collection {
    /// Every collection, in a stable order (also the tie-break order of mixed results).
    pub const ALL: [Collection; 9] = [
        Collection::Alliances,
        Collection::Corporations,
        Collection::Characters,
        Collection::Systems,
        Collection::Constellations,
        Collection::Regions,
        Collection::ShipTypes,
        Collection::Battles,
        Collection::Killmails,
    ];

    /// The order in which the tantivy union schema is built. Collections added later go last
    /// and reuse existing field names only, so indexes on disk keep their schema.
    pub const SCHEMA_ORDER: [Collection; 9] = [
        Collection::Alliances,
        Collection::Corporations,
        Collection::Characters,
        Collection::Systems,
        Collection::ShipTypes,
        Collection::Battles,
        Collection::Killmails,
        Collection::Regions,
        Collection::Constellations,
    ];

    /// The collection name (`ship_types`).
    pub fn as_str(self) -> &'static str {
        match self {
            Collection::Battles => "battles",
            Collection::Killmails => "killmails",
            Collection::Characters => "characters",
            Collection::Corporations => "corporations",
            Collection::Alliances => "alliances",
            Collection::Systems => "systems",
            Collection::ShipTypes => "ship_types",
            Collection::Regions => "regions",
            Collection::Constellations => "constellations",
        }
    }

    /// The fields of this collection, helper fields excluded.
    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            Collection::Battles => BATTLE_FIELDS,
            Collection::Killmails => KILLMAIL_FIELDS,
            Collection::Characters => CHARACTER_FIELDS,
            Collection::Corporations => CORPORATION_FIELDS,
            Collection::Alliances => ALLIANCE_FIELDS,
            Collection::Systems => SYSTEM_FIELDS,
            Collection::ShipTypes => SHIP_TYPE_FIELDS,
            Collection::Regions => REGION_FIELDS,
            Collection::Constellations => CONSTELLATION_FIELDS,
        }
    }

    /// Looks a field up by name, helper fields included.
    pub fn field(self, name: &str) -> Option<&'static FieldSpec> {
        self.fields()
            .iter()
            .chain(HELPER_FIELDS)
            .find(|f| f.name == name)
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Collection {
    type Err = String;

    /// Accepts the collection name or its singular (`battle`, `ship_type`, `shiptype`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        Collection::ALL
            .into_iter()
            .find(|c| {
                let plural = c.as_str();
                let singular = plural.strip_suffix('s').unwrap_or(plural);
                s == plural || s == singular || s == singular.replace('_', "")
            })
            .ok_or_else(|| format!("unknown search type {s:?}"))
    }
}

/// The value type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Str,
    Strs,
    I64,
    F64,
}

/// One field of a collection schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub kind: FieldKind,
    /// Facet counts may be requested on it.
    pub facet: bool,
    /// Results may be sorted by it.
    pub sort: bool,
}

const fn f(name: &'static str, kind: FieldKind, facet: bool, sort: bool) -> FieldSpec {
    FieldSpec {
        name,
        kind,
        facet,
        sort,
    }
}

use FieldKind::{F64, I64, Str, Strs};

/// Helper fields present in every collection (see [`IndexedDoc`]).
pub const HELPER_FIELDS: &[FieldSpec] = &[
    f("sName", Str, false, true),
    f("sCompact", Str, false, false),
    f("sAlt", Str, false, false),
    f("sText", Str, false, false),
    f("sActivity", I64, false, false),
];

const BATTLE_FIELDS: &[FieldSpec] = &[
    f("systemId", Str, true, false),
    f("systemName", Str, true, false),
    f("regionId", Str, true, false),
    f("regionName", Str, true, false),
    f("spaceType", Str, true, false),
    f("securityLevel", Str, true, false),
    f("startTime", I64, false, true),
    f("endTime", I64, false, true),
    f("duration", I64, false, true),
    f("totalKills", I64, false, true),
    f("totalParticipants", I64, false, true),
    f("totalIskDestroyed", I64, false, true),
    f("allianceIds", Strs, true, false),
    f("allianceNames", Strs, true, false),
    f("corpIds", Strs, true, false),
    f("corpNames", Strs, true, false),
    f("characterNames", Strs, false, false),
    f("battleScore", I64, false, true),
];

const KILLMAIL_FIELDS: &[FieldSpec] = &[
    f("killmailTime", I64, false, true),
    f("systemId", Str, true, false),
    f("systemName", Str, true, false),
    f("regionId", Str, true, false),
    f("regionName", Str, true, false),
    f("spaceType", Str, true, false),
    f("victimCharacterId", Str, true, false),
    f("victimCharacterName", Str, false, false),
    f("victimCorpId", Str, true, false),
    f("victimCorpName", Str, true, false),
    f("victimAllianceId", Str, true, false),
    f("victimAllianceName", Str, true, false),
    f("shipTypeId", Str, true, false),
    f("shipTypeName", Str, true, false),
    f("shipGroupId", Str, true, false),
    f("shipGroupName", Str, true, false),
    f("iskValue", I64, false, true),
    f("attackerCount", I64, false, true),
    f("attackerAllianceIds", Strs, true, false),
    f("attackerAllianceNames", Strs, true, false),
    f("attackerCorpIds", Strs, true, false),
    f("battleId", Str, true, false),
];

const CHARACTER_FIELDS: &[FieldSpec] = &[
    f("name", Str, false, true),
    f("corpId", Str, true, false),
    f("corpName", Str, true, false),
    f("allianceId", Str, true, false),
    f("allianceName", Str, true, false),
    f("battleCount", I64, false, true),
    f("lastSeenAt", I64, false, true),
    f("activityScore", I64, false, true),
];

const CORPORATION_FIELDS: &[FieldSpec] = &[
    f("name", Str, false, true),
    f("ticker", Str, false, false),
    f("allianceId", Str, true, false),
    f("allianceName", Str, true, false),
    f("battleCount", I64, false, true),
    f("lastSeenAt", I64, false, true),
    f("activityScore", I64, false, true),
];

const ALLIANCE_FIELDS: &[FieldSpec] = &[
    f("name", Str, false, true),
    f("ticker", Str, false, false),
    f("battleCount", I64, false, true),
    f("lastSeenAt", I64, false, true),
    f("activityScore", I64, false, true),
];

const SYSTEM_FIELDS: &[FieldSpec] = &[
    f("name", Str, false, true),
    f("regionId", Str, true, false),
    f("regionName", Str, true, false),
    f("constellationId", Str, true, false),
    f("constellationName", Str, true, false),
    f("spaceType", Str, true, false),
    f("securityLevel", Str, true, false),
    f("securityStatus", F64, false, true),
    f("battleCount", I64, false, true),
    f("lastBattleAt", I64, false, true),
    f("activityScore", I64, false, true),
];

const SHIP_TYPE_FIELDS: &[FieldSpec] = &[
    f("name", Str, false, true),
    f("groupId", Str, true, false),
    f("groupName", Str, true, false),
    f("killCount", I64, false, true),
    f("activityScore", I64, false, true),
];

/// Regions and constellations (from the SDE) reuse field names of the other collections
/// only (see [`Collection::SCHEMA_ORDER`]).
const REGION_FIELDS: &[FieldSpec] = &[
    f("name", Str, false, true),
    f("battleCount", I64, false, true),
    f("killCount", I64, false, true),
    f("lastBattleAt", I64, false, true),
    f("activityScore", I64, false, true),
];

const CONSTELLATION_FIELDS: &[FieldSpec] = &[
    f("name", Str, false, true),
    f("regionId", Str, true, false),
    f("regionName", Str, true, false),
    f("battleCount", I64, false, true),
    f("killCount", I64, false, true),
    f("lastBattleAt", I64, false, true),
    f("activityScore", I64, false, true),
];

/// A battle (plan: `battles`). `characterNames` holds at most the top 50 pilots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BattleDoc {
    pub id: String,
    pub system_id: String,
    pub system_name: String,
    pub region_id: String,
    pub region_name: String,
    /// `highsec`, `lowsec`, `nullsec`, `wormhole`, `pochven`, …
    pub space_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_level: Option<String>,
    pub start_time: i64,
    pub end_time: i64,
    /// `endTime − startTime`, seconds.
    #[serde(default)]
    pub duration: i64,
    pub total_kills: i64,
    pub total_participants: i64,
    pub total_isk_destroyed: i64,
    pub alliance_ids: Vec<String>,
    pub alliance_names: Vec<String>,
    pub corp_ids: Vec<String>,
    pub corp_names: Vec<String>,
    pub character_names: Vec<String>,
    /// See [`battle_score`].
    #[serde(default)]
    pub battle_score: i64,
}

/// One killmail, flattened to what search filters and facets need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct KillmailDoc {
    pub id: String,
    pub killmail_time: i64,
    pub system_id: String,
    pub system_name: String,
    pub region_id: String,
    pub region_name: String,
    pub space_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim_character_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim_character_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim_corp_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim_corp_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim_alliance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim_alliance_name: Option<String>,
    pub ship_type_id: String,
    pub ship_type_name: String,
    pub ship_group_id: String,
    pub ship_group_name: String,
    pub isk_value: i64,
    pub attacker_count: i64,
    pub attacker_alliance_ids: Vec<String>,
    pub attacker_alliance_names: Vec<String>,
    pub attacker_corp_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battle_id: Option<String>,
}

/// A pilot seen in battles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CharacterDoc {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corp_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corp_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alliance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alliance_name: Option<String>,
    pub battle_count: i64,
    pub last_seen_at: i64,
    /// See [`activity_score`].
    pub activity_score: i64,
}

/// A corporation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CorporationDoc {
    pub id: String,
    pub name: String,
    pub ticker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alliance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alliance_name: Option<String>,
    pub battle_count: i64,
    pub last_seen_at: i64,
    pub activity_score: i64,
}

/// An alliance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AllianceDoc {
    pub id: String,
    pub name: String,
    pub ticker: String,
    pub battle_count: i64,
    pub last_seen_at: i64,
    pub activity_score: i64,
}

/// A solar system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SystemDoc {
    pub id: String,
    pub name: String,
    pub region_id: String,
    pub region_name: String,
    pub constellation_id: String,
    pub constellation_name: String,
    pub space_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_level: Option<String>,
    pub security_status: f64,
    pub battle_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_battle_at: Option<i64>,
    pub activity_score: i64,
}

/// A ship type (from the SDE), ranked by how often it dies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShipTypeDoc {
    pub id: String,
    pub name: String,
    pub group_id: String,
    pub group_name: String,
    pub kill_count: i64,
    pub activity_score: i64,
}

/// A region (from the SDE), ranked by battles and kills in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegionDoc {
    pub id: String,
    pub name: String,
    pub battle_count: i64,
    pub kill_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_battle_at: Option<i64>,
    pub activity_score: i64,
}

/// A constellation (from the SDE), ranked by battles and kills in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConstellationDoc {
    pub id: String,
    pub name: String,
    pub region_id: String,
    pub region_name: String,
    pub battle_count: i64,
    pub kill_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_battle_at: Option<i64>,
    pub activity_score: i64,
}

/// Any document, tagged with its collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "doc", rename_all = "snake_case")]
pub enum Document {
    Battle(BattleDoc),
    Killmail(KillmailDoc),
    Character(CharacterDoc),
    Corporation(CorporationDoc),
    Alliance(AllianceDoc),
    System(SystemDoc),
    ShipType(ShipTypeDoc),
    Region(RegionDoc),
    Constellation(ConstellationDoc),
}

/// The plan's entity activity: `round(battleCount·10 + max(0, 100 − daysSinceLastSeen))`.
/// `now` is a parameter: this crate never reads the clock.
pub fn activity_score(battle_count: i64, last_seen_at: i64, now: i64) -> i64 {
    let days = (now - last_seen_at).max(0) / 86_400;
    battle_count.saturating_mul(10) + (100 - days).max(0)
}

/// The plan's battle score: `round(log10(isk+1)·100 + kills·10 + participants·5)`.
pub fn battle_score(isk: i64, kills: i64, participants: i64) -> i64 {
    ((isk.max(0) as f64 + 1.0).log10() * 100.0).round() as i64 + kills * 10 + participants * 5
}

/// A document with the helper fields computed, ready for either backend.
#[derive(Debug, Clone)]
pub struct IndexedDoc {
    pub collection: Collection,
    pub id: String,
    /// The document's own fields (a JSON object).
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Display name (`sName`).
    pub name: String,
    /// Compacted name (`sCompact`).
    pub compact: String,
    /// Compacted ticker (`sAlt`), empty if none.
    pub alt: String,
    /// Every searchable word (`sText`, space-separated).
    pub words: Vec<String>,
    /// Ranking activity (`sActivity`).
    pub activity: i64,
}

impl Document {
    /// The collection this document belongs to.
    pub fn collection(&self) -> Collection {
        match self {
            Document::Battle(_) => Collection::Battles,
            Document::Killmail(_) => Collection::Killmails,
            Document::Character(_) => Collection::Characters,
            Document::Corporation(_) => Collection::Corporations,
            Document::Alliance(_) => Collection::Alliances,
            Document::System(_) => Collection::Systems,
            Document::ShipType(_) => Collection::ShipTypes,
            Document::Region(_) => Collection::Regions,
            Document::Constellation(_) => Collection::Constellations,
        }
    }

    /// The document id.
    pub fn id(&self) -> &str {
        match self {
            Document::Battle(d) => &d.id,
            Document::Killmail(d) => &d.id,
            Document::Character(d) => &d.id,
            Document::Corporation(d) => &d.id,
            Document::Alliance(d) => &d.id,
            Document::System(d) => &d.id,
            Document::ShipType(d) => &d.id,
            Document::Region(d) => &d.id,
            Document::Constellation(d) => &d.id,
        }
    }

    /// Computes the helper fields; `Err` is a reason to reject the document (counted, not fatal).
    pub fn to_indexed(&self) -> Result<IndexedDoc, String> {
        let id = self.id().trim();
        if id.is_empty() {
            return Err("empty id".into());
        }
        if id.len() > 128 || id.contains(char::is_whitespace) {
            return Err(format!("invalid id {id:?}"));
        }
        // (display name, ticker, other searchable texts, activity)
        let (name, ticker, others, activity): (String, &str, Vec<&str>, i64) = match self {
            Document::Battle(d) => {
                let mut others: Vec<&str> = vec![&d.region_name];
                others.extend(d.alliance_names.iter().map(String::as_str));
                others.extend(d.corp_names.iter().map(String::as_str));
                others.extend(d.character_names.iter().map(String::as_str));
                (d.system_name.clone(), "", others, d.battle_score)
            }
            Document::Killmail(d) => {
                let mut others: Vec<&str> =
                    vec![&d.system_name, &d.region_name, &d.ship_group_name];
                others.extend(d.victim_character_name.as_deref());
                others.extend(d.victim_corp_name.as_deref());
                others.extend(d.victim_alliance_name.as_deref());
                others.extend(d.attacker_alliance_names.iter().map(String::as_str));
                let name = format!("{} ({})", d.ship_type_name, d.system_name);
                (name, "", others, d.isk_value / 1_000_000)
            }
            Document::Character(d) => (d.name.clone(), "", Vec::new(), d.activity_score),
            Document::Corporation(d) => (
                d.name.clone(),
                d.ticker.as_str(),
                Vec::new(),
                d.activity_score,
            ),
            Document::Alliance(d) => (
                d.name.clone(),
                d.ticker.as_str(),
                Vec::new(),
                d.activity_score,
            ),
            Document::System(d) => (d.name.clone(), "", Vec::new(), d.activity_score),
            Document::ShipType(d) => (d.name.clone(), "", vec![&d.group_name], d.activity_score),
            Document::Region(d) => (d.name.clone(), "", Vec::new(), d.activity_score),
            Document::Constellation(d) => (d.name.clone(), "", Vec::new(), d.activity_score),
        };
        if text::compact(&name).is_empty() {
            return Err(format!("name {name:?} has no searchable characters"));
        }
        // Battles and killmails are found through their words only (system, ship, alliances):
        // an exact or prefix *name* match is reserved for entities, so typing `O-IVNH` ranks the
        // system above the battles fought there.
        let (mut words, compact) = match self {
            Document::Killmail(d) => (text::name_words(&d.ship_type_name), String::new()),
            Document::Battle(_) => (text::name_words(&name), String::new()),
            _ => (text::name_words(&name), text::compact(&name)),
        };
        let mut add = |s: &str| {
            for w in text::name_words(s) {
                if !words.contains(&w) {
                    words.push(w);
                }
            }
        };
        add(ticker);
        for o in others {
            add(o);
        }
        let fields = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut m)) => match m.remove("doc") {
                Some(serde_json::Value::Object(doc)) => doc,
                _ => return Err("document did not serialise to an object".into()),
            },
            _ => return Err("document did not serialise to an object".into()),
        };
        Ok(IndexedDoc {
            collection: self.collection(),
            id: id.to_string(),
            fields,
            compact,
            alt: text::compact(ticker),
            name,
            words,
            activity,
        })
    }
}

impl IndexedDoc {
    /// The document as stored: its own fields plus the helper fields.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = self.fields.clone();
        m.insert("id".into(), self.id.clone().into());
        m.insert("sName".into(), self.name.clone().into());
        m.insert("sCompact".into(), self.compact.clone().into());
        m.insert("sAlt".into(), self.alt.clone().into());
        m.insert("sText".into(), self.words.join(" ").into());
        m.insert("sActivity".into(), self.activity.into());
        m
    }
}

/// Drops the helper fields from a stored document (what callers see in `Hit::extra`).
pub fn strip_helpers(mut m: serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    for h in HELPER_FIELDS {
        m.remove(h.name);
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn shared_field_names_have_one_kind() {
        // The tantivy backend keeps all collections in one index, so a field name must mean the
        // same type everywhere.
        let mut kinds: HashMap<&str, FieldKind> = HashMap::new();
        for c in Collection::ALL {
            for spec in c.fields().iter().chain(HELPER_FIELDS) {
                let k = kinds.entry(spec.name).or_insert(spec.kind);
                assert_eq!(*k, spec.kind, "{} in {c}", spec.name);
            }
        }
    }

    #[test]
    fn every_serialised_field_is_in_the_schema() {
        let docs = [
            Document::Battle(BattleDoc {
                id: "b".into(),
                security_level: Some("null".into()),
                system_name: "x".into(),
                ..Default::default()
            }),
            Document::Killmail(KillmailDoc {
                id: "k".into(),
                ship_type_name: "Rifter".into(),
                victim_character_id: Some("1".into()),
                victim_character_name: Some("a".into()),
                victim_corp_id: Some("1".into()),
                victim_corp_name: Some("a".into()),
                victim_alliance_id: Some("1".into()),
                victim_alliance_name: Some("a".into()),
                battle_id: Some("b".into()),
                ..Default::default()
            }),
            Document::Character(CharacterDoc {
                id: "c".into(),
                name: "n".into(),
                corp_id: Some("1".into()),
                corp_name: Some("a".into()),
                alliance_id: Some("1".into()),
                alliance_name: Some("a".into()),
                ..Default::default()
            }),
            Document::System(SystemDoc {
                id: "s".into(),
                name: "n".into(),
                security_level: Some("x".into()),
                last_battle_at: Some(1),
                ..Default::default()
            }),
        ];
        for d in docs {
            let ix = d.to_indexed().unwrap();
            for key in ix.to_json().keys() {
                assert!(
                    key == "id" || ix.collection.field(key).is_some(),
                    "{key} missing from {} schema",
                    ix.collection
                );
            }
        }
    }

    #[test]
    fn collection_names_parse_both_ways() {
        assert_eq!("ship_type".parse::<Collection>(), Ok(Collection::ShipTypes));
        assert_eq!("Battles".parse::<Collection>(), Ok(Collection::Battles));
        assert_eq!("alliance".parse::<Collection>(), Ok(Collection::Alliances));
        assert!("planet".parse::<Collection>().is_err());
    }

    #[test]
    fn scores_follow_the_plan() {
        assert_eq!(activity_score(3, 0, 10 * 86_400), 30 + 90);
        assert_eq!(activity_score(0, 0, 1_000 * 86_400), 0);
        assert_eq!(battle_score(999, 2, 4), 300 + 20 + 20);
    }

    #[test]
    fn bad_documents_are_rejected_not_panicked() {
        let d = Document::Alliance(AllianceDoc {
            id: " ".into(),
            ..Default::default()
        });
        assert!(d.to_indexed().is_err());
        let d = Document::Alliance(AllianceDoc {
            id: "1".into(),
            name: "...".into(),
            ..Default::default()
        });
        assert!(d.to_indexed().is_err());
    }
}
