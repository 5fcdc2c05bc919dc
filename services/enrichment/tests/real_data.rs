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
