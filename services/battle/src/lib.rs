//! The battle service (port 3003, database `battlescope_battles`).
//!
//! Consumes `killmail.enriched`, groups killmails into battles with the order-independent
//! clusterer of `bs-clustering`, splits participants into sides, serves battle reports and
//! publishes `battle.created/updated/ended/merged` ([`bs_events::BattleSnapshot`]) through the
//! outbox.
//!
//! Code map:
//! * [`domain`]: glue to the pure core (edge mapping, adjacency, public ids, snapshots).
//! * [`consumer`]: [`Battles`], the consumer, the kill-time ticker and the sides refresher.
//! * [`store`]: the [`BattleStore`] trait and its SQL implementation (SQLite and PostgreSQL).
//! * [`api`]: the HTTP API (see its module doc for the routes and the redirect choice).
//! * [`settings`]: the clusterer settings (`GET/PUT/DELETE /settings`): stored in the battle
//!   database over the `[battle]` defaults, applied to the running clusterer.
//!
//! Architecture invariants: membership depends only on the set of killmails (kill time, never
//! arrival time); aggregates are recomputed from rows; every event goes through the outbox in
//! the transaction that makes it true; state survives restarts (the clusterer is rebuilt from
//! the stored killmails of the last reopen window, by kill time).

pub mod api;
pub mod consumer;
pub mod domain;
pub mod lifecycle;
pub mod recluster;
pub mod retention;
pub mod settings;
pub mod store;

use std::sync::Arc;

use anyhow::Context as _;
use bs_config::{BattleConfig, ServiceName};
use bs_events::topics;
use bs_runtime::{
    BusCheck, ConsumerOptions, DatabaseCheck, ServiceContext, ServiceHandle, run_consumer,
};
use bs_store::MigrationSet;

pub use api::{AllowAll, OverridePolicy};
pub use consumer::{Battles, IngestReport};
pub use domain::{EngineSettings, Geo};
pub use store::{BattleStore, SqlBattleStore};

/// The service's own schema.
pub const MIGRATIONS: MigrationSet = bs_store::migrations!(
    "battle",
    [
        (1, "init"),
        (2, "reports"),
        (3, "lifecycle"),
        (4, "settings"),
        (5, "history_queue"),
        (6, "killmail_pilots"),
        (7, "history_without_killmail_index"),
        (8, "killmail_data_zstd")
    ]
);

/// The service's schema and the outbox, for `battlescope migrate`.
pub const ALL_MIGRATIONS: &[MigrationSet] = &[bs_store::outbox::MIGRATIONS, MIGRATIONS];

/// The consumer group on `killmail.enriched`.
pub const CONSUMER_GROUP: &str = "battle";

/// Clustering settings from `[battle]`: `gap` is the link gap (and the quiet time that ends a
/// battle), `min_kills`/`min_pilots` the qualification thresholds, `reopen_window` how late a
/// killmail may still change battles; the rest keeps the defaults
/// justified in docs/design/battle-clustering.md. Settings stored through `PUT /settings`
/// take precedence ([`settings::effective`]).
pub fn engine_settings(config: &BattleConfig) -> anyhow::Result<EngineSettings> {
    Ok(settings::ClustererSettings::from_config(config)?.engine())
}

/// The settings in force for the database: the stored ones, else `[battle]`.
async fn effective_settings(
    db: &bs_store::Database,
    config: &BattleConfig,
) -> anyhow::Result<EngineSettings> {
    Ok(settings::effective(db, config)
        .await
        .context("reading the clusterer settings")?
        .0
        .engine())
}

