//! Parsing every killmail document shape BattleScope accepts.
//!
//! One entry point, [`parse_document`], recognises the shape from its keys:
//!
//! | Shape | Recognised by | Source |
//! |---|---|---|
//! | R2Z2 entry `{killmail_id, hash, esi, zkb, uploaded_at, sequence_id, sequence_updated?}` | `esi` | §1.2 |
//! | RedisQ package `{"package": {killID, killmail?, zkb}}` or `{"package": null}` | `package` | §3 |
//! | A bare RedisQ package body `{killID, killmail?, zkb}` | `killID` | §3 |
//! | ESI killmail, optionally with `zkb` (zKillboard API) or `killmail_hash` (EVE Ref) | anything else | §5, §6.3 |
//!
//! The parser is total: any byte string yields a [`Document`] or a
//! [`ParseError`] that says why, which the ingester turns into a counted
//! rejection. The ESI body is parsed straight into the typed
//! [`bs_domain::Killmail`] (no intermediate JSON tree), which keeps bulk
//! import fast.

use bs_domain::{Killmail, Zkb};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Which shape a document had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentFormat {
    R2z2,
    Redisq,
    /// An ESI killmail, possibly with `zkb` or EVE Ref's `killmail_hash`.
    Esi,
}

/// A document carrying a killmail body.
#[derive(Clone, Debug, PartialEq)]
pub struct KillmailDoc {
    pub format: DocumentFormat,
    pub killmail: Killmail,
    /// The hash from the wrapper, `zkb.hash` or `killmail_hash`, whichever is present.
    pub hash: Option<String>,
    pub zkb: Option<Zkb>,
    /// The wrapper's own `killmail_id` (R2Z2) or `killID` (RedisQ), to check against the body.
    pub wrapper_id: Option<i64>,
    /// R2Z2 only.
    pub sequence_id: Option<i64>,
    pub sequence_updated: Option<i64>,
    pub uploaded_at: Option<i64>,
}

/// What a document is.
#[derive(Clone, Debug, PartialEq)]
pub enum Document {
    Killmail(Box<KillmailDoc>),
    /// A killmail named by id and hash only (RedisQ since 2025-12-01): fetch the body from ESI.
    Reference {
        killmail_id: i64,
        hash: String,
        zkb: Option<Zkb>,
    },
    /// `{"package": null}`: nothing this time.
    Empty,
}

/// Why a document could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all (or not UTF-8, or truncated).
    #[error("malformed json: {0}")]
    MalformedJson(String),
    /// JSON, but a required field is absent.
    #[error("missing field {0}")]
    MissingField(String),
    /// JSON, but a field has the wrong type or an impossible encoding.
    #[error("invalid field: {0}")]
    InvalidField(String),
}

/// The wrapper's keys; everything else is skipped without allocation.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    esi: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    package: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    killmail: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    zkb: Option<&'a RawValue>,
    #[serde(default)]
    killmail_id: Option<serde_json::Value>,
    #[serde(default, rename = "killID")]
    kill_id: Option<serde_json::Value>,
    #[serde(default)]
    hash: Option<serde_json::Value>,
    #[serde(default)]
    killmail_hash: Option<serde_json::Value>,
    #[serde(default)]
    sequence_id: Option<serde_json::Value>,
    #[serde(default)]
    sequence_updated: Option<serde_json::Value>,
    #[serde(default)]
    uploaded_at: Option<serde_json::Value>,
}

/// [`Probe`]'s keys plus the top-level fields of an ESI killmail, typed: a bare ESI
/// killmail (EVE Ref, zKillboard's API — the bulk of an import) is parsed in this one pass
/// instead of a probe and a second parse (the probe was ≈ 4.5 % of an import's CPU).
/// Any error here falls back to [`Probe`] and the two-pass path, which words it.
#[derive(Deserialize)]
struct OnePass<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    esi: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    package: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    killmail: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    zkb: Option<&'a RawValue>,
    #[serde(default)]
    killmail_id: Option<serde_json::Value>,
    #[serde(default, rename = "killID")]
    kill_id: Option<serde_json::Value>,
    #[serde(default)]
    hash: Option<serde_json::Value>,
    #[serde(default)]
    killmail_hash: Option<serde_json::Value>,
    #[serde(default)]
    sequence_id: Option<serde_json::Value>,
    #[serde(default)]
    sequence_updated: Option<serde_json::Value>,
    #[serde(default)]
    uploaded_at: Option<serde_json::Value>,
    #[serde(default)]
    killmail_time: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    solar_system_id: Option<i64>,
    #[serde(default)]
    moon_id: Option<i64>,
    #[serde(default)]
    war_id: Option<i64>,
    #[serde(default)]
    victim: Option<bs_domain::Victim>,
    #[serde(default)]
    attackers: Option<Vec<bs_domain::Attacker>>,
}

