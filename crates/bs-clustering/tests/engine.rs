//! Engine behaviour on small hand-made kills: what qualifies, merges and aliases, ending and
//! reopening, duplicates, NPC kills, multi-system links and re-clustering splits.

use bs_clustering::{
    AdjacencyMap, BattleEvent, BattleId, ClusterAttacker, ClusterKill, ClusterSettings,
    ClusterVictim, Clusterer, NoAdjacency, Ship, ShipClass,
};

const MIN: i64 = 60_000;
const T0: i64 = 1_638_000_000_000;

/// A kill at `T0 + minutes`: `attackers` (character ids, alliance 1) kill `victim` (alliance 2).
pub fn kill(id: u64, minutes: f64, system: u32, attackers: &[u64], victim: u64) -> ClusterKill {
    ClusterKill {
        killmail_id: id,
        time_ms: T0 + (minutes * MIN as f64) as i64,
        system_id: system,
        victim: ClusterVictim {
            character_id: Some(victim),
            corporation_id: Some(2000 + victim % 3),
            alliance_id: Some(2),
            ship: Ship {
                type_id: 587,
                group_id: 25,
                class: ShipClass::Frigate,
            },
            damage_taken: 1000,
        },
        attackers: attackers
            .iter()
            .map(|&c| ClusterAttacker {
                character_id: Some(c),
                corporation_id: Some(1000 + c % 3),
                alliance_id: Some(1),
                ship: Some(Ship {
                    type_id: 587,
                    group_id: 25,
                    class: ShipClass::Frigate,
                }),
                damage_done: 1000 / attackers.len() as u64,
                final_blow: c == attackers[0],
                is_npc: false,
            })
            .collect(),
        isk_value: 1e6,
        isk_dropped: 0.0,
    }
}

/// `n` kills one minute apart from `start` (minutes), ids from `first_id`.
fn burst(first_id: u64, start: f64, n: u64, system: u32) -> Vec<ClusterKill> {
    (0..n)
        .map(|i| {
            kill(
                first_id + i,
                start + i as f64,
                system,
                &[1, 2, 3],
                100 + first_id + i,
            )
        })
        .collect()
}

fn clusterer() -> Clusterer<NoAdjacency> {
    Clusterer::new(ClusterSettings::default(), NoAdjacency)
}

fn created(events: &[BattleEvent]) -> Vec<BattleId> {
    events
        .iter()
        .filter_map(|e| match e {
            BattleEvent::Created { battle, .. } => Some(battle.id),
            _ => None,
        })
        .collect()
}

#[test]
fn isolated_kills_are_not_battles() {
    let mut c = clusterer();
    // One kill every 8 minutes all day: never 4 within ±5 min.
    let kills: Vec<_> = (0..180)
        .map(|i| kill(i + 1, i as f64 * 8.0, 30, &[1, 2], 50 + i))
        .collect();
    let ev = c.insert_batch(kills.iter());
    assert!(ev.is_empty(), "{ev:?}");
    assert!(c.battles().is_empty());
}

#[test]
fn npc_only_kills_are_ignored_and_counted() {
    let mut c = clusterer();
    let mut kills = burst(1, 0.0, 8, 30);
    for k in &mut kills {
        for a in &mut k.attackers {
            a.character_id = None;
            a.corporation_id = Some(1_000_125);
            a.alliance_id = None;
            a.is_npc = true;
        }
    }
    assert!(c.insert_batch(kills.iter()).is_empty());
    assert_eq!(c.stats().ignored_npc, 8);
}

