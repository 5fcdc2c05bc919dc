//! Re-clustering and retention on real fights (Jorund and O-IVNH 2021-11-28, UW9B-F
//! 2021-11-30): ids of unchanged battles stay, a dry run changes nothing, a damaged battle is
//! repaired under its id, merges redirect; retention deletes only battles and killmails past
//! the cutoff, in batches, each with its `battle.deleted`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bs_battle::domain::BattleOp;
use bs_battle::domain::EngineSettings;
use bs_battle::store::ChangeSet;
use bs_battle::{recluster, retention};
use bs_clustering::{Entity, SideOverride, SideTarget};
use bs_runtime::Clock;
use bs_store::{Database, sqlx};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::helpers::{battles_on, enriched, fixture, postgres, sqlite};

struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// battle id → sorted killmail ids, for live battles.
async fn membership(db: &Database) -> BTreeMap<i64, Vec<i64>> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT k.battle_id, k.killmail_id FROM battle_killmails k JOIN battles b ON b.battle_id = k.battle_id \
         WHERE b.status <> 'merged' ORDER BY k.battle_id, k.killmail_id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let mut out: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (b, k) in rows {
        out.entry(b).or_default().push(k);
    }
    out
}

async fn rows_of(db: &Database) -> Vec<(i64, String, i64, i64)> {
    sqlx::query_as(
        "SELECT battle_id, status, total_kills, revision FROM battles ORDER BY battle_id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn world(dir: &std::path::Path) -> (Database, Arc<bs_battle::Battles>) {
    world_on(sqlite(dir).await).await
}

/// `SELECT COUNT(*) …` with `binds` as $1, $2, ….
async fn count(db: &Database, sql: &str, binds: &[i64]) -> i64 {
    let mut q = sqlx::query_as::<_, (i64,)>(bs_store::dynamic_sql(sql.to_owned()));
    for b in binds {
        q = q.bind(*b);
    }
    q.fetch_one(db.pool()).await.unwrap().0
}

async fn world_on(db: Database) -> (Database, Arc<bs_battle::Battles>) {
    let battles = battles_on(db.clone(), EngineSettings::default()).await;
    for f in ["jorund", "o-ivnh", "uw9b-f"] {
        battles.ingest(&enriched(&fixture(f))).await.unwrap();
    }
    battles.tick().await.unwrap();
    battles.refresh().await.unwrap();
    (db, battles)
}

#[tokio::test]
async fn recluster_keeps_ids_of_unchanged_battles_and_dry_run_changes_nothing() {
    let dir = bs_testkit::temp_dir();
    let (db, battles) = world(dir.path()).await;
    let before = membership(&db).await;
    assert!(before.len() >= 3, "{} battles", before.len());
    let (from, to) = (t("2021-11-27T00:00:00Z"), t("2021-12-01T00:00:00Z"));

    // Same settings: nothing to do, every battle kept under its id.
    let dry = recluster::recluster(&battles, &db, from, to, true)
        .await
        .unwrap();
    assert!(dry.plan.is_noop(), "{:?}", dry.plan);
    let kept: BTreeSet<i64> = dry.plan.kept.iter().map(|&b| b as i64).collect();
    assert_eq!(kept, before.keys().copied().collect());

    // Damage one battle (its newest kill leaves it), keep an override on it.
    let (&victim, kills) = before.iter().max_by_key(|(_, k)| k.len()).unwrap();
    let moved = *kills.last().unwrap() as u64;
    let o = SideOverride {
        entity: Entity::Character(1),
        target: SideTarget::Side(1),
    };
    battles
        .store()
        .put_override(victim as u64, &o, Some("fc"), 0)
        .await
        .unwrap();
    battles
        .store()
        .apply(&ChangeSet {
            ops: vec![BattleOp::RemoveKills {
                battle_id: victim as u64,
                killmail_ids: vec![moved],
            }],
            now_ms: Utc::now().timestamp_millis(),
            ..ChangeSet::default()
        })
        .await
        .unwrap();
    let damaged = membership(&db).await;
    let rows_damaged = rows_of(&db).await;

    // A dry run reports the repair and changes nothing.
    let dry = recluster::recluster(&battles, &db, from, to, true)
        .await
        .unwrap();
    assert_eq!(
        dry.plan
            .changed
            .iter()
            .map(|c| (c.battle_id, c.added, c.removed))
            .collect::<Vec<_>>(),
        vec![(victim as u64, 1, 0)]
    );
    assert!(
        dry.plan.created.is_empty() && dry.plan.merged.is_empty() && dry.plan.deleted.is_empty()
    );
    assert_eq!(membership(&db).await, damaged);
    assert_eq!(rows_of(&db).await, rows_damaged);

    // Applied: the battle is whole again under its id; the others did not move.
    let done = recluster::recluster(&battles, &db, from, to, false)
        .await
        .unwrap();
    assert_eq!(done.plan.changed.len(), 1);
    assert_eq!(membership(&db).await, before);
    assert_eq!(
        battles.store().overrides(victim as u64).await.unwrap(),
        vec![o],
        "manual overrides survive"
    );
    // And again: nothing left to do.
    let again = recluster::recluster(&battles, &db, from, to, false)
        .await
        .unwrap();
    assert!(again.plan.is_noop());
    let runs = recluster::runs(&db, 10).await.unwrap();
    assert_eq!(runs.len(), 4);
    assert_eq!(runs.iter().filter(|r| r.dry_run).count(), 2);
}

#[tokio::test]
async fn a_longer_gap_merges_battles_into_the_oldest_with_a_redirect() {
    let dir = bs_testkit::temp_dir();
    let (db, _battles) = world(dir.path()).await;
    let before = membership(&db).await;
    let mut wide = EngineSettings::default();
    wide.cluster.link_gap_ms = 24 * 3_600_000;
    wide.cluster.border_gap_ms = wide.cluster.border_gap_ms.max(wide.cluster.link_gap_ms);
    let input = recluster::load(
        &db,
        t("2021-11-27T00:00:00Z").timestamp_millis(),
        t("2021-12-01T00:00:00Z").timestamp_millis(),
        wide.reach_ms(),
    )
    .await
    .unwrap();
    let now = Utc::now().timestamp_millis();
    let plan = recluster::plan(&wide, crate::helpers::geo(), &input, now);
    let plan_again = recluster::plan(&wide, crate::helpers::geo(), &input, now);
    assert_eq!(plan, plan_again, "planning is deterministic");
    assert!(
        !plan.merged.is_empty(),
        "a day-long gap merges fights: {:?}",
        (&plan.kept, &plan.changed, &plan.created, &plan.deleted)
    );
    // Every absorbed battle goes into an older survivor that keeps its id.
    let founding: BTreeMap<u64, i64> = input
        .battles
        .iter()
        .map(|(b, s)| (*b, s.founding_ms))
        .collect();
    for (absorbed, survivor) in &plan.merged {
        assert!(before.contains_key(&(*absorbed as i64)));
        assert!(
            (founding[survivor], *survivor) < (founding[absorbed], *absorbed),
            "{survivor} is older than {absorbed}"
        );
    }
    // Applying it leaves aliases for the absorbed ids.
    let battles = battles_on(db.clone(), EngineSettings::default()).await;
    battles
        .store()
        .apply(&ChangeSet {
            ops: plan.ops.clone(),
            now_ms: now,
            ..ChangeSet::default()
        })
        .await
        .unwrap();
    for (absorbed, survivor) in &plan.merged {
        let (alias,): (i64,) =
            sqlx::query_as("SELECT battle_id FROM battle_aliases WHERE alias_id = $1")
                .bind(*absorbed as i64)
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(alias, *survivor as i64);
    }
    let after = membership(&db).await;
    let all_before: BTreeSet<i64> = before.values().flatten().copied().collect();
    let all_after: BTreeSet<i64> = after.values().flatten().copied().collect();
    assert!(
        all_before.is_subset(&all_after),
        "no battle killmail is lost by merging"
    );
}

#[tokio::test]
async fn retention_deletes_only_what_is_due_in_batches() {
    let dir = bs_testkit::temp_dir();
    retention_case(sqlite(dir.path()).await).await;
}

#[tokio::test]
async fn retention_deletes_only_what_is_due_in_batches_on_postgres() {
    let Some(db) = postgres().await else { return };
    retention_case(db).await;
}

async fn retention_case(db: Database) {
    let (db, battles) = world_on(db).await;
    let before = rows_of(&db).await;
    // 60 months before the clock: 2021-11-29T12:00, between the 28th's fights and UW9B-F.
    let clock = FixedClock(t("2026-11-29T12:00:00Z"));
    let cut = t("2021-11-29T12:00:00Z").timestamp_millis();
    let ends: BTreeMap<i64, i64> =
        sqlx::query_as::<_, (i64, i64)>("SELECT battle_id, end_ms FROM battles")
            .fetch_all(db.pool())
            .await
            .unwrap()
            .into_iter()
            .collect();
    let due: BTreeSet<i64> = ends
        .iter()
        .filter(|(_, e)| **e < cut)
        .map(|(b, _)| *b)
        .collect();
    assert!(!due.is_empty() && due.len() < before.len());
    let kills_before: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM killmails")
        .fetch_one(db.pool())
        .await
        .unwrap();
    // Half the ship history moved into its table, half still queued: retention clears both.
    battles.store().move_ship_history(2_000).await.unwrap();
    const HISTORY_BEFORE_CUT: &str = "SELECT COUNT(*) FROM pilot_ship_history h JOIN killmails m ON m.killmail_id = h.killmail_id WHERE m.time_ms < $1";
    const HISTORY_FROM_CUT: &str = "SELECT COUNT(*) FROM pilot_ship_history h JOIN killmails m ON m.killmail_id = h.killmail_id WHERE m.time_ms >= $1";
    let old_queued = count(
        &db,
        "SELECT COUNT(*) FROM ship_history_queue WHERE time_ms < $1",
        &[cut],
    )
    .await;
    assert!(old_queued > 0, "some old history still queued");
    let history_before = count(&db, "SELECT COUNT(*) FROM pilot_ship_history", &[]).await;
    let old_history = count(&db, HISTORY_BEFORE_CUT, &[cut]).await;
    let new_history = count(&db, HISTORY_FROM_CUT, &[cut]).await;
    assert!(old_history > 0, "some old history moved");
    let mut lc = bs_config::LifecycleConfig {
        retention_batch: 2,
        ..Default::default()
    };
    let runs = retention::run(&db, &clock, &lc, &CancellationToken::new())
        .await
        .unwrap();
    let by_kind: BTreeMap<&str, &retention::RetentionRun> =
        runs.iter().map(|r| (r.kind.as_str(), r)).collect();
    assert_eq!(by_kind["battles"].deleted, due.len() as i64);
    assert_eq!(
        by_kind["battles"].batches,
        (due.len() as i64 + 1) / 2,
        "two battles per batch"
    );
    let left: BTreeSet<i64> = rows_of(&db).await.into_iter().map(|r| r.0).collect();
    assert!(left.is_disjoint(&due));
    assert_eq!(left.len(), before.len() - due.len());
    // Killmails: only the old ones, none a kept battle holds.
    let (old_left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM killmails WHERE time_ms < $1")
        .bind(cut)
        .fetch_one(db.pool())
        .await
        .unwrap();
    let (held_old,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM battle_killmails WHERE time_ms < $1")
            .bind(cut)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(old_left, held_old);
    let (kills_after,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM killmails")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(
        kills_before.0 - kills_after,
        by_kind["enriched_killmails"].deleted
    );
    // History: exactly the lines of the deleted killmails are gone, queued or moved.
    for table in ["pilot_ship_history", "ship_history_queue"] {
        let sql = format!(
            "SELECT COUNT(*) FROM {table} h WHERE NOT EXISTS (SELECT 1 FROM killmails m WHERE m.killmail_id = h.killmail_id)"
        );
        assert_eq!(
            count(&db, &sql, &[]).await,
            0,
            "{table} of deleted killmails"
        );
    }
    assert_eq!(
        count(&db, HISTORY_FROM_CUT, &[cut]).await,
        new_history,
        "kept killmails keep theirs"
    );
    let history_after = count(&db, "SELECT COUNT(*) FROM pilot_ship_history", &[]).await;
    assert!(
        history_after < history_before && history_after >= new_history,
        "{history_before} -> {history_after}"
    );
    let (dangling,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM battle_killmails k WHERE NOT EXISTS (SELECT 1 FROM battles b WHERE b.battle_id = k.battle_id)",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(dangling, 0);
    // One battle.deleted per deleted battle, keyed by its id, in the outbox.
    let events = bs_store::outbox::peek(&db, 100_000).await.unwrap();
    let deleted: BTreeSet<i64> = events
        .iter()
        .filter(|(topic, _, _)| topic == "battle.deleted")
        .map(|(_, key, _)| key.parse().unwrap())
        .collect();
    assert_eq!(deleted, due);
    // No rule, no deletion.
    lc.battles_months = 0;
    lc.enriched_killmails_months = 0;
    assert!(
        retention::run(&db, &clock, &lc, &CancellationToken::new())
            .await
            .unwrap()
            .is_empty()
    );
}
