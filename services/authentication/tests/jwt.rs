//! The JWT half of the attack table, through the service's own validator (the one the
//! callback and the refresh job use), with keys from the fake SSO's JWKS.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bs_sso::JwtError;
use bs_sso::fake::RsaSigningKey;
use serde_json::{Value, json};

use crate::support::{CLIENT_ID, World};

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    if let Some(o) = claims.as_object_mut() {
        o.remove(key);
    }
    claims
}

#[tokio::test]
async fn the_validator_refuses_every_forgery() {
    let w = World::new().await;
    w.character(1001, "Alpha", 10, None);
    let validator = &w.service.sso().unwrap().validator;
    let now = w.now();
    let key = w.sso.signing_key();
    let good = w.sso.claims_for(1001, &["publicData"]).unwrap();
    let sign = |claims: &Value| key.sign_claims(claims).unwrap();

    // The genuine article passes (and `scp` as a string is normalised).
    let v = validator.validate(&sign(&good), now).await.unwrap();
    assert_eq!(v.character_id, 1001);
    assert_eq!(v.owner_hash, w.sso.owner_of(1001).unwrap());
    assert!(v.scopes.contains("publicData"));

    let exp = good["exp"].as_i64().unwrap();
    let iat = good["iat"].as_i64().unwrap();
    let cases: Vec<(&str, Value, JwtError)> = vec![
        (
            "typo issuer",
            with(good.clone(), "iss", json!("logineveonline.com")),
            JwtError::Issuer,
        ),
        (
            "trailing slash issuer",
            with(good.clone(), "iss", json!("https://login.eveonline.com/")),
            JwtError::Issuer,
        ),
        (
            "foreign issuer",
            with(good.clone(), "iss", json!("https://evil.example")),
            JwtError::Issuer,
        ),
        (
            "aud without EVE Online",
            with(good.clone(), "aud", json!([CLIENT_ID])),
            JwtError::Audience,
        ),
        (
            "aud as a bare string",
            with(good.clone(), "aud", json!(CLIENT_ID)),
            JwtError::Audience,
        ),
        (
            "aud for another client",
            with(good.clone(), "aud", json!(["other-app", "EVE Online"])),
            JwtError::Audience,
        ),
        (
            "azp of another client",
            with(good.clone(), "azp", json!("other-app")),
            JwtError::AuthorizedParty,
        ),
        (
            "no azp",
            without(good.clone(), "azp"),
            JwtError::AuthorizedParty,
        ),
        (
            "expired",
            with(
                with(good.clone(), "exp", json!(now.timestamp() - 120)),
                "iat",
                json!(iat - 1400),
            ),
            JwtError::Expired,
        ),
        (
            "iat in the future",
            with(good.clone(), "iat", json!(now.timestamp() + 600)),
            JwtError::NotYetValid,
        ),
        (
            "old sub form",
            with(good.clone(), "sub", json!("EVE:CHARACTER:1001")),
            JwtError::Subject,
        ),
        (
            "negative sub",
            with(good.clone(), "sub", json!("CHARACTER:EVE:-1")),
            JwtError::Subject,
        ),
        (
            "overflowing sub",
            with(
                good.clone(),
                "sub",
                json!("CHARACTER:EVE:99999999999999999999"),
            ),
            JwtError::Subject,
        ),
        (
            "corporation sub",
            with(good.clone(), "sub", json!("CORPORATION:EVE:1001")),
            JwtError::Subject,
        ),
        (
            "wrong tenant",
            with(good.clone(), "tenant", json!("singularity")),
            JwtError::Tenant,
        ),
        ("no owner", without(good.clone(), "owner"), JwtError::Owner),
    ];
    for (name, claims, expected) in cases {
        assert_eq!(
            validator.validate(&sign(&claims), now).await,
            Err(expected),
            "{name}"
        );
    }
    let _ = exp;

    // alg: none (unsigned).
    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": key.kid()}).to_string());
    let body = URL_SAFE_NO_PAD.encode(good.to_string());
    let none = format!("{header}.{body}.");
    assert!(matches!(
        validator.validate(&none, now).await,
        Err(JwtError::Algorithm(_))
    ));

    // HS256 "signed" with the RSA public key (algorithm confusion).
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(key.kid().to_owned());
    let confused = jsonwebtoken::encode(
        &hs,
        &good,
        &jsonwebtoken::EncodingKey::from_secret(&key.public_key_der()).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        validator.validate(&confused, now).await,
        Err(JwtError::Algorithm(_))
    ));

    // A bad signature: a key that is not in the JWKS, claiming a kid that is.
    let impostor = tokio::task::spawn_blocking({
        let kid = key.kid().to_owned();
        move || RsaSigningKey::generate(kid).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        validator
            .validate(&impostor.sign_claims(&good).unwrap(), now)
            .await,
        Err(JwtError::BadSignature)
    );
    // A tampered payload under a genuine signature.
    let genuine = sign(&good);
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let forged_body =
        URL_SAFE_NO_PAD.encode(with(good.clone(), "sub", json!("CHARACTER:EVE:1")).to_string());
    parts[1] = &forged_body;
    assert_eq!(
        validator.validate(&parts.join("."), now).await,
        Err(JwtError::BadSignature)
    );

    // A `jku` header pointing at the attacker's keys is ignored: keys only come from our JWKS.
    let rogue = tokio::task::spawn_blocking(|| RsaSigningKey::generate("rogue-kid").unwrap())
        .await
        .unwrap();
    let jku = rogue
        .sign_jwt(&json!({"alg": "RS256", "kid": key.kid(), "jku": "https://evil.example/jwks", "typ": "JWT"}), &good)
        .unwrap();
    assert_eq!(
        validator.validate(&jku, now).await,
        Err(JwtError::BadSignature)
    );

    // Unknown kid: refused, and the JWKS is refetched at most once a minute however
    // many forged kids arrive.
    let fetches = w.sso.jwks_fetches();
    for _ in 0..5 {
        assert_eq!(
            validator
                .validate(&rogue.sign_claims(&good).unwrap(), now)
                .await,
            Err(JwtError::UnknownKid)
        );
    }
    assert!(
        w.sso.jwks_fetches() - fetches <= 1,
        "jwks refetched {} times",
        w.sso.jwks_fetches() - fetches
    );

    // A genuine key rotation is picked up (after the minute).
    let new_kid = w.sso.rotate_signing_key(false).await.unwrap();
    w.advance(chrono::TimeDelta::seconds(61));
    let rotated = w.sso.mint_access_token(1001, &[]).unwrap();
    assert!(rotated.contains('.'));
    let v = validator.validate(&rotated, w.now()).await.unwrap();
    assert_eq!(v.character_id, 1001);
    assert!(validator.known_kids().contains(&new_kid));
}
