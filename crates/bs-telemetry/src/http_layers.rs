//! The middleware stack every service router gets.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Wraps a service router with request ids, access logs, HTTP metrics, panic
/// recovery, a body size limit and a request timeout.
pub fn standard_layers(router: Router, service: &'static str) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    router
        .layer(middleware::from_fn(move |req, next| {
            observe(service, req, next)
        }))
        .layer(CatchPanicLayer::custom(|_| {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }))
        .layer(RequestBodyLimitLayer::new(4 * 1024 * 1024))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Logs one line per request with its id and records
/// `battlescope_http_requests_total` / `battlescope_http_request_duration_seconds`.
async fn observe(service: &'static str, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    // The route template, not the raw path, keeps label cardinality bounded.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %request_id, service);
    let response = {
        let _enter = span.enter();
        drop(_enter);
        tracing::Instrument::instrument(next.run(req), span.clone()).await
    };
    let status = response.status().as_u16();
    let elapsed = start.elapsed().as_secs_f64();
    let labels = [
        ("service", service.to_owned()),
        ("method", method.to_string()),
        ("route", route.clone()),
        ("status", status.to_string()),
    ];
    metrics::counter!("battlescope_http_requests_total", &labels).increment(1);
    metrics::histogram!(
        "battlescope_http_request_duration_seconds",
        &[("service", service.to_owned()), ("route", route.clone())]
    )
    .record(elapsed);
    if route != "/health" && route != "/metrics" && route != "/ready" {
        tracing::info!(parent: &span, method = %method, path = %path, route = %route, status, duration_ms = elapsed * 1000.0, "request");
    }
    response
}
