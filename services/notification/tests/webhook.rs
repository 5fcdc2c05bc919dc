//! Webhook delivery against a local receiver that fails, slows down, rate-limits (header in
//! fractional seconds, body only), answers 404 and 500: retries, pacing, disable, dead letters,
//! exactly one accepted request per (webhook, killmail); plus the pure retry policy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bs_notification::delivery::webhook::{Sender, SenderSettings};
use bs_notification::domain::filter::Filter;
use bs_notification::domain::retry::{self, Attempt, Decision, RetrySettings};
use bs_notification::ssrf::AllowList;
use bs_notification::store::{NewSubscription, NewWebhook, NotificationStore, WebhookKind};
use bs_notification::{BundledGeo, Hub, Notifier, NotifierSettings, SqlNotificationStore};
use bs_runtime::Clock as _;
use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// What the receiver saw per path: (arrival, delivery header, body) for accepted requests
/// and the count of all requests.
#[derive(Default)]
pub struct Log {
    pub accepted: HashMap<String, Vec<(Instant, String, serde_json::Value)>>,
    /// Arrival of every request, accepted or not.
    pub calls: HashMap<String, Vec<Instant>>,
}

pub type Receiver = Arc<Mutex<Log>>;

async fn hook(
    State(log): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let n = {
        let mut l = log.lock();
        let c = l.calls.entry(name.clone()).or_default();
        c.push(Instant::now());
        c.len()
    };
    let ok = |log: &Receiver| {
        let delivery = headers
            .get("x-battlescope-delivery")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        log.lock().accepted.entry(name.clone()).or_default().push((
            Instant::now(),
            delivery,
            serde_json::from_str(&body).unwrap_or_default(),
        ));
        StatusCode::NO_CONTENT.into_response()
    };
    match name.as_str() {
        "ok" => ok(&log),
        // Two failures, then success: retried with backoff.
        "flaky" if n <= 2 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "flaky" => ok(&log),
        "slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ok(&log)
        }
        // 429 with a fractional Retry-After header on every odd call.
        "limited" if n % 2 == 1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "0.25")],
            r#"{"retry_after": 0.25, "global": false}"#,
        )
            .into_response(),
        "limited" => ok(&log),
        // 429 with only a body, in milliseconds (seen from Discord webhooks).
        "limited-ms" if n == 1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("content-type", "application/json")],
            r#"{"retry_after": 1500, "global": false}"#,
        )
            .into_response(),
        "limited-ms" => ok(&log),
        "gone" => StatusCode::NOT_FOUND.into_response(),
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Serves the receiver on 127.0.0.1:0; returns its base URL and log.
pub async fn receiver() -> (String, Receiver) {
    let log: Receiver = Arc::default();
    let app = axum::Router::new()
        .route("/hook/{name}", axum::routing::post(hook))
        .with_state(Arc::clone(&log));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), log)
}

pub fn fast_sender() -> SenderSettings {
    SenderSettings {
        retry: RetrySettings {
            base: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
            max_attempts: 3,
            ..RetrySettings::default()
        },
        min_interval: Duration::from_millis(100),
        poll: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        ..SenderSettings::default()
    }
}

