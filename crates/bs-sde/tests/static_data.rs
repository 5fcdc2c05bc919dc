//! Lookups on the embedded bundle: types, ship classes, map, stargate graph, NPC helpers,
//! and coverage of every real killmail in the repository.

use std::collections::BTreeSet;

use bs_sde::{ShipClass, StaticData};

use crate::common::{repo_killmails, repo_path};

#[test]
fn types_groups_categories_resolve() {
    let sde = StaticData::bundled();
    let rifter = sde.type_info(587).expect("Rifter");
    assert_eq!(rifter.name, "Rifter");
    assert!(rifter.published);
    let group = sde.type_group(587).expect("group");
    assert_eq!(
        (group.id, group.name.as_str(), group.category_id),
        (25, "Frigate", 6)
    );
    assert_eq!(sde.type_category(587).expect("category").name, "Ship");
    assert_eq!(sde.category(6).expect("category 6").name, "Ship");
    // Ships from the newer type list (2025–26), merged over the older SDE.
    for (id, name) in [
        (85062, "Sidewinder"),
        (85086, "Cenotaph"),
        (85087, "Tholos"),
        (89607, "Odysseus"),
        (92822, "Salvation"),
    ] {
        assert_eq!(
            sde.type_info(id).map(|t| t.name.as_str()),
            Some(name),
            "type {id}"
        );
    }
    // Unknown ids are None, never a panic.
    assert!(sde.type_info(-1).is_none());
    assert!(sde.type_info(i64::MAX).is_none());
    assert!(sde.group(-5).is_none());
    assert!(sde.ship_class(-1).is_none());
    // Type 0 is CCP's "#System" placeholder: known, but not a ship.
    assert_eq!(sde.ship_class(0), Some(ShipClass::Other));
}

#[test]
fn ship_classes_of_known_hulls() {
    let sde = StaticData::bundled();
    let cases = [
        (587, ShipClass::Frigate),         // Rifter
        (16236, ShipClass::Destroyer),     // Coercer
        (621, ShipClass::Cruiser),         // Caracal
        (12005, ShipClass::Cruiser),       // Ishtar (HAC)
        (24700, ShipClass::Battlecruiser), // Myrmidon
        (24702, ShipClass::Battlecruiser), // Hurricane
        (641, ShipClass::Battleship),      // Megathron
        (24690, ShipClass::Battleship),    // Hyperion
        (19720, ShipClass::Capital),       // Revelation (dreadnought)
        (23913, ShipClass::Supercapital),  // Nyx
        (11567, ShipClass::Titan),         // Avatar
        (20183, ShipClass::Freighter),     // Providence
        (648, ShipClass::Industrial),      // Badger
        (17478, ShipClass::Mining),        // Retriever
        (11129, ShipClass::Shuttle),       // Gallente Shuttle
        (670, ShipClass::Capsule),         // Capsule
        (35832, ShipClass::Structure),     // Astrahus
        (89607, ShipClass::Industrial),    // Odysseus (expedition command ship)
        (92822, ShipClass::Capital),       // Salvation (command carrier)
    ];
    for (id, class) in cases {
        let name = &sde.type_info(id).expect("type").name;
        assert_eq!(sde.ship_class(id), Some(class), "{id} {name}");
    }
    assert!(sde.is_capsule(670));
    assert!(!sde.is_capsule(587));
    assert!(sde.is_structure(35832));
    assert!(!sde.is_structure(587));
    assert_eq!(
        serde_json::to_value(ShipClass::Battlecruiser).unwrap(),
        serde_json::json!("battlecruiser")
    );
    for c in ShipClass::ALL {
        assert_eq!(ShipClass::parse(c.as_str()), Some(c));
    }
}

#[test]
fn every_published_ship_has_a_real_class() {
    let sde = StaticData::bundled();
    let mut unmapped = BTreeSet::new();
    let mut ships = 0;
    for t in sde.types() {
        let Some(g) = sde.group(t.group_id) else {
            continue;
        };
        if g.category_id == 6 && t.published {
            ships += 1;
            if sde.ship_class(t.id) == Some(ShipClass::Other) {
                unmapped.insert((g.id, g.name.clone()));
            }
        }
    }
    assert!(ships > 400, "only {ships} published ships");
    assert!(
        unmapped.is_empty(),
        "ship groups without a class: {unmapped:?}"
    );
}

#[test]
fn systems_carry_constellation_and_region() {
    let sde = StaticData::bundled();
    let jita = sde.system(30000142).expect("Jita");
    assert_eq!(jita.name, "Jita");
    assert_eq!(
        (jita.constellation_id, jita.constellation_name.as_str()),
        (20000020, "Kimotoro")
    );
    assert_eq!(
        (jita.region_id, jita.region_name.as_str()),
        (10000002, "The Forge")
    );
    assert!((jita.security_status - 0.945913116665).abs() < 1e-12);
    assert_eq!(sde.region(10000002).expect("region").name, "The Forge");
    assert_eq!(
        sde.constellation(20000020)
            .expect("constellation")
            .region_id,
        10000002
    );
    for s in sde.systems() {
        assert!(
            !s.region_name.is_empty() && !s.constellation_name.is_empty(),
            "{}",
            s.id
        );
    }
    assert!(sde.system(0).is_none());
}

