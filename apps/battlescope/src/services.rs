//! The registry of services: how to start each one and which migrations it owns.

use bs_config::ServiceName;
use bs_runtime::{ServiceContext, ServiceHandle};
use bs_store::MigrationSet;

/// Start order in one process: producers before consumers, the BFF (which
/// calls the others) and the web UI last.
pub const START_ORDER: &[ServiceName] = &[
    ServiceName::Authentication,
    ServiceName::Ingestion,
    ServiceName::Enrichment,
];

/// Starts one service.
pub async fn start(name: ServiceName, ctx: &ServiceContext) -> anyhow::Result<ServiceHandle> {
    match name {
        ServiceName::Ingestion => bs_ingestion::start(ctx).await,
        ServiceName::Authentication => bs_authentication::start(ctx).await,
        ServiceName::Enrichment => bs_enrichment::start(ctx).await,
        other => anyhow::bail!("the {other} service is not part of this build yet"),
    }
}

/// The migrations of a service's database (empty: it has none).
pub fn migrations(name: ServiceName) -> Vec<MigrationSet> {
    match name {
        ServiceName::Ingestion => vec![bs_store::outbox::MIGRATIONS, bs_ingestion::MIGRATIONS],
        ServiceName::Authentication => vec![bs_authentication::MIGRATIONS],
        ServiceName::Enrichment => bs_enrichment::MIGRATIONS.to_vec(),
        _ => Vec::new(),
    }
}
