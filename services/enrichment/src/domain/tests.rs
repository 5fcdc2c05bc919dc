//! Unit tests of the pure enrichment, on a real killmail and the bundled SDE.

use std::collections::HashMap;

use bs_domain::{Killmail, KillmailSource, Zkb};
use bs_sde::{MarketPrices, StaticData};

use super::*;

/// Killmail 96977835 (EVE Ref, 2021-11-27): a Reaper killed by a Hecate and a structure-ish
/// second attacker in the same player corporation.
const REAL: &str = r#"{"attackers":[{"alliance_id":386292982,"corporation_id":1089040789,"damage_done":0,"final_blow":false,"security_status":0,"ship_type_id":26888},{"alliance_id":386292982,"character_id":1370443714,"corporation_id":1089040789,"damage_done":536,"final_blow":true,"security_status":-1.5,"ship_type_id":35683,"weapon_type_id":3178}],"killmail_id":96977835,"killmail_time":"2021-11-27T20:43:47Z","solar_system_id":30002355,"victim":{"character_id":2119401469,"corporation_id":1000170,"damage_taken":536,"items":[{"flag":19,"item_type_id":21857,"quantity_destroyed":1,"singleton":0},{"flag":27,"item_type_id":3636,"quantity_dropped":1,"singleton":0}],"ship_type_id":588}}"#;

fn km() -> Killmail {
    serde_json::from_str(REAL).unwrap()
}

fn run(
    km: &Killmail,
    zkb: Option<&Zkb>,
    names: &HashMap<i64, Option<String>>,
    extra_types: &HashMap<i64, Option<ExtraType>>,
    extra_systems: &HashMap<i64, Option<ExtraSystem>>,
) -> Enriched {
    let catalog = Catalog {
        sde: StaticData::bundled(),
        extra_types,
        extra_systems,
        names,
        prices: MarketPrices::bundled(),
    };
    enrich(
        Input {
            killmail: km,
            hash: "abc",
            zkb,
            source: KillmailSource::Everef,
        },
        &catalog,
    )
}

#[test]
fn static_fields_come_from_the_sde_and_names_are_reported_missing() {
    let km = km();
    let e = run(&km, None, &HashMap::new(), &HashMap::new(), &HashMap::new());
    let ev = &e.event;
    let sde = StaticData::bundled();
    let system = sde.system(30_002_355).unwrap();
    assert_eq!(ev.system.name.as_deref(), Some(system.name.as_str()));
    assert_eq!(
        ev.system.region_name.as_deref(),
        Some(system.region_name.as_str())
    );
    assert_eq!(
        ev.system.security_type.as_deref(),
        Some(system.security_type.as_str())
    );
    assert_eq!(ev.victim.ship.type_name.as_deref(), Some("Reaper"));
    assert!(ev.victim.ship.group_name.is_some());
    // The victim's NPC corporation is named from the SDE, not ESI.
    assert!(ev.victim.who.corporation_name.is_some());
    assert!(!e.missing.names.contains(&1_000_170));
    // Players' ids are missing until ESI answers.
    for id in [2_119_401_469, 1_370_443_714, 1_089_040_789, 386_292_982] {
        assert!(e.missing.names.contains(&id), "{id} should be missing");
    }
    assert!(ev.names_pending);
    assert!(e.missing.types.is_empty() && e.missing.systems.is_empty());
    // Final blow first, whatever ESI's order was.
    assert!(ev.attackers[0].final_blow);
    assert_eq!(ev.attackers[0].weapon_type_id, Some(3178));
    assert!(ev.attackers[0].weapon_type_name.is_some());
    assert_eq!(ev.attacker_count, 2);
    assert_eq!(ev.pilot_count, 2);
    assert_eq!(ev.isk.value_source, "computed");
    assert!(ev.isk.total > 0.0);
    assert!((ev.isk.total - ev.isk.destroyed - ev.isk.dropped).abs() < 1e-6);
}

