//! The conformance suite: generic async test bodies, run against every backend by `main.rs`.
//!
//! Each body gets a fresh, empty index, seeds it with the real-data fixtures and checks
//! behaviour, never engine internals. Expected counts are computed from the fixtures, not
//! hard-coded, so the fixtures can be rebuilt.

use std::collections::BTreeMap;

use bs_search_index::{
    AllianceDoc, Collection, Document, Filter, Hit, SearchError, SearchIndex, SearchQuery, SortBy,
};

use crate::fixtures::Fixtures;

async fn seeded(idx: &dyn SearchIndex) -> Fixtures {
    let fx = Fixtures::load();
    idx.ensure_collections().await.expect("ensure collections");
    let docs = fx.documents();
    let report = idx.upsert(&docs).await.expect("upsert");
    assert!(
        report.rejected.is_empty(),
        "{:?}",
        &report.rejected[..report.rejected.len().min(5)]
    );
    assert_eq!(report.indexed, docs.len());
    idx.refresh().await.expect("refresh");
    fx
}

async fn ac(idx: &dyn SearchIndex, q: &str, types: &[Collection], limit: usize) -> Vec<Hit> {
    idx.autocomplete(q, types, limit)
        .await
        .unwrap_or_else(|e| panic!("autocomplete {q:?}: {e}"))
}

/// Asserts that `id` of `kind` is among the first `k` hits for `q`.
async fn assert_found(idx: &dyn SearchIndex, q: &str, kind: Collection, id: &str, k: usize) {
    let hits = ac(idx, q, &[], 10).await;
    let pos = hits.iter().position(|h| h.kind == kind && h.id == id);
    assert!(
        pos.is_some_and(|p| p < k),
        "[{}] {q:?}: expected {kind}/{id} in top {k}, got {:?}",
        idx.backend(),
        hits.iter()
            .map(|h| (h.kind, h.id.as_str(), h.name.as_str()))
            .collect::<Vec<_>>()
    );
}

async fn search(idx: &dyn SearchIndex, q: SearchQuery) -> bs_search_index::SearchResults {
    idx.search(&q)
        .await
        .unwrap_or_else(|e| panic!("search {q:?}: {e}"))
}

pub async fn awkward_system_names(idx: &dyn SearchIndex) {
    seeded(idx).await;
    for q in ["o-iv", "O-IV", "oivnh", "O IVNH", "o-ivnh", "oiv"] {
        assert_found(idx, q, Collection::Systems, "30004049", 1).await;
    }
    for q in ["j1059", "J105951", "j105"] {
        assert_found(idx, q, Collection::Systems, "31000368", 1).await;
    }
    for q in ["UW9B-F", "uw9b", "uw9bf", "uw9b f"] {
        assert_found(idx, q, Collection::Systems, "30001003", 1).await;
    }
    // The exact name wins over every prefix match.
    let hits = ac(idx, "Jita", &[Collection::Systems], 5).await;
    assert_eq!(hits[0].name, "Jita");
    assert_eq!(hits[0].kind, Collection::Systems);
}

pub async fn apostrophes_dots_and_tickers(idx: &dyn SearchIndex) {
    seeded(idx).await;
    for q in [
        "hell's echo",
        "hells",
        "Hell's E",
        "hells echo",
        "hell s echo",
    ] {
        assert_found(idx, q, Collection::Alliances, "99000026", 3).await;
    }
    for q in ["E.B.O.L.A.", "ebola", "e.b.o"] {
        assert_found(idx, q, Collection::Alliances, "99000814", 1).await;
    }
    // Tickers, typed with or without brackets.
    for q in ["[CONDI]", "condi", "CONDI"] {
        assert_found(idx, q, Collection::Alliances, "1354830081", 1).await;
    }
    assert_found(idx, "[INIT.]", Collection::Alliances, "1900696668", 1).await;
    assert_found(idx, "INIT", Collection::Alliances, "1900696668", 3).await;
    assert_found(
        idx,
        "Northern Coalition.",
        Collection::Alliances,
        "1727758877",
        1,
    )
    .await;
    // Character names with apostrophes, typed either way.
    for q in ["Cide Hel'nurath", "hel'nur", "helnurath", "cide hel"] {
        assert_found(idx, q, Collection::Characters, "91106348", 3).await;
    }
    for q in ["Ba'tok", "batok kel", "kel'desh"] {
        assert_found(idx, q, Collection::Characters, "90732899", 3).await;
    }
    // A one-letter word typed in full and the next word being typed, without the first name:
    // `o niel` is every word exact but the last, which is a prefix.
    for q in ["o niel", "O'Nie", "o hara"] {
        let id = if q.ends_with("hara") {
            "93085015"
        } else {
            "91956821"
        };
        assert_found(idx, q, Collection::Characters, id, 3).await;
    }
    // Initials typed with separators still find the name they spell.
    for q in ["e b o l a", "E B O"] {
        assert_found(idx, q, Collection::Alliances, "99000814", 1).await;
    }
    // A corporation ticker with a dot.
    assert_found(idx, "[EMO.]", Collection::Corporations, "98019139", 1).await;
    assert_found(idx, "resilience.", Collection::Corporations, "98019139", 1).await;
}

