//! Behaviour specific to the embedded log: retention, sharing partitions
//! between members of one group in a process, offsets never reused, and the
//! `connect` entry point.

use std::collections::HashSet;
use std::time::Duration;

use bs_bus::{BusConfig, BusError, BusKind, EmbeddedBus, EmbeddedConfig, EventBus, connect};

use crate::conformance::{drain, record};
use crate::harness::unique;

const PATIENCE: Duration = Duration::from_secs(20);

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn open(dir: &std::path::Path, partitions: u32) -> EmbeddedBus {
    let mut config = EmbeddedConfig::new(dir);
    config.partitions = partitions;
    config.retention = None;
    EmbeddedBus::open(config).await.expect("open")
}

async fn row_count(dir: &std::path::Path) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("bus.db").display()))
        .await
        .unwrap();
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM bus_records")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

#[tokio::test]
async fn prune_removes_only_what_every_group_committed_and_is_old_enough() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path(), 1).await;
    let (topic, untouched) = (unique("t"), unique("u"));
    let recs: Vec<_> = (0..10).map(|i| record("k", format!("r{i}"))).collect();
    bus.publish(&topic, &recs).await.unwrap();
    bus.publish(&untouched, &recs[..5]).await.unwrap();

    let mut a = bus.subscribe("a", &[&topic]).await.unwrap();
    let got_a = drain(a.as_mut(), 10, PATIENCE).await;
    a.commit(&got_a[..6]).await.unwrap();
    let mut b = bus.subscribe("b", &[&topic]).await.unwrap();
    let got_b = drain(b.as_mut(), 10, PATIENCE).await;
    b.commit(&got_b[..3]).await.unwrap();

    // Too young: nothing goes, although both groups committed some.
    assert_eq!(
        bus.prune(Duration::from_secs(3600)).await.unwrap().total(),
        0
    );
    // Old enough: only what the slower group (b) committed goes.
    let report = bus.prune_before(now_ms() + 60_000).await.unwrap();
    assert_eq!(
        report.deleted,
        vec![(topic.clone(), 3)],
        "topics without groups are kept"
    );
    assert_eq!(row_count(dir.path()).await, 7 + 5);

    // A new group starts at the earliest *retained* record.
    let mut c = bus.subscribe("c", &[&topic]).await.unwrap();
    let got_c = drain(c.as_mut(), 7, PATIENCE).await;
    assert_eq!(got_c[0].payload, "r3");
    // c is known now and has committed nothing: it holds retention at r3.
    assert_eq!(
        bus.prune_before(now_ms() + 60_000).await.unwrap().total(),
        0
    );
    c.commit(&got_c).await.unwrap();
    b.commit(&got_b).await.unwrap();
    // Now a (at r6) is the slowest.
    assert_eq!(
        bus.prune_before(now_ms() + 60_000).await.unwrap().total(),
        3
    );
    bus.forget_group("a").await.unwrap();
    drop(a);
    assert_eq!(
        bus.prune_before(now_ms() + 60_000).await.unwrap().total(),
        4
    );
    assert_eq!(row_count(dir.path()).await, 5);

    // Offsets are never reused, even after the log was emptied.
    let last = got_b.last().unwrap().offset;
    bus.publish(&topic, &[record("k", "after")]).await.unwrap();
    let got = drain(b.as_mut(), 1, PATIENCE).await;
    assert_eq!(got[0].payload, "after");
    assert!(got[0].offset > last);
}

#[tokio::test]
async fn background_retention_task_prunes_committed_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::new(dir.path());
    config.retention = Some(Duration::ZERO);
    config.prune_interval = Duration::from_millis(20);
    let bus = EmbeddedBus::open(config).await.unwrap();
    let topic = unique("t");
    let recs: Vec<_> = (0..20)
        .map(|i| record(&format!("k{i}"), format!("r{i}")))
        .collect();
    bus.publish(&topic, &recs).await.unwrap();
    let mut c = bus.subscribe("g", &[&topic]).await.unwrap();
    let got = drain(c.as_mut(), 20, PATIENCE).await;
    assert_eq!(
        row_count(dir.path()).await,
        20,
        "nothing is pruned before the commit"
    );
    c.commit(&got).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while row_count(dir.path()).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention task never pruned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_one_group_split_partitions_and_take_over() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path(), 4).await;
    let topic = unique("t");
    let recs: Vec<_> = (0..200)
        .map(|i| record(&format!("k{}", i % 50), format!("r{i}")))
        .collect();
    bus.publish(&topic, &recs).await.unwrap();

    let mut m1 = bus.subscribe("g", &[&topic]).await.unwrap();
    let mut m2 = bus.subscribe("g", &[&topic]).await.unwrap();
    let (mut s1, mut s2) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while s1.len() + s2.len() < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 200",
            s1.len() + s2.len()
        );
        s1.extend(m1.poll(50, Duration::from_millis(50)).await.unwrap());
        s2.extend(m2.poll(50, Duration::from_millis(50)).await.unwrap());
    }
    let p1: HashSet<i32> = s1.iter().map(|d| d.partition).collect();
    let p2: HashSet<i32> = s2.iter().map(|d| d.partition).collect();
    assert_eq!(p1.len(), 2, "two partitions each");
    assert!(
        p1.is_disjoint(&p2),
        "a partition has one owner: {p1:?} {p2:?}"
    );
    let keys1: HashSet<&str> = s1.iter().map(|d| d.key.as_str()).collect();
    assert!(
        s2.iter().all(|d| !keys1.contains(d.key.as_str())),
        "a key has one owner"
    );
    m1.commit(&s1).await.unwrap();
    m2.commit(&s2[..s2.len() / 2]).await.unwrap();

    // m2 leaves with half of its records uncommitted: m1 takes its partitions
    // over from the committed offsets and sees exactly that half again.
    drop(m2);
    let again = drain(m1.as_mut(), s2.len() - s2.len() / 2, PATIENCE).await;
    let expect: HashSet<_> = s2[s2.len() / 2..].iter().map(|d| d.offset).collect();
    assert_eq!(
        again.iter().map(|d| d.offset).collect::<HashSet<_>>(),
        expect
    );
    bus.publish(&topic, &[record("k1", "new")]).await.unwrap();
    assert_eq!(drain(m1.as_mut(), 1, PATIENCE).await[0].payload, "new");
}

