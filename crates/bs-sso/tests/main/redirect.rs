//! The open-redirect table for `return_to`, plus property tests.

use bs_sso::safe_return_to;
use proptest::prelude::*;
use url::Url;

#[test]
fn same_origin_paths_are_kept() {
    for (input, expected) in [
        ("/", "/"),
        ("/battles", "/battles"),
        (
            "/battles/42?tab=timeline#top",
            "/battles/42?tab=timeline#top",
        ),
        (
            "/search?q=%2F%2Fnot-a-redirect",
            "/search?q=%2F%2Fnot-a-redirect",
        ),
        ("/a//b", "/a//b"),
        ("/a/./b/../c", "/a/c"),
        ("/killmails/123456789", "/killmails/123456789"),
    ] {
        assert_eq!(safe_return_to(input).as_deref(), Some(expected), "{input}");
    }
}

#[test]
fn open_redirect_table_is_rejected() {
    for input in [
        "",
        "//evil.com",
        "///evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "\\/evil.com",
        "https://evil.com",
        "http:evil.com",
        "http://battlescope.test@evil.com",
        "javascript:alert(1)",
        "data:text/html,<script>",
        "evil.com",
        "battles",
        "./battles",
        "/%2F%2Fevil.com",
        "/%2f%2fevil.com",
        "%2F%2Fevil.com",
        "/%5Cevil.com",
        "/%5cevil.com",
        "/%252F%252Fevil.com",
        "/%25252F%25252Fevil.com",
        "/%2525252525252F/evil.com",
        "/\t/evil.com",
        "/\n/evil.com",
        "/\r\nLocation: https://evil.com",
        "/%0d%0aSet-Cookie:x=1",
        "/%09/evil.com",
        "/%00",
        "/ /evil.com",
        "/\u{3000}/evil.com",
        "/\u{ff0f}evil.com",
        "/..//evil.com",
        "/.//evil.com",
        "/a/../..//evil.com",
        "/%2e%2e//evil.com",
        "/%C0%AF",
        "/%ff",
    ] {
        assert_eq!(safe_return_to(input), None, "{input:?}");
    }
    let long = format!("/{}", "a".repeat(5000));
    assert_eq!(safe_return_to(&long), None);
}

proptest! {
    /// Whatever the input, an accepted value is a same-origin path that is itself accepted
    /// unchanged (idempotent) and resolves onto the same origin for any site base.
    #[test]
    fn prop_accepted_values_stay_on_origin(input in "\\PC{0,40}|/[ -~]{0,40}|/%[0-9a-fA-F]{2}[ -~]{0,20}") {
        if let Some(out) = safe_return_to(&input) {
            prop_assert!(out.starts_with('/'));
            prop_assert!(!out.starts_with("//") && !out.starts_with("/\\"));
            prop_assert!(out.chars().all(|c| c.is_ascii_graphic() && c != '\\'));
            prop_assert_eq!(safe_return_to(&out), Some(out.clone()));
            let base = Url::parse("https://battlescope.example/app/").unwrap();
            prop_assert_eq!(base.join(&out).unwrap().origin(), base.origin());
        }
    }

    /// Strings built from the pieces open-redirect payloads are made of.
    #[test]
    fn prop_adversarial_pieces_never_escape(pieces in proptest::collection::vec(prop_oneof![
        Just("/"), Just("\\"), Just("%2f"), Just("%2F"), Just("%5c"), Just("%5C"), Just("%25"),
        Just("%252f"), Just("."), Just(".."), Just("%2e"), Just("evil.com"), Just("\t"), Just("%09"),
        Just("@"), Just(":"), Just("?"), Just("#"), Just("a"), Just("https:"), Just("%0a"), Just(" "),
    ], 1..10)) {
        let input: String = pieces.concat();
        if let Some(out) = safe_return_to(&input) {
            let base = Url::parse("https://battlescope.example/").unwrap();
            let joined = base.join(&out).unwrap();
            prop_assert_eq!(joined.origin(), base.origin());
            prop_assert!(!out.starts_with("//") && !out.contains('\\'));
            // Decoding the output any number of times never yields a network-path reference.
            let mut layer = out.clone();
            for _ in 0..5 {
                prop_assert!(!layer.starts_with("//") && !layer.starts_with("/\\"), "{} -> {}", input, layer);
                layer = percent_decode(&layer);
            }
        }
    }

    /// Plain application paths are never refused.
    #[test]
    fn prop_plain_paths_are_accepted(segs in proptest::collection::vec("[a-z0-9_-]{1,12}", 0..6)) {
        let path = format!("/{}", segs.join("/"));
        prop_assert_eq!(safe_return_to(&path), Some(path.clone()));
    }
}

/// One round of percent-decoding, independent of the implementation under test.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
