//! The service core on real fights, without the bus: battles, sides, report fields,
//! redelivery, order, restart, merges and late names.

use std::collections::BTreeMap;

use bs_battle::domain::EngineSettings;
use bs_battle::store::{BattleQuery, BattleRow, Lookup, SortKey};
use bs_clustering::ClusterSettings;
use bs_events::{BattleStatus, KillmailEnriched};

use crate::helpers::*;

const PANDEMIC_HORDE: u64 = 99_005_338;
const GOONSWARM: u64 = 1_354_830_081;

/// Every stored battle, oldest first.
pub async fn all_rows(battles: &bs_battle::Battles) -> Vec<BattleRow> {
    let q = BattleQuery {
        sort: SortKey::StartTime,
        ascending: true,
        limit: 500,
        ..BattleQuery::default()
    };
    battles.store().battles(&q).await.unwrap().0
}

/// Ends quiet battles and publishes their sides and events.
pub async fn settle(battles: &bs_battle::Battles) {
    battles.tick().await.unwrap();
    battles.refresh().await.unwrap();
}

/// (start, end, kills) per battle: the membership, independent of ids.
fn shape(rows: &[BattleRow]) -> Vec<(i64, i64, u32, u32)> {
    let mut v: Vec<_> = rows
        .iter()
        .map(|r| (r.start_ms, r.end_ms, r.total_kills, r.pilots))
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn lxq2_t_battle_sides_and_report_fields() {
    let dir = bs_testkit::temp_dir();
    let battles = battles_in(dir.path(), EngineSettings::default()).await;
    let events = enriched(&fixture("lxq2-t"));
    let r = battles.ingest(&events).await.unwrap();
    assert_eq!(r.accepted, events.len());
    settle(&battles).await;
    let rows = all_rows(&battles).await;
    let big = rows.iter().max_by_key(|r| r.total_kills).unwrap();
    // The clustering snapshot has 265 kills with one PX-IHN kill this fixture lacks.
    assert_eq!(big.total_kills, 264);
    assert_eq!(big.system_ids, vec![30_002_355]);
    assert_eq!(big.security_types, vec!["nullsec".to_owned()]);
    assert_eq!(big.status, BattleStatus::Ended);
    assert_eq!(big.published_status, Some(BattleStatus::Ended));
    assert_eq!(
        bs_store::from_millis(big.start_ms).to_rfc3339(),
        "2021-11-27T20:58:00+00:00"
    );
    let report = battles.compute_report(big.battle_id).await.unwrap();
    assert_eq!(report.total_kills, big.total_kills);
    assert_eq!(report.pilots, big.pilots);
    assert_eq!(report.killmail_ids.len(), 264);
    assert!((report.total_isk_destroyed - big.total_isk).abs() < 1.0);
    assert_eq!(report.sides[0].alliance_ids[0], PANDEMIC_HORDE);
    assert_eq!(big.sides[0].alliance_ids[0], PANDEMIC_HORDE as i64);
    assert!(report.sides[0].kills > 200 && report.sides[1].losses > 200);
    assert!(
        report
            .related_links
            .iter()
            .all(|l| l.starts_with("https://zkillboard.com/related/30002355/20211127"))
    );
    // Every loss is on some side, and kills never exceed losses overall.
    let losses: u32 = report.sides.iter().map(|s| s.losses).sum::<u32>() + report.unassigned_losses;
    assert_eq!(losses, report.total_kills);
}

#[tokio::test]
async fn jorund_is_one_two_system_battle_with_horde_and_goons_opposed() {
    let dir = bs_testkit::temp_dir();
    let battles = battles_in(dir.path(), EngineSettings::default()).await;
    let mut events = enriched(&fixture("jorund"));
    events.extend(enriched(&fixture(
        "neighbours-jorund-o-ivnh-2021-11-28.jsonl.gz",
    )));
    for chunk in events.chunks(200) {
        battles.ingest(chunk).await.unwrap();
    }
    settle(&battles).await;
    let rows = all_rows(&battles).await;
    let big = rows.iter().max_by_key(|r| r.total_kills).unwrap();
    assert!(big.total_kills >= 1_000, "{}", big.total_kills);
    assert_eq!(
        big.system_ids.len(),
        2,
        "Jorund + Hemin: {:?}",
        big.system_ids
    );
    let report = battles.compute_report(big.battle_id).await.unwrap();
    let side_of = |a: u64| {
        report
            .sides
            .iter()
            .position(|s| s.alliance_ids.iter().take(3).any(|&x| x == a))
    };
    let (h, g) = (side_of(PANDEMIC_HORDE), side_of(GOONSWARM));
    assert!(
        h.is_some() && g.is_some() && h != g,
        "horde {h:?} goons {g:?}"
    );
}

#[tokio::test]
async fn the_shuttle_massacre_is_one_sided() {
    let dir = bs_testkit::temp_dir();
    let battles = battles_in(dir.path(), EngineSettings::default()).await;
    battles
        .ingest(&enriched(&fixture(
            "fight-massacre-j105951-2021-11-30.jsonl.gz",
        )))
        .await
        .unwrap();
    settle(&battles).await;
    let rows = all_rows(&battles).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].one_sided, "{:?}", rows[0]);
    assert_eq!(rows[0].security_types, vec!["wormhole".to_owned()]);
}

