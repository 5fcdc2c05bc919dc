//! The ingestion service: where every killmail enters BattleScope.
//!
//! Sources ([`sources`]): the R2Z2 live feed, backfill jobs (zKillboard
//! history + ESI, EVE Ref archives), local files and the legacy RedisQ feed,
//! all behind one [`sources::Source`] trait and one [`pipeline::Pipeline`]
//! (parse → validate → ruleset). The store ([`store`]) deduplicates by the
//! `killmail_events` primary key and writes each step — rows, rejects, gaps,
//! cursor and the `killmail.ingested` outbox rows — in one transaction, so
//! nothing is lost and nothing is announced twice as new. The outbox relay
//! moves events to the bus.
//!
//! Entry points: [`start`] (the service), [`import_paths`] (`battlescope
//! import`) and [`backfill`] (`battlescope backfill`).

pub mod api;
pub mod domain;
pub mod lifecycle;
pub mod pipeline;
pub mod retention;
pub mod sources;
pub mod store;
pub mod verification;

use std::path::PathBuf;
use std::sync::Arc;

use bs_config::{Config, ServiceName};
use bs_runtime::{Clock, DatabaseCheck, ServiceContext, ServiceHandle, SystemClock};
use bs_store::{MigrationSet, outbox};
use chrono::NaiveDate;
use tokio_util::sync::CancellationToken;

pub use api::{IngestionApi, Stats};
pub use sources::files::ImportSummary;
pub use store::{IngestionStore, SqlIngestionStore};

use crate::pipeline::Pipeline;
use crate::sources::backfill::{BackfillRunner, Registry, Upstreams};
use crate::sources::r2z2::{R2z2Options, R2z2Source};
use crate::sources::{IngestCtx, LiveStatus, Source, duration};

/// The service's own schema.
pub const MIGRATIONS: MigrationSet = bs_store::migrations!(
    "ingestion",
    [(1, "init"), (2, "lifecycle"), (3, "raw_zstd")]
);

/// Opens (and migrates) the ingestion database and builds the shared context.
pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<IngestCtx>> {
    let db = bs_runtime::open_database(
        config,
        ServiceName::Ingestion,
        &[outbox::MIGRATIONS, MIGRATIONS],
    )
    .await?;
    let store = SqlIngestionStore::new(db);
    let ruleset = store.ruleset().await?;
    Ok(Arc::new(IngestCtx {
        store,
        pipeline: Arc::new(Pipeline::new(ruleset)),
        clock,
        live: Arc::new(LiveStatus::default()),
        contact: config.contact.clone(),
    }))
}

/// Starts the service: database, outbox relay, live sources, backfill runner, API.
pub async fn start(ctx: &ServiceContext) -> anyhow::Result<ServiceHandle> {
    let ingest = open(&ctx.config, Arc::clone(&ctx.clock)).await?;
    let cfg = &ctx.config.ingestion;
    let registry = Arc::new(Registry::default());
    let api = IngestionApi {
        ctx: Arc::clone(&ingest),
        registry: Arc::clone(&registry),
    };
    let upstreams = Upstreams::from_config(&ctx.config)?;
    let lifecycle_state = lifecycle::LifecycleState {
        ctx: Arc::clone(&ingest),
        upstreams: upstreams.clone(),
        config: ctx.config.lifecycle.clone(),
        shutdown: ctx.shutdown.clone(),
    };
    let router = api.router().merge(lifecycle::router(lifecycle_state));
    let mut handle = ServiceHandle::new(ServiceName::Ingestion, router)
        .with_check(Arc::new(DatabaseCheck(ingest.store.database().clone())));

    let relay = outbox::OutboxRelay::new(ingest.store.database().clone(), Arc::clone(&ctx.bus));
    handle.spawn(relay.run(ctx.shutdown.clone()));

    // Daily verification (and start-up gap detection) talks to zKillboard: not offline.
    if ctx.config.lifecycle.verify && !ctx.offline {
        let verifier = verification::Verifier {
            upstreams: upstreams.clone(),
            config: ctx.config.lifecycle.clone(),
        };
        handle.spawn(verifier.run(Arc::clone(&ingest), ctx.shutdown.clone()));
    }
    // The scheduled retention never runs offline: the demo's bundled sample fights are years
    // old and would be due at once (`POST /retention/run` still works).
    if !ctx.offline {
        let retention = retention::Retention {
            config: ctx.config.lifecycle.clone(),
        };
        handle.spawn(retention.run(Arc::clone(&ingest), ctx.shutdown.clone()));
    }
    let runner = BackfillRunner {
        upstreams: upstreams.clone(),
        registry,
    };
    handle.spawn(runner.run(Arc::clone(&ingest), ctx.shutdown.clone()));

    let options = R2z2Options {
        head_wait: duration(&cfg.r2z2_head_wait, R2z2Options::default().head_wait),
        backoff: duration(&cfg.r2z2_backoff, R2z2Options::default().backoff),
    };
    let mut live: Vec<Box<dyn Source>> = Vec::new();
    if cfg.live && !ctx.offline {
        let client = bs_zkb::r2z2::R2z2Client::new(
            &cfg.r2z2_url,
            &ctx.config.contact,
            cfg.r2z2_requests_per_second.clamp(1, 19),
        )?;
        live.push(Box::new(R2z2Source::new(client, options.clone())));
    }
    if !cfg.redisq_url.is_empty() && !ctx.offline {
        let queue = if cfg.redisq_queue_id.is_empty() {
            format!(
                "battlescope-{}",
                pipeline::fnv(&[ctx.config.contact.as_bytes()])
            )
        } else {
            cfg.redisq_queue_id.clone()
        };
        let client =
            bs_zkb::redisq::RedisqClient::new(&cfg.redisq_url, &ctx.config.contact, &queue, 10)?;
        live.push(Box::new(sources::redisq::RedisqSource {
            client,
            esi: upstreams.esi.clone(),
            backoff: options.backoff,
        }));
    }
    for source in live {
        let name = source.name();
        let ingest = Arc::clone(&ingest);
        let shutdown = ctx.shutdown.clone();
        handle.spawn(async move {
            if let Err(e) = source.run(ingest, shutdown).await {
                tracing::error!(source = name, error = %e, "ingestion source stopped");
            }
        });
    }
    Ok(handle)
}

