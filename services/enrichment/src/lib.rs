//! The enrichment service (port 3002, database `battlescope_enrichment`).
//!
//! Consumes `killmail.ingested`, resolves everything a reader needs — ship type, group and
//! class, system, constellation, region, security status and type from the bundled SDE;
//! character, corporation and alliance names from ESI in bulk; ISK from zKillboard or from
//! market prices — and publishes `killmail.enriched` ([`bs_events::KillmailEnriched`])
//! through the outbox, so no consumer ever calls back.
//!
//! Code map:
//! * [`domain`]: the pure enrichment function (no IO, no clock).
//! * [`knowledge`]: names, ESI-fallback types/systems and prices, behind memory → cache →
//!   database → ESI layers with deadlines.
//! * [`tickers`]: corporation and alliance tickers (memory → database → ESI, bundled for the
//!   offline demo).
//! * [`consumer`]: the batch pipeline, the background name resolver and re-enrichment.
//! * [`store`]: the `EnrichmentStore` trait and its SQL implementation.
//! * [`api`]: `GET /killmails/{id}`, `GET /killmails?ids=`, `GET /status`.
//!
//! Architecture invariant: the pipeline never waits on ESI longer than
//! [`PipelineSettings::inline_deadline`]; what is unknown is published as pending and
//! re-published, with a higher `revision`, once resolved.

pub mod api;
pub mod bundled_names;
pub mod consumer;
pub mod domain;
pub mod knowledge;
pub mod retention;
pub mod store;
pub mod tickers;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bs_config::{Config, ServiceName};
use bs_events::topics;
use bs_runtime::{
    BusCheck, ConsumerOptions, DatabaseCheck, ServiceContext, ServiceHandle, run_consumer,
};
use bs_sde::StaticData;
use bs_store::MigrationSet;

pub use consumer::{BatchReport, Enricher, PipelineSettings};
pub use knowledge::{Knowledge, Ttls};
pub use store::{EnrichmentStore, SqlEnrichmentStore};

/// The service's schema and the outbox, for `battlescope migrate`.
pub const MIGRATIONS: &[MigrationSet] = &[
    bs_store::migrations!(
        "enrichment",
        [(1, "init"), (2, "lifecycle"), (3, "compact_rows")]
    ),
    bs_store::outbox::MIGRATIONS,
];

/// The consumer group on `killmail.ingested`.
pub const CONSUMER_GROUP: &str = "enrichment";

