//! The split-mode relay of `/auth/*`, `/me*` and `/authorize` to the authentication service:
//! a stand-in upstream on a real port records what arrives and answers like the service does
//! (a redirect to SSO with two cookies), and the relay must pass both ways unchanged.

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse};
use axum::routing::{get, post};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    format!("http://{addr}")
}

fn upstream() -> Router {
    Router::new()
        .route(
            "/auth/login",
            get(|| async {
                (
                    StatusCode::SEE_OTHER,
                    AppendHeaders([
                        (
                            header::LOCATION,
                            "https://login.eveonline.com/v2/oauth/authorize?state=x",
                        ),
                        (
                            header::SET_COOKIE,
                            "battlescope_login=abc; HttpOnly; Path=/",
                        ),
                        (header::SET_COOKIE, "battlescope_csrf=def; Path=/"),
                    ]),
                )
            }),
        )
        .route(
            "/me/characters/primary",
            post(|headers: HeaderMap, body: String| async move {
                let get = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                serde_json::json!({
                    "cookie": get("cookie"),
                    "origin": get("origin"),
                    "content_type": get("content-type"),
                    "forwarded_for": get("x-forwarded-for"),
                    "body": body,
                })
                .to_string()
                .into_response()
            }),
        )
        .route(
            "/me",
            get(|| async { (StatusCode::UNAUTHORIZED, "no session") }),
        )
}

#[tokio::test]
async fn redirects_cookies_and_forms_pass_through_unchanged() {
    let auth = serve(upstream()).await;
    let web = serve(bs_bff::auth_relay::router(&auth)).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The redirect to EVE SSO reaches the browser; the relay did not follow it.
    let login = browser
        .get(format!("{web}/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert!(
        login.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with("https://login.eveonline.com/")
    );
    let cookies: Vec<_> = login
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 2, "both cookies arrive: {cookies:?}");

    // A form post keeps its cookie, Origin, content type and body; the peer is appended.
    let posted = browser
        .post(format!("{web}/me/characters/primary"))
        .header(header::COOKIE, "battlescope_session=s1")
        .header(header::ORIGIN, "https://battlescope.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("character_id=2112625428&csrf_token=t")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    let seen: serde_json::Value = posted.json().await.unwrap();
    assert_eq!(seen["cookie"], "battlescope_session=s1");
    assert_eq!(seen["origin"], "https://battlescope.example");
    assert_eq!(seen["content_type"], "application/x-www-form-urlencoded");
    assert_eq!(seen["body"], "character_id=2112625428&csrf_token=t");
    assert_eq!(seen["forwarded_for"], "127.0.0.1");

    // Error statuses come back as they are.
    let me = browser.get(format!("{web}/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);

    // Paths the relay does not own are not answered by it.
    let other = browser.get(format!("{web}/battles")).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unreachable_authentication_service_is_a_clear_502() {
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let web = serve(bs_bff::auth_relay::router(&format!("http://{closed}"))).await;
    let answer = reqwest::get(format!("{web}/auth/login")).await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
    assert!(answer.text().await.unwrap().contains("login service"));
}
