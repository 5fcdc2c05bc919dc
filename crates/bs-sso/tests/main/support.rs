//! Shared test world: a fake SSO with one registered client and a few characters.

use bs_sso::fake::{FakeClient, FakeSso};
use bs_sso::jwt::ValidatorConfig;
use bs_sso::{JwtValidator, Secret, SsoClient, SsoConfig};
use chrono::{DateTime, TimeZone, Utc};
use url::Url;

pub const CLIENT_ID: &str = "3b1f0c7d2e4a4f6b8c9d0e1f2a3b4c5d";
pub const CLIENT_SECRET: &str = "test-only-secret-1234567890";
pub const ALICE: i64 = 2112625428;
pub const BOB: i64 = 95465499;

/// The fixed instant tokens are minted and validated at.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap()
}

pub struct World {
    pub sso: FakeSso,
    pub config: SsoConfig,
    pub http: reqwest::Client,
}

impl World {
    pub async fn new() -> Self {
        let callback = Url::parse("https://battlescope.test/auth/callback").unwrap();
        let sso = FakeSso::start(FakeClient {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            callback_url: callback.clone(),
        })
        .await
        .unwrap();
        sso.add_character(ALICE, "Alice Alpha").unwrap();
        sso.add_character(BOB, "Bob Bravo").unwrap();
        sso.set_now(Some(t0()));
        let config = SsoConfig {
            base_url: sso.base_url(),
            client_id: CLIENT_ID.into(),
            client_secret: Secret::new(CLIENT_SECRET.into()),
            callback_url: callback,
            scopes: vec!["esi-killmails.read_killmails.v1".into()],
        };
        // The fake's redirects go to the callback host, which does not exist: never follow.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { sso, config, http }
    }

    pub fn client(&self) -> SsoClient {
        SsoClient::new(self.config.clone(), self.http.clone())
    }

    pub fn validator(&self) -> JwtValidator {
        let jwks = self.sso.base_url().join("/oauth/jwks").unwrap();
        JwtValidator::new(ValidatorConfig::new(CLIENT_ID, jwks), self.http.clone())
    }

    /// Follows the authorize URL like a browser would and returns `(code, state)` from
    /// the 302 to the callback.
    pub async fn browser_authorize(&self, url: &Url) -> (String, String) {
        let resp = self.http.get(url.clone()).send().await.unwrap();
        assert_eq!(
            resp.status(),
            302,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        let location = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        assert_eq!(location.path(), "/auth/callback");
        let get = |k: &str| {
            location
                .query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
                .unwrap()
        };
        (get("code"), get("state"))
    }
}
