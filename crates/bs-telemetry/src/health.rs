//! `/health` (liveness), `/ready` (dependencies) and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;

/// A dependency a service needs to do its work (database, bus, cache, search…).
#[async_trait]
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> String;
    async fn check(&self) -> Result<(), String>;
}

#[derive(Debug, Serialize)]
pub struct ReadyReport {
    pub ready: bool,
    pub service: String,
    pub checks: Vec<CheckResult>,
}

#[derive(Debug, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone)]
struct OpsState {
    service: String,
    checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
}

/// The operational routes for `service` with its readiness checks.
pub fn ops_routes(service: &str, checks: Vec<Arc<dyn ReadinessCheck>>) -> Router {
    let state = OpsState {
        service: service.to_owned(),
        checks: Arc::new(checks),
    };
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn health(State(s): State<OpsState>) -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok", "service": s.service }))
}

async fn ready(State(s): State<OpsState>) -> impl IntoResponse {
    let mut checks = Vec::with_capacity(s.checks.len());
    for c in s.checks.iter() {
        // A hung dependency must not hang the probe.
        let result = tokio::time::timeout(Duration::from_secs(3), c.check())
            .await
            .unwrap_or_else(|_| Err("timed out after 3s".into()));
        checks.push(CheckResult {
            name: c.name(),
            ok: result.is_ok(),
            error: result.err(),
        });
    }
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(ReadyReport {
            ready,
            service: s.service,
            checks,
        }),
    )
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::render_metrics(),
    )
}
