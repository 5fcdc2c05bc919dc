//! The service core on real fights (O-IVNH, UW9B-F, the J105951 massacre), against tantivy and
//! Typesense: the same cases on both backends.

use std::collections::HashMap;
use std::sync::Arc;

use bs_events::{BattleMerged, BattleSnapshot, BattleStatus, BattleUpdated, KillmailEnriched};
use bs_runtime::SystemClock;
use bs_search::{Search, api};
use bs_search_index::Collection;
use serde_json::Value;

use crate::helpers::*;

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[tokio::test]
            async fn tantivy() {
                guard(super::$name(Backend::Tantivy)).await
            }
            #[tokio::test]
            async fn typesense() {
                guard(super::$name(Backend::Typesense)).await
            }
        }
    )*};
}

both_backends!(real_fights);

const O_IVNH: &str = "30004049";
const UW9B_F: &str = "30001003";
const GOONS: &str = "1354830081";
const HORDE: &str = "99005338";

struct World {
    engine: Engine,
    search: Arc<Search>,
    router: axum::Router,
}

async fn world(backend: Backend) -> Option<World> {
    let engine = Engine::open(backend)?;
    let search = Arc::new(Search::new(
        Arc::clone(&engine.index),
        Arc::new(SystemClock),
    ));
    search.prepare().await.unwrap();
    let router = api::router(Arc::clone(&search));
    Some(World {
        engine,
        search,
        router,
    })
}

impl World {
    async fn feed(&self, deliveries: &[bs_bus::Delivery]) {
        for chunk in deliveries.chunks(150) {
            let r = self.search.handle_batch(chunk).await.unwrap();
            assert_eq!(r.skipped, 0, "{r:?}");
        }
        self.engine.index.refresh().await.unwrap();
    }

