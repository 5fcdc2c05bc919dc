//! Rulesets: optional filters applied to new killmails at ingestion.
//!
//! Order (as in the earlier BattleScope): minimum pilots, tracked systems,
//! tracked security types, then — only with `only_tracked_entities` — tracked
//! alliances/corporations/characters as victim or any attacker. An empty list
//! is no filter, so the default ruleset accepts everything.

use bs_domain::Killmail;
use bs_sde::SecurityType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::validate::{RejectReason, Rejection};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ruleset {
    /// Distinct player pilots (victim + attackers) at least this many; 0 = off.
    pub min_pilots: u32,
    pub tracked_system_ids: Vec<i64>,
    pub tracked_security_types: Vec<SecurityType>,
    pub tracked_alliance_ids: Vec<i64>,
    pub tracked_corporation_ids: Vec<i64>,
    pub tracked_character_ids: Vec<i64>,
    /// Keep only killmails involving a tracked alliance, corporation or character.
    pub only_tracked_entities: bool,
    /// Set by the store on save.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RulesetError {
    #[error("only_tracked_entities needs at least one tracked alliance, corporation or character")]
    NothingTracked,
    #[error("min_pilots {0} is above the largest fights ever seen (10000)")]
    MinPilotsTooLarge(u32),
}

impl Ruleset {
    /// Checks the ruleset is coherent before it is saved.
    pub fn check(&self) -> Result<(), RulesetError> {
        if self.only_tracked_entities
            && self.tracked_alliance_ids.is_empty()
            && self.tracked_corporation_ids.is_empty()
            && self.tracked_character_ids.is_empty()
        {
            return Err(RulesetError::NothingTracked);
        }
        if self.min_pilots > 10_000 {
            return Err(RulesetError::MinPilotsTooLarge(self.min_pilots));
        }
        Ok(())
    }

    /// True when the ruleset needs the system's security class.
    pub fn needs_security(&self) -> bool {
        !self.tracked_security_types.is_empty()
    }

    /// Applies the filters; `security` is the killmail system's class (unknown: `None`).
    pub fn evaluate(&self, km: &Killmail, security: Option<SecurityType>) -> Result<(), Rejection> {
        if self.min_pilots > 0 {
            let pilots = km.pilot_count();
            if pilots < self.min_pilots as usize {
                return Err(Rejection::new(
                    RejectReason::MinPilots,
                    format!("{pilots} pilots < {}", self.min_pilots),
                ));
            }
        }
        if !self.tracked_system_ids.is_empty()
            && !self.tracked_system_ids.contains(&km.solar_system_id)
        {
            return Err(Rejection::new(
                RejectReason::UntrackedSystem,
                format!("system {} is not tracked", km.solar_system_id),
            ));
        }
        if !self.tracked_security_types.is_empty() {
            match security {
                Some(s) if self.tracked_security_types.contains(&s) => {}
                Some(s) => {
                    return Err(Rejection::new(
                        RejectReason::UntrackedSecurity,
                        format!("{s} space is not tracked"),
                    ));
                }
                None => {
                    return Err(Rejection::new(
                        RejectReason::UntrackedSecurity,
                        format!("security of system {} is unknown", km.solar_system_id),
                    ));
                }
            }
        }
        if self.only_tracked_entities && !self.involves_tracked(km) {
            return Err(Rejection::new(
                RejectReason::UntrackedEntity,
                "no tracked alliance, corporation or character",
            ));
        }
        Ok(())
    }

    fn involves_tracked(&self, km: &Killmail) -> bool {
        let hit = |a: Option<i64>, c: Option<i64>, ch: Option<i64>| {
            a.is_some_and(|x| self.tracked_alliance_ids.contains(&x))
                || c.is_some_and(|x| self.tracked_corporation_ids.contains(&x))
                || ch.is_some_and(|x| self.tracked_character_ids.contains(&x))
        };
        let v = &km.victim;
        hit(v.alliance_id, v.corporation_id, v.character_id)
            || km
                .attackers
                .iter()
                .any(|a| hit(a.alliance_id, a.corporation_id, a.character_id))
    }
}
