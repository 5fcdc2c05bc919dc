//! The attack table at the HTTP level: each case must be refused.

use axum::http::{Method, StatusCode};
use chrono::TimeDelta;
use serde_json::json;

use crate::support::{Browser, World};

#[tokio::test]
async fn replayed_state_is_refused() {
    let w = World::new().await;
    w.character(1001, "Alpha", 10, None);
    let mut b = Browser::new();
    let start = b.get(&w, "/auth/login").await;
    let callback = b.at_sso(&w, &start.location(), 1001).await;
    let preauth = b.cookies.get("battlescope_preauth").cloned().unwrap();
    assert_eq!(b.get(&w, &callback).await.location(), "/");
    // The same callback again (same code, same state, same browser binding).
    let mut again = Browser::new();
    again.cookies.insert("battlescope_preauth".into(), preauth);
    assert_eq!(
        again.get(&w, &callback).await.location(),
        "/?auth_error=invalid_state"
    );
}

#[tokio::test]
async fn mismatched_state_is_refused_and_burned() {
    let w = World::new().await;
    w.character(1001, "Victim", 10, None);
    let mut victim = Browser::new();
    let mut attacker = Browser::at("127.0.0.66:1");
    // The attacker starts a login and lures the victim to the callback (login CSRF):
    // the victim's browser lacks the attacker's pre-auth cookie.
    let start = attacker.get(&w, "/auth/login").await;
    let callback = attacker.at_sso(&w, &start.location(), 1001).await;
    assert_eq!(
        victim.get(&w, &callback).await.location(),
        "/?auth_error=invalid_state"
    );
    assert!(victim.session().is_none());
    // The state was single use: the attacker cannot finish it either.
    assert_eq!(
        attacker.get(&w, &callback).await.location(),
        "/?auth_error=invalid_state"
    );
    // A state that was never issued.
    let forged = Browser::new()
        .get(&w, "/auth/callback?code=abc&state=forged-state")
        .await;
    assert_eq!(forged.location(), "/?auth_error=invalid_state");
    // No code or state at all.
    assert_eq!(
        Browser::new().get(&w, "/auth/callback").await.location(),
        "/?auth_error=invalid_state"
    );
}

#[tokio::test]
async fn an_expired_state_is_refused() {
    let w = World::new().await;
    w.character(1001, "Alpha", 10, None);
    let mut b = Browser::new();
    let start = b.get(&w, "/auth/login").await;
    let callback = b.at_sso(&w, &start.location(), 1001).await;
    w.advance(TimeDelta::minutes(11));
    assert_eq!(
        b.get(&w, &callback).await.location(),
        "/?auth_error=invalid_state"
    );
}

#[tokio::test]
async fn a_reused_code_is_refused_and_kills_its_grant() {
    let w = World::new().await;
    w.character(1001, "Alpha", 10, None);
    let mut b = Browser::new();
    let start = b.get(&w, "/auth/login").await;
    let callback = b.at_sso(&w, &start.location(), 1001).await;
    assert_eq!(b.get(&w, &callback).await.location(), "/");
    let first_grant = w.stored_refresh_token(1001).await.unwrap();
    let code = url::Url::parse(&format!("http://x{callback}"))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    // A fresh, valid state with the old code.
    let mut thief = Browser::at("127.0.0.7:1");
    let start = thief.get(&w, "/auth/login").await;
    let state = url::Url::parse(&start.location())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let r = thief
        .get(&w, &format!("/auth/callback?code={code}&state={state}"))
        .await;
    assert_eq!(r.location(), "/?auth_error=auth_failed");
    assert!(thief.session().is_none());
    // RFC 6749 §4.1.2: the replay revoked the grant the code had issued.
    assert!(!w.sso.is_grant_active(&first_grant));
}

#[tokio::test]
async fn open_redirect_return_to_lands_on_root() {
    let w = World::new().await;
    w.character(1001, "Alpha", 10, None);
    let bad = [
        "//evil.com",
        "/\\evil.com",
        "/%2F%2Fevil.com",
        "https://evil.com",
        "javascript:alert(1)",
        "/%09/evil.com",
        "/%0d%0aSet-Cookie:x=1",
        "%2F%2Fevil.com",
        "evil.com",
    ];
    for raw in bad {
        let mut b = Browser::new();
        let path = format!(
            "/auth/login?return_to={}",
            url::form_urlencoded::byte_serialize(raw.as_bytes()).collect::<String>()
        );
        let r = b.login_with(&w, 1001, &path).await;
        assert_eq!(r.location(), "/", "{raw} must land on /");
    }
    let mut b = Browser::new();
    let r = b
        .login_with(
            &w,
            1001,
            "/auth/login?return_to=%2Fbattles%3Fregion%3D10000002",
        )
        .await;
    assert_eq!(r.location(), "/battles?region=10000002");
}