#[tokio::test]
async fn a_long_fw_grind_is_not_one_day_long_battle() {
    let dir = bs_testkit::temp_dir();
    let battles = battles_in(dir.path(), EngineSettings::default()).await;
    battles
        .ingest(&enriched(&fixture("grind-tama-2021-11-27.jsonl.gz")))
        .await
        .unwrap();
    settle(&battles).await;
    let rows = all_rows(&battles).await;
    assert!(rows.len() >= 5, "{} battles", rows.len());
    assert!(
        rows.iter().all(|r| r.duration_ms <= 3 * 3_600_000),
        "{:?}",
        shape(&rows)
    );
}

#[tokio::test]
async fn redelivery_and_reordering_change_nothing() {
    let dir = bs_testkit::temp_dir();
    let battles = battles_in(dir.path(), EngineSettings::default()).await;
    let events = enriched(&fixture("uw9b-f"));
    battles.ingest(&events).await.unwrap();
    settle(&battles).await;
    let before = all_rows(&battles).await;
    assert!(!before.is_empty());
    // The same events again, reversed and in odd batches.
    let mut again = events.clone();
    again.reverse();
    for chunk in again.chunks(7) {
        battles.ingest(chunk).await.unwrap();
    }
    settle(&battles).await;
    assert_eq!(
        all_rows(&battles).await,
        before,
        "a redelivery changed the stored battles"
    );
    assert_eq!(battles.refresh().await.unwrap(), 0);

    // Another service fed the reversed order from scratch finds the same battles.
    let dir2 = bs_testkit::temp_dir();
    let other = battles_in(dir2.path(), EngineSettings::default()).await;
    for chunk in again.chunks(13) {
        other.ingest(chunk).await.unwrap();
    }
    settle(&other).await;
    assert_eq!(shape(&all_rows(&other).await), shape(&before));
}

#[tokio::test]
async fn restart_keeps_battles_and_continues_clustering() {
    let events = enriched(&fixture("lxq2-t"));
    let full = {
        let dir = bs_testkit::temp_dir();
        let b = battles_in(dir.path(), EngineSettings::default()).await;
        b.ingest(&events).await.unwrap();
        settle(&b).await;
        all_rows(&b).await
    };
    let dir = bs_testkit::temp_dir();
    let (first, second) = events.split_at(events.len() / 2);
    let id = {
        let b = battles_in(dir.path(), EngineSettings::default()).await;
        b.ingest(first).await.unwrap();
        settle(&b).await;
        let rows = all_rows(&b).await;
        rows.iter().max_by_key(|r| r.total_kills).unwrap().battle_id
    };
    // A new process on the same data dir.
    let b = battles_in(dir.path(), EngineSettings::default()).await;
    assert!(matches!(
        b.store().battle(id).await.unwrap(),
        Lookup::Found(_)
    ));
    b.ingest(second).await.unwrap();
    settle(&b).await;
    let rows = all_rows(&b).await;
    assert_eq!(shape(&rows), shape(&full));
    let big = rows.iter().max_by_key(|r| r.total_kills).unwrap();
    assert_eq!(
        big.battle_id, id,
        "the battle kept its id across the restart"
    );
}

fn tight() -> EngineSettings {
    // Small gaps so a withheld slice of a real fight splits it in two.
    EngineSettings {
        cluster: ClusterSettings {
            density_window_ms: 60_000,
            link_gap_ms: 120_000,
            border_gap_ms: 30_000,
            ..ClusterSettings::default()
        },
        ..EngineSettings::default()
    }
}

