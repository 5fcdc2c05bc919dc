//! `killmail.deleted` and `battle.deleted`: data removed by a retention rule (or by
//! re-clustering, for battles that no longer exist), so downstream copies drop it too.
//!
//! # Contract (schema version 1)
//!
//! * Keyed by the killmail or battle id (per-id order holds on the bus), like the events that
//!   created the data, so a deletion is never overtaken by the creation it undoes.
//! * Idempotent: deleting what is already gone is a no-op for every consumer.
//! * `scope` (killmails) says which copy was deleted: `raw` (ingestion's stored ESI JSON) or
//!   `enriched` (enrichment's enriched killmail). Consumers holding derived data (search,
//!   notification history) drop the killmail on either: once one stage forgot it, it cannot be
//!   rebuilt.
//! * `reason` is `retention` (a retention rule), `recluster` (battles only: the battle
//!   dissolved when rebuilt with the current settings) or `manual`.
//! * Older consumers that only look at the key (search before this contract) keep working.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Event, EventError};

/// Why something was deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionReason {
    Retention,
    Recluster,
    Manual,
}

impl DeletionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retention => "retention",
            Self::Recluster => "recluster",
            Self::Manual => "manual",
        }
    }
}

/// A killmail removed from one service's store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KillmailDeleted {
    pub killmail_id: i64,
    /// Kill time of the deleted killmail (UTC).
    pub killmail_time: DateTime<Utc>,
    /// `raw` or `enriched`.
    pub scope: String,
    pub reason: DeletionReason,
}

impl Event for KillmailDeleted {
    const TOPIC: &'static str = crate::topics::KILLMAIL_DELETED;
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.killmail_id.to_string()
    }

    fn validate(&self) -> Result<(), EventError> {
        if self.killmail_id <= 0 {
            return Err(EventError::Invalid("killmail_id must be positive".into()));
        }
        if self.scope != "raw" && self.scope != "enriched" {
            return Err(EventError::Invalid(format!(
                "scope must be raw or enriched, not {:?}",
                self.scope
            )));
        }
        Ok(())
    }
}

/// A battle removed from the battle service (its id no longer answers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BattleDeleted {
    pub battle_id: i64,
    /// End (kill time) of the deleted battle.
    pub end_time: DateTime<Utc>,
    pub reason: DeletionReason,
}

impl Event for BattleDeleted {
    const TOPIC: &'static str = crate::topics::BATTLE_DELETED;
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.battle_id.to_string()
    }

    fn validate(&self) -> Result<(), EventError> {
        if self.battle_id <= 0 {
            return Err(EventError::Invalid("battle_id must be positive".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Envelope;

    #[test]
    fn deletions_round_trip_and_are_keyed_by_id() {
        let t: DateTime<Utc> = "2021-11-28T12:00:00Z".parse().unwrap();
        let k = KillmailDeleted {
            killmail_id: 96_977_835,
            killmail_time: t,
            scope: "raw".into(),
            reason: DeletionReason::Retention,
        };
        let env = Envelope::wrap(&k, t).unwrap();
        assert_eq!(env.event_type, "killmail.deleted");
        assert_eq!(env.key, "96977835");
        let back = Envelope::from_bytes(&env.to_bytes()).unwrap();
        assert_eq!(back.decode::<KillmailDeleted>().unwrap(), k);
        assert_eq!(
            serde_json::to_value(&k).unwrap(),
            serde_json::json!({"killmail_id": 96977835, "killmail_time": "2021-11-28T12:00:00Z", "scope": "raw", "reason": "retention"})
        );
        let b = BattleDeleted {
            battle_id: 42,
            end_time: t,
            reason: DeletionReason::Recluster,
        };
        let env = Envelope::wrap(&b, t).unwrap();
        assert_eq!(
            (env.event_type.as_str(), env.key.as_str()),
            ("battle.deleted", "42")
        );
        assert_eq!(env.decode::<BattleDeleted>().unwrap(), b);
    }

    #[test]
    fn invalid_deletions_are_refused() {
        let t: DateTime<Utc> = "2021-11-28T12:00:00Z".parse().unwrap();
        let bad = KillmailDeleted {
            killmail_id: 1,
            killmail_time: t,
            scope: "everything".into(),
            reason: DeletionReason::Manual,
        };
        assert!(Envelope::wrap(&bad, t).is_err());
        let bad = BattleDeleted {
            battle_id: 0,
            end_time: t,
            reason: DeletionReason::Retention,
        };
        assert!(Envelope::wrap(&bad, t).is_err());
    }
}
