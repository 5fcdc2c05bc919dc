//! Login, characters, navigation and 403 pages against the real authentication service and
//! the local fake EVE SSO, in the all-in-one shape: the BFF router merged with the
//! user-facing part of the authentication router at the root, the whole authentication API
//! under `/services/authentication` and in the service directory, ingestion and battle
//! in-process. `web.public_pages` is off here, so visitors see only the login.
//!
//! The world is built once per test binary on its own runtime thread. Every test uses its
//! own characters; tests that change the (global) gating rules hold [`CONFIG_LOCK`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bs_authentication::{Deps, Settings, SqlAuthStore, StaticAffiliations};
use bs_bus::BusConfig;
use bs_config::{Config, ServiceName};
use bs_runtime::{ServiceClient, ServiceContext, ServiceDirectory, SystemClock};
use bs_sso::fake::{FakeClient, FakeSso};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const CLIENT_ID: &str = "bff-test-client";
pub const CLIENT_SECRET: &str = "bff-test-secret-not-real";
pub const SUPERADMIN: i64 = 95_000_001;
/// The alliance of the role test users (never gated by any test).
pub const HOME_ALLIANCE: i64 = 99_000_001;
pub const HOME_CORP: i64 = 98_000_001;

/// Tests that rewrite the gating rules take turns (read-modify-write of one document).
pub static CONFIG_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct AuthWorld {
    pub base: String,
    pub sso: FakeSso,
    pub affiliations: Arc<StaticAffiliations>,
    _dir: tempfile::TempDir,
}

impl AuthWorld {
    /// Registers a character at the fake SSO with its corporation and alliance.
    /// Registering again keeps the owner hash (a new one would read as a sold character).
    pub fn character(&self, id: i64, name: &str, corp: i64, alliance: Option<i64>) {
        self.affiliations.set(id, corp, alliance);
        if self.sso.owner_of(id).is_none() {
            self.sso.add_character(id, name).unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

static WORLD: OnceLock<AuthWorld> = OnceLock::new();

pub async fn aw() -> &'static AuthWorld {
    tokio::task::spawn_blocking(|| WORLD.get_or_init(build))
        .await
        .unwrap()
}

fn build() -> AuthWorld {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let dir = bs_testkit::temp_dir();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let sso = FakeSso::start(FakeClient {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                callback_url: reqwest::Url::parse(&format!("{base}/auth/callback")).unwrap(),
            })
            .await
            .unwrap();
            let data = dir.path().join("data");
            let mut config = Config {
                data_dir: data.clone(),
                public_url: base.clone(),
                ..Config::default()
            };
            config.sso.url = sso.base_url().to_string().trim_end_matches('/').to_owned();
            config.sso.client_id = CLIENT_ID.into();
            config.sso.client_secret = bs_config::Secret::new(CLIENT_SECRET);
            let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
            config.auth.token_keys = bs_config::Secret::new(format!("k1:{key}"));
            config.auth.superadmin_character_id = SUPERADMIN;
            config.web.public_pages = false;
            config.ingestion.live = false;
            let bus = bs_bus::connect(&BusConfig::embedded(data.join("bus")))
                .await
                .unwrap();
            bus.ensure_topics(bs_events::topics::ALL).await.unwrap();
            let ctx = ServiceContext {
                config: Arc::new(config.clone()),
                bus,
                cache: Arc::new(bs_cache::MemoryCache::new(10_000)),
                clock: Arc::new(SystemClock),
                shutdown: CancellationToken::new(),
                offline: true,
                services: ServiceDirectory::default(),
            };
            let mut handles = Vec::new();
            let mut battle_api = None;
            for name in [ServiceName::Ingestion, ServiceName::Battle] {
                let h = match name {
                    ServiceName::Ingestion => bs_ingestion::start(&ctx).await,
                    _ => bs_battle::start(&ctx).await,
                }
                .unwrap();
                ctx.services
                    .register(ServiceClient::in_process(name, h.router.clone()));
                if name == ServiceName::Battle {
                    battle_api = Some(h.router.clone());
                }
                handles.push(h);
            }
            // The authentication service with affiliations the tests set.
            let db = ctx
                .open_database(
                    ServiceName::Authentication,
                    &[bs_authentication::MIGRATIONS],
                )
                .await
                .unwrap();
            let mut settings = Settings::from_config(&config).unwrap();
            settings.rate_limits.login = 1_000_000;
            settings.rate_limits.callback = 1_000_000;
            let affiliations = Arc::new(StaticAffiliations::new());
            let service = bs_authentication::build(Deps {
                store: Arc::new(SqlAuthStore::new(db)),
                sso: bs_authentication::service::sso_from_config(&config, reqwest::Client::new())
                    .unwrap(),
                settings,
                clock: Arc::new(SystemClock),
                cache: ctx.cache.clone(),
                affiliations: affiliations.clone(),
            })
            .await
            .unwrap();
            let auth = bs_authentication::api::router(service);
            ctx.services.register(ServiceClient::in_process(
                ServiceName::Authentication,
                auth.clone(),
            ));
            let bff = bs_bff::start(&ctx).await.unwrap();
            // As apps/battlescope's topology mounts them in one process.
            let app = bff
                .router
                .clone()
                .merge(bs_authentication::api::user_facing(auth.clone()))
                .nest("/services/authentication", auth)
                .nest("/services/battle", battle_api.unwrap());
            tokio::spawn(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .await
                .unwrap();
            });
            tx.send((base, sso, affiliations, dir)).unwrap();
            std::future::pending::<()>().await;
            drop(handles);
        });
    });
    let (base, sso, affiliations, dir) = rx
        .recv_timeout(Duration::from_secs(300))
        .expect("auth world did not come up");
    AuthWorld {
        base,
        sso,
        affiliations,
        _dir: dir,
    }
}