impl<'a> OnePass<'a> {
    /// The bare ESI killmail it holds, if it is one and complete; else its wrapper keys.
    fn into_document(self) -> Result<Document, Box<Probe<'a>>> {
        let probe = Box::new(Probe {
            esi: self.esi,
            package: self.package,
            killmail: self.killmail,
            zkb: self.zkb,
            killmail_id: self.killmail_id,
            kill_id: self.kill_id,
            hash: self.hash,
            killmail_hash: self.killmail_hash,
            sequence_id: self.sequence_id,
            sequence_updated: self.sequence_updated,
            uploaded_at: self.uploaded_at,
        });
        let wrapped = probe.esi.is_some_and(|e| e.get() != "null")
            || probe.package.is_some()
            || probe.kill_id.is_some();
        let killmail_id = probe
            .killmail_id
            .as_ref()
            .and_then(serde_json::Value::as_i64);
        let (
            false,
            Some(killmail_id),
            Some(killmail_time),
            Some(solar_system_id),
            Some(victim),
            Some(attackers),
        ) = (
            wrapped,
            killmail_id,
            self.killmail_time,
            self.solar_system_id,
            self.victim,
            self.attackers,
        )
        else {
            return Err(probe);
        };
        let Ok(zkb) = parse_zkb(probe.zkb) else {
            return Err(probe);
        };
        let Ok(hash) = pick_hash(&[&probe.killmail_hash, &probe.hash], zkb.as_ref()) else {
            return Err(probe);
        };
        Ok(Document::Killmail(Box::new(KillmailDoc {
            format: DocumentFormat::Esi,
            hash,
            wrapper_id: None,
            sequence_id: None,
            sequence_updated: None,
            uploaded_at: None,
            killmail: Killmail {
                killmail_id,
                killmail_time,
                solar_system_id,
                moon_id: self.moon_id,
                war_id: self.war_id,
                victim,
                attackers,
            },
            zkb,
        })))
    }
}

/// Keeps a present-but-null key as `Some("null")`, so `{"package": null}` is told apart from no package.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// Parses one document (one JSONL line, one file, one HTTP body).
pub fn parse_document(bytes: &[u8]) -> Result<Document, ParseError> {
    let text = std::str::from_utf8(trim_ascii(bytes))
        .map_err(|e| ParseError::MalformedJson(format!("not utf-8: {e}")))?;
    if text.is_empty() {
        return Err(ParseError::MalformedJson("empty document".into()));
    }
    if !text.starts_with('{') {
        return Err(ParseError::MalformedJson(format!(
            "expected a json object, found `{}`",
            preview(text)
        )));
    }
    match serde_json::from_str::<OnePass<'_>>(text) {
        Ok(one) => match one.into_document() {
            Ok(doc) => Ok(doc),
            Err(probe) => from_probe(text, &probe),
        },
        Err(_) => two_pass(text),
    }
}

/// The shape probe, then the body: what [`parse_document`] falls back to.
fn two_pass(text: &str) -> Result<Document, ParseError> {
    let probe: Probe<'_> = serde_json::from_str(text).map_err(classify)?;
    from_probe(text, &probe)
}

