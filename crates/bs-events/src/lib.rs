//! Versioned event envelopes and the payload schemas of every topic.
//!
//! This crate is the contract between services: each payload type names its
//! topic and schema version, and [`Envelope`] wraps it with an id, the time it
//! was produced and the partitioning key (the killmail or battle id, so
//! per-key order holds on the bus). Consumers decode with [`Envelope::decode`],
//! which checks the topic and refuses versions newer than they understand.

pub mod battle;
pub mod enriched;
pub mod killmail;
pub mod lifecycle;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use battle::{
    BattleCreated, BattleEnded, BattleMerged, BattleSideSnapshot, BattleSnapshot, BattleStatus,
    BattleUpdated,
};
pub use enriched::{
    Affiliation, EnrichedAttacker, EnrichedShip, EnrichedSystem, EnrichedVictim, IskValue,
    KillmailEnriched, ZkbFlags,
};
pub use killmail::KillmailIngested;
pub use lifecycle::{BattleDeleted, DeletionReason, KillmailDeleted};

/// Every topic BattleScope publishes.
pub mod topics {
    pub const KILLMAIL_INGESTED: &str = "killmail.ingested";
    pub const KILLMAIL_ENRICHED: &str = "killmail.enriched";
    pub const KILLMAIL_DELETED: &str = "killmail.deleted";
    pub const BATTLE_CREATED: &str = "battle.created";
    pub const BATTLE_UPDATED: &str = "battle.updated";
    pub const BATTLE_ENDED: &str = "battle.ended";
    pub const BATTLE_MERGED: &str = "battle.merged";
    pub const BATTLE_DELETED: &str = "battle.deleted";
    pub const NAMES_RESOLVED: &str = "names.resolved";

    /// All topics, for `ensure_topics` at start-up.
    pub const ALL: &[&str] = &[
        KILLMAIL_INGESTED,
        KILLMAIL_ENRICHED,
        KILLMAIL_DELETED,
        BATTLE_CREATED,
        BATTLE_UPDATED,
        BATTLE_ENDED,
        BATTLE_MERGED,
        BATTLE_DELETED,
        NAMES_RESOLVED,
    ];
}

/// A payload that can travel on the bus.
pub trait Event: Serialize + DeserializeOwned {
    /// The topic this payload is published on.
    const TOPIC: &'static str;
    /// The schema version this code writes; it reads every version up to it.
    const VERSION: u32;
    /// The partitioning key.
    fn key(&self) -> String;
    /// Checks invariants the type system cannot express.
    fn validate(&self) -> Result<(), EventError> {
        Ok(())
    }
}

/// The wire form of every event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub time: DateTime<Utc>,
    pub key: String,
    pub payload: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("expected event type {expected}, got {actual}")]
    WrongType {
        expected: &'static str,
        actual: String,
    },
    #[error(
        "event {event_type} version {version} is newer than this build understands ({supported})"
    )]
    UnsupportedVersion {
        event_type: String,
        version: u32,
        supported: u32,
    },
    #[error("invalid payload: {0}")]
    Invalid(String),
}

impl Envelope {
    /// Wraps a payload, validating it first. `time` is the production time
    /// (passed in: the caller owns the clock).
    pub fn wrap<E: Event>(payload: &E, time: DateTime<Utc>) -> Result<Self, EventError> {
        payload.validate()?;
        Ok(Self {
            id: Uuid::now_v7(),
            event_type: E::TOPIC.to_owned(),
            version: E::VERSION,
            time,
            key: payload.key(),
            payload: serde_json::to_value(payload)
                .map_err(|e| EventError::Invalid(e.to_string()))?,
        })
    }

    /// Serialises for the bus.
    pub fn to_bytes(&self) -> bytes::Bytes {
        // Serialising a Value-bearing struct cannot fail.
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EventError> {
        serde_json::from_slice(bytes).map_err(|e| EventError::Malformed(e.to_string()))
    }

    /// Decodes the payload as `E`, checking type and version.
    pub fn decode<E: Event>(&self) -> Result<E, EventError> {
        if self.event_type != E::TOPIC {
            return Err(EventError::WrongType {
                expected: E::TOPIC,
                actual: self.event_type.clone(),
            });
        }
        if self.version > E::VERSION {
            return Err(EventError::UnsupportedVersion {
                event_type: self.event_type.clone(),
                version: self.version,
                supported: E::VERSION,
            });
        }
        let payload: E = serde_json::from_value(self.payload.clone())
            .map_err(|e| EventError::Invalid(e.to_string()))?;
        payload.validate()?;
        Ok(payload)
    }
}
