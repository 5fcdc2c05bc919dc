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
//!
//! ```
//! use bs_clustering::*;
//!
//! // Six kills a minute apart in one system: a (small) battle.
//! let kills: Vec<ClusterKill> = (0..6)
//!     .map(|i| ClusterKill {
//!         killmail_id: 100 + i,
//!         time_ms: 1_638_000_000_000 + i as i64 * 60_000,
//!         system_id: 30001046,
//!         victim: ClusterVictim { character_id: Some(10 + i), alliance_id: Some(2), ..Default::default() },
//!         attackers: vec![ClusterAttacker {
//!             character_id: Some(1),
//!             alliance_id: Some(1),
//!             damage_done: 100,
//!             final_blow: true,
//!             ..Default::default()
//!         }],
//!         isk_value: 1e6,
//!         ..Default::default()
//!     })
//!     .collect();
//! let mut clusterer = Clusterer::new(ClusterSettings::default(), NoAdjacency);
//! let events = clusterer.insert_batch(kills.iter());
//! assert!(matches!(&events[..], [BattleEvent::Created { battle, .. }] if battle.id == BattleId(100)));
//! // Time is a parameter: 30 minutes after the last kill the battle has ended.
//! let ended = clusterer.tick(1_638_000_000_000 + 35 * 60_000);
//! assert!(matches!(&ended[..], [BattleEvent::Ended { .. }]));
//!
//! let rows: Vec<&ClusterKill> = kills.iter().collect();
//! let sides = assign_sides(&rows, &[], &SideSettings::default());
//! let report = build_report(&rows, &sides);
//! assert_eq!(report.total_kills, 6);
//! assert!(report.one_sided);
//! ```

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