/// The document `text` is, given its wrapper keys.
fn from_probe(text: &str, probe: &Probe<'_>) -> Result<Document, ParseError> {
    if let Some(esi) = probe.esi.filter(|e| e.get() != "null") {
        let killmail = parse_killmail(esi.get())?;
        let zkb = parse_zkb(probe.zkb)?;
        return Ok(Document::Killmail(Box::new(KillmailDoc {
            format: DocumentFormat::R2z2,
            hash: pick_hash(&[&probe.hash, &probe.killmail_hash], zkb.as_ref())?,
            wrapper_id: opt_i64("killmail_id", &probe.killmail_id)?,
            sequence_id: opt_i64("sequence_id", &probe.sequence_id)?,
            sequence_updated: opt_i64("sequence_updated", &probe.sequence_updated)?,
            uploaded_at: opt_i64("uploaded_at", &probe.uploaded_at)?,
            killmail,
            zkb,
        })));
    }
    if let Some(package) = probe.package {
        if package.get() == "null" {
            return Ok(Document::Empty);
        }
        let inner: Probe<'_> = serde_json::from_str(package.get()).map_err(classify)?;
        return redisq_body(&inner);
    }
    if probe.kill_id.is_some() {
        return redisq_body(probe);
    }
    // A bare ESI killmail (EVE Ref, zKillboard API, JSONL exports).
    let killmail = parse_killmail(text)?;
    let zkb = parse_zkb(probe.zkb)?;
    Ok(Document::Killmail(Box::new(KillmailDoc {
        format: DocumentFormat::Esi,
        hash: pick_hash(&[&probe.killmail_hash, &probe.hash], zkb.as_ref())?,
        wrapper_id: None,
        sequence_id: None,
        sequence_updated: None,
        uploaded_at: None,
        killmail,
        zkb,
    })))
}

fn redisq_body(p: &Probe<'_>) -> Result<Document, ParseError> {
    let zkb = parse_zkb(p.zkb)?;
    let kill_id = opt_i64("killID", &p.kill_id)?;
    let hash = pick_hash(&[&p.hash], zkb.as_ref())?;
    match p.killmail {
        Some(body) if body.get() != "null" => {
            let killmail = parse_killmail(body.get())?;
            Ok(Document::Killmail(Box::new(KillmailDoc {
                format: DocumentFormat::Redisq,
                killmail,
                hash,
                zkb,
                wrapper_id: kill_id,
                sequence_id: None,
                sequence_updated: None,
                uploaded_at: None,
            })))
        }
        _ => {
            let killmail_id = kill_id.ok_or_else(|| ParseError::MissingField("killID".into()))?;
            let hash = hash.ok_or_else(|| ParseError::MissingField("zkb.hash".into()))?;
            Ok(Document::Reference {
                killmail_id,
                hash,
                zkb,
            })
        }
    }
}

/// Parses an ESI killmail body on its own.
pub fn parse_killmail(text: &str) -> Result<Killmail, ParseError> {
    match serde_json::from_str::<Killmail>(text) {
        Ok(k) => Ok(k),
        // Some re-serialisers write absent optional fields as explicit nulls
        // (`"items": null`); ESI never does. Drop them and try again, off the fast path.
        Err(e) if e.to_string().starts_with("invalid type: null") => {
            let mut v: serde_json::Value = serde_json::from_str(text).map_err(classify)?;
            strip_nulls(&mut v);
            serde_json::from_value::<Killmail>(v).map_err(classify)
        }
        Err(e) => Err(classify(e)),
    }
}

fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|_, x| !x.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn parse_zkb(raw: Option<&RawValue>) -> Result<Option<Zkb>, ParseError> {
    match raw {
        None => Ok(None),
        Some(r) if r.get() == "null" => Ok(None),
        Some(r) => serde_json::from_str::<Zkb>(r.get()).map(Some).map_err(|e| {
            ParseError::InvalidField(format!("zkb: {}", strip_position(&e.to_string())))
        }),
    }
}

/// The first non-empty hash among the candidates, else `zkb.hash`.
fn pick_hash(
    candidates: &[&Option<serde_json::Value>],
    zkb: Option<&Zkb>,
) -> Result<Option<String>, ParseError> {
    for c in candidates {
        match c {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) if !s.is_empty() => return Ok(Some(s.clone())),
            Some(serde_json::Value::String(_)) => {}
            Some(other) => {
                return Err(ParseError::InvalidField(format!(
                    "hash must be a string, found {}",
                    kind(other)
                )));
            }
        }
    }
    Ok(zkb.map(|z| z.hash.clone()).filter(|h| !h.is_empty()))
}

fn opt_i64(name: &str, v: &Option<serde_json::Value>) -> Result<Option<i64>, ParseError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            ParseError::InvalidField(format!("{name} must be an integer, found {n}"))
        }),
        Some(other) => Err(ParseError::InvalidField(format!(
            "{name} must be an integer, found {}",
            kind(other)
        ))),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Maps serde's error categories onto reasons: syntax/EOF errors are malformed
/// JSON; data errors are a missing or an invalid field.
fn classify(e: serde_json::Error) -> ParseError {
    let msg = strip_position(&e.to_string());
    match e.classify() {
        serde_json::error::Category::Io
        | serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof => ParseError::MalformedJson(msg),
        serde_json::error::Category::Data => match msg.strip_prefix("missing field `") {
            Some(rest) => ParseError::MissingField(rest.trim_end_matches('`').to_owned()),
            None => ParseError::InvalidField(msg),
        },
    }
}

