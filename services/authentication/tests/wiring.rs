//! The production wiring: `start_with_client` from a `ServiceContext` (configuration
//! names, migrations, jobs that stop on shutdown), and key rotation through
//! `reencrypt_tokens` on the same data directory.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use bs_runtime::ServiceContext;
use bs_sso::TokenCipher;
use bs_sso::fake::{FakeClient, FakeSso};
use tower::ServiceExt as _;

use crate::support::{CLIENT_ID, CLIENT_SECRET, PUBLIC_URL, token_keys};

fn set_cookie_value(resp: &axum::response::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=')?;
            (k == name && !val.is_empty()).then(|| val.to_owned())
        })
}

#[tokio::test]
async fn start_from_configuration_then_rotate_the_token_key() {
    let dir = bs_testkit::temp_dir();
    let sso = FakeSso::start(FakeClient {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        callback_url: url::Url::parse(&format!("{PUBLIC_URL}/auth/callback")).unwrap(),
    })
    .await
    .unwrap();
    sso.add_character(1001, "Alpha").unwrap();
    // Configuration as an operator gives it: the fixed environment names.
    let env = [
        ("BATTLESCOPE_DATA_DIR", dir.path().display().to_string()),
        ("BATTLESCOPE_PUBLIC_URL", PUBLIC_URL.to_owned()),
        ("BATTLESCOPE_SSO_URL", sso.base_url().to_string()),
        ("BATTLESCOPE_SSO_CLIENT_ID", CLIENT_ID.to_owned()),
        ("BATTLESCOPE_SSO_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("BATTLESCOPE_TOKEN_KEYS", token_keys()),
    ];
    let config =
        bs_config::Config::load(None, env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())))
            .unwrap();
    let bus = bs_bus::embedded::EmbeddedBus::open(bs_bus::embedded::EmbeddedConfig::new(
        dir.path().join("bus"),
    ))
    .await
    .unwrap();
    let ctx = ServiceContext {
        config: Arc::new(config.clone()),
        bus: Arc::new(bus),
        cache: Arc::new(bs_cache::MemoryCache::new(1000)),
        clock: Arc::new(bs_runtime::SystemClock),
        shutdown: tokio_util::sync::CancellationToken::new(),
        offline: true,
        services: Default::default(),
    };
    let (handle, client) = bs_authentication::start_with_client(&ctx).await.unwrap();
    assert_eq!(handle.tasks.len(), 2, "refresh and affiliation jobs");
    assert_eq!(handle.readiness.len(), 1);
    assert!(
        dir.path().join("auth.db").exists(),
        "the embedded database is data_dir/auth.db"
    );

    // One login through the router the binary would serve.
    let router = handle.router.clone();
    // Its data-lifecycle document: the audit-log rule, no anchor, no runs yet.
    let lc = router
        .clone()
        .oneshot(Request::get("/lifecycle").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(lc.status(), StatusCode::OK);
    let lc: serde_json::Value = serde_json::from_slice(
        &http_body_util::BodyExt::collect(lc.into_body())
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(lc["rules"]["audit_log_days"], 90, "{lc}");
    assert_eq!(lc["audit_anchor"], serde_json::Value::Null, "{lc}");
    assert_eq!(lc["retention_runs"], serde_json::json!([]), "{lc}");
    let start = router
        .clone()
        .oneshot(Request::get("/auth/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let preauth = set_cookie_value(&start, "battlescope_preauth").unwrap();
    let authorize = start.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(authorize.starts_with(&format!("{}v2/oauth/authorize?", sso.base_url())));
    sso.login_as(1001);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = http.get(&authorize).send().await.unwrap();
    let back = url::Url::parse(back.headers()["location"].to_str().unwrap()).unwrap();
    let callback = Request::get(format!("/auth/callback?{}", back.query().unwrap()))
        .header(header::COOKIE, format!("battlescope_preauth={preauth}"))
        .body(Body::empty())
        .unwrap();
    let done = router.clone().oneshot(callback).await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let session = set_cookie_value(&done, "battlescope_session").unwrap();
    let answer = client
        .authorize(
            bs_authentication::Subject::SessionCookie(&session),
            "battle-reports",
            "view",
        )
        .await
        .unwrap();
    assert!(answer.allow, "{answer:?}");
    // The same question through the runtime's service directory, as the BFF asks it.
    ctx.services
        .register(bs_runtime::client::ServiceClient::in_process(
            bs_config::ServiceName::Authentication,
            handle.router.clone(),
        ));
    let via_directory = bs_authentication::AuthClient::from_services(&ctx.services).unwrap();
    let cookie = format!("battlescope_session={session}");
    let answer = via_directory
        .authorize(
            bs_authentication::Subject::SessionCookie(&cookie),
            "battle-reports",
            "create",
        )
        .await
        .unwrap();
    assert_eq!(
        (answer.allow, answer.reason.as_str()),
        (false, "insufficient_permissions")
    );

    // Shutdown stops the jobs.
    ctx.shutdown.cancel();
    for task in handle.tasks {
        task.await.unwrap();
    }
    drop(router);

    // Rotation: a new key first, the old one kept to decrypt; re-encrypt; then the old
    // key can go.
    let new_key = format!(
        "k2:{}",
        base64::engine::general_purpose::STANDARD.encode([9u8; 32])
    );
    let mut rotated = config.clone();
    rotated.auth.token_keys = bs_config::Secret::new(format!("{new_key},{}", token_keys()));
    assert_eq!(
        bs_authentication::reencrypt_tokens(&rotated).await.unwrap(),
        (1, 0)
    );
    assert_eq!(
        bs_authentication::reencrypt_tokens(&rotated).await.unwrap(),
        (0, 0),
        "nothing left under k1"
    );
    let db = bs_runtime::open_database(
        &rotated,
        bs_config::ServiceName::Authentication,
        &[bs_authentication::MIGRATIONS],
    )
    .await
    .unwrap();
    let store = bs_authentication::SqlAuthStore::new(db);
    use bs_authentication::AuthStore as _;
    let row = store.token(1001).await.unwrap().unwrap();
    assert_eq!(row.key_id, "k2");
    let only_new = TokenCipher::from_spec(&bs_sso::Secret::new(new_key)).unwrap();
    let plain = only_new
        .decrypt(
            &row.refresh_token_enc,
            &bs_sso::token_aad(&row.account_id, 1001),
        )
        .unwrap();
    assert!(
        sso.is_grant_active(plain.expose()),
        "the re-encrypted grant is the live one"
    );
}

#[tokio::test]
async fn esi_affiliations_come_from_the_fake_esi_on_real_data() {
    use bs_authentication::AffiliationSource as _;
    let esi = bs_esi::fake::FakeEsi::start().await.unwrap();
    let mut known: Vec<i64> = esi.data().affiliated_characters().collect();
    known.sort_unstable();
    known.truncate(5);
    assert_eq!(known.len(), 5, "the shared data has affiliated characters");
    let client = bs_esi::EsiClient::new(bs_esi::EsiConfig {
        downtime: None,
        ..bs_esi::EsiConfig::for_url(esi.url())
    })
    .unwrap();
    let source = bs_authentication::EsiAffiliations(client);
    let mut ids = known.clone();
    ids.push(1); // not a character: ESI cannot resolve it, the others still come back
    let found = source.affiliations(&ids).await;
    for id in &known {
        let a = found.get(id).unwrap_or_else(|| panic!("{id} unresolved"));
        assert!(a.corporation_id > 0);
    }
    assert!(!found.contains_key(&1));
}
