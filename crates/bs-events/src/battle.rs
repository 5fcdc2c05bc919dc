//! `battle.created`, `battle.updated`, `battle.ended`, `battle.merged` (battle → search,
//! notification, BFF): small summaries of a battle, for indexing and triggering.
//!
//! # Contract (schema version 1)
//!
//! * Every event carries one [`BattleSnapshot`] as its payload (the four types are transparent
//!   newtypes, so the payload *is* the snapshot), keyed by `battle_id`: per-battle order holds.
//! * `battle.created`: a cluster of killmails first qualified as a battle.
//!   `battle.updated`: killmails joined or left, names resolved, sides recomputed, a manual side
//!   override, or an ended battle reopened by a late kill (`status` back to `active`).
//!   `battle.ended`: no kill for the gap, by kill time. `battle.merged`: the battle was absorbed;
//!   `status = "merged"`, `merged_into` is the survivor (which gets its own `battle.updated`),
//!   and the absorbed id keeps answering on the API with a redirect to the survivor.
//! * Consumers upsert by `battle_id` and keep the snapshot with the highest `revision`.
//! * The snapshot is a summary: the full report is `GET /battles/{id}` on the battle service.
//! * Times are kill times (UTC), never arrival times.
//! * Adding an optional field is a compatible change (same version); removing or changing the
//!   meaning of one bumps [`BattleCreated::VERSION`] (all four share one version).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Event, EventError};

/// Where a battle is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BattleStatus {
    /// A kill happened within the gap of now.
    Active,
    /// No kill for the gap (it reopens if a late kill lands within the gap of now).
    Ended,
    /// Absorbed into `merged_into`.
    Merged,
}

impl BattleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Merged => "merged",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "ended" => Some(Self::Ended),
            "merged" => Some(Self::Merged),
            _ => None,
        }
    }
}

/// One side of a battle, summarised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BattleSideSnapshot {
    pub index: u32,
    pub pilots: u32,
    pub kills: u32,
    pub losses: u32,
    pub isk_destroyed: f64,
    pub isk_lost: f64,
    /// The side's main alliances, most pilots first (at most 5).
    pub alliance_ids: Vec<i64>,
    /// The side's main corporations, most pilots first (at most 5).
    pub corporation_ids: Vec<i64>,
}

/// The summary every battle event carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BattleSnapshot {
    /// The battle id: the killmail id of its founding kill.
    pub battle_id: i64,
    pub status: BattleStatus,
    /// The survivor, when `status = "merged"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<i64>,
    /// Sorted.
    pub system_ids: Vec<i64>,
    /// Sorted.
    pub region_ids: Vec<i64>,
    /// Sorted, distinct: `highsec`, `lowsec`, `nullsec`, `wormhole`, `pochven`.
    pub security_types: Vec<String>,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub total_kills: u32,
    pub total_isk_destroyed: f64,
    pub pilots: u32,
    /// Two sides do not describe the fight.
    pub multi_party: bool,
    /// Only one side scored kills (a massacre, a gank).
    pub one_sided: bool,
    /// Sides, largest first as the clustering numbers them; empty until first computed.
    pub sides: Vec<BattleSideSnapshot>,
    /// Grows with every change of the battle; keep the highest.
    pub revision: u64,
}

fn check(s: &BattleSnapshot) -> Result<(), EventError> {
    if s.battle_id <= 0 {
        return Err(EventError::Invalid("battle_id must be positive".into()));
    }
    if s.end_time < s.start_time {
        return Err(EventError::Invalid("end_time before start_time".into()));
    }
    if (s.status == BattleStatus::Merged) != s.merged_into.is_some() {
        return Err(EventError::Invalid(
            "merged_into is set exactly when status is merged".into(),
        ));
    }
    Ok(())
}

