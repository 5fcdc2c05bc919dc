//! Session ids, CSRF tokens and configuration parsing.

use std::collections::{HashMap, HashSet};

use bs_sso::config::{ConfigError, callback_url};
use bs_sso::{CsrfKey, SsoConfig, generate_session_id, hash_session_id};
use url::Url;

#[test]
fn session_ids_are_256_bit_url_safe_and_stored_hashed() {
    let ids: HashSet<String> = (0..1000).map(|_| generate_session_id().unwrap()).collect();
    assert_eq!(ids.len(), 1000);
    for id in &ids {
        assert_eq!(id.len(), 43);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let hashed = hash_session_id(id);
        assert_eq!(hashed.len(), 64);
        assert_eq!(hashed, hash_session_id(id));
        assert!(!hashed.contains(id.as_str()));
    }
    // Known answer: SHA-256("abc").
    assert_eq!(
        hash_session_id("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn csrf_tokens_are_bound_to_session_and_key() {
    let key = CsrfKey::generate().unwrap();
    let session = generate_session_id().unwrap();
    let token = key.issue(&session).unwrap();
    assert!(key.verify(&session, &token));
    // A fresh nonce per issue, both valid.
    let second = key.issue(&session).unwrap();
    assert_ne!(token, second);
    assert!(key.verify(&session, &second));
    // Another session (e.g. the attacker's, or the pre-login one) does not verify.
    assert!(!key.verify(&generate_session_id().unwrap(), &token));
    // Another server key does not verify.
    assert!(!CsrfKey::generate().unwrap().verify(&session, &token));
    // Tampering and garbage.
    let (nonce, tag) = token.split_once('.').unwrap();
    let mut chars: Vec<char> = tag.chars().collect();
    chars[0] = if chars[0] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{nonce}.{}", chars.into_iter().collect::<String>());
    for bad in [
        "",
        ".",
        "abc",
        "abc.def",
        &tampered,
        &format!("{nonce}."),
        &format!(".{tag}"),
        &format!("{tag}.{nonce}"),
    ] {
        assert!(!key.verify(&session, bad), "{bad}");
    }
    // Length-prefixing: moving bytes between session and nonce does not collide.
    assert!(!key.verify(&format!("{session}x"), &token));
}

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn config_from_environment_names() {
    let c = SsoConfig::from_lookup(lookup(&[
        ("BATTLESCOPE_SSO_CLIENT_ID", "abc123"),
        ("BATTLESCOPE_SSO_CLIENT_SECRET", "s3cr3t-value"),
        ("BATTLESCOPE_PUBLIC_URL", "https://bs.example/app/"),
        ("BATTLESCOPE_SSO_SCOPES", "esi-a.v1  esi-b.v1"),
    ]))
    .unwrap();
    assert_eq!(c.base_url.as_str(), "https://login.eveonline.com/");
    assert_eq!(
        c.callback_url.as_str(),
        "https://bs.example/app/auth/callback"
    );
    assert_eq!(c.scopes, ["esi-a.v1", "esi-b.v1"]);
    assert_eq!(c.client_secret.expose(), "s3cr3t-value");
    assert!(!format!("{c:?}").contains("s3cr3t-value"));

    let custom = SsoConfig::from_lookup(lookup(&[
        ("BATTLESCOPE_SSO_URL", "http://127.0.0.1:4567"),
        ("BATTLESCOPE_SSO_CLIENT_ID", "abc123"),
        ("BATTLESCOPE_SSO_CLIENT_SECRET", "x"),
        ("BATTLESCOPE_PUBLIC_URL", "http://localhost:8080"),
    ]))
    .unwrap();
    assert_eq!(custom.base_url.as_str(), "http://127.0.0.1:4567/");
    assert_eq!(
        custom.callback_url.as_str(),
        "http://localhost:8080/auth/callback"
    );
    assert!(custom.scopes.is_empty());

    let missing = SsoConfig::from_lookup(lookup(&[("BATTLESCOPE_SSO_CLIENT_SECRET", "x")]));
    assert!(matches!(
        missing,
        Err(ConfigError::Missing("BATTLESCOPE_SSO_CLIENT_ID"))
    ));
    let bad_url = SsoConfig::from_lookup(lookup(&[
        ("BATTLESCOPE_SSO_URL", "ftp://login.eveonline.com"),
        ("BATTLESCOPE_SSO_CLIENT_ID", "a"),
        ("BATTLESCOPE_SSO_CLIENT_SECRET", "x"),
        ("BATTLESCOPE_PUBLIC_URL", "http://localhost"),
    ]));
    assert!(matches!(
        bad_url,
        Err(ConfigError::BadUrl {
            name: "BATTLESCOPE_SSO_URL"
        })
    ));
    assert_eq!(
        callback_url(&Url::parse("https://bs.example/?x=1#f").unwrap())
            .unwrap()
            .as_str(),
        "https://bs.example/auth/callback"
    );
}
