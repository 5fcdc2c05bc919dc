//! Matching semantics on real enriched killmails: every clause against an independent
//! computation from the raw fields, AND/OR/none-of as set algebra, jump ranges from the
//! stargate graph, watchlists, battle triggers, max age, and the index against brute force.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bs_events::{BattleSideSnapshot, BattleSnapshot, BattleStatus, KillmailEnriched};
use bs_notification::BundledGeo;
use bs_notification::domain::filter::{self, Filter, Role, Subject};
use bs_notification::domain::{Entry, Matcher, Scratch, WatchlistSet, too_old};
use bs_sde::StaticData;

use crate::helpers::*;

type Ids = BTreeSet<i64>;

struct World {
    kms: Vec<KillmailEnriched>,
    lists: HashMap<i64, WatchlistSet>,
}

impl World {
    fn new() -> Self {
        let mut kms = fight("lxq2-t");
        kms.extend(fight("uw9b-f"));
        Self {
            kms,
            lists: HashMap::new(),
        }
    }
    fn run(&self, f: &Filter) -> Ids {
        let c = filter::compile(f, &BundledGeo, &self.lists).unwrap();
        self.kms
            .iter()
            .filter(|k| c.matches(Subject::Killmail(k)))
            .map(|k| k.killmail_id)
            .collect()
    }
    fn by(&self, p: impl Fn(&KillmailEnriched) -> bool) -> Ids {
        self.kms
            .iter()
            .filter(|k| p(k))
            .map(|k| k.killmail_id)
            .collect()
    }
    fn all(&self) -> Ids {
        self.by(|_| true)
    }
}

/// The most frequent value, so the clause matches some but not all killmails.
fn mode(values: impl Iterator<Item = i64>) -> i64 {
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts.into_iter().max_by_key(|&(v, n)| (n, v)).unwrap().0
}

/// Asserts the clause is informative on this data (neither nothing nor everything).
fn partial(w: &World, got: &Ids, what: &str) {
    assert!(!got.is_empty(), "{what}: matched nothing");
    assert!(got.len() < w.kms.len(), "{what}: matched everything");
}

