//! Real killmails through the whole pipeline (offline: SDE only, no ESI).

use bs_sde::StaticData;

use crate::helpers::*;

#[tokio::test]
async fn every_fixture_killmail_enriches_with_ship_group_system_and_region() {
    let events = fixture_killmails();
    let w = world(None, quick()).await;
    let report = feed(&w.enricher, &events, 500).await;
    assert_eq!(report.published, events.len());
    let sde = StaticData::bundled();
    let rows = stored(&w.db).await;
    assert_eq!(rows.len(), events.len());
    let mut attackers_checked = 0;
    for ev in &rows {
        let id = ev.killmail_id;
        let ship = &ev.victim.ship;
        assert!(
            ship.type_name.is_some(),
            "{id}: victim ship type {} has no name",
            ship.type_id
        );
        assert!(ship.group_name.is_some(), "{id}: victim ship group missing");
        assert!(ship.class.is_some(), "{id}: victim ship class missing");
        assert!(
            ev.system.name.is_some(),
            "{id}: system {} has no name",
            ev.system.id
        );
        assert!(ev.system.region_name.is_some(), "{id}: region missing");
        assert!(
            ev.system.constellation_name.is_some(),
            "{id}: constellation missing"
        );
        assert!(
            ev.system.security_status.is_some(),
            "{id}: security status missing"
        );
        let info = sde.system(ev.system.id).unwrap();
        assert_eq!(
            ev.system.security_type.as_deref(),
            Some(info.security_type.as_str())
        );
        assert!(ev.isk.total >= 0.0 && ev.isk.value_source == "computed");
        for a in &ev.attackers {
            if let Some(s) = &a.ship
                && sde.type_info(s.type_id).is_some()
            {
                assert!(
                    s.type_name.is_some() && s.group_name.is_some(),
                    "{id}: attacker ship {}",
                    s.type_id
                );
                attackers_checked += 1;
            }
            if let Some(w) = a.weapon_type_id
                && sde.type_info(w).is_some()
            {
                assert!(a.weapon_type_name.is_some(), "{id}: weapon {w}");
            }
            if let Some(f) = a.who.faction_id
                && sde.faction(f).is_some()
            {
                assert!(a.who.faction_name.is_some(), "{id}: faction {f}");
            }
            if let Some(c) = a.who.corporation_id
                && sde.npc_corporation(c).is_some()
            {
                assert!(a.who.corporation_name.is_some(), "{id}: npc corp {c}");
            }
        }
        // Offline, player names cannot be known: they are marked pending, never invented.
        if ev.victim.who.character_id.is_some() {
            assert!(ev.victim.who.character_name.is_none());
            assert!(ev.names_pending);
        }
    }
    assert!(
        attackers_checked > 1000,
        "only {attackers_checked} attacker ships checked"
    );
}

#[tokio::test]
async fn security_type_is_right_for_known_systems() {
    let sde = StaticData::bundled();
    let expected = [
        ("Jita", "highsec"),
        ("Amarr", "highsec"),
        ("Amamake", "lowsec"),
        ("Tama", "lowsec"),
        ("1DQ1-A", "nullsec"),
        ("Thera", "wormhole"),
        ("J105951", "wormhole"),
        ("Kino", "pochven"),
    ];
    let template = small_fight().remove(0);
    let mut events = Vec::new();
    for (i, (name, _)) in expected.iter().enumerate() {
        let system = sde
            .systems()
            .find(|s| s.name == *name)
            .unwrap_or_else(|| panic!("{name} not in the SDE"));
        let mut ev = template.clone();
        ev.killmail.killmail_id = 1_000_000_000 + i as i64;
        ev.killmail.solar_system_id = system.id;
        events.push(ev);
    }
    let w = world(None, quick()).await;
    feed(&w.enricher, &events, 100).await;
    let rows = stored(&w.db).await;
    for (row, (name, security)) in rows.iter().zip(expected) {
        assert_eq!(row.system.name.as_deref(), Some(name));
        assert_eq!(
            row.system.security_type.as_deref(),
            Some(security),
            "{name}"
        );
    }
}

/// The acceptance check on the whole 79k-killmail week of shared data (pure
/// enrichment, no database): no null ship, group, system or region name where the SDE has
/// the answer.
#[test]
fn every_killmail_of_the_shared_week_enriches() {
    use std::collections::HashMap;

    use bs_enrichment::domain::{Catalog, Input, enrich};

    let dir = std::env::var_os("BATTLESCOPE_SHARED_DATA")
        .map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
            Into::into,
        )
        .join("killmails");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p: &std::path::PathBuf| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("everef-killmails-"))
    });
    files.sort();
    if files.is_empty() {
        assert!(
            !bs_testkit::in_ci(),
            "shared killmail week missing under CI: {}",
            dir.display()
        );
        eprintln!("skipped: no shared killmail week in {}", dir.display());
        return;
    }
    let sde = StaticData::bundled();
    let (names, types, systems) = (HashMap::new(), HashMap::new(), HashMap::new());
    let catalog = Catalog {
        sde,
        extra_types: &types,
        extra_systems: &systems,
        names: &names,
        prices: bs_sde::MarketPrices::bundled(),
    };
    let mut total = 0;
    let mut unknown_to_sde = 0;
    for file in &files {
        for ev in read_killmails(file) {
            total += 1;
            let e = enrich(
                Input {
                    killmail: &ev.killmail,
                    hash: &ev.hash,
                    zkb: None,
                    source: ev.source,
                },
                &catalog,
            )
            .event;
            let id = e.killmail_id;
            if sde.type_info(e.victim.ship.type_id).is_some() {
                assert!(
                    e.victim.ship.type_name.is_some() && e.victim.ship.group_name.is_some(),
                    "{id}"
                );
            } else {
                unknown_to_sde += 1;
            }
            if sde.system(e.system.id).is_some() {
                assert!(
                    e.system.name.is_some() && e.system.region_name.is_some(),
                    "{id}"
                );
                assert!(e.system.security_type.is_some(), "{id}");
            } else {
                unknown_to_sde += 1;
            }
        }
    }
    assert!(
        total > 70_000,
        "only {total} killmails in {}",
        dir.display()
    );
    // The bundled SDE merges the newer type list: every ship and system of the week is known.
    assert_eq!(unknown_to_sde, 0);
}
