//! `start_with()` end to end on the embedded bus: the API (auth, ownership, validation), a
//! WebSocket client receiving its match (latency printed, not asserted), the public feed,
//! and exactly-once webhook delivery across a restart with the same events published again.

use std::sync::Arc;
use std::time::Duration;

use bs_bus::{BusConfig, EventBus, Record};
use bs_config::Config;
use bs_events::{Envelope, KillmailEnriched};
use bs_runtime::{ServiceContext, ServiceDirectory, ServiceHandle};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;
use crate::webhook::{fast_sender, receiver};

fn context(
    data: &std::path::Path,
    bus: Arc<dyn EventBus>,
    at: chrono::DateTime<chrono::Utc>,
    allowed: &str,
) -> ServiceContext {
    let mut config = Config {
        data_dir: data.to_path_buf(),
        ..Config::default()
    };
    config.public_url = "http://battlescope.test".into();
    config.notification.webhook_allowed_hosts = allowed.into();
    ServiceContext {
        config: Arc::new(config),
        bus,
        cache: Arc::new(bs_cache::MemoryCache::new(1000)),
        clock: ShiftedClock::at(at),
        shutdown: CancellationToken::new(),
        offline: true,
        services: ServiceDirectory::default(),
    }
}

async fn serve(handle: &ServiceHandle) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let router = handle.router.clone();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    format!("127.0.0.1:{}", addr.port())
}

async fn stop(ctx: &ServiceContext, handle: ServiceHandle) {
    ctx.shutdown.cancel();
    for t in handle.tasks {
        guard(t).await.unwrap();
    }
}

fn records(kms: &[KillmailEnriched]) -> Vec<Record> {
    kms.iter()
        .map(|k| Record {
            key: k.killmail_id.to_string(),
            payload: Envelope::wrap(k, chrono::Utc::now()).unwrap().to_bytes(),
        })
        .collect()
}