    async fn ac(&self, q: &str, types: &str) -> Vec<(String, String)> {
        let q = q
            .replace(' ', "%20")
            .replace('[', "%5B")
            .replace(']', "%5D");
        let (status, body) = get(
            &self.router,
            &format!("/search/autocomplete?q={q}&types={types}&limit=10"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        for h in body["hits"].as_array().unwrap() {
            assert!(h["name"].is_string() && h["type"].is_string() && h["id"].is_string());
        }
        hit_keys(&body)
    }

    async fn search(&self, query: &str) -> Value {
        let (status, body) = get(&self.router, &format!("/search?{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        body
    }
}

fn pos(hits: &[(String, String)], kind: &str, id: &str) -> Option<usize> {
    hits.iter().position(|(t, i)| t == kind && i == id)
}

fn killmails(evs: &[KillmailEnriched], offset: i64) -> Vec<bs_bus::Delivery> {
    evs.iter()
        .enumerate()
        .map(|(i, e)| delivery(e, offset + i as i64))
        .collect()
}

async fn real_fights(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    // Static data is searchable before any killmail.
    let hits = w.ac("o-iv", "").await;
    assert_eq!(
        hits.first(),
        Some(&("systems".into(), O_IVNH.into())),
        "{hits:?}"
    );
    let j105951 = bs_sde::StaticData::bundled()
        .systems()
        .find(|s| s.name == "J105951")
        .unwrap()
        .id
        .to_string();
    // Regions and constellations too: the UI's region filter completes `Delve`.
    let sde = bs_sde::StaticData::bundled();
    let delve = sde
        .systems()
        .find(|s| s.region_name == "Delve")
        .unwrap()
        .region_id
        .to_string();
    for q in ["Delve", "delv", "DELVE"] {
        let hits = w.ac(q, "region").await;
        assert_eq!(
            hits.first(),
            Some(&("regions".into(), delve.clone())),
            "{q}: {hits:?}"
        );
    }
    let constellation = sde.system(30004049).unwrap();
    let hits = w
        .ac(&constellation.constellation_name, "constellation")
        .await;
    assert_eq!(
        hits.first(),
        Some(&(
            "constellations".into(),
            constellation.constellation_id.to_string()
        )),
        "{hits:?}"
    );
    // Four systems start with J1059; with no activity yet any order of them is fair.
    assert!(pos(&w.ac("j1059", "").await, "systems", &j105951).is_some());
    assert!(pos(&w.ac("rifter", "ship_types").await, "ship_types", "587").is_some());

    // UW9B-F first arrives with every name pending, then resolved (revision 1).
    let uw9b_bare = enriched("uw9b-f", false);
    let massacre = enriched("massacre-j105951", true);
    let oivnh = enriched("o-ivnh", true);
    let uw9b = enriched("uw9b-f", true);
    w.feed(&killmails(&uw9b_bare, 0)).await;
    let victim = uw9b
        .iter()
        .find_map(|k| {
            k.victim
                .who
                .character_name
                .clone()
                .zip(k.victim.who.character_id)
        })
        .unwrap();
    assert!(
        pos(
            &w.ac(&victim.0, "characters").await,
            "characters",
            &victim.1.to_string()
        )
        .is_none(),
        "no name yet, no character document"
    );
    w.feed(&killmails(&uw9b, 30_000)).await;
    assert_eq!(
        w.ac(&victim.0, "characters").await.first(),
        Some(&("characters".into(), victim.1.to_string())),
        "names resolved later are indexed"
    );
    // A stale revision redelivered after the resolved one does not wipe the names.
    w.feed(&killmails(&uw9b_bare, 0)).await;
    let kid = uw9b
        .iter()
        .find(|k| k.victim.who.character_id == Some(victim.1))
        .unwrap()
        .killmail_id
        .to_string();
    let body = w
        .search(&format!(
            "types=killmails&filters=victimCharacterId:{}",
            victim.1
        ))
        .await;
    let hit = body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == kid.as_str())
        .unwrap();
    assert_eq!(hit["extra"]["victimCharacterName"], victim.0.as_str());

    // The two big fights, then their battles: O-IVNH as two fragments, UW9B-F, the massacre.
    w.feed(&killmails(&massacre, 10_000)).await;
    w.feed(&killmails(&oivnh, 20_000)).await;
    let half = oivnh.len() / 2;
    let b_oivnh = battle_of(&oivnh[..half], 1);
    let b_fragment = battle_of(&oivnh[half..], 1);
    let b_uw9b = battle_of(&uw9b, 1);
    let b_massacre = battle_of(&massacre, 1);
    let battles: Vec<bs_bus::Delivery> = [&b_oivnh, &b_fragment, &b_uw9b, &b_massacre]
        .iter()
        .enumerate()
        .map(|(i, b)| delivery(&BattleUpdated((*b).clone()), 40_000 + i as i64))
        .collect();
    w.feed(&battles).await;
    let before_merge = counts(w.engine.index.as_ref()).await;
    assert_eq!(before_merge[&Collection::Battles], 4);
    assert_eq!(
        before_merge[&Collection::Killmails],
        (massacre.len() + oivnh.len() + uw9b.len()) as u64
    );

    // Awkward names, tickers-free alliances, typos, mixed types.
    let hits = w.ac("o-iv", "").await;
    assert_eq!(
        hits.first(),
        Some(&("systems".into(), O_IVNH.into())),
        "{hits:?}"
    );
    assert_eq!(
        w.ac("O IVNH", "").await.first(),
        Some(&("systems".into(), O_IVNH.into()))
    );
    assert_eq!(
        w.ac("uw9b", "").await.first(),
        Some(&("systems".into(), UW9B_F.into()))
    );
    // Activity (the massacre's battle) puts J105951 first among the J1059… systems.
    assert_eq!(
        w.ac("j1059", "").await.first(),
        Some(&("systems".into(), j105951.clone()))
    );
    let hits = w.ac("o-ivnh", "").await;
    assert!(
        hits.iter().any(|(t, _)| t == "battles"),
        "battles in O-IVNH: {hits:?}"
    );
    assert_eq!(
        w.ac("goonswarm", "").await.first(),
        Some(&("alliances".into(), GOONS.into()))
    );
    assert_eq!(
        w.ac("Goonsworm Fedaration", "alliances").await.first(),
        Some(&("alliances".into(), GOONS.into())),
        "typo tolerance"
    );
    assert!(
        pos(
            &w.ac("pandemc horde", "alliances").await,
            "alliances",
            HORDE
        )
        .is_some()
    );
    let hits = w.ac("initiative.", "").await;
    assert!(pos(&hits, "alliances", "1900696668").is_some(), "{hits:?}");
    assert!(
        hits.iter().all(|(t, _)| t != "killmails"),
        "killmails only on request"
    );
    let hits = w.ac("the initiative", "").await;
    assert_eq!(
        hits.first(),
        Some(&("alliances".into(), "1900696668".into()))
    );
    let mut by_ship: HashMap<&str, usize> = HashMap::new();
    for k in &oivnh {
        *by_ship
            .entry(k.victim.ship.type_name.as_deref().unwrap())
            .or_default() += 1;
    }
    let top_ship = by_ship.iter().max_by_key(|(n, c)| (**c, *n)).unwrap().0;
    let hits = w.ac(top_ship, "killmails").await;
    assert!(
        !hits.is_empty() && hits.iter().all(|(t, _)| t == "killmails"),
        "{hits:?}"
    );

    // O-IVNH's region counts its kills and battles, on its entity page and in its document.
    let home = bs_sde::StaticData::bundled().system(30004049).unwrap();
    let (status, region) = get(&w.router, &format!("/entities/region/{}", home.region_id)).await;
    assert_eq!(status, 200, "{region}");
    assert_eq!(region["name"], home.region_name.as_str());
    assert!(
        region["kills"].as_u64().unwrap() >= oivnh.len() as u64,
        "{region}"
    );
    assert!(region["battles"].as_u64().unwrap() >= 1, "{region}");
    let body = w
        .search(&format!(
            "types=regions&q={}",
            home.region_name.replace(' ', "%20")
        ))
        .await;
    let hit = &body["hits"][0];
    assert_eq!(hit["id"], home.region_id.to_string().as_str());
    assert!(
        hit["extra"]["killCount"].as_i64().unwrap() >= oivnh.len() as i64,
        "{hit}"
    );

    // Facets on killmails match the data.
    let body = w
        .search(&format!(
            "types=killmails&filters=systemId:{O_IVNH}&facets=shipTypeName,spaceType&per_page=5&sort=isk"
        ))
        .await;
    assert_eq!(body["total"], oivnh.len());
    let mut ships: HashMap<String, u64> = HashMap::new();
    for k in &oivnh {
        *ships
            .entry(k.victim.ship.type_name.clone().unwrap())
            .or_default() += 1;
    }
    for f in body["facets"]["shipTypeName"].as_array().unwrap() {
        assert_eq!(f["count"], ships[f["value"].as_str().unwrap()], "{f}");
    }
    assert_eq!(body["facets"]["spaceType"][0]["value"], "nullsec");
    assert_eq!(body["facets"]["spaceType"][0]["count"], oivnh.len());
    let isks: Vec<f64> = body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["extra"]["iskValue"].as_f64().unwrap())
        .collect();
    let max_isk = oivnh.iter().map(|k| k.isk.total as i64).max().unwrap() as f64;
    assert_eq!(isks[0], max_isk, "sorted by ISK: {isks:?}");
    assert!(isks.windows(2).all(|w| w[0] >= w[1]));
    // Battle facets and sorting by kills.
    let body = w.search("types=battles&facets=spaceType&sort=kills").await;
    assert_eq!(body["total"], 4);
    let wh = body["facets"]["spaceType"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["value"] == "wormhole")
        .unwrap();
    assert_eq!(wh["count"], 1);
    let kills: Vec<i64> = body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["extra"]["totalKills"].as_i64().unwrap())
        .collect();
    assert!(kills.windows(2).all(|w| w[0] >= w[1]), "{kills:?}");
    // Battles carry alliance names from the killmails, so they are found by alliance.
    let body = w
        .search(&format!("types=battles&filters=allianceIds:{GOONS}"))
        .await;
    assert!(body["total"].as_u64().unwrap() >= 1);
    assert!(
        body["hits"][0]["extra"]["allianceNames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "Goonswarm Federation")
    );
    // Bad requests are 400, not 500.
    let (status, _) = get(&w.router, "/search?types=planets").await;
    assert_eq!(status, 400);
    let (status, _) = get(&w.router, "/search?facets=nonsense").await;
    assert_eq!(status, 400);

    // Entity page of an alliance.
    let (status, e) = get(&w.router, &format!("/entities/alliance/{GOONS}")).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["name"], "Goonswarm Federation");
    let goon_losses = [&massacre, &oivnh, &uw9b]
        .iter()
        .flat_map(|v| v.iter())
        .filter(|k| k.victim.who.alliance_id == Some(GOONS.parse().unwrap()))
        .count();
    assert_eq!(e["losses"], goon_losses);
    assert!(e["kills"].as_u64().unwrap() > 0);
    assert!(!e["recent_battles"].as_array().unwrap().is_empty());
    assert!(!e["top_ships"].as_array().unwrap().is_empty());
    let (status, _) = get(&w.router, "/entities/alliance/1").await;
    assert_eq!(status, 404);

    // Redelivery of everything is idempotent: same counts, same documents.
    let goons_doc = |body: Value| {
        body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == GOONS)
            .cloned()
            .unwrap()
    };
    let before = goons_doc(w.search("q=Goonswarm%20Federation&types=alliances").await);
    assert!(
        before["extra"]["battleCount"].as_i64().unwrap() >= 1,
        "{before}"
    );
    let mut all = killmails(&massacre, 10_000);
    all.extend(killmails(&oivnh, 20_000));
    all.extend(killmails(&uw9b, 30_000));
    all.extend(battles.clone());
    w.feed(&all).await;
    assert_eq!(counts(w.engine.index.as_ref()).await, before_merge);
    let after = goons_doc(w.search("q=Goonswarm%20Federation&types=alliances").await);
    assert_eq!(before["extra"], after["extra"]);

