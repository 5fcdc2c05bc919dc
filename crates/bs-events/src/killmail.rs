//! Killmail events: `killmail.ingested` (ingestion → enrichment) and friends.

use bs_domain::{Killmail, KillmailSource, Zkb};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Event, EventError};

/// A killmail stored for the first time, or re-published upstream with changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KillmailIngested {
    /// The verbatim ESI killmail.
    pub killmail: Killmail,
    /// The killmail hash (ESI needs id + hash).
    pub hash: String,
    /// zKillboard's block when the source had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zkb: Option<Zkb>,
    pub source: KillmailSource,
    /// When ingestion stored it.
    pub ingested_at: DateTime<Utc>,
    /// True when this is an update of a killmail already ingested (R2Z2 `sequence_updated`).
    #[serde(default)]
    pub is_update: bool,
}

impl Event for KillmailIngested {
    const TOPIC: &'static str = crate::topics::KILLMAIL_INGESTED;
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.killmail.killmail_id.to_string()
    }

    fn validate(&self) -> Result<(), EventError> {
        if self.killmail.killmail_id <= 0 {
            return Err(EventError::Invalid("killmail_id must be positive".into()));
        }
        if self.killmail.attackers.is_empty() {
            return Err(EventError::Invalid(
                "a killmail has at least one attacker".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Envelope;

    fn sample() -> KillmailIngested {
        let km: Killmail = serde_json::from_str(
            r#"{"attackers":[{"damage_done":536,"final_blow":true,"security_status":-1.5,"ship_type_id":35683}],
            "killmail_id":96977835,"killmail_time":"2021-11-27T20:43:47Z","solar_system_id":30002355,
            "victim":{"damage_taken":536,"ship_type_id":588}}"#,
        )
        .unwrap();
        KillmailIngested {
            killmail: km,
            hash: "b2e5daacc5ac754ad9c32c02c6fbacee16126aef".into(),
            zkb: None,
            source: KillmailSource::Everef,
            ingested_at: "2026-12-01T00:00:00Z".parse().unwrap(),
            is_update: false,
        }
    }

    #[test]
    fn envelope_round_trips_and_checks_type_and_version() {
        let ev = sample();
        let env = Envelope::wrap(&ev, "2026-12-01T00:00:01Z".parse().unwrap()).unwrap();
        assert_eq!(env.key, "96977835");
        assert_eq!(env.event_type, "killmail.ingested");
        let back = Envelope::from_bytes(&env.to_bytes()).unwrap();
        assert_eq!(back.decode::<KillmailIngested>().unwrap(), ev);

        let mut newer = back.clone();
        newer.version = 2;
        assert!(matches!(
            newer.decode::<KillmailIngested>(),
            Err(EventError::UnsupportedVersion { .. })
        ));
        let mut wrong = back;
        wrong.event_type = "battle.created".into();
        assert!(matches!(
            wrong.decode::<KillmailIngested>(),
            Err(EventError::WrongType { .. })
        ));
    }

    #[test]
    fn invalid_payloads_are_refused_on_both_ends() {
        let mut ev = sample();
        ev.killmail.attackers.clear();
        assert!(Envelope::wrap(&ev, Utc::now()).is_err());
        assert!(Envelope::from_bytes(b"{not json").is_err());
    }
}
