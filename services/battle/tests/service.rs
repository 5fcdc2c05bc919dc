//! `start()` end to end: `killmail.enriched` on the embedded bus in, `battle.*` events out
//! through the outbox, the HTTP API on top; then a restart on the same data dir.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bs_bus::{BusConfig, EventBus, Record};
use bs_config::Config;
use bs_events::{BattleCreated, BattleEnded, Envelope, topics};
use bs_runtime::{ServiceContext, ServiceDirectory, SystemClock};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// A service context on `data` with the default configuration (offline).
pub fn context(data: &std::path::Path, bus: Arc<dyn EventBus>) -> ServiceContext {
    ServiceContext {
        config: Arc::new(Config {
            data_dir: data.to_path_buf(),
            ..Config::default()
        }),
        bus,
        cache: Arc::new(bs_cache::MemoryCache::new(10_000)),
        clock: Arc::new(SystemClock),
        shutdown: CancellationToken::new(),
        offline: true,
        services: ServiceDirectory::default(),
    }
}

/// One request to a router: (status, `Location`, JSON body or `null`).
pub async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(router.clone(), req)
        .await
        .unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Cancels the service and waits for its tasks.
pub async fn stop(ctx: &ServiceContext, handle: bs_runtime::ServiceHandle) {
    ctx.shutdown.cancel();
    for t in handle.tasks {
        guard(t).await.unwrap();
    }
}

