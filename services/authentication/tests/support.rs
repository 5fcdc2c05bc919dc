//! Test world: the service on a fresh SQLite file, a fake EVE SSO on loopback, a
//! manual clock shared by both, fixed affiliations, and a cookie-keeping browser that
//! drives the router in-process (`tower::ServiceExt::oneshot`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine as _;
use bs_authentication::service::AuthService;
use bs_authentication::settings::{CSRF_COOKIE, SESSION_COOKIE, Settings};
use bs_authentication::{Deps, SqlAuthStore, StaticAffiliations};
use bs_sso::TokenCipher;
use bs_sso::fake::{FakeClient, FakeSso};
use bs_store::{Database, StoreTarget};
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::BodyExt as _;
use parking_lot::Mutex;
use tower::ServiceExt as _;

pub const PUBLIC_URL: &str = "http://127.0.0.1:3000";
pub const CLIENT_ID: &str = "battlescope-test-client";
pub const CLIENT_SECRET: &str = "test-client-secret-not-real";
pub const SUPERADMIN: i64 = 90_000_001;

/// A clock tests move by hand (no sleeping).
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl bs_runtime::Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock()
    }
}

pub fn token_keys() -> String {
    let k1 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    format!("k1:{k1}")
}

pub struct World {
    pub sso: FakeSso,
    pub service: Arc<AuthService>,
    pub router: Router,
    pub clock: Arc<ManualClock>,
    pub affiliations: Arc<StaticAffiliations>,
    pub cipher: TokenCipher,
    pub dir: tempfile::TempDir,
}

impl World {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(tune: impl FnOnce(&mut Settings)) -> Self {
        let dir = bs_testkit::temp_dir();
        let db = Database::open(&StoreTarget::Sqlite(dir.path().join("auth.db")), 4)
            .await
            .unwrap();
        db.migrate(&[bs_authentication::MIGRATIONS]).await.unwrap();
        let callback = url::Url::parse(&format!("{PUBLIC_URL}/auth/callback")).unwrap();
        let sso = FakeSso::start(FakeClient {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            callback_url: callback,
        })
        .await
        .unwrap();
        let start = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let clock = Arc::new(ManualClock(Mutex::new(start)));
        sso.set_now(Some(start));
        let mut config = bs_config::Config {
            public_url: PUBLIC_URL.into(),
            ..Default::default()
        };
        config.sso.url = sso.base_url().to_string().trim_end_matches('/').to_owned();
        config.sso.client_id = CLIENT_ID.into();
        config.sso.client_secret = bs_config::Secret::new(CLIENT_SECRET);
        config.auth.token_keys = bs_config::Secret::new(token_keys());
        config.auth.superadmin_character_id = SUPERADMIN;
        config.auth.session_idle = "2h".into();
        config.auth.session_absolute = "1d".into();
        let mut settings = Settings::from_config(&config).unwrap();
        tune(&mut settings);
        let sso_parts =
            bs_authentication::service::sso_from_config(&config, reqwest::Client::new()).unwrap();
        let affiliations = Arc::new(StaticAffiliations::new());
        let service = bs_authentication::build(Deps {
            store: Arc::new(SqlAuthStore::new(db.clone())),
            sso: sso_parts,
            settings,
            clock: clock.clone(),
            cache: Arc::new(bs_cache::MemoryCache::new(10_000)),
            affiliations: affiliations.clone(),
        })
        .await
        .unwrap();
        let router = bs_authentication::api::router(service.clone());
        let cipher = TokenCipher::from_spec(&bs_sso::Secret::new(token_keys())).unwrap();
        Self {
            sso,
            service,
            router,
            clock,
            affiliations,
            cipher,
            dir,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.clock.0.lock()
    }

    /// Moves both clocks (ours and the fake SSO's) forward.
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.clock.0.lock();
        *now += by;
        self.sso.set_now(Some(*now));
    }

    /// Registers a character at the fake SSO with an affiliation.
    pub fn character(&self, id: i64, name: &str, corp: i64, alliance: Option<i64>) -> String {
        self.affiliations.set(id, corp, alliance);
        self.sso.add_character(id, name).unwrap()
    }

    /// The plaintext refresh token stored for a character (decrypted like the service does).
    pub async fn stored_refresh_token(&self, character_id: i64) -> Option<String> {
        let t = self.service.store().token(character_id).await.unwrap()?;
        let aad = bs_sso::token_aad(&t.account_id, character_id);
        Some(
            self.cipher
                .decrypt(&t.refresh_token_enc, &aad)
                .unwrap()
                .into_inner(),
        )
    }
}