    // The fragment merges into the main O-IVNH battle: it disappears; an older update of it
    // arriving late does not bring it back.
    let mut merged: BattleSnapshot = b_fragment.clone();
    merged.status = BattleStatus::Merged;
    merged.merged_into = Some(b_oivnh.battle_id);
    merged.revision = 2;
    let mut survivor = battle_of(&oivnh, 2);
    survivor.battle_id = b_oivnh.battle_id;
    w.feed(&[
        delivery(&BattleMerged(merged), 50_000),
        delivery(&BattleUpdated(survivor), 50_001),
    ])
    .await;
    w.feed(&[delivery(&BattleUpdated(b_fragment.clone()), 40_001)])
        .await;
    let body = w.search("types=battles&per_page=10").await;
    assert_eq!(body["total"], 3);
    let ids: Vec<String> = hit_keys(&body).into_iter().map(|(_, i)| i).collect();
    assert!(!ids.contains(&b_fragment.battle_id.to_string()), "{ids:?}");
    let body = w
        .search(&format!("types=battles&filters=systemId:{O_IVNH}"))
        .await;
    assert_eq!(body["total"], 1);
    assert_eq!(body["hits"][0]["extra"]["totalKills"], oivnh.len());

    // The system page counts the battle once after the merge.
    let (_, sys) = get(&w.router, &format!("/entities/system/{O_IVNH}")).await;
    assert_eq!(sys["name"], "O-IVNH");
    assert_eq!(sys["battles"], 1);
    assert_eq!(sys["kills"], oivnh.len());
    w.engine.cleanup().await;
}
