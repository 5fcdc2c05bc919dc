//! Corporation and alliance tickers: resolved through ESI (FakeEsi serves the real tickers of
//! `../shared/data/esi/entities/`), carried on `killmail.enriched`, and filled in by a later
//! revision when ESI was down at first; corporation tickers only under the policy
//! (`TickerPolicy`: seen on enough killmails, fetched in the background, never pending).

use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;

use bs_enrichment::tickers::{TickerPolicy, Tickers};
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

/// Every corporation asked for at once (the policy's threshold at 1), no budget.
fn eager() -> TickerPolicy {
    TickerPolicy {
        corporation_min_killmails: 1,
        corporation_calls_per_minute: u32::MAX,
        ..TickerPolicy::default()
    }
}

/// Player corporations of `events` whose real ticker `t` holds now; panics on a wrong one.
fn known_corporations(t: &Tickers, events: &[KillmailEnriched]) -> usize {
    let corporations = real("corporations-id-name-ticker.json.gz");
    let now = chrono::Utc::now().timestamp_millis();
    let mut ids = std::collections::BTreeSet::new();
    for ev in events {
        for who in std::iter::once(&ev.victim.who).chain(ev.attackers.iter().map(|x| &x.who)) {
            if let Some((id, ticker)) = who
                .corporation_id
                .and_then(|id| corporations.get_key_value(&id))
            {
                assert_eq!(t.corporation(*id, now), Some(Some(ticker.clone())), "{id}");
                ids.insert(*id);
            }
        }
    }
    ids.len()
}

/// How many player alliances and corporations carry their real ticker; panics on a wrong
/// one (a corporation ticker may be absent: the policy decides whether it is fetched).
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
            if let Some(t) = who.corporation_id.and_then(|id| corporations.get(&id))
                && who.corporation_ticker.is_some()
            {
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
    w.enricher.knowledge.tickers.set_policy(eager());
    let kms = small_fight();
    feed(&w.enricher, &kms, 100).await;
    // Corporation tickers come from the background fetch, not the inline path.
    w.enricher.resolve_pending_once().await.unwrap();
    let rows = stored(&w.db).await;
    let (a, _) = check(&rows);
    let c = known_corporations(&w.enricher.knowledge.tickers, &rows);
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
    assert_eq!(known_corporations(t, &rows), c);
    let after = fake.stats();
    assert_eq!(before.requests("alliance"), after.requests("alliance"));
    assert_eq!(
        before.requests("corporation"),
        after.requests("corporation")
    );
}

#[tokio::test]
async fn tickers_missing_while_esi_is_down_arrive_with_a_later_revision() {
    let fake = FakeEsi::start().await.unwrap();
    let w = world(Some(esi_client(&fake)), quick()).await;
    w.enricher.knowledge.tickers.set_policy(eager());
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
            if stored(&w.db).await.iter().all(|r| !r.names_pending)
                && w.enricher.knowledge.tickers.wanted() == 0
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    let rows = stored(&w.db).await;
    assert!(rows.iter().all(|r| r.revision >= 1));
    let (a, _) = check(&rows);
    let c = known_corporations(&w.enricher.knowledge.tickers, &rows);
    assert!(a > 50 && c > 50, "alliances {a}, corporations {c}");
    // The update went out through the outbox like any late name.
    let published = outbox(&w.db).await;
    assert!(published.len() > kms.len());
    // Intermediate updates may carry the names before the tickers (tickers are asked after
    // the names); those are still pending. The complete ones carry both.
    let complete: Vec<KillmailEnriched> = published[kms.len()..]
        .iter()
        .filter(|e| !e.names_pending)
        .cloned()
        .collect();
    assert!(!complete.is_empty());
    check(&complete);
}

