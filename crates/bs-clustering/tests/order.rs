//! Order independence: the same set of real killmails, shuffled, re-batched and delivered up to
//! 72 h late, always yields the same battles with the same ids; and the event stream, replayed,
//! rebuilds exactly the clusterer's membership and ids.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use bs_clustering::{BattleEvent, BattleId, ClusterKill, ClusterSettings, Clusterer};
use proptest::prelude::*;

use crate::fights::{cluster, graph, load};

fn kills() -> &'static Vec<ClusterKill> {
    static K: OnceLock<Vec<ClusterKill>> = OnceLock::new();
    K.get_or_init(|| {
        load(&[
            "repo:fight-uw9b-f-2021-11-30.jsonl.gz",
            "repo:fight-lxq2-t-2021-11-27.jsonl.gz",
            "neighbours-lxq2-t-2021-11-27.jsonl.gz",
            "fight-massacre-j105951-2021-11-30.jsonl.gz",
            "fight-ec-p8r-2021-11-28.jsonl.gz",
        ])
    })
}

fn reference() -> &'static Vec<Vec<u64>> {
    static P: OnceLock<Vec<Vec<u64>>> = OnceLock::new();
    P.get_or_init(|| cluster(kills()).partition())
}

/// Battle id -> sorted killmails of a clusterer.
fn named(c: &Clusterer<bs_clustering::AdjacencyMap>) -> BTreeMap<BattleId, Vec<u64>> {
    c.battles()
        .into_iter()
        .map(|b| {
            let mut v = c.killmail_ids(b.id);
            v.sort_unstable();
            (b.id, v)
        })
        .collect()
}

/// The one-batch result with its ids: ids, like membership, must not depend on arrival order.
fn reference_named() -> &'static BTreeMap<BattleId, Vec<u64>> {
    static P: OnceLock<BTreeMap<BattleId, Vec<u64>>> = OnceLock::new();
    P.get_or_init(|| named(&cluster(kills())))
}

/// What a consumer of the events knows: battle -> killmails, plus redirects.
#[derive(Default)]
struct Replay {
    battles: BTreeMap<BattleId, BTreeSet<u64>>,
    aliases: BTreeMap<BattleId, BattleId>,
    ended: BTreeSet<BattleId>,
}

impl Replay {
    fn apply(&mut self, events: &[BattleEvent]) {
        for e in events {
            match e {
                BattleEvent::Created {
                    battle,
                    killmail_ids,
                } => {
                    assert!(
                        self.battles
                            .insert(battle.id, killmail_ids.iter().copied().collect())
                            .is_none(),
                        "created twice: {}",
                        battle.id
                    );
                    assert_eq!(battle.kills as usize, killmail_ids.len());
                }
                BattleEvent::Updated {
                    battle,
                    added,
                    removed,
                    reopened,
                } => {
                    let set = self
                        .battles
                        .get_mut(&battle.id)
                        .expect("update of unknown battle");
                    for id in removed {
                        assert!(set.remove(id), "removed a kill it did not have");
                    }
                    set.extend(added.iter().copied());
                    assert_eq!(
                        set.len(),
                        battle.kills as usize,
                        "summary count matches rows"
                    );
                    if *reopened {
                        assert!(
                            self.ended.remove(&battle.id),
                            "reopened a battle that had not ended"
                        );
                    }
                }
                BattleEvent::Merged { survivor, absorbed } => {
                    let moved = self
                        .battles
                        .remove(absorbed)
                        .expect("absorbed unknown battle");
                    self.battles
                        .get_mut(survivor)
                        .expect("unknown survivor")
                        .extend(moved);
                    self.aliases.insert(*absorbed, *survivor);
                    self.ended.remove(absorbed);
                }
                BattleEvent::Renamed { from, to } => {
                    let set = self.battles.remove(from).expect("renamed unknown battle");
                    assert!(
                        self.battles.insert(*to, set).is_none(),
                        "renamed onto a live battle"
                    );
                    for target in self.aliases.values_mut() {
                        if target == from {
                            *target = *to;
                        }
                    }
                    self.aliases.insert(*from, *to);
                    if self.ended.remove(from) {
                        self.ended.insert(*to);
                    }
                }
                BattleEvent::Ended { battle } => {
                    assert!(self.ended.insert(battle.id), "ended twice");
                }
                BattleEvent::Split { .. } | BattleEvent::Dissolved { .. } => {
                    panic!("insert-only clustering never splits")
                }
            }
        }
    }

