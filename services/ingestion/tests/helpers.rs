//! Shared test fixtures: real killmails, configurations, a running service.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bs_config::Config;
use bs_ingestion::pipeline::{Pipeline, Prepared};
use bs_ingestion::store::NewKillmail;
use bs_runtime::{ServiceContext, SystemClock};
use bs_store::{Database, StoreTarget};
use bs_zkb::fake::{FakeKillmail, load_killmails, repo_killmail_files};
use tokio_util::sync::CancellationToken;

/// The real killmails of the repository (2,036 EVE Ref records).
pub fn killmails() -> Vec<FakeKillmail> {
    load_killmails(&repo_killmail_files()).expect("repository killmail files")
}

/// The smallest fixture file (200 killmails of the UW9B-F fight).
pub fn small_fixture() -> PathBuf {
    repo_killmail_files()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("uw9b-f"))
        .expect("uw9b-f fixture")
}

/// Prepares EVE Ref records into rows (panics on a reject: these are real killmails).
pub fn rows(kms: &[FakeKillmail]) -> Vec<NewKillmail> {
    let p = Pipeline::new(Default::default());
    kms.iter()
        .map(|k| {
            match p.prepare(
                &k.record,
                bs_domain::KillmailSource::File,
                chrono::Utc::now(),
            ) {
                Prepared::Accept(n) => *n,
                other => panic!("real killmail {} not accepted: {other:?}", k.killmail_id),
            }
        })
        .collect()
}

/// A configuration on embedded storage under `dir`, pointed at local fakes.
pub fn config(dir: &Path, zkb_url: &str, esi_url: &str) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        contact: "tests@example.invalid".into(),
        ..Config::default()
    };
    c.ingestion.r2z2_url = zkb_url.into();
    c.ingestion.everef_url = zkb_url.into();
    c.ingestion.zkb_url = zkb_url.into();
    c.ingestion.r2z2_head_wait = "150ms".into();
    c.ingestion.r2z2_backoff = "300ms".into();
    c.ingestion.r2z2_requests_per_second = 18;
    c.esi.url = esi_url.into();
    // The daily verification would query the fake history for the last closed days of the
    // wall clock; tests of other sources must not see those requests.
    c.lifecycle.verify = false;
    // The recorded killmails are from 2021, past the default retention: a test running in the
    // daily retention window (02:00–04:00 UTC) would see them deleted mid-test.
    c.lifecycle.keep_forever();
    c
}

pub async fn sqlite_db(dir: &Path) -> Database {
    let db = Database::open(&StoreTarget::Sqlite(dir.join("ingestion-test.db")), 4)
        .await
        .unwrap();
    db.migrate(&[bs_store::outbox::MIGRATIONS, bs_ingestion::MIGRATIONS])
        .await
        .unwrap();
    db
}

pub async fn postgres_db() -> Option<Database> {
    let url = bs_testkit::engine(bs_testkit::POSTGRES)?;
    let target = StoreTarget::Postgres {
        server_url: url,
        database: bs_testkit::unique_name("ingest"),
    };
    let db = Database::open(&target, 4).await.unwrap();
    db.migrate(&[bs_store::outbox::MIGRATIONS, bs_ingestion::MIGRATIONS])
        .await
        .unwrap();
    Some(db)
}

/// A started ingestion service with its own embedded bus.
pub struct Running {
    pub handle: bs_runtime::ServiceHandle,
    pub shutdown: CancellationToken,
    pub bus: Arc<dyn bs_bus::EventBus>,
}

pub async fn start(config: Config, bus_dir: &Path) -> Running {
    let bus: Arc<dyn bs_bus::EventBus> = Arc::new(
        bs_bus::EmbeddedBus::open(bs_bus::EmbeddedConfig::new(bus_dir))
            .await
            .unwrap(),
    );
    let shutdown = CancellationToken::new();
    let ctx = ServiceContext {
        config: Arc::new(config),
        bus: Arc::clone(&bus),
        cache: Arc::new(bs_cache::MemoryCache::new(1000)),
        clock: Arc::new(SystemClock),
        shutdown: shutdown.clone(),
        offline: false,
        services: bs_runtime::client::ServiceDirectory::default(),
    };
    let handle = bs_ingestion::start(&ctx).await.unwrap();
    Running {
        handle,
        shutdown,
        bus,
    }
}

impl Running {
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.handle.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// Calls the service router in-process.
pub async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder().method(method).uri(uri);
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            axum::body::Body::from(serde_json::to_vec(&b).unwrap())
        }
        None => axum::body::Body::empty(),
    };
    let resp = router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
    };
    (status, json)
}

/// Polls `f` every 100 ms until it returns `Some`, failing after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every `killmail.ingested` record on the bus: (envelope id, killmail id, is_update, zkb total).
pub async fn ingested_events(
    bus: &Arc<dyn bs_bus::EventBus>,
    group: &str,
) -> Vec<(String, i64, bool, Option<f64>)> {
    let mut consumer = bus
        .subscribe(group, &[bs_events::topics::KILLMAIL_INGESTED])
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let batch = consumer
            .poll(1000, Duration::from_millis(500))
            .await
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        for d in &batch {
            let env = bs_events::Envelope::from_bytes(&d.payload).unwrap();
            let ev: bs_events::KillmailIngested = env.decode().unwrap();
            out.push((
                env.id.to_string(),
                ev.killmail.killmail_id,
                ev.is_update,
                ev.zkb.and_then(|z| z.total_value),
            ));
        }
    }
}