/// `battlescope import PATH…`: imports files and folders, prints nothing itself
/// except the progress bar when `progress` is set.
pub async fn import_paths(
    config: &Config,
    paths: &[PathBuf],
    progress: bool,
) -> anyhow::Result<ImportSummary> {
    let ctx = open(config, Arc::new(SystemClock)).await?;
    let files = sources::files::expand(paths)?;
    let bar = progress.then(|| sources::files::progress_bar(false));
    let upstreams = Upstreams::from_config(config)?;
    let never = CancellationToken::new();
    let resolve_ctx = Arc::clone(&ctx);
    let summary = sources::files::import_into(
        &ctx.store,
        Arc::clone(&ctx.pipeline),
        files,
        ctx.clock.now(),
        bar,
        async |prepared: Vec<pipeline::Prepared>| {
            // RedisQ packages without a body: complete them from ESI.
            let mut out = Vec::with_capacity(prepared.len());
            for p in prepared {
                match p {
                    pipeline::Prepared::Reference {
                        killmail_id,
                        hash,
                        zkb,
                    } => {
                        let known = resolve_ctx
                            .store
                            .known_ids(&[killmail_id])
                            .await
                            .is_ok_and(|k| k.contains(&killmail_id));
                        if known {
                            continue;
                        }
                        if let Some(p) = sources::backfill::fetch_body_with(
                            &resolve_ctx,
                            &upstreams.esi,
                            killmail_id,
                            &hash,
                            zkb,
                            bs_domain::KillmailSource::File,
                            &never,
                        )
                        .await
                        {
                            out.push(p);
                        }
                    }
                    other => out.push(other),
                }
            }
            out
        },
    )
    .await?;
    ctx.store.database().close().await;
    Ok(summary)
}

/// `battlescope backfill --from --to --source`: runs one job in the foreground.
/// `source` is `everef` or `zkb_history`. Re-running the same range adds nothing.
pub async fn backfill(
    config: &Config,
    from: NaiveDate,
    to: NaiveDate,
    source: &str,
    progress: bool,
) -> anyhow::Result<store::JobRecord> {
    let ctx = open(config, Arc::new(SystemClock)).await?;
    let upstreams = Upstreams::from_config(config)?;
    let job = sources::backfill::create_job(&ctx, source, from, to, "cli").await?;
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(job.days_total as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} days ({eta}) {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    });
    let shutdown = CancellationToken::new();
    let ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let job = sources::backfill::run_job(
        &ctx,
        &upstreams,
        &Registry::default(),
        &job.id,
        &shutdown,
        bar.as_ref(),
    )
    .await?;
    if let Some(b) = bar {
        b.finish();
    }
    ctx.store.database().close().await;
    Ok(job)
}
