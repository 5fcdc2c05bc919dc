//! Corporation and alliance tickers: resolved through ESI (FakeEsi serves the real tickers of
//! `../shared/data/esi/entities/`), carried on `killmail.enriched`, and filled in by a later
//! revision when ESI was down at first.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;

use bs_esi::fake::FakeEsi;
use bs_events::KillmailEnriched;

use crate::helpers::*;

#[derive(serde::Deserialize)]
struct Row {
    id: i64,
    ticker: String,
}

/// The real tickers of the shared ESI entity lists.
fn real(file: &str) -> HashMap<i64, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/esi/entities")
        .join(file);
    let r = flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap());
    let rows: Vec<Row> = serde_json::from_reader(BufReader::new(r)).unwrap();
    rows.into_iter().map(|r| (r.id, r.ticker)).collect()
}

/// How many player alliances and corporations carry their real ticker; panics on a wrong one.
fn check(events: &[KillmailEnriched]) -> (usize, usize) {
    let alliances = real("alliances-id-name-ticker.json.gz");
    let corporations = real("corporations-id-name-ticker.json.gz");
    let (mut a, mut c) = (0, 0);
    for ev in events {
        for who in std::iter::once(&ev.victim.who).chain(ev.attackers.iter().map(|x| &x.who)) {
            if let Some(t) = who.alliance_id.and_then(|id| alliances.get(&id)) {
                assert_eq!(who.alliance_ticker.as_ref(), Some(t), "{who:?}");
                a += 1;
            }
            if let Some(t) = who.corporation_id.and_then(|id| corporations.get(&id)) {
                assert_eq!(who.corporation_ticker.as_ref(), Some(t), "{who:?}");
                c += 1;
            }
        }
    }
    (a, c)
}

#[tokio::test]
async fn tickers_come_from_esi_and_are_stored() {
    let fake = FakeEsi::start().await.unwrap();
    let w = world(Some(esi_client(&fake)), patient()).await;
    let kms = small_fight();
    feed(&w.enricher, &kms, 100).await;
    let rows = stored(&w.db).await;
    let (a, c) = check(&rows);
    assert!(a > 50 && c > 50, "alliances {a}, corporations {c}");
    let stats = fake.stats();
    assert!(stats.requests("alliance") > 0 && stats.requests("corporation") > 0);
    // NPC corporations take theirs from the SDE, without a call.
    let sde = bs_sde::StaticData::bundled();
    for row in &rows {
        if let Some(npc) = row
            .victim
            .who
            .corporation_id
            .and_then(|c| sde.npc_corporation(c))
        {
            assert_eq!(
                row.victim.who.corporation_ticker.as_deref(),
                Some(npc.ticker.as_str())
            );
        }
    }

    // A restart reads them from the database: no ticker call at all for the same killmails.
    let before = fake.stats();
    let w2 = world_on(
        bs_testkit::temp_dir(),
        w.db.clone(),
        Some(esi_client(&fake)),
        patient(),
    )
    .await;
    let now = chrono::Utc::now().timestamp_millis();
    let t = &w2.enricher.knowledge.tickers;
    for row in &rows {
        if let Some(a) = row.victim.who.alliance_id {
            assert_eq!(
                t.alliance(a, now),
                Some(row.victim.who.alliance_ticker.clone())
            );
        }
    }
    let after = fake.stats();
    assert_eq!(before.requests("alliance"), after.requests("alliance"));
}

#[tokio::test]
async fn tickers_missing_while_esi_is_down_arrive_with_a_later_revision() {
    let fake = FakeEsi::start().await.unwrap();
    let w = world(Some(esi_client(&fake)), quick()).await;
    fake.set_down(true);
    let kms = small_fight();
    let report = feed(&w.enricher, &kms, 100).await;
    assert_eq!(report.published, kms.len());
    let first = stored(&w.db).await;
    assert!(first.iter().all(|r| r.names_pending && r.revision == 0));
    assert!(
        first
            .iter()
            .all(|r| r.victim.who.alliance_id.is_none() || r.victim.who.alliance_ticker.is_none())
    );

    fake.set_down(false);
    guard(async {
        loop {
            w.enricher.resolve_pending_once().await.unwrap();
            if stored(&w.db).await.iter().all(|r| !r.names_pending) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    let rows = stored(&w.db).await;
    assert!(rows.iter().all(|r| r.revision >= 1));
    let (a, c) = check(&rows);
    assert!(a > 50 && c > 50, "alliances {a}, corporations {c}");
    // The update went out through the outbox like any late name.
    let published = outbox(&w.db).await;
    assert!(published.len() > kms.len());
    check(&published[kms.len()..]);
}
