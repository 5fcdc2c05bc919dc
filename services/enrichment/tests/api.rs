//! The HTTP API over a populated store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bs_enrichment::api::{ApiState, router};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::helpers::*;

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn killmail_by_id_bulk_and_status() {
    let fake = bs_esi::fake::FakeEsi::start().await.unwrap();
    let events = small_fight();
    let w = world(Some(esi_client(&fake)), patient()).await;
    feed(&w.enricher, &events, 500).await;
    let app = router(ApiState {
        enricher: Arc::clone(&w.enricher),
        store: w.store.clone(),
        clock: Arc::new(bs_runtime::SystemClock),
    });
    let ev = &events[0].killmail;
    let (status, body) = get(&app, &format!("/killmails/{}", ev.killmail_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["killmail_id"], ev.killmail_id);
    assert_eq!(
        body["killmail_time"],
        serde_json::to_value(ev.killmail_time).unwrap()
    );
    for field in [
        "ship_type_name",
        "ship_group_name",
        "system_name",
        "region_name",
        "security_type",
    ] {
        assert!(body[field].is_string(), "{field}: {}", body[field]);
    }
    assert!(body["security_status"].is_number());
    assert!(body["isk_total"].is_number());
    assert!(body["victim"].is_object());
    let attackers = body["attackers"].as_array().unwrap();
    assert_eq!(attackers.len(), ev.attackers.len());
    assert!(
        attackers.iter().any(|a| a["character_name"].is_string()),
        "names where known"
    );

    let ids: Vec<String> = events
        .iter()
        .take(5)
        .map(|e| e.killmail.killmail_id.to_string())
        .collect();
    let (status, body) = get(&app, &format!("/killmails?ids={},1", ids.join(","))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["killmails"].as_array().unwrap().len(), 5);
    assert_eq!(body["missing"], serde_json::json!([1]));

    assert_eq!(get(&app, "/killmails/1").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/killmails/abc").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        get(&app, "/killmails?ids=1,x").await.0,
        StatusCode::BAD_REQUEST
    );

    let (status, body) = get(&app, "/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["killmails"], events.len());
    assert_eq!(body["names_pending"], 0);
    assert_eq!(body["esi"]["enabled"], true);
    assert!(body["esi"]["name_calls"].as_u64().unwrap() >= 1);
    assert_eq!(body["pipeline"]["published"], events.len());
}
