//! The two deployment shapes: everything in one process, or one service per process.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use bs_bus::{BusConfig, EventBus};
use bs_cache::{Cache, MemoryCache, RedisCache};
use bs_config::{BusKind, CacheKind, Config, ServiceName};
use bs_runtime::{
    BusCheck, CacheCheck, ServiceClient, ServiceContext, ServiceDirectory, ServiceHandle,
    SystemClock,
};
use bs_telemetry::{ReadinessCheck, ops_routes, standard_layers};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Offline, bundled sample data, development login.
    Demo,
    /// Live sources.
    Live,
}

/// Opens the shared infrastructure every service gets.
pub(crate) async fn context(config: Config, offline: bool) -> anyhow::Result<ServiceContext> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
    // Before any database is opened: every SQLite connection of the process takes it.
    bs_store::set_sqlite_cache_kib(config.store.sqlite_cache_kib);
    let bus_config = match config.bus.kind {
        BusKind::Embedded => BusConfig::embedded(config.data_dir.clone()),
        BusKind::Kafka => {
            let mut c = BusConfig::kafka(config.bus.brokers.clone(), "battlescope");
            if let bs_bus::BusKind::Kafka {
                partitions,
                idempotent,
                ..
            } = &mut c.kind
            {
                *partitions = config.bus.partitions;
                *idempotent = config.bus.idempotent_producer;
            }
            c
        }
    };
    let bus: Arc<dyn EventBus> = bs_bus::connect(&bus_config)
        .await
        .context("connecting to the event bus")?;
    bus.ensure_topics(bs_events::topics::ALL)
        .await
        .context("creating bus topics")?;
    let cache: Arc<dyn Cache> = match config.cache.kind {
        CacheKind::Memory => Arc::new(MemoryCache::with_limits(
            config.cache.max_entries,
            config.cache.max_bytes,
        )),
        CacheKind::Redis => Arc::new(
            RedisCache::connect(&config.cache.redis_url, "battlescope:")
                .await
                .context("connecting to Redis")?,
        ),
    };
    Ok(ServiceContext {
        config: Arc::new(config),
        bus,
        cache,
        clock: Arc::new(SystemClock),
        shutdown: CancellationToken::new(),
        offline,
        services: ServiceDirectory::default(),
    })
}

fn init(config: &Config) {
    bs_telemetry::init_logging(&config.log);
    bs_telemetry::install_metrics();
}

