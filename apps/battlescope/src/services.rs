//! The registry of services: how to start each one and which migrations it owns.

use bs_config::ServiceName;
use bs_runtime::{ServiceContext, ServiceHandle};
use bs_store::MigrationSet;

/// Start order in one process: producers before consumers, the BFF (which
/// calls the others) last.
pub const START_ORDER: &[ServiceName] = &[
    ServiceName::Authentication,
    ServiceName::Ingestion,
    ServiceName::Enrichment,
    ServiceName::Battle,
    ServiceName::Search,
    ServiceName::Notification,
    ServiceName::Bff,
];

/// Starts one service.
pub async fn start(name: ServiceName, ctx: &ServiceContext) -> anyhow::Result<ServiceHandle> {
    match name {
        ServiceName::Ingestion => bs_ingestion::start(ctx).await,
        ServiceName::Authentication => bs_authentication::start(ctx).await,
        ServiceName::Enrichment => bs_enrichment::start(ctx).await,
        ServiceName::Battle => bs_battle::start(ctx).await,
        ServiceName::Search => bs_search::start(ctx).await,
        // The web UI is rendered by the BFF crate: `serve web` and `serve bff` run the same router.
        ServiceName::Bff | ServiceName::Web => bs_bff::start(ctx).await,
        ServiceName::Notification => bs_notification::start(ctx).await,
    }
}

/// The migrations of a service's database (empty: it has none).
pub fn migrations(name: ServiceName) -> Vec<MigrationSet> {
    match name {
        ServiceName::Ingestion => vec![bs_store::outbox::MIGRATIONS, bs_ingestion::MIGRATIONS],
        ServiceName::Authentication => vec![bs_authentication::MIGRATIONS],
        ServiceName::Enrichment => bs_enrichment::MIGRATIONS.to_vec(),
        ServiceName::Battle => bs_battle::ALL_MIGRATIONS.to_vec(),
        ServiceName::Notification => bs_notification::MIGRATIONS.to_vec(),
        ServiceName::Search => bs_search::MIGRATIONS.to_vec(),
        ServiceName::Bff | ServiceName::Web => Vec::new(),
    }
}