#[tokio::test]
async fn late_kills_merge_battles_and_the_absorbed_id_redirects() {
    let dir = bs_testkit::temp_dir();
    let battles = battles_in(dir.path(), tight()).await;
    let mut events: Vec<KillmailEnriched> = enriched(&fixture("lxq2-t"));
    events.sort_by_key(|e| (e.killmail_time, e.killmail_id));
    let t0 = events[events.len() / 2].killmail_time;
    let hole = |e: &KillmailEnriched| {
        let d = (e.killmail_time - t0).num_seconds();
        (0..300).contains(&d)
    };
    let (late, early): (Vec<_>, Vec<_>) = events.iter().cloned().partition(hole);
    assert!(!late.is_empty());
    battles.ingest(&early).await.unwrap();
    settle(&battles).await;
    let before = all_rows(&battles).await;
    let around: Vec<&BattleRow> = before
        .iter()
        .filter(|r| {
            (r.end_ms - t0.timestamp_millis()).abs() < 600_000
                || (r.start_ms - t0.timestamp_millis()).abs() < 600_000
        })
        .collect();
    assert!(
        around.len() >= 2,
        "the hole should split the fight: {:?}",
        shape(&before)
    );
    battles.ingest(&late).await.unwrap();
    settle(&battles).await;
    let after = all_rows(&battles).await;
    assert!(
        after.len() < before.len(),
        "{:?} -> {:?}",
        shape(&before),
        shape(&after)
    );
    let ids: BTreeMap<u64, u32> = after.iter().map(|r| (r.battle_id, r.total_kills)).collect();
    let mut redirected = 0;
    for r in &before {
        if ids.contains_key(&r.battle_id) {
            continue;
        }
        match battles.store().battle(r.battle_id).await.unwrap() {
            Lookup::Redirect(to) => {
                assert!(ids.contains_key(&to), "redirect to a live battle");
                // The older battle survives.
                let survivor = after.iter().find(|x| x.battle_id == to).unwrap();
                assert!(survivor.founding_ms <= r.founding_ms);
                redirected += 1;
            }
            other => panic!("absorbed battle {} answers {other:?}", r.battle_id),
        }
        let row = battles.store().row(r.battle_id).await.unwrap().unwrap();
        assert_eq!(row.status, BattleStatus::Merged);
        assert_eq!(row.published_status, Some(BattleStatus::Merged));
    }
    assert!(redirected >= 1);
}

#[tokio::test]
async fn names_arriving_later_are_stored_idempotently() {
    let dir = bs_testkit::temp_dir();
    let battles = battles_in(dir.path(), EngineSettings::default()).await;
    let events = enriched(&fixture("uw9b-f"));
    battles.ingest(&events).await.unwrap();
    settle(&battles).await;
    let before = all_rows(&battles).await;
    let mut named = events[0].clone();
    let ch = named.victim.who.character_id.unwrap();
    named.victim.who.character_name = Some("Late Name".into());
    named.names_pending = false;
    named.revision = 1;
    battles.ingest(&[named.clone()]).await.unwrap();
    battles.ingest(&[named]).await.unwrap();
    settle(&battles).await;
    let names = battles.store().names(&[ch]).await.unwrap();
    assert_eq!(
        names.get(&("character".to_owned(), ch)).map(String::as_str),
        Some("Late Name")
    );
    let after = all_rows(&battles).await;
    assert_eq!(shape(&after), shape(&before));
}

/// Every id a battle list ever showed still answers: live, or a redirect to a live battle.
async fn ids_seen(battles: &bs_battle::Battles, seen: &mut std::collections::BTreeSet<u64>) {
    seen.extend(all_rows(battles).await.iter().map(|r| r.battle_id));
}

#[tokio::test]
async fn ids_do_not_depend_on_arrival_order_and_old_ids_redirect() {
    let events = enriched(&fixture("uw9b-f"));
    let ids = |rows: &[BattleRow]| -> Vec<(u64, u32)> {
        let mut v: Vec<_> = rows.iter().map(|r| (r.battle_id, r.total_kills)).collect();
        v.sort_unstable();
        v
    };
    let dir = bs_testkit::temp_dir();
    let in_order = battles_in(dir.path(), EngineSettings::default()).await;
    in_order.ingest(&events).await.unwrap();
    settle(&in_order).await;
    let reference = ids(&all_rows(&in_order).await);
    assert!(!reference.is_empty());

    // Newest first, one killmail per transaction: battles are founded on late kills first and
    // renamed as the earlier kills arrive.
    let dir2 = bs_testkit::temp_dir();
    let reversed = battles_in(dir2.path(), EngineSettings::default()).await;
    let mut seen = std::collections::BTreeSet::new();
    let mut backwards = events.clone();
    backwards.sort_by_key(|e| std::cmp::Reverse((e.killmail_time, e.killmail_id)));
    for e in &backwards {
        reversed.ingest(std::slice::from_ref(e)).await.unwrap();
        ids_seen(&reversed, &mut seen).await;
    }
    settle(&reversed).await;
    let rows = all_rows(&reversed).await;
    assert_eq!(ids(&rows), reference, "ids depend on arrival order");
    let live: std::collections::BTreeSet<u64> = rows.iter().map(|r| r.battle_id).collect();
    let renamed: Vec<u64> = seen.difference(&live).copied().collect();
    assert!(!renamed.is_empty(), "reverse arrival renames battles");
    for id in renamed {
        match reversed.store().battle(id).await.unwrap() {
            Lookup::Redirect(to) => assert!(live.contains(&to), "{id} → {to} is not live"),
            other => panic!("old id {id} does not redirect: {other:?}"),
        }
    }
    assert_eq!(reversed.refresh().await.unwrap(), 0);
}