/// Every service in this process, one listener on `config.listen`.
pub async fn all_in_one(mut config: Config, mode: Mode) -> anyhow::Result<()> {
    init(&config);
    if mode == Mode::Demo {
        config.ingestion.live = false;
        // The development login is only ever offered on loopback (the auth service checks again).
        if config.sso.client_id.is_empty() {
            config.auth.dev_login = true;
        }
    }
    let listen = config.listen.clone();
    let ctx = context(config, mode == Mode::Demo).await?;
    bs_telemetry::shutdown_signal(ctx.shutdown.clone());

    let mut handles = Vec::new();
    for &name in crate::services::START_ORDER {
        let handle = crate::services::start(name, &ctx)
            .await
            .with_context(|| format!("starting {name}"))?;
        ctx.services
            .register(ServiceClient::in_process(name, handle.router.clone()));
        handles.push(handle);
    }

    let mut app = Router::new();
    let mut checks: Vec<Arc<dyn ReadinessCheck>> = vec![
        Arc::new(BusCheck(ctx.bus.clone())),
        Arc::new(CacheCheck(ctx.cache.clone())),
    ];
    for h in &handles {
        app = match h.name {
            // The web UI keeps its own paths on the one listener.
            ServiceName::Bff | ServiceName::Web => app.merge(h.router.clone()),
            // Browsers reach login and their own account at the root (the SSO callback is
            // `{public_url}/auth/callback`); the whole API, admin included, sits under
            // `/services/authentication` like every other service, so `/admin` is the UI's.
            ServiceName::Authentication => app
                .merge(bs_authentication::api::user_facing(h.router.clone()))
                .nest("/services/authentication", h.router.clone()),
            // The other services trust their caller (the BFF checks roles and CSRF before it
            // calls them in-process): on the public listener they answer only to direct
            // loopback connections (operators' tooling on the host, the end-to-end tests).
            other => app.nest(
                &format!("/services/{other}"),
                h.router
                    .clone()
                    .layer(axum::middleware::from_fn(direct_loopback_only)),
            ),
        };
        checks.extend(h.readiness.iter().cloned());
    }
    let app = standard_layers(app.merge(ops_routes("battlescope", checks)), "battlescope");

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(address = %listen, mode = ?mode, "battlescope is listening");
    eprintln!("BattleScope is up: http://{listen}/");
    if mode == Mode::Demo {
        // Import in the background so the UI is up at once; the import is idempotent, so a
        // restarted demo adds nothing, and the running services pick the rows up from the outbox.
        // The import future is not `Send`, so it gets a thread and a runtime of its own.
        let config = Arc::clone(&ctx.config);
        std::thread::spawn(move || {
            let paths = match crate::sample::materialise(&config.data_dir) {
                Ok(p) => p,
                Err(e) => return tracing::error!(error = %e, "cannot write the bundled sample"),
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return tracing::error!(error = %e, "cannot start the import runtime"),
            };
            match runtime.block_on(bs_ingestion::import_paths(&config, &paths, false)) {
                Ok(summary) => tracing::info!(
                    new = summary.new,
                    duplicate = summary.duplicate,
                    rejected = summary.rejected,
                    "sample data imported"
                ),
                Err(e) => tracing::error!(error = %e, "sample import failed"),
            }
        });
    }
    serve(listener, app, ctx.shutdown.clone()).await?;
    drain(handles).await;
    Ok(())
}

/// Headers a reverse proxy adds: a request carrying one came from elsewhere, whatever the
/// peer address says.
const FORWARDING_HEADERS: &[&str] = &["forwarded", "x-forwarded-for", "x-real-ip"];

/// Whether a request may reach a service's internal API on the all-in-one listener: only
/// over a direct connection from this host. A request relayed by a reverse proxy on the same
/// host has a loopback peer too, so forwarding headers refuse it.
pub fn is_direct_loopback(
    peer: Option<std::net::SocketAddr>,
    headers: &axum::http::HeaderMap,
) -> bool {
    peer.is_some_and(|p| p.ip().is_loopback())
        && !FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h))
}

/// Middleware: 403 for [`is_direct_loopback`] failures, with a pointer to the public API.
async fn direct_loopback_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    if is_direct_loopback(peer, request.headers()) {
        return next.run(request).await;
    }
    tracing::warn!(peer = ?peer, path = %request.uri().path(), "refused a non-local call of a service API");
    metrics::counter!("battlescope_service_api_refused_total").increment(1);
    (
        axum::http::StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({
            "error": "forbidden",
            "message": "service APIs under /services/ answer only to direct connections from this host; use the web UI or /api",
        })),
    )
        .into_response()
}