/// The static data: an imported bundle in `<data_dir>/sde` when there is one (written by
/// `battlescope sde import`), else the bundle compiled into the binary.
pub fn load_static_data(config: &Config) -> anyhow::Result<&'static StaticData> {
    let dir = config.data_dir.join("sde");
    if dir.join("manifest.json").exists() {
        let data = StaticData::load_dir(&dir)
            .with_context(|| format!("loading static data from {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), version = data.version(), "using imported static data");
        // Loaded once per process start and kept for its lifetime.
        return Ok(Box::leak(Box::new(data)));
    }
    Ok(StaticData::bundled())
}

/// The ESI client configuration from the service configuration.
pub fn esi_config(config: &Config) -> bs_esi::EsiConfig {
    bs_esi::EsiConfig {
        base_url: config.esi.url.trim_end_matches('/').to_owned(),
        user_agent: bs_esi::user_agent_with_contact(&config.contact),
        compatibility_date: config.esi.compatibility_date.clone(),
        max_concurrency: usize::try_from(config.esi.max_concurrency)
            .unwrap_or(8)
            .max(1),
        ..bs_esi::EsiConfig::default()
    }
}

/// TTLs from the configuration (`enrichment.name_ttl`).
pub fn ttls(config: &Config) -> anyhow::Result<Ttls> {
    let name = humantime::parse_duration(&config.enrichment.name_ttl)
        .with_context(|| format!("enrichment.name_ttl `{}`", config.enrichment.name_ttl))?;
    Ok(Ttls {
        name,
        ..Ttls::default()
    })
}

/// The ticker policy from the configuration (`enrichment.corporation_ticker_*`,
/// `enrichment.ticker_window`).
pub fn ticker_policy(config: &Config) -> anyhow::Result<tickers::TickerPolicy> {
    let e = &config.enrichment;
    let window = humantime::parse_duration(&e.ticker_window)
        .with_context(|| format!("enrichment.ticker_window `{}`", e.ticker_window))?;
    Ok(tickers::TickerPolicy {
        corporation_min_killmails: e.corporation_ticker_min_killmails.max(1),
        window,
        corporation_calls_per_minute: match e.corporation_ticker_calls_per_minute {
            0 => u32::MAX,
            n => n,
        },
    })
}

/// Starts the service: opens its database, spawns the consumer, the outbox relay, the
/// name resolver and (live mode) the daily price refresh, and returns its router.
pub async fn start(ctx: &ServiceContext) -> anyhow::Result<ServiceHandle> {
    let db = ctx
        .open_database(ServiceName::Enrichment, MIGRATIONS)
        .await?;
    let store: Arc<dyn EnrichmentStore> = Arc::new(SqlEnrichmentStore::new(db.clone()));
    let sde = load_static_data(&ctx.config)?;
    // Offline (demo): no upstream calls at all; names stay pending, prices are bundled.
    let esi = if ctx.offline {
        None
    } else {
        Some(bs_esi::EsiClient::new(esi_config(&ctx.config)).context("esi client")?)
    };
    let knowledge = Arc::new(Knowledge::new(
        sde,
        Arc::clone(&store),
        Arc::clone(&ctx.cache),
        esi,
        ttls(&ctx.config)?,
    ));
    knowledge.tickers.set_policy(ticker_policy(&ctx.config)?);
    knowledge.load(ctx.clock.now().timestamp_millis()).await?;
    if ctx.offline {
        // No ESI in the demo: real names from the bundled snapshot instead of "pending".
        knowledge.seed_names(
            bundled_names::snapshot(),
            ctx.clock.now().timestamp_millis(),
        );
        knowledge
            .tickers
            .seed(tickers::bundled(), ctx.clock.now().timestamp_millis());
    }
    let enricher = Arc::new(Enricher::new(
        Arc::clone(&knowledge),
        Arc::clone(&store),
        Arc::clone(&ctx.clock),
        PipelineSettings::default(),
    ));
    ctx.bus
        .ensure_topics(topics::ALL)
        .await
        .context("creating topics")?;

    let router = api::router(api::ApiState {
        enricher: Arc::clone(&enricher),
        store: Arc::clone(&store),
        clock: Arc::clone(&ctx.clock),
    });
    let router = router.merge(retention::router(retention::LifecycleState {
        db: db.clone(),
        clock: Arc::clone(&ctx.clock),
        config: ctx.config.lifecycle.clone(),
        shutdown: ctx.shutdown.clone(),
    }));
    let mut handle = ServiceHandle::new(ServiceName::Enrichment, router)
        .with_check(Arc::new(DatabaseCheck(db.clone())))
        .with_check(Arc::new(BusCheck(Arc::clone(&ctx.bus))));

    let consumer = Arc::clone(&enricher);
    handle.spawn(run_consumer(
        Arc::clone(&ctx.bus),
        ConsumerOptions::new(CONSUMER_GROUP, &[topics::KILLMAIL_INGESTED]),
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
    // Never scheduled offline: the demo's bundled fights are years old.
    if !ctx.offline {
        let retention = retention::Retention {
            db,
            clock: Arc::clone(&ctx.clock),
            config: ctx.config.lifecycle.clone(),
        };
        handle.spawn(retention.run(ctx.shutdown.clone()));
    }
    handle.spawn(Arc::clone(&enricher).run_background(ctx.shutdown.clone()));
    if !ctx.offline && ctx.config.enrichment.refresh_prices {
        handle.spawn(refresh_prices_daily(
            knowledge,
            Arc::clone(&ctx.clock),
            ctx.shutdown.clone(),
        ));
    }
    Ok(handle)
}

/// Live mode: refresh `/markets/prices` at start (unless a stored copy is fresh) and then
/// once a day; on failure retry hourly, valuing with what is loaded meanwhile.
async fn refresh_prices_daily(
    knowledge: Arc<Knowledge>,
    clock: Arc<dyn bs_runtime::Clock>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let day = Duration::from_secs(86_400);
    let mut wait = if knowledge.prices_source() == "bundled" {
        Duration::ZERO
    } else {
        day
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        wait = match knowledge
            .refresh_prices(clock.now().timestamp_millis())
            .await
        {
            Ok(_) => day,
            Err(e) => {
                tracing::warn!(error = %e, "price refresh failed; keeping current prices");
                Duration::from_secs(3600)
            }
        };
    }
}
