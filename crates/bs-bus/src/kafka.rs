//! The Kafka-protocol bus (Kafka, Redpanda, Tansu) over rdkafka / librdkafka.
//!
//! # Guarantees
//!
//! * **Publishing**: an idempotent producer with `acks=all`; `publish` sends the
//!   whole slice concurrently and returns once every record is acknowledged, so
//!   an `Ok` means durable on the broker. Records are keyed with
//!   [`Record::key`], and librdkafka's default partitioner sends equal keys to the
//!   same partition, which keeps their order. A failed `publish` may have written
//!   part of the batch (Kafka has no multi-record atomicity without
//!   transactions): callers retry, consumers are idempotent.
//! * **Consuming**: `enable.auto.commit=false` and `enable.auto.offset.store=false`,
//!   so the group's position moves only through [`Consumer::commit`], which
//!   commits exactly `offset + 1` of the highest given delivery per partition,
//!   synchronously. `auto.offset.reset=earliest`: a new group reads from the
//!   oldest retained record. Anything polled but not committed is redelivered
//!   after a restart or rebalance.
//! * **Shutdown**: dropping a consumer closes it (leaves the group, so its
//!   partitions move on without waiting for the session timeout). Closing
//!   blocks, so it runs on tokio's blocking pool.
//!
//! Consumer-side errors that librdkafka reports while polling (broker down,
//! rebalance in progress) are informational — it reconnects by itself — so
//! `poll` logs them and keeps waiting until its timeout.
//!
//! Tansu quirks (measured, see the rust-stack notes §4): a new group member
//! takes ~4–5 s to join, and `ListOffsets(latest)` is wrong for multi-record
//! batches, so nothing here relies on it (new groups use `earliest`). Its idempotent
//! producer support loses the batch in flight when the broker is killed (the sequence is
//! stored before the batch), so deployments on Tansu set `bus.idempotent_producer =
//! false` ([`KafkaConfig::idempotent`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use crate::{BusError, BusResult, Consumer, Delivery, EventBus, Record, telemetry};

const KIND: &str = "kafka";

/// Settings of the Kafka bus. [`KafkaConfig::new`] gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port`.
    pub brokers: String,
    /// Partitions of topics created by `ensure_topics` (default 3).
    pub partitions: i32,
    /// Replication factor of created topics (default 1, single broker).
    pub replication: i32,
    pub client_id: String,
    /// `session.timeout.ms`: how long a dead member (a `kill -9`) holds its
    /// partitions before the group moves them.
    pub session_timeout: Duration,
    /// How long `publish`, `ensure_topics` and `ping` wait for the broker.
    pub request_timeout: Duration,
    /// `fetch.wait.max.ms`: how long the broker may hold an empty fetch. Lower
    /// means lower end-to-end latency on brokers that answer only at the
    /// deadline (Tansu) at the cost of more idle requests.
    pub fetch_wait: Duration,
    /// `linger.ms`: how long the producer waits to fill a request.
    pub linger: Duration,
    /// `enable.idempotence` (default true): the broker drops a retried batch it already
    /// wrote, so a retry never duplicates a record, with up to 5 requests in flight.
    /// Off, the producer keeps one request in flight per connection (per-key order
    /// survives a retry) and a retry may write a record twice, which idempotent
    /// consumers absorb. Off is for brokers whose idempotence loses data: Tansu 0.6
    /// advances a producer's sequence before it writes the batch, so a batch in
    /// flight when it is killed is answered "duplicate" (= acknowledged) on the retry
    /// and never written (the `broker_restart` test shows it).
    pub idempotent: bool,
    /// Extra librdkafka properties for every client (e.g. `security.protocol`,
    /// `sasl.*`). They are applied first, so they cannot override the settings
    /// set here (idempotence, `acks`, manual commits, offsets reset), on which
    /// the delivery guarantees rest.
    pub extra: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            partitions: 3,
            replication: 1,
            client_id: "battlescope".to_owned(),
            session_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            fetch_wait: Duration::from_millis(100),
            linger: Duration::from_millis(5),
            idempotent: true,
            extra: Vec::new(),
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id);
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

