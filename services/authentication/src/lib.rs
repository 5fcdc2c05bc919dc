//! The authentication service: EVE SSO login, accounts with several characters,
//! server-side sessions, corporation/alliance gating, feature-scoped roles, encrypted
//! ESI grants and an append-only audit log.
//!
//! Map:
//! * [`domain`]: the pure rules (role ladder and decisions, gating, session expiry,
//!   login/link plans, audit hash chain). No IO, time is a parameter.
//! * [`store`]: [`store::AuthStore`] and its SQL implementation for SQLite and PostgreSQL.
//! * [`service`]: the behaviour (flows, owner changes, admin operations, background jobs).
//! * [`api`]: the HTTP routes, cookies and CSRF guard.
//! * [`client`]: [`AuthClient`], the tiny in-process/remote authorization client for
//!   other services.
//! * [`affiliation`]: where characters stand now (ESI behind a trait).
//! * [`lifecycle`]: audit-log retention (anchored prunes) and `GET /lifecycle`.
//!
//! SSO protocol pieces (authorize URL, token exchange, JWT validation, AES-GCM token
//! cipher, session ids, CSRF tokens, `return_to` sanitising) come from `bs-sso`.
//!
//! Architecture invariants: tokens are encrypted before they reach the store and never
//! logged; every decision is made from stored facts, never from the request; unknown
//! features, actions and sessions are denied.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod affiliation;
pub mod api;
pub mod client;
pub mod domain;
pub mod lifecycle;
pub mod model;
pub mod service;
pub mod settings;
pub mod store;

use std::sync::Arc;

use anyhow::Context as _;
use bs_cache::Cache;
use bs_config::ServiceName;
use bs_runtime::{Clock, DatabaseCheck, ServiceContext, ServiceHandle};
use bs_store::MigrationSet;
use tokio_util::sync::CancellationToken;

pub use affiliation::{AffiliationSource, EsiAffiliations, NoAffiliations, StaticAffiliations};
pub use client::{AuthClient, AuthClientError, Subject};
pub use service::{AuthService, Sso};
pub use settings::Settings;
pub use store::{AuthStore, SqlAuthStore};

/// The service's schema, for both backends.
pub const MIGRATIONS: MigrationSet =
    bs_store::migrations!("authentication", [(1, "init"), (2, "audit_retention")]);

/// Everything the service is built from (tests assemble these directly).
pub struct Deps {
    pub store: Arc<dyn AuthStore>,
    pub sso: Option<Sso>,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub cache: Arc<dyn Cache>,
    pub affiliations: Arc<dyn AffiliationSource>,
}

/// Builds the service state (loads or creates the CSRF key, seeds the gating config).
pub async fn build(deps: Deps) -> anyhow::Result<Arc<AuthService>> {
    let now = deps.clock.now();
    let candidate = hex::encode(bs_sso::random::random_bytes::<32>().context("random source")?);
    let stored = deps
        .store
        .secret_or_insert("csrf_key", &candidate, now)
        .await
        .context("loading the csrf key")?;
    let key: [u8; 32] = hex::decode(stored)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .context("stored csrf key is not 32 hex bytes")?;
    if deps.store.gating_config().await?.is_none() {
        deps.store
            .put_gating_config(&domain::gating::GatingConfig::default(), None, now)
            .await?;
    }
    Ok(Arc::new(AuthService {
        store: deps.store,
        sso: deps.sso,
        csrf: bs_sso::CsrfKey::from_bytes(key),
        clock: deps.clock,
        cache: deps.cache,
        affiliations: deps.affiliations,
        settings: deps.settings,
    }))
}

/// Spawns the background jobs: token refresh, affiliation re-check, purge.
pub fn spawn_jobs(
    handle: &mut ServiceHandle,
    service: &Arc<AuthService>,
    shutdown: &CancellationToken,
) {
    let (s, stop) = (service.clone(), shutdown.clone());
    handle.spawn(async move {
        let mut tick = tokio::time::interval(s.settings().refresh_poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = s.refresh_due_tokens().await {
                        tracing::warn!(error = %e, "token refresh pass failed");
                    }
                }
            }
        }
    });
    let (s, stop) = (service.clone(), shutdown.clone());
    handle.spawn(async move {
        let mut tick = tokio::time::interval(s.settings().affiliation_poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut passes: u64 = 0;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = s.check_affiliations().await {
                        tracing::warn!(error = %e, "affiliation pass failed");
                    }
                    passes += 1;
                    if passes.is_multiple_of(60) && let Err(e) = s.purge().await {
                        tracing::warn!(error = %e, "purge failed");
                    }
                }
            }
        }
    });
}

