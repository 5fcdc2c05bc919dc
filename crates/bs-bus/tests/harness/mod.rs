//! How the conformance suite gets a bus: one harness per implementation, each
//! owning the storage so that `open` after dropping a bus models a restart.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bs_bus::{EmbeddedBus, EmbeddedConfig, EventBus};

/// A fresh, isolated world for one test.
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// Opens a bus on this harness's storage (again after a drop = restart).
    async fn open(&self) -> Arc<dyn EventBus>;
    /// How long to wait for records that must arrive (a Kafka group join alone
    /// takes ~5 s on Tansu).
    fn patience(&self) -> Duration;
    /// How a child process opens the same bus (see `kill9::open_from_spec`).
    fn child_spec(&self) -> String;
    /// Tuning of the crash test for this backend.
    fn kill9_params(&self) -> crate::kill9::Params;
}

/// A topic or group name no other test (or earlier run on the same broker) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

pub struct EmbeddedHarness {
    dir: tempfile::TempDir,
}

#[async_trait]
impl Harness for EmbeddedHarness {
    async fn open(&self) -> Arc<dyn EventBus> {
        let mut config = EmbeddedConfig::new(self.dir.path());
        config.retention = None;
        Arc::new(EmbeddedBus::open(config).await.expect("open embedded bus"))
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(20)
    }

    fn child_spec(&self) -> String {
        format!("embedded:{}", self.dir.path().display())
    }

    fn kill9_params(&self) -> crate::kill9::Params {
        crate::kill9::Params {
            records: 3_000,
            kills: 6,
            commit_every: 7,
            poll_max: 20,
            per_record_delay: Duration::from_millis(1),
        }
    }
}

pub async fn embedded_harness() -> Option<EmbeddedHarness> {
    Some(EmbeddedHarness {
        dir: tempfile::tempdir().expect("tempdir"),
    })
}

#[cfg(feature = "kafka")]
pub use kafka::{config as kafka_config, kafka_harness};

#[cfg(feature = "kafka")]
mod kafka {
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use bs_bus::EventBus;
    use bs_bus::kafka::{KafkaBus, KafkaConfig};

    use super::{Harness, unique};

    pub const ENV: &str = "BATTLESCOPE_TEST_KAFKA";

    pub struct KafkaHarness {
        pub brokers: String,
    }

    pub fn config(brokers: &str) -> KafkaConfig {
        let mut c = KafkaConfig::new(brokers);
        c.client_id = unique("bs-bus-test");
        // The broker's minimum; keeps the crash test's rebalances short.
        c.session_timeout = Duration::from_secs(6);
        c
    }

    #[async_trait]
    impl Harness for KafkaHarness {
        async fn open(&self) -> Arc<dyn EventBus> {
            Arc::new(KafkaBus::new(config(&self.brokers)).expect("kafka bus"))
        }

        fn patience(&self) -> Duration {
            Duration::from_secs(60)
        }

        fn child_spec(&self) -> String {
            format!("kafka:{}", self.brokers)
        }

        fn kill9_params(&self) -> crate::kill9::Params {
            // Each restart pays a group join plus the dead member's session
            // timeout, so fewer kills than the embedded run.
            crate::kill9::Params {
                records: 1_500,
                kills: 3,
                commit_every: 7,
                poll_max: 20,
                per_record_delay: Duration::from_millis(2),
            }
        }
    }

    /// `None` (with a note on stderr) when no broker is configured outside CI;
    /// with `CI=true` a missing or unreachable broker fails the test.
    pub async fn kafka_harness() -> Option<KafkaHarness> {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let brokers = std::env::var(ENV).ok().filter(|b| !b.trim().is_empty());
        let Some(brokers) = brokers else {
            assert!(
                !ci,
                "{ENV} must point at a Kafka-protocol broker when CI=true"
            );
            eprintln!("skipped: {ENV} not set");
            return None;
        };
        let h = KafkaHarness { brokers };
        let bus = h.open().await;
        if let Err(e) = bus.ping().await {
            panic!("kafka broker {} from {ENV} is unreachable: {e}", h.brokers);
        }
        Some(h)
    }
}