    /// Battle id -> sorted killmails, as a consumer of the events names them.
    fn named(&self) -> BTreeMap<BattleId, Vec<u64>> {
        self.battles
            .iter()
            .map(|(&id, s)| (id, s.iter().copied().collect()))
            .collect()
    }

    fn partition(&self) -> Vec<Vec<u64>> {
        let mut v: Vec<Vec<u64>> = self
            .battles
            .values()
            .map(|s| s.iter().copied().collect())
            .collect();
        v.sort();
        v
    }
}

fn check_run(c: &Clusterer<bs_clustering::AdjacencyMap>, replay: &Replay) {
    assert_eq!(
        &c.partition(),
        reference(),
        "membership depends on delivery order"
    );
    assert_eq!(
        replay.partition(),
        c.partition(),
        "events do not rebuild the state"
    );
    assert_eq!(&named(c), reference_named(), "ids depend on delivery order");
    assert_eq!(replay.named(), named(c), "events do not carry the ids");
    for (&id, kills) in &named(c) {
        // The id is the battle's earliest core kill, so it is one of its killmails.
        assert!(
            kills.contains(&id.0),
            "battle {id} does not hold its founding kill"
        );
    }
    for (&absorbed, &survivor) in &replay.aliases {
        let live = c.resolve(absorbed).expect("alias must keep answering");
        assert_eq!(c.resolve(survivor), Some(live));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any permutation, cut into batches of any size.
    #[test]
    fn shuffled_and_rebatched(
        perm in Just((0..kills().len()).collect::<Vec<usize>>()).prop_shuffle(),
        cuts in prop::collection::vec(1usize..80, 1..64),
    ) {
        let all = kills();
        let mut c = Clusterer::new(ClusterSettings::default(), graph());
        let mut replay = Replay::default();
        let mut i = 0;
        let mut cut = cuts.iter().cycle();
        while i < perm.len() {
            let n = *cut.next().unwrap_or(&1);
            let batch: Vec<&ClusterKill> = perm[i..(i + n).min(perm.len())].iter().map(|&j| &all[j]).collect();
            replay.apply(&c.insert_batch(batch));
            i += n;
        }
        check_run(&c, &replay);
    }

    /// Live delivery by arrival time, where a share of the kills arrives up to 72 h late (OPSEC
    /// delays, backfill), with the clock ticking along; plus redelivered duplicates.
    #[test]
    fn late_kills_up_to_72h(
        delays in prop::collection::vec(prop_oneof![3 => Just(0i64), 1 => 0i64..=72 * 60], kills().len()),
        dup_every in 5usize..50,
        evict in any::<bool>(),
    ) {
        let all = kills();
        let mut arrivals: Vec<(i64, usize)> = all
            .iter()
            .zip(&delays)
            .enumerate()
            .map(|(i, (k, d))| (k.time_ms + d * 60_000, i))
            .collect();
        arrivals.sort();
        let mut c = Clusterer::new(ClusterSettings::default(), graph());
        let mut replay = Replay::default();
        let mut evicted: Vec<Vec<u64>> = Vec::new();
        for (n, &(at, i)) in arrivals.iter().enumerate() {
            replay.apply(&c.insert(&all[i]));
            if n % dup_every == 0 {
                replay.apply(&c.insert(&all[i]));
            }
            replay.apply(&c.tick(at));
            if evict && n % 97 == 0 {
                for e in c.evict_settled(72 * 3_600_000) {
                    let mut ids = e.killmail_ids;
                    ids.sort_unstable();
                    prop_assert_eq!(
                        replay.battles.remove(&e.battle.id).map(|s| s.into_iter().collect::<Vec<_>>()),
                        Some(ids.clone())
                    );
                    prop_assert_eq!(reference_named().get(&e.battle.id), Some(&ids), "evicted battle named by arrival order");
                    evicted.push(ids);
                }
            }
        }
        prop_assert_eq!(c.stats().too_late, 0, "nothing is later than 72 h");
        if evicted.is_empty() {
            check_run(&c, &replay);
        } else {
            // Evicted battles plus the live ones are exactly the reference partition.
            let mut all_parts = c.partition();
            all_parts.extend(evicted);
            all_parts.sort();
            prop_assert_eq!(&all_parts, reference());
            prop_assert_eq!(replay.partition(), c.partition());
            // Live battles keep the one-batch ids too.
            let reference = reference_named();
            for (id, kills) in named(&c) {
                prop_assert_eq!(reference.get(&id), Some(&kills), "battle {} named by arrival order", id);
            }
        }
        prop_assert!(c.stats().duplicates > 0);
    }
}