#[test]
fn a_burst_is_created_once_and_its_id_is_its_earliest_kill() {
    let kills = burst(10, 0.0, 6, 30);
    // In kill-time order and in one batch the id is the earliest kill.
    let mut c = clusterer();
    let mut all = Vec::new();
    for k in &kills {
        all.extend(c.insert(k));
    }
    assert_eq!(created(&all), vec![BattleId(10)]);
    let mut b = clusterer();
    assert_eq!(
        created(&b.insert_batch(kills.iter().rev())),
        vec![BattleId(10)]
    );
    // In reverse, one kill at a time, the battle qualifies before kill 10 arrives and is founded
    // on kill 11; when kill 10 arrives (and is dense) the battle is renamed to it, and 11 stays
    // an alias: the ids end up the same in any order.
    let mut r = clusterer();
    let mut all = Vec::new();
    for k in kills.iter().rev() {
        all.extend(r.insert(k));
    }
    assert_eq!(created(&all), vec![BattleId(11)]);
    assert!(
        all.contains(&BattleEvent::Renamed {
            from: BattleId(11),
            to: BattleId(10)
        }),
        "{all:?}"
    );
    assert_eq!(r.battles()[0].id, BattleId(10));
    assert_eq!(r.resolve(BattleId(11)), Some(BattleId(10)));
    assert_eq!(r.aliases(), vec![(BattleId(11), BattleId(10))]);
    assert_eq!(
        r.partition(),
        c.partition(),
        "membership is the same either way"
    );
    assert_eq!(c.killmail_ids(BattleId(10)), (10..16).collect::<Vec<_>>());
    // Redelivery is a no-op.
    assert!(c.insert(&kills[0]).is_empty());
    assert_eq!(c.stats().duplicates, 1);
}

#[test]
fn a_bridging_late_burst_merges_and_the_older_id_survives() {
    let mut c = clusterer();
    let a = burst(100, 0.0, 6, 30); // 0..5 min
    let b = burst(200, 65.0, 6, 30); // 65..70 min: > 30 min after a
    let ev = c.insert_batch(b.iter().chain(a.iter()));
    let mut ids = created(&ev);
    ids.sort();
    assert_eq!(ids, vec![BattleId(100), BattleId(200)]);
    // Kills at 33..38 min link both (28 and 27 min gaps, under the 30 min link gap).
    let bridge = burst(300, 33.0, 6, 30);
    let ev = c.insert_batch(bridge.iter());
    assert!(
        ev.contains(&BattleEvent::Merged {
            survivor: BattleId(100),
            absorbed: BattleId(200)
        }),
        "{ev:?}"
    );
    assert_eq!(c.resolve(BattleId(200)), Some(BattleId(100)));
    assert_eq!(c.battles().len(), 1);
    assert_eq!(
        c.killmail_ids(BattleId(200)).len(),
        18,
        "the alias answers with the survivor"
    );
    assert_eq!(c.aliases(), vec![(BattleId(200), BattleId(100))]);
}

#[test]
fn battles_end_by_kill_time_and_late_kills_reopen_them() {
    let mut c = clusterer();
    let _ = c.insert_batch(burst(1, 0.0, 6, 30).iter());
    assert!(
        c.tick(T0 + 20 * MIN).is_empty(),
        "5 min after the last kill is still live"
    );
    let ev = c.tick(T0 + 36 * MIN);
    assert!(matches!(&ev[..], [BattleEvent::Ended { battle }] if battle.id == BattleId(1)));
    assert!(c.tick(T0 + 36 * MIN).is_empty(), "ends once");
    // A late kill (arriving now, killed at minute 9) lands within the gap of `now`.
    let ev = c.insert(&kill(50, 9.0, 30, &[1, 2, 3], 99));
    assert!(
        matches!(&ev[..], [BattleEvent::Updated { added, reopened: true, .. }] if added == &vec![50]),
        "{ev:?}"
    );
    // A late kill long after the gap keeps it ended.
    let _ = c.tick(T0 + 300 * MIN);
    let ev = c.insert(&kill(51, 8.5, 30, &[1, 2, 3], 98));
    assert!(
        matches!(&ev[..], [BattleEvent::Updated { reopened: false, battle, .. }] if battle.ended)
    );
}

#[test]
fn adjacent_systems_with_shared_pilots_are_one_battle() {
    let graph = AdjacencyMap::from_pairs([(30, 31)]);
    let mut c = Clusterer::new(ClusterSettings::default(), graph.clone());
    // Same pilots 1, 2, 3 in both systems, 10 minutes apart.
    let _ = c.insert_batch(
        burst(1, 0.0, 6, 30)
            .iter()
            .chain(burst(20, 10.0, 6, 31).iter()),
    );
    let b = c.battles();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].system_ids, vec![30, 31]);

    // Different pilots: two battles.
    let mut c = Clusterer::new(ClusterSettings::default(), graph);
    let other: Vec<_> = (0..6)
        .map(|i| kill(40 + i, 10.0 + i as f64, 31, &[7, 8, 9], 300 + i))
        .collect();
    let _ = c.insert_batch(burst(1, 0.0, 6, 30).iter().chain(other.iter()));
    assert_eq!(c.battles().len(), 2);

    // Not adjacent: two battles even with the same pilots.
    let mut c = clusterer();
    let _ = c.insert_batch(
        burst(1, 0.0, 6, 30)
            .iter()
            .chain(burst(20, 10.0, 6, 31).iter()),
    );
    assert_eq!(c.battles().len(), 2);
}