/// Starts the service and also returns the in-process [`AuthClient`] (for the BFF).
pub async fn start_with_client(
    ctx: &ServiceContext,
) -> anyhow::Result<(ServiceHandle, AuthClient)> {
    let db = ctx
        .open_database(ServiceName::Authentication, &[MIGRATIONS])
        .await?;
    let settings = Settings::from_config(&ctx.config)?;
    let http = reqwest::Client::builder()
        .user_agent(bs_esi::user_agent_with_contact(&ctx.config.contact))
        .build()
        .context("http client")?;
    let sso = service::sso_from_config(&ctx.config, http)?;
    let affiliations: Arc<dyn AffiliationSource> = if ctx.offline {
        Arc::new(NoAffiliations)
    } else {
        let esi = bs_esi::EsiClient::new(bs_esi::EsiConfig {
            base_url: ctx.config.esi.url.trim_end_matches('/').to_owned(),
            user_agent: bs_esi::user_agent_with_contact(&ctx.config.contact),
            compatibility_date: ctx.config.esi.compatibility_date.clone(),
            ..bs_esi::EsiConfig::default()
        })
        .map_err(|e| anyhow::anyhow!("esi client: {e}"))?;
        Arc::new(EsiAffiliations(esi))
    };
    if sso.is_none() && !settings.dev_login {
        tracing::warn!("eve sso is not configured (sso.client_id); nobody can log in");
    }
    let service = build(Deps {
        store: Arc::new(SqlAuthStore::new(db.clone())),
        sso,
        settings,
        clock: ctx.clock.clone(),
        cache: ctx.cache.clone(),
        affiliations,
    })
    .await?;
    let router = api::router(service.clone()).merge(lifecycle::router(lifecycle::LifecycleState {
        store: service.store().clone(),
        db: db.clone(),
        config: ctx.config.lifecycle.clone(),
    }));
    let mut handle = ServiceHandle::new(ServiceName::Authentication, router)
        .with_check(Arc::new(DatabaseCheck(db.clone())));
    spawn_jobs(&mut handle, &service, &ctx.shutdown);
    // Offline runs keep what they have, like the other services' retention.
    if !ctx.offline {
        let retention = lifecycle::Retention {
            store: service.store().clone(),
            db,
            clock: ctx.clock.clone(),
            config: ctx.config.lifecycle.clone(),
        };
        handle.spawn(retention.run(ctx.shutdown.clone()));
    }
    Ok((handle, AuthClient::local(service)))
}

/// Starts the service: opens its database, spawns its jobs, returns its router.
pub async fn start(ctx: &ServiceContext) -> anyhow::Result<ServiceHandle> {
    Ok(start_with_client(ctx).await?.0)
}

/// `battlescope auth rotate-key`, after the operator put a new key first in
/// `auth.token_keys` (keeping the old ones after it): re-encrypts every stored grant
/// under the new active key. Returns `(moved, undecryptable)`; once it reports
/// `(0, 0)` on a second run, the old keys can be removed from the configuration.
/// A new key entry for the spec comes from `bs_sso::TokenCipher::generate_key_spec`.
pub async fn reencrypt_tokens(config: &bs_config::Config) -> anyhow::Result<(u64, u64)> {
    let db = bs_runtime::open_database(config, ServiceName::Authentication, &[MIGRATIONS]).await?;
    let http = reqwest::Client::new();
    let sso = service::sso_from_config(config, http)?
        .context("sso is not configured: there are no grants to re-encrypt")?;
    let service = build(Deps {
        store: Arc::new(SqlAuthStore::new(db.clone())),
        sso: Some(sso),
        settings: Settings::from_config(config)?,
        clock: Arc::new(bs_runtime::SystemClock),
        cache: Arc::new(bs_cache::MemoryCache::new(16)),
        affiliations: Arc::new(NoAffiliations),
    })
    .await?;
    let report = service
        .reencrypt_tokens()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    db.close().await;
    Ok(report)
}

/// The in-process client for an already built service (tests, custom wiring).
pub fn client_for(service: &Arc<AuthService>) -> AuthClient {
    AuthClient::local(service.clone())
}
