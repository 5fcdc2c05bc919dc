//! The notification service (port 3005, database `battlescope_notifications`).
//!
//! Turns `killmail.enriched` and `battle.created/updated` into alerts for the subscriptions of
//! each account, whether or not anyone has a page open: a history row, a WebSocket push and
//! webhook deliveries (Discord embeds or generic JSON), each match at most once per channel.
//!
//! Code map:
//! * [`domain`]: pure — the filter AST and matcher, the subscription index, max age, the
//!   webhook retry policy and the payloads.
//! * [`store`]: [`NotificationStore`] and its SQL implementation (SQLite and PostgreSQL).
//! * [`consumer`]: [`Notifier`], the consumer core (match → record → push).
//! * [`delivery`]: the WebSocket hub and the webhook sender (the outbox drain).
//! * [`ssrf`]: the URL and address guard used at save and at every send.
//! * [`api`]: the HTTP and WebSocket routes.
//!
//! Architecture invariants: matching does no IO and reads no clock; a match is recorded
//! (history + outbox) in one transaction before anything is pushed or sent; a webhook request
//! only ever goes to an address the SSRF guard checked for that very request.

pub mod api;
pub mod consumer;
pub mod delivery;
pub mod domain;
pub mod lifecycle;
pub mod ssrf;
pub mod store;

use std::sync::Arc;

use anyhow::Context as _;
use bs_config::ServiceName;
use bs_events::topics;
use bs_runtime::{
    BusCheck, ConsumerOptions, DatabaseCheck, ServiceContext, ServiceHandle, run_consumer,
};
use bs_store::MigrationSet;

pub use api::{Access, Accounts, AuthAccounts};
pub use consumer::{Notifier, NotifierSettings};
pub use delivery::webhook::{Sender, SenderSettings};
pub use delivery::ws::Hub;
pub use store::{NotificationStore, SqlNotificationStore};

/// The service's schema.
pub const MIGRATIONS: &[MigrationSet] = &[bs_store::migrations!(
    "notification",
    [(1, "init"), (2, "lifecycle")]
)];

/// The consumer group.
pub const CONSUMER_GROUP: &str = "notification";

/// The topics the service consumes.
pub const TOPICS: &[&str] = &[
    topics::KILLMAIL_ENRICHED,
    topics::BATTLE_CREATED,
    topics::BATTLE_UPDATED,
];

/// The stargate graph of the bundled static data.
pub struct BundledGeo;

impl domain::Geography for BundledGeo {
    fn within(&self, system: i64, jumps: u32) -> Option<Vec<i64>> {
        bs_sde::StaticData::bundled().within(system, jumps)
    }
}

/// Starts with the authentication service as the account resolver.
pub async fn start(ctx: &ServiceContext) -> anyhow::Result<ServiceHandle> {
    start_with(
        ctx,
        Arc::new(AuthAccounts(ctx.services.clone())),
        SenderSettings::default(),
    )
    .await
}

/// Starts with a given account resolver and sender tuning (tests, benches).
pub async fn start_with(
    ctx: &ServiceContext,
    accounts: Arc<dyn Accounts>,
    sender: SenderSettings,
) -> anyhow::Result<ServiceHandle> {
    let db = ctx
        .open_database(ServiceName::Notification, MIGRATIONS)
        .await?;
    let store: Arc<dyn NotificationStore> = Arc::new(SqlNotificationStore::new(db.clone()));
    let cfg = &ctx.config.notification;
    let max_age = cfg.max_age().map_err(anyhow::Error::msg)?;
    let allow = ssrf::AllowList::parse(&cfg.webhook_allowed_hosts);
    let notifier = Notifier::open(
        store.clone(),
        Arc::clone(&ctx.clock),
        Hub::new(),
        Arc::new(BundledGeo),
        NotifierSettings {
            max_age,
            public_url: ctx.config.public_url.clone(),
            public_feed: cfg.public_feed,
        },
    )
    .await?;
    ctx.bus
        .ensure_topics(topics::ALL)
        .await
        .context("creating topics")?;

    let router = api::router(api::ApiState {
        notifier: Arc::clone(&notifier),
        accounts,
        allow: allow.clone(),
        public_url: ctx.config.public_url.clone(),
        relays: delivery::relay::Relays::new(Arc::clone(&notifier.hub)),
    });
    let router = router.merge(lifecycle::router(lifecycle::LifecycleState {
        db: db.clone(),
        clock: Arc::clone(&ctx.clock),
        config: ctx.config.lifecycle.clone(),
        shutdown: ctx.shutdown.clone(),
    }));
    let mut handle = ServiceHandle::new(ServiceName::Notification, router)
        .with_check(Arc::new(DatabaseCheck(db.clone())))
        .with_check(Arc::new(BusCheck(Arc::clone(&ctx.bus))));
    let consumer = Arc::clone(&notifier);
    let mut options = ConsumerOptions::new(CONSUMER_GROUP, TOPICS);
    // Small polls keep a live killmail's latency low; a backlog still comes in big batches.
    options.poll_timeout = std::time::Duration::from_millis(50);
    handle.spawn(run_consumer(
        Arc::clone(&ctx.bus),
        options,
        ctx.shutdown.clone(),
        move |batch| {
            let consumer = Arc::clone(&consumer);
            async move { consumer.handle_deliveries(batch).await }
        },
    ));
    let sender = Sender {
        store,
        clock: Arc::clone(&ctx.clock),
        allow,
        settings: sender,
        wake: Arc::clone(&notifier.wake),
    };
    handle.spawn(sender.run(ctx.shutdown.clone()));
    // Deleted killmails and battles leave the history too (own group: independent offsets).
    let forget_db = db.clone();
    let rejected = Arc::new(std::sync::atomic::AtomicU64::new(0));
    handle.spawn(run_consumer(
        Arc::clone(&ctx.bus),
        ConsumerOptions::new(lifecycle::CONSUMER_GROUP, lifecycle::TOPICS),
        ctx.shutdown.clone(),
        move |batch| {
            let db = forget_db.clone();
            let rejected = Arc::clone(&rejected);
            async move { lifecycle::forget(&db, &batch, &rejected).await.map(|_| ()) }
        },
    ));
    // Never scheduled offline (the demo), like the other services; the API still runs it.
    if !ctx.offline {
        let retention = lifecycle::Retention {
            db,
            clock: Arc::clone(&ctx.clock),
            config: ctx.config.lifecycle.clone(),
        };
        handle.spawn(retention.run(ctx.shutdown.clone()));
    }
    Ok(handle)
}