#[test]
fn a_straggler_joins_as_a_border_kill() {
    let mut c = clusterer();
    let _ = c.insert_batch(burst(1, 0.0, 6, 30).iter());
    // 9 minutes after the last kill: not dense itself, but within the border gap.
    let ev = c.insert(&kill(9, 14.0, 30, &[1], 77));
    assert!(matches!(&ev[..], [BattleEvent::Updated { added, .. }] if added == &vec![9]));
    // 25 minutes after: outside.
    assert!(c.insert(&kill(10, 40.0, 30, &[1], 78)).is_empty());
}

#[test]
fn reclustering_with_a_shorter_gap_splits_and_keeps_the_founding_id() {
    let mut c = clusterer();
    let _ = c.insert_batch(
        burst(1, 0.0, 6, 30)
            .iter()
            .chain(burst(20, 25.0, 6, 30).iter()),
    );
    assert_eq!(c.battles().len(), 1);
    let settings = ClusterSettings {
        link_gap_ms: 10 * MIN,
        ..ClusterSettings::default()
    };
    let ev = c.recluster(settings);
    assert!(
        ev.contains(&BattleEvent::Split {
            from: BattleId(1),
            into: vec![BattleId(1), BattleId(20)]
        }),
        "{ev:?}"
    );
    assert_eq!(c.killmail_ids(BattleId(1)), (1..7).collect::<Vec<_>>());
    assert_eq!(c.killmail_ids(BattleId(20)), (20..26).collect::<Vec<_>>());
    // And back: the two merge again, the older id survives.
    let ev = c.recluster(ClusterSettings::default());
    assert!(
        ev.contains(&BattleEvent::Merged {
            survivor: BattleId(1),
            absorbed: BattleId(20)
        }),
        "{ev:?}"
    );
    assert_eq!(c.resolve(BattleId(20)), Some(BattleId(1)));
}

#[test]
fn too_few_pilots_is_not_a_battle() {
    let mut c = clusterer();
    // Two pilots trading kills: dense, but only 2 + victims... victims all the same pilot.
    let kills: Vec<_> = (0..8).map(|i| kill(i + 1, i as f64, 30, &[1], 2)).collect();
    assert!(c.insert_batch(kills.iter()).is_empty());
}

#[test]
fn security_types_follow_the_games_rounding() {
    use bs_clustering::SecurityType as S;
    assert_eq!(S::classify(30000142, Some(10000002), 0.9459), S::Highsec);
    assert_eq!(S::classify(1, None, 0.45), S::Highsec, "0.45 shows as 0.5");
    assert_eq!(S::classify(1, None, 0.44), S::Lowsec);
    assert_eq!(
        S::classify(1, None, 0.01),
        S::Lowsec,
        "(0, 0.05) shows as 0.1"
    );
    assert_eq!(S::classify(1, None, 0.0), S::Nullsec);
    assert_eq!(S::classify(1, None, -0.4), S::Nullsec);
    assert_eq!(S::classify(31000368, Some(11000004), -0.99), S::Wormhole);
    assert_eq!(S::classify(30000157, Some(10000070), -1.0), S::Pochven);
}