#[test]
fn stargate_graph() {
    let sde = StaticData::bundled();
    // Expected values computed independently (Python BFS over mapSolarSystemJumps.csv).
    assert_eq!(
        sde.neighbours(30000142),
        &[
            30000138, 30000140, 30000143, 30000144, 30000145, 30001363, 30002780
        ]
    );
    assert_eq!(sde.jumps_between(30000142, 30000142), Some(0));
    assert_eq!(sde.jumps_between(30000142, 30002813), Some(4)); // Jita → Tama
    assert_eq!(sde.jumps_between(30000142, 30002187), Some(11)); // Jita → Amarr
    assert_eq!(sde.jumps_between(30002187, 30000142), Some(11));
    assert_eq!(sde.jumps_between(30000142, 30004759), Some(42)); // Jita → 1DQ1-A
    // Pochven is gated only internally; J-space has no gates.
    assert_eq!(sde.jumps_between(30000142, 30003504), None);
    assert_eq!(sde.jumps_between(30000142, 31000368), None);
    assert!(sde.neighbours(31000368).is_empty());
    assert_eq!(sde.jumps_between(30000142, 1), None);

    let within = sde.systems_within(30000142, 5);
    assert_eq!(within.len(), 133);
    assert_eq!(within[0], (30000142, 0));
    assert_eq!(sde.systems_within(30000142, 2).len(), 23);
    assert_eq!(sde.systems_within(30000142, 0), vec![(30000142, 0)]);
    let one: Vec<i64> = sde
        .systems_within(30000142, 1)
        .iter()
        .skip(1)
        .map(|p| p.0)
        .collect();
    assert_eq!(one, sde.neighbours(30000142));
    // Distances reported by systems_within agree with jumps_between.
    for &(s, d) in within.iter().step_by(7) {
        assert_eq!(sde.jumps_between(30000142, s), Some(d));
    }
    assert!(sde.systems_within(7, 3).is_empty());
    // Every link is symmetric.
    for s in sde.systems() {
        for &n in sde.neighbours(s.id) {
            assert!(
                sde.neighbours(n).contains(&s.id),
                "{} -> {n} not symmetric",
                s.id
            );
        }
    }
    assert_eq!(sde.stats().jumps, 6888);
}

#[test]
fn factions_and_npc_corporations() {
    let sde = StaticData::bundled();
    let caldari = sde.faction(500001).expect("Caldari State");
    assert_eq!(caldari.name, "Caldari State");
    assert_eq!(caldari.corporation_id, Some(1000035));
    let corp = sde.npc_corporation(1000035).expect("Caldari Navy");
    assert_eq!(corp.faction_id, Some(500001));
    assert!(sde.is_npc_corporation(1000035));
    assert!(sde.is_npc_corporation(1999999)); // in range, newer than the bundle
    assert!(!sde.is_npc_corporation(98000001));
    assert!(sde.is_faction(500024));
    assert!(!sde.is_faction(99000001));
}

#[test]
fn every_repo_killmail_resolves() {
    let sde = StaticData::bundled();
    let kills = repo_killmails();
    assert!(kills.len() > 2000, "{}", kills.len());
    for k in &kills {
        let ship = sde.type_info(k.ship_type_id).unwrap_or_else(|| {
            panic!("killmail {} ship {} unknown", k.killmail_id, k.ship_type_id)
        });
        assert!(!ship.name.is_empty());
        assert!(
            sde.type_group(k.ship_type_id).is_some(),
            "group of {}",
            ship.name
        );
        assert!(sde.ship_class(k.ship_type_id).is_some());
        let sys = sde
            .system(k.system_id)
            .unwrap_or_else(|| panic!("killmail {} system {} unknown", k.killmail_id, k.system_id));
        assert!(!sys.region_name.is_empty());
        for a in &k.attacker_ships {
            assert!(sde.type_info(*a).is_some(), "attacker ship {a}");
        }
    }
}

#[test]
fn load_dir_matches_embedded_and_is_deterministic() {
    let dir = repo_path("data/sde");
    let from_dir = StaticData::load_dir(&dir).expect("load data/sde");
    let embedded = StaticData::bundled();
    assert_eq!(from_dir.version(), embedded.version());
    assert_eq!(from_dir.stats(), embedded.stats());
    assert!(embedded.version().starts_with("sde"));

    // Reading and rewriting the bundle gives byte-identical files.
    let bundle = bs_sde::Bundle::read_dir(&dir).expect("read bundle");
    let tmp = tempfile::tempdir().expect("tempdir");
    bundle.write_dir(tmp.path()).expect("write");
    for entry in std::fs::read_dir(&dir).expect("ls") {
        let p = entry.expect("entry").path();
        let name = p.file_name().expect("name");
        assert_eq!(
            std::fs::read(&p).expect("read"),
            std::fs::read(tmp.path().join(name)).expect("read copy"),
            "{name:?} differs after rewrite"
        );
    }
    // from_bundle (no directory round trip) yields the same version.
    assert_eq!(
        StaticData::from_bundle(bundle).version(),
        embedded.version()
    );
}
