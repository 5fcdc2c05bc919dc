//! The store conformance suite: the same scenarios on SQLite and on PostgreSQL
//! (`BATTLESCOPE_TEST_POSTGRES`; skipped locally when unset, mandatory under `CI=true`).

use bs_battle::domain::{BattleOp, EngineSettings};
use bs_battle::store::{BattleQuery, ChangeSet, Cursor, Lookup, SidesUpdate, SortKey};
use bs_clustering::{Entity, SideOverride, SideTarget};
use bs_events::BattleStatus;
use bs_store::Database;

use crate::helpers::*;

macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = bs_testkit::temp_dir();
                    super::$name(crate::helpers::sqlite(dir.path()).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = crate::helpers::postgres().await else { return };
                    super::$name(db).await;
                }
            )*
        }
    };
}

store_suite!(
    real_fight_queries_filters_and_pages,
    redelivered_changesets_change_nothing,
    merges_keep_aliases_and_overrides,
    stale_sides_are_not_saved,
    live_batches_queue_ship_history_and_match_a_backlog
);

async fn real_fight_queries_filters_and_pages(db: Database) {
    let battles = battles_on(db, EngineSettings::default()).await;
    let mut events = enriched(&fixture("uw9b-f"));
    events.extend(enriched(&fixture("lxq2-t")));
    battles.ingest(&events).await.unwrap();
    battles.tick().await.unwrap();
    battles.refresh().await.unwrap();
    let store = battles.store();
    let all = store
        .battles(&BattleQuery {
            limit: 500,
            ..BattleQuery::default()
        })
        .await
        .unwrap()
        .0;
    assert!(all.len() >= 2);
    // Default order: newest start first.
    assert!(
        all.windows(2)
            .all(|w| (w[0].start_ms, w[0].battle_id) >= (w[1].start_ms, w[1].battle_id))
    );
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.battles_total as usize, all.len());
    assert_eq!(counts.killmails as usize, events.len());
    assert_eq!(counts.active, 0, "2021 battles are over by the wall clock");

    // Pages of 1 by kills, ascending, visit every battle exactly once in order.
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let q = BattleQuery {
            sort: SortKey::Kills,
            ascending: true,
            limit: 1,
            cursor: cursor.clone(),
            ..BattleQuery::default()
        };
        let (rows, next) = store.battles(&q).await.unwrap();
        seen.extend(rows.iter().map(|r| (r.total_kills, r.battle_id)));
        match next {
            Some(c) => cursor = Some(Cursor::decode(&c).unwrap()),
            None => break,
        }
    }
    let mut expected: Vec<(u32, u64)> = all.iter().map(|r| (r.total_kills, r.battle_id)).collect();
    expected.sort_unstable();
    assert_eq!(seen, expected);
    // ISK pages (a float key) too.
    let (first, next) = store
        .battles(&BattleQuery {
            sort: SortKey::Isk,
            limit: 1,
            ..BattleQuery::default()
        })
        .await
        .unwrap();
    let (second, _) = store
        .battles(&BattleQuery {
            sort: SortKey::Isk,
            limit: 1,
            cursor: Cursor::decode(&next.unwrap()),
            ..BattleQuery::default()
        })
        .await
        .unwrap();
    assert!(first[0].total_isk >= second[0].total_isk && first[0].battle_id != second[0].battle_id);

    let big = all.iter().max_by_key(|r| r.total_kills).unwrap();
    let by = |q: BattleQuery| async move {
        store
            .battles(&BattleQuery { limit: 500, ..q })
            .await
            .unwrap()
            .0
    };
    let ids = |rows: Vec<bs_battle::store::BattleRow>| {
        rows.into_iter().map(|r| r.battle_id).collect::<Vec<_>>()
    };
    assert!(
        ids(by(BattleQuery {
            system_id: Some(30_002_355),
            ..BattleQuery::default()
        })
        .await)
        .contains(&big.battle_id)
    );
    assert!(
        ids(by(BattleQuery {
            region_id: Some(big.region_ids[0]),
            ..BattleQuery::default()
        })
        .await)
        .contains(&big.battle_id)
    );
    assert!(
        ids(by(BattleQuery {
            security_type: Some("nullsec".into()),
            ..BattleQuery::default()
        })
        .await)
        .contains(&big.battle_id)
    );
    assert!(
        by(BattleQuery {
            security_type: Some("highsec".into()),
            ..BattleQuery::default()
        })
        .await
        .is_empty()
    );
    assert_eq!(
        ids(by(BattleQuery {
            min_kills: Some(i64::from(big.total_kills)),
            ..BattleQuery::default()
        })
        .await),
        vec![big.battle_id]
    );
    assert!(
        by(BattleQuery {
            min_pilots: Some(100_000),
            ..BattleQuery::default()
        })
        .await
        .is_empty()
    );
    assert!(
        by(BattleQuery {
            min_isk: Some(big.total_isk + 1.0),
            ..BattleQuery::default()
        })
        .await
        .iter()
        .all(|r| r.battle_id != big.battle_id)
    );
    assert!(
        by(BattleQuery {
            status: Some(BattleStatus::Active),
            ..BattleQuery::default()
        })
        .await
        .is_empty()
    );
    let alliance = big.sides[0].alliance_ids[0];
    assert!(
        ids(by(BattleQuery {
            alliance_id: Some(alliance),
            ..BattleQuery::default()
        })
        .await)
        .contains(&big.battle_id)
    );
    let corp = big.sides[0].corporation_ids[0];
    assert!(
        ids(by(BattleQuery {
            corporation_id: Some(corp),
            ..BattleQuery::default()
        })
        .await)
        .contains(&big.battle_id)
    );
    let from = bs_store::from_millis(big.end_ms + 1);
    assert!(
        by(BattleQuery {
            from_ms: Some(from.timestamp_millis()),
            ..BattleQuery::default()
        })
        .await
        .iter()
        .all(|r| r.battle_id != big.battle_id)
    );

    // A pilot of the battle: involvement filter and ship history.
    let kills = store.kills_of(big.battle_id).await.unwrap();
    assert_eq!(kills.len() as u32, big.total_kills);
    let lost = kills
        .iter()
        .find(|k| k.kill.victim.character_id.is_some())
        .unwrap();
    let pilot = lost.kill.victim.character_id.unwrap();
    assert!(
        ids(by(BattleQuery {
            character_id: Some(pilot as i64),
            ..BattleQuery::default()
        })
        .await)
        .contains(&big.battle_id)
    );
    let history = store.ship_history(pilot, 100).await.unwrap();
    assert!(history.iter().any(|h| h.lost
        && h.killmail_id == lost.kill.killmail_id
        && h.battle_id == Some(big.battle_id)));
}

