//! EVE id ranges (<https://developers.eveonline.com/docs/guides/id-ranges/>).
//!
//! Every id is an `i64`: old entities share one large range, so an id alone does
//! not always say what it is, and some new characters sit above 2^31.

/// The kind of an id where its range tells it unambiguously.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityKind {
    Faction,
    NpcCorporation,
    NpcCharacter,
    Region,
    Constellation,
    SolarSystem,
    Unknown,
}

impl EntityKind {
    /// Classifies an id by its documented range.
    pub fn of(id: i64) -> Self {
        match id {
            500_000..=599_999 => Self::Faction,
            1_000_000..=1_999_999 => Self::NpcCorporation,
            3_000_000..=3_999_999 => Self::NpcCharacter,
            10_000_000..=19_999_999 => Self::Region,
            20_000_000..=29_999_999 => Self::Constellation,
            30_000_000..=39_999_999 => Self::SolarSystem,
            _ => Self::Unknown,
        }
    }
}

/// NPC characters live in 3,000,000–3,999,999 (some NPC attackers carry one).
pub fn is_npc_character(id: i64) -> bool {
    EntityKind::of(id) == EntityKind::NpcCharacter
}

/// NPC corporations live in 1,000,000–1,999,999.
pub fn is_npc_corporation(id: i64) -> bool {
    EntityKind::of(id) == EntityKind::NpcCorporation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_classify_real_ids() {
        assert_eq!(EntityKind::of(30_000_142), EntityKind::SolarSystem); // Jita
        assert_eq!(EntityKind::of(31_000_368), EntityKind::SolarSystem); // J105951
        assert_eq!(EntityKind::of(10_000_002), EntityKind::Region); // The Forge
        assert!(is_npc_character(3_019_582));
        assert!(is_npc_corporation(1_000_274));
        assert!(!is_npc_corporation(98_000_001));
        assert_eq!(EntityKind::of(2_119_401_469), EntityKind::Unknown);
    }
}
