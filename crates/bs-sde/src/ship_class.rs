//! Player-facing ship classes derived from SDE group and category ids.
//!
//! The mapping is a fixed table over the group ids of category 6 (Ship) in SDE build 3650286,
//! plus whole categories for things that die on killmails without being ships:
//!
//! | class | groups (category 6) / categories |
//! |---|---|
//! | frigate | 25 Frigate, 237 Corvette (rookie ships), 324 Assault Frigate, 830 Covert Ops, 831 Interceptor, 834 Stealth Bomber, 893 Electronic Attack Ship, 1022 Prototype Exploration Ship, 1283 Expedition Frigate, 1527 Logistics Frigate |
//! | destroyer | 420 Destroyer, 541 Interdictor, 1305 Tactical Destroyer, 1534 Command Destroyer |
//! | cruiser | 26 Cruiser, 358 Heavy Assault Cruiser, 832 Logistics, 833 Force Recon, 894 Heavy Interdiction Cruiser, 906 Combat Recon, 963 Strategic Cruiser, 1972 Flag Cruiser, 5087 Special Edition Yachts |
//! | battlecruiser | 419 Combat Battlecruiser, 540 Command Ship, 1201 Attack Battlecruiser |
//! | battleship | 27 Battleship, 381 Elite Battleship, 898 Black Ops, 900 Marauder |
//! | capital | 485 Dreadnought, 547 Carrier, 883 Capital Industrial Ship (Rorqual), 1538 Force Auxiliary, 4594 Lancer Dreadnought, 5120 Command Carrier |
//! | supercapital | 659 Supercarrier |
//! | titan | 30 Titan |
//! | freighter | 513 Freighter, 902 Jump Freighter |
//! | industrial | 28 Hauler, 380 Deep Space Transport, 941 Industrial Command Ship, 1202 Blockade Runner, 4902 Expedition Command Ship |
//! | mining | 463 Mining Barge, 543 Exhumer (mining frigates stay frigates) |
//! | shuttle | 31 Shuttle |
//! | capsule | 29 Capsule |
//! | structure | categories 65 Structure (Upwell), 23 Starbase, 40 Sovereignty Structures, 46 Orbitals |
//! | deployable | category 22 Deployable (depots, bubbles, cyno beacons ...) |
//! | fighter | category 87 Fighter |
//! | drone | category 18 Drone |
//! | other | anything else, including unknown ship groups added after the table was written |
//!
//! Unknown groups in category 6 map to `Other` deliberately: a wrong guess ("cruiser") would
//! be worse in a battle report than an honest "other".

use serde::{Deserialize, Serialize};

/// The category id of ships.
pub const CATEGORY_SHIP: i64 = 6;
/// The group id of capsules (pods).
pub const GROUP_CAPSULE: i64 = 29;
/// Categories whose items are structures (Upwell, starbase, sovereignty, orbitals).
pub const STRUCTURE_CATEGORIES: [i64; 4] = [65, 23, 40, 46];

/// Player-facing ship class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShipClass {
    Frigate,
    Destroyer,
    Cruiser,
    Battlecruiser,
    Battleship,
    Capital,
    Supercapital,
    Titan,
    Freighter,
    Industrial,
    Mining,
    Shuttle,
    Capsule,
    Structure,
    Deployable,
    Fighter,
    Drone,
    Other,
}

impl ShipClass {
    /// Every class, in display order.
    pub const ALL: [ShipClass; 18] = [
        ShipClass::Frigate,
        ShipClass::Destroyer,
        ShipClass::Cruiser,
        ShipClass::Battlecruiser,
        ShipClass::Battleship,
        ShipClass::Capital,
        ShipClass::Supercapital,
        ShipClass::Titan,
        ShipClass::Freighter,
        ShipClass::Industrial,
        ShipClass::Mining,
        ShipClass::Shuttle,
        ShipClass::Capsule,
        ShipClass::Structure,
        ShipClass::Deployable,
        ShipClass::Fighter,
        ShipClass::Drone,
        ShipClass::Other,
    ];

    /// The lowercase wire name, the same as serde's.
    pub fn as_str(self) -> &'static str {
        match self {
            ShipClass::Frigate => "frigate",
            ShipClass::Destroyer => "destroyer",
            ShipClass::Cruiser => "cruiser",
            ShipClass::Battlecruiser => "battlecruiser",
            ShipClass::Battleship => "battleship",
            ShipClass::Capital => "capital",
            ShipClass::Supercapital => "supercapital",
            ShipClass::Titan => "titan",
            ShipClass::Freighter => "freighter",
            ShipClass::Industrial => "industrial",
            ShipClass::Mining => "mining",
            ShipClass::Shuttle => "shuttle",
            ShipClass::Capsule => "capsule",
            ShipClass::Structure => "structure",
            ShipClass::Deployable => "deployable",
            ShipClass::Fighter => "fighter",
            ShipClass::Drone => "drone",
            ShipClass::Other => "other",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        ShipClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for ShipClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class for a group id and its category id (see the module table).
pub fn ship_class_for(group_id: i64, category_id: i64) -> ShipClass {
    match category_id {
        CATEGORY_SHIP => ship_group_class(group_id),
        65 | 23 | 40 | 46 => ShipClass::Structure,
        22 => ShipClass::Deployable,
        87 => ShipClass::Fighter,
        18 => ShipClass::Drone,
        _ => ShipClass::Other,
    }
}

fn ship_group_class(group_id: i64) -> ShipClass {
    match group_id {
        25 | 237 | 324 | 830 | 831 | 834 | 893 | 1022 | 1283 | 1527 => ShipClass::Frigate,
        420 | 541 | 1305 | 1534 => ShipClass::Destroyer,
        26 | 358 | 832 | 833 | 894 | 906 | 963 | 1972 | 5087 => ShipClass::Cruiser,
        419 | 540 | 1201 => ShipClass::Battlecruiser,
        27 | 381 | 898 | 900 => ShipClass::Battleship,
        485 | 547 | 883 | 1538 | 4594 | 5120 => ShipClass::Capital,
        659 => ShipClass::Supercapital,
        30 => ShipClass::Titan,
        513 | 902 => ShipClass::Freighter,
        28 | 380 | 941 | 1202 | 4902 => ShipClass::Industrial,
        463 | 543 => ShipClass::Mining,
        31 => ShipClass::Shuttle,
        GROUP_CAPSULE => ShipClass::Capsule,
        _ => ShipClass::Other,
    }
}
