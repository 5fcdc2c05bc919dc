//! Glue between the service and the pure clustering core (`bs-clustering`): no IO, no clock.
//!
//! * [`adapter`]: `killmail.enriched` → [`bs_clustering::ClusterKill`] plus what the store keeps.
//! * [`geo`]: stargate adjacency and region/security lookups over the static data.
//! * [`engine`]: the incremental clusterer with public battle ids, turning its events into
//!   storage operations ([`engine::BattleOp`]).
//! * [`snapshot`]: sides, report and event summary of one battle from its killmails.
//!
//! Architecture invariant: the algorithm lives in `bs-clustering`; this module only maps types
//! and ids. Time is always a parameter.

pub mod adapter;
pub mod engine;
pub mod geo;
pub mod snapshot;

pub use adapter::{NameRow, StoredKill, from_enriched};
pub use engine::{BattleOp, Engine, EngineSettings, EngineStats, WorkingSet};
pub use geo::Geo;