pub async fn short_names_and_numerals(idx: &dyn SearchIndex) {
    let fx = seeded(idx).await;
    for (q, id) in [
        ("Op3", "94954542"),
        ("3xl", "90188241"),
        ("8 2", "94467764"),
    ] {
        assert!(
            fx.characters.iter().any(|c| c.id == id),
            "fixture lacks {id}"
        );
        assert_found(idx, q, Collection::Characters, id, 3).await;
    }
    // A two-letter ticker finds its alliance.
    assert_found(idx, "PL", Collection::Alliances, "99014066", 3).await;
    assert_found(idx, "[NC]", Collection::Alliances, "1727758877", 3).await;
    // Numbers inside names: `9P4O-F` and the wormhole class-like names.
    assert_found(idx, "9p4o", Collection::Systems, "30002472", 1).await;
}

pub async fn typos(idx: &dyn SearchIndex) {
    seeded(idx).await;
    // One typo from four characters on, two from eight.
    assert_found(idx, "Jorumd", Collection::Systems, "30001046", 1).await;
    assert_found(idx, "tamq", Collection::Systems, "30002813", 3).await;
    assert_found(
        idx,
        "Goonswarn Federation",
        Collection::Alliances,
        "1354830081",
        1,
    )
    .await;
    assert_found(
        idx,
        "Goonsworm Fedaration",
        Collection::Alliances,
        "1354830081",
        1,
    )
    .await;
    assert_found(idx, "pandemc horde", Collection::Alliances, "99005338", 3).await;
    assert_found(idx, "initiatve", Collection::Alliances, "1900696668", 3).await;
    // Below four characters no typo is tolerated.
    let hits = ac(idx, "jto", &[Collection::Systems], 10).await;
    assert!(hits.iter().all(|h| h.name != "Jita"), "{hits:?}");
    // Nonsense finds nothing.
    assert!(ac(idx, "qqzzxxqq", &[], 10).await.is_empty());
    assert!(ac(idx, "  ...  ", &[], 10).await.is_empty());
}

pub async fn mixed_types_and_ranking(idx: &dyn SearchIndex) {
    seeded(idx).await;
    let hits = ac(idx, "jorund", &[], 10).await;
    assert_eq!(
        (hits[0].kind, hits[0].id.as_str()),
        (Collection::Systems, "30001046")
    );
    assert!(
        hits.iter()
            .any(|h| h.kind == Collection::Battles && h.name == "Jorund"),
        "battle in Jorund missing: {hits:?}"
    );
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(hits.iter().all(|h| !h.id.is_empty() && !h.name.is_empty()));
    // Type filters restrict the mix.
    let hits = ac(idx, "jorund", &[Collection::Battles], 10).await;
    assert!(!hits.is_empty() && hits.iter().all(|h| h.kind == Collection::Battles));
    // Same match quality: the more active entity ranks first.
    let twins = [("test-quiet", 1), ("test-busy", 900)].map(|(id, act)| {
        Document::Alliance(AllianceDoc {
            id: id.into(),
            name: "Zzyzx Ranchers".into(),
            ticker: "ZZYZX".into(),
            battle_count: act,
            last_seen_at: 0,
            activity_score: act,
        })
    });
    idx.upsert(&twins).await.unwrap();
    idx.refresh().await.unwrap();
    let hits = ac(idx, "zzyzx ranch", &[Collection::Alliances], 5).await;
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["test-busy", "test-quiet"]);
    // Ship types and their groups.
    let hits = ac(idx, "sabre", &[Collection::ShipTypes], 3).await;
    assert_eq!(hits[0].name, "Sabre");
    assert_eq!(hits[0].extra["groupName"], "Interdictor");
    // A limit is a limit.
    assert_eq!(ac(idx, "a", &[], 7).await.len(), 7);
}