#[tokio::test]
async fn webhooks_retry_pace_disable_and_deliver_each_match_once() {
    let dir = bs_testkit::temp_dir();
    let store: Arc<dyn NotificationStore> =
        Arc::new(SqlNotificationStore::new(sqlite(dir.path()).await));
    let (base, log) = receiver().await;
    let allow = AllowList::parse(base.trim_start_matches("http://"));
    let kms = fight("lxq2-t");
    let clock = ShiftedClock::at(kms[0].killmail_time);
    let names = [
        "ok",
        "flaky",
        "slow",
        "limited",
        "limited-ms",
        "gone",
        "broken",
    ];
    let system = kms[0].system.id;
    let mut hook_ids = HashMap::new();
    for name in names {
        let s = store
            .create_subscription(
                "alice",
                &NewSubscription {
                    name: name.into(),
                    filter: Filter::System { ids: vec![system] },
                    websocket: false,
                    enabled: true,
                    webhooks: vec![NewWebhook {
                        url: format!("{base}/hook/{name}"),
                        kind: if name == "ok" {
                            WebhookKind::Discord
                        } else {
                            WebhookKind::Json
                        },
                    }],
                },
                clock.now(),
            )
            .await
            .unwrap();
        hook_ids.insert(name, s.webhooks[0].id);
    }
    let notifier = Notifier::open(
        Arc::clone(&store),
        clock.clone(),
        Hub::new(),
        Arc::new(BundledGeo),
        NotifierSettings {
            max_age: Duration::from_secs(3600),
            public_url: "https://bs.example".into(),
            public_feed: false,
        },
    )
    .await
    .unwrap();
    // Three killmails, each delivered twice by the bus (a redelivery).
    let three = &kms[..3];
    notifier.handle_killmails(three).await.unwrap();
    notifier.handle_killmails(three).await.unwrap();

    let stop = CancellationToken::new();
    let sender = Sender {
        store: Arc::clone(&store),
        clock: clock.clone(),
        allow,
        settings: fast_sender(),
        wake: Arc::clone(&notifier.wake),
    };
    let task = tokio::spawn(sender.run(stop.clone()));
    // Done when nothing is pending: 5 good webhooks × 3 sent; gone and broken dead.
    eventually(|| {
        let store = Arc::clone(&store);
        async move { store.delivery_counts().await.unwrap().0 == 0 }
    })
    .await;
    stop.cancel();
    task.await.unwrap();

    let (pending, sent, dead) = store.delivery_counts().await.unwrap();
    assert_eq!((pending, sent, dead), (0, 15, 6));
    {
        let l = log.lock();
        for name in ["ok", "flaky", "slow", "limited", "limited-ms"] {
            let got = &l.accepted[name];
            assert_eq!(
                got.len(),
                3,
                "{name}: exactly one accepted request per killmail"
            );
            let mut keys: Vec<&String> = got.iter().map(|(_, k, _)| k).collect();
            keys.dedup();
            assert_eq!(keys.len(), 3, "{name}: distinct delivery keys");
            // Pacing: consecutive accepted requests to one webhook are at least min_interval apart.
            for w in got.windows(2) {
                assert!(w[1].0 - w[0].0 >= Duration::from_millis(90), "{name} paced");
            }
        }
        // 429s were honoured: the fractional header (0.25 s) and the body in ms (1.5 s).
        assert_eq!(l.calls["limited"].len(), 6, "every other call was a 429");
        for pair in l.calls["limited"].chunks(2) {
            assert!(
                pair[1] - pair[0] >= Duration::from_millis(240),
                "waited the 0.25 s asked"
            );
        }
        let ms = &l.calls["limited-ms"];
        assert_eq!(ms.len(), 4);
        assert!(
            ms[1] - ms[0] >= Duration::from_millis(1450),
            "waited the 1500 ms asked"
        );
        // flaky: 2 failures then 3 successes.
        assert_eq!(l.calls["flaky"].len(), 5);
        // 404: one call only, then disabled; the other two deliveries dead without a call.
        assert_eq!(l.calls["gone"].len(), 1);
        // 500 forever: max_attempts per delivery, then dead letter.
        assert_eq!(l.calls["broken"].len(), 9);
        // Discord body shape: an embed with the zKillboard link and no mentions.
        let (_, _, body) = &l.accepted["ok"][0];
        assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));
        assert!(
            body["embeds"][0]["url"]
                .as_str()
                .unwrap()
                .starts_with("https://zkillboard.com/kill/")
        );
    }
    let subs = store.list_subscriptions("alice").await.unwrap();
    let gone = subs.iter().find(|s| s.name == "gone").unwrap();
    assert!(!gone.webhooks[0].enabled);
    assert!(
        gone.webhooks[0]
            .disabled_reason
            .as_deref()
            .unwrap()
            .contains("404")
    );
    let dead = store.dead_letters("alice").await.unwrap();
    assert_eq!(dead.len(), 6);
    assert!(
        dead.iter()
            .filter(|d| d.webhook_id == hook_ids["broken"])
            .all(|d| d.attempts == 3)
    );
}

