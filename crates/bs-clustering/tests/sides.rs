//! Side assignment: determinism on real fights, awox, hangers-on, NPCs, third parties and
//! overrides.

use bs_clustering::{
    ClusterAttacker, ClusterKill, Entity, SideOverride, SideSettings, SideTarget, assign_sides,
    build_report,
};

use crate::engine::kill;
use crate::fights::load;

fn attacker(character: u64, alliance: u64, damage: u64) -> ClusterAttacker {
    ClusterAttacker {
        character_id: Some(character),
        corporation_id: Some(alliance * 10),
        alliance_id: Some(alliance),
        ship: None,
        damage_done: damage,
        final_blow: false,
        is_npc: false,
    }
}

/// `shooters` of `alliance` kill a pilot of `victim_alliance`.
fn hit(id: u64, shooters: &[(u64, u64, u64)], victim: u64, victim_alliance: u64) -> ClusterKill {
    let mut k = kill(id, id as f64 * 0.5, 30, &[], victim);
    k.victim.alliance_id = Some(victim_alliance);
    k.victim.corporation_id = Some(victim_alliance * 10);
    k.attackers = shooters
        .iter()
        .map(|&(c, a, d)| attacker(c, a, d))
        .collect();
    k.victim.damage_taken = k.attackers.iter().map(|a| a.damage_done).sum();
    if let Some(a) = k.attackers.first_mut() {
        a.final_blow = true;
    }
    k
}

/// Alliance 1 (pilots 1..=4) and alliance 2 (pilots 11..=14) trade kills.
fn two_fleets() -> Vec<ClusterKill> {
    let mut v = Vec::new();
    for i in 0..6u64 {
        v.push(hit(
            i + 1,
            &[(1, 1, 500), (2, 1, 400), (3, 1, 300)],
            11 + i % 4,
            2,
        ));
        v.push(hit(
            i + 20,
            &[(11, 2, 500), (12, 2, 400), (13, 2, 300)],
            1 + i % 4,
            1,
        ));
    }
    v
}

fn side(s: &bs_clustering::Sides, alliance: u64) -> Option<usize> {
    s.side_of_unit(Entity::Alliance(alliance))
}

#[test]
fn two_fleets_make_two_sides() {
    let kills = two_fleets();
    let refs: Vec<&ClusterKill> = kills.iter().collect();
    let s = assign_sides(&refs, &[], &SideSettings::default());
    assert_eq!(s.sides.len(), 2);
    assert_ne!(side(&s, 1), side(&s, 2));
    assert!(!s.multi_party && !s.one_sided);
}

#[test]
fn awox_hangers_on_and_npcs_do_not_flip_a_side() {
    let mut kills = two_fleets();
    // Awox: pilot 1 kills pilot 2 of its own alliance.
    kills.push(hit(50, &[(1, 1, 5000)], 2, 1));
    // A hanger-on of alliance 3 whores on kills of both fleets with 1 % of the damage.
    kills.push(hit(51, &[(1, 1, 990), (31, 3, 10)], 12, 2));
    kills.push(hit(52, &[(11, 2, 990), (31, 3, 10)], 3, 1));
    // NPCs doing most of the damage on a kill of alliance 2.
    let mut npc = hit(53, &[(1, 1, 100)], 13, 2);
    npc.attackers.push(ClusterAttacker {
        character_id: None,
        corporation_id: Some(1_000_125),
        damage_done: 9000,
        is_npc: true,
        ..ClusterAttacker::default()
    });
    kills.push(npc);
    let refs: Vec<&ClusterKill> = kills.iter().collect();
    let s = assign_sides(&refs, &[], &SideSettings::default());
    assert_ne!(side(&s, 1), side(&s, 2), "{s:?}");
    // The awox loss is still a loss of alliance 1, and nobody's kill.
    let r = build_report(&refs, &s);
    let a1 = side(&s, 1).expect("side");
    assert_eq!(
        r.sides[a1].losses, 8,
        "6 traded, 1 awox, 1 with the hanger-on"
    );
    assert_eq!(r.sides[a1].kills, 8);
}

