//! `killmail.enriched` (enrichment → battle, search, notification): a killmail with every
//! name and number a reader needs, so no consumer ever calls ESI or loads static data.
//!
//! # Contract (schema version 1)
//!
//! * Published on [`topics::KILLMAIL_ENRICHED`](crate::topics::KILLMAIL_ENRICHED), keyed by
//!   the killmail id (per-killmail order holds on the bus).
//! * **Updates re-publish the whole payload.** When ESI is slow or down the enrichment
//!   service publishes at once with the names it knows, `names_pending = true` and
//!   `revision = 0`; once a background resolver has the missing names it publishes the same
//!   killmail again with the names filled, a higher `revision` and (usually)
//!   `names_pending = false`. A static-data change that re-enriches also bumps `revision`.
//!   Consumers upsert by `killmail_id` and keep the payload with the highest `revision`
//!   (ties: identical content, a redelivery). There is no separate `names.resolved` event
//!   for killmails: one payload type, always complete, is simpler to consume.
//! * Ids are always present where the killmail had them; a `*_name` is `None` only while the
//!   name is unknown (then `names_pending` says whether it is still being resolved).
//! * Static-data fields (`ship_type_name`, `ship_group_*`, `ship_class`, system, region…) are
//!   `None` only when neither the bundled SDE nor ESI knows the id.
//! * `security_type` is a lowercase string: `highsec`, `lowsec`, `nullsec`, `wormhole`,
//!   `pochven` or `abyssal` (the identity of the system first, then its rounded security).
//! * `corporation_ticker` / `alliance_ticker` (on the victim and every attacker) are optional
//!   additions to v1: omitted while unknown, so old payloads and old readers are unaffected.
//!   A player corporation's or alliance's missing ticker counts as a pending name.
//! * `ship_class` is a lowercase string from the SDE's class table (`frigate`, `cruiser`,
//!   `capsule`, `structure`, …; `other` when unclassified).
//! * Attackers are sorted deterministically: final blow first, then by damage (descending),
//!   then by character id, ship type id and weapon type id; ESI's own order is not stable.
//! * Adding an optional field is a compatible change (same version); removing or changing
//!   the meaning of one bumps [`KillmailEnriched::VERSION`].

use bs_domain::{KillmailSource, Position};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Event, EventError};

/// A fully enriched killmail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KillmailEnriched {
    pub killmail_id: i64,
    pub killmail_time: DateTime<Utc>,
    pub hash: String,
    pub source: KillmailSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moon_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub war_id: Option<i64>,
    pub system: EnrichedSystem,
    pub victim: EnrichedVictim,
    pub attackers: Vec<EnrichedAttacker>,
    pub isk: IskValue,
    /// zKillboard's flags when the source had a `zkb` block; `None` otherwise (EVE Ref).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zkb: Option<ZkbFlags>,
    /// `attackers.len()`.
    pub attacker_count: u32,
    /// Distinct player characters on the mail (victim and attackers, NPCs excluded).
    pub pilot_count: u32,
    /// True while some character/corporation/alliance/faction names are still unresolved.
    pub names_pending: bool,
    /// The enrichment rules/static-data version that produced this payload.
    pub enrichment_version: u32,
    /// 0 for the first publication; each update (names resolved, re-enrichment) is higher.
    #[serde(default)]
    pub revision: u32,
}

/// Where the kill happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrichedSystem {
    pub id: i64,
    pub name: Option<String>,
    pub constellation_id: Option<i64>,
    pub constellation_name: Option<String>,
    pub region_id: Option<i64>,
    pub region_name: Option<String>,
    /// The true security status (unrounded), as in the SDE.
    pub security_status: Option<f64>,
    /// `highsec` | `lowsec` | `nullsec` | `wormhole` | `pochven` | `abyssal`.
    pub security_type: Option<String>,
}

/// A ship (or structure, deployable, capsule) type with its group and class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrichedShip {
    pub type_id: i64,
    pub type_name: Option<String>,
    pub group_id: Option<i64>,
    pub group_name: Option<String>,
    pub category_id: Option<i64>,
    /// Lowercase class name, e.g. `frigate`, `capital`, `structure`, `other`.
    pub class: Option<String>,
}

