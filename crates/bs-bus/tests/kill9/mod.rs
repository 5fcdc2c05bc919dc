//! The crash test: a consumer in a child process is SIGKILLed mid-stream and
//! restarted, repeatedly, while the parent keeps publishing.
//!
//! The child is this same test binary re-executed with `CHILD_ENV` set and a
//! filter selecting [`child_process_entry_point`]. For every record it processes
//! it appends `P <id>` to a log file, and after each successful commit
//! `C <id> <id> …` for the batch it committed (each line is one `write`, so a
//! kill never leaves half a line). From that log the parent checks:
//!
//! * every published id was processed at least once;
//! * no id is processed again after a `C` line covered it (committed records are
//!   never redelivered);
//! * the duplicates (ids processed more than once) are at most what the kills
//!   could have left uncommitted: `kills × commit_every`.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bs_bus::{EmbeddedBus, EmbeddedConfig, EventBus, Record};
use tokio::time::Instant;

use crate::harness::{Harness, unique};

const CHILD_ENV: &str = "BS_BUS_KILL9_CHILD";

/// Tuning of one crash-test run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub records: usize,
    pub kills: usize,
    pub commit_every: usize,
    pub poll_max: usize,
    /// Simulated work per record, so kills land mid-stream.
    pub per_record_delay: Duration,
}

/// Opens the bus a parent described with `Harness::child_spec`.
pub async fn open_from_spec(spec: &str) -> Arc<dyn EventBus> {
    if let Some(dir) = spec.strip_prefix("embedded:") {
        let mut config = EmbeddedConfig::new(dir);
        config.retention = None;
        return Arc::new(
            EmbeddedBus::open(config)
                .await
                .expect("child: open embedded bus"),
        );
    }
    #[cfg(feature = "kafka")]
    if let Some(brokers) = spec.strip_prefix("kafka:") {
        let config = crate::harness::kafka_config(brokers);
        return Arc::new(bs_bus::kafka::KafkaBus::new(config).expect("child: kafka bus"));
    }
    panic!("child: unknown bus spec {spec}");
}

/// Not a test: the entry point of the crash test's child process. Without
/// `CHILD_ENV` (a normal `cargo test` run) it returns at once.
#[test]
fn child_process_entry_point() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("child: {name} not set"));
    let topic = var("BS_BUS_KILL9_TOPIC");
    let group = var("BS_BUS_KILL9_GROUP");
    let out = PathBuf::from(var("BS_BUS_KILL9_OUT"));
    let commit_every: usize = var("BS_BUS_KILL9_COMMIT_EVERY").parse().unwrap();
    let poll_max: usize = var("BS_BUS_KILL9_POLL_MAX").parse().unwrap();
    let delay = Duration::from_micros(var("BS_BUS_KILL9_DELAY_US").parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let bus = open_from_spec(&spec).await;
        let mut consumer = bus
            .subscribe(&group, &[&topic])
            .await
            .expect("child: subscribe");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .expect("child: log");
        let mut pending = Vec::new();
        loop {
            let batch = consumer
                .poll(poll_max, Duration::from_millis(200))
                .await
                .expect("child: poll");
            let idle = batch.is_empty();
            for d in batch {
                tokio::time::sleep(delay).await;
                let id = String::from_utf8(d.payload.to_vec()).expect("child: utf-8");
                log.write_all(format!("P {id}\n").as_bytes())
                    .expect("child: write");
                pending.push(d);
                if pending.len() >= commit_every {
                    commit(consumer.as_mut(), &mut pending, &mut log).await;
                }
            }
            if idle && !pending.is_empty() {
                commit(consumer.as_mut(), &mut pending, &mut log).await;
            }
        }
    });
}

async fn commit(
    consumer: &mut dyn bs_bus::Consumer,
    pending: &mut Vec<bs_bus::Delivery>,
    log: &mut std::fs::File,
) {
    consumer.commit(pending).await.expect("child: commit");
    let mut line = String::from("C");
    for d in pending.drain(..) {
        line.push(' ');
        line.push_str(std::str::from_utf8(&d.payload).expect("child: utf-8"));
    }
    line.push('\n');
    log.write_all(line.as_bytes()).expect("child: write");
}

struct Spawner<'a> {
    spec: String,
    topic: &'a str,
    group: &'a str,
    out: &'a Path,
    params: Params,
}