#[test]
fn entity_clauses_by_role() {
    let w = World::new();
    let alliance = mode(w.kms.iter().filter_map(|k| k.victim.who.alliance_id));
    let victim = w.run(&Filter::Alliance {
        ids: vec![alliance],
        role: Role::Victim,
    });
    assert_eq!(victim, w.by(|k| k.victim.who.alliance_id == Some(alliance)));
    partial(&w, &victim, "alliance as victim");
    let attacker = w.run(&Filter::Alliance {
        ids: vec![alliance],
        role: Role::Attacker,
    });
    assert_eq!(
        attacker,
        w.by(|k| k
            .attackers
            .iter()
            .any(|a| a.who.alliance_id == Some(alliance)))
    );
    let either = w.run(&Filter::Alliance {
        ids: vec![alliance],
        role: Role::Either,
    });
    assert_eq!(either, victim.union(&attacker).copied().collect());

    let corp = mode(w.kms.iter().filter_map(|k| k.victim.who.corporation_id));
    let got = w.run(&Filter::Corporation {
        ids: vec![corp],
        role: Role::Victim,
    });
    assert_eq!(got, w.by(|k| k.victim.who.corporation_id == Some(corp)));
    partial(&w, &got, "corporation");

    let ch = mode(
        w.kms
            .iter()
            .flat_map(|k| k.attackers.iter().filter_map(|a| a.who.character_id)),
    );
    let got = w.run(&Filter::Character {
        ids: vec![ch],
        role: Role::Attacker,
    });
    assert_eq!(
        got,
        w.by(|k| k.attackers.iter().any(|a| a.who.character_id == Some(ch)))
    );
    partial(&w, &got, "character as attacker");
    // Role defaults to either in JSON.
    let f: Filter =
        serde_json::from_str(&format!(r#"{{"type":"character","ids":[{ch}]}}"#)).unwrap();
    assert_eq!(
        f,
        Filter::Character {
            ids: vec![ch],
            role: Role::Either
        }
    );
}

#[test]
fn location_clauses_and_jumps() {
    let w = World::new();
    let sde = StaticData::bundled();
    let a = w.kms[0].system.id;
    let b = w.kms.last().unwrap().system.id;
    assert_ne!(a, b, "two fights in two systems");
    let in_a = w.run(&Filter::System { ids: vec![a] });
    assert_eq!(in_a, w.by(|k| k.system.id == a));
    partial(&w, &in_a, "system");
    let region = w.kms[0].system.region_id.unwrap();
    assert_eq!(
        w.run(&Filter::Region { ids: vec![region] }),
        w.by(|k| k.system.region_id == Some(region))
    );
    let con = w.kms[0].system.constellation_id.unwrap();
    let got = w.run(&Filter::Constellation { ids: vec![con] });
    assert_eq!(got, w.by(|k| k.system.constellation_id == Some(con)));
    partial(&w, &got, "constellation");

    // Jumps: the stargate distance from a to b, computed by the SDE; one less excludes b.
    let d = sde
        .systems_within(a, 60)
        .into_iter()
        .find(|&(s, _)| s == b)
        .map(|(_, d)| d)
        .expect("b reachable from a");
    assert!(d >= 1);
    let zero = w.run(&Filter::WithinJumps {
        system_id: a,
        jumps: 0,
    });
    assert_eq!(zero, in_a);
    if d <= filter::MAX_JUMPS {
        let reach = w.run(&Filter::WithinJumps {
            system_id: a,
            jumps: d,
        });
        assert!(reach.contains(&w.kms.last().unwrap().killmail_id));
        let short = w.run(&Filter::WithinJumps {
            system_id: a,
            jumps: d - 1,
        });
        assert!(
            !short
                .iter()
                .any(|id| w.by(|k| k.system.id == b).contains(id))
        );
    }
    // A neighbour one jump away is in range 1, not in range 0.
    let (n, _) = sde
        .systems_within(a, 1)
        .into_iter()
        .find(|&(_, d)| d == 1)
        .unwrap();
    let c1 = filter::compile(
        &Filter::WithinJumps {
            system_id: n,
            jumps: 1,
        },
        &BundledGeo,
        &w.lists,
    )
    .unwrap();
    let c0 = filter::compile(
        &Filter::WithinJumps {
            system_id: n,
            jumps: 0,
        },
        &BundledGeo,
        &w.lists,
    )
    .unwrap();
    let k = &w.kms[0];
    assert!(c1.matches(Subject::Killmail(k)));
    assert!(!c0.matches(Subject::Killmail(k)));
    assert!(matches!(
        filter::compile(
            &Filter::WithinJumps {
                system_id: 1,
                jumps: 1
            },
            &BundledGeo,
            &w.lists
        ),
        Err(filter::FilterError::UnknownSystem(1))
    ));

    let sec = w.kms[0].system.security_type.clone().unwrap();
    assert_eq!(
        w.run(&Filter::SecurityType {
            types: vec![sec.clone()]
        }),
        w.by(|k| k.system.security_type.as_deref() == Some(&sec))
    );
    assert!(
        w.run(&Filter::SecurityType {
            types: vec!["highsec".into()]
        })
        .is_empty()
            || sec == "highsec"
    );
}

#[test]
fn ship_value_and_shape_clauses() {
    let w = World::new();
    let ship = mode(w.kms.iter().map(|k| k.victim.ship.type_id));
    let got = w.run(&Filter::ShipType {
        ids: vec![ship],
        role: Role::Victim,
    });
    assert_eq!(got, w.by(|k| k.victim.ship.type_id == ship));
    partial(&w, &got, "ship type");
    let flown = w.run(&Filter::ShipType {
        ids: vec![ship],
        role: Role::Attacker,
    });
    assert_eq!(
        flown,
        w.by(|k| k
            .attackers
            .iter()
            .any(|a| a.ship.as_ref().is_some_and(|s| s.type_id == ship)))
    );
    let group = mode(w.kms.iter().filter_map(|k| k.victim.ship.group_id));
    let got = w.run(&Filter::ShipGroup {
        ids: vec![group],
        role: Role::Victim,
    });
    assert_eq!(got, w.by(|k| k.victim.ship.group_id == Some(group)));
    partial(&w, &got, "ship group");
    let class = w.kms[0].victim.ship.class.clone().unwrap();
    let got = w.run(&Filter::ShipClass {
        classes: vec![class.clone()],
        role: Role::Victim,
    });
    assert_eq!(
        got,
        w.by(|k| k.victim.ship.class.as_deref() == Some(&class))
    );

    let mut isk: Vec<f64> = w.kms.iter().map(|k| k.isk.total).collect();
    isk.sort_by(f64::total_cmp);
    let median = isk[isk.len() / 2];
    let got = w.run(&Filter::MinIsk { isk: median });
    assert_eq!(got, w.by(|k| k.isk.total >= median));
    partial(&w, &got, "min isk");
    let pilots = 20;
    let got = w.run(&Filter::MinPilots { pilots });
    assert_eq!(got, w.by(|k| k.pilot_count >= pilots));
    partial(&w, &got, "min pilots");

    let players = |k: &KillmailEnriched| {
        k.attackers
            .iter()
            .filter(|a| !a.is_npc && a.who.character_id.is_some())
            .count()
    };
    let solo = w.run(&Filter::Solo);
    assert_eq!(solo, w.by(|k| players(k) == 1));
    let gang = w.run(&Filter::Gang);
    assert_eq!(gang, w.by(|k| players(k) >= 2));
    partial(&w, &gang, "gang");
    assert!(solo.is_disjoint(&gang));
    assert_eq!(
        w.run(&Filter::Npc),
        w.by(|k| k.attackers.iter().all(|a| a.is_npc))
    );
}

#[test]
fn and_or_none_of_are_set_algebra() {
    let w = World::new();
    let a_sys = w.kms[0].system.id;
    let sys = Filter::System { ids: vec![a_sys] };
    let mut isk: Vec<f64> = w.kms.iter().map(|k| k.isk.total).collect();
    isk.sort_by(f64::total_cmp);
    let rich = Filter::MinIsk {
        isk: isk[isk.len() * 3 / 4],
    };
    let (s, r) = (w.run(&sys), w.run(&rich));
    let and = w.run(&Filter::And {
        of: vec![sys.clone(), rich.clone()],
    });
    assert_eq!(and, s.intersection(&r).copied().collect());
    partial(&w, &and, "and");
    let or = w.run(&Filter::Or {
        of: vec![sys.clone(), rich.clone()],
    });
    assert_eq!(or, s.union(&r).copied().collect());
    let none = w.run(&Filter::NoneOf {
        of: vec![sys.clone(), rich.clone()],
    });
    assert_eq!(none, w.all().difference(&or).copied().collect());
    partial(&w, &none, "none_of");
    // Empty combinators.
    assert_eq!(w.run(&Filter::And { of: vec![] }), w.all());
    assert!(w.run(&Filter::Or { of: vec![] }).is_empty());
    assert_eq!(w.run(&Filter::NoneOf { of: vec![] }), w.all());
    // Nesting: in the system but none of the rich ones.
    let nested = w.run(&Filter::And {
        of: vec![sys, Filter::NoneOf { of: vec![rich] }],
    });
    assert_eq!(nested, s.difference(&r).copied().collect());
    // The JSON form round-trips.
    let f: Filter = serde_json::from_str(
        r#"{"type":"and","of":[{"type":"min_isk","isk":1e9},{"type":"none_of","of":[{"type":"solo"}]}]}"#,
    )
    .unwrap();
    assert_eq!(
        serde_json::from_value::<Filter>(serde_json::to_value(&f).unwrap()).unwrap(),
        f
    );
    assert!(serde_json::from_str::<Filter>(r#"{"type":"bogus"}"#).is_err());
}

#[test]
fn watchlists_resolve_entities_and_systems() {
    let mut w = World::new();
    let alliance = mode(w.kms.iter().filter_map(|k| k.victim.who.alliance_id));
    let b_sys = w.kms.last().unwrap().system.id;
    w.lists.insert(
        7,
        WatchlistSet {
            alliances: vec![alliance],
            systems: vec![b_sys],
            ..Default::default()
        },
    );
    let got = w.run(&Filter::Watchlist {
        id: 7,
        role: Role::Victim,
    });
    assert_eq!(
        got,
        w.by(|k| k.victim.who.alliance_id == Some(alliance) || k.system.id == b_sys)
    );
    partial(&w, &got, "watchlist");
    assert_eq!(
        filter::compile(
            &Filter::Watchlist {
                id: 8,
                role: Role::Either
            },
            &BundledGeo,
            &w.lists
        )
        .unwrap_err(),
        filter::FilterError::UnknownWatchlist(8)
    );
}

fn battle(kills: u32, isk: f64, system: i64, alliance: i64) -> BattleSnapshot {
    let t = chrono::Utc::now();
    BattleSnapshot {
        battle_id: 42,
        status: BattleStatus::Active,
        merged_into: None,
        system_ids: vec![system],
        region_ids: vec![],
        security_types: vec!["nullsec".into()],
        start_time: t,
        end_time: t,
        total_kills: kills,
        total_isk_destroyed: isk,
        pilots: 100,
        multi_party: false,
        one_sided: false,
        sides: vec![BattleSideSnapshot {
            index: 0,
            pilots: 50,
            kills: 1,
            losses: 1,
            isk_destroyed: 0.0,
            isk_lost: 0.0,
            alliance_ids: vec![alliance],
            corporation_ids: vec![],
        }],
        revision: 1,
    }
}

#[test]
fn battle_triggers() {
    let w = World::new();
    let trigger = Filter::And {
        of: vec![
            Filter::Battle {
                min_kills: Some(50),
                min_isk: None,
            },
            Filter::Alliance {
                ids: vec![99],
                role: Role::Either,
            },
        ],
    };
    assert!(filter::is_battle_trigger(&trigger));
    let c = filter::compile(&trigger, &BundledGeo, &w.lists).unwrap();
    assert!(c.matches(Subject::Battle(&battle(50, 1e9, 30000142, 99))));
    assert!(
        !c.matches(Subject::Battle(&battle(49, 1e9, 30000142, 99))),
        "below kills"
    );
    assert!(
        !c.matches(Subject::Battle(&battle(60, 1e9, 30000142, 98))),
        "other alliance"
    );
    // A battle clause never matches a killmail.
    assert!(w.kms.iter().all(|k| !c.matches(Subject::Killmail(k))));
    let isk = filter::compile(
        &Filter::And {
            of: vec![
                Filter::Battle {
                    min_kills: None,
                    min_isk: Some(5e9),
                },
                Filter::System {
                    ids: vec![30000142],
                },
            ],
        },
        &BundledGeo,
        &w.lists,
    )
    .unwrap();
    assert!(isk.matches(Subject::Battle(&battle(2, 6e9, 30000142, 1))));
    assert!(!isk.matches(Subject::Battle(&battle(2, 4e9, 30000142, 1))));
    assert!(!isk.matches(Subject::Battle(&battle(2, 6e9, 30000144, 1))));
}

#[test]
fn max_age_is_by_kill_time_against_the_given_now() {
    let km = &World::new().kms[0];
    let hour = Duration::from_secs(3600);
    let t = km.killmail_time;
    assert!(!too_old(t, t + chrono::Duration::minutes(59), hour));
    assert!(!too_old(t, t + chrono::Duration::minutes(60), hour));
    assert!(too_old(t, t + chrono::Duration::minutes(61), hour));
    // A kill "from the future" (clock skew) is fresh.
    assert!(!too_old(t, t - chrono::Duration::minutes(5), hour));
    let cfg = bs_config::NotificationConfig {
        max_age: "90d".into(),
        ..Default::default()
    };
    assert_eq!(cfg.max_age().unwrap(), Duration::from_secs(90 * 86400));
}

/// The key index returns exactly what checking every subscription would, on generated filters.
#[test]
fn index_agrees_with_brute_force() {
    let w = World::new();
    let mut rng_state = 0x9e3779b97f4a7c15u64;
    let mut rnd = move |n: usize| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        (rng_state % n as u64) as usize
    };
    let pick = |r: usize| &w.kms[r % w.kms.len()];
    let mut entries = Vec::new();
    for i in 0..600 {
        let k = pick(rnd(10_000));
        let leaf = |j: usize, k: &KillmailEnriched| match j {
            0 => Filter::System {
                ids: vec![k.system.id],
            },
            1 => Filter::Alliance {
                ids: k.victim.who.alliance_id.into_iter().collect(),
                role: Role::Attacker,
            },
            2 => Filter::Corporation {
                ids: k.victim.who.corporation_id.into_iter().collect(),
                role: Role::Either,
            },
            3 => Filter::ShipType {
                ids: vec![k.victim.ship.type_id],
                role: Role::Either,
            },
            4 => Filter::MinIsk { isk: k.isk.total },
            5 => Filter::Region {
                ids: k.system.region_id.into_iter().collect(),
            },
            6 => Filter::Gang,
            _ => Filter::MinPilots {
                pilots: k.pilot_count,
            },
        };
        let a = leaf(rnd(8), k);
        let b = leaf(rnd(8), pick(rnd(10_000)));
        let f = match rnd(4) {
            0 => a,
            1 => Filter::And { of: vec![a, b] },
            2 => Filter::Or { of: vec![a, b] },
            _ => Filter::And {
                of: vec![a, Filter::NoneOf { of: vec![b] }],
            },
        };
        entries.push(Entry {
            subscription_id: i,
            filter: filter::compile(&f, &BundledGeo, &w.lists).unwrap(),
            battle: false,
        });
    }
    let matcher = Matcher::new(entries.clone());
    let mut scratch = Scratch::default();
    let mut total = 0;
    for k in &w.kms {
        let fast = matcher.match_killmail(k, &mut scratch);
        let slow: Vec<i64> = entries
            .iter()
            .filter(|e| e.filter.matches(Subject::Killmail(k)))
            .map(|e| e.subscription_id)
            .collect();
        assert_eq!(fast, slow, "killmail {}", k.killmail_id);
        total += fast.len();
    }
    assert!(total > 0);
}

/// The hub never waits: a connection whose queue is full is dropped, the others still get
/// every message.
#[tokio::test]
async fn slow_websocket_clients_are_dropped_not_waited_for() {
    let hub = bs_notification::Hub::new();
    let (_, mut fast) = hub.join("alice", 4);
    let (_, _slow) = hub.join("alice", 1);
    for i in 0..3 {
        let msg: bs_notification::delivery::ws::Message = format!("m{i}").into();
        hub.publish("alice", &msg);
        assert_eq!(fast.recv().await.as_deref(), Some(format!("m{i}").as_str()));
    }
    assert_eq!(
        hub.dropped(),
        1,
        "the slow one was dropped on its second message"
    );
    assert_eq!(hub.connections(), 1);
    // The public feed applies per-connection filters.
    let (_, mut all) = hub.join_public(None, 4);
    let none = std::sync::Arc::new(
        filter::compile(&Filter::Or { of: vec![] }, &BundledGeo, &HashMap::new()).unwrap(),
    );
    let (_, mut filtered) = hub.join_public(Some(none), 4);
    let msg: bs_notification::delivery::ws::Message = "k".into();
    assert_eq!(
        hub.publish_public(&msg, |f| f.matches(Subject::Killmail(&World::new().kms[0]))),
        1
    );
    assert_eq!(all.recv().await.as_deref(), Some("k"));
    assert!(filtered.try_recv().is_err());
}