/// The chosen services, each on its own port.
pub async fn split(config: Config, names: Vec<ServiceName>) -> anyhow::Result<()> {
    init(&config);
    let ctx = context(config, false).await?;
    bs_telemetry::shutdown_signal(ctx.shutdown.clone());
    // Services not in this process are reached over HTTP.
    for name in ServiceName::ALL {
        if !names.contains(&name) {
            ctx.services
                .register(ServiceClient::http(name, &service_url(&ctx.config, name)));
        }
    }
    let auth_here = names.contains(&ServiceName::Authentication);
    let mut servers = Vec::new();
    let mut handles = Vec::new();
    for name in names {
        let handle = crate::services::start(name, &ctx)
            .await
            .with_context(|| format!("starting {name}"))?;
        ctx.services
            .register(ServiceClient::in_process(name, handle.router.clone()));
        let mut checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(BusCheck(ctx.bus.clone()))];
        checks.extend(handle.readiness.iter().cloned());
        let mut router = handle.router.clone();
        // The browser reaches login and its account only through the web port: relay those
        // paths to the authentication service when it runs in another process.
        if matches!(name, ServiceName::Bff | ServiceName::Web) && !auth_here {
            router = router.merge(bs_bff::auth_relay::router(&service_url(
                &ctx.config,
                ServiceName::Authentication,
            )));
        }
        let app = standard_layers(
            router.merge(ops_routes(name.as_str(), checks)),
            name.as_str(),
        );
        let addr = format!("{}:{}", ctx.config.ports.host, ctx.config.ports.port(name));
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr} for {name}"))?;
        tracing::info!(service = %name, address = %addr, "service is listening");
        servers.push(tokio::spawn(serve(listener, app, ctx.shutdown.clone())));
        handles.push(handle);
    }
    for s in servers {
        s.await.context("server task")??;
    }
    drain(handles).await;
    Ok(())
}

/// Base URL of a service in split mode.
pub fn service_url(config: &Config, name: ServiceName) -> String {
    let s = &config.services;
    let configured = match name {
        ServiceName::Ingestion => &s.ingestion,
        ServiceName::Enrichment => &s.enrichment,
        ServiceName::Battle => &s.battle,
        ServiceName::Search => &s.search,
        ServiceName::Notification => &s.notification,
        ServiceName::Authentication => &s.authentication,
        ServiceName::Bff | ServiceName::Web => &String::new(),
    };
    if configured.is_empty() {
        format!("http://{}:{}", config.ports.host, config.ports.port(name))
    } else {
        configured.clone()
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
    .context("HTTP server")
}

/// Waits for background tasks after shutdown was signalled; abandons stragglers.
async fn drain(handles: Vec<ServiceHandle>) {
    let tasks: Vec<_> = handles.into_iter().flat_map(|h| h.tasks).collect();
    let all = futures::future::join_all(tasks);
    if tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .is_err()
    {
        tracing::warn!("some background tasks did not stop within 20s; abandoning them");
    }
    tracing::info!("battlescope stopped");
}

/// Runs the migrations of one service or of all, then exits.
pub async fn migrate(config: Config, only: Option<ServiceName>) -> anyhow::Result<()> {
    init(&config);
    let names: Vec<ServiceName> = match only {
        Some(n) => vec![n],
        None => ServiceName::ALL
            .into_iter()
            .filter(|n| n.database_name().is_some())
            .collect(),
    };
    for name in names {
        let sets = crate::services::migrations(name);
        if sets.is_empty() {
            println!("{name}: no database");
            continue;
        }
        let target = bs_runtime::store_target(&config, name)?;
        let db = bs_store::Database::open(&target, 1)
            .await
            .with_context(|| format!("opening the {name} database"))?;
        let report = db
            .migrate(&sets)
            .await
            .with_context(|| format!("migrating {name}"))?;
        println!(
            "{name}: {} applied, {} already applied",
            report.applied.len(),
            report.already_applied
        );
        db.close().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_direct_loopback;
    use axum::http::HeaderMap;

    #[test]
    fn service_apis_answer_only_direct_loopback_connections() {
        let none = HeaderMap::new();
        let local = Some("127.0.0.1:50000".parse().unwrap());
        let local6 = Some("[::1]:50000".parse().unwrap());
        let remote = Some("203.0.113.9:50000".parse().unwrap());
        assert!(is_direct_loopback(local, &none));
        assert!(is_direct_loopback(local6, &none));
        assert!(!is_direct_loopback(remote, &none));
        assert!(!is_direct_loopback(None, &none), "no peer address: refuse");
        for h in ["x-forwarded-for", "forwarded", "x-real-ip"] {
            let mut proxied = HeaderMap::new();
            proxied.insert(h, "203.0.113.9".parse().unwrap());
            assert!(!is_direct_loopback(local, &proxied), "{h}");
        }
    }
}
