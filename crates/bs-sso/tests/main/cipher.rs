//! Token cipher: round trips, row binding (AAD), key ids, tampering, rotation, nonces.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bs_sso::Secret;
use bs_sso::cipher::{CipherError, KeyId, TokenCipher, token_aad};
use proptest::prelude::*;

fn spec(entries: &[(&str, u8)]) -> Secret<String> {
    Secret::new(
        entries
            .iter()
            .map(|(kid, fill)| format!("{kid}:{}", STANDARD.encode([*fill; 32])))
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn cipher(entries: &[(&str, u8)]) -> TokenCipher {
    TokenCipher::from_spec(&spec(entries)).unwrap()
}

const RT: &str = "fJ3kQ9zX1mW8vB2nL5pR7tY0";

#[test]
fn round_trip_and_stored_form() {
    let c = cipher(&[("k1", 7)]);
    let aad = token_aad("acct-1", 2112625428);
    let stored = c.encrypt(RT, &aad).unwrap();
    assert!(stored.starts_with("v1:k1:"), "{stored}");
    assert!(!stored.contains(RT));
    let blob = URL_SAFE_NO_PAD
        .decode(stored.rsplit(':').next().unwrap())
        .unwrap();
    assert_eq!(blob.len(), 12 + RT.len() + 16);
    assert_eq!(c.decrypt(&stored, &aad).unwrap().expose(), RT);
    // A fresh nonce each time: equal plaintexts never give equal ciphertexts.
    assert_ne!(c.encrypt(RT, &aad).unwrap(), stored);
    assert_eq!(c.encryptions(), 2);
}

#[test]
fn ciphertext_moved_to_another_row_fails() {
    let c = cipher(&[("k1", 7)]);
    let stored = c.encrypt(RT, &token_aad("acct-1", 1001)).unwrap();
    for other in [
        token_aad("acct-2", 1001),
        token_aad("acct-1", 1002),
        token_aad("acct-11", 1),
        Vec::new(),
    ] {
        assert_eq!(c.decrypt(&stored, &other).err(), Some(CipherError::Decrypt));
    }
}

#[test]
fn wrong_or_relabelled_key_id_fails() {
    let c = cipher(&[("k2", 2), ("k1", 1)]);
    let aad = token_aad("a", 1);
    let stored = c.encrypt(RT, &aad).unwrap();
    // Relabelled to another key of the ring: the key id is in the AAD and the key differs.
    let relabelled = stored.replacen("v1:k2:", "v1:k1:", 1);
    assert_eq!(
        c.decrypt(&relabelled, &aad).err(),
        Some(CipherError::Decrypt)
    );
    // A key id the ring does not have.
    let unknown = stored.replacen("v1:k2:", "v1:k9:", 1);
    assert_eq!(
        c.decrypt(&unknown, &aad).err(),
        Some(CipherError::UnknownKey("k9".into()))
    );
    // Same kid, different key material (a misconfigured deployment).
    let impostor = cipher(&[("k2", 99)]);
    assert_eq!(
        impostor.decrypt(&stored, &aad).err(),
        Some(CipherError::Decrypt)
    );
}

#[test]
fn every_flipped_bit_is_detected() {
    let c = cipher(&[("k1", 7)]);
    let aad = token_aad("a", 1);
    let stored = c.encrypt(RT, &aad).unwrap();
    let b64 = stored.strip_prefix("v1:k1:").unwrap();
    let blob = URL_SAFE_NO_PAD.decode(b64).unwrap();
    for i in 0..blob.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = blob.clone();
            bad[i] ^= bit;
            let forged = format!("v1:k1:{}", URL_SAFE_NO_PAD.encode(&bad));
            assert_eq!(
                c.decrypt(&forged, &aad).err(),
                Some(CipherError::Decrypt),
                "byte {i}"
            );
        }
    }
    let truncated = format!("v1:k1:{}", URL_SAFE_NO_PAD.encode(&blob[..20]));
    assert_eq!(c.decrypt(&truncated, &aad).err(), Some(CipherError::Format));
    for malformed in ["", "v1:k1", "v2:k1:AAAA", "v1::AAAA", "v1:k1:!!!", RT] {
        assert_eq!(
            c.decrypt(malformed, &aad).err(),
            Some(CipherError::Format),
            "{malformed}"
        );
    }
}

