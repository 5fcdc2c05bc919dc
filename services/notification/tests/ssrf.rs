//! The SSRF table: every non-public range, literal tricks, a name resolving to loopback, and a
//! redirect to loopback (through the real sender), all refused; allowlisted hosts pass.

use bs_notification::delivery::webhook::{SenderSettings, send_once};
use bs_notification::domain::retry::Attempt;
use bs_notification::ssrf::{AllowList, SsrfError, check_url, is_public, resolve};
use bs_notification::store::DueDelivery;

#[tokio::test]
async fn private_and_special_addresses_are_refused() {
    let none = AllowList::default();
    let refused = [
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://172.16.0.1/x",
        "https://172.31.255.255/x",
        "https://192.168.1.1/x",
        "https://169.254.169.254/latest/meta-data",
        "https://169.254.1.1/x",
        "https://100.64.0.1/x",
        "https://100.127.255.254/x",
        "https://0.0.0.0/x",
        "https://224.0.0.1/x",
        "https://255.255.255.255/x",
        "https://[::1]/x",
        "https://[::]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[::ffff:169.254.169.254]/x",
        "https://[fc00::1]/x",
        "https://[fd12:3456::1]/x",
        "https://[fe80::1]/x",
        "https://[ff02::1]/x",
        // Decimal, octal and hex forms of 127.0.0.1: the URL parser normalises them.
        "https://2130706433/x",
        "https://0177.0.0.1/x",
        "https://0x7f.1/x",
        "https://017700000001/x",
    ];
    for raw in refused {
        let r = check_url(raw, &none);
        assert!(matches!(r, Err(SsrfError::Forbidden(_))), "{raw}: {r:?}");
    }
    for ok in [
        "https://8.8.8.8/x",
        "https://[2606:4700::1111]/x",
        "https://discord.com/api/webhooks/1/abc",
    ] {
        assert!(check_url(ok, &none).is_ok(), "{ok}");
    }
    assert!(!is_public("100.64.0.0".parse().unwrap()));
    assert!(
        is_public("100.128.0.0".parse().unwrap()),
        "just outside CGNAT"
    );
    assert!(
        is_public("172.32.0.1".parse().unwrap()),
        "just outside 172.16/12"
    );
}

#[tokio::test]
async fn scheme_userinfo_port_and_allowlist() {
    let none = AllowList::default();
    assert_eq!(
        check_url("http://example.com/x", &none),
        Err(SsrfError::NotHttps)
    );
    assert_eq!(
        check_url("ftp://example.com/x", &none),
        Err(SsrfError::NotHttps)
    );
    assert_eq!(
        check_url("https://discord.com@evil.example/x", &none),
        Err(SsrfError::UserInfo)
    );
    assert_eq!(
        check_url("https://example.com:22/x", &none),
        Err(SsrfError::Port(22))
    );
    assert!(check_url("not a url", &none).is_err());

    let allow = AllowList::parse("127.0.0.1:8080, hooks.internal");
    assert!(check_url("http://127.0.0.1:8080/x", &allow).is_ok());
    assert!(
        check_url("http://127.0.0.1:8081/x", &allow).is_err(),
        "other port"
    );
    assert!(check_url("http://hooks.internal/x", &allow).is_ok());
    let u = check_url("http://127.0.0.1:8080/x", &allow).unwrap();
    assert_eq!(
        resolve(&u, &allow).await.unwrap().to_string(),
        "127.0.0.1:8080"
    );
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_send_time() {
    let none = AllowList::default();
    // The form is fine (a name); the address is not.
    let u = check_url("https://localhost/x", &none).unwrap();
    let r = resolve(&u, &none).await;
    assert!(
        matches!(r, Err(SsrfError::Forbidden(ip)) if ip.is_loopback()),
        "{r:?}"
    );
    // The sender refuses before any request, and does not retry.
    let d = DueDelivery {
        id: 1,
        webhook_id: 1,
        url: "https://localhost:443/x".into(),
        body: "{}".into(),
        attempts: 0,
        rate_limited: 0,
    };
    let attempt = send_once(&d, &none, &SenderSettings::default()).await;
    assert!(matches!(attempt, Attempt::Refused(_)), "{attempt:?}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The target of the redirect counts hits: it must see none.
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let target = axum::Router::new().route(
        "/secret",
        axum::routing::any(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async { "secret" }
        }),
    );
    let tl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taddr = tl.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(tl, target).await.unwrap() });
    let loc = format!("http://{taddr}/secret");
    let redirector = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || async move {
            (axum::http::StatusCode::FOUND, [("location", loc)], "")
        }),
    );
    let rl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raddr = rl.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(rl, redirector).await.unwrap() });
    // Only the redirector is allowlisted; even so the sender must not follow.
    let allow = AllowList::parse(&raddr.to_string());
    let d = DueDelivery {
        id: 1,
        webhook_id: 1,
        url: format!("http://{raddr}/hook"),
        body: "{}".into(),
        attempts: 0,
        rate_limited: 0,
    };
    let attempt = send_once(&d, &allow, &SenderSettings::default()).await;
    assert!(
        matches!(attempt, Attempt::Status { code: 302, .. }),
        "{attempt:?}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}
