//! The ingestion service (being built).

use bs_config::ServiceName;
use bs_runtime::{ServiceContext, ServiceHandle};

/// Starts the service: opens its database, spawns its tasks, returns its router.
pub async fn start(_ctx: &ServiceContext) -> anyhow::Result<ServiceHandle> {
    Ok(ServiceHandle::new(ServiceName::Ingestion, axum::Router::new()))
}