macro_rules! battle_event {
    ($(#[$doc:meta])* $name:ident, $topic:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub BattleSnapshot);

        impl Event for $name {
            const TOPIC: &'static str = $topic;
            const VERSION: u32 = 1;

            fn key(&self) -> String {
                self.0.battle_id.to_string()
            }

            fn validate(&self) -> Result<(), EventError> {
                check(&self.0)
            }
        }
    };
}

battle_event!(
    /// A battle was detected.
    BattleCreated,
    crate::topics::BATTLE_CREATED
);
battle_event!(
    /// A battle changed (kills, names, sides, overrides, reopened).
    BattleUpdated,
    crate::topics::BATTLE_UPDATED
);
battle_event!(
    /// A battle ended (no kill for the gap, by kill time).
    BattleEnded,
    crate::topics::BATTLE_ENDED
);
battle_event!(
    /// A battle was absorbed into `merged_into`.
    BattleMerged,
    crate::topics::BATTLE_MERGED
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Envelope;

    /// The Jorund fight of 2021-11-28, as the battle service summarises it.
    fn sample() -> BattleSnapshot {
        BattleSnapshot {
            battle_id: 96_990_001,
            status: BattleStatus::Active,
            merged_into: None,
            system_ids: vec![30_002_086, 30_002_087],
            region_ids: vec![10_000_025],
            security_types: vec!["nullsec".into()],
            start_time: "2021-11-28T10:21:49Z".parse().unwrap(),
            end_time: "2021-11-28T13:55:29Z".parse().unwrap(),
            total_kills: 1060,
            total_isk_destroyed: 1.5e11,
            pilots: 1591,
            multi_party: false,
            one_sided: false,
            sides: vec![BattleSideSnapshot {
                index: 0,
                pilots: 864,
                kills: 288,
                losses: 747,
                isk_destroyed: 4.0e10,
                isk_lost: 1.1e11,
                alliance_ids: vec![1_900_696_668, 99_003_581],
                corporation_ids: vec![98_388_312],
            }],
            revision: 7,
        }
    }

    /// The wire form the search and notification services code against.
    const GOLDEN_V1: &str = r#"{"battle_id":96990001,"status":"active","system_ids":[30002086,30002087],"region_ids":[10000025],"security_types":["nullsec"],"start_time":"2021-11-28T10:21:49Z","end_time":"2021-11-28T13:55:29Z","total_kills":1060,"total_isk_destroyed":150000000000.0,"pilots":1591,"multi_party":false,"one_sided":false,"sides":[{"index":0,"pilots":864,"kills":288,"losses":747,"isk_destroyed":40000000000.0,"isk_lost":110000000000.0,"alliance_ids":[1900696668,99003581],"corporation_ids":[98388312]}],"revision":7}"#;

    const GOLDEN_MERGED_V1: &str = r#"{"battle_id":96990001,"status":"merged","merged_into":96980000,"system_ids":[30002086,30002087],"region_ids":[10000025],"security_types":["nullsec"],"start_time":"2021-11-28T10:21:49Z","end_time":"2021-11-28T13:55:29Z","total_kills":1060,"total_isk_destroyed":150000000000.0,"pilots":1591,"multi_party":false,"one_sided":false,"sides":[{"index":0,"pilots":864,"kills":288,"losses":747,"isk_destroyed":40000000000.0,"isk_lost":110000000000.0,"alliance_ids":[1900696668,99003581],"corporation_ids":[98388312]}],"revision":7}"#;

    #[test]
    fn golden_json_v1_is_stable_both_ways() {
        let created = BattleCreated(sample());
        assert_eq!(serde_json::to_string(&created).unwrap(), GOLDEN_V1);
        let back: BattleCreated = serde_json::from_str(GOLDEN_V1).unwrap();
        assert_eq!(back, created);

        let mut merged = sample();
        merged.status = BattleStatus::Merged;
        merged.merged_into = Some(96_980_000);
        let merged = BattleMerged(merged);
        assert_eq!(serde_json::to_string(&merged).unwrap(), GOLDEN_MERGED_V1);
        let back: BattleMerged = serde_json::from_str(GOLDEN_MERGED_V1).unwrap();
        assert_eq!(back, merged);
    }

    #[test]
    fn envelopes_are_keyed_by_battle_id_on_their_topics() {
        let t = "2026-12-01T00:00:01Z".parse().unwrap();
        let env = Envelope::wrap(&BattleUpdated(sample()), t).unwrap();
        assert_eq!(env.key, "96990001");
        assert_eq!(env.event_type, "battle.updated");
        let back: BattleUpdated = Envelope::from_bytes(&env.to_bytes())
            .unwrap()
            .decode()
            .unwrap();
        assert_eq!(back.0, sample());
        assert_eq!(
            Envelope::wrap(&BattleCreated(sample()), t)
                .unwrap()
                .event_type,
            "battle.created"
        );
        assert_eq!(
            Envelope::wrap(&BattleEnded(sample()), t)
                .unwrap()
                .event_type,
            "battle.ended"
        );
        // An updated envelope is not a created one.
        assert!(
            Envelope::from_bytes(&env.to_bytes())
                .unwrap()
                .decode::<BattleCreated>()
                .is_err()
        );
    }

    #[test]
    fn invalid_snapshots_are_refused() {
        let t = "2026-12-01T00:00:01Z".parse().unwrap();
        let mut s = sample();
        s.merged_into = Some(1);
        assert!(Envelope::wrap(&BattleUpdated(s), t).is_err());
        let mut s = sample();
        s.status = BattleStatus::Merged;
        assert!(Envelope::wrap(&BattleMerged(s), t).is_err());
        let mut s = sample();
        s.end_time = "2021-11-28T10:00:00Z".parse().unwrap();
        assert!(Envelope::wrap(&BattleEnded(s), t).is_err());
        let mut s = sample();
        s.battle_id = 0;
        assert!(Envelope::wrap(&BattleCreated(s), t).is_err());
    }
}