async fn call(
    addr: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut req = http.request(method.parse().unwrap(), format!("http://{addr}{path}"));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn api_websocket_and_exactly_once_across_a_restart() {
    let dir = bs_testkit::temp_dir();
    let bus = bs_bus::connect(&BusConfig::embedded(dir.path().join("bus")))
        .await
        .unwrap();
    let kms = fight("uw9b-f");
    let at = kms.iter().map(|k| k.killmail_time).max().unwrap();
    let (base, log) = receiver().await;
    let hostport = base.trim_start_matches("http://").to_owned();
    let ctx = context(dir.path(), Arc::clone(&bus), at, &hostport);
    let handle = bs_notification::start_with(&ctx, Arc::new(TestAccounts), fast_sender())
        .await
        .unwrap();
    let addr = serve(&handle).await;
    let alice = Some("session=alice");

    // Auth: no cookie 401, no role 403.
    assert_eq!(
        call(&addr, "GET", "/subscriptions", None, None).await.0,
        401
    );
    assert_eq!(
        call(&addr, "GET", "/subscriptions", Some("session=norole"), None)
            .await
            .0,
        403
    );
    // Validation: an SSRF-refused webhook and an unknown watchlist are 400s.
    let bad = json!({ "name": "x", "filter": { "type": "solo" }, "webhooks": [{ "url": "https://169.254.169.254/", "kind": "json" }] });
    assert_eq!(
        call(&addr, "POST", "/subscriptions", alice, Some(bad))
            .await
            .0,
        400
    );
    let bad = json!({ "name": "x", "filter": { "type": "watchlist", "id": 12345 } });
    assert_eq!(
        call(&addr, "POST", "/subscriptions", alice, Some(bad))
            .await
            .0,
        400
    );

    // A watchlist with the fight's system, used by a subscription with a webhook.
    let system = kms[0].system.id;
    let (st, w) = call(
        &addr,
        "POST",
        "/watchlists",
        alice,
        Some(json!({ "name": "home", "systems": [system] })),
    )
    .await;
    assert_eq!(st, 201);
    let body = json!({
        "name": "home fights",
        "filter": { "type": "and", "of": [{ "type": "watchlist", "id": w["id"] }, { "type": "none_of", "of": [{ "type": "npc" }] }] },
        "webhooks": [{ "url": format!("{base}/hook/ok"), "kind": "json" }],
    });
    let (st, sub) = call(&addr, "POST", "/subscriptions", alice, Some(body)).await;
    assert_eq!(st, 201, "{sub}");
    let id = sub["id"].as_i64().unwrap();
    // Ownership: bob sees nothing of it.
    assert_eq!(
        call(
            &addr,
            "GET",
            &format!("/subscriptions/{id}"),
            Some("session=bob"),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            &addr,
            "DELETE",
            &format!("/subscriptions/{id}"),
            Some("session=bob"),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(&addr, "GET", "/subscriptions", Some("session=bob"), None)
            .await
            .1,
        json!([])
    );

    // WebSocket: a foreign Origin is refused; the right one (and the cookie) connects.
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("cookie", "session=alice".parse().unwrap());
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("cookie", "session=alice".parse().unwrap());
    req.headers_mut()
        .insert("origin", "http://battlescope.test".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let (mut public, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/public"))
        .await
        .unwrap();

    // The first half of the fight; time one killmail from publish to the socket.
    let expected: Vec<i64> = kms
        .iter()
        .filter(|k| k.system.id == system && !k.attackers.iter().all(|a| a.is_npc))
        .map(|k| k.killmail_id)
        .collect();
    assert!(expected.len() > 10);
    let (first, second) = kms.split_at(kms.len() / 2);
    let t0 = std::time::Instant::now();
    bus.publish(bs_events::topics::KILLMAIL_ENRICHED, &records(&first[..1]))
        .await
        .unwrap();
    let msg = guard(ws.next()).await.unwrap().unwrap();
    let latency = t0.elapsed();
    let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert_eq!(v["type"], "notification");
    assert_eq!(v["notification"]["subject_id"], first[0].killmail_id);
    println!("websocket delivery latency (publish → client): {latency:?}");
    let p = guard(public.next()).await.unwrap().unwrap();
    assert!(
        p.to_text()
            .unwrap()
            .contains(&first[0].killmail_id.to_string())
    );
    bus.publish(bs_events::topics::KILLMAIL_ENRICHED, &records(&first[1..]))
        .await
        .unwrap();
    let first_expected = expected
        .iter()
        .filter(|id| first.iter().any(|k| k.killmail_id == **id))
        .count();
    eventually(|| {
        let log = Arc::clone(&log);
        async move { log.lock().accepted.get("ok").map_or(0, Vec::len) >= first_expected }
    })
    .await;
    ws.close(None).await.ok();

    // Restart on the same data dir; the whole fight is published again (the first half is a
    // redelivery), plus the second half.
    stop(&ctx, handle).await;
    let ctx = context(dir.path(), Arc::clone(&bus), at, &hostport);
    let handle = bs_notification::start_with(&ctx, Arc::new(TestAccounts), fast_sender())
        .await
        .unwrap();
    let addr = serve(&handle).await;
    bus.publish(bs_events::topics::KILLMAIL_ENRICHED, &records(first))
        .await
        .unwrap();
    bus.publish(bs_events::topics::KILLMAIL_ENRICHED, &records(second))
        .await
        .unwrap();
    eventually(|| {
        let log = Arc::clone(&log);
        let n = expected.len();
        async move { log.lock().accepted.get("ok").map_or(0, Vec::len) >= n }
    })
    .await;
    // Let a duplicate, if there were one, arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got: Vec<i64> = log.lock().accepted["ok"]
        .iter()
        .map(|(_, _, b)| b["notification"]["killmail_id"].as_i64().unwrap())
        .collect();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    let mut want = expected.clone();
    want.sort_unstable();
    assert_eq!(
        sorted, want,
        "each matching killmail delivered exactly once"
    );

    // History through the API: unread first; read-all.
    let (st, notes) = call(&addr, "GET", "/notifications?limit=500", alice, None).await;
    assert_eq!(st, 200);
    assert_eq!(notes.as_array().unwrap().len(), expected.len());
    let nid = notes[0]["id"].as_i64().unwrap();
    assert_eq!(
        call(
            &addr,
            "POST",
            &format!("/notifications/{nid}/read"),
            alice,
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(
            &addr,
            "POST",
            &format!("/notifications/{nid}/read"),
            Some("session=bob"),
            None
        )
        .await
        .0,
        404
    );
    let (_, notes) = call(&addr, "GET", "/notifications?limit=500", alice, None).await;
    assert_eq!(
        notes.as_array().unwrap().last().unwrap()["id"].as_i64(),
        Some(nid),
        "read goes last"
    );
    let (_, r) = call(&addr, "POST", "/notifications/read-all", alice, None).await;
    assert_eq!(r["marked"].as_u64(), Some(expected.len() as u64 - 1));
    // A test notification goes through the webhook too.
    assert_eq!(
        call(
            &addr,
            "POST",
            &format!("/subscriptions/{id}/test"),
            alice,
            None
        )
        .await
        .0,
        202
    );
    eventually(|| {
        let log = Arc::clone(&log);
        let n = expected.len() + 1;
        async move { log.lock().accepted.get("ok").map_or(0, Vec::len) >= n }
    })
    .await;
    // Edit and delete.
    let body = json!({ "name": "renamed", "filter": { "type": "solo" } });
    let (st, s) = call(
        &addr,
        "PUT",
        &format!("/subscriptions/{id}"),
        alice,
        Some(body),
    )
    .await;
    assert_eq!((st, s["name"].as_str()), (200, Some("renamed")));
    assert_eq!(
        call(
            &addr,
            "DELETE",
            &format!("/subscriptions/{id}"),
            alice,
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(&addr, "GET", &format!("/subscriptions/{id}"), alice, None)
            .await
            .0,
        404
    );
    let _ = public.send(Message::Close(None)).await;
    stop(&ctx, handle).await;
}
