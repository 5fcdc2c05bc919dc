//! Throughput and latency of the embedded bus: not a test (no assertions),
//! numbers for the architecture notes.
//!
//! `cargo run -p bs-bus --example bench [--release] -- [records] [batch] [payload_bytes]`
//! (defaults 100000, 500, 3000). Publishes `records` payloads in batches, then
//! consumes and commits them with one consumer in batches, then measures the
//! publish-to-delivery latency of single records to a waiting in-process consumer.
//! With `--features kafka` and `--kafka=HOST:PORT` it measures a broker instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bs_bus::{Durability, EmbeddedBus, EmbeddedConfig, EventBus, Record};

type Error = Box<dyn std::error::Error>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let records = nums.first().copied().unwrap_or(100_000);
    let batch = nums.get(1).copied().unwrap_or(500);
    let size = nums.get(2).copied().unwrap_or(3_000);
    if let Some(brokers) = args.iter().find_map(|a| a.strip_prefix("--kafka=")) {
        return kafka(brokers, records, batch, size).await;
    }
    for durability in [Durability::Full, Durability::Normal] {
        let dir = tempfile::tempdir()?;
        let mut config = EmbeddedConfig::new(dir.path());
        config.durability = durability;
        config.retention = None;
        let bus = Arc::new(EmbeddedBus::open(config).await?);
        let label = format!("embedded durability={durability:?}");
        run(bus, &label, "bench", records, batch, size).await?;
        let db = std::fs::metadata(dir.path().join("bus.db"))?.len();
        println!("  db file {:.0} MB", db as f64 / 1e6);
    }
    Ok(())
}

#[cfg(feature = "kafka")]
async fn kafka(brokers: &str, records: usize, batch: usize, size: usize) -> Result<(), Error> {
    let bus = Arc::new(bs_bus::kafka::KafkaBus::new(
        bs_bus::kafka::KafkaConfig::new(brokers),
    )?);
    let topic = format!("bench-{}", uuid::Uuid::new_v4().simple());
    run(
        bus,
        &format!("kafka {brokers}"),
        &topic,
        records,
        batch,
        size,
    )
    .await
}

#[cfg(not(feature = "kafka"))]
async fn kafka(_: &str, _: usize, _: usize, _: usize) -> Result<(), Error> {
    Err("built without the `kafka` feature".into())
}

async fn run(
    bus: Arc<dyn EventBus>,
    label: &str,
    topic: &str,
    records: usize,
    batch: usize,
    size: usize,
) -> Result<(), Error> {
    bus.ensure_topics(&[topic]).await?;
    let payload: bytes::Bytes = (0..size)
        .map(|i| b'a' + u8::try_from(i % 26).unwrap_or(0))
        .collect::<Vec<u8>>()
        .into();
    let batches: Vec<Vec<Record>> = (0..records)
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(|ids| {
            ids.iter()
                .map(|i| Record {
                    key: format!("killmail:{}", i % 1_000),
                    payload: payload.clone(),
                })
                .collect()
        })
        .collect();

    let t = Instant::now();
    for b in &batches {
        bus.publish(topic, b).await?;
    }
    let publish = t.elapsed();

    let mut consumer = bus.subscribe(&format!("{topic}-group"), &[topic]).await?;
    // The clock starts at the first delivery, so a Kafka group join (~5 s on
    // Tansu) is not counted as consume time.
    let mut t = None;
    let mut consumed = 0;
    while consumed < records {
        let got = consumer.poll(batch, Duration::from_secs(30)).await?;
        if got.is_empty() {
            return Err("consumer starved".into());
        }
        t.get_or_insert_with(Instant::now);
        consumed += got.len();
        consumer.commit(&got).await?;
    }
    let consume = t.map_or(Duration::ZERO, |t| t.elapsed());

    // Latency: a consumer already waiting in `poll`, single-record publishes,
    // measured from the acknowledged append to the delivery (wake-up + read).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let waiter = tokio::spawn(async move {
        loop {
            let got = consumer
                .poll(10, Duration::from_secs(5))
                .await
                .expect("poll");
            if !got.is_empty() {
                let at = Instant::now();
                consumer.commit(&got).await.expect("commit");
                if tx.send(at).is_err() {
                    return;
                }
            }
        }
    });
    let mut lat = Vec::new();
    let mut single = Vec::new();
    for _ in 0..200 {
        let rec = [Record {
            key: "k".into(),
            payload: payload.clone(),
        }];
        let t = Instant::now();
        bus.publish(topic, &rec).await?;
        let acked = Instant::now();
        single.push(acked - t);
        let delivered = rx.recv().await.ok_or("waiter died")?;
        lat.push(delivered.saturating_duration_since(acked));
        // Let the waiter commit and get back into `poll`.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    waiter.abort();
    lat.sort();
    single.sort();
    let pct = |v: &[Duration], p: usize| v[(v.len() * p / 100).min(v.len() - 1)];

    println!(
        "{label} records={records} batch={batch} payload={size}B: \
         publish {:.0} rec/s ({:.1} MB/s), consume+commit {:.0} rec/s, \
         single-record publish p50 {:?}, ack->delivery p50 {:?} p99 {:?}",
        records as f64 / publish.as_secs_f64(),
        (records * size) as f64 / publish.as_secs_f64() / 1e6,
        records as f64 / consume.as_secs_f64(),
        pct(&single, 50),
        pct(&lat, 50),
        pct(&lat, 99),
    );
    Ok(())
}