/// Character, corporation, alliance and faction of a participant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Affiliation {
    pub character_id: Option<i64>,
    pub character_name: Option<String>,
    pub corporation_id: Option<i64>,
    pub corporation_name: Option<String>,
    pub alliance_id: Option<i64>,
    pub alliance_name: Option<String>,
    pub faction_id: Option<i64>,
    pub faction_name: Option<String>,
    /// The corporation's ticker (`GEWNS`), when known. Added after v1 (absent in older
    /// payloads, omitted while unknown); resolved like the names, so a missing ticker makes
    /// the killmail `names_pending` and arrives with a later revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corporation_ticker: Option<String>,
    /// The alliance's ticker (`CONDI`), when known; see `corporation_ticker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alliance_ticker: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrichedVictim {
    #[serde(flatten)]
    pub who: Affiliation,
    pub ship: EnrichedShip,
    pub damage_taken: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrichedAttacker {
    #[serde(flatten)]
    pub who: Affiliation,
    /// `None` when the killmail names no ship (some NPCs, structures' modules).
    pub ship: Option<EnrichedShip>,
    pub weapon_type_id: Option<i64>,
    pub weapon_type_name: Option<String>,
    pub damage_done: i64,
    pub final_blow: bool,
    pub security_status: f64,
    pub is_npc: bool,
}

/// ISK lost, split into destroyed and dropped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IskValue {
    pub destroyed: f64,
    pub dropped: f64,
    pub total: f64,
    /// `zkb`: zKillboard's values; `computed`: hull + items from market prices.
    pub value_source: String,
}

/// zKillboard's flags, when known.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ZkbFlags {
    pub npc: bool,
    pub solo: bool,
    pub awox: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// The two values of [`IskValue::value_source`].
pub mod value_source {
    pub const ZKB: &str = "zkb";
    pub const COMPUTED: &str = "computed";
}

impl Event for KillmailEnriched {
    const TOPIC: &'static str = crate::topics::KILLMAIL_ENRICHED;
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.killmail_id.to_string()
    }

    fn validate(&self) -> Result<(), EventError> {
        if self.killmail_id <= 0 {
            return Err(EventError::Invalid("killmail_id must be positive".into()));
        }
        if self.attackers.is_empty() {
            return Err(EventError::Invalid(
                "a killmail has at least one attacker".into(),
            ));
        }
        if self.attacker_count as usize != self.attackers.len() {
            return Err(EventError::Invalid(
                "attacker_count differs from attackers".into(),
            ));
        }
        if self.isk.value_source != value_source::ZKB
            && self.isk.value_source != value_source::COMPUTED
        {
            return Err(EventError::Invalid(format!(
                "unknown value_source {}",
                self.isk.value_source
            )));
        }
        Ok(())
    }
}

