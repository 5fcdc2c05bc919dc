//! Validation: a killmail that parses can still be impossible.
//!
//! Each check has its own [`RejectReason`]; the reasons are stable strings
//! (metrics labels, the rejects table, `/status`).

use bs_domain::Killmail;
use bs_zkb::{KillmailDoc, ParseError};
use chrono::{DateTime, Duration, Utc};

/// Why a document was not ingested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    MalformedJson,
    MissingField,
    InvalidField,
    MissingHash,
    InvalidHash,
    /// The wrapper's id is not the body's id.
    IdMismatch,
    NoAttackers,
    NegativeDamage,
    FutureTime,
    /// Before EVE Online existed.
    ImpossibleTime,
    UnknownIdRange,
    /// Same id as a stored killmail but a different hash (anomaly; never overwritten).
    HashConflict,
    /// The ESI body for a referenced killmail could not be fetched (404/422).
    BodyUnavailable,
    // Ruleset reasons.
    MinPilots,
    UntrackedSystem,
    UntrackedSecurity,
    UntrackedEntity,
}

impl RejectReason {
    pub const ALL: [RejectReason; 17] = [
        Self::MalformedJson,
        Self::MissingField,
        Self::InvalidField,
        Self::MissingHash,
        Self::InvalidHash,
        Self::IdMismatch,
        Self::NoAttackers,
        Self::NegativeDamage,
        Self::FutureTime,
        Self::ImpossibleTime,
        Self::UnknownIdRange,
        Self::HashConflict,
        Self::BodyUnavailable,
        Self::MinPilots,
        Self::UntrackedSystem,
        Self::UntrackedSecurity,
        Self::UntrackedEntity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::MissingHash => "missing_hash",
            Self::InvalidHash => "invalid_hash",
            Self::IdMismatch => "id_mismatch",
            Self::NoAttackers => "no_attackers",
            Self::NegativeDamage => "negative_damage",
            Self::FutureTime => "future_time",
            Self::ImpossibleTime => "impossible_time",
            Self::UnknownIdRange => "unknown_id_range",
            Self::HashConflict => "hash_conflict",
            Self::BodyUnavailable => "body_unavailable",
            Self::MinPilots => "min_pilots",
            Self::UntrackedSystem => "untracked_system",
            Self::UntrackedSecurity => "untracked_security",
            Self::UntrackedEntity => "untracked_entity",
        }
    }

    /// True for ruleset filters (the input was fine, just not wanted).
    pub fn is_ruleset(self) -> bool {
        matches!(
            self,
            Self::MinPilots
                | Self::UntrackedSystem
                | Self::UntrackedSecurity
                | Self::UntrackedEntity
        )
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason with a human-readable detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<ParseError> for Rejection {
    fn from(e: ParseError) -> Self {
        let reason = match &e {
            ParseError::MalformedJson(_) => RejectReason::MalformedJson,
            ParseError::MissingField(_) => RejectReason::MissingField,
            ParseError::InvalidField(_) => RejectReason::InvalidField,
        };
        Self::new(reason, e.to_string())
    }
}

/// How far in the future a kill time may be (clock skew between CCP and us).
pub const MAX_FUTURE: Duration = Duration::hours(1);

/// EVE Online launched on 2003-05-06; no killmail is older.
pub fn eve_launch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_052_179_200, 0).unwrap_or_default()
}

/// Checks a parsed document; returns the normalised (lowercase) hash.
pub fn validate(doc: &KillmailDoc, now: DateTime<Utc>) -> Result<String, Rejection> {
    let km = &doc.killmail;
    let hash = match doc.hash.as_deref() {
        None => {
            return Err(Rejection::new(
                RejectReason::MissingHash,
                "no hash, zkb.hash or killmail_hash",
            ));
        }
        Some(h) => h.to_ascii_lowercase(),
    };
    if hash.len() != 40 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Rejection::new(
            RejectReason::InvalidHash,
            format!("hash `{}` is not 40 hex digits", truncate(&hash, 64)),
        ));
    }
    if let Some(w) = doc.wrapper_id.filter(|w| *w != km.killmail_id) {
        return Err(Rejection::new(
            RejectReason::IdMismatch,
            format!("wrapper id {w} but body id {}", km.killmail_id),
        ));
    }
    check_ids(km)?;
    if km.attackers.is_empty() {
        return Err(Rejection::new(
            RejectReason::NoAttackers,
            "attackers is empty",
        ));
    }
    if km.victim.damage_taken < 0 {
        return Err(Rejection::new(
            RejectReason::NegativeDamage,
            format!("victim damage_taken {}", km.victim.damage_taken),
        ));
    }
    if let Some(a) = km.attackers.iter().find(|a| a.damage_done < 0) {
        return Err(Rejection::new(
            RejectReason::NegativeDamage,
            format!("attacker damage_done {}", a.damage_done),
        ));
    }
    if km.killmail_time > now + MAX_FUTURE {
        return Err(Rejection::new(
            RejectReason::FutureTime,
            format!("killmail_time {} is after {now}", km.killmail_time),
        ));
    }
    if km.killmail_time < eve_launch() {
        return Err(Rejection::new(
            RejectReason::ImpossibleTime,
            format!("killmail_time {} predates EVE", km.killmail_time),
        ));
    }
    Ok(hash)
}

fn check_ids(km: &Killmail) -> Result<(), Rejection> {
    let bad = |what: &str, id: i64| {
        Err(Rejection::new(
            RejectReason::UnknownIdRange,
            format!("{what} {id} is outside every EVE id range"),
        ))
    };
    if km.killmail_id <= 0 {
        return bad("killmail_id", km.killmail_id);
    }
    // Systems: k-space and wormholes 30M–31.99M, abyssal and other instanced space up to 39.99M.
    if !(30_000_000..=39_999_999).contains(&km.solar_system_id) {
        return bad("solar_system_id", km.solar_system_id);
    }
    if km.victim.ship_type_id <= 0 {
        return bad("victim.ship_type_id", km.victim.ship_type_id);
    }
    let v = &km.victim;
    for (what, id) in [
        ("victim.character_id", v.character_id),
        ("victim.corporation_id", v.corporation_id),
        ("victim.alliance_id", v.alliance_id),
    ] {
        if let Some(id) = id.filter(|id| *id <= 0) {
            return bad(what, id);
        }
    }
    for a in &km.attackers {
        for (what, id) in [
            ("attacker.character_id", a.character_id),
            ("attacker.corporation_id", a.corporation_id),
            ("attacker.alliance_id", a.alliance_id),
            ("attacker.ship_type_id", a.ship_type_id),
        ] {
            if let Some(id) = id.filter(|id| *id <= 0) {
                return bad(what, id);
            }
        }
    }
    Ok(())
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
