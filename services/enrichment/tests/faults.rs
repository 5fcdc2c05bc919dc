//! ESI faults through FakeEsi: the pipeline never stalls, publishes what it knows, and
//! fills names in through the update path once ESI recovers.

use std::collections::HashMap;
use std::time::Duration;

use bs_esi::fake::{FakeData, FakeEsi, FakeSettings};
use bs_events::KillmailEnriched;

use crate::helpers::*;

/// Runs the resolver until nothing is pending (ESI has recovered by then).
async fn settle(w: &World) {
    guard(async {
        loop {
            w.enricher.resolve_pending_once().await.unwrap();
            let (pending,): (i64,) = bs_store::sqlx::query_as(
                "SELECT COUNT(*) FROM enriched_killmails WHERE names_pending = 1",
            )
            .fetch_one(w.db.pool())
            .await
            .unwrap();
            if pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}

/// The final state every scenario must reach: every name the fake knows is filled in, on
/// the stored row and on the newest published event of each killmail.
async fn assert_complete(w: &World, fake: &FakeEsi, n: usize) {
    let rows = stored(&w.db).await;
    assert_eq!(rows.len(), n);
    let data = fake.data();
    for row in &rows {
        assert!(!row.names_pending, "{} still pending", row.killmail_id);
        check_names(row, data);
    }
    let mut latest: HashMap<i64, KillmailEnriched> = HashMap::new();
    for ev in outbox(&w.db).await {
        let keep = latest
            .get(&ev.killmail_id)
            .is_none_or(|old| old.revision < ev.revision);
        if keep {
            latest.insert(ev.killmail_id, ev);
        }
    }
    assert_eq!(latest.len(), n);
    for ev in latest.values() {
        assert!(!ev.names_pending);
        check_names(ev, data);
    }
    let stats = fake.stats();
    assert_eq!(
        stats.missing_headers, 0,
        "requests without User-Agent/X-Compatibility-Date"
    );
    assert_eq!(
        stats.error_limited, 0,
        "the client exhausted the error budget (420)"
    );
    assert_eq!(
        stats.rate_limited, 0,
        "the client overran a rate-limit window"
    );
}

fn check_names(ev: &KillmailEnriched, data: &FakeData) {
    let mut people = vec![&ev.victim.who];
    people.extend(ev.attackers.iter().map(|a| &a.who));
    for who in people {
        if let Some(c) = who.character_id
            && let Some(known) = data.name(c)
        {
            assert_eq!(
                who.character_name.as_deref(),
                Some(known.name.as_str()),
                "character {c}"
            );
        }
        if let Some(a) = who.alliance_id
            && let Some(known) = data.name(a)
        {
            assert_eq!(
                who.alliance_name.as_deref(),
                Some(known.name.as_str()),
                "alliance {a}"
            );
        }
        if who.corporation_id.is_some() {
            assert!(
                who.corporation_name.is_some(),
                "corporation {:?}",
                who.corporation_id
            );
        }
    }
}

#[tokio::test]
async fn healthy_esi_resolves_names_inline_in_bulk() {
    let fake = FakeEsi::start().await.unwrap();
    let events = small_fight();
    let w = world(Some(esi_client(&fake)), patient()).await;
    let report = feed(&w.enricher, &events, 500).await;
    assert_eq!(report.published, events.len());
    assert_eq!(report.pending, 0);
    assert_complete(&w, &fake, events.len()).await;
    // One revision per killmail: nothing needed an update.
    assert_eq!(outbox(&w.db).await.len(), events.len());
    let stats = fake.stats();
    let batches = events.len().div_ceil(500) as u64;
    assert!(
        stats.requests("universe_names") <= batches * 3,
        "{:?}",
        stats.requests
    );
    assert_eq!(
        stats.requests("universe_type") + stats.requests("universe_system"),
        0
    );
}

/// Publishes the fight while `break_esi` is in force, checks nothing waited for names,
/// then lets ESI recover and checks the update path.
async fn scenario(fake: FakeEsi, break_esi: impl FnOnce(&FakeEsi), recover: impl FnOnce(&FakeEsi)) {
    let events = small_fight();
    let w = world(Some(esi_client(&fake)), quick()).await;
    break_esi(&fake);
    let report = feed(&w.enricher, &events, 100).await;
    assert_eq!(
        report.published,
        events.len(),
        "every killmail is published at once"
    );
    assert!(
        report.pending > 0,
        "with ESI broken some names must be pending"
    );
    // Static data never waits for ESI.
    for row in stored(&w.db).await {
        assert!(row.victim.ship.type_name.is_some() && row.system.region_name.is_some());
    }
    recover(&fake);
    settle(&w).await;
    assert_complete(&w, &fake, events.len()).await;
    // Updates carry higher revisions than the first publications.
    let events_out = outbox(&w.db).await;
    assert!(events_out.iter().any(|e| e.revision > 0));
    assert!(events_out.len() > events.len());
}

#[tokio::test]
async fn esi_down_then_recovering() {
    let fake = FakeEsi::start().await.unwrap();
    scenario(fake, |f| f.set_down(true), |f| f.set_down(false)).await;
}

#[tokio::test]
async fn esi_5xx_bursts() {
    let fake = FakeEsi::start().await.unwrap();
    // More failures than the client retries, so the first lookups give up.
    scenario(fake, |f| f.fail_next(12, 502), |f| f.fail_next(0, 502)).await;
}

#[tokio::test]
async fn esi_429_with_retry_after() {
    let fake = FakeEsi::start().await.unwrap();
    scenario(fake, |f| f.throttle_next(6), |_| {}).await;
}

#[tokio::test]
async fn esi_slow_responses() {
    let fake = FakeEsi::start().await.unwrap();
    scenario(
        fake,
        |f| f.set_latency(Duration::from_secs(2)),
        |f| f.set_latency(Duration::ZERO),
    )
    .await;
}

#[tokio::test]
async fn esi_error_budget_running_low() {
    // A short error window so the budget resets within the test.
    let settings = FakeSettings {
        error_window: Duration::from_secs(3),
        ..FakeSettings::default()
    };
    let fake = FakeEsi::start_with(settings, FakeData::shared().unwrap())
        .await
        .unwrap();
    // Other clients on the same IP spent most of the budget; one 502 tells the client so.
    scenario(
        fake,
        |f| {
            f.spend_errors(85);
            f.fail_next(1, 502);
        },
        |_| {},
    )
    .await;
}