/// serde_json appends " at line 1 column 123"; the position is noise in a reject reason.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b);
    b.trim_ascii()
}

fn preview(s: &str) -> String {
    s.chars().take(16).collect()
}

/// Parses `ephemeral/sequence.json`.
pub fn parse_sequence(bytes: &[u8]) -> Result<i64, ParseError> {
    #[derive(Deserialize)]
    struct Seq {
        sequence: i64,
    }
    serde_json::from_slice::<Seq>(bytes)
        .map(|s| s.sequence)
        .map_err(classify)
}

/// Parses `history/YYYYMMDD.json` (`{"<id>": "<hash>"}`) into sorted pairs.
/// Keys that are not integers are skipped: they cannot be killmails.
pub fn parse_history_day(bytes: &[u8]) -> Result<Vec<(i64, String)>, ParseError> {
    let map: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(bytes).map_err(classify)?;
    let mut out: Vec<(i64, String)> = map
        .into_iter()
        .filter_map(|(k, v)| k.parse::<i64>().ok().map(|id| (id, v)))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Parses a `totals.json` (`{"YYYYMMDD": count}` or `{"YYYY-MM-DD": count}`).
pub fn parse_totals(
    bytes: &[u8],
) -> Result<std::collections::BTreeMap<chrono::NaiveDate, u64>, ParseError> {
    let map: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(classify)?;
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in map {
        let day = chrono::NaiveDate::parse_from_str(&k, "%Y%m%d")
            .or_else(|_| chrono::NaiveDate::parse_from_str(&k, "%Y-%m-%d"));
        if let (Ok(day), Some(n)) = (day, v.as_u64()) {
            out.insert(day, n);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const R2Z2: &str = include_str!("../testdata/r2z2-killmail-138705184.json");
    const R2Z2_NULLS: &str = include_str!("../testdata/r2z2-killmail-138708161.json");
    const REDISQ_OLD: &str = include_str!("../testdata/redisq-package-119324952.json");
    const REDISQ_NEW: &str = include_str!("../testdata/redisq-package-example-130678514.json");
    const REDISQ_NULL: &str = include_str!("../testdata/redisq-package-null.json");

    fn killmail(doc: Document) -> KillmailDoc {
        match doc {
            Document::Killmail(k) => *k,
            other => panic!("expected a killmail, got {other:?}"),
        }
    }

    #[test]
    fn parses_real_r2z2_entries() {
        let k = killmail(parse_document(R2Z2.as_bytes()).unwrap());
        assert_eq!(k.format, DocumentFormat::R2z2);
        assert_eq!(k.killmail.killmail_id, 138_705_184);
        assert_eq!(k.wrapper_id, Some(138_705_184));
        assert_eq!(k.sequence_id, Some(99_718_572));
        assert_eq!(
            k.hash.as_deref(),
            Some("db25224ea6fe24f7d07dfdd0f719dfe651309d10")
        );
        assert!(k.zkb.as_ref().unwrap().npc);
        // Explicit nulls in the body are accepted as absent.
        let k = killmail(parse_document(R2Z2_NULLS.as_bytes()).unwrap());
        assert_eq!(k.killmail.killmail_id, 138_708_161);
        assert!(k.killmail.attackers[0].faction_id.is_none());
    }

    /// The one-pass parse of a bare ESI killmail gives what the probe and a second parse
    /// give, for good documents and for every kind of bad one (where it falls back).
    #[test]
    fn the_one_pass_parse_agrees_with_the_two_pass_parse() {
        let entry: serde_json::Value = serde_json::from_str(R2Z2).unwrap();
        let esi = entry["esi"].clone();
        let zkb = entry["zkb"].clone();
        let hash = entry["hash"].clone();
        let with = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
            let mut v = esi.clone();
            f(v.as_object_mut().unwrap());
            serde_json::to_string(&v).unwrap()
        };
        let docs = vec![
            with(&|_| {}),
            with(&|m| {
                m.insert("zkb".into(), zkb.clone());
            }),
            with(&|m| {
                m.insert("killmail_hash".into(), hash.clone());
            }),
            with(&|m| {
                m.insert("killmail_hash".into(), hash.clone());
                m.insert("zkb".into(), zkb.clone());
            }),
            with(&|m| {
                m.insert("moon_id".into(), serde_json::json!(40_000_001));
                m.insert("war_id".into(), serde_json::Value::Null);
            }),
            with(&|m| {
                m["victim"]["items"] = serde_json::Value::Null;
            }),
            with(&|m| {
                m.remove("victim");
            }),
            with(&|m| {
                m.remove("attackers");
            }),
            with(&|m| {
                m["killmail_id"] = serde_json::json!(1.5);
            }),
            with(&|m| {
                m["killmail_id"] = serde_json::json!("138705184");
            }),
            with(&|m| {
                m["killmail_time"] = serde_json::json!("yesterday");
            }),
            with(&|m| {
                m["attackers"] = serde_json::json!({});
            }),
            with(&|m| {
                m.insert("zkb".into(), serde_json::json!({"hash": 7}));
            }),
            with(&|m| {
                m.insert("killmail_hash".into(), serde_json::json!(["x"]));
            }),
            with(&|m| {
                m.insert("esi".into(), serde_json::Value::Null);
            }),
            R2Z2.to_owned(),
            R2Z2_NULLS.to_owned(),
            REDISQ_OLD.to_owned(),
            REDISQ_NEW.to_owned(),
            REDISQ_NULL.to_owned(),
        ];
        let mut one_pass = 0;
        for doc in &docs {
            let text = doc.trim();
            let direct = parse_document(text.as_bytes());
            assert_eq!(direct, two_pass(text), "{text}");
            if let Ok(one) = serde_json::from_str::<OnePass<'_>>(text) {
                one_pass += usize::from(one.into_document().is_ok());
            }
        }
        // The six complete bare killmails (`"esi": null` is one) took the one pass.
        assert_eq!(one_pass, 6);
        // A duplicated key is an error either way.
        let dup = format!("{},\"victim\":{{}}}}", docs[0].trim_end_matches('}'));
        assert_eq!(parse_document(dup.as_bytes()), two_pass(&dup));
        assert!(parse_document(dup.as_bytes()).is_err());
    }

    #[test]
    fn parses_real_redisq_packages() {
        let k = killmail(parse_document(REDISQ_OLD.as_bytes()).unwrap());
        assert_eq!(k.format, DocumentFormat::Redisq);
        assert_eq!(k.killmail.killmail_id, 119_324_952);
        match parse_document(REDISQ_NEW.as_bytes()).unwrap() {
            Document::Reference {
                killmail_id,
                hash,
                zkb,
            } => {
                assert_eq!(killmail_id, 130_678_514);
                assert_eq!(hash, "145c457c34ce9c9e8d67e942e764d8f439b22271");
                assert_eq!(zkb.unwrap().points, Some(13));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_document(REDISQ_NULL.as_bytes()).unwrap(),
            Document::Empty
        );
    }

    #[test]
    fn reasons_for_bad_documents() {
        assert!(matches!(
            parse_document(b"{\"killmail_id\": 1,"),
            Err(ParseError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_document(b"<html>"),
            Err(ParseError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_document(b""),
            Err(ParseError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_document(&[0xff, 0xfe]),
            Err(ParseError::MalformedJson(_))
        ));
        let no_victim = r#"{"attackers":[],"killmail_id":1,"killmail_time":"2021-11-27T20:43:47Z","solar_system_id":30002355}"#;
        assert_eq!(
            parse_document(no_victim.as_bytes()),
            Err(ParseError::MissingField("victim".into()))
        );
        let bad_type = r#"{"attackers":[],"killmail_id":"x","killmail_time":"2021-11-27T20:43:47Z","solar_system_id":30002355,"victim":{"ship_type_id":1,"damage_taken":1}}"#;
        assert!(matches!(
            parse_document(bad_type.as_bytes()),
            Err(ParseError::InvalidField(_))
        ));
    }

    #[test]
    fn history_and_totals() {
        let pairs = parse_history_day(br#"{"96977835":"b2e5","12":"ab","x":"skip"}"#).unwrap();
        assert_eq!(pairs, vec![(12, "ab".into()), (96_977_835, "b2e5".into())]);
        let totals = parse_totals(br#"{"20211127": 17862, "2021-11-28": 17047}"#).unwrap();
        assert_eq!(totals.len(), 2);
        assert_eq!(
            parse_sequence(br#"{"sequence": 99718545}"#).unwrap(),
            99_718_545
        );
    }
}