/// A response with its body read.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn location(&self) -> String {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// A browser: keeps cookies, sends the CSRF header on unsafe requests unless told not to.
pub struct Browser {
    pub cookies: BTreeMap<String, String>,
    pub peer: SocketAddr,
    pub send_csrf: bool,
    pub extra: Vec<(String, String)>,
}

impl Browser {
    pub fn new() -> Self {
        Self::at("127.0.0.1:50000")
    }

    pub fn at(peer: &str) -> Self {
        Self {
            cookies: BTreeMap::new(),
            peer: peer.parse().unwrap(),
            send_csrf: true,
            extra: Vec::new(),
        }
    }

    pub fn session(&self) -> Option<String> {
        self.cookies.get(SESSION_COOKIE).cloned()
    }

    pub fn csrf(&self) -> Option<String> {
        self.cookies.get(CSRF_COOKIE).cloned()
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn send(
        &mut self,
        w: &World,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Resp {
        let mut req = Request::builder().method(method.clone()).uri(path);
        if !self.cookies.is_empty() {
            req = req.header(header::COOKIE, self.cookie_header());
        }
        let unsafe_method = !matches!(method, Method::GET | Method::HEAD);
        if unsafe_method
            && self.send_csrf
            && let Some(t) = self.csrf()
        {
            req = req.header("x-csrf-token", t);
        }
        for (k, v) in &self.extra {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = match body {
            Some((ct, bytes)) => req.header(header::CONTENT_TYPE, ct).body(Body::from(bytes)),
            None => req.body(Body::empty()),
        };
        let mut req = req.unwrap();
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let resp = w.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        for v in headers.get_all(header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, w: &World, path: &str) -> Resp {
        self.send(w, Method::GET, path, None).await
    }

    pub async fn post_json(&mut self, w: &World, path: &str, body: serde_json::Value) -> Resp {
        self.send(
            w,
            Method::POST,
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    pub async fn put_json(&mut self, w: &World, path: &str, body: serde_json::Value) -> Resp {
        self.send(
            w,
            Method::PUT,
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    pub async fn delete(&mut self, w: &World, path: &str) -> Resp {
        self.send(w, Method::DELETE, path, None).await
    }

    /// Follows an SSO authorize URL at the fake (as character `id`) and returns the
    /// callback path+query it redirects to.
    pub async fn at_sso(&self, w: &World, authorize_url: &str, id: i64) -> String {
        w.sso.login_as(id);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = http.get(authorize_url).send().await.unwrap();
        assert_eq!(
            r.status(),
            reqwest::StatusCode::FOUND,
            "fake sso refused the authorize request"
        );
        let loc = r
            .headers()
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let url = url::Url::parse(&loc).unwrap();
        assert_eq!(url.path(), "/auth/callback");
        format!("{}?{}", url.path(), url.query().unwrap_or_default())
    }

    /// `GET /auth/login[?return_to]` → SSO → callback; returns the callback response.
    pub async fn login_with(&mut self, w: &World, id: i64, login_path: &str) -> Resp {
        let start = self.get(w, login_path).await;
        assert_eq!(
            start.status,
            StatusCode::SEE_OTHER,
            "login did not redirect: {:?}",
            start.json()
        );
        let callback = self.at_sso(w, &start.location(), id).await;
        self.get(w, &callback).await
    }

    pub async fn login(&mut self, w: &World, id: i64) -> Resp {
        let r = self.login_with(w, id, "/auth/login").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        r
    }

    /// Logs in and checks it worked; returns the account id.
    pub async fn login_ok(&mut self, w: &World, id: i64) -> String {
        let r = self.login(w, id).await;
        assert_eq!(r.location(), "/", "login failed");
        let me = self.get(w, "/me").await;
        assert_eq!(me.status, StatusCode::OK);
        me.json()["account_id"].as_str().unwrap().to_owned()
    }

    /// Links character `id` to the logged-in account through `POST /me/characters/link`.
    pub async fn link(&mut self, w: &World, id: i64) -> Resp {
        let start = self
            .post_json(w, "/me/characters/link", serde_json::json!({}))
            .await;
        assert_eq!(
            start.status,
            StatusCode::SEE_OTHER,
            "link did not redirect: {:?}",
            start.json()
        );
        let callback = self.at_sso(w, &start.location(), id).await;
        self.get(w, &callback).await
    }
}

/// The audit actions recorded so far, oldest first.
pub async fn audit_actions(w: &World) -> Vec<String> {
    let q = bs_authentication::model::AuditQuery {
        limit: 1000,
        ..Default::default()
    };
    let mut v: Vec<String> = w
        .service
        .store()
        .audit(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    v.reverse();
    v
}
