//! The operational endpoints and the middleware stack, exercised in-process.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use bs_telemetry::{ReadinessCheck, ops_routes, standard_layers};
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Check(bool);

#[async_trait]
impl ReadinessCheck for Check {
    fn name(&self) -> String {
        if self.0 {
            "database".into()
        } else {
            "bus".into()
        }
    }
    async fn check(&self) -> Result<(), String> {
        if self.0 {
            Ok(())
        } else {
            Err("connection refused".into())
        }
    }
}

async fn boom() -> &'static str {
    panic!("handler bug")
}

fn app(checks: Vec<Arc<dyn ReadinessCheck>>) -> Router {
    let api = Router::new()
        .route("/killmails/{id}", get(|| async { "ok" }))
        .route("/boom", get(boom));
    standard_layers(api.merge(ops_routes("ingestion", checks)), "ingestion")
}

async fn get_body(app: &Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let res = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn health_ready_and_metrics() {
    bs_telemetry::install_metrics();
    let ok = app(vec![Arc::new(Check(true))]);
    let (status, headers, body) = get_body(&ok, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"service\":\"ingestion\""));
    assert!(
        headers.contains_key("x-request-id"),
        "every response carries a request id"
    );

    let (status, _, body) = get_body(&ok, "/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let failing = app(vec![Arc::new(Check(true)), Arc::new(Check(false))]);
    let (status, _, body) = get_body(&failing, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("connection refused"), "{body}");

    get_body(&ok, "/killmails/96977835").await;
    let (status, headers, body) = get_body(&ok, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    // Route templates, not raw paths, label the metrics.
    assert!(body.contains("route=\"/killmails/{id}\""), "{body}");
    assert!(!body.contains("96977835"));
}

#[tokio::test]
async fn a_given_request_id_is_propagated_and_panics_become_500() {
    let app = app(vec![]);
    let res = app
        .clone()
        .oneshot(
            Request::get("/health")
                .header("x-request-id", "abc-123")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let (status, _, body) = get_body(&app, "/boom").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!body.contains("handler bug"), "internals never leak");
}