async fn redelivered_changesets_change_nothing(db: Database) {
    let battles = battles_on(db.clone(), EngineSettings::default()).await;
    let events = enriched(&fixture("uw9b-f"));
    battles.ingest(&events).await.unwrap();
    battles.refresh().await.unwrap();
    let q = BattleQuery {
        limit: 500,
        ..BattleQuery::default()
    };
    let before = battles.store().battles(&q).await.unwrap().0;
    // Replaying every operation again (as after a crash before the consumer commit).
    let big = before.iter().max_by_key(|r| r.total_kills).unwrap();
    let kills = battles.store().kills_of(big.battle_id).await.unwrap();
    // Killmail data is stored in both forms (the large zstd-compressed) and reads back whole.
    let (plain, packed): (i64, i64) = bs_store::sqlx::query_as(
        "SELECT SUM(CASE WHEN data_zstd IS NULL THEN 1 ELSE 0 END), SUM(CASE WHEN data_zstd IS NULL THEN 0 ELSE 1 END) FROM killmails",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(
        plain > 0 && packed > 0,
        "{plain} plain, {packed} compressed"
    );
    let sent: std::collections::HashMap<u64, bs_battle::domain::StoredKill> = events
        .iter()
        .map(|e| bs_battle::domain::from_enriched(e).unwrap().0)
        .map(|k| (k.kill.killmail_id, k))
        .collect();
    assert_eq!(kills.len() as u64, u64::from(big.total_kills));
    for k in &kills {
        let s = &sent[&k.kill.killmail_id];
        assert_eq!(k.kill.victim, s.kill.victim);
        assert_eq!(k.kill.attackers.len(), s.kill.attackers.len());
        assert_eq!(
            (k.revision, &k.security_type),
            (s.revision, &s.security_type)
        );
    }
    let ids: Vec<u64> = kills.iter().map(|k| k.kill.killmail_id).collect();
    let replay = ChangeSet {
        kills,
        ops: vec![
            BattleOp::Create {
                battle_id: big.battle_id,
            },
            BattleOp::AddKills {
                battle_id: big.battle_id,
                killmail_ids: ids,
            },
        ],
        now_ms: 1,
        ..ChangeSet::default()
    };
    battles.store().apply(&replay).await.unwrap();
    battles.store().apply(&replay).await.unwrap();
    assert_eq!(battles.store().battles(&q).await.unwrap().0, before);
    assert!(battles.store().dirty_battles(10).await.unwrap().is_empty());
}

async fn merges_keep_aliases_and_overrides(db: Database) {
    let battles = battles_on(db, EngineSettings::default()).await;
    let events = enriched(&fixture("uw9b-f"));
    battles.ingest(&events).await.unwrap();
    let store = battles.store();
    let big = store
        .battles(&BattleQuery {
            sort: SortKey::Kills,
            limit: 1,
            ..BattleQuery::default()
        })
        .await
        .unwrap()
        .0
        .remove(0);
    let kills = store.kills_of(big.battle_id).await.unwrap();
    // Carve a second battle out of the last ten kills, with an override, then merge it back.
    let tail: Vec<u64> = kills
        .iter()
        .rev()
        .take(10)
        .map(|k| k.kill.killmail_id)
        .collect();
    let other = tail[9];
    let ops = vec![
        BattleOp::Create { battle_id: other },
        BattleOp::AddKills {
            battle_id: other,
            killmail_ids: tail.clone(),
        },
    ];
    store
        .apply(&ChangeSet {
            ops,
            now_ms: 2,
            ..ChangeSet::default()
        })
        .await
        .unwrap();
    let o = SideOverride {
        entity: Entity::Alliance(7),
        target: SideTarget::Side(1),
    };
    store.put_override(other, &o, Some("fc"), 3).await.unwrap();
    let Lookup::Found(carved) = store.battle(other).await.unwrap() else {
        panic!()
    };
    assert_eq!(carved.total_kills, 10);
    let Lookup::Found(rest) = store.battle(big.battle_id).await.unwrap() else {
        panic!()
    };
    assert_eq!(rest.total_kills, big.total_kills - 10);
    let ops = vec![BattleOp::Merge {
        survivor: big.battle_id,
        absorbed: other,
    }];
    store
        .apply(&ChangeSet {
            ops,
            now_ms: 4,
            ..ChangeSet::default()
        })
        .await
        .unwrap();
    assert_eq!(
        store.battle(other).await.unwrap(),
        Lookup::Redirect(big.battle_id)
    );
    let Lookup::Found(merged) = store.battle(big.battle_id).await.unwrap() else {
        panic!()
    };
    assert_eq!(merged.total_kills, big.total_kills);
    assert_eq!(merged.pilots, big.pilots);
    assert_eq!(store.overrides(big.battle_id).await.unwrap(), vec![o]);
    assert_eq!(
        store.row(other).await.unwrap().unwrap().status,
        BattleStatus::Merged
    );
    assert_eq!(store.battle(1).await.unwrap(), Lookup::NotFound);
}

async fn stale_sides_are_not_saved(db: Database) {
    let battles = battles_on(db, EngineSettings::default()).await;
    battles.ingest(&enriched(&fixture("uw9b-f"))).await.unwrap();
    let store = battles.store();
    let id = store.dirty_battles(1).await.unwrap()[0];
    let row = store.row(id).await.unwrap().unwrap();
    let update = |rev| SidesUpdate {
        battle_id: id,
        seen_revision: rev,
        sides: Some((Vec::new(), true, false)),
        published_status: BattleStatus::Active,
        events: Vec::new(),
        report: None,
    };
    assert!(!store.save_sides(&update(row.revision + 1)).await.unwrap());
    assert!(store.save_sides(&update(row.revision)).await.unwrap());
    let row = store.row(id).await.unwrap().unwrap();
    assert!(row.multi_party);
    assert_eq!(row.sides_revision, row.revision as i64);
    assert!(!store.dirty_battles(100).await.unwrap().contains(&id));
}

/// Batches queue ship history instead of writing it; battles, pilots, sides and a pilot's
/// ships of one killmail per batch (live) must equal those of the same killmails in one
/// backlog batch, before and after the queue moves, and a merge over queued killmails keeps
/// every pilot — also for killmails stored before they carried their own pilot lines.
async fn live_batches_queue_ship_history_and_match_a_backlog(db: Database) {
    let events = enriched(&fixture("uw9b-f"));
    let reference_dir = bs_testkit::temp_dir();
    let reference = battles_in(reference_dir.path(), EngineSettings::default()).await;
    reference.ingest(&events).await.unwrap();
    reference.refresh().await.unwrap();

    let live = battles_on(db.clone(), EngineSettings::default()).await;
    for e in &events {
        live.ingest(std::slice::from_ref(e)).await.unwrap();
    }
    live.refresh().await.unwrap();
    let q = BattleQuery {
        limit: 500,
        ..BattleQuery::default()
    };
    let summary = |rows: Vec<bs_battle::store::BattleRow>| {
        rows.into_iter()
            .map(|r| (r.battle_id, r.total_kills, r.pilots, r.system_ids, r.sides))
            .collect::<Vec<_>>()
    };
    let expected = summary(reference.store().battles(&q).await.unwrap().0);
    assert_eq!(summary(live.store().battles(&q).await.unwrap().0), expected);

    let big = reference.store().kills_of(expected[0].0).await.unwrap();
    let pilot = big.iter().find_map(|k| k.kill.victim.character_id).unwrap();
    let ships = reference.store().ship_history(pilot, 100).await.unwrap();
    assert!(!ships.is_empty());
    assert_eq!(live.store().ship_history(pilot, 100).await.unwrap(), ships);

    // The background mover waits for a quiet consumer, then empties the queue.
    tokio::time::sleep(bs_battle::consumer::HISTORY_IDLE).await;
    let moved = live.move_history().await.unwrap();
    assert!(moved > 0, "live batches queued their ship history");
    assert_eq!(live.store().move_ship_history(50).await.unwrap(), 0);
    assert_eq!(live.store().ship_history(pilot, 100).await.unwrap(), ships);

    // A new killmail queued by a live batch (no battle yet), then a battle carved from it and
    // four others and merged back: its pilot must count although its history is still queued,
    // and the four others' too, read from their data as rows of before migration 6 are.
    let store = live.store();
    let mut late = big[0].clone();
    late.kill.killmail_id = big.iter().map(|k| k.kill.killmail_id).max().unwrap() + 1;
    late.kill.victim.character_id = Some(2_999_999_999);
    store
        .apply(&ChangeSet {
            kills: vec![late.clone()],
            now_ms: 5,
            ..ChangeSet::default()
        })
        .await
        .unwrap();
    let id = expected[0].0;
    let mut carved: Vec<u64> = big
        .iter()
        .rev()
        .take(4)
        .map(|k| k.kill.killmail_id)
        .collect();
    carved.push(late.kill.killmail_id);
    let pilots_of = |kills: &[&bs_battle::domain::StoredKill]| {
        let mut p = std::collections::BTreeSet::new();
        for k in kills {
            p.extend(k.kill.victim.character_id);
            p.extend(
                k.kill
                    .attackers
                    .iter()
                    .filter(|a| !a.is_npc)
                    .filter_map(|a| a.character_id),
            );
        }
        p.len() as u32
    };
    let mut carved_kills: Vec<&bs_battle::domain::StoredKill> = big.iter().rev().take(4).collect();
    carved_kills.push(&late);
    for k in &carved_kills[..4] {
        bs_store::sqlx::query("UPDATE killmails SET pilots = NULL WHERE killmail_id = $1")
            .bind(k.kill.killmail_id as i64)
            .execute(db.pool())
            .await
            .unwrap();
    }
    for (n, ops) in [
        vec![
            BattleOp::Create {
                battle_id: carved[0],
            },
            BattleOp::AddKills {
                battle_id: carved[0],
                killmail_ids: carved.clone(),
            },
        ],
        vec![BattleOp::Merge {
            survivor: id,
            absorbed: carved[0],
        }],
    ]
    .into_iter()
    .enumerate()
    {
        store
            .apply(&ChangeSet {
                ops,
                now_ms: 6,
                ..ChangeSet::default()
            })
            .await
            .unwrap();
        if n == 0 {
            let row = store.row(carved[0]).await.unwrap().unwrap();
            assert_eq!(
                row.pilots,
                pilots_of(&carved_kills),
                "the queued pilot counts"
            );
        }
    }
    let Lookup::Found(row) = store.battle(id).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        (row.total_kills, row.pilots),
        (expected[0].1 + 1, expected[0].2 + 1)
    );
    let late_pilot = late.kill.victim.character_id.unwrap();
    let queued = store.ship_history(late_pilot, 10).await.unwrap();
    assert_eq!(queued.len(), 1, "the queued line is served: {queued:?}");
    assert_eq!(
        store.move_ship_history(50).await.unwrap(),
        1,
        "nothing moved the queue inline"
    );
    assert_eq!(store.ship_history(late_pilot, 10).await.unwrap(), queued);
}
