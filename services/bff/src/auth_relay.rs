//! Relays the browser's login and account requests to the authentication service in split mode.
//!
//! In all-in-one mode the authentication service's user-facing routes (`/auth/*`, `/me*`,
//! `/authorize`, see [`bs_authentication::api::USER_FACING_PATHS`]) sit on the one listener next to
//! the web UI. In split mode the browser still talks only to the web/BFF port, so those paths
//! are forwarded here, unchanged, to the authentication service's own port: same method, path,
//! query, headers (cookies, `Origin`, CSRF token) and body; the answer comes back as it is,
//! redirects included (`/auth/login` answers 303 to EVE SSO, which the browser must follow,
//! not this relay), with every `Set-Cookie`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

/// Request bodies the relay accepts (login forms and small JSON documents).
const MAX_BODY: usize = 256 * 1024;

/// Hop-by-hop headers (RFC 9110 §7.6.1) are never forwarded; `host` is set by the client.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

#[derive(Clone)]
struct Relay {
    base_url: String,
    client: reqwest::Client,
}

/// Routes [`bs_authentication::api::USER_FACING_PATHS`] to the authentication service at `base_url`.
pub fn router(base_url: &str) -> Router {
    let client = reqwest::Client::builder()
        // The browser follows redirects (to EVE SSO, back to a page), never the relay.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    let relay = Relay {
        base_url: base_url.trim_end_matches('/').to_owned(),
        client,
    };
    bs_authentication::api::USER_FACING_PATHS
        .iter()
        .fold(Router::new(), |r, path| r.route(path, any(forward)))
        .with_state(relay)
}

async fn forward(State(relay): State<Relay>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
    };
    let Ok(method) = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()) else {
        return (StatusCode::METHOD_NOT_ALLOWED, "unsupported method").into_response();
    };
    let mut outgoing = relay
        .client
        .request(method, format!("{}{path_and_query}", relay.base_url));
    for (name, value) in forwardable(&parts.headers) {
        outgoing = outgoing.header(name.as_str(), value.as_bytes());
    }
    // The authentication service trusts X-Forwarded-For only from its configured proxy hops.
    if let Some(peer) = peer {
        let chain = match parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prior) => format!("{prior}, {peer}"),
            None => peer,
        };
        outgoing = outgoing.header("x-forwarded-for", chain);
    }
    if !body.is_empty() {
        outgoing = outgoing.body(body);
    }
    let answer = match outgoing.send().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, path = %parts.uri.path(), "authentication service unreachable");
            return (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "The login service is not reachable right now; try again in a moment.",
            )
                .into_response();
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            // `append`, not `insert`: a login sets several cookies.
            headers.append(n, v);
        }
    }
    let body = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "authentication service answer cut short");
            return StatusCode::BAD_GATEWAY.into_response();
        }
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn forwardable(headers: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()) && *name != "x-forwarded-for")
}
