//! The notification service through the BFF: the `/api/…` proxy (per-user, CSRF on state
//! changes), the `/notifications` page and its plain POST forms, the WebSockets in both
//! topologies (notification in-process and over HTTP), and a browser test: log in through
//! the fake EVE SSO, create a subscription with a webhook to a local receiver, feed a
//! matching killmail, see the webhook arrive and the notification appear on the page.
//!
//! Its own small world (authentication + notification + BFF on loopback, the fake SSO, a
//! webhook receiver), built once on its own runtime thread; killmails are published as
//! `killmail.enriched` events on the embedded bus, timed now so they are fresh enough.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use bs_bus::{BusConfig, Record};
use bs_config::ServiceName;
use bs_events::{Envelope, KillmailEnriched};
use bs_runtime::{ServiceClient, ServiceContext, ServiceDirectory, SystemClock};
use bs_sso::fake::{FakeClient, FakeSso};
use futures::{SinkExt as _, StreamExt as _};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_util::sync::CancellationToken;

const CLIENT_ID: &str = "bff-notify-test";
const CLIENT_SECRET: &str = "bff-notify-secret-not-real";
/// A system of the bundled static data (Jita) and another one (Amarr).
const JITA: i64 = 30_000_142;
const AMARR: i64 = 30_002_187;
/// Systems no other test publishes kills in: the form test counts its own notifications, and
/// the world (with its subscription matcher) is shared by every test of this module.
const DODIXIE: i64 = 30_002_659;
const RENS: i64 = 30_002_510;

/// One webhook request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Hook {
    pub delivery: String,
    pub body: Value,
}

pub struct NWorld {
    /// BFF + the authentication service's user-facing routes, notification in-process.
    pub base: String,
    /// A second BFF whose notification client is HTTP (split mode), same services behind.
    pub split: String,
    /// The webhook receiver's base URL (allowlisted for plain http).
    pub receiver: String,
    pub hooks: Arc<Mutex<Vec<Hook>>>,
    sso: Arc<FakeSso>,
    publish: mpsc::UnboundedSender<(Vec<Record>, oneshot::Sender<()>)>,
    _dir: tempfile::TempDir,
}

static WORLD: OnceLock<NWorld> = OnceLock::new();

pub async fn nw() -> &'static NWorld {
    tokio::task::spawn_blocking(|| WORLD.get_or_init(build))
        .await
        .unwrap()
}

async fn serve(router: Router) -> (String, u16) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    (format!("http://127.0.0.1:{port}"), port)
}

/// The authentication routes a browser uses, at the root (as all-in-one mode serves them).
fn user_facing(auth: Router) -> Router {
    let svc = auth.into_service::<Body>();
    ["/auth/{*rest}", "/me", "/me/{*rest}"]
        .iter()
        .fold(Router::new(), |r, p| r.route_service(p, svc.clone()))
}

