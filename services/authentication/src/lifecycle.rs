//! Audit-log retention (#12): `lifecycle.audit_log_days` (0: keep forever) removes audit
//! entries older than the cutoff, daily in the two hours after `lifecycle.retention_at`
//! (never at start-up), in batches of `lifecycle.retention_batch`, one transaction each.
//!
//! The log is hash-chained and the schema refuses UPDATE/DELETE, so a prune first writes
//! an anchor (seq and hash of the last entry it removes) and only then deletes the prefix
//! the anchor covers (the delete trigger allows nothing else); verification starts from
//! the newest anchor. Each batch appends, in its own transaction, an `audit.pruned` entry
//! (count, cutoff, the anchor) to the chain itself, so every prune is on record in what
//! remains and verification can tell an anchor the service wrote from one it did not.
//! Runs (totals) are recorded in `retention_runs`; `GET /lifecycle` shows the rule, the
//! newest anchor and the recent runs.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bs_config::LifecycleConfig;
use bs_runtime::Clock;
use bs_runtime::retention;
use bs_store::Database;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::store::AuthStore;

/// The retention kind (rules, runs, metrics label).
pub const AUDIT_LOG: &str = "audit_log";

pub use bs_runtime::retention::{RetentionRun, metric};

/// The newest runs first.
pub async fn runs(db: &Database, limit: i64) -> anyhow::Result<Vec<RetentionRun>> {
    retention::recent_runs(db, limit).await
}

/// Prunes the audit log up to the rule's cutoff in batches; `None` when no rule applies.
pub async fn run_retention(
    store: &dyn AuthStore,
    db: &Database,
    clock: &dyn Clock,
    config: &LifecycleConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<RetentionRun>> {
    let now = clock.now();
    let Some(cut) = retention::days_cutoff(now, config.audit_log_days) else {
        return Ok(None);
    };
    let limit = i64::from(config.retention_batch.clamp(1, 10_000));
    let run = retention::run_batches(
        db,
        clock,
        &retention::run_id(now),
        AUDIT_LOG,
        cut,
        shutdown,
        || async move {
            let pruned = store.prune_audit_batch(cut, limit, clock.now()).await?;
            Ok(pruned.map_or(0, |a| u64::try_from(a.pruned).unwrap_or(0)))
        },
    )
    .await?;
    Ok(Some(run))
}

/// The daily scheduler.
pub struct Retention {
    pub store: Arc<dyn AuthStore>,
    pub db: Database,
    pub clock: Arc<dyn Clock>,
    pub config: LifecycleConfig,
}

impl Retention {
    pub async fn run(self, shutdown: CancellationToken) {
        let at = self.config.retention_minute().unwrap_or(120);
        let (store, db, clock, config, token) = (
            &*self.store,
            &self.db,
            &*self.clock,
            &self.config,
            &shutdown,
        );
        let job = move || async move {
            run_retention(store, db, clock, config, token)
                .await
                .map(drop)
        };
        retention::run_daily(
            self.db.clone(),
            Arc::clone(&self.clock),
            at,
            "authentication",
            shutdown.clone(),
            job,
        )
        .await;
    }
}

#[derive(Clone)]
pub struct LifecycleState {
    pub store: Arc<dyn AuthStore>,
    pub db: Database,
    pub config: LifecycleConfig,
}

/// `GET /lifecycle` (read-only, like the other services' documents).
pub fn router(state: LifecycleState) -> Router {
    Router::new()
        .route("/lifecycle", get(status))
        .with_state(state)
}

fn internal(e: anyhow::Error) -> Response {
    tracing::error!(error = %e, "authentication lifecycle api error");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": "internal error"})),
    )
        .into_response()
}

async fn status(State(s): State<LifecycleState>) -> Response {
    let anchor = match s.store.audit_anchor().await {
        Ok(a) => a,
        Err(e) => return internal(e.into()),
    };
    match runs(&s.db, 20).await {
        // Rules are in days here (the other services' are months); the key says so.
        Ok(r) => Json(json!({
            "retention_at": s.config.retention_at,
            "rules": { "audit_log_days": s.config.audit_log_days },
            "audit_anchor": anchor,
            "retention_runs": r,
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}
