//! The JWT attack table: each forged or off-spec token is rejected with the right reason,
//! and the JWKS refetch on an unknown `kid` happens once and is rate-limited.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bs_sso::JwtError;
use bs_sso::fake::RsaSigningKey;
use chrono::TimeDelta;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::{ALICE, CLIENT_ID, World, t0};

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

#[tokio::test]
async fn valid_token_is_accepted_with_eve_claims() {
    let w = World::new().await;
    let v = w.validator();
    let token = w
        .sso
        .mint_access_token(ALICE, &["esi-a.v1", "esi-b.v1"])
        .unwrap();
    let c = v.validate(&token, t0()).await.unwrap();
    assert_eq!(c.character_id, ALICE);
    assert_eq!(c.name, "Alice Alpha");
    assert_eq!(Some(c.owner_hash.clone()), w.sso.owner_of(ALICE));
    assert_eq!(
        c.scopes.iter().map(String::as_str).collect::<Vec<_>>(),
        ["esi-a.v1", "esi-b.v1"]
    );
    assert_eq!(c.expires_at, t0() + TimeDelta::seconds(1200));
    // The key set also holds an EC key (like EVE's); it is skipped, both RSA keys kept.
    assert_eq!(v.known_kids().len(), 2);
}

#[tokio::test]
async fn scp_string_array_and_absent_are_normalised() {
    let w = World::new().await;
    let v = w.validator();
    let key = w.sso.signing_key();
    let base = w.sso.claims_for(ALICE, &[]).unwrap();
    let one = key
        .sign_claims(&with(base.clone(), "scp", json!("publicData")))
        .unwrap();
    let many = key
        .sign_claims(&with(base.clone(), "scp", json!(["a", "b"])))
        .unwrap();
    let none = key.sign_claims(&without(base, "scp")).unwrap();
    assert_eq!(v.validate(&one, t0()).await.unwrap().scopes.len(), 1);
    assert_eq!(v.validate(&many, t0()).await.unwrap().scopes.len(), 2);
    assert!(v.validate(&none, t0()).await.unwrap().scopes.is_empty());
}