/// GET a path on the service's API router.
async fn api_get(battles: &std::sync::Arc<bs_battle::Battles>, path: &str) -> serde_json::Value {
    let router = bs_battle::api::router(bs_battle::api::ApiState {
        battles: std::sync::Arc::clone(battles),
        policy: std::sync::Arc::new(bs_battle::AllowAll),
    });
    let resp = tower::ServiceExt::oneshot(
        router,
        axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

const TEST_ALLIANCE: i64 = 498_125_261;

#[tokio::test]
async fn lists_and_reports_carry_names_and_later_revisions_update_them() {
    let dir = bs_testkit::temp_dir();
    let battles = battles_in(dir.path(), EngineSettings::default()).await;
    let events = enriched_named(&fixture("uw9b-f"));
    battles.ingest(&events).await.unwrap();
    settle(&battles).await;
    let list = api_get(&battles, "/battles?sort=kills&limit=1").await;
    let b = &list["battles"][0];
    // Names aligned with the id arrays; TEST is one side's main alliance in UW9B-F.
    let sides = b["sides"].as_array().unwrap();
    let named_sides: Vec<(i64, &str)> = sides
        .iter()
        .flat_map(|s| {
            let ids = s["alliance_ids"].as_array().unwrap();
            let names = s["alliance_names"].as_array().unwrap();
            assert_eq!(ids.len(), names.len());
            ids.iter()
                .zip(names)
                .filter_map(|(i, n)| Some((i.as_i64()?, n.as_str()?)))
        })
        .collect();
    assert!(
        named_sides.contains(&(TEST_ALLIANCE, "Test Alliance Please Ignore")),
        "{named_sides:?}"
    );
    assert_eq!(b["system_names"][0], "UW9B-F");
    let id = b["battle_id"].as_i64().unwrap();
    let report = api_get(&battles, &format!("/battles/{id}")).await;
    let alliance_entry = report["sides"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["alliances"].as_array().unwrap())
        .find(|a| a["id"] == TEST_ALLIANCE)
        .expect("TEST on a side");
    assert_eq!(alliance_entry["name"], "Test Alliance Please Ignore");
    let participants = report["participants"].as_array().unwrap();
    // Every pilot whose name the killmails carried has it; the others are null (the bundled
    // snapshot knows 48 of UW9B-F's 324 pilots).
    let mut named = 0;
    for p in participants {
        let known = bundled_names()
            .get(&p["character_id"].as_i64().unwrap())
            .cloned()
            .flatten();
        assert_eq!(p["character_name"].as_str(), known.as_deref(), "{p}");
        named += usize::from(known.is_some());
    }
    assert!(named > 0);
    let ships: Vec<&serde_json::Value> = participants
        .iter()
        .flat_map(|p| p["ships"].as_array().unwrap())
        .collect();
    let named_ships = ships.iter().filter(|s| s["ship_name"].is_string()).count();
    assert!(
        named_ships * 10 >= ships.len() * 9,
        "ship names come from the static data: {named_ships} of {}",
        ships.len()
    );
    assert_eq!(
        report["names"]["alliance"][TEST_ALLIANCE.to_string()],
        "Test Alliance Please Ignore"
    );

    // A later revision with a resolved (here: changed) name updates it; an older revision
    // redelivered afterwards does not undo it.
    let victim = events
        .iter()
        .find(|e| battles_has(&report, e.killmail_id) && e.victim.who.character_id.is_some())
        .expect("a killmail of the battle");
    let ch = victim.victim.who.character_id.unwrap();
    let mut later = victim.clone();
    later.victim.who.character_name = Some("Renamed Pilot".into());
    later.revision = victim.revision + 1;
    battles.ingest(&[later]).await.unwrap();
    battles.ingest(std::slice::from_ref(victim)).await.unwrap();
    settle(&battles).await;
    let report = api_get(&battles, &format!("/battles/{id}")).await;
    let p = report["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["character_id"] == ch)
        .unwrap();
    assert_eq!(p["character_name"], "Renamed Pilot");
}

fn battles_has(report: &serde_json::Value, killmail_id: i64) -> bool {
    report["killmail_ids"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k.as_i64() == Some(killmail_id))
}