#[test]
fn rotation_moves_rows_to_the_active_key() {
    let aad = token_aad("acct", 42);
    let old_ring = cipher(&[("k1", 1)]);
    let stored_old = old_ring.encrypt(RT, &aad).unwrap();
    // Operator adds k2 in front: k2 encrypts, k1 still decrypts.
    let ring = cipher(&[("k2", 2), ("k1", 1)]);
    assert_eq!(ring.active_key_id().as_str(), "k2");
    assert!(ring.needs_reencrypt(&stored_old));
    assert_eq!(ring.decrypt(&stored_old, &aad).unwrap().expose(), RT);
    let moved = ring.reencrypt(&stored_old, &aad).unwrap();
    assert_eq!(
        TokenCipher::key_id_of(&moved),
        Some(KeyId::parse("k2").unwrap())
    );
    assert!(!ring.needs_reencrypt(&moved));
    // The row binding is kept across re-encryption.
    assert_eq!(
        ring.decrypt(&moved, &token_aad("acct", 43)).err(),
        Some(CipherError::Decrypt)
    );
    // Once k1 is dropped, moved rows still decrypt and stragglers fail loudly.
    let new_ring = cipher(&[("k2", 2)]);
    assert_eq!(new_ring.decrypt(&moved, &aad).unwrap().expose(), RT);
    assert_eq!(
        new_ring.decrypt(&stored_old, &aad).err(),
        Some(CipherError::UnknownKey("k1".into()))
    );
}

#[test]
fn key_spec_parsing_and_generation() {
    let bad = |s: &str| TokenCipher::from_spec(&Secret::new(s.into())).err();
    assert_eq!(bad(""), Some(CipherError::NoKeys));
    assert!(matches!(
        bad("k1"),
        Some(CipherError::BadKeySpec { index: 0, .. })
    ));
    assert!(matches!(
        bad("k1:not base64!"),
        Some(CipherError::BadKeySpec { .. })
    ));
    let short = format!("k1:{}", STANDARD.encode([0u8; 31]));
    assert!(matches!(
        bad(&short),
        Some(CipherError::BadKeySpec {
            reason: "key is not 32 bytes",
            ..
        })
    ));
    let key = STANDARD.encode([5u8; 32]);
    assert_eq!(bad(&format!("k.1:{key}")), Some(CipherError::BadKeyId));
    assert_eq!(bad(&format!("bad id:{key}")), Some(CipherError::BadKeyId));
    assert_eq!(
        bad(&format!("k1:{key},k1:{key}")),
        Some(CipherError::DuplicateKey("k1".into()))
    );
    // URL-safe base64 without padding is accepted too.
    let url_safe = format!("k1:{}", URL_SAFE_NO_PAD.encode([0xfbu8; 32]));
    assert!(TokenCipher::from_spec(&Secret::new(url_safe)).is_ok());

    let generated = TokenCipher::generate_key_spec(&KeyId::parse("2026-12").unwrap()).unwrap();
    let ring = TokenCipher::from_spec(&generated).unwrap();
    assert_eq!(ring.active_key_id().as_str(), "2026-12");
    let aad = token_aad("a", 1);
    assert_eq!(
        ring.decrypt(&ring.encrypt(RT, &aad).unwrap(), &aad)
            .unwrap()
            .expose(),
        RT
    );
    // Debug shows key ids, never key material.
    let secret_part = generated.expose().split_once(':').unwrap().1.to_owned();
    let debug = format!("{ring:?} {generated:?}");
    assert!(debug.contains("2026-12"));
    assert!(!debug.contains(&secret_part), "{debug}");
}

#[test]
fn no_nonce_repeats_in_100k_encryptions() {
    let c = cipher(&[("k1", 3)]);
    let mut seen = HashSet::new();
    for _ in 0..100_000 {
        let stored = c.encrypt("x", b"").unwrap();
        let blob = URL_SAFE_NO_PAD.decode(&stored[6..]).unwrap();
        assert!(seen.insert(<[u8; 12]>::try_from(&blob[..12]).unwrap()));
    }
}

proptest! {
    #[test]
    fn prop_round_trip_and_binding(plain in ".{0,200}", account in "[a-z0-9-]{1,36}", character in 1i64..i64::MAX, flip in any::<u16>()) {
        let c = cipher(&[("k2", 2), ("k1", 1)]);
        let aad = token_aad(&account, character);
        let stored = c.encrypt(&plain, &aad).unwrap();
        prop_assert_eq!(c.decrypt(&stored, &aad).unwrap().into_inner(), plain);
        prop_assert_eq!(c.decrypt(&stored, &token_aad(&account, character ^ 1)).err(), Some(CipherError::Decrypt));
        // Any single flipped bit in nonce, ciphertext or tag is caught.
        let mut blob = URL_SAFE_NO_PAD.decode(&stored[6..]).unwrap();
        let bit = usize::from(flip) % (blob.len() * 8);
        blob[bit / 8] ^= 1 << (bit % 8);
        let forged = format!("v1:k2:{}", URL_SAFE_NO_PAD.encode(&blob));
        prop_assert_eq!(c.decrypt(&forged, &aad).err(), Some(CipherError::Decrypt));
    }
}