#[tokio::test]
async fn attack_table_every_case_rejected() {
    let w = World::new().await;
    let v = w.validator();
    let key = w.sso.signing_key();
    let kid = key.kid().to_owned();
    let good = w.sso.claims_for(ALICE, &["publicData"]).unwrap();
    let now = t0().timestamp();
    let leeway = v.config().leeway.as_secs() as i64;
    let sign = |claims: Value| key.sign_claims(&claims).unwrap();

    // A key the attacker owns, presented under the real kid.
    let attacker = RsaSigningKey::generate(kid.clone()).unwrap();
    let valid = sign(good.clone());
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let tampered_payload = format!(
        "{head}.{}.{sig}",
        b64(&with(good.clone(), "sub", json!("CHARACTER:EVE:1")))
    );

    let alg_none = |alg: &str| {
        format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "typ": "JWT", "kid": kid})),
            b64(&good)
        )
    };
    let hs256 = |secret: &[u8]| {
        let input = format!(
            "{}.{}",
            b64(&json!({"alg": "HS256", "typ": "JWT", "kid": kid})),
            b64(&good)
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let public_der = key.public_key_der();
    let public_pem = format!(
        "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&public_der)
    );

    let cases: Vec<(&str, String, JwtError)> = vec![
        (
            "bad signature (attacker key, real kid)",
            attacker.sign_claims(&good).unwrap(),
            JwtError::BadSignature,
        ),
        (
            "payload changed after signing",
            tampered_payload,
            JwtError::BadSignature,
        ),
        (
            "jku header pointing at attacker keys",
            attacker
                .sign_jwt(
                    &json!({"alg": "RS256", "kid": kid, "jku": "https://evil.test/jwks"}),
                    &good,
                )
                .unwrap(),
            JwtError::BadSignature,
        ),
        (
            "alg none",
            alg_none("none"),
            JwtError::Algorithm("none".into()),
        ),
        (
            "alg None",
            alg_none("None"),
            JwtError::Algorithm("None".into()),
        ),
        (
            "hs256 signed with the public key (der)",
            hs256(&public_der),
            JwtError::Algorithm("HS256".into()),
        ),
        (
            "hs256 signed with the public key (pem)",
            hs256(public_pem.as_bytes()),
            JwtError::Algorithm("HS256".into()),
        ),
        (
            "rs512 header",
            key.sign_jwt(&json!({"alg": "RS512", "kid": kid}), &good)
                .unwrap(),
            JwtError::Algorithm("RS512".into()),
        ),
        (
            "no kid",
            key.sign_jwt(&json!({"alg": "RS256", "typ": "JWT"}), &good)
                .unwrap(),
            JwtError::MissingKid,
        ),
        ("not a jwt", "not.a.jwt".into(), JwtError::Malformed),
        (
            "oversized token",
            sign(with(good.clone(), "pad", json!("x".repeat(20_000)))),
            JwtError::Malformed,
        ),
        (
            "four segments",
            format!("{valid}.extra"),
            JwtError::Malformed,
        ),
        ("two segments", "abc.def".into(), JwtError::Malformed),
        (
            "iss typo logineveonline.com",
            sign(with(good.clone(), "iss", json!("logineveonline.com"))),
            JwtError::Issuer,
        ),
        (
            "iss typo login.eveoline.com",
            sign(with(good.clone(), "iss", json!("login.eveoline.com"))),
            JwtError::Issuer,
        ),
        (
            "iss trailing slash",
            sign(with(
                good.clone(),
                "iss",
                json!("https://login.eveonline.com/"),
            )),
            JwtError::Issuer,
        ),
        (
            "iss http scheme",
            sign(with(
                good.clone(),
                "iss",
                json!("http://login.eveonline.com"),
            )),
            JwtError::Issuer,
        ),
        (
            "iss foreign",
            sign(with(good.clone(), "iss", json!("https://evil.test"))),
            JwtError::Issuer,
        ),
        (
            "aud without EVE Online",
            sign(with(good.clone(), "aud", json!([CLIENT_ID]))),
            JwtError::Audience,
        ),
        (
            "aud as a string",
            sign(with(good.clone(), "aud", json!(CLIENT_ID))),
            JwtError::Audience,
        ),
        (
            "aud without client id",
            sign(with(good.clone(), "aud", json!(["EVE Online"]))),
            JwtError::Audience,
        ),
        (
            "aud of another client",
            sign(with(
                good.clone(),
                "aud",
                json!(["other-client", "EVE Online"]),
            )),
            JwtError::Audience,
        ),
        (
            "azp of another client",
            sign(with(good.clone(), "azp", json!("other-client"))),
            JwtError::AuthorizedParty,
        ),
        (
            "azp missing",
            sign(without(good.clone(), "azp")),
            JwtError::AuthorizedParty,
        ),
        (
            "expired beyond leeway",
            sign(with(good.clone(), "exp", json!(now - leeway - 1))),
            JwtError::Expired,
        ),
        (
            "expired exactly at the leeway edge",
            sign(with(good.clone(), "exp", json!(now - leeway))),
            JwtError::Expired,
        ),
        (
            "iat in the future",
            sign(with(good.clone(), "iat", json!(now + leeway + 5))),
            JwtError::NotYetValid,
        ),
        (
            "nbf in the future",
            sign(with(good.clone(), "nbf", json!(now + leeway + 5))),
            JwtError::NotYetValid,
        ),
        (
            "sub CHARACTER:EVE:abc",
            sign(with(good.clone(), "sub", json!("CHARACTER:EVE:abc"))),
            JwtError::Subject,
        ),
        (
            "sub CHARACTER:EVE:-1",
            sign(with(good.clone(), "sub", json!("CHARACTER:EVE:-1"))),
            JwtError::Subject,
        ),
        (
            "sub CORPORATION:EVE:1",
            sign(with(good.clone(), "sub", json!("CORPORATION:EVE:1"))),
            JwtError::Subject,
        ),
        (
            "sub extra segment",
            sign(with(good.clone(), "sub", json!("CHARACTER:EVE:1:2"))),
            JwtError::Subject,
        ),
        (
            "sub old EVE:CHARACTER order",
            sign(with(good.clone(), "sub", json!("EVE:CHARACTER:1"))),
            JwtError::Subject,
        ),
        (
            "sub overflow",
            sign(with(
                good.clone(),
                "sub",
                json!("CHARACTER:EVE:99999999999999999999"),
            )),
            JwtError::Subject,
        ),
        (
            "sub zero",
            sign(with(good.clone(), "sub", json!("CHARACTER:EVE:0"))),
            JwtError::Subject,
        ),
        (
            "tenant singularity",
            sign(with(good.clone(), "tenant", json!("singularity"))),
            JwtError::Tenant,
        ),
        (
            "owner empty",
            sign(with(good.clone(), "owner", json!(""))),
            JwtError::Owner,
        ),
        (
            "exp as a string",
            sign(with(good.clone(), "exp", json!("soon"))),
            JwtError::Claims,
        ),
        (
            "sub missing",
            sign(without(good.clone(), "sub")),
            JwtError::Claims,
        ),
    ];
    // Sanity: the unmodified token passes, so each rejection is due to its one change.
    v.validate(&valid, t0()).await.unwrap();
    v.validate(
        &sign(with(good.clone(), "exp", json!(now - leeway + 1))),
        t0(),
    )
    .await
    .unwrap();
    v.validate(&sign(with(good.clone(), "iat", json!(now + leeway))), t0())
        .await
        .unwrap();
    v.validate(
        &sign(with(
            good.clone(),
            "iss",
            json!("https://login.eveonline.com"),
        )),
        t0(),
    )
    .await
    .unwrap();
    let fetches = w.sso.jwks_fetches();
    for (name, token, expected) in cases {
        assert_eq!(
            v.validate(&token, t0()).await,
            Err(expected),
            "case: {name}"
        );
    }
    // None of these forged a refetch: the kid was known (or absent).
    assert_eq!(w.sso.jwks_fetches(), fetches);
}

#[tokio::test]
async fn unknown_kid_refetches_once_then_is_rate_limited() {
    let w = World::new().await;
    let v = w.validator();
    let good = w.sso.claims_for(ALICE, &[]).unwrap();
    v.validate(&w.sso.mint_access_token(ALICE, &[]).unwrap(), t0())
        .await
        .unwrap();
    assert_eq!(w.sso.jwks_fetches(), 1);

    // A kid nobody published: within the minute after the last fetch, no refetch at all.
    let stranger = RsaSigningKey::generate("attacker-kid").unwrap();
    let forged = stranger.sign_claims(&good).unwrap();
    for _ in 0..5 {
        assert_eq!(
            v.validate(&forged, t0() + TimeDelta::seconds(30)).await,
            Err(JwtError::UnknownKid)
        );
    }
    assert_eq!(w.sso.jwks_fetches(), 1);
    // After the interval: exactly one refetch, still unknown, and the next tries are limited again.
    for _ in 0..5 {
        assert_eq!(
            v.validate(&forged, t0() + TimeDelta::seconds(61)).await,
            Err(JwtError::UnknownKid)
        );
    }
    assert_eq!(w.sso.jwks_fetches(), 2);
}

#[tokio::test]
async fn key_rotation_is_picked_up_by_one_refetch() {
    let w = World::new().await;
    let v = w.validator();
    v.validate(&w.sso.mint_access_token(ALICE, &[]).unwrap(), t0())
        .await
        .unwrap();
    let old_kid = w.sso.signing_key().kid().to_owned();
    let new_kid = w.sso.rotate_signing_key(true).await.unwrap();
    assert_ne!(old_kid, new_kid);
    let rotated = w.sso.mint_access_token(ALICE, &[]).unwrap();
    let later = t0() + TimeDelta::seconds(90);
    assert_eq!(
        v.validate(&rotated, later).await.unwrap().character_id,
        ALICE
    );
    assert_eq!(w.sso.jwks_fetches(), 2);
    assert!(v.known_kids().contains(&new_kid));
    // The retired key left the set: tokens signed with it no longer verify.
    assert!(!v.known_kids().contains(&old_kid));
}

#[tokio::test]
async fn static_key_set_never_fetches() {
    let w = World::new().await;
    let jwks = json!({"keys": [w.sso.signing_key().jwk()]}).to_string();
    let v = bs_sso::JwtValidator::from_jwks_json(
        bs_sso::ValidatorConfig::new(CLIENT_ID, w.sso.base_url().join("/oauth/jwks").unwrap()),
        &jwks,
    )
    .unwrap();
    let token = w.sso.mint_access_token(ALICE, &[]).unwrap();
    assert_eq!(v.validate(&token, t0()).await.unwrap().character_id, ALICE);
    let other = RsaSigningKey::generate("other").unwrap();
    let forged = other
        .sign_claims(&w.sso.claims_for(ALICE, &[]).unwrap())
        .unwrap();
    assert_eq!(v.validate(&forged, t0()).await, Err(JwtError::UnknownKid));
    assert_eq!(w.sso.jwks_fetches(), 0);
}

#[tokio::test]
async fn concurrent_unknown_kids_cause_a_single_fetch() {
    let w = World::new().await;
    let v = w.validator();
    let stranger = RsaSigningKey::generate("attacker-kid").unwrap();
    let forged = stranger
        .sign_claims(&w.sso.claims_for(ALICE, &[]).unwrap())
        .unwrap();
    let genuine = w.sso.mint_access_token(ALICE, &[]).unwrap();
    let mut calls = Vec::new();
    for i in 0..20 {
        let token = if i % 2 == 0 { &forged } else { &genuine };
        calls.push(v.validate(token, t0()));
    }
    let results = futures::future::join_all(calls).await;
    assert_eq!(w.sso.jwks_fetches(), 1);
    for (i, r) in results.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(r, &Err(JwtError::UnknownKid));
        } else {
            assert!(r.is_ok(), "{r:?}");
        }
    }
}

