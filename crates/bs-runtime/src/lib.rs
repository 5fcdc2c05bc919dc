//! The service runtime: what every service is given, and what it gives back.
//!
//! A service crate exposes one `async fn start(ctx: &ServiceContext) ->
//! anyhow::Result<ServiceHandle>`. The context holds the configuration, the
//! shared bus and cache, a [`Clock`] and the shutdown token; the service opens
//! its own database with [`ServiceContext::open_database`] (which migrates),
//! spawns its background tasks into the handle and returns its HTTP router.
//! The binary decides the topology: all handles in one process behind one
//! listener, or one handle per process on its own port. Services never know
//! which.

pub mod client;
pub mod consume;
pub mod parallel;
pub mod retention;

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use axum::Router;
use bs_bus::EventBus;
use bs_cache::Cache;
use bs_config::{Config, ServiceName};
use bs_store::{Database, MigrationSet, StoreTarget};
use bs_telemetry::ReadinessCheck;
use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use client::{ClientError, ServiceClient, ServiceDirectory, ServiceResponse};
pub use consume::{ConsumerOptions, run_consumer};

/// The source of "now". Domain logic takes time as a parameter; services read
/// it here so tests and replays can substitute their own.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// Wall-clock time.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Everything a service needs from its environment.
#[derive(Clone)]
pub struct ServiceContext {
    pub config: Arc<Config>,
    pub bus: Arc<dyn EventBus>,
    pub cache: Arc<dyn Cache>,
    pub clock: Arc<dyn Clock>,
    /// Cancelled on SIGTERM/SIGINT; background tasks stop taking work when it fires.
    pub shutdown: CancellationToken,
    /// True in `demo`: live upstream sources stay off.
    pub offline: bool,
    /// The other services, in-process or over HTTP.
    pub services: ServiceDirectory,
}

impl ServiceContext {
    /// Where `service`'s database lives under this configuration.
    pub fn store_target(&self, service: ServiceName) -> anyhow::Result<StoreTarget> {
        store_target(&self.config, service)
    }

    /// Opens and migrates `service`'s own database.
    pub async fn open_database(
        &self,
        service: ServiceName,
        migrations: &[MigrationSet],
    ) -> anyhow::Result<Database> {
        open_database(&self.config, service, migrations).await
    }
}

/// Where `service`'s database lives under `config`.
pub fn store_target(config: &Config, service: ServiceName) -> anyhow::Result<StoreTarget> {
    if config.store.url.is_empty() {
        return Ok(StoreTarget::Sqlite(
            config.sqlite_path(service.store_name()),
        ));
    }
    let database = config
        .store
        .database_name(service)
        .with_context(|| format!("service {service} keeps no relational state"))?;
    Ok(StoreTarget::Postgres {
        server_url: config.store.url.clone(),
        database,
    })
}

/// Opens and migrates a service's database (used by services and by `battlescope migrate`).
pub async fn open_database(
    config: &Config,
    service: ServiceName,
    migrations: &[MigrationSet],
) -> anyhow::Result<Database> {
    let target = store_target(config, service)?;
    let db = Database::open(&target, config.store.max_connections)
        .await
        .with_context(|| format!("opening the {service} database"))?;
    let report = db
        .migrate(migrations)
        .await
        .with_context(|| format!("migrating the {service} database"))?;
    if !report.applied.is_empty() {
        tracing::info!(service = %service, applied = report.applied.len(), "database migrated");
    }
    Ok(db)
}

/// What a started service hands back to the binary.
pub struct ServiceHandle {
    pub name: ServiceName,
    /// The service's HTTP API (without `/health`, `/ready`, `/metrics`: the binary adds those).
    pub router: Router,
    pub readiness: Vec<Arc<dyn ReadinessCheck>>,
    /// Background tasks; the binary awaits them after cancelling shutdown.
    pub tasks: Vec<JoinHandle<()>>,
}

impl ServiceHandle {
    pub fn new(name: ServiceName, router: Router) -> Self {
        Self {
            name,
            router,
            readiness: Vec::new(),
            tasks: Vec::new(),
        }
    }

    pub fn with_check(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        self.readiness.push(check);
        self
    }

    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }
}

/// Readiness of a service database.
pub struct DatabaseCheck(pub Database);

#[async_trait]
impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> String {
        format!("database:{}", self.0.label())
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

/// Readiness of the bus.
pub struct BusCheck(pub Arc<dyn EventBus>);

#[async_trait]
impl ReadinessCheck for BusCheck {
    fn name(&self) -> String {
        format!("bus:{}", self.0.kind())
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

/// Readiness of the cache.
pub struct CacheCheck(pub Arc<dyn Cache>);

#[async_trait]
impl ReadinessCheck for CacheCheck {
    fn name(&self) -> String {
        format!("cache:{}", self.0.kind())
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}