impl Spawner<'_> {
    fn spawn(&self) -> Child {
        Command::new(std::env::current_exe().expect("current exe"))
            .args([
                "kill9::child_process_entry_point",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, &self.spec)
            .env("BS_BUS_KILL9_TOPIC", self.topic)
            .env("BS_BUS_KILL9_GROUP", self.group)
            .env("BS_BUS_KILL9_OUT", self.out)
            .env(
                "BS_BUS_KILL9_COMMIT_EVERY",
                self.params.commit_every.to_string(),
            )
            .env("BS_BUS_KILL9_POLL_MAX", self.params.poll_max.to_string())
            .env(
                "BS_BUS_KILL9_DELAY_US",
                self.params.per_record_delay.as_micros().to_string(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child")
    }
}

/// What the log says so far.
#[derive(Default, Debug)]
struct Analysis {
    processed: HashMap<String, usize>,
    /// Ids processed again after a commit covered them.
    violations: Vec<String>,
}

impl Analysis {
    fn duplicates(&self) -> usize {
        self.processed.values().map(|n| n - 1).sum()
    }
}

fn analyse(out: &Path) -> Analysis {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let mut a = Analysis::default();
    let mut committed = HashSet::new();
    // Only complete lines count; a line is written by one `write`, but be safe.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    for line in complete.lines() {
        if let Some(id) = line.strip_prefix("P ") {
            if committed.contains(id) {
                a.violations.push(id.to_owned());
            }
            *a.processed.entry(id.to_owned()).or_default() += 1;
        } else if let Some(ids) = line.strip_prefix("C ") {
            committed.extend(ids.split(' ').map(str::to_owned));
        } else if line != "C" {
            panic!("unexpected log line {line:?}");
        }
    }
    a
}

fn kill(mut child: Child) {
    // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no commit.
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
}

/// Waits until the child has processed `target` records in total, or panics
/// if it died on its own or made no progress within `patience`.
async fn wait_processed(child: &mut Child, out: &Path, target: usize, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let done: usize = analyse(out).processed.values().sum();
        if done >= target {
            return;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("child exited by itself with {status} after {done} processed records");
        }
        assert!(
            Instant::now() < deadline,
            "child stuck at {done} of {target} processed records"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(h: &impl Harness) {
    let params = h.kill9_params();
    let topic = unique("kill9");
    let group = unique("g");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("processed.log");
    let bus = h.open().await;
    bus.ensure_topics(&[&topic]).await.expect("ensure");

    let publisher = {
        let bus = Arc::clone(&bus);
        let topic = topic.clone();
        tokio::spawn(async move {
            for start in (0..params.records).step_by(25) {
                let batch: Vec<Record> = (start..(start + 25).min(params.records))
                    .map(|i| Record {
                        key: format!("k{}", i % 13),
                        payload: format!("r{i:06}").into(),
                    })
                    .collect();
                bus.publish(&topic, &batch).await.expect("publish");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let spawner = Spawner {
        spec: h.child_spec(),
        topic: &topic,
        group: &group,
        out: &out,
        params,
    };
    // A cheap deterministic spread of kill points (no rand dependency).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..params.kills {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let extra = 30 + usize::try_from(seed >> 33).unwrap() % 250;
        let before: usize = analyse(&out).processed.values().sum();
        let mut child = spawner.spawn();
        wait_processed(&mut child, &out, before + extra, h.patience()).await;
        kill(child);
    }
    publisher.await.expect("publisher task");

    // The last run must finish the stream.
    let mut child = spawner.spawn();
    let deadline = Instant::now() + h.patience() * 3;
    loop {
        let a = analyse(&out);
        if a.processed.len() >= params.records {
            break;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("final child exited with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "final child processed only {} of {} distinct records",
            a.processed.len(),
            params.records
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(child);

    let a = analyse(&out);
    let expected: HashSet<String> = (0..params.records).map(|i| format!("r{i:06}")).collect();
    let seen: HashSet<String> = a.processed.keys().cloned().collect();
    assert_eq!(
        seen, expected,
        "every published record is processed at least once"
    );
    assert!(
        a.violations.is_empty(),
        "committed records were redelivered: {:?}",
        a.violations
    );
    let bound = params.kills * params.commit_every;
    eprintln!(
        "kill9 [{}]: {} records, {} kills, {} duplicate deliveries (bound {bound}), 0 committed redelivered",
        bus.kind(),
        params.records,
        params.kills,
        a.duplicates()
    );
    assert!(
        a.duplicates() <= bound,
        "{} duplicates exceed what {} kills could leave uncommitted ({bound})",
        a.duplicates(),
        params.kills
    );
}