fn build() -> NWorld {
    let dir = bs_testkit::temp_dir();
    let data = dir.path().to_path_buf();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (pub_tx, mut pub_rx) = mpsc::unbounded_channel::<(Vec<Record>, oneshot::Sender<()>)>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            // The public listener first: its URL is the installation's public URL.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            // The webhook receiver: records every request, answers 204.
            let hooks: Arc<Mutex<Vec<Hook>>> = Arc::default();
            let log = Arc::clone(&hooks);
            let receiver = Router::new().route(
                "/hook",
                axum::routing::post(move |h: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let log = Arc::clone(&log);
                    async move {
                        log.lock().push(Hook {
                            delivery: h
                                .get("x-battlescope-delivery")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned(),
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        });
                        axum::http::StatusCode::NO_CONTENT
                    }
                }),
            );
            let (receiver_url, receiver_port) = serve(receiver).await;
            let sso = FakeSso::start(FakeClient {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                callback_url: format!("{base}/auth/callback").parse().unwrap(),
            })
            .await
            .unwrap();
            for (id, name) in [
                (2_112_000_001, "Alice Notify"),
                (2_112_000_002, "Bob Notify"),
                (2_112_000_003, "Carol Forms"),
                (2_112_000_004, "Dave Browser"),
            ] {
                sso.add_character(id, name).unwrap();
            }
            let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 32]);
            let env = [
                ("BATTLESCOPE_DATA_DIR", data.display().to_string()),
                ("BATTLESCOPE_PUBLIC_URL", base.clone()),
                ("BATTLESCOPE_SSO_URL", sso.base_url().to_string()),
                ("BATTLESCOPE_SSO_CLIENT_ID", CLIENT_ID.to_owned()),
                ("BATTLESCOPE_SSO_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
                ("BATTLESCOPE_TOKEN_KEYS", format!("k1:{key}")),
                (
                    "BATTLESCOPE_WEBHOOK_ALLOWED_HOSTS",
                    format!("127.0.0.1:{receiver_port}"),
                ),
            ];
            let config = bs_config::Config::load(
                None,
                env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())),
            )
            .unwrap();
            let bus = bs_bus::connect(&BusConfig::embedded(data.join("bus")))
                .await
                .unwrap();
            bus.ensure_topics(bs_events::topics::ALL).await.unwrap();
            let ctx = ServiceContext {
                config: Arc::new(config),
                bus: Arc::clone(&bus),
                cache: Arc::new(bs_cache::MemoryCache::new(1000)),
                clock: Arc::new(SystemClock),
                shutdown: CancellationToken::new(),
                offline: true,
                services: ServiceDirectory::default(),
            };
            let auth = bs_authentication::start(&ctx).await.unwrap();
            ctx.services.register(ServiceClient::in_process(
                ServiceName::Authentication,
                auth.router.clone(),
            ));
            let notification = bs_notification::start(&ctx).await.unwrap();
            ctx.services.register(ServiceClient::in_process(
                ServiceName::Notification,
                notification.router.clone(),
            ));
            let bff = bs_bff::start(&ctx).await.unwrap();
            let app = bff.router.clone().merge(user_facing(auth.router.clone()));
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            // Split mode: the notification service on its own port, reached over HTTP.
            let (notify_url, _) = serve(notification.router.clone()).await;
            let split_services = ServiceDirectory::default();
            split_services.register(ServiceClient::in_process(
                ServiceName::Authentication,
                auth.router.clone(),
            ));
            split_services.register(ServiceClient::http(ServiceName::Notification, &notify_url));
            let split_ctx = ServiceContext {
                services: split_services,
                ..ctx.clone()
            };
            let split_bff = bs_bff::start(&split_ctx).await.unwrap();
            let (split, _) = serve(split_bff.router.clone()).await;
            ready_tx
                .send((base, split, receiver_url, hooks, Arc::new(sso)))
                .unwrap();
            while let Some((records, done)) = pub_rx.recv().await {
                bus.publish(bs_events::topics::KILLMAIL_ENRICHED, &records)
                    .await
                    .unwrap();
                let _ = done.send(());
            }
            drop((auth, notification, bff, split_bff));
        });
    });
    let (base, split, receiver, hooks, sso) = ready_rx
        .recv_timeout(Duration::from_secs(300))
        .expect("the notification test world did not come up");
    NWorld {
        base,
        split,
        receiver,
        hooks,
        sso,
        publish: pub_tx,
        _dir: dir,
    }
}

impl NWorld {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Publishes killmails as the enrichment service would.
    pub async fn publish(&self, kms: &[KillmailEnriched]) {
        let records = kms
            .iter()
            .map(|k| Record {
                key: k.killmail_id.to_string(),
                payload: Envelope::wrap(k, chrono::Utc::now()).unwrap().to_bytes(),
            })
            .collect();
        let (tx, rx) = oneshot::channel();
        self.publish.send((records, tx)).unwrap();
        rx.await.unwrap();
    }

