//! Redeliveries change nothing; real updates and static-data changes re-publish once.

use bs_bus::Delivery;
use bs_domain::Zkb;
use bs_events::Envelope;

use crate::helpers::*;

#[tokio::test]
async fn redelivered_events_change_nothing() {
    let events = small_fight();
    let n = events.len();
    let w = world(None, quick()).await;
    let first = feed(&w.enricher, &events, 100).await;
    assert_eq!(first.published, n);
    let rows_before = stored(&w.db).await;
    let outbox_before = outbox(&w.db).await.len();
    assert_eq!(outbox_before, n);

    // The same events again, in other batch sizes (a consumer restarted mid-way).
    let again = feed(&w.enricher, &events, 37).await;
    assert_eq!(again.published, 0);
    assert_eq!(again.duplicates, n);
    assert_eq!(row_count(&w.db).await, n as i64);
    assert_eq!(outbox(&w.db).await.len(), outbox_before);
    assert_eq!(stored(&w.db).await, rows_before);

    // Duplicates inside one batch collapse to one row and one event.
    let w2 = world(None, quick()).await;
    let doubled: Vec<_> = events.iter().chain(events.iter()).cloned().collect();
    let r = feed(&w2.enricher, &doubled, doubled.len()).await;
    assert_eq!(r.published, n);
    assert_eq!(outbox(&w2.db).await.len(), n);
}

/// Rows fingerprinted before the fingerprint became XXH3 (FNV-1a, no prefix) still
/// recognise a redelivery of the same input.
#[tokio::test]
async fn rows_with_the_legacy_fingerprint_still_recognise_redeliveries() {
    let events = small_fight();
    let n = events.len();
    let w = world(None, quick()).await;
    feed(&w.enricher, &events, 100).await;
    let rows: Vec<(i64, String, String, Option<Vec<u8>>)> = bs_store::sqlx::query_as(
        "SELECT killmail_id, input_hash, source_event, source_event_zstd FROM enriched_killmails",
    )
    .fetch_all(w.db.pool())
    .await
    .unwrap();
    for (id, hash, text, zstd) in rows {
        assert!(hash.starts_with("x3"), "{hash}");
        let input = match zstd {
            Some(z) => bs_store::outbox::Payload::Zstd(z).decode().unwrap(),
            None => text,
        };
        bs_store::sqlx::query(
            "UPDATE enriched_killmails SET input_hash = $1 WHERE killmail_id = $2",
        )
        .bind(bs_enrichment::consumer::legacy_fingerprint(&input))
        .bind(id)
        .execute(w.db.pool())
        .await
        .unwrap();
    }
    let before = stored(&w.db).await;
    let again = feed(&w.enricher, &events, 50).await;
    assert_eq!((again.duplicates, again.published), (n, 0));
    assert_eq!(stored(&w.db).await, before);
    // A changed input is still told apart from a legacy fingerprint.
    let mut changed = events[0].clone();
    changed.zkb = Some(Zkb {
        hash: changed.hash.clone(),
        total_value: Some(1.0e9),
        ..Zkb::default()
    });
    assert_eq!(feed(&w.enricher, &[changed], 10).await.published, 1);
}

#[tokio::test]
async fn bad_records_are_counted_rejections_not_errors() {
    let events = small_fight();
    let mut deliveries: Vec<Delivery> = events
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, ev)| Delivery {
            topic: "killmail.ingested".into(),
            partition: 0,
            offset: i as i64,
            key: ev.killmail.killmail_id.to_string(),
            payload: Envelope::wrap(ev, chrono::Utc::now()).unwrap().to_bytes(),
        })
        .collect();
    deliveries.push(Delivery {
        topic: "killmail.ingested".into(),
        partition: 0,
        offset: 10,
        key: "x".into(),
        payload: bytes::Bytes::from_static(b"{not json"),
    });
    let w = world(None, quick()).await;
    w.enricher
        .handle_deliveries(deliveries.clone())
        .await
        .unwrap();
    assert_eq!(row_count(&w.db).await, 10);
    assert_eq!(
        w.enricher
            .stats
            .rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Redelivery of the whole batch (commit lost): nothing new.
    w.enricher.handle_deliveries(deliveries).await.unwrap();
    assert_eq!(row_count(&w.db).await, 10);
    assert_eq!(outbox(&w.db).await.len(), 10);
}

#[tokio::test]
async fn an_upstream_update_with_zkb_values_is_republished_once() {
    let events = small_fight();
    let w = world(None, quick()).await;
    feed(&w.enricher, &events, 100).await;
    let mut update = events[3].clone();
    update.is_update = true;
    update.zkb = Some(Zkb {
        hash: update.hash.clone(),
        total_value: Some(123_456_789.0),
        dropped_value: Some(23_456_789.0),
        destroyed_value: Some(100_000_000.0),
        npc: false,
        solo: false,
        awox: true,
        ..Zkb::default()
    });
    let r = feed(&w.enricher, std::slice::from_ref(&update), 10).await;
    assert_eq!(r.published, 1);
    let again = feed(&w.enricher, std::slice::from_ref(&update), 10).await;
    assert_eq!(again.published, 0);
    let out = outbox(&w.db).await;
    assert_eq!(out.len(), events.len() + 1);
    let last = out.last().unwrap();
    assert_eq!(last.killmail_id, update.killmail.killmail_id);
    assert_eq!(last.revision, 1);
    assert_eq!(last.isk.value_source, "zkb");
    assert_eq!(last.isk.total, 123_456_789.0);
    assert!(last.zkb.as_ref().unwrap().awox);
}

#[tokio::test]
async fn a_static_data_change_re_enriches_and_republishes_once() {
    let events = small_fight();
    let n = events.len();
    let w = world(None, quick()).await;
    feed(&w.enricher, &events, 100).await;
    assert_eq!(w.enricher.reenrich_stale_once().await.unwrap(), 0);
    // As if the rows were written by an older static-data bundle.
    bs_store::sqlx::query("UPDATE enriched_killmails SET sde_version = 'older'")
        .execute(w.db.pool())
        .await
        .unwrap();
    assert_eq!(w.enricher.reenrich_stale_once().await.unwrap(), n);
    assert_eq!(w.enricher.reenrich_stale_once().await.unwrap(), 0);
    let out = outbox(&w.db).await;
    assert_eq!(out.len(), 2 * n);
    assert!(out[n..].iter().all(|e| e.revision == 1));
    // A redelivery after re-enrichment is still a no-op.
    assert_eq!(feed(&w.enricher, &events, 100).await.published, 0);
}