#[tokio::test]
async fn keys_are_refreshed_when_old_and_retired_keys_stop_working() {
    let w = World::new().await;
    let v = w.validator();
    let old_token = w.sso.mint_access_token(ALICE, &[]).unwrap();
    v.validate(&old_token, t0()).await.unwrap();
    w.sso.rotate_signing_key(true).await.unwrap();
    // The old kid is still cached and fresh: no fetch yet.
    v.validate(&old_token, t0() + TimeDelta::minutes(10))
        .await
        .unwrap();
    assert_eq!(w.sso.jwks_fetches(), 1);
    // An hour later the set is refetched and the retired key is gone.
    let late = t0() + TimeDelta::minutes(61);
    assert_eq!(
        v.validate(&old_token, late).await,
        Err(JwtError::UnknownKid)
    );
    assert_eq!(w.sso.jwks_fetches(), 2);
}

#[tokio::test]
async fn unreachable_jwks_is_a_transient_error_not_a_bad_token() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = url::Url::parse(&format!(
        "http://{}/oauth/jwks",
        listener.local_addr().unwrap()
    ))
    .unwrap();
    drop(listener);
    let w = World::new().await;
    let v = bs_sso::JwtValidator::new(
        bs_sso::ValidatorConfig::new(CLIENT_ID, dead),
        reqwest::Client::new(),
    );
    let token = w.sso.mint_access_token(ALICE, &[]).unwrap();
    assert!(matches!(
        v.validate(&token, t0()).await,
        Err(JwtError::Jwks(_))
    ));
    // Within the minute no new attempt is made, and the error still says why.
    assert_eq!(
        v.validate(&token, t0() + TimeDelta::seconds(5)).await,
        Err(JwtError::Jwks("key set not loaded yet".into()))
    );
}