/// The default policy: a corporation seen on one killmail costs no ESI call and keeps
/// nothing pending; one seen on the threshold's number of killmails is asked for once, in
/// the background, and the killmails after that carry its ticker.
#[tokio::test]
async fn corporation_tickers_follow_the_policy() {
    let fake = FakeEsi::start().await.unwrap();
    let w = world(Some(esi_client(&fake)), patient()).await;
    let threshold = 3;
    w.enricher.knowledge.tickers.set_policy(TickerPolicy {
        corporation_min_killmails: threshold,
        ..TickerPolicy::default()
    });
    let kms = small_fight();
    let (first, second) = kms.split_at(kms.len() / 2);
    let report = feed(&w.enricher, first, 100).await;
    assert_eq!(report.pending, 0, "no corporation ticker is a pending name");
    assert_eq!(fake.stats().requests("corporation"), 0, "never inline");

    // Killmails per player corporation (NPC corporations have theirs from the SDE).
    let sde = bs_sde::StaticData::bundled();
    let mut seen: HashMap<i64, u32> = HashMap::new();
    for row in stored(&w.db).await {
        let ids: std::collections::BTreeSet<i64> = std::iter::once(&row.victim.who)
            .chain(row.attackers.iter().map(|a| &a.who))
            .filter_map(|who| who.corporation_id)
            .filter(|&id| id > 0 && sde.npc_corporation(id).is_none())
            .collect();
        for id in ids {
            *seen.entry(id).or_default() += 1;
        }
    }
    let due: Vec<i64> = seen
        .iter()
        .filter(|(_, n)| **n >= threshold)
        .map(|(id, _)| *id)
        .collect();
    let once: Vec<i64> = seen
        .iter()
        .filter(|(_, n)| **n == 1)
        .map(|(id, _)| *id)
        .collect();
    assert!(!due.is_empty() && !once.is_empty(), "{seen:?}");
    assert_eq!(w.enricher.knowledge.tickers.wanted(), due.len());

    // The per-minute budget (default 60) bounds one pass; lifted, the rest follows.
    let budget = TickerPolicy::default().corporation_calls_per_minute as usize;
    assert!(due.len() > budget, "{}", due.len());
    w.enricher.resolve_pending_once().await.unwrap();
    assert_eq!(fake.stats().requests("corporation"), budget as u64);
    assert_eq!(w.enricher.knowledge.tickers.wanted(), due.len() - budget);
    w.enricher.knowledge.tickers.set_policy(TickerPolicy {
        corporation_min_killmails: threshold,
        corporation_calls_per_minute: u32::MAX,
        ..TickerPolicy::default()
    });
    w.enricher.resolve_pending_once().await.unwrap();
    assert_eq!(w.enricher.knowledge.tickers.wanted(), 0);
    assert_eq!(
        fake.stats().requests("corporation"),
        due.len() as u64,
        "one call per corporation seen {threshold} times, none for the others"
    );
    let now = chrono::Utc::now().timestamp_millis();
    let t = &w.enricher.knowledge.tickers;
    let corporations = real("corporations-id-name-ticker.json.gz");
    for id in &due {
        // The fake makes up a ticker for corporations its lists lack.
        let got = t.corporation(*id, now);
        assert!(matches!(got, Some(Some(_))), "{id}: {got:?}");
        if let Some(real) = corporations.get(id) {
            assert_eq!(got, Some(Some(real.clone())), "{id}");
        }
    }
    for id in &once {
        assert_eq!(
            t.corporation(*id, now),
            None,
            "{id} seen once was asked for"
        );
    }

    // Later killmails carry the fetched tickers.
    feed(&w.enricher, second, 100).await;
    let later: Vec<KillmailEnriched> = stored(&w.db)
        .await
        .into_iter()
        .filter(|r| {
            second
                .iter()
                .any(|k| k.killmail.killmail_id == r.killmail_id)
        })
        .collect();
    let carried = later
        .iter()
        .flat_map(|r| std::iter::once(&r.victim.who).chain(r.attackers.iter().map(|a| &a.who)))
        .filter(|who| who.corporation_id.is_some_and(|id| due.contains(&id)))
        .filter(|who| who.corporation_ticker.is_some())
        .count();
    assert!(carried > 0);
    check(&later);
}

#[test]
fn the_ticker_policy_comes_from_configuration() {
    let mut config = bs_config::Config::default();
    assert_eq!(
        bs_enrichment::ticker_policy(&config).unwrap(),
        TickerPolicy::default(),
        "the configuration's defaults are the policy's"
    );
    config.enrichment.corporation_ticker_min_killmails = 1;
    config.enrichment.ticker_window = "1d".into();
    config.enrichment.corporation_ticker_calls_per_minute = 0;
    assert_eq!(
        bs_enrichment::ticker_policy(&config).unwrap(),
        TickerPolicy {
            corporation_min_killmails: 1,
            window: std::time::Duration::from_secs(86_400),
            corporation_calls_per_minute: u32::MAX,
        }
    );
    config.enrichment.ticker_window = "a week".into();
    let err = bs_enrichment::ticker_policy(&config).unwrap_err();
    assert!(
        format!("{err:#}").contains("enrichment.ticker_window"),
        "{err:#}"
    );
}