#[tokio::test]
async fn existing_topics_keep_their_partition_count() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("t");
    {
        let bus = open(dir.path(), 2).await;
        bus.ensure_topics(&[&topic]).await.unwrap();
    }
    let bus = open(dir.path(), 8).await;
    let recs: Vec<_> = (0..100)
        .map(|i| record(&format!("k{i}"), format!("r{i}")))
        .collect();
    bus.publish(&topic, &recs).await.unwrap();
    let mut c = bus.subscribe("g", &[&topic]).await.unwrap();
    let parts: HashSet<i32> = drain(c.as_mut(), 100, PATIENCE)
        .await
        .iter()
        .map(|d| d.partition)
        .collect();
    assert_eq!(parts, HashSet::from([0, 1]));
}

#[tokio::test]
async fn invalid_arguments_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig::new(dir.path());
    config.partitions = 0;
    assert!(matches!(
        EmbeddedBus::open(config).await,
        Err(BusError::Config(_))
    ));
    let bus = open(dir.path(), 1).await;
    assert!(matches!(
        bus.subscribe("", &["t"]).await,
        Err(BusError::Config(_))
    ));
    assert!(matches!(
        bus.subscribe("g", &[]).await,
        Err(BusError::Config(_))
    ));
    assert!(matches!(
        bus.publish("", &[record("k", "v")]).await,
        Err(BusError::Config(_))
    ));
}

#[tokio::test]
async fn connect_picks_the_implementation_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let bus = connect(&BusConfig::embedded(dir.path())).await.unwrap();
    assert_eq!(bus.kind(), "embedded");
    bus.ping().await.unwrap();
    assert!(dir.path().join("bus.db").exists());

    let kafka = BusConfig {
        kind: BusKind::Kafka {
            brokers: "127.0.0.1:1".into(),
            partitions: 3,
            client_id: "test".into(),
            idempotent: true,
        },
    };
    let result = connect(&kafka).await;
    if cfg!(feature = "kafka") {
        // Creating clients does not connect; the broker is only needed later.
        assert_eq!(result.unwrap().kind(), "kafka");
    } else {
        match result {
            Err(BusError::Config(msg)) => assert!(msg.contains("kafka"), "{msg}"),
            Err(e) => panic!("expected a config error, got {e}"),
            Ok(_) => panic!("expected a config error, got a bus"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_opens_of_one_dir_share_the_group_coordinator() {
    // The all-in-one binary may call `connect` once per service.
    let dir = tempfile::tempdir().unwrap();
    let bus1 = connect(&BusConfig::embedded(dir.path())).await.unwrap();
    let bus2 = connect(&BusConfig::embedded(dir.path().join(".")))
        .await
        .unwrap();
    let topic = unique("t");
    let mut m1 = bus1.subscribe("g", &[&topic]).await.unwrap();
    let mut m2 = bus2.subscribe("g", &[&topic]).await.unwrap();
    let recs: Vec<_> = (0..100)
        .map(|i| record(&format!("k{i}"), format!("r{i}")))
        .collect();
    bus1.publish(&topic, &recs).await.unwrap();
    let (mut s1, mut s2) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while s1.len() + s2.len() < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 100",
            s1.len() + s2.len()
        );
        s1.extend(m1.poll(50, Duration::from_millis(50)).await.unwrap());
        s2.extend(m2.poll(50, Duration::from_millis(50)).await.unwrap());
    }
    let o1: HashSet<i64> = s1.iter().map(|d| d.offset).collect();
    let o2: HashSet<i64> = s2.iter().map(|d| d.offset).collect();
    assert!(!o1.is_empty() && !o2.is_empty(), "both members get a share");
    assert!(o1.is_disjoint(&o2), "no record goes to both members");
    assert_eq!(o1.len() + o2.len(), 100);
}
