//! The event bus: how services talk to each other.
//!
//! One trait, [`EventBus`], with two implementations chosen from configuration:
//! an embedded durable log (the all-in-one default) and, behind the `kafka` cargo
//! feature, a Kafka-protocol client for Redpanda/Kafka/Tansu.
//!
//! The bus moves opaque bytes; the versioned envelope that those bytes carry lives
//! in `bs-events`. Delivery is **at least once**: a record is redelivered to a
//! consumer group until the group commits an offset past it, so consumers must be
//! idempotent (they are, keyed by killmail or battle id). Records with the same key
//! keep their order within a topic.
//!
//! # Guarantees common to every implementation
//!
//! * `publish` returns only once the records are durable (fsynced SQLite commit,
//!   or `acks=all` from the broker); a batch is appended atomically by the
//!   embedded log and record by record (idempotent producer) by Kafka.
//! * Records with the same key land in the same partition and are delivered in
//!   publish order within a consumer group.
//! * A group's committed offsets survive restarts. A new group starts at the
//!   earliest retained record, an existing one after its last commit; anything
//!   polled but not committed is delivered again after the consumer is dropped,
//!   the process dies, or the partition moves to another member.
//! * Groups are independent: each has its own offsets.
//!
//! Pick an implementation at startup with [`connect`] and a [`BusConfig`]; the
//! rest of the code only sees `Arc<dyn EventBus>`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

/// One record to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The partitioning key (a killmail or battle id); per-key order is preserved.
    pub key: String,
    /// The serialised envelope.
    pub payload: Bytes,
}

/// One record as delivered to a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Bytes,
}

/// Errors of any bus implementation.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus backend error: {0}")]
    Backend(String),
    #[error("bus is closed")]
    Closed,
    #[error("invalid bus configuration: {0}")]
    Config(String),
}

pub type BusResult<T> = Result<T, BusError>;

pub mod embedded;
#[cfg(feature = "kafka")]
pub mod kafka;
mod telemetry;

pub use embedded::{Durability, EmbeddedBus, EmbeddedConfig};

/// Which bus to run, as plain data (filled from the binary's configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusConfig {
    pub kind: BusKind,
}

/// The implementation and its few settings; the fine knobs live in
/// [`EmbeddedConfig`] and `kafka::KafkaConfig` for callers that need them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusKind {
    /// The embedded durable log in `<dir>/bus.db`.
    Embedded {
        dir: PathBuf,
        /// Records every known group has committed and that are older than this
        /// are pruned periodically; `None` keeps everything.
        retention: Option<Duration>,
    },
    /// A Kafka-protocol broker (needs the `kafka` cargo feature).
    Kafka {
        /// Comma-separated `host:port` list.
        brokers: String,
        /// Partitions of topics created by `ensure_topics`.
        partitions: i32,
        client_id: String,
        /// An idempotent producer (see `kafka::KafkaConfig::idempotent`).
        idempotent: bool,
    },
}

impl BusConfig {
    /// The embedded log under `dir` with a 7-day retention of committed records.
    pub fn embedded(dir: impl Into<PathBuf>) -> Self {
        Self {
            kind: BusKind::Embedded {
                dir: dir.into(),
                retention: Some(embedded::DEFAULT_RETENTION),
            },
        }
    }

    /// A Kafka-protocol broker with 3 partitions per topic.
    pub fn kafka(brokers: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            kind: BusKind::Kafka {
                brokers: brokers.into(),
                partitions: 3,
                client_id: client_id.into(),
                idempotent: true,
            },
        }
    }
}

/// Opens the bus described by `config`.
///
/// Asking for Kafka from a build without the `kafka` feature is a
/// [`BusError::Config`], not a panic, so the binary can report it cleanly.
pub async fn connect(config: &BusConfig) -> BusResult<Arc<dyn EventBus>> {
    match &config.kind {
        BusKind::Embedded { dir, retention } => {
            let mut cfg = EmbeddedConfig::new(dir.clone());
            cfg.retention = *retention;
            Ok(Arc::new(EmbeddedBus::open(cfg).await?))
        }
        #[cfg(feature = "kafka")]
        BusKind::Kafka {
            brokers,
            partitions,
            client_id,
            idempotent,
        } => {
            let mut cfg = kafka::KafkaConfig::new(brokers.clone());
            cfg.partitions = *partitions;
            cfg.client_id = client_id.clone();
            cfg.idempotent = *idempotent;
            Ok(Arc::new(kafka::KafkaBus::new(cfg)?))
        }
        #[cfg(not(feature = "kafka"))]
        BusKind::Kafka { .. } => Err(BusError::Config(
            "the kafka bus was requested but this build has no `kafka` feature; \
             rebuild with `--features kafka` or use the embedded bus"
                .to_owned(),
        )),
    }
}

/// A publish/subscribe log with consumer groups and committed offsets.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// A short name of the implementation, for logs and `/ready`.
    fn kind(&self) -> &'static str;

    /// Creates the topics if they do not exist yet (idempotent).
    async fn ensure_topics(&self, topics: &[&str]) -> BusResult<()>;

    /// Appends records to a topic. Returns once they are durable.
    async fn publish(&self, topic: &str, records: &[Record]) -> BusResult<()>;

    /// Joins consumer group `group` on `topics`. A new group starts at the earliest
    /// retained record; an existing group resumes after its last committed offset.
    async fn subscribe(&self, group: &str, topics: &[&str]) -> BusResult<Box<dyn Consumer>>;

    /// Checks the backend is reachable (for `/ready`).
    async fn ping(&self) -> BusResult<()>;
}

/// A member of a consumer group.
#[async_trait]
pub trait Consumer: Send {
    /// Waits up to `timeout` for records and returns at most `max` of them, in
    /// order per partition. An empty vector means nothing arrived in time.
    async fn poll(&mut self, max: usize, timeout: Duration) -> BusResult<Vec<Delivery>>;

    /// Commits the given deliveries (and everything before them in their
    /// partitions): they will not be delivered to this group again.
    async fn commit(&mut self, deliveries: &[Delivery]) -> BusResult<()>;
}