impl KillmailEnriched {
    /// The attacker who landed the final blow, if the mail names one.
    pub fn final_blow(&self) -> Option<&EnrichedAttacker> {
        self.attackers.iter().find(|a| a.final_blow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Envelope;

    /// Killmail 96977835 (EVE Ref, 2021-11-27), enriched as the service does it.
    fn sample() -> KillmailEnriched {
        KillmailEnriched {
            killmail_id: 96_977_835,
            killmail_time: "2021-11-27T20:43:47Z".parse().unwrap(),
            hash: "b2e5daacc5ac754ad9c32c02c6fbacee16126aef".into(),
            source: KillmailSource::Everef,
            moon_id: None,
            war_id: None,
            system: EnrichedSystem {
                id: 30_002_355,
                name: Some("Faurent".into()),
                constellation_id: Some(20_000_345),
                constellation_name: Some("Evaulon".into()),
                region_id: Some(10_000_030),
                region_name: Some("Heimatar".into()),
                security_status: Some(0.357),
                security_type: Some("lowsec".into()),
            },
            victim: EnrichedVictim {
                who: Affiliation {
                    character_id: Some(2_119_401_469),
                    character_name: None,
                    corporation_id: Some(1_000_170),
                    corporation_name: Some("Republic Military School".into()),
                    ..Affiliation::default()
                },
                ship: EnrichedShip {
                    type_id: 588,
                    type_name: Some("Reaper".into()),
                    group_id: Some(237),
                    group_name: Some("Corvette".into()),
                    category_id: Some(6),
                    class: Some("frigate".into()),
                },
                damage_taken: 536,
                position: Some(Position {
                    x: -2.5e12,
                    y: -1.7e11,
                    z: 5.8e11,
                }),
            },
            attackers: vec![EnrichedAttacker {
                who: Affiliation {
                    character_id: Some(1_370_443_714),
                    corporation_id: Some(1_089_040_789),
                    alliance_id: Some(386_292_982),
                    ..Affiliation::default()
                },
                ship: Some(EnrichedShip {
                    type_id: 35_683,
                    type_name: Some("Hecate".into()),
                    group_id: Some(1305),
                    group_name: Some("Tactical Destroyer".into()),
                    category_id: Some(6),
                    class: Some("destroyer".into()),
                }),
                weapon_type_id: Some(3178),
                weapon_type_name: Some("Light Neutron Blaster II".into()),
                damage_done: 536,
                final_blow: true,
                security_status: -1.5,
                is_npc: false,
            }],
            isk: IskValue {
                destroyed: 12_000.5,
                dropped: 30_000.0,
                total: 42_000.5,
                value_source: value_source::COMPUTED.into(),
            },
            zkb: None,
            attacker_count: 1,
            pilot_count: 2,
            names_pending: true,
            enrichment_version: 1,
            revision: 0,
        }
    }

    /// The wire form other services code against. Changing this string is a contract change.
    const GOLDEN_V1: &str = r#"{"killmail_id":96977835,"killmail_time":"2021-11-27T20:43:47Z","hash":"b2e5daacc5ac754ad9c32c02c6fbacee16126aef","source":"everef","system":{"id":30002355,"name":"Faurent","constellation_id":20000345,"constellation_name":"Evaulon","region_id":10000030,"region_name":"Heimatar","security_status":0.357,"security_type":"lowsec"},"victim":{"character_id":2119401469,"character_name":null,"corporation_id":1000170,"corporation_name":"Republic Military School","alliance_id":null,"alliance_name":null,"faction_id":null,"faction_name":null,"ship":{"type_id":588,"type_name":"Reaper","group_id":237,"group_name":"Corvette","category_id":6,"class":"frigate"},"damage_taken":536,"position":{"x":-2500000000000.0,"y":-170000000000.0,"z":580000000000.0}},"attackers":[{"character_id":1370443714,"character_name":null,"corporation_id":1089040789,"corporation_name":null,"alliance_id":386292982,"alliance_name":null,"faction_id":null,"faction_name":null,"ship":{"type_id":35683,"type_name":"Hecate","group_id":1305,"group_name":"Tactical Destroyer","category_id":6,"class":"destroyer"},"weapon_type_id":3178,"weapon_type_name":"Light Neutron Blaster II","damage_done":536,"final_blow":true,"security_status":-1.5,"is_npc":false}],"isk":{"destroyed":12000.5,"dropped":30000.0,"total":42000.5,"value_source":"computed"},"attacker_count":1,"pilot_count":2,"names_pending":true,"enrichment_version":1,"revision":0}"#;

    #[test]
    fn golden_json_v1_is_stable_both_ways() {
        assert_eq!(serde_json::to_string(&sample()).unwrap(), GOLDEN_V1);
        let back: KillmailEnriched = serde_json::from_str(GOLDEN_V1).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn envelope_round_trips_keyed_by_killmail_id() {
        let ev = sample();
        let env = Envelope::wrap(&ev, "2026-12-01T00:00:01Z".parse().unwrap()).unwrap();
        assert_eq!(env.key, "96977835");
        assert_eq!(env.event_type, "killmail.enriched");
        assert_eq!(env.version, 1);
        let back = Envelope::from_bytes(&env.to_bytes()).unwrap();
        assert_eq!(back.decode::<KillmailEnriched>().unwrap(), ev);
        assert_eq!(
            ev.final_blow().unwrap().who.character_id,
            Some(1_370_443_714)
        );
    }

    #[test]
    fn inconsistent_payloads_are_refused() {
        let mut ev = sample();
        ev.attacker_count = 2;
        assert!(Envelope::wrap(&ev, Utc::now()).is_err());
        let mut ev = sample();
        ev.isk.value_source = "guess".into();
        assert!(Envelope::wrap(&ev, Utc::now()).is_err());
        let mut ev = sample();
        ev.attackers.clear();
        ev.attacker_count = 0;
        assert!(Envelope::wrap(&ev, Utc::now()).is_err());
    }

    #[test]
    fn tickers_are_optional_and_round_trip() {
        let mut ev = sample();
        ev.attackers[0].who.corporation_ticker = Some("SNUFF".into());
        ev.attackers[0].who.alliance_ticker = Some("-SNUF".into());
        let json = serde_json::to_string(&ev).unwrap();
        assert!(json.contains(r#""corporation_ticker":"SNUFF","alliance_ticker":"-SNUF""#));
        let back: KillmailEnriched = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
        // Unknown tickers are omitted: the v1 golden form is unchanged.
        assert!(!GOLDEN_V1.contains("ticker"));
    }

    #[test]
    fn optional_fields_added_later_default_when_absent() {
        // A v1 payload without `revision` (and without moon/war/zkb) still reads.
        let trimmed = GOLDEN_V1.replace(r#","revision":0"#, "");
        let back: KillmailEnriched = serde_json::from_str(&trimmed).unwrap();
        assert_eq!(back.revision, 0);
    }
}