/// Starts the service: opens its database, rebuilds the clusterer from it, spawns the outbox
/// relay, the consumer and the ticker/refresher, and returns its router.
pub async fn start(ctx: &ServiceContext) -> anyhow::Result<ServiceHandle> {
    let db = ctx
        .open_database(ServiceName::Battle, ALL_MIGRATIONS)
        .await?;
    let store: Arc<dyn BattleStore> = Arc::new(SqlBattleStore::new(db.clone()));
    let geo = Arc::new(Geo::from_static_data(bs_sde::StaticData::bundled()));
    // Fails on a bad `[battle]` even when stored settings override it: the fallback must work.
    engine_settings(&ctx.config.battle)?;
    let settings = effective_settings(&db, &ctx.config.battle).await?;
    let since = store
        .max_kill_time()
        .await?
        .map(|max| settings.working_set_since(max));
    let battles =
        Arc::new(Battles::open(store, geo, Arc::clone(&ctx.clock), settings.clone()).await?);
    // Opening rebuilt the working set under these settings (a changed `[battle]` counts too).
    settings::record_applied(&db, &settings, since, ctx.clock.now().timestamp_millis()).await?;
    ctx.bus
        .ensure_topics(topics::ALL)
        .await
        .context("creating topics")?;

    let router = api::router(api::ApiState {
        battles: Arc::clone(&battles),
        policy: Arc::new(AllowAll),
    })
    .merge(lifecycle::router(lifecycle::LifecycleState {
        battles: Arc::clone(&battles),
        db: db.clone(),
        config: ctx.config.lifecycle.clone(),
        shutdown: ctx.shutdown.clone(),
    }))
    .merge(settings::router(settings::SettingsState {
        battles: Arc::clone(&battles),
        db: db.clone(),
        config: ctx.config.battle.clone(),
        changing: Arc::default(),
    }));
    let mut handle = ServiceHandle::new(ServiceName::Battle, router)
        .with_check(Arc::new(DatabaseCheck(db.clone())))
        .with_check(Arc::new(BusCheck(Arc::clone(&ctx.bus))));
    let consumer = Arc::clone(&battles);
    let mut options = ConsumerOptions::new(CONSUMER_GROUP, &[topics::KILLMAIL_ENRICHED]);
    // A backlog (backfill) comes in big batches: one commit per 2,000 killmails.
    options.batch = 2000;
    // Small polls keep a live killmail's latency low; a backlog still comes in big batches.
    options.poll_timeout = std::time::Duration::from_millis(100);
    handle.spawn(run_consumer(
        Arc::clone(&ctx.bus),
        options,
        ctx.shutdown.clone(),
        move |batch| {
            let consumer = Arc::clone(&consumer);
            async move { consumer.handle_deliveries(batch).await }
        },
    ));
    handle.spawn(
        bs_store::outbox::OutboxRelay::new(db.clone(), Arc::clone(&ctx.bus))
            .run(ctx.shutdown.clone()),
    );
    handle.spawn(Arc::clone(&battles).run_background(ctx.shutdown.clone()));
    // Never scheduled offline: the demo's bundled fights are years old (the API still runs it).
    if !ctx.offline {
        let retention = retention::Retention {
            db: db.clone(),
            clock: Arc::clone(&ctx.clock),
            config: ctx.config.lifecycle.clone(),
        };
        handle.spawn(retention.run(ctx.shutdown.clone()));
    }
    Ok(handle)
}

/// `battlescope battles recluster --from --to [--dry-run]`: re-clusters a range of the stored
/// battles in this process (the service need not run; its events leave through the outbox
/// when it next starts).
pub async fn recluster_range(
    config: &bs_config::Config,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    dry_run: bool,
) -> anyhow::Result<recluster::Report> {
    let db = bs_runtime::open_database(config, ServiceName::Battle, ALL_MIGRATIONS).await?;
    let store: Arc<dyn BattleStore> = Arc::new(SqlBattleStore::new(db.clone()));
    let geo = Arc::new(Geo::from_static_data(bs_sde::StaticData::bundled()));
    // The settings the service runs with: stored ones first, as `start` does.
    let settings = effective_settings(&db, &config.battle).await?;
    let battles = Battles::open(store, geo, Arc::new(bs_runtime::SystemClock), settings).await?;
    let report = recluster::recluster(&battles, &db, from, to, dry_run).await;
    db.close().await;
    report
}