    /// Logs `character` in through the fake SSO; answers the `Cookie` header (session and
    /// CSRF cookies) and the CSRF token.
    pub async fn login(&self, character: i64) -> (String, String) {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let start = http.get(self.url("/auth/login")).send().await.unwrap();
        assert_eq!(start.status().as_u16(), 303, "login start");
        let preauth = cookies(&start);
        let authorize = start.headers()["location"].to_str().unwrap().to_owned();
        let back = http
            .get(format!("{authorize}&fake_character_id={character}"))
            .send()
            .await
            .unwrap();
        let back = back.headers()["location"].to_str().unwrap().to_owned();
        let query = back.split_once('?').unwrap().1;
        let done = http
            .get(self.url(&format!("/auth/callback?{query}")))
            .header("cookie", preauth)
            .send()
            .await
            .unwrap();
        assert_eq!(done.status().as_u16(), 303, "callback");
        let cookie = cookies(&done);
        let csrf = cookie
            .split("; ")
            .find_map(|c| c.strip_prefix("battlescope_csrf="))
            .expect("csrf cookie")
            .to_owned();
        assert!(cookie.contains("battlescope_session="), "{cookie}");
        (cookie, csrf)
    }
}

/// `name=value` pairs of a response's `Set-Cookie` headers, as a `Cookie` header.
fn cookies(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter(|kv| kv.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A fresh killmail (now) in `system` with a victim and one player attacker.
pub fn killmail(id: i64, system: i64, isk: f64) -> KillmailEnriched {
    let sys = bs_sde::StaticData::bundled().system(system).unwrap();
    serde_json::from_value(json!({
        "killmail_id": id,
        "killmail_time": chrono::Utc::now(),
        "hash": "abc",
        "source": "r2z2",
        "system": {
            "id": system, "name": sys.name, "constellation_id": null, "constellation_name": null,
            "region_id": sys.region_id, "region_name": sys.region_name,
            "security_status": sys.rounded_security, "security_type": sys.security_type.as_str(),
        },
        "victim": {
            "character_id": 95_000_001, "character_name": "Victim Pilot", "corporation_id": 98_000_001,
            "ship": { "type_id": 587, "type_name": "Rifter", "group_id": 25, "group_name": "Frigate", "category_id": 6, "class": "frigate" },
            "damage_taken": 1000,
        },
        "attackers": [{
            "character_id": 95_000_002, "character_name": "Attacker Pilot", "corporation_id": 98_000_002,
            "ship": { "type_id": 24690, "type_name": "Hurricane", "group_id": 419, "group_name": "Combat Battlecruiser", "category_id": 6, "class": "battlecruiser" },
            "weapon_type_id": null, "weapon_type_name": null, "damage_done": 1000, "final_blow": true,
            "security_status": 0.0, "is_npc": false,
        }],
        "isk": { "destroyed": isk, "dropped": 0.0, "total": isk, "value_source": "computed" },
        "attacker_count": 1,
        "pilot_count": 2,
        "names_pending": false,
        "enrichment_version": 1,
    }))
    .unwrap()
}

/// A request as a browser sends it (no redirects followed).
pub async fn send(
    method: &str,
    url: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> (u16, String, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = http.request(method.parse().unwrap(), url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some((ct, b)) = body {
        req = req.header("content-type", ct).body(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, r.text().await.unwrap())
}

/// Percent-encoding for query strings and form bodies.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> Option<(&'static str, String)> {
    Some((
        "application/x-www-form-urlencoded",
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&"),
    ))
}

async fn api_json(
    w: &NWorld,
    method: &str,
    path: &str,
    cookie: &str,
    csrf: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (s, _, text) = send(
        method,
        &w.url(path),
        Some(cookie),
        &[("x-csrf-token", csrf)],
        body.map(|b| ("application/json", b.to_string())),
    )
    .await;
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_proxy_is_per_user_and_refuses_state_changes_without_the_csrf_token() {
    let w = nw().await;
    let (alice, alice_csrf) = w.login(2_112_000_001).await;
    let (bob, bob_csrf) = w.login(2_112_000_002).await;
    // Anonymous: 401 through the proxy.
    let (s, _, _) = send("GET", &w.url("/api/subscriptions"), None, &[], None).await;
    assert_eq!(s, 401);
    let sub = json!({ "name": "alice jita", "filter": { "type": "system", "ids": [JITA] } });
    // A cookie-authenticated change without the token, or with another session's, is refused.
    let (s, _, body) = send(
        "POST",
        &w.url("/api/subscriptions"),
        Some(&alice),
        &[],
        Some(("application/json", sub.to_string())),
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("csrf"), "{body}");
    let (s, _) = api_json(
        w,
        "POST",
        "/api/subscriptions",
        &alice,
        &bob_csrf,
        Some(sub.clone()),
    )
    .await;
    assert_eq!(s, 403, "bob's token with alice's session");
    // A foreign Origin is refused even with the token.
    let (s, _, _) = send(
        "POST",
        &w.url("/api/subscriptions"),
        Some(&alice),
        &[
            ("x-csrf-token", &alice_csrf),
            ("origin", "https://evil.example"),
        ],
        Some(("application/json", sub.to_string())),
    )
    .await;
    assert_eq!(s, 403);
    let (s, created) = api_json(
        w,
        "POST",
        "/api/subscriptions",
        &alice,
        &alice_csrf,
        Some(sub),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    // Bob sees none of it.
    let (s, list) = api_json(w, "GET", "/api/subscriptions", &bob, &bob_csrf, None).await;
    assert_eq!(s, 200);
    assert!(
        !list.as_array().unwrap().iter().any(|s| s["id"] == id),
        "{list}"
    );
    let (s, _) = api_json(
        w,
        "GET",
        &format!("/api/subscriptions/{id}"),
        &bob,
        &bob_csrf,
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = api_json(
        w,
        "DELETE",
        &format!("/api/subscriptions/{id}"),
        &bob,
        &bob_csrf,
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (_, mine) = api_json(
        w,
        "GET",
        &format!("/api/subscriptions/{id}"),
        &alice,
        &alice_csrf,
        None,
    )
    .await;
    assert_eq!(mine["name"], "alice jita");
    // Watchlists, notifications and dead letters answer through the proxy too.
    let (s, wl) = api_json(
        w,
        "POST",
        "/api/watchlists",
        &alice,
        &alice_csrf,
        Some(json!({ "name": "hubs", "systems": [JITA, AMARR] })),
    )
    .await;
    assert_eq!(s, 201, "{wl}");
    for path in [
        "/api/watchlists",
        "/api/notifications?limit=5",
        "/api/dead-letters",
    ] {
        let (s, v) = api_json(w, "GET", path, &alice, &alice_csrf, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        assert!(v.is_array(), "{path}: {v}");
    }
    let (_, bobs) = api_json(w, "GET", "/api/watchlists", &bob, &bob_csrf, None).await;
    assert!(!bobs.as_array().unwrap().iter().any(|x| x["name"] == "hubs"));
    let (s, _) = api_json(
        w,
        "POST",
        "/api/notifications/read-all",
        &alice,
        &alice_csrf,
        None,
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_forms_work_without_javascript() {
    let w = nw().await;
    let (s, _, body) = send("GET", &w.url("/notifications"), None, &[], None).await;
    assert_eq!(s, 401);
    assert!(body.contains("/auth/login"), "login link");
    let (carol, csrf) = w.login(2_112_000_003).await;
    let (bob, bob_csrf) = w.login(2_112_000_002).await;
    let (s, _, page) = send("GET", &w.url("/notifications"), Some(&carol), &[], None).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("id=\"sub-form\"") && page.contains("name=\"csrf_token\""));
    assert!(
        page.contains(&format!("value=\"{csrf}\"")),
        "the forms carry the token"
    );
    // A watchlist through the form.
    let (s, loc, _) = send(
        "POST",
        &w.url("/notifications/watchlists"),
        Some(&carol),
        &[],
        form(&[
            ("csrf_token", &csrf),
            ("name", "carol hubs"),
            ("systems", &format!("{DODIXIE}, {RENS}")),
        ]),
    )
    .await;
    assert_eq!(
        (s, loc.starts_with("/notifications?ok=")),
        (303, true),
        "{loc}"
    );
    let filled = [
        ("name", "carol builder"),
        ("enabled", "1"),
        ("websocket", "1"),
        ("characters", "95000001, 95000003"),
        ("alliances", "99000001"),
        ("role", "victim"),
        ("systems", &format!("{DODIXIE}")),
        ("near_system", &format!("{RENS}")),
        ("jumps", "2"),
        ("ship_class", "frigate"),
        ("ship_class", "cruiser"),
        ("min_isk", "1000000"),
        ("battle", "1"),
        ("battle_kills", "10"),
        ("webhook_url_0", &format!("{}/hook", w.receiver)),
        ("webhook_kind_0", "json"),
    ];
    // Without the token, with a wrong one and with another session's: refused, nothing made.
    let mut no_token = filled.to_vec();
    let bad = [("csrf_token", "forged.token")];
    let bobs = [("csrf_token", bob_csrf.as_str())];
    for extra in [&[][..], &bad[..], &bobs[..]] {
        no_token.truncate(filled.len());
        no_token.extend_from_slice(extra);
        let (s, _, body) = send(
            "POST",
            &w.url("/notifications/subscriptions"),
            Some(&carol),
            &[],
            form(&no_token),
        )
        .await;
        assert_eq!(s, 403, "{extra:?}: {body}");
        assert!(body.contains("Form refused"), "{body}");
    }
    let mut with_token = filled.to_vec();
    with_token.push(("csrf_token", &csrf));
    let (s, loc, _) = send(
        "POST",
        &w.url("/notifications/subscriptions"),
        Some(&carol),
        &[],
        form(&with_token),
    )
    .await;
    assert_eq!(
        (s, loc.as_str()),
        (303, "/notifications?ok=Subscription%20created")
    );
    let (_, subs) = api_json(w, "GET", "/api/subscriptions", &carol, &csrf, None).await;
    let subs = subs.as_array().unwrap();
    assert_eq!(subs.len(), 1, "{subs:?}");
    let sub = &subs[0];
    let id = sub["id"].as_i64().unwrap();
    // The builder's filter: AND of the filled-in groups, alternatives within a group.
    assert_eq!(
        sub["filter"],
        json!({ "type": "and", "of": [
            { "type": "or", "of": [
                { "type": "character", "ids": [95000001, 95000003], "role": "victim" },
                { "type": "alliance", "ids": [99000001], "role": "victim" },
            ] },
            { "type": "or", "of": [
                { "type": "system", "ids": [DODIXIE] },
                { "type": "within_jumps", "system_id": RENS, "jumps": 2 },
            ] },
            { "type": "ship_class", "classes": ["frigate", "cruiser"], "role": "victim" },
            { "type": "min_isk", "isk": 1000000.0 },
            { "type": "battle", "min_kills": 10, "min_isk": null },
        ] })
    );
    assert_eq!(sub["webhooks"][0]["kind"], "json");
    // The page lists it with its webhook status; the edit form shows the builder's values.
    let (_, _, page) = send(
        "GET",
        &w.url(&format!("/notifications?edit={id}")),
        Some(&carol),
        &[],
        None,
    )
    .await;
    assert!(
        page.contains("carol builder") && page.contains("delivered 0"),
        "{page}"
    );
    assert!(page.contains(&format!("action=\"/notifications/subscriptions/{id}\"")));
    assert!(page.contains("value=\"95000001, 95000003\"") && page.contains("value=\"2\""));
    assert!(
        page.contains("value=\"frigate\" checked") && page.contains("value=\"battlecruiser\" >")
    );
    // Bob's page does not show it, and bob cannot change it.
    let (_, _, bob_page) = send("GET", &w.url("/notifications"), Some(&bob), &[], None).await;
    assert!(!bob_page.contains("carol builder"));
    let (s, loc, _) = send(
        "POST",
        &w.url(&format!("/notifications/subscriptions/{id}/delete")),
        Some(&bob),
        &[],
        form(&[("csrf_token", &bob_csrf)]),
    )
    .await;
    assert_eq!(s, 303);
    assert!(loc.contains("error="), "{loc}");
    // Edit: a simpler filter, the webhook removed.
    let (s, loc, _) = send(
        "POST",
        &w.url(&format!("/notifications/subscriptions/{id}")),
        Some(&carol),
        &[],
        form(&[
            ("csrf_token", &csrf),
            ("name", "carol renamed"),
            ("enabled", "1"),
            ("systems", &format!("{RENS}")),
        ]),
    )
    .await;
    assert_eq!(
        (s, loc.as_str()),
        (303, "/notifications?ok=Subscription%20saved")
    );
    let (_, got) = api_json(
        w,
        "GET",
        &format!("/api/subscriptions/{id}"),
        &carol,
        &csrf,
        None,
    )
    .await;
    assert_eq!(got["name"], "carol renamed");
    assert_eq!(got["filter"], json!({ "type": "system", "ids": [RENS] }));
    assert_eq!(got["websocket"], false);
    assert!(got["webhooks"].as_array().unwrap().is_empty());
    // A bad field comes back as a notice, nothing saved.
    let (s, loc, _) = send(
        "POST",
        &w.url("/notifications/subscriptions"),
        Some(&carol),
        &[],
        form(&[("csrf_token", &csrf), ("name", "bad"), ("systems", "Jita")]),
    )
    .await;
    assert_eq!(s, 303);
    let (_, _, notice) = send("GET", &w.url(&loc), Some(&carol), &[], None).await;
    assert!(notice.contains("is not an id"), "{notice}");
    // Test, then mark read (one, then all).
    let (s, loc, _) = send(
        "POST",
        &w.url(&format!("/notifications/subscriptions/{id}/test")),
        Some(&carol),
        &[],
        form(&[("csrf_token", &csrf)]),
    )
    .await;
    assert_eq!(
        (s, loc.as_str()),
        (303, "/notifications?ok=Test%20notification%20sent")
    );
    let (_, _, page) = send("GET", &w.url("/notifications"), Some(&carol), &[], None).await;
    assert!(
        page.contains("Test notification for “carol renamed”"),
        "{page}"
    );
    assert!(page.contains("1 unread"));
    let (_, notes) = api_json(w, "GET", "/api/notifications", &carol, &csrf, None).await;
    let note = notes[0]["id"].as_i64().unwrap();
    let (s, _, _) = send(
        "POST",
        &w.url(&format!("/notifications/{note}/read")),
        Some(&carol),
        &[],
        form(&[("csrf_token", &csrf)]),
    )
    .await;
    assert_eq!(s, 303);
    let (_, notes) = api_json(w, "GET", "/api/notifications", &carol, &csrf, None).await;
    assert_eq!(notes[0]["read"], true);
    let (s, _, _) = send(
        "POST",
        &w.url("/notifications/read-all"),
        Some(&carol),
        &[],
        form(&[("csrf_token", &csrf)]),
    )
    .await;
    assert_eq!(s, 303);
    // Delete the watchlist and the subscription.
    let (_, lists) = api_json(w, "GET", "/api/watchlists", &carol, &csrf, None).await;
    let wl = lists[0]["id"].as_i64().unwrap();
    for path in [
        format!("/notifications/watchlists/{wl}/delete"),
        format!("/notifications/subscriptions/{id}/delete"),
    ] {
        let (s, loc, _) = send(
            "POST",
            &w.url(&path),
            Some(&carol),
            &[],
            form(&[("csrf_token", &csrf)]),
        )
        .await;
        assert_eq!(s, 303, "{path}");
        assert!(loc.contains("ok="), "{path}: {loc}");
    }
    let (_, subs) = api_json(w, "GET", "/api/subscriptions", &carol, &csrf, None).await;
    assert!(subs.as_array().unwrap().is_empty());
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    base: &str,
    path: &str,
    cookie: Option<&str>,
    origin: &str,
) -> Result<Socket, u16> {
    let mut req = format!("{}{path}", base.replacen("http://", "ws://", 1))
        .into_client_request()
        .unwrap();
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    req.headers_mut().insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((s, _)) => Ok(s),
        Err(tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// The next text message of a type, within `wait`.
async fn next_of(s: &mut Socket, kind: &str, wait: Duration) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, s.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} message within {wait:?}"));
        if let Some(Ok(tungstenite::Message::Text(t))) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_through_the_bff_in_process_and_over_http() {
    let w = nw().await;
    let (alice, csrf) = w.login(2_112_000_002).await;
    let sub = json!({
        "name": "ws amarr", "filter": { "type": "system", "ids": [AMARR] },
        "webhooks": [{ "url": format!("{}/hook", w.receiver), "kind": "json" }],
    });
    let (s, created) = api_json(w, "POST", "/api/subscriptions", &alice, &csrf, Some(sub)).await;
    assert_eq!(s, 201, "{created}");
    let sub_id = created["id"].as_i64().unwrap();
    // No session: 401; a foreign Origin: 403 (cross-site WebSocket hijacking).
    assert_eq!(
        connect(&w.base, "/api/ws", None, &w.base).await.err(),
        Some(401)
    );
    assert_eq!(
        connect(&w.base, "/api/ws", Some(&alice), "https://evil.example")
            .await
            .err(),
        Some(403)
    );
    let mut local = connect(&w.base, "/api/ws", Some(&alice), &w.base)
        .await
        .unwrap();
    let mut split = connect(&w.split, "/api/ws", Some(&alice), &w.base)
        .await
        .unwrap();
    let filter = format!(
        "?filter={}",
        enc(&json!({ "type": "system", "ids": [AMARR] }).to_string())
    );
    let mut public = connect(&w.base, &format!("/api/ws/public{filter}"), None, &w.base)
        .await
        .unwrap();
    let mut public_split = connect(&w.split, "/api/ws/public", None, &w.base)
        .await
        .unwrap();
    // The relays are open before the killmail is published (the sockets are upgraded only
    // after the relay exists), so nothing is missed.
    let id = 7_700_000_001;
    w.publish(&[killmail(id, JITA, 5e6), killmail(id + 1, AMARR, 7e6)])
        .await;
    for s in [&mut local, &mut split] {
        let m = next_of(s, "notification", Duration::from_secs(15)).await;
        assert_eq!(m["notification"]["subject_id"], id + 1, "{m}");
        assert_eq!(m["notification"]["subscription_id"], sub_id);
    }
    // The filtered public feed gets only Amarr; the unfiltered one gets both.
    let m = next_of(&mut public, "killmail", Duration::from_secs(15)).await;
    assert_eq!(m["killmail"]["killmail_id"], id + 1);
    assert_eq!(m["killmail"]["system"], "Amarr");
    // Both, in either order: the bus orders per key (killmail), not across killmails.
    let a = next_of(&mut public_split, "killmail", Duration::from_secs(15)).await;
    let b = next_of(&mut public_split, "killmail", Duration::from_secs(15)).await;
    let mut got = [
        a["killmail"]["killmail_id"].as_i64(),
        b["killmail"]["killmail_id"].as_i64(),
    ];
    got.sort();
    assert_eq!(got, [Some(id), Some(id + 1)]);
    // A browser that keeps talking (pings every 2 ms) must not make the split relay drop a
    // poll whose answer carries killmails: every one still arrives (the bus orders per key,
    // so not necessarily in this order).
    let ids: Vec<i64> = (id + 10..id + 30).collect();
    let batch: Vec<_> = ids.iter().map(|&k| killmail(k, JITA, 1e6)).collect();
    w.publish(&batch).await;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < ids.len() {
        assert!(
            Instant::now() < deadline,
            "only {seen:?} of {ids:?} arrived"
        );
        public_split
            .send(tungstenite::Message::Ping(Vec::new().into()))
            .await
            .unwrap();
        if let Ok(Some(Ok(tungstenite::Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(2), public_split.next()).await
        {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "killmail" {
                seen.push(v["killmail"]["killmail_id"].as_i64().unwrap());
            }
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, ids);
    // The webhook arrives; its status shows on the subscription.
    let deadline = Instant::now() + Duration::from_secs(20);
    let key = format!("{sub_id}/killmail/{}", id + 1);
    while !w
        .hooks
        .lock()
        .iter()
        .any(|h| h.body["delivery"] == key.as_str())
    {
        assert!(Instant::now() < deadline, "webhook {key} never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, got) = api_json(
            w,
            "GET",
            &format!("/api/subscriptions/{sub_id}"),
            &alice,
            &csrf,
            None,
        )
        .await;
        if got["webhooks"][0]["status"]["delivered"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{got}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = local.close(None).await;
    let _ = split.send(tungstenite::Message::Close(None)).await;
    let (s, _) = api_json(
        w,
        "DELETE",
        &format!("/api/subscriptions/{sub_id}"),
        &alice,
        &csrf,
        None,
    )
    .await;
    assert_eq!(s, 204);
}

// ---------------------------------------------------------------------------------------------
// The browser test, on the WebDriver client of `browser.rs`.

use crate::browser::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_subscribe_with_a_webhook_and_see_the_notification_arrive() {
    if !crate::browser::available() {
        return;
    }
    let w = nw().await;
    let b = Browser::start().await;
    // Log in through the fake EVE SSO (it has no login page: the character is chosen here).
    w.sso.login_as(2_112_000_004);
    b.goto(&w.url("/auth/login")).await;
    b.wait_for(
        "return !location.pathname.startsWith('/auth') && document.cookie.includes('battlescope_csrf=')",
        "login",
        Duration::from_secs(20),
    )
    .await;
    b.goto(&w.url("/notifications")).await;
    b.wait_for(
        "return document.querySelector('#sub-form') !== null",
        "notifications page",
        Duration::from_secs(20),
    )
    .await;
    // Fill the builder like a user: a name, a system, a JSON webhook to the local receiver.
    let fill = format!(
        "const f=document.querySelector('#sub-form');\
         f.querySelector('[name=name]').value='browser jita';\
         f.querySelector('[name=systems]').value='{JITA}';\
         f.querySelector('[name=webhook_url_0]').value={hook};\
         f.querySelector('[name=webhook_kind_0]').value='json';\
         f.querySelector('button[type=submit]').click(); return true",
        hook = json!(format!("{}/hook", w.receiver)),
    );
    b.eval(&fill).await;
    let sub = b
        .wait_for(
            "return location.search.includes('ok=') && document.querySelector('#subs tr[data-id]') ? document.querySelector('#subs tr[data-id]').dataset.id : null",
            "the subscription listed",
            Duration::from_secs(20),
        )
        .await;
    let sub: i64 = sub.as_str().unwrap().parse().unwrap();
    b.wait_for(
        "return document.querySelector('#notes').dataset.wsOpen === '1'",
        "the live socket",
        Duration::from_secs(20),
    )
    .await;
    b.screenshot("notifications-subscribed").await;
    let id = 7_700_000_101;
    w.publish(&[killmail(id, JITA, 12e6)]).await;
    let text = b
        .wait_for(
            "const r=document.querySelector('#notes tr.new[data-id]'); return r ? r.textContent : null",
            "the notification on the page",
            Duration::from_secs(20),
        )
        .await;
    assert!(
        text.as_str()
            .unwrap()
            .contains("Victim Pilot lost a Rifter in Jita"),
        "{text}"
    );
    let key = format!("{sub}/killmail/{id}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<Hook> = w
            .hooks
            .lock()
            .iter()
            .filter(|h| h.body["delivery"] == key.as_str())
            .cloned()
            .collect();
        if let Some(h) = got.first() {
            assert_eq!(h.body["notification"]["killmail_id"], id);
            assert!(!h.delivery.is_empty(), "X-BattleScope-Delivery");
            break;
        }
        assert!(Instant::now() < deadline, "webhook {key} never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.screenshot("notifications-arrived").await;
    // After a reload the server-rendered list has it, and the webhook shows as delivered.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        b.goto(&w.url("/notifications")).await;
        let v = b.eval("return document.body.textContent").await;
        let t = v.as_str().unwrap_or("");
        // Other tests' Jita killmails may match too: at least one delivered, none failed.
        if t.contains("delivered ") && !t.contains("delivered 0") {
            assert!(t.contains("Victim Pilot lost a Rifter in Jita"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "webhook status never showed delivered"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
