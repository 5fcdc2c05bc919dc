//! The HTTP API: rulesets, status, stats, killmail lookups.

use serde_json::json;

use crate::helpers::{call, config, small_fixture, start};

#[tokio::test]
async fn rulesets_status_stats_and_lookups() {
    let dir = bs_testkit::temp_dir();
    let mut cfg = config(dir.path(), "http://127.0.0.1:9", "http://127.0.0.1:9");
    cfg.ingestion.live = false;
    let running = start(cfg.clone(), &dir.path().join("bus")).await;
    let r = running.handle.router.clone();

    let (status, ruleset) = call(&r, "GET", "/rulesets", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        ruleset["min_pilots"], 0,
        "default accepts everything: {ruleset}"
    );
    let (status, _) = call(
        &r,
        "PUT",
        "/rulesets",
        Some(json!({"only_tracked_entities": true})),
    )
    .await;
    assert_eq!(status, 422, "only_tracked_entities needs a tracked entity");
    let (status, _) = call(&r, "PUT", "/rulesets", Some(json!({"min_pilotz": 3}))).await;
    assert_eq!(status, 422, "unknown keys are refused");
    let (status, saved) = call(
        &r,
        "PUT",
        "/rulesets",
        Some(json!({"min_pilots": 9000, "tracked_security_types": ["nullsec"]})),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    assert!(saved["updated_at"].is_string());

    // An import under the strict ruleset rejects everything, counted by reason.
    let s = bs_ingestion::import_paths(&cfg, &[small_fixture()], false)
        .await
        .unwrap();
    assert_eq!((s.new, s.rejected), (0, 200), "{s}");
    let (_, status) = call(&r, "GET", "/status", None).await;
    assert_eq!(status["rejects_by_reason"]["min_pilots"], 200, "{status}");
    assert_eq!(status["killmails_total"], 0);

    let (_, _) = call(&r, "PUT", "/rulesets", Some(json!({}))).await;
    let s = bs_ingestion::import_paths(&cfg, &[small_fixture()], false)
        .await
        .unwrap();
    assert_eq!(s.new, 200, "{s}");
    let (status, stats) = call(&r, "GET", "/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["killmails_total"], 200);
    assert_eq!(stats["by_source"]["file"], 200);

    let (_, recent) = call(&r, "GET", "/killmails/recent?limit=5", None).await;
    assert_eq!(recent["count"], 5);
    let id = recent["items"][0]["killmail_id"].as_i64().unwrap();
    assert!(
        recent["items"][0]["zkb_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/kill/{id}/"))
    );
    let (status, km) = call(&r, "GET", &format!("/killmails/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(km["killmail"]["killmail_id"], id);
    let (status, _) = call(&r, "GET", "/killmails/1", None).await;
    assert_eq!(status, 404);
    // The outbox relay moved the 200 events to the bus.
    crate::helpers::eventually(30, "the outbox to drain", || {
        let r = r.clone();
        async move {
            let (_, s) = call(&r, "GET", "/status", None).await;
            (s["outbox_pending"] == 0).then_some(())
        }
    })
    .await;
    let events = crate::helpers::ingested_events(&running.bus, "api-test").await;
    assert_eq!(events.len(), 200);
    running.stop().await;
}
