//! BattleScope's battle core: clustering killmails into battles, splitting participants into
//! sides and building battle reports.
//!
//! **Architecture invariant:** this crate does no IO and never reads the clock. Time is a
//! parameter (`now` in [`Clusterer::tick`]), battles are built on kill time only, and the result
//! depends only on the *set* of killmails, never on their arrival order.
//!
//! * [`model`] — the input, [`ClusterKill`].
//! * [`clusterer`] — the incremental [`Clusterer`] and its [`BattleEvent`]s.
//! * [`sides`] — [`assign_sides`].
//! * [`report`] — [`build_report`].
//! * [`graph`] — stargate adjacency ([`SystemGraph`]).
//! * [`esi`] — an ESI-JSON adapter over a [`esi::TypeInfo`] lookup.

pub mod clusterer;
pub mod esi;
pub mod graph;
pub mod model;
pub mod report;
pub mod sides;

pub use clusterer::{
    BattleEvent, BattleId, BattleSummary, ClusterSettings, ClusterStats, Clusterer,
};
pub use graph::{AdjacencyMap, NoAdjacency, SecurityType, SystemGraph, SystemInfo};
pub use model::{ClusterAttacker, ClusterKill, ClusterVictim, Ship, ShipClass, TimeMs};
pub use report::{BattleReport, Participant, SideReport, build_report, zkb_related_link};
pub use sides::{Entity, Side, SideOverride, SideSettings, SideTarget, Sides, assign_sides};