// ------------------------------------------------------------------ an HTTP user agent

/// A response with its body read.
pub struct Page {
    pub status: u16,
    pub location: String,
    pub body: String,
}

impl Page {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A cookie-keeping client that never follows redirects (tests look at each hop).
pub struct Agent {
    pub base: String,
    http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

impl Agent {
    pub fn new(w: &AuthWorld) -> Self {
        Self {
            base: w.base.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn absolute(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = if self.cookies.is_empty() {
            req
        } else {
            let c = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req.header("cookie", c)
        };
        let r = req.send().await.unwrap();
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") || val.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        Page {
            status,
            location,
            body: r.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(self.absolute(path));
        self.send(req).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.http.post(self.absolute(path)).form(form);
        self.send(req).await
    }

    /// The CSRF token the service set at login (the same kind the pages embed).
    pub fn csrf(&self) -> String {
        self.cookies
            .get(bs_authentication::settings::CSRF_COOKIE)
            .cloned()
            .unwrap_or_default()
    }

    /// Completes an EVE SSO round trip started by the previous answer (a 303 to the SSO) as
    /// `character_id`; answers the callback's redirect.
    pub async fn through_sso(&mut self, start: &Page, character_id: i64) -> Page {
        assert_eq!(start.status, 303, "{}", start.body);
        let authorize = format!("{}&fake_character_id={character_id}", start.location);
        let at_sso = self.get(&authorize).await;
        assert!(
            (300..400).contains(&at_sso.status),
            "sso answered {}: {}",
            at_sso.status,
            at_sso.body
        );
        self.get(&at_sso.location).await
    }

    /// Logs in through `/auth/login` and the fake SSO.
    pub async fn login(w: &AuthWorld, character_id: i64) -> Self {
        let mut a = Self::new(w);
        let mut start = a.get("/auth/login").await;
        let mut done = a.through_sso(&start, character_id).await;
        // The SSO-outage test makes one token request fail; it may be ours: once more.
        if done.location.contains("sso_unavailable") {
            start = a.get("/auth/login").await;
            done = a.through_sso(&start, character_id).await;
        }
        assert_eq!(done.status, 303, "{}", done.body);
        assert!(
            !done.location.contains("auth_error"),
            "login of {character_id} failed: {}",
            done.location
        );
        a
    }

    /// The account id (from the service's `/me`, served at the root).
    pub async fn account_id(&mut self) -> String {
        let me = self.get("/me").await;
        assert_eq!(me.status, 200, "{}", me.body);
        me.json()["account_id"].as_str().unwrap().to_owned()
    }
}

/// The six kinds of visitor, logged in (or not) with fresh characters numbered from `base`.
pub struct Cast {
    pub anonymous: Agent,
    pub user: Agent,
    pub fc: Agent,
    pub director: Agent,
    pub admin: Agent,
    pub superadmin: Agent,
}

impl Cast {
    pub async fn new(w: &AuthWorld, base: i64) -> Self {
        w.character(SUPERADMIN, "Ada Super", HOME_CORP, Some(HOME_ALLIANCE));
        for (i, name) in ["User", "Fc", "Director", "Admin"].iter().enumerate() {
            w.character(
                base + i as i64,
                &format!("{name} {base}"),
                HOME_CORP,
                Some(HOME_ALLIANCE),
            );
        }
        let mut superadmin = Agent::login(w, SUPERADMIN).await;
        let user = Agent::login(w, base).await;
        let mut fc = Agent::login(w, base + 1).await;
        let mut director = Agent::login(w, base + 2).await;
        let mut admin = Agent::login(w, base + 3).await;
        for (agent, grants) in [
            (
                &mut fc,
                &[("battle-reports", "fc"), ("battle-intel", "fc")][..],
            ),
            (
                &mut director,
                &[("battle-reports", "director"), ("admin", "director")][..],
            ),
            (&mut admin, &[("admin", "admin")][..]),
        ] {
            let id = agent.account_id().await;
            for (feature, role) in grants {
                let token = superadmin.csrf();
                let r = superadmin
                    .post(
                        &format!("/admin/accounts/{id}/roles"),
                        &[("csrf_token", &token), ("feature", feature), ("role", role)],
                    )
                    .await;
                assert_eq!(r.status, 303, "{}", r.body);
                assert!(r.location.contains("ok=role_saved"), "{}", r.location);
            }
        }
        Self {
            anonymous: Agent::new(w),
            user,
            fc,
            director,
            admin,
            superadmin,
        }
    }
}

fn nav_of(body: &str) -> String {
    let start = body.find("<nav>").unwrap_or(0);
    let end = body[start..]
        .find("</nav>")
        .map_or(body.len(), |e| start + e);
    body[start..end].to_owned()
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_answers_each_role_with_its_page_or_a_clear_refusal() {
    let w = aw().await;
    let mut cast = Cast::new(w, 95_100_000).await;
    let target = cast.user.account_id().await;
    let admin_pages = [
        "/admin".to_owned(),
        "/admin/accounts".to_owned(),
        "/admin/accounts?q=User".to_owned(),
        format!("/admin/accounts/{target}"),
        "/admin/gating".to_owned(),
        "/admin/ingestion".to_owned(),
        "/admin/clusterer".to_owned(),
        "/admin/audit".to_owned(),
        "/admin/audit?action=role.granted".to_owned(),
    ];
    let markers = [
        "<h1>Admin</h1>",
        "<h1>Accounts</h1>",
        "User 95100000",
        "<h2>Roles</h2>",
        "Denied alliances",
        "Backfill jobs",
        "battle.min_kills",
        "<h1>Audit log</h1>",
        "role.granted",
    ];
    let roles: [(&str, &mut Agent, bool, bool); 6] = [
        ("anonymous", &mut cast.anonymous, false, false),
        ("user", &mut cast.user, true, false),
        ("fc", &mut cast.fc, true, false),
        ("director", &mut cast.director, true, false),
        ("admin", &mut cast.admin, true, true),
        ("superadmin", &mut cast.superadmin, true, true),
    ];
    for (role, agent, logged_in, admin) in roles {
        // The landing: the EVE SSO button for visitors, the usual page otherwise.
        let home = agent.get("/").await;
        assert_eq!(home.status, 200, "{role} /: {}", home.body);
        assert_eq!(
            home.body.contains("class=\"eve-sso\""),
            !logged_in,
            "{role}"
        );
        let nav = nav_of(&home.body);
        // Nothing is public here: visitors get no battle links at all.
        assert_eq!(
            nav.contains("href=\"/battles\""),
            logged_in,
            "{role}: {nav}"
        );
        assert_eq!(
            nav.contains("href=\"/characters\""),
            logged_in,
            "{role}: {nav}"
        );
        assert_eq!(nav.contains("href=\"/admin\""), admin, "{role}: {nav}");
        let battles = agent.get("/battles").await;
        assert_eq!(
            battles.status,
            if logged_in { 200 } else { 401 },
            "{role} /battles"
        );
        let chars = agent.get("/characters").await;
        if logged_in {
            assert_eq!(chars.status, 200, "{role}: {}", chars.body);
            assert!(chars.body.contains("Active sessions"), "{role}");
        } else {
            assert_eq!(chars.status, 401);
            assert!(chars.body.contains("Log in to see this page"));
        }
        for (path, marker) in admin_pages.iter().zip(markers) {
            let p = agent.get(path).await;
            match (logged_in, admin) {
                (false, _) => {
                    assert_eq!(p.status, 401, "{role} {path}");
                    assert!(p.body.contains("Log in with EVE Online"), "{role} {path}");
                }
                (true, false) => {
                    assert_eq!(p.status, 403, "{role} {path}: {}", p.body);
                    assert!(p.body.contains("Administrators only"), "{role} {path}");
                }
                (true, true) => {
                    assert_eq!(p.status, 200, "{role} {path}: {}", p.body);
                    assert!(p.body.contains(marker), "{role} {path} lacks {marker}");
                    assert!(p.body.contains("name=\"csrf_token\""), "{role} {path}");
                }
            }
        }
    }
    // One listener, no clash: `/admin/*` is the UI's, the JSON admin API sits under
    // `/services/authentication`, login and `/me` at the root.
    let api = cast
        .superadmin
        .get("/services/authentication/admin/accounts?limit=5")
        .await;
    assert_eq!(api.status, 200, "{}", api.body);
    assert!(api.json()["total"].as_i64().unwrap() >= 5);
    assert!(cast.superadmin.get("/me").await.json()["super_admin"] == true);
    let html = cast.superadmin.get("/admin/accounts").await;
    assert!(html.body.starts_with("<!doctype html>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_failure_ends_on_a_clear_page() {
    let w = aw().await;
    for (code, status, text) in [
        (
            "org_not_allowed",
            403,
            "corporation or alliance is not allowed",
        ),
        ("invalid_state", 400, "no longer valid"),
        ("sso_unavailable", 503, "EVE Online login is unavailable"),
        ("auth_failed", 401, "not completed"),
        ("character_exists", 409, "belongs to another account"),
        ("account_blocked", 403, "blocked"),
        ("something_else", 400, "The login failed"),
    ] {
        let p = Agent::new(w).get(&format!("/?auth_error={code}")).await;
        assert_eq!(p.status, status, "{code}");
        assert!(p.body.contains(text), "{code}: {}", p.body);
        assert!(
            p.body.contains("class=\"eve-sso\""),
            "{code}: a way to try again"
        );
    }
    // A real callback with a forged state.
    let mut a = Agent::new(w);
    let p = a.get("/auth/callback?code=abc&state=forged").await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location, "/?auth_error=invalid_state");
    assert_eq!(a.get(&p.location).await.status, 400);
    // EVE SSO down during the code exchange.
    w.character(95_200_001, "Down Pilot", HOME_CORP, Some(HOME_ALLIANCE));
    let mut a = Agent::new(w);
    // One failing token request; another test's login may take it, so try a few times.
    let mut done = None;
    for _ in 0..5 {
        let start = a.get("/auth/login").await;
        w.sso.fail_next_token_requests(1);
        let d = a.through_sso(&start, 95_200_001).await;
        if d.location.contains("sso_unavailable") {
            done = Some(d);
            break;
        }
    }
    w.sso.fail_next_token_requests(0);
    let done = done.expect("the login never met the SSO outage");
    assert_eq!(
        done.location, "/?auth_error=sso_unavailable",
        "{}",
        done.body
    );
    let page = a.get(&done.location).await;
    assert_eq!(page.status, 503);
    assert!(page.body.contains("try again in a few minutes"));
    // A denied alliance at login.
    let _lock = CONFIG_LOCK.lock().await;
    w.character(SUPERADMIN, "Ada Super", HOME_CORP, Some(HOME_ALLIANCE));
    w.character(95_200_002, "Denied Pilot", 98_200_002, Some(99_200_002));
    let mut sa = Agent::login(w, SUPERADMIN).await;
    let t = sa.csrf();
    let r = sa
        .post(
            "/admin/gating/entries",
            &[
                ("csrf_token", &t),
                ("list", "denied_alliances"),
                ("entity", "99200002"),
                ("op", "add"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let mut a = Agent::new(w);
    let start = a.get("/auth/login").await;
    let done = a.through_sso(&start, 95_200_002).await;
    assert_eq!(done.location, "/?auth_error=org_not_allowed");
    let page = a.get(&done.location).await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("not allowed here"));
    let t = sa.csrf();
    let r = sa
        .post(
            "/admin/gating/entries",
            &[
                ("csrf_token", &t),
                ("list", "denied_alliances"),
                ("entity", "99200002"),
                ("op", "remove"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn characters_link_set_primary_unlink_and_end_sessions_over_http() {
    let w = aw().await;
    let (main, alt) = (95_300_001, 95_300_002);
    w.character(main, "Main Pilot", HOME_CORP, Some(HOME_ALLIANCE));
    w.character(alt, "Alt Pilot", 98_300_002, None);
    let mut a = Agent::login(w, main).await;
    let page = a.get("/characters").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Main Pilot") && page.body.contains("primary"));
    assert!(
        page.body
            .contains(&format!("/characters/{main}/portrait?size=64"))
    );
    assert!(
        page.body
            .contains(&format!("/intel/alliances/{HOME_ALLIANCE}"))
    );
    assert!(page.body.contains(">valid<"), "token status shown");
    // Link another character: the form starts EVE SSO and comes back here.
    let t = a.csrf();
    let start = a.post("/characters/link", &[("csrf_token", &t)]).await;
    assert!(
        start.location.contains("/v2/oauth/authorize"),
        "{}",
        start.location
    );
    let back = a.through_sso(&start, alt).await;
    assert_eq!(back.location, "/characters?ok=linked");
    let page = a.get(&back.location).await;
    assert!(page.body.contains("Character linked."));
    assert!(page.body.contains("Alt Pilot"));
    assert!(page.body.contains(&format!("data-character=\"{alt}\"")));
    // Set it primary.
    let t = a.csrf();
    let r = a
        .post(
            "/characters/primary",
            &[("csrf_token", &t), ("character_id", &alt.to_string())],
        )
        .await;
    assert_eq!(r.location, "/characters?ok=primary_set");
    let page = a.get("/characters").await;
    assert!(
        page.body
            .contains(&format!("<tr data-character=\"{alt}\" class=\"primary\">"))
    );
    // Unlink the old main, through its confirmation step.
    let confirm = a.get(&format!("/characters/{main}/unlink")).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Unlink Main Pilot?"));
    let t = a.csrf();
    let r = a
        .post(&format!("/characters/{main}/unlink"), &[("csrf_token", &t)])
        .await;
    assert_eq!(r.location, "/characters?ok=unlinked", "{}", r.body);
    // This browser's session came through the unlinked character, so it ended with it.
    let page = a.get("/characters").await;
    assert_eq!(page.status, 401);
    assert!(page.body.contains("You have been logged out"));
    let mut a = Agent::login(w, alt).await;
    let page = a.get("/characters").await;
    assert!(!page.body.contains(&format!("data-character=\"{main}\"")));
    // The last character cannot be unlinked: a clear message.
    let t = a.csrf();
    let r = a
        .post(&format!("/characters/{alt}/unlink"), &[("csrf_token", &t)])
        .await;
    let page = a.get(&r.location).await;
    assert!(page.body.contains("class=\"flash err\""), "{}", r.location);
    // Sessions: a second browser appears in the list and can be ended from here.
    let mut other = Agent::login(w, alt).await;
    let page = a.get("/characters").await;
    assert_eq!(
        page.body.matches("End session").count(),
        1,
        "one other session"
    );
    let mine = other.account_id().await;
    assert!(!mine.is_empty());
    let t = a.csrf();
    // End each session that is not ours (the form of the row without "this browser").
    let rows: Vec<&str> = page
        .body
        .split("<tr")
        .filter(|r| r.contains("End session"))
        .collect();
    assert_eq!(rows.len(), 1);
    let sid = rows[0]
        .split("/characters/sessions/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let r = a
        .post(
            &format!("/characters/sessions/{sid}/end"),
            &[("csrf_token", &t)],
        )
        .await;
    assert_eq!(r.location, "/characters?ok=session_ended", "{}", r.body);
    let gone = other.get("/characters").await;
    assert_eq!(gone.status, 401, "the ended session no longer works");
    // Log out with the header's form.
    let t = a.csrf();
    let r = a.post("/logout", &[("csrf_token", &t)]).await;
    assert_eq!(r.location, "/?logged_out=1");
    let home = a.get("/?logged_out=1").await;
    assert!(home.body.contains("You are logged out."));
    assert_eq!(a.get("/characters").await.status, 401);
}

/// Every form of the login, characters and admin pages refuses a missing or wrong token,
/// and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_refuses_a_missing_or_forged_csrf_token() {
    let w = aw().await;
    w.character(SUPERADMIN, "Ada Super", HOME_CORP, Some(HOME_ALLIANCE));
    w.character(95_400_001, "Csrf Pilot", HOME_CORP, Some(HOME_ALLIANCE));
    w.character(95_400_002, "Csrf Alt", HOME_CORP, Some(HOME_ALLIANCE));
    let mut sa = Agent::login(w, SUPERADMIN).await;
    let mut u = Agent::login(w, 95_400_001).await;
    let t = u.csrf();
    let start = u.post("/characters/link", &[("csrf_token", &t)]).await;
    u.through_sso(&start, 95_400_002).await;
    let target = u.account_id().await;
    let sessions = sa
        .get(&format!(
            "/services/authentication/admin/accounts/{target}/sessions"
        ))
        .await;
    let sid = sessions.json()["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user_forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/characters/primary".into(),
            vec![("character_id", "95400002")],
        ),
        ("/characters/link".into(), vec![]),
        ("/characters/95400002/unlink".into(), vec![]),
        (format!("/characters/sessions/{sid}/end"), vec![]),
        ("/logout".into(), vec![]),
    ];
    let admin_forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            format!("/admin/accounts/{target}/block"),
            vec![("blocked", "1"), ("reason", "x")],
        ),
        (
            format!("/admin/accounts/{target}/roles"),
            vec![("feature", "admin"), ("role", "admin")],
        ),
        (format!("/admin/accounts/{target}/sessions/end"), vec![]),
        (
            format!("/admin/sessions/{sid}/end"),
            vec![("account_id", &target)],
        ),
        (
            "/admin/gating/entries".into(),
            vec![
                ("list", "denied_alliances"),
                ("entity", HOME_ALLIANCE_STR),
                ("op", "add"),
            ],
        ),
        (
            "/admin/gating/settings".into(),
            vec![("require_membership", "on")],
        ),
        (
            "/admin/ingestion/ruleset".into(),
            vec![("min_pilots", "77")],
        ),
        (
            "/admin/ingestion/backfill".into(),
            vec![
                ("from", "2024-01-01"),
                ("to", "2024-01-02"),
                ("source", "everef"),
            ],
        ),
        ("/admin/ingestion/backfill/nope/cancel".into(), vec![]),
    ];
    for token in [None, Some("forged.token"), Some("")] {
        for (agent, forms) in [(&mut u, &user_forms), (&mut sa, &admin_forms)] {
            for (path, fields) in forms {
                let mut f: Vec<(&str, &str)> = fields.clone();
                if let Some(t) = token {
                    f.push(("csrf_token", t));
                }
                let r = agent.post(path, &f).await;
                assert_eq!(
                    r.status, 403,
                    "{path} with token {token:?}: {} {}",
                    r.location, r.body
                );
                assert!(r.body.contains("Form refused"), "{path}: {}", r.body);
            }
        }
    }
    // Nothing changed: both still logged in, not blocked, same primary, no role, no rule.
    let me = u.get("/me").await.json();
    assert_eq!(me["characters"].as_array().unwrap().len(), 2);
    assert_eq!(me["primary_character"]["character_id"], 95_400_001);
    assert!(me["roles"]["admin"].is_null());
    let config = sa.get("/services/authentication/admin/config").await.json();
    assert!(
        !config["denied_alliances"]
            .as_array()
            .unwrap()
            .contains(&HOME_ALLIANCE.into())
    );
    assert_eq!(config["require_membership"], false);
    let page = sa.get("/admin/ingestion").await;
    assert!(!page.body.contains("value=\"77\""));
    assert_eq!(sa.get("/characters").await.status, 200);
}

const HOME_ALLIANCE_STR: &str = "99000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_session_is_shown_as_logged_out() {
    let w = aw().await;
    w.character(95_500_001, "Ended Pilot", HOME_CORP, Some(HOME_ALLIANCE));
    let mut a = Agent::login(w, 95_500_001).await;
    // A stale cookie: the service refuses it, the page says so and the browser forgets it.
    a.cookies.insert(
        bs_authentication::settings::SESSION_COOKIE.into(),
        "not-a-session".into(),
    );
    let p = a.get("/").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("You have been logged out"), "{}", p.body);
    assert!(p.body.contains("class=\"eve-sso\""));
    assert!(
        !a.cookies
            .contains_key(bs_authentication::settings::SESSION_COOKIE)
    );
}

/// The browser flow: log in with EVE SSO, link a second character, make it primary;
/// then an admin denies that character's alliance and the user's next page load is logged
/// out, and logging in again ends on the `org_not_allowed` page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_log_in_link_set_primary_then_a_denied_alliance_logs_out() {
    use crate::browser::{Browser, available};
    if !available() {
        return;
    }
    let w = aw().await;
    let (main, alt, alt_alliance) = (95_600_001_i64, 95_600_002_i64, 99_600_900_i64);
    w.character(main, "Browser Main", HOME_CORP, Some(HOME_ALLIANCE));
    w.character(alt, "Browser Alt", 98_600_902, Some(alt_alliance));
    let b = Browser::start().await;
    let t = Duration::from_secs(20);
    b.goto(&w.url("/")).await;
    b.wait_for(
        "return document.querySelector('a.eve-sso') !== null",
        "login button",
        t,
    )
    .await;
    b.screenshot("login").await;
    w.sso.login_as(main);
    b.eval("document.querySelector('a.eve-sso').click(); return true")
        .await;
    b.wait_for(
        "return location.pathname === '/' && document.querySelector('header a.who') !== null",
        "logged in",
        t,
    )
    .await;
    b.goto(&w.url("/characters")).await;
    b.wait_for(
        "return document.querySelector('#link-character') !== null",
        "characters page",
        t,
    )
    .await;
    w.sso.login_as(alt);
    b.eval("document.querySelector('#link-character').click(); return true")
        .await;
    let row = format!("tr[data-character=\"{alt}\"]");
    b.wait_for(
        &format!("return document.querySelector('{row}') !== null"),
        "the linked character",
        t,
    )
    .await;
    b.eval(&format!(
        "document.querySelector('{row} button.make-primary').click(); return true"
    ))
    .await;
    b.wait_for(
        &format!("return document.querySelector('{row}.primary') !== null"),
        "the new primary",
        t,
    )
    .await;
    b.screenshot("characters-linked-primary").await;
    // An admin denies the primary's alliance: the user's sessions end at once.
    let _lock = CONFIG_LOCK.lock().await;
    w.character(SUPERADMIN, "Ada Super", HOME_CORP, Some(HOME_ALLIANCE));
    let mut sa = Agent::login(w, SUPERADMIN).await;
    let token = sa.csrf();
    let deny = alt_alliance.to_string();
    let r = sa
        .post(
            "/admin/gating/entries",
            &[
                ("csrf_token", &token),
                ("list", "denied_alliances"),
                ("entity", &deny),
                ("op", "add"),
            ],
        )
        .await;
    assert!(r.location.contains("locked_out=1"), "{}", r.location);
    b.goto(&w.url("/characters")).await;
    b.wait_for(
        "return document.body.textContent.includes('You have been logged out') && document.querySelector('header a.login[href=\"/auth/login\"]') !== null",
        "the logged-out state",
        t,
    )
    .await;
    b.screenshot("logged-out-after-deny").await;
    // Logging in again is refused with a clear page.
    b.goto(&w.url("/")).await;
    w.sso.login_as(main);
    b.eval("document.querySelector('a.eve-sso').click(); return true")
        .await;
    b.wait_for(
        "return location.search.includes('auth_error=org_not_allowed') && document.body.textContent.includes('not allowed here')",
        "the org_not_allowed page",
        t,
    )
    .await;
    b.screenshot("org-not-allowed").await;
    let token = sa.csrf();
    sa.post(
        "/admin/gating/entries",
        &[
            ("csrf_token", &token),
            ("list", "denied_alliances"),
            ("entity", &deny),
            ("op", "remove"),
        ],
    )
    .await;
}