pub async fn facets_and_filters(idx: &dyn SearchIndex) {
    let fx = seeded(idx).await;
    let res = search(
        idx,
        SearchQuery {
            types: vec![Collection::Battles],
            facets: vec![
                "regionName".into(),
                "spaceType".into(),
                "allianceNames".into(),
            ],
            per_page: 50,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(res.total, fx.battles.len() as u64);
    let mut regions: BTreeMap<String, u64> = BTreeMap::new();
    let mut alliances: BTreeMap<String, u64> = BTreeMap::new();
    for b in &fx.battles {
        *regions.entry(b.region_name.clone()).or_default() += 1;
        for a in &b.alliance_names {
            *alliances.entry(a.clone()).or_default() += 1;
        }
    }
    let got: BTreeMap<String, u64> = res.facets["regionName"]
        .iter()
        .map(|f| (f.value.clone(), f.count))
        .collect();
    assert_eq!(got, regions);
    let goons = res.facets["allianceNames"]
        .iter()
        .find(|f| f.value == "Goonswarm Federation")
        .map(|f| f.count);
    assert_eq!(goons, alliances.get("Goonswarm Federation").copied());
    assert!(
        res.facets["spaceType"]
            .windows(2)
            .all(|w| w[0].count >= w[1].count)
    );

    // Filters: region, then a numeric range, then both.
    let curse = regions["Curse"];
    let res = search(
        idx,
        SearchQuery {
            types: vec![Collection::Battles],
            filters: vec![Filter::eq("regionName", "Curse")],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(res.total, curse);
    assert!(res.hits.iter().all(|h| h.extra["regionName"] == "Curse"));
    let big = fx.battles.iter().filter(|b| b.total_kills >= 200).count() as u64;
    let res = search(
        idx,
        SearchQuery {
            types: vec![Collection::Battles],
            filters: vec![Filter::Range {
                field: "totalKills".into(),
                min: Some(200.0),
                max: None,
            }],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(res.total, big);

    // Killmail facets within one battle: ship groups counted per killmail.
    let battle = &fx.battles[1];
    let mut groups: BTreeMap<String, u64> = BTreeMap::new();
    for k in fx
        .killmails
        .iter()
        .filter(|k| k.battle_id.as_deref() == Some(&battle.id))
    {
        *groups.entry(k.ship_group_name.clone()).or_default() += 1;
    }
    let res = search(
        idx,
        SearchQuery {
            types: vec![Collection::Killmails],
            filters: vec![Filter::eq("battleId", battle.id.clone())],
            facets: vec!["shipGroupName".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(res.total, groups.values().sum::<u64>());
    let got: BTreeMap<String, u64> = res.facets["shipGroupName"]
        .iter()
        .map(|f| (f.value.clone(), f.count))
        .collect();
    assert_eq!(got, groups);

    // Systems by security band and region.
    let lo = fx
        .systems
        .iter()
        .filter(|s| s.region_name == "The Forge" && s.security_status >= 0.5)
        .count() as u64;
    let res = search(
        idx,
        SearchQuery {
            types: vec![Collection::Systems],
            filters: vec![
                Filter::eq("regionName", "The Forge"),
                Filter::Range {
                    field: "securityStatus".into(),
                    min: Some(0.5),
                    max: None,
                },
            ],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(res.total, lo);

    // Free text plus type filter: battles involving an alliance.
    let with_goons = fx
        .battles
        .iter()
        .filter(|b| b.alliance_names.iter().any(|a| a == "Goonswarm Federation"))
        .count() as u64;
    let res = search(
        idx,
        SearchQuery {
            q: "goonswarm federation".into(),
            types: vec![Collection::Battles],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(res.total, with_goons);
}

pub async fn sorting_and_paging(idx: &dyn SearchIndex) {
    let fx = seeded(idx).await;
    let q = |field: &str, desc: bool, page: usize, per_page: usize| SearchQuery {
        types: vec![Collection::Battles],
        sort: Some(SortBy {
            field: field.into(),
            desc,
        }),
        page,
        per_page,
        ..Default::default()
    };
    let res = search(idx, q("totalKills", true, 1, 3)).await;
    let mut kills: Vec<i64> = fx.battles.iter().map(|b| b.total_kills).collect();
    kills.sort_unstable_by(|a, b| b.cmp(a));
    let got: Vec<i64> = res
        .hits
        .iter()
        .map(|h| h.extra["totalKills"].as_i64().unwrap())
        .collect();
    assert_eq!(got, kills[..3]);
    assert_eq!(res.hits[0].name, "Jorund");

    let res = search(idx, q("startTime", false, 1, 50)).await;
    let times: Vec<i64> = res
        .hits
        .iter()
        .map(|h| h.extra["startTime"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(times.len(), fx.battles.len());

    // Pages do not overlap and cover everything.
    let p1 = search(idx, q("totalIskDestroyed", true, 1, 5)).await;
    let p2 = search(idx, q("totalIskDestroyed", true, 2, 5)).await;
    let p3 = search(idx, q("totalIskDestroyed", true, 3, 5)).await;
    let mut ids: Vec<String> = [p1, p2, p3]
        .into_iter()
        .flat_map(|r| r.hits.into_iter().map(|h| h.id))
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((n, ids.len()), (fx.battles.len(), fx.battles.len()));

    // Killmails by ISK, across the whole sample.
    let max_isk = fx.killmails.iter().map(|k| k.isk_value).max().unwrap();
    let res = search(
        idx,
        SearchQuery {
            types: vec![Collection::Killmails],
            sort: Some(SortBy {
                field: "iskValue".into(),
                desc: true,
            }),
            per_page: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(res.hits[0].extra["iskValue"].as_i64(), Some(max_isk));

    // Names sort alphabetically (case-insensitive).
    let res = search(
        idx,
        SearchQuery {
            types: vec![Collection::Alliances],
            sort: Some(SortBy {
                field: "name".into(),
                desc: false,
            }),
            per_page: 20,
            ..Default::default()
        },
    )
    .await;
    let names: Vec<String> = res.hits.iter().map(|h| h.name.to_lowercase()).collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "{names:?}");
}

pub async fn deletes_and_merges(idx: &dyn SearchIndex) {
    let fx = seeded(idx).await;
    let merged = fx.battles[0].clone();
    let before = idx.count(Collection::Battles).await.unwrap();
    assert_eq!(before, fx.battles.len() as u64);
    // A merged battle disappears; its killmails are re-pointed by deleting and re-upserting.
    idx.delete(
        Collection::Battles,
        &[merged.id.clone(), "no-such-battle".into()],
    )
    .await
    .unwrap();
    let own = fx
        .killmails
        .iter()
        .filter(|k| k.battle_id.as_deref() == Some(&merged.id))
        .count() as u64;
    assert!(own > 0);
    idx.delete_by_filter(
        Collection::Killmails,
        &[Filter::eq("battleId", merged.id.clone())],
    )
    .await
    .unwrap();
    idx.refresh().await.unwrap();
    assert_eq!(idx.count(Collection::Battles).await.unwrap(), before - 1);
    assert_eq!(
        idx.count(Collection::Killmails).await.unwrap(),
        fx.killmails.len() as u64 - own
    );
    let hits = ac(idx, &merged.system_name, &[Collection::Battles], 10).await;
    assert!(hits.iter().all(|h| h.id != merged.id), "{hits:?}");
    // Other collections are untouched.
    assert_eq!(
        idx.count(Collection::Systems).await.unwrap(),
        fx.systems.len() as u64
    );
    // Clear empties one collection.
    idx.clear(Collection::ShipTypes).await.unwrap();
    idx.refresh().await.unwrap();
    assert_eq!(idx.count(Collection::ShipTypes).await.unwrap(), 0);
    assert!(
        ac(idx, "sabre", &[Collection::ShipTypes], 3)
            .await
            .is_empty()
    );
    // Bad deletes are rejected.
    assert!(matches!(
        idx.delete_by_filter(Collection::Killmails, &[]).await,
        Err(SearchError::InvalidQuery(_))
    ));
}

pub async fn idempotent_reupsert(idx: &dyn SearchIndex) {
    let fx = seeded(idx).await;
    let docs = fx.documents();
    idx.upsert(&docs).await.unwrap();
    idx.refresh().await.unwrap();
    for c in Collection::ALL {
        let n = docs.iter().filter(|d| d.collection() == c).count() as u64;
        assert_eq!(idx.count(c).await.unwrap(), n, "{c}");
    }
    // A rename (names resolved later) replaces the document.
    let mut a = fx
        .alliances
        .iter()
        .find(|a| a.id == "99000026")
        .unwrap()
        .clone();
    a.name = "Echo of Hell".into();
    idx.upsert(&[Document::Alliance(a)]).await.unwrap();
    idx.refresh().await.unwrap();
    assert_found(idx, "echo of hell", Collection::Alliances, "99000026", 1).await;
    let hits = ac(idx, "hell's echo", &[Collection::Alliances], 10).await;
    assert!(hits.iter().all(|h| h.name != "Hell's Echo"));
    assert_eq!(
        idx.count(Collection::Alliances).await.unwrap(),
        fx.alliances.len() as u64
    );
}

pub async fn bad_input_is_rejected(idx: &dyn SearchIndex) {
    idx.ensure_collections().await.unwrap();
    let docs = vec![
        Document::Alliance(AllianceDoc {
            id: "".into(),
            name: "No Id".into(),
            ..Default::default()
        }),
        Document::Alliance(AllianceDoc {
            id: "7".into(),
            name: "...".into(),
            ..Default::default()
        }),
        Document::Alliance(AllianceDoc {
            id: "8".into(),
            name: "Fine".into(),
            ..Default::default()
        }),
    ];
    let report = idx.upsert(&docs).await.unwrap();
    assert_eq!(report.indexed, 1);
    assert_eq!(report.rejected.len(), 2);
    let bad = [
        SearchQuery {
            facets: vec!["nope".into()],
            ..Default::default()
        },
        SearchQuery {
            sort: Some(SortBy {
                field: "regionName".into(),
                desc: true,
            }),
            ..Default::default()
        },
        SearchQuery {
            filters: vec![Filter::Range {
                field: "regionName".into(),
                min: Some(1.0),
                max: None,
            }],
            ..Default::default()
        },
        SearchQuery {
            per_page: 0,
            ..Default::default()
        },
    ];
    for q in bad {
        assert!(
            matches!(idx.search(&q).await, Err(SearchError::InvalidQuery(_))),
            "{q:?}"
        );
    }
    idx.ping().await.unwrap();
}

/// The queries behind an entity page: recent losses, kills and top ships of one alliance.
pub async fn entity_detail_queries(idx: &dyn SearchIndex) {
    let fx = seeded(idx).await;
    // The alliance with the most losses in the sample.
    let mut losses: BTreeMap<String, u64> = BTreeMap::new();
    for k in &fx.killmails {
        if let Some(a) = &k.victim_alliance_id {
            *losses.entry(a.clone()).or_default() += 1;
        }
    }
    let (ally, n_losses) = losses
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(a, n)| (a.clone(), *n))
        .expect("sample has alliance losses");
    let res = search(
        idx,
        SearchQuery {
            types: vec![Collection::Killmails],
            filters: vec![Filter::eq("victimAllianceId", ally.clone())],
            facets: vec!["shipTypeName".into()],
            sort: Some(SortBy {
                field: "killmailTime".into(),
                desc: true,
            }),
            per_page: 100,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(res.total, n_losses);
    let times: Vec<i64> = res
        .hits
        .iter()
        .map(|h| h.extra["killmailTime"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let mut ships: BTreeMap<String, u64> = BTreeMap::new();
    for k in fx
        .killmails
        .iter()
        .filter(|k| k.victim_alliance_id.as_deref() == Some(&ally))
    {
        *ships.entry(k.ship_type_name.clone()).or_default() += 1;
    }
    let top = ships.values().max().copied();
    assert_eq!(res.facets["shipTypeName"].first().map(|f| f.count), top);
    // Kills: the alliance among the attackers.
    let n_kills = fx
        .killmails
        .iter()
        .filter(|k| k.attacker_alliance_ids.contains(&ally))
        .count() as u64;
    let res = search(
        idx,
        SearchQuery {
            types: vec![Collection::Killmails],
            filters: vec![Filter::eq("attackerAllianceIds", ally.clone())],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(res.total, n_kills);
    // Battles the alliance fought in, newest first.
    let n_battles = fx
        .battles
        .iter()
        .filter(|b| b.alliance_ids.contains(&ally))
        .count() as u64;
    let res = search(
        idx,
        SearchQuery {
            types: vec![Collection::Battles],
            filters: vec![Filter::eq("allianceIds", ally)],
            sort: Some(SortBy {
                field: "startTime".into(),
                desc: true,
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(res.total, n_battles);
}

/// Names of one length sharing a prefix rank by activity, from the first character on; an
/// exact name beats them all; an activity update reorders them.
pub async fn prefix_ranking_by_activity(idx: &dyn SearchIndex) {
    seeded(idx).await;
    let ranchers: Vec<AllianceDoc> = (0..30)
        .map(|i: i64| AllianceDoc {
            id: format!("test-rank-{i:02}"),
            name: format!("Qxq Ranchers {i:02}"),
            ticker: format!("QX{i:02}"),
            battle_count: 0,
            last_seen_at: 0,
            // Distinct, not in id order.
            activity_score: (i * 7) % 30 * 10,
        })
        .collect();
    let docs: Vec<Document> = ranchers.iter().cloned().map(Document::Alliance).collect();
    idx.upsert(&docs).await.unwrap();
    idx.refresh().await.unwrap();
    let by_activity = |list: &[AllianceDoc], n: usize| -> Vec<String> {
        let mut v = list.to_vec();
        v.sort_by_key(|a| std::cmp::Reverse(a.activity_score));
        v.into_iter().take(n).map(|a| a.id).collect()
    };
    let ids = |hits: Vec<Hit>| -> Vec<String> { hits.into_iter().map(|h| h.id).collect() };
    for q in ["qxq", "Qxq R", "qxqranch", "qxq ranchers"] {
        let hits = ac(idx, q, &[Collection::Alliances], 5).await;
        assert_eq!(
            ids(hits),
            by_activity(&ranchers, 5),
            "[{}] {q}",
            idx.backend()
        );
    }
    // Ticker prefixes: `QX0` matches the first ten tickers only.
    let hits = ac(idx, "qx0", &[Collection::Alliances], 3).await;
    assert_eq!(
        ids(hits),
        by_activity(&ranchers[..10], 3),
        "[{}]",
        idx.backend()
    );
    // An exact name wins over every more active prefix match.
    let exact = Document::Alliance(AllianceDoc {
        id: "test-rank-exact".into(),
        name: "Qxq".into(),
        ticker: "QXQ".into(),
        ..Default::default()
    });
    idx.upsert(&[exact]).await.unwrap();
    idx.refresh().await.unwrap();
    let hits = ac(idx, "qxq", &[], 5).await;
    assert_eq!(hits[0].id, "test-rank-exact");
    assert_eq!(hits[0].kind, Collection::Alliances);
    // The least active rancher becomes the most active one.
    let mut quiet = ranchers
        .iter()
        .min_by_key(|a| a.activity_score)
        .unwrap()
        .clone();
    quiet.activity_score = 10_000;
    let quiet_id = quiet.id.clone();
    idx.upsert(&[Document::Alliance(quiet)]).await.unwrap();
    idx.refresh().await.unwrap();
    let hits = ac(idx, "qxq ranch", &[Collection::Alliances], 3).await;
    assert_eq!(hits[0].id, quiet_id, "[{}]", idx.backend());
}

/// A deleted document vanishes from autocomplete, whichever way it was deleted.
pub async fn deleted_doc_vanishes_from_autocomplete(idx: &dyn SearchIndex) {
    let fx = seeded(idx).await;
    let gone = Document::Alliance(AllianceDoc {
        id: "test-gone".into(),
        name: "Vanishing Act Alliance".into(),
        ticker: "VANSH".into(),
        ..Default::default()
    });
    idx.upsert(&[gone]).await.unwrap();
    idx.refresh().await.unwrap();
    assert_found(idx, "vanish", Collection::Alliances, "test-gone", 1).await;
    idx.delete(Collection::Alliances, &["test-gone".into()])
        .await
        .unwrap();
    idx.refresh().await.unwrap();
    for q in ["vanish", "Vanishing Act Alliance", "VANSH", "v", "act"] {
        let hits = ac(idx, q, &[], 10).await;
        assert!(hits.iter().all(|h| h.id != "test-gone"), "{q}: {hits:?}");
    }
    // A system deleted by id, and every system of a region deleted by filter.
    idx.delete(Collection::Systems, &["30004049".into()])
        .await
        .unwrap();
    idx.refresh().await.unwrap();
    let hits = ac(idx, "o-iv", &[Collection::Systems], 10).await;
    assert!(hits.iter().all(|h| h.id != "30004049"), "{hits:?}");
    let tribute: Vec<&str> = fx
        .systems
        .iter()
        .filter(|s| s.region_name == "Tribute")
        .map(|s| s.name.as_str())
        .collect();
    assert!(!tribute.is_empty());
    idx.delete_by_filter(Collection::Systems, &[Filter::eq("regionName", "Tribute")])
        .await
        .unwrap();
    idx.refresh().await.unwrap();
    for name in &tribute {
        let hits = ac(idx, name, &[Collection::Systems], 10).await;
        assert!(
            hits.iter().all(|h| h.extra["regionName"] != "Tribute"),
            "{name}: {hits:?}"
        );
    }
    assert_eq!(
        idx.count(Collection::Systems).await.unwrap(),
        (fx.systems.len() - 1 - tribute.len()) as u64
    );
}

/// A renamed entity is found under its new name only (also when renamed twice in one batch).
pub async fn renamed_entity_found_under_new_name_only(idx: &dyn SearchIndex) {
    let fx = seeded(idx).await;
    let mut c = fx
        .characters
        .iter()
        .find(|c| c.id == "91106348")
        .unwrap()
        .clone();
    c.name = "Renamed Pilotname".into();
    idx.upsert(&[Document::Character(c.clone())]).await.unwrap();
    idx.refresh().await.unwrap();
    assert_found(idx, "renamed pil", Collection::Characters, "91106348", 1).await;
    for q in ["Cide Hel'nurath", "hel'nur", "helnurath", "cide hel"] {
        let hits = ac(idx, q, &[Collection::Characters], 10).await;
        assert!(hits.iter().all(|h| h.id != "91106348"), "{q}: {hits:?}");
    }
    let mut first = c.clone();
    first.name = "Interim Namexq".into();
    let mut second = c;
    second.name = "Final Namexq".into();
    idx.upsert(&[Document::Character(first), Document::Character(second)])
        .await
        .unwrap();
    idx.refresh().await.unwrap();
    assert_found(idx, "final namexq", Collection::Characters, "91106348", 1).await;
    for q in ["interim namexq", "renamed pil"] {
        let hits = ac(idx, q, &[Collection::Characters], 10).await;
        assert!(hits.iter().all(|h| h.id != "91106348"), "{q}: {hits:?}");
    }
    assert_eq!(
        idx.count(Collection::Characters).await.unwrap(),
        fx.characters.len() as u64
    );
}

/// Regions and constellations are searchable by name, restricted by type and mixed.
pub async fn regions_and_constellations(idx: &dyn SearchIndex) {
    let fx = seeded(idx).await;
    assert!(fx.regions.len() >= 5);
    for r in &fx.regions {
        let hits = ac(idx, &r.name, &[Collection::Regions], 5).await;
        assert_eq!(
            (hits[0].kind, hits[0].id.as_str()),
            (Collection::Regions, r.id.as_str()),
            "[{}] {}",
            idx.backend(),
            r.name
        );
    }
    // A wormhole region, typed without its dash.
    assert_found(idx, "br0000", Collection::Regions, "11000004", 1).await;
    // Mixed: the region by name above the battles fought in it (found by word).
    let hits = ac(idx, "Pure Blind", &[], 10).await;
    assert_eq!(hits[0].kind, Collection::Regions, "{hits:?}");
    assert_eq!(hits[0].name, "Pure Blind");
    assert!(
        hits.iter().any(|h| h.kind == Collection::Battles),
        "{hits:?}"
    );
    // Prefixes from the first characters.
    let hits = ac(idx, "pure", &[Collection::Regions], 3).await;
    assert_eq!(hits[0].name, "Pure Blind");
    let c = &fx.constellations[0];
    let hits = ac(idx, &c.name, &[Collection::Constellations], 3).await;
    assert_eq!(hits[0].id, c.id, "{hits:?}");
    assert_eq!(hits[0].extra["regionName"], c.region_name.as_str());
}