#[test]
fn settled_battles_are_evicted_and_older_arrivals_are_too_late() {
    let mut c = clusterer();
    let day = 24 * 60;
    let _ = c.insert_batch(burst(1, 0.0, 6, 30).iter());
    let _ = c.insert_batch(burst(50, 60.0, 6, 30).iter());
    let _ = c.insert(&kill(90, 200.0, 30, &[1], 5)); // a lone kill: noise
    let _ = c.insert_batch(burst(100, 5.0 * day as f64, 6, 30).iter());
    let _ = c.tick(T0 + 5 * day * MIN + 10 * MIN);
    let evicted = c.evict_settled(72 * 60 * MIN);
    assert_eq!(evicted.len(), 2);
    assert_eq!(evicted[0].battle.id, BattleId(1));
    assert_eq!(evicted[1].battle.id, BattleId(50));
    assert!(evicted[0].battle.ended);
    assert_eq!(evicted[0].killmail_ids, (1..7).collect::<Vec<_>>());
    // 13 of 19 kills evicted: the arena was compacted, indices remapped.
    assert_eq!(c.len(), 6, "only the recent battle stays in memory");
    assert_eq!(
        c.killmail_ids(BattleId(100)),
        (100..106).collect::<Vec<_>>()
    );
    assert_eq!(c.battle(BattleId(1)), None);
    // A kill of the evicted window is too late; the live battle keeps working.
    assert!(c.insert(&kill(7, 3.0, 30, &[1, 2, 3], 9)).is_empty());
    assert_eq!(c.stats().too_late, 1);
    let ev = c.insert(&kill(200, 5.0 * day as f64 + 3.5, 30, &[1, 2, 3], 9));
    assert!(
        matches!(&ev[..], [BattleEvent::Updated { battle, added, .. }] if battle.id == BattleId(100) && added == &vec![200])
    );
    assert_eq!(c.killmail_ids(BattleId(100)).len(), 7);
    // Nothing more to evict.
    assert!(c.evict_settled(72 * 60 * MIN).is_empty());
}

#[test]
fn esi_adapter_reads_zkb_shapes_and_rejects_bad_input() {
    use bs_clustering::esi::{EsiRejection, from_esi_json};
    let types = crate::fights::types();
    let line = {
        use std::io::BufRead;
        let f = std::fs::File::open(crate::support::testdata("fight-m-oee8-2021-11-29.jsonl.gz"))
            .expect("fixture");
        std::io::BufReader::new(flate2::read::MultiGzDecoder::new(f))
            .lines()
            .next()
            .expect("a line")
            .expect("read")
    };
    let esi: serde_json::Value = serde_json::from_str(&line).expect("json");
    let bare = from_esi_json(&esi, &types).expect("bare ESI");
    assert!(bare.isk_value > 0.0, "priced from the hull and items");
    assert_ne!(bare.victim.ship.class, ShipClass::Other);
    // R2Z2 shape: the ESI body under `esi`, zKillboard values under `zkb` win.
    let r2z2 = serde_json::json!({
        "killmail_id": bare.killmail_id,
        "esi": esi,
        "zkb": {"totalValue": 123_456_789.5, "droppedValue": 1_000.0}
    });
    let k = from_esi_json(&r2z2, &types).expect("r2z2");
    assert_eq!(k.isk_value, 123_456_789.5);
    assert_eq!(k.isk_dropped, 1_000.0);
    assert_eq!(k.attackers, bare.attackers);
    // Broken input is a typed rejection, never a panic.
    assert_eq!(
        from_esi_json(&serde_json::json!({"killmail_id": 1}), &types),
        Err(EsiRejection::MissingField("killmail_time"))
    );
    assert!(matches!(
        from_esi_json(
            &serde_json::json!({"killmail_id": 1, "killmail_time": "yesterday"}),
            &types
        ),
        Err(EsiRejection::BadTime(_))
    ));
}

#[test]
fn adopted_ids_rename_and_alias() {
    let kills: Vec<_> = burst(1, 0.0, 6, 30)
        .into_iter()
        .chain(burst(20, 25.0, 6, 30))
        .collect();
    let mut c = clusterer();
    let _ = c.insert_batch(kills.iter());
    // A persisted id founded on kill 20 renames the battle.
    assert!(c.adopt_ids([BattleId(20)]).is_empty());
    assert_eq!(c.battles()[0].id, BattleId(20));
    assert_eq!(c.battle_of(1), Some(BattleId(20)));
    // Two persisted ids in one battle: the older founding kill wins, the other redirects.
    let ev = c.adopt_ids([BattleId(20), BattleId(1)]);
    assert_eq!(
        ev,
        vec![BattleEvent::Merged {
            survivor: BattleId(1),
            absorbed: BattleId(20)
        }]
    );
    assert_eq!(c.resolve(BattleId(20)), Some(BattleId(1)));
    assert_eq!(c.killmail_ids(BattleId(20)).len(), 12);
    // Unknown kills are ignored.
    assert!(c.adopt_ids([BattleId(999)]).is_empty());
}