#[test]
fn retry_policy_table() {
    let s = RetrySettings::default();
    let st = |code: u16| Attempt::Status {
        code,
        retry_after_header: None,
        retry_after_body: None,
    };
    assert_eq!(retry::decide(&st(204), 1, 0, &s, 0.5), Decision::Delivered);
    for code in [401, 403, 404] {
        assert!(
            matches!(
                retry::decide(&st(code), 1, 0, &s, 0.5),
                Decision::Disable { .. }
            ),
            "{code}"
        );
    }
    assert!(matches!(
        retry::decide(&st(400), 1, 0, &s, 0.5),
        Decision::DeadLetter { .. }
    ));
    assert!(matches!(
        retry::decide(&st(302), 1, 0, &s, 0.5),
        Decision::DeadLetter { .. }
    ));
    assert!(matches!(
        retry::decide(&st(503), 1, 0, &s, 0.5),
        Decision::Retry { counts: true, .. }
    ));
    assert!(matches!(
        retry::decide(&st(503), s.max_attempts, 0, &s, 0.5),
        Decision::DeadLetter { .. }
    ));
    assert!(matches!(
        retry::decide(&Attempt::Refused("x".into()), 1, 0, &s, 0.5),
        Decision::DeadLetter { .. }
    ));
    // 429: header seconds (fractional) win, body seconds, body milliseconds, clamped; not counted.
    let limited = |h: Option<f64>, b: Option<f64>| match retry::decide(
        &Attempt::Status {
            code: 429,
            retry_after_header: h,
            retry_after_body: b,
        },
        1,
        1,
        &s,
        0.5,
    ) {
        Decision::Retry {
            after,
            counts: false,
            ..
        } => after,
        d => panic!("{d:?}"),
    };
    assert_eq!(limited(Some(2.5), Some(9.0)), Duration::from_millis(2500));
    assert_eq!(limited(None, Some(0.75)), Duration::from_millis(750));
    assert_eq!(limited(None, Some(1500.0)), Duration::from_millis(1500));
    assert_eq!(limited(Some(1e9), None), s.max_retry_after);
    // Backoff doubles (with jitter within [half, full] of the step) and is capped.
    assert_eq!(retry::backoff(1, &s, 0.0), Duration::from_millis(500));
    assert_eq!(retry::backoff(1, &s, 1.0), Duration::from_secs(1));
    assert_eq!(retry::backoff(3, &s, 1.0), Duration::from_secs(4));
    assert_eq!(retry::backoff(30, &s, 1.0), s.max_backoff);
}

/// A battle trigger notifies once per battle, however often the battle grows afterwards.
#[tokio::test]
async fn battle_triggers_notify_once_per_battle() {
    let dir = bs_testkit::temp_dir();
    let store: Arc<dyn NotificationStore> =
        Arc::new(SqlNotificationStore::new(sqlite(dir.path()).await));
    let now = chrono::Utc::now();
    let clock = ShiftedClock::at(now);
    store
        .create_subscription(
            "alice",
            &NewSubscription {
                name: "big fights".into(),
                filter: Filter::Battle {
                    min_kills: Some(10),
                    min_isk: None,
                },
                websocket: true,
                enabled: true,
                webhooks: vec![],
            },
            now,
        )
        .await
        .unwrap();
    let notifier = Notifier::open(
        Arc::clone(&store),
        clock,
        Hub::new(),
        Arc::new(BundledGeo),
        NotifierSettings {
            max_age: Duration::from_secs(3600),
            public_url: "https://bs.example".into(),
            public_feed: false,
        },
    )
    .await
    .unwrap();
    let snap = |kills: u32, revision: u64| bs_events::BattleSnapshot {
        battle_id: 7,
        status: bs_events::BattleStatus::Active,
        merged_into: None,
        system_ids: vec![30000142],
        region_ids: vec![10000002],
        security_types: vec!["highsec".into()],
        start_time: now,
        end_time: now,
        total_kills: kills,
        total_isk_destroyed: 1e9,
        pilots: 40,
        multi_party: false,
        one_sided: false,
        sides: vec![],
        revision,
    };
    notifier.handle_battles(&[snap(5, 1)]).await.unwrap();
    assert!(
        store
            .list_notifications("alice", 10)
            .await
            .unwrap()
            .is_empty(),
        "below threshold"
    );
    notifier
        .handle_battles(&[snap(12, 2), snap(30, 3)])
        .await
        .unwrap();
    notifier.handle_battles(&[snap(60, 4)]).await.unwrap();
    let notes = store.list_notifications("alice", 10).await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].kind, "battle");
    assert_eq!(
        notes[0].summary["kills"], 12,
        "the snapshot that crossed the threshold"
    );
}