fn kafka_err(context: &str, e: &KafkaError) -> BusError {
    BusError::Backend(format!("kafka {context}: {e}"))
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

/// The Kafka implementation of [`EventBus`].
pub struct KafkaBus {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: Arc<AdminClient<DefaultClientContext>>,
}

impl KafkaBus {
    /// Creates the producer and admin clients. Nothing connects yet; use
    /// [`EventBus::ping`] to check the broker. Call inside a tokio runtime.
    pub fn new(config: KafkaConfig) -> BusResult<Self> {
        if config.brokers.trim().is_empty() {
            return Err(BusError::Config("kafka brokers must not be empty".into()));
        }
        if config.partitions < 1 || config.replication < 1 {
            return Err(BusError::Config(
                "kafka partitions and replication must be at least 1".into(),
            ));
        }
        let mut producer_config = config.client_config();
        if config.idempotent {
            producer_config.set("enable.idempotence", "true");
        } else {
            producer_config
                .set("enable.idempotence", "false")
                .set("max.in.flight.requests.per.connection", "1");
        }
        let producer: FutureProducer = producer_config
            .set("acks", "all")
            // A short linger lets a `publish` of many records go out in few requests.
            .set("linger.ms", millis(config.linger))
            .set("message.timeout.ms", millis(config.request_timeout))
            .create()
            .map_err(|e| kafka_err("producer config", &e))?;
        let admin: AdminClient<DefaultClientContext> = config
            .client_config()
            .create()
            .map_err(|e| kafka_err("admin config", &e))?;
        Ok(Self {
            config,
            producer,
            admin: Arc::new(admin),
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Waits for anything still queued in the producer (only records of a
    /// cancelled `publish` can be). Dropping the bus purges them instead; either
    /// way no `publish` that returned `Ok` is affected.
    pub async fn flush(&self, timeout: Duration) -> BusResult<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
            .await
            .map_err(|e| BusError::Backend(format!("kafka flush task: {e}")))?
            .map_err(|e| kafka_err("flush", &e))
    }

    /// Waits until the broker's metadata lists `topic` with partitions, so a
    /// subscribe right after `ensure_topics` does not race topic creation.
    async fn await_topic(&self, topic: &str) -> BusResult<()> {
        let deadline = Instant::now() + self.config.request_timeout;
        loop {
            let admin = Arc::clone(&self.admin);
            let name = topic.to_owned();
            let ready = tokio::task::spawn_blocking(move || {
                admin
                    .inner()
                    .fetch_metadata(Some(&name), Timeout::After(Duration::from_secs(5)))
                    .map(|m| {
                        m.topics().iter().any(|t| {
                            t.name() == name && t.error().is_none() && !t.partitions().is_empty()
                        })
                    })
            })
            .await
            .map_err(|e| BusError::Backend(format!("kafka metadata task: {e}")))?
            .map_err(|e| kafka_err("metadata", &e))?;
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BusError::Backend(format!(
                    "kafka topic {topic} did not appear in metadata"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn ensure_topics(&self, topics: &[&str]) -> BusResult<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| {
                NewTopic::new(
                    t,
                    self.config.partitions,
                    TopicReplication::Fixed(self.config.replication),
                )
            })
            .collect();
        let opts = AdminOptions::new()
            .operation_timeout(Some(Timeout::After(self.config.request_timeout)));
        let results = self
            .admin
            .create_topics(&new, &opts)
            .await
            .map_err(|e| kafka_err("create topics", &e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BusError::Backend(format!(
                        "kafka create topic {name}: {code}"
                    )));
                }
            }
        }
        for t in topics {
            self.await_topic(t).await?;
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, records: &[Record]) -> BusResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let timeout = Timeout::After(self.config.request_timeout);
        let sends = records.iter().map(|r| {
            self.producer.send(
                FutureRecord::to(topic)
                    .key(r.key.as_bytes())
                    .payload(r.payload.as_ref()),
                timeout,
            )
        });
        let results = futures::future::join_all(sends).await;
        let mut failed = 0usize;
        let mut first_error = None;
        for r in results {
            if let Err((e, _)) = r {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
        telemetry::published(KIND, topic, records.len() - failed);
        match first_error {
            None => Ok(()),
            Some(e) => Err(BusError::Backend(format!(
                "kafka publish to {topic}: {failed} of {} records failed, first: {e}",
                records.len()
            ))),
        }
    }

    async fn subscribe(&self, group: &str, topics: &[&str]) -> BusResult<Box<dyn Consumer>> {
        if group.is_empty() {
            return Err(BusError::Config(
                "consumer group name must not be empty".into(),
            ));
        }
        if topics.is_empty() {
            return Err(BusError::Config(
                "subscribe needs at least one topic".into(),
            ));
        }
        let consumer: StreamConsumer = self
            .config
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", millis(self.config.fetch_wait))
            .set("session.timeout.ms", millis(self.config.session_timeout))
            .set(
                "heartbeat.interval.ms",
                millis(self.config.session_timeout / 4),
            )
            .create()
            .map_err(|e| kafka_err("consumer config", &e))?;
        consumer
            .subscribe(topics)
            .map_err(|e| kafka_err("subscribe", &e))?;
        Ok(Box::new(KafkaConsumer {
            inner: Some(Arc::new(consumer)),
            group: group.to_owned(),
        }))
    }

    async fn ping(&self) -> BusResult<()> {
        let producer = self.producer.clone();
        let timeout = self.config.request_timeout.min(Duration::from_secs(5));
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Timeout::After(timeout))
        })
        .await
        .map_err(|e| BusError::Backend(format!("kafka ping task: {e}")))?
        .map_err(|e| kafka_err("ping", &e))?;
        Ok(())
    }
}

struct KafkaConsumer {
    /// `Arc` so a synchronous commit and the final close can run on the
    /// blocking pool; `Option` so `Drop` can move it there.
    inner: Option<Arc<StreamConsumer>>,
    group: String,
}

impl KafkaConsumer {
    fn consumer(&self) -> BusResult<&Arc<StreamConsumer>> {
        self.inner.as_ref().ok_or(BusError::Closed)
    }
}

fn to_delivery(m: &BorrowedMessage<'_>) -> Delivery {
    Delivery {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> BusResult<Vec<Delivery>> {
        let consumer = Arc::clone(self.consumer()?);
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let deadline = Instant::now() + timeout;
        while out.is_empty() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            // `recv` is cancellation safe: a timed-out wait loses no message.
            match tokio::time::timeout(remaining, consumer.recv()).await {
                Err(_) => break,
                Ok(Ok(m)) => out.push(to_delivery(&m)),
                Ok(Err(e)) => {
                    tracing::warn!(group = %self.group, error = %e, "kafka consumer error (librdkafka retries)");
                    // Errors can repeat in a tight loop while the broker is away.
                    tokio::time::sleep(Duration::from_millis(50).min(remaining)).await;
                }
            }
        }
        // Take whatever is already buffered locally, without waiting.
        while out.len() < max {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => out.push(to_delivery(&m)),
                Some(Err(e)) => {
                    tracing::warn!(group = %self.group, error = %e, "kafka consumer error (librdkafka retries)");
                    break;
                }
                None => break,
            }
        }
        for (topic, count) in telemetry::per_topic(out.iter().map(|d| d.topic.as_str())) {
            telemetry::delivered(KIND, topic, &self.group, count);
        }
        Ok(out)
    }

    async fn commit(&mut self, deliveries: &[Delivery]) -> BusResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut next: Vec<(&str, i32, i64)> = Vec::new();
        for d in deliveries {
            match next
                .iter_mut()
                .find(|(t, p, _)| *t == d.topic && *p == d.partition)
            {
                Some(entry) => entry.2 = entry.2.max(d.offset + 1),
                None => next.push((d.topic.as_str(), d.partition, d.offset + 1)),
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in &next {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|e| kafka_err("commit list", &e))?;
        }
        let consumer = Arc::clone(self.consumer()?);
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| BusError::Backend(format!("kafka commit task: {e}")))?
            .map_err(|e| kafka_err("commit", &e))?;
        for (topic, count) in telemetry::per_topic(deliveries.iter().map(|d| d.topic.as_str())) {
            telemetry::committed(KIND, topic, &self.group, count);
        }
        Ok(())
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        let Some(consumer) = self.inner.take() else {
            return;
        };
        // Closing leaves the group and blocks until librdkafka is done; keep it
        // off the async worker threads when a runtime is around.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(move || drop(consumer));
            }
            Err(_) => drop(consumer),
        }
    }
}
