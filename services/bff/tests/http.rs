//! Every page and API route over HTTP on the real fights, plus degradation and redirects
//! against fake services.

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use bs_config::{Config, ServiceName};
use bs_runtime::{ServiceClient, ServiceContext, ServiceDirectory, SystemClock};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::world::{World, world};

pub async fn w() -> &'static World {
    tokio::task::spawn_blocking(world).await.unwrap()
}

pub async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

pub async fn json(url: &str) -> Value {
    let (s, ct, body) = get(url).await;
    assert_eq!(s, 200, "{url}: {body}");
    assert!(ct.starts_with("application/json"), "{url}: {ct}");
    serde_json::from_str(&body).unwrap()
}

/// Ids from the largest battle to visit entity pages with.
struct Ids {
    alliance: i64,
    corporation: i64,
    character: i64,
    system: i64,
    ship: i64,
    killmail: i64,
}

async fn ids(w: &World) -> (Value, Ids) {
    let r = json(&w.url(&format!("/api/battles/{}", w.largest))).await;
    let side = &r["sides"][0];
    let p = r["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["alliance_id"].as_i64().is_some())
        .unwrap()
        .clone();
    let ids = Ids {
        alliance: side["alliance_ids"][0].as_i64().unwrap(),
        corporation: side["corporation_ids"][0].as_i64().unwrap(),
        character: p["character_id"].as_i64().unwrap(),
        system: r["system_ids"][0].as_i64().unwrap(),
        ship: p["ships"][0]["ship_type_id"].as_i64().unwrap(),
        killmail: r["killmail_ids"][0].as_i64().unwrap(),
    };
    (r, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_on_the_real_fights() {
    let w = w().await;
    let (_, i) = ids(w).await;
    let pages: Vec<(String, &str)> = vec![
        ("/".into(), "Recent battles"),
        ("/battles".into(), "<table class=\"battles\">"),
        (
            "/battles?sort=kills&order=desc&security_type=nullsec&from=2021-11-01&to=2021-12-31"
                .into(),
            "<table class=\"battles\">",
        ),
        (format!("/battles/{}", w.largest), "chart timeline"),
        ("/intel".into(), "id=\"feed\""),
        (
            "/intel?security_type=nullsec&min_isk=1000000".into(),
            "id=\"feed\"",
        ),
        (format!("/intel/alliances/{}", i.alliance), "Top opponents"),
        (
            format!("/intel/corporations/{}", i.corporation),
            "Top ships",
        ),
        (format!("/intel/characters/{}", i.character), "Efficiency"),
        ("/search".into(), "<h1>Search</h1>"),
        ("/search?q=jita".into(), "search unavailable"),
        ("/dashboard".into(), "Active battles"),
        (format!("/systems/{}", i.system), "Battles here"),
        (format!("/types/{}", i.ship), "zkillboard.com/ship/"),
    ];
    for (path, marker) in pages {
        let (status, ct, body) = get(&w.url(&path)).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        assert!(body.contains(marker), "{path} lacks {marker}");
        assert!(body.contains("id=\"q\""), "{path} has no header search box");
    }
    for (path, ct_want) in [
        ("/static/app.css", "text/css"),
        ("/static/app.js", "text/javascript"),
    ] {
        let (status, ct, body) = get(&w.url(path)).await;
        assert_eq!(status, 200);
        assert!(ct.starts_with(ct_want), "{path}: {ct}");
        assert!(body.len() > 1000);
    }
    // Aliases and bad input.
    let (s, _, _) = get(&w.url(&format!("/alliances/{}", i.alliance))).await;
    assert_eq!(s, 308);
    assert_eq!(get(&w.url("/battles/not-a-number")).await.0, 400);
    assert_eq!(get(&w.url("/battles/1")).await.0, 404);
    assert_eq!(get(&w.url("/systems/1")).await.0, 404);
    assert_eq!(get(&w.url("/intel/planets/1")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_report_shows_sides_timeline_composition_participants_and_killmails() {
    let w = w().await;
    let (r, _) = ids(w).await;
    let (_, _, html) = get(&w.url(&format!("/battles/{}?full=1", w.largest))).await;
    let sides = r["sides"].as_array().unwrap().len();
    assert!(sides >= 2, "{sides}");
    assert_eq!(html.matches("<div class=\"side\"").count(), sides);
    assert!(html.contains("class=\"eff "), "efficiency bars");
    // One bar per side and minute with kills.
    let bars: usize = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["kills"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|k| k.as_u64() > Some(0))
                .count()
        })
        .sum();
    let svg_start = html.find("<svg class=\"chart timeline\"").unwrap();
    let svg = &html[svg_start..svg_start + html[svg_start..].find("</svg>").unwrap()];
    assert_eq!(svg.matches("<rect").count(), bars);
    // Participants: one row per sided participant; killmails: one row per id, zkb links.
    let sided = r["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["side"].is_u64())
        .count();
    let pilots_html = html.matches("/intel/characters/").count();
    assert!(pilots_html >= sided, "{pilots_html} < {sided}");
    let kills = r["killmail_ids"].as_array().unwrap().len();
    assert_eq!(html.matches("zkillboard.com/kill/").count(), kills);
    assert!(html.contains("zkillboard.com/related/"));
    assert!(html.contains("class=\"comp\""));
    assert!(html.contains("table class=\"pilots sortable\""));
    // Real ship names from the static data and ISK.
    assert!(html.contains(" ISK"));
    // The default page is cut for phones: top pilots per side, the most valuable killmails,
    // with links to the full lists.
    let (_, _, light) = get(&w.url(&format!("/battles/{}", w.largest))).await;
    assert_eq!(
        light.matches("zkillboard.com/kill/").count(),
        kills.min(bs_bff::pages::KILLS_SHOWN)
    );
    assert!(light.contains("?full=1#participants") && light.contains("?full=1#killmails"));
    assert!(
        light.len() < html.len() / 4,
        "{} vs {}",
        light.len(),
        html.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_battle_list_pages_with_a_cursor_and_shows_the_sides() {
    let w = w().await;
    let api = json(&w.url("/api/battles?limit=2&sort=kills")).await;
    assert_eq!(api["battles"].as_array().unwrap().len(), 2);
    let cursor = api["next_cursor"].as_str().expect("more than two battles");
    let next = json(&w.url(&format!("/api/battles?limit=2&sort=kills&cursor={cursor}"))).await;
    assert_ne!(
        next["battles"][0]["battle_id"],
        api["battles"][0]["battle_id"]
    );
    let first_kills = api["battles"][0]["total_kills"].as_u64().unwrap();
    let (_, _, html) = get(&w.url("/battles?limit=2&sort=kills")).await;
    assert_eq!(html.matches("<tr").count(), 3, "header + 2 rows");
    assert!(
        html.contains("<span class=\"muted\">vs</span>"),
        "A (n) vs B (m)"
    );
    assert!(html.contains(&format!("<td class=\"r\">{first_kills}</td>")));
    // Entity filters take a name (autocomplete puts its id in) as well as an id.
    for (field, kind) in [
        ("region_id", "region"),
        ("system_id", "system"),
        ("alliance_id", "alliance"),
        ("corporation_id", "corporation"),
        ("character_id", "character"),
    ] {
        assert!(
            html.contains(&format!("name=\"{field}\" data-ac=\"{kind}\"")),
            "{field} autocompletes {kind}"
        );
    }
    let href = html
        .split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("next page link")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let (s, _, page2) = get(&w.url(&href)).await;
    assert_eq!(s, 200);
    let id2 = next["battles"][0]["battle_id"].as_i64().unwrap();
    assert!(
        page2.contains(&format!("/battles/{id2}\"")),
        "page 2 starts at {id2}"
    );
    // A filter the battle service rejects is a notice, not an error page.
    let (s, _, bad) = get(&w.url("/battles?from=yesterday")).await;
    assert_eq!(s, 200);
    assert!(bad.contains("class=\"notice\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_answers_on_real_data() {
    let w = w().await;
    let (_, i) = ids(w).await;
    let stats = json(&w.url("/api/stats")).await;
    assert!(stats["killmails_total"].as_i64().unwrap() > 1000, "{stats}");
    assert!(stats["battles_total"].as_i64().unwrap() > 0, "{stats}");
    let km = json(&w.url(&format!("/api/killmails/{}", i.killmail))).await;
    assert_eq!(km["killmail_id"].as_i64(), Some(i.killmail));
    assert!(km["isk_total"].as_f64().unwrap() > 0.0);
    let recent = json(&w.url("/api/killmails/recent?limit=20")).await;
    let items = recent["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert!(
        items
            .iter()
            .all(|k| k["system_name"].as_str().is_some_and(|s| !s.is_empty()))
    );
    let nullsec = json(&w.url("/api/killmails/recent?security_type=nullsec")).await;
    assert!(
        nullsec["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["security_type"] == "nullsec")
    );
    let rich = json(&w.url("/api/killmails/recent?min_isk=100000000")).await;
    assert!(
        rich["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["isk"].as_f64().unwrap() >= 1e8)
    );
    let list = json(&w.url("/api/battles?sort=kills&limit=1")).await;
    assert_eq!(list["battles"][0]["battle_id"].as_i64(), Some(w.largest));
    let tl = json(&w.url(&format!("/api/battles/{}/timeline", w.largest))).await;
    assert!(!tl["minutes"].as_array().unwrap().is_empty());
    let ships = json(&w.url(&format!("/api/characters/{}/ships", i.character))).await;
    assert!(!ships["ships"].as_array().unwrap().is_empty());
    let ent = json(&w.url(&format!("/api/entities/alliance/{}", i.alliance))).await;
    let st = &ent["stats"];
    assert!(st["battles"].as_u64().unwrap() >= 1);
    assert!(
        st["kills"].as_u64().unwrap() + st["losses"].as_u64().unwrap() > 0,
        "{st}"
    );
    assert!(!st["top_ships"].as_array().unwrap().is_empty());
    let health = json(&w.url("/api/health")).await;
    let state_of = |name: &str| {
        health["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == name)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state_of("battle"), "up");
    assert_eq!(state_of("ingestion"), "up");
    assert_eq!(state_of("search"), "absent");
    // Search is not part of this world: a clear 503.
    for path in ["/api/search?q=jita", "/api/search/autocomplete?q=ji"] {
        let (s, _, body) = get(&w.url(path)).await;
        assert_eq!(s, 503, "{path}");
        assert!(body.contains("search unavailable"), "{body}");
    }
    assert_eq!(get(&w.url("/api/battles/x")).await.0, 400);
    assert_eq!(get(&w.url("/api/battles/1")).await.0, 404);
    assert_eq!(get(&w.url("/api/killmails/1")).await.0, 404);
    assert_eq!(get(&w.url("/api/entities/planet/1")).await.0, 400);
    let (s, ct, _) = get(&w.url("/api/nope")).await;
    assert_eq!((s, ct.starts_with("application/json")), (404, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_page_weighs_under_100_kb_before_images() {
    let w = w().await;
    let css = get(&w.url("/static/app.css")).await.2.len();
    let js = get(&w.url("/static/app.js")).await.2.len();
    for path in [
        "/".to_owned(),
        "/battles".to_owned(),
        format!("/battles/{}", w.largest),
    ] {
        let html = get(&w.url(&path)).await.2.len();
        let total = html + css + js;
        eprintln!("page weight {path}: html {html} + css {css} + js {js} = {total} bytes");
        if path == "/" || path == "/battles" {
            assert!(total <= 100 * 1024, "{path}: {total} bytes");
        }
    }
}

/// A BFF over fake services: a battle service that answers only redirects, nothing else.
async fn fake_bff(with_battle: bool) -> axum::Router {
    fake_bff_with(with_battle, ServiceDirectory::default(), true).await
}

async fn fake_bff_with(
    with_battle: bool,
    services: ServiceDirectory,
    public: bool,
) -> axum::Router {
    if with_battle {
        let battle = axum::Router::new()
            .route(
                "/battles/{id}",
                axum::routing::get(|| async {
                    (
                        StatusCode::PERMANENT_REDIRECT,
                        Json(json!({ "redirect_to": 42 })),
                    )
                }),
            )
            .route(
                "/battles/{id}/timeline",
                axum::routing::get(|| async {
                    (
                        StatusCode::PERMANENT_REDIRECT,
                        Json(json!({ "redirect_to": 42 })),
                    )
                }),
            );
        services.register(ServiceClient::in_process(ServiceName::Battle, battle));
    }
    let dir = bs_testkit::temp_dir();
    let ctx = ServiceContext {
        config: Arc::new({
            let mut c = Config {
                data_dir: dir.path().to_path_buf(),
                ..Config::default()
            };
            c.web.public_pages = public;
            c
        }),
        bus: bs_bus::connect(&bs_bus::BusConfig::embedded(dir.path().join("bus")))
            .await
            .unwrap(),
        cache: Arc::new(bs_cache::MemoryCache::new(100)),
        clock: Arc::new(SystemClock),
        shutdown: CancellationToken::new(),
        offline: true,
        services,
    };
    bs_bff::start(&ctx).await.unwrap().router
}

async fn call(router: &axum::Router, uri: &str) -> (StatusCode, Option<String>, String) {
    use http_body_util::BodyExt;
    let req = axum::http::Request::builder()
        .uri(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(router.clone(), req)
        .await
        .unwrap();
    let status = res.status();
    let loc = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, loc, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_merged_battle_redirects_to_its_survivor() {
    let bff = fake_bff(true).await;
    let (s, loc, _) = call(&bff, "/battles/7").await;
    assert_eq!(
        (s, loc.as_deref()),
        (StatusCode::PERMANENT_REDIRECT, Some("/battles/42"))
    );
    let (s, loc, body) = call(&bff, "/api/battles/7").await;
    assert_eq!(
        (s, loc.as_deref()),
        (StatusCode::PERMANENT_REDIRECT, Some("/api/battles/42"))
    );
    assert!(body.contains("\"redirect_to\":42"));
    let (s, loc, _) = call(&bff, "/api/battles/7/timeline").await;
    assert_eq!(
        (s, loc.as_deref()),
        (
            StatusCode::PERMANENT_REDIRECT,
            Some("/api/battles/42/timeline")
        )
    );
}

#[tokio::test]
async fn pages_degrade_with_a_message_when_services_are_absent() {
    let bff = fake_bff(false).await;
    for path in ["/", "/battles", "/dashboard", "/intel", "/search?q=x"] {
        let (s, _, body) = call(&bff, path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {body}");
        assert!(body.contains("unavailable"), "{path} has no notice");
    }
    let (s, _, body) = call(&bff, "/battles/5").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("battle unavailable"), "{body}");
    let (s, _, body) = call(&bff, "/api/stats").await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["killmails_total"].is_null() && v["battles_total"].is_null());
    assert_eq!(
        v["unavailable"],
        json!(["ingestion", "battle", "enrichment"])
    );
    let (s, _, _) = call(&bff, "/api/battles").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
}

/// A fake authentication service: the session `good` may read battle reports, nothing else.
fn fake_auth() -> ServiceDirectory {
    let auth = axum::Router::new().route(
        "/authorize",
        axum::routing::post(|Json(b): Json<Value>| async move {
            let known = b["session_id"] == "good";
            let allow = known && b["feature"] == "battle-reports";
            Json(json!({
                "allow": allow,
                "reason": if !known { "not_authenticated" } else if allow { "ok" } else { "feature_denied" },
                "account_id": if known { Some("acc-1") } else { None },
                "cache_ttl_seconds": 0,
            }))
        }),
    );
    let services = ServiceDirectory::default();
    services.register(ServiceClient::in_process(ServiceName::Authentication, auth));
    services
}

async fn call_with_cookie(router: &axum::Router, uri: &str, cookie: Option<&str>) -> StatusCode {
    let mut req = axum::http::Request::builder().uri(uri);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let req = req.body(axum::body::Body::empty()).unwrap();
    tower::ServiceExt::oneshot(router.clone(), req)
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn private_installations_ask_the_authentication_service() {
    let bff = fake_bff_with(false, fake_auth(), false).await;
    let cookie = bs_authentication::settings::SESSION_COOKIE;
    let good = format!("{cookie}=good");
    let bad = format!("{cookie}=stolen");
    // Anonymous: log in first (pages 401 with a login link, API 401).
    assert_eq!(
        call_with_cookie(&bff, "/battles", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call_with_cookie(&bff, "/api/battles", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call_with_cookie(&bff, "/battles", Some(&bad)).await,
        StatusCode::UNAUTHORIZED
    );
    // A session with battle-reports reads battles (which degrade: no battle service here)...
    assert_eq!(
        call_with_cookie(&bff, "/battles", Some(&good)).await,
        StatusCode::OK
    );
    assert_eq!(
        call_with_cookie(&bff, "/api/battles", Some(&good)).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // ...but not intel or search.
    assert_eq!(
        call_with_cookie(&bff, "/intel", Some(&good)).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call_with_cookie(&bff, "/api/search?q=x", Some(&good)).await,
        StatusCode::FORBIDDEN
    );
    // The landing page stays public.
    assert_eq!(call_with_cookie(&bff, "/", None).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn battles_show_alliance_names_from_the_battle_service_and_link_their_ids() {
    let w = w().await;
    // The largest fight (Jorund): its main alliances are named by the battle service, which
    // took the names from killmail.enriched.
    let api = json(&w.url("/api/battles?limit=1&sort=kills")).await;
    let b = &api["battles"][0];
    let mut named = Vec::new();
    for side in b["sides"].as_array().unwrap() {
        let (Some(id), Some(name)) = (
            side["alliance_ids"].as_array().unwrap().first(),
            side["alliance_names"].as_array().unwrap().first(),
        ) else {
            continue;
        };
        named.push((id.as_i64().unwrap(), name.as_str().unwrap().to_owned()));
    }
    assert!(
        named.iter().any(|(_, n)| n == "Goonswarm Federation")
            && named.iter().any(|(_, n)| n == "Pandemic Horde"),
        "{named:?}"
    );
    let (_, _, html) = get(&w.url("/battles?limit=1&sort=kills")).await;
    for (id, name) in &named {
        assert!(
            html.contains(&format!("<a href=\"/intel/alliances/{id}\">{name}</a>")),
            "{name} ({id}) is not a named link in the list"
        );
        assert!(!html.contains(&format!("Alliance {id}")));
    }
    let (_, _, report) = get(&w.url(&format!("/battles/{}", w.largest))).await;
    assert!(report.contains("Goonswarm Federation") && report.contains("Pandemic Horde"));
    for (id, _) in &named {
        assert!(!report.contains(&format!("Alliance {id}")));
    }
}
