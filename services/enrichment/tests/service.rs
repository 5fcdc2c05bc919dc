//! `start()` end to end: the embedded bus in, the outbox relay out, the API on top.

use std::sync::Arc;
use std::time::Duration;

use bs_bus::{BusConfig, Record};
use bs_config::Config;
use bs_events::{Envelope, KillmailEnriched, topics};
use bs_runtime::{ServiceContext, ServiceDirectory, SystemClock};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

#[tokio::test]
async fn consumes_ingested_and_publishes_enriched_through_the_outbox() {
    let dir = bs_testkit::temp_dir();
    let config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    let bus = bs_bus::connect(&BusConfig::embedded(dir.path().join("bus")))
        .await
        .unwrap();
    bus.ensure_topics(topics::ALL).await.unwrap();
    let ctx = ServiceContext {
        config: Arc::new(config),
        bus: Arc::clone(&bus),
        cache: Arc::new(bs_cache::MemoryCache::new(100_000)),
        clock: Arc::new(SystemClock),
        shutdown: CancellationToken::new(),
        offline: true,
        services: ServiceDirectory::default(),
    };
    let handle = bs_enrichment::start(&ctx).await.unwrap();

    let events = small_fight();
    let records: Vec<Record> = events
        .iter()
        .map(|e| Record {
            key: e.killmail.killmail_id.to_string(),
            payload: Envelope::wrap(e, chrono::Utc::now()).unwrap().to_bytes(),
        })
        .collect();
    bus.publish(topics::KILLMAIL_INGESTED, &records)
        .await
        .unwrap();
    // A redelivery upstream (ingestion re-published the same events).
    bus.publish(topics::KILLMAIL_INGESTED, &records[..10])
        .await
        .unwrap();

    let mut consumer = bus
        .subscribe("test-reader", &[topics::KILLMAIL_ENRICHED])
        .await
        .unwrap();
    let mut seen: Vec<KillmailEnriched> = Vec::new();
    guard(async {
        while seen.len() < events.len() {
            for d in consumer
                .poll(1000, Duration::from_millis(200))
                .await
                .unwrap()
            {
                seen.push(Envelope::from_bytes(&d.payload).unwrap().decode().unwrap());
            }
        }
    })
    .await;
    assert_eq!(seen.len(), events.len());
    // Give a redelivered duplicate every chance to show up; none may.
    let extra = consumer
        .poll(1000, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(extra.is_empty(), "{} duplicate events", extra.len());

    let id = events[0].killmail.killmail_id;
    let response = tower::ServiceExt::oneshot(
        handle.router.clone(),
        axum::http::Request::get(format!("/killmails/{id}"))
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);

    ctx.shutdown.cancel();
    for task in handle.tasks {
        guard(task).await.unwrap();
    }
}