#[tokio::test]
async fn state_changes_need_a_csrf_token_bound_to_the_session() {
    let w = World::new().await;
    w.character(1001, "Alpha", 10, None);
    w.character(1002, "Bravo", 10, None);
    let mut b = Browser::new();
    b.login_ok(&w, 1001).await;
    let body = json!({"character_id": 1001});

    b.send_csrf = false;
    let r = b
        .post_json(&w, "/me/characters/primary", body.clone())
        .await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::FORBIDDEN, "csrf_token".to_owned())
    );
    assert_eq!(
        b.delete(&w, "/me/characters/1001").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        b.post_json(&w, "/auth/logout", json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        b.get(&w, "/me").await.status,
        StatusCode::OK,
        "the refused logout did nothing"
    );

    // A token from another session does not verify for this one.
    let mut other = Browser::at("127.0.0.2:1");
    other.login_ok(&w, 1002).await;
    b.extra = vec![("x-csrf-token".into(), other.csrf().unwrap())];
    assert_eq!(
        b.post_json(&w, "/me/characters/primary", body.clone())
            .await
            .error(),
        "csrf_token"
    );
    b.extra.clear();

    // Cross-site requests are refused even with the token.
    b.send_csrf = true;
    b.extra = vec![("sec-fetch-site".into(), "cross-site".into())];
    assert_eq!(
        b.post_json(&w, "/me/characters/primary", body.clone())
            .await
            .error(),
        "csrf_cross_site"
    );
    b.extra = vec![("origin".into(), "https://evil.example".into())];
    assert_eq!(
        b.post_json(&w, "/me/characters/primary", body.clone())
            .await
            .error(),
        "csrf_origin"
    );
    b.extra = vec![
        ("origin".into(), "http://127.0.0.1:3000".into()),
        ("sec-fetch-site".into(), "same-origin".into()),
    ];
    assert_eq!(
        b.post_json(&w, "/me/characters/primary", body.clone())
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    b.extra.clear();

    // A plain HTML form post carries the token as a field.
    b.send_csrf = false;
    let r = b
        .send(
            &w,
            Method::POST,
            "/me/characters/link",
            Some(("application/x-www-form-urlencoded", b"x=1".to_vec())),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let form = format!("csrf_token={}", b.csrf().unwrap());
    let r = b
        .send(
            &w,
            Method::POST,
            "/me/characters/link",
            Some(("application/x-www-form-urlencoded", form.into_bytes())),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn session_fixation_is_defeated_by_a_new_id_at_login() {
    let w = World::new().await;
    w.character(1001, "Victim", 10, None);
    w.character(6666, "Attacker", 10, None);
    // An id planted by an attacker is not a session, and login replaces it.
    let mut victim = Browser::new();
    victim.cookies.insert(
        "battlescope_session".into(),
        "attacker-chosen-session-id".into(),
    );
    assert_eq!(victim.get(&w, "/me").await.status, StatusCode::UNAUTHORIZED);
    victim.login_ok(&w, 1001).await;
    let issued = victim.session().unwrap();
    assert_ne!(issued, "attacker-chosen-session-id");
    let mut attacker = Browser::at("127.0.0.66:1");
    attacker.cookies.insert(
        "battlescope_session".into(),
        "attacker-chosen-session-id".into(),
    );
    assert_eq!(
        attacker.get(&w, "/me").await.status,
        StatusCode::UNAUTHORIZED
    );

    // Each login gets a new id; an expired session's id is never revived by a login.
    let mut b = Browser::new();
    b.login_ok(&w, 6666).await;
    let first = b.session().unwrap();
    w.advance(TimeDelta::hours(3));
    assert_eq!(b.get(&w, "/me").await.status, StatusCode::UNAUTHORIZED);
    b.cookies
        .insert("battlescope_session".into(), first.clone());
    b.login_ok(&w, 6666).await;
    let second = b.session().unwrap();
    assert_ne!(first, second);
    let mut stale = Browser::new();
    stale.cookies.insert("battlescope_session".into(), first);
    assert_eq!(stale.get(&w, "/me").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_blocked_accounts_old_session_is_refused() {
    let w = World::new().await;
    w.character(1001, "Alpha", 10, None);
    let mut b = Browser::new();
    let id = b.login_ok(&w, 1001).await;
    // Blocked behind the API's back (no session revocation): the next request still
    // re-reads the account and refuses.
    w.service
        .store()
        .set_blocked(&id, true, Some("test"))
        .await
        .unwrap();
    let r = b.get(&w, "/me").await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::FORBIDDEN, "account_blocked".to_owned())
    );
    // And the session is now revoked for good, even after an unblock.
    let sid_gone = b.session().is_none();
    assert!(sid_gone, "the cookie is cleared");
    w.service
        .store()
        .set_blocked(&id, false, None)
        .await
        .unwrap();
    let sessions = w.service.store().sessions_of(&id, w.now()).await.unwrap();
    assert!(sessions.is_empty());
}

#[tokio::test]
async fn login_and_callback_are_rate_limited() {
    let w = World::new().await;
    let mut b = Browser::at("127.0.0.42:1");
    for _ in 0..30 {
        assert_eq!(b.get(&w, "/auth/login").await.status, StatusCode::SEE_OTHER);
    }
    let r = b.get(&w, "/auth/login").await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".to_owned())
    );
    // Per address: another client is unaffected.
    assert_eq!(
        Browser::at("127.0.0.43:1")
            .get(&w, "/auth/login")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let mut c = Browser::at("127.0.0.44:1");
    for _ in 0..30 {
        c.get(&w, "/auth/callback?code=x&state=y").await;
    }
    assert_eq!(
        c.get(&w, "/auth/callback?code=x&state=y").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn forwarded_addresses_are_trusted_only_from_a_local_hop() {
    let w = World::new().await;
    // Behind a local reverse proxy: each client has its own bucket.
    for client in ["203.0.113.1", "203.0.113.2"] {
        let mut b = Browser::at("127.0.0.1:8080");
        b.extra = vec![("x-forwarded-for".into(), format!("10.9.9.9, {client}"))];
        for _ in 0..30 {
            assert_eq!(b.get(&w, "/auth/login").await.status, StatusCode::SEE_OTHER);
        }
        assert_eq!(
            b.get(&w, "/auth/login").await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    // A remote client cannot escape its bucket by inventing the header.
    let mut remote = Browser::at("198.51.100.7:4444");
    for i in 0..30 {
        remote.extra = vec![("x-forwarded-for".into(), format!("192.0.2.{i}"))];
        assert_eq!(
            remote.get(&w, "/auth/login").await.status,
            StatusCode::SEE_OTHER
        );
    }
    remote.extra = vec![("x-forwarded-for".into(), "192.0.2.200".into())];
    assert_eq!(
        remote.get(&w, "/auth/login").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn unauthenticated_and_unknown_requests() {
    let w = World::new().await;
    let mut b = Browser::new();
    for path in [
        "/me",
        "/me/characters",
        "/me/sessions",
        "/admin/accounts",
        "/admin/audit",
        "/admin/config",
    ] {
        assert_eq!(
            b.get(&w, path).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let r = b
        .post_json(
            &w,
            "/authorize",
            json!({"feature": "search", "action": "view"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = b
        .post_json(
            &w,
            "/authorize",
            json!({"session_id": "nope", "feature": "search", "action": "view"}),
        )
        .await;
    assert_eq!(
        (r.json()["allow"].as_bool(), r.json()["reason"].as_str()),
        (Some(false), Some("not_authenticated"))
    );
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_row_is_useless() {
    let w = World::new().await;
    w.character(1001, "Victim", 10, None);
    w.character(2002, "Attacker", 10, None);
    Browser::new().login_ok(&w, 1001).await;
    Browser::at("127.0.0.66:1").login_ok(&w, 2002).await;
    // Someone with write access to the database copies the victim's encrypted grant
    // into the attacker's row (hoping the service will refresh it for them).
    let store = w.service.store();
    let victim = store.token(1001).await.unwrap().unwrap();
    let mut attacker = store.token(2002).await.unwrap().unwrap();
    attacker.refresh_token_enc = victim.refresh_token_enc.clone();
    store.upsert_token(&attacker).await.unwrap();
    w.advance(TimeDelta::minutes(16));
    let report = w.service.refresh_due_tokens().await.unwrap();
    assert_eq!((report.refreshed, report.dead), (1, 1), "{report:?}");
    let row = store.token(2002).await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.last_error.as_deref()),
        (
            bs_authentication::model::TokenStatus::Dead,
            Some("undecryptable")
        )
    );
    // The victim's own grant was refreshed normally and never used for the attacker.
    assert_eq!(
        store.token(1001).await.unwrap().unwrap().status,
        bs_authentication::model::TokenStatus::Valid
    );
}