#[test]
fn a_third_party_shooting_both_gets_its_own_side() {
    let mut kills = two_fleets();
    for i in 0..6u64 {
        kills.push(hit(60 + i, &[(41, 4, 500), (42, 4, 500)], 1 + i % 3, 1));
        kills.push(hit(70 + i, &[(41, 4, 500), (42, 4, 500)], 11 + i % 3, 2));
        kills.push(hit(80 + i, &[(1, 1, 500), (11, 2, 10)], 41 + i % 2, 4));
    }
    let refs: Vec<&ClusterKill> = kills.iter().collect();
    let s = assign_sides(&refs, &[], &SideSettings::default());
    let (a, b, c) = (side(&s, 1), side(&s, 2), side(&s, 4));
    assert!(a != b && b != c && a != c, "{s:?}");
    assert!(s.multi_party);
}

#[test]
fn overrides_win() {
    let kills = two_fleets();
    let refs: Vec<&ClusterKill> = kills.iter().collect();
    let overrides = [
        SideOverride {
            entity: Entity::Character(13),
            target: SideTarget::With(Entity::Alliance(1)),
        },
        SideOverride {
            entity: Entity::Corporation(10),
            target: SideTarget::Side(3),
        },
    ];
    let s = assign_sides(&refs, &overrides, &SideSettings::default());
    assert_eq!(s.side_of(Some(13), Some(20), Some(2)), side(&s, 1));
    assert_eq!(s.side_of(Some(12), Some(20), Some(2)), side(&s, 2));
    assert_eq!(s.side_of(Some(1), Some(10), Some(1)), Some(3));
    assert_eq!(s.sides.len(), 4);
}

#[test]
fn sides_are_deterministic_and_never_mirrored_on_a_real_fight() {
    let kills = load(&["repo:fight-uw9b-f-2021-11-30.jsonl.gz"]);
    let refs: Vec<&ClusterKill> = kills.iter().collect();
    let a = assign_sides(&refs, &[], &SideSettings::default());
    let mut rev = refs.clone();
    rev.reverse();
    let b = assign_sides(&rev, &[], &SideSettings::default());
    let mut rot = refs.clone();
    rot.rotate_left(77);
    let c = assign_sides(&rot, &[], &SideSettings::default());
    assert_eq!(a, b);
    assert_eq!(a, c);
    let ra = build_report(&refs, &a);
    let rc = build_report(&rot, &c);
    assert_eq!(ra, rc, "the report does not depend on row order");
}

#[test]
fn report_keeps_both_ships_of_a_reshipping_pilot() {
    let mut kills = two_fleets();
    // Pilot 1 dies in a frigate (type 587), then comes back in a cruiser (type 620).
    kills[1].victim.character_id = Some(1);
    let mut k = hit(99, &[(1, 1, 800), (2, 1, 200)], 14, 2);
    k.attackers[0].ship = Some(bs_clustering::Ship {
        type_id: 620,
        group_id: 26,
        class: bs_clustering::ShipClass::Cruiser,
    });
    kills.push(k);
    let refs: Vec<&ClusterKill> = kills.iter().collect();
    let s = assign_sides(&refs, &[], &SideSettings::default());
    let r = build_report(&refs, &s);
    let p = r
        .participants
        .iter()
        .find(|p| p.character_id == 1)
        .expect("pilot 1");
    let types: Vec<(u32, bool)> = p.ships.iter().map(|s| (s.ship_type_id, s.lost)).collect();
    assert_eq!(types, vec![(587, true), (620, false)]);
    assert!(p.lost);
    let side1 = &r.sides[p.side.expect("side")];
    assert_eq!(
        side1
            .fielded_by_class
            .get(&bs_clustering::ShipClass::Cruiser),
        Some(&1)
    );
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Sides and the report are a function of the set of kills: any order gives the same result.
    #[test]
    fn sides_and_report_ignore_row_order(
        perm in Just((0..174usize).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        static KILLS: std::sync::OnceLock<Vec<ClusterKill>> = std::sync::OnceLock::new();
        let kills = KILLS.get_or_init(|| load(&["fight-x47l-q-2021-11-30.jsonl.gz"]));
        prop_assume!(kills.len() == perm.len());
        let refs: Vec<&ClusterKill> = kills.iter().collect();
        let shuffled: Vec<&ClusterKill> = perm.iter().map(|&i| &kills[i]).collect();
        let a = assign_sides(&refs, &[], &SideSettings::default());
        let b = assign_sides(&shuffled, &[], &SideSettings::default());
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(build_report(&refs, &a), build_report(&shuffled, &b));
    }
}