#[tokio::test]
async fn consumes_enriched_publishes_battles_serves_reports_and_survives_a_restart() {
    let dir = bs_testkit::temp_dir();
    let bus = bs_bus::connect(&BusConfig::embedded(dir.path().join("bus")))
        .await
        .unwrap();
    bus.ensure_topics(topics::ALL).await.unwrap();
    let events = enriched(&fixture("lxq2-t"));
    let (first, second) = events.split_at(events.len() / 2);
    let records = |evs: &[bs_events::KillmailEnriched]| -> Vec<Record> {
        evs.iter()
            .map(|e| Record {
                key: e.killmail_id.to_string(),
                payload: Envelope::wrap(e, chrono::Utc::now()).unwrap().to_bytes(),
            })
            .collect()
    };
    let mut reader = bus
        .subscribe(
            "test-reader",
            &[
                topics::BATTLE_CREATED,
                topics::BATTLE_ENDED,
                topics::BATTLE_UPDATED,
            ],
        )
        .await
        .unwrap();

    let ctx = context(&dir.path().join("data"), Arc::clone(&bus));
    let handle = bs_battle::start(&ctx).await.unwrap();
    bus.publish(topics::KILLMAIL_ENRICHED, &records(first))
        .await
        .unwrap();
    // A broken record is counted, not fatal.
    bus.publish(
        topics::KILLMAIL_ENRICHED,
        &[Record {
            key: "x".into(),
            payload: b"not json".to_vec().into(),
        }],
    )
    .await
    .unwrap();
    let mut seen: Vec<Envelope> = Vec::new();
    let created: BattleCreated = guard(async {
        loop {
            for d in reader.poll(100, Duration::from_millis(200)).await.unwrap() {
                seen.push(Envelope::from_bytes(&d.payload).unwrap());
            }
            if let Some(env) = seen.iter().find(|e| e.event_type == topics::BATTLE_CREATED) {
                return env.decode().unwrap();
            }
        }
    })
    .await;
    let id = created.0.battle_id;
    assert!(created.0.total_kills >= 5);
    let router = handle.router.clone();
    let (status, _, list) = call(&router, "GET", "/battles?sort=kills&limit=5", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list["battles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["battle_id"] == id)
    );
    let (_, _, stats) = call(&router, "GET", "/stats", None).await;
    assert!(stats["battles_total"].as_u64().unwrap() >= 1);
    assert_eq!(stats["rejected"], 1);
    stop(&ctx, handle).await;

    // Restart on the same data dir and deliver the rest of the fight.
    let ctx = context(&dir.path().join("data"), Arc::clone(&bus));
    let handle = bs_battle::start(&ctx).await.unwrap();
    let router = handle.router.clone();
    let (status, _, _) = call(&router, "GET", &format!("/battles/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "the battle survived the restart");
    bus.publish(topics::KILLMAIL_ENRICHED, &records(second))
        .await
        .unwrap();
    let report = guard(async {
        loop {
            let (_, _, r) = call(&router, "GET", &format!("/battles/{id}"), None).await;
            if r["total_kills"].as_u64() == Some(264) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    for field in [
        "id",
        "system_ids",
        "start_time",
        "end_time",
        "total_kills",
        "total_isk_destroyed",
        "sides",
        "participants",
        "killmail_ids",
        "timeline",
        "related_links",
    ] {
        assert!(!report[field].is_null(), "report lacks {field}");
    }
    for side in report["sides"].as_array().unwrap() {
        for field in [
            "alliance_ids",
            "corporation_ids",
            "pilots",
            "kills",
            "losses",
            "isk_lost",
        ] {
            assert!(!side[field].is_null(), "side lacks {field}");
        }
    }
    assert_eq!(report["killmail_ids"].as_array().unwrap().len(), 264);
    let (status, _, timeline) =
        call(&router, "GET", &format!("/battles/{id}/timeline"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(timeline["minutes"].as_array().unwrap().len() >= 30);

    // Ship history of a participant.
    let pilot = report["participants"][0]["character_id"].as_u64().unwrap();
    let (status, _, ships) =
        call(&router, "GET", &format!("/characters/{pilot}/ships"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!ships["ships"].as_array().unwrap().is_empty());

    // A manual override moves the top alliance of side 0 to side 1, and survives.
    let top = report["sides"][0]["alliance_ids"][0].as_u64().unwrap();
    let body =
        serde_json::json!({"entity": {"kind": "alliance", "id": top}, "target": {"side": 1}});
    let (status, _, _) = call(&router, "PUT", &format!("/battles/{id}/sides"), Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, _, after) = call(&router, "GET", &format!("/battles/{id}"), None).await;
    assert!(
        after["sides"][1]["alliance_ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_u64() == Some(top))
    );
    let (status, _, _) = call(
        &router,
        "PUT",
        &format!("/battles/{id}/sides"),
        Some(serde_json::json!({"nope": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = call(&router, "GET", "/battles/12345", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&router, "GET", "/battles?sort=nope", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The battle ends (2021 kill times vs the wall clock) and says so on the bus.
    guard(async {
        loop {
            let ended = seen
                .iter()
                .filter(|e| e.event_type == topics::BATTLE_ENDED)
                .any(|e| e.decode::<BattleEnded>().unwrap().0.battle_id == id);
            if ended {
                return;
            }
            for d in reader.poll(100, Duration::from_millis(200)).await.unwrap() {
                seen.push(Envelope::from_bytes(&d.payload).unwrap());
            }
        }
    })
    .await;
    // Created once per battle, never twice (redelivery and restart included).
    let created_ids: Vec<i64> = seen
        .iter()
        .filter(|e| e.event_type == topics::BATTLE_CREATED)
        .map(|e| e.decode::<BattleCreated>().unwrap().0.battle_id)
        .collect();
    let mut dedup = created_ids.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(created_ids.len(), dedup.len(), "{created_ids:?}");
    stop(&ctx, handle).await;
}

#[tokio::test]
async fn an_absorbed_id_redirects_to_the_survivor() {
    use bs_battle::domain::BattleOp;
    use bs_battle::store::ChangeSet;
    let dir = bs_testkit::temp_dir();
    let bus = bs_bus::connect(&BusConfig::embedded(dir.path().join("bus")))
        .await
        .unwrap();
    let ctx = context(&dir.path().join("data"), Arc::clone(&bus));
    let handle = bs_battle::start(&ctx).await.unwrap();
    // Two stored battles merged by the store, as the engine does on a linking late kill.
    let db = sqlite_at(&dir.path().join("data")).await;
    let store = bs_battle::SqlBattleStore::new(db);
    let ops = vec![
        BattleOp::Create { battle_id: 10 },
        BattleOp::Create { battle_id: 20 },
        BattleOp::Merge {
            survivor: 10,
            absorbed: 20,
        },
    ];
    bs_battle::BattleStore::apply(
        &store,
        &ChangeSet {
            ops,
            now_ms: 1,
            ..ChangeSet::default()
        },
    )
    .await
    .unwrap();
    let router = handle.router.clone();
    let (status, location, body) = call(&router, "GET", "/battles/20", None).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(location.as_deref(), Some("10"));
    assert_eq!(body["redirect_to"], 10);
    let (status, location, _) = call(&router, "GET", "/battles/20/timeline", None).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(location.as_deref(), Some("../10/timeline"));
    stop(&ctx, handle).await;
}