#[test]
fn known_names_fill_in_and_nonexistent_ids_are_not_pending() {
    let km = km();
    let mut names: HashMap<i64, Option<String>> = HashMap::new();
    names.insert(2_119_401_469, Some("Victim Pilot".into()));
    names.insert(1_370_443_714, Some("Killer".into()));
    names.insert(1_089_040_789, Some("Some Corp".into()));
    names.insert(386_292_982, None);
    let e = run(&km, None, &names, &HashMap::new(), &HashMap::new());
    assert!(e.missing.is_empty());
    assert!(!e.event.names_pending);
    assert_eq!(
        e.event.victim.who.character_name.as_deref(),
        Some("Victim Pilot")
    );
    assert_eq!(
        e.event.attackers[0].who.corporation_name.as_deref(),
        Some("Some Corp")
    );
    assert_eq!(e.event.attackers[0].who.alliance_name, None);
}

#[test]
fn zkb_values_win_over_computed_ones() {
    let km = km();
    let zkb = Zkb {
        total_value: Some(1_000_000.0),
        dropped_value: Some(250_000.0),
        destroyed_value: Some(750_000.0),
        solo: true,
        ..Zkb::default()
    };
    let e = run(
        &km,
        Some(&zkb),
        &HashMap::new(),
        &HashMap::new(),
        &HashMap::new(),
    );
    assert_eq!(e.event.isk.value_source, "zkb");
    assert_eq!(e.event.isk.total, 1_000_000.0);
    assert_eq!(e.event.isk.dropped, 250_000.0);
    assert!(e.event.zkb.as_ref().unwrap().solo);
}

#[test]
fn unknown_types_and_systems_fall_back_to_what_esi_said() {
    let mut km = km();
    km.victim.ship_type_id = 999_999_001;
    km.solar_system_id = 39_999_999;
    let e = run(&km, None, &HashMap::new(), &HashMap::new(), &HashMap::new());
    assert!(e.missing.types.contains(&999_999_001));
    assert!(e.missing.systems.contains(&39_999_999));
    assert_eq!(e.event.victim.ship.type_name, None);
    assert_eq!(e.event.system.security_type, None);

    let types = HashMap::from([(
        999_999_001,
        Some(ExtraType {
            name: "New Ship".into(),
            group_id: 25,
        }),
    )]);
    // A constellation that exists in the SDE, so the region follows from it.
    let jita = StaticData::bundled().system(30_000_142).unwrap();
    let systems = HashMap::from([(
        39_999_999,
        Some(ExtraSystem {
            name: "New System".into(),
            constellation_id: jita.constellation_id,
            security_status: 0.3,
        }),
    )]);
    let e = run(&km, None, &HashMap::new(), &types, &systems);
    assert!(e.missing.types.is_empty() && e.missing.systems.is_empty());
    assert_eq!(e.event.victim.ship.type_name.as_deref(), Some("New Ship"));
    assert_eq!(e.event.victim.ship.group_name.as_deref(), Some("Frigate"));
    assert_eq!(
        e.event.system.region_name.as_deref(),
        Some(jita.region_name.as_str())
    );
    assert_eq!(e.event.system.security_type.as_deref(), Some("lowsec"));

    // "Does not exist" answers stop the asking.
    let types = HashMap::from([(999_999_001, None)]);
    let systems = HashMap::from([(39_999_999, None)]);
    let e = run(&km, None, &HashMap::new(), &types, &systems);
    assert!(e.missing.types.is_empty() && e.missing.systems.is_empty());
}

#[test]
fn wormhole_identity_survives_an_unknown_system() {
    let mut km = km();
    km.solar_system_id = 31_999_998;
    let e = run(&km, None, &HashMap::new(), &HashMap::new(), &HashMap::new());
    assert_eq!(e.event.system.security_type.as_deref(), Some("wormhole"));
}

#[test]
fn enrichment_is_deterministic_under_attacker_order() {
    let km1 = km();
    let mut km2 = km();
    km2.attackers.reverse();
    let a = run(
        &km1,
        None,
        &HashMap::new(),
        &HashMap::new(),
        &HashMap::new(),
    );
    let b = run(
        &km2,
        None,
        &HashMap::new(),
        &HashMap::new(),
        &HashMap::new(),
    );
    assert_eq!(a, b);
}
