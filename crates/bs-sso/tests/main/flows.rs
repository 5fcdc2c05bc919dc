//! OAuth flows against the fake SSO: login with state + PKCE, code reuse, refresh with
//! rotation, revoke, owner changes, client authentication and transient failures.

use std::time::Duration;

use bs_sso::client::pkce_challenge;
use bs_sso::{MemoryStateStore, Secret, SsoClient, SsoError, StateError};
use chrono::TimeDelta;
use url::Url;

use crate::support::{ALICE, BOB, CLIENT_ID, World, t0};

/// What the service keeps server-side between redirect and callback.
struct Pending {
    verifier: Secret<String>,
    return_to: String,
}

fn query(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn discovery_reads_endpoints_from_metadata() {
    let w = World::new().await;
    let client = SsoClient::discover(w.config.clone(), w.http.clone())
        .await
        .unwrap();
    let base = w.sso.base_url();
    assert_eq!(client.endpoints().issuer, "login.eveonline.com");
    assert_eq!(
        client.endpoints().token,
        base.join("/v2/oauth/token").unwrap()
    );
    assert_eq!(
        client.endpoints().authorize,
        base.join("/v2/oauth/authorize").unwrap()
    );
    assert_eq!(
        client.endpoints().revoke,
        base.join("/v2/oauth/revoke").unwrap()
    );
    assert_eq!(client.endpoints().jwks, base.join("/oauth/jwks").unwrap());
}

#[tokio::test]
async fn authorize_url_carries_state_and_s256_challenge() {
    let w = World::new().await;
    let req = w.client().authorize_url().unwrap();
    assert_eq!(query(&req.url, "response_type").as_deref(), Some("code"));
    assert_eq!(query(&req.url, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        query(&req.url, "redirect_uri").as_deref(),
        Some("https://battlescope.test/auth/callback")
    );
    assert_eq!(
        query(&req.url, "scope").as_deref(),
        Some("esi-killmails.read_killmails.v1")
    );
    assert_eq!(
        query(&req.url, "state").as_deref(),
        Some(req.state.as_str())
    );
    assert_eq!(
        query(&req.url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query(&req.url, "code_challenge"),
        Some(pkce_challenge(req.pkce_verifier.expose()))
    );
    // 32 random bytes each, base64url: 43 characters, 256 bits.
    assert_eq!(req.state.len(), 43);
    assert_eq!(req.pkce_verifier.expose().len(), 43);
    // The verifier itself never appears in the browser-visible URL.
    assert!(
        !req.url
            .as_str()
            .contains(req.pkce_verifier.expose().as_str())
    );
    let again = w.client().authorize_url().unwrap();
    assert_ne!(again.state, req.state);
    assert_ne!(again.pkce_verifier, req.pkce_verifier);
    // Identity-only login sends no scope parameter at all.
    let bare = w.client().authorize_url_for(&[]).unwrap();
    assert_eq!(query(&bare.url, "scope"), None);
}

#[tokio::test]
async fn pkce_challenge_matches_rfc7636_example() {
    // RFC 7636 appendix B.
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[tokio::test]
async fn login_code_flow_end_to_end() {
    let w = World::new().await;
    let client = SsoClient::discover(w.config.clone(), w.http.clone())
        .await
        .unwrap();
    let validator = w.validator();
    let states = MemoryStateStore::new(Duration::from_secs(600), 1000);
    let cookie = "pre-auth-cookie-value";

    let req = client.authorize_url().unwrap();
    states
        .insert(
            &req.state,
            cookie,
            Pending {
                verifier: req.pkce_verifier,
                return_to: "/battles/42".into(),
            },
            t0(),
        )
        .unwrap();
    w.sso.login_as(ALICE);
    let (code, state) = w.browser_authorize(&req.url).await;
    assert_eq!(state, req.state);

    let pending = states
        .take(&state, cookie, t0() + TimeDelta::seconds(20))
        .unwrap();
    assert_eq!(pending.return_to, "/battles/42");
    let tokens = client
        .exchange_code(&code, &pending.verifier)
        .await
        .unwrap();
    assert_eq!(tokens.expires_in, 1200);
    assert_eq!(tokens.token_type, "Bearer");
    let who = validator
        .validate(tokens.access_token.expose(), t0())
        .await
        .unwrap();
    assert_eq!(who.character_id, ALICE);
    assert_eq!(Some(who.owner_hash), w.sso.owner_of(ALICE));
    assert!(who.scopes.contains("esi-killmails.read_killmails.v1"));
    assert!(w.sso.is_grant_active(tokens.refresh_token.expose()));
    // Debug output of the token response (what ends up in logs) carries no token.
    let debug = format!("{tokens:?}");
    assert!(!debug.contains(tokens.refresh_token.expose().as_str()));
    assert!(!debug.contains(tokens.access_token.expose().as_str()));
    assert!(debug.contains("[REDACTED]"));

    // The same state cannot be used twice.
    assert_eq!(
        states.take(&state, cookie, t0()).err(),
        Some(StateError::Unknown)
    );
}

#[tokio::test]
async fn reused_code_is_invalid_grant_and_kills_its_tokens() {
    let w = World::new().await;
    let client = w.client();
    let req = client.authorize_url().unwrap();
    w.sso.login_as(BOB);
    let (code, _) = w.browser_authorize(&req.url).await;
    let first = client
        .exchange_code(&code, &req.pkce_verifier)
        .await
        .unwrap();
    let again = client.exchange_code(&code, &req.pkce_verifier).await;
    assert!(
        matches!(again, Err(SsoError::InvalidGrant { .. })),
        "{again:?}"
    );
    assert!(!w.sso.is_grant_active(first.refresh_token.expose()));
    let unknown = client
        .exchange_code("never-issued", &req.pkce_verifier)
        .await;
    assert!(matches!(unknown, Err(SsoError::InvalidGrant { .. })));
}

#[tokio::test]
async fn pkce_verifier_mismatch_is_rejected() {
    let w = World::new().await;
    let client = w.client();
    let req = client.authorize_url().unwrap();
    let other = client.authorize_url().unwrap();
    w.sso.login_as(ALICE);
    let (code, _) = w.browser_authorize(&req.url).await;
    let wrong = client.exchange_code(&code, &other.pkce_verifier).await;
    assert!(
        matches!(wrong, Err(SsoError::InvalidGrant { .. })),
        "{wrong:?}"
    );
    // The failed attempt consumed the code: the right verifier is too late now.
    let late = client.exchange_code(&code, &req.pkce_verifier).await;
    assert!(matches!(late, Err(SsoError::InvalidGrant { .. })));
}

#[tokio::test]
async fn state_replay_mismatch_and_expiry_are_refused() {
    let states: MemoryStateStore<u32> = MemoryStateStore::new(Duration::from_secs(300), 2);
    states.insert("s1", "browser-a", 1, t0()).unwrap();
    states.insert("s2", "browser-a", 2, t0()).unwrap();
    assert_eq!(
        states.insert("s3", "browser-a", 3, t0()),
        Err(StateError::Full)
    );
    // Login CSRF: the victim's browser presents the attacker's state. Refused and burned.
    assert_eq!(
        states.take("s1", "browser-b", t0()),
        Err(StateError::Mismatch)
    );
    assert_eq!(
        states.take("s1", "browser-a", t0()),
        Err(StateError::Unknown)
    );
    assert_eq!(
        states.take("s2", "browser-a", t0() + TimeDelta::seconds(301)),
        Err(StateError::Expired)
    );
    assert_eq!(
        states.take("never", "browser-a", t0()),
        Err(StateError::Unknown)
    );
    // Expired entries are purged on insert, so the store does not stay full.
    states.insert("x", "b", 9, t0()).unwrap();
    states.insert("old", "b", 8, t0()).unwrap();
    states
        .insert("new", "b", 7, t0() + TimeDelta::seconds(400))
        .unwrap();
    assert_eq!(states.pending(), 1);
    assert_eq!(
        states.take("new", "b", t0() + TimeDelta::seconds(400)),
        Ok(7)
    );
}

async fn login(w: &World, character: i64) -> bs_sso::TokenResponse {
    let client = w.client();
    let req = client.authorize_url().unwrap();
    w.sso.login_as(character);
    let (code, _) = w.browser_authorize(&req.url).await;
    client
        .exchange_code(&code, &req.pkce_verifier)
        .await
        .unwrap()
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token() {
    let w = World::new().await;
    let client = w.client();
    let validator = w.validator();
    let first = login(&w, ALICE).await;
    let second = client.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(
        validator
            .validate(second.access_token.expose(), t0())
            .await
            .unwrap()
            .character_id,
        ALICE
    );
    // The old refresh token died with the rotation.
    let stale = client.refresh(&first.refresh_token).await;
    assert!(
        matches!(stale, Err(SsoError::InvalidGrant { .. })),
        "{stale:?}"
    );
    let third = client.refresh(&second.refresh_token).await.unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
    assert_eq!(w.sso.active_grants(ALICE), 1);
}

#[tokio::test]
async fn revoke_then_refresh_is_invalid_grant() {
    let w = World::new().await;
    let client = w.client();
    let tokens = login(&w, BOB).await;
    client.revoke(&tokens.refresh_token).await.unwrap();
    let after = client.refresh(&tokens.refresh_token).await;
    match after {
        Err(SsoError::InvalidGrant { description }) => {
            assert!(description.contains("expired"), "{description}")
        }
        other => panic!("expected invalid_grant, got {other:?}"),
    }
    assert!(!after_is_transient(&client, &tokens.refresh_token).await);
    // Revoking an unknown or already-revoked token is still a success (as on EVE).
    client.revoke(&tokens.refresh_token).await.unwrap();
    client
        .revoke(&Secret::new("no-such-token".into()))
        .await
        .unwrap();
}

async fn after_is_transient(client: &SsoClient, rt: &Secret<String>) -> bool {
    client
        .refresh(rt)
        .await
        .err()
        .is_some_and(|e| e.is_transient())
}

#[tokio::test]
async fn owner_change_shows_in_the_next_refreshed_token() {
    let w = World::new().await;
    let client = w.client();
    let validator = w.validator();
    let tokens = login(&w, ALICE).await;
    let before = validator
        .validate(tokens.access_token.expose(), t0())
        .await
        .unwrap();
    w.sso.set_owner(ALICE, "new-owner-hash").unwrap();
    let refreshed = client.refresh(&tokens.refresh_token).await.unwrap();
    let after = validator
        .validate(refreshed.access_token.expose(), t0())
        .await
        .unwrap();
    assert_eq!(after.character_id, before.character_id);
    assert_eq!(after.owner_hash, "new-owner-hash");
    use bs_sso::{IdentityCheck, check_identity};
    assert_eq!(
        check_identity(ALICE, &before.owner_hash, &before),
        IdentityCheck::Same
    );
    assert_eq!(
        check_identity(ALICE, &before.owner_hash, &after),
        IdentityCheck::OwnerChanged
    );
    assert_eq!(
        check_identity(BOB, &before.owner_hash, &after),
        IdentityCheck::OtherCharacter
    );
}

#[tokio::test]
async fn character_sale_kills_grants_and_changes_owner() {
    let w = World::new().await;
    let client = w.client();
    let validator = w.validator();
    let tokens = login(&w, BOB).await;
    let old_owner = w.sso.owner_of(BOB).unwrap();
    let new_owner = w.sso.sell_character(BOB).unwrap();
    assert_ne!(old_owner, new_owner);
    assert!(matches!(
        client.refresh(&tokens.refresh_token).await,
        Err(SsoError::InvalidGrant { .. })
    ));
    let relogin = login(&w, BOB).await;
    let who = validator
        .validate(relogin.access_token.expose(), t0())
        .await
        .unwrap();
    assert_eq!(who.owner_hash, new_owner);
}

#[tokio::test]
async fn wrong_client_secret_is_rejected_not_invalid_grant() {
    let w = World::new().await;
    let tokens = login(&w, ALICE).await;
    let mut config = w.config.clone();
    config.client_secret = Secret::new("wrong".into());
    let bad = SsoClient::new(config, w.http.clone());
    match bad.refresh(&tokens.refresh_token).await {
        Err(SsoError::Rejected { status, error }) => {
            assert_eq!(status, 401);
            assert_eq!(error, "invalid_client");
        }
        other => panic!("expected invalid_client, got {other:?}"),
    }
    // The grant is untouched by the failed attempt.
    assert!(w.sso.is_grant_active(tokens.refresh_token.expose()));
}

#[tokio::test]
async fn token_endpoint_refuses_json_bodies_like_eve() {
    let w = World::new().await;
    let resp = w
        .http
        .post(w.sso.base_url().join("/v2/oauth/token").unwrap())
        .basic_auth(CLIENT_ID, Some(crate::support::CLIENT_SECRET))
        .json(&serde_json::json!({"grant_type": "refresh_token", "refresh_token": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn sso_down_is_transient_never_invalid_grant() {
    let w = World::new().await;
    let tokens = login(&w, ALICE).await;
    let World { sso, config, .. } = w;
    drop(sso);
    // Let the aborted server task release its listener.
    tokio::task::yield_now().await;
    // A fresh HTTP client: the old one may hold a pooled connection to a still-running
    // per-connection task.
    let client = SsoClient::new(config, reqwest::Client::new());
    let err = client.refresh(&tokens.refresh_token).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    // The message carries neither the refresh token nor the client secret.
    let text = format!("{err} {err:?}");
    assert!(!text.contains(tokens.refresh_token.expose().as_str()));
    assert!(!text.contains(crate::support::CLIENT_SECRET));
}

#[tokio::test]
async fn fake_authorize_checks_the_request_like_eve() {
    let w = World::new().await;
    let client = w.client();
    // The character can also be picked with a query parameter (for browser-driven tests).
    let req = client.authorize_url().unwrap();
    let mut url = req.url.clone();
    url.query_pairs_mut()
        .append_pair("fake_character_id", &BOB.to_string());
    let (code, _) = w.browser_authorize(&url).await;
    let tokens = client
        .exchange_code(&code, &req.pkce_verifier)
        .await
        .unwrap();
    let who = w
        .validator()
        .validate(tokens.access_token.expose(), t0())
        .await
        .unwrap();
    assert_eq!(who.character_id, BOB);

    let tweak = |key: &str, value: &str| {
        let mut u = req.url.clone();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == key {
                    value.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("fake_character_id", &BOB.to_string());
        u
    };
    // Control: the same request with a harmless change goes through.
    let control = w
        .http
        .get(tweak("scope", "publicData"))
        .send()
        .await
        .unwrap();
    assert_eq!(control.status(), 302);
    for bad in [
        tweak("redirect_uri", "https://evil.test/auth/callback"),
        tweak("client_id", "someone-else"),
        tweak("response_type", "token"),
        tweak("code_challenge_method", "plain"),
        tweak("state", ""),
    ] {
        let resp = w.http.get(bad.clone()).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn expired_code_is_invalid_grant() {
    let w = World::new().await;
    let client = w.client();
    let req = client.authorize_url().unwrap();
    w.sso.login_as(ALICE);
    let (code, _) = w.browser_authorize(&req.url).await;
    w.sso.set_now(Some(t0() + TimeDelta::minutes(10)));
    let late = client.exchange_code(&code, &req.pkce_verifier).await;
    assert!(
        matches!(late, Err(SsoError::InvalidGrant { .. })),
        "{late:?}"
    );
}

#[tokio::test]
async fn sso_outage_is_transient_and_the_grant_survives() {
    let w = World::new().await;
    let client = w.client();
    let tokens = login(&w, ALICE).await;
    w.sso.fail_next_token_requests(2);
    for _ in 0..2 {
        let err = client.refresh(&tokens.refresh_token).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
    }
    // After the outage the same refresh token still works.
    let next = client.refresh(&tokens.refresh_token).await.unwrap();
    assert_ne!(next.refresh_token, tokens.refresh_token);
}

#[tokio::test]
async fn grants_revoked_at_eve_are_invalid_grant() {
    let w = World::new().await;
    let client = w.client();
    let tokens = login(&w, BOB).await;
    let owner = w.sso.owner_of(BOB);
    w.sso.revoke_character_grants(BOB);
    assert!(matches!(
        client.refresh(&tokens.refresh_token).await,
        Err(SsoError::InvalidGrant { .. })
    ));
    assert_eq!(w.sso.owner_of(BOB), owner);
}
