//! The bus conformance suite: behaviour every [`EventBus`] must show, written
//! once and stamped per implementation by [`conformance_suite!`].
//!
//! Tests never sleep to "let things settle": they wait for an expected record
//! with a deadline (the harness's patience), and prove that nothing else is
//! pending by publishing a marker record and checking it is the only thing a
//! fresh consumer sees.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bs_bus::{Consumer, Delivery, Record};
use bytes::Bytes;

use crate::harness::{Harness, unique};

/// Stamps one `#[tokio::test]` per conformance case. `$make` is an async fn
/// returning `Option<impl Harness>`; `None` means "skipped" (it already said why).
#[macro_export]
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance_suite!(@cases $make;
            per_key_ordering,
            redelivery_after_drop_without_commit,
            resume_from_committed_offset_after_restart,
            independent_consumer_groups,
            batch_publish,
            empty_poll_returns_within_timeout,
            one_consumer_on_several_topics,
            kill9_at_least_once,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(harness) = $make().await else { return };
                $crate::conformance::$case(&harness).await;
            }
        )*
    };
}

pub fn record(key: &str, payload: impl Into<Bytes>) -> Record {
    Record {
        key: key.to_owned(),
        payload: payload.into(),
    }
}

fn text(d: &Delivery) -> String {
    String::from_utf8(d.payload.to_vec()).expect("utf-8 payload")
}

/// Polls until `n` deliveries arrived; panics if they do not within `patience`.
pub async fn drain(c: &mut dyn Consumer, n: usize, patience: Duration) -> Vec<Delivery> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "expected {n} deliveries within {patience:?}, got {}",
            got.len()
        );
        let batch = c
            .poll(n - got.len(), left.min(Duration::from_secs(2)))
            .await
            .expect("poll");
        assert!(
            batch.len() <= n - got.len(),
            "poll returned more than `max`"
        );
        got.extend(batch);
    }
    got
}

/// Polls until `marker` arrives and returns everything seen before and with
/// it; the caller asserts that nothing but the marker showed up.
async fn until_marker(c: &mut dyn Consumer, marker: &str, patience: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "marker {marker} not delivered within {patience:?}; saw {seen:?}"
        );
        let batch = c
            .poll(100, left.min(Duration::from_secs(2)))
            .await
            .expect("poll");
        seen.extend(batch.iter().map(text));
        if seen.iter().any(|s| s == marker) {
            return seen;
        }
    }
}

/// Offsets must grow within each partition in delivery order.
fn assert_offsets_increase(got: &[Delivery]) {
    let mut last: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for d in got {
        if let Some(prev) = last.insert((d.topic.clone(), d.partition), d.offset) {
            assert!(
                d.offset > prev,
                "offset went from {prev} to {} in {}/{}",
                d.offset,
                d.topic,
                d.partition
            );
        }
    }
}

pub async fn per_key_ordering(h: &impl Harness) {
    let bus = h.open().await;
    let topic = unique("order");
    bus.ensure_topics(&[&topic]).await.expect("ensure");
    let keys = ["battle:1", "battle:2", "battle:3", "killmail:77"];
    // Interleave keys across several publishes so order is tested across batches.
    for batch in 0..5 {
        let records: Vec<Record> = (0..10)
            .flat_map(|i| {
                keys.iter()
                    .map(move |k| record(k, format!("{k}#{:03}", batch * 10 + i)))
            })
            .collect();
        bus.publish(&topic, &records).await.expect("publish");
    }
    let mut c = bus
        .subscribe(&unique("g"), &[&topic])
        .await
        .expect("subscribe");
    let got = drain(c.as_mut(), 200, h.patience()).await;
    assert_offsets_increase(&got);
    let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for d in &got {
        let t = text(d);
        let (k, seq) = t.split_once('#').expect("payload shape");
        assert_eq!(k, d.key, "key must round-trip");
        per_key
            .entry(d.key.clone())
            .or_default()
            .push(seq.parse().expect("seq"));
    }
    assert_eq!(per_key.len(), keys.len());
    for (k, seqs) in per_key {
        let expected: Vec<u32> = (0..50).collect();
        assert_eq!(seqs, expected, "records of {k} out of order or missing");
    }
}

pub async fn redelivery_after_drop_without_commit(h: &impl Harness) {
    let bus = h.open().await;
    let topic = unique("redeliver");
    let group = unique("g");
    bus.ensure_topics(&[&topic]).await.expect("ensure");
    let records: Vec<Record> = (0..12)
        .map(|i| record(&format!("k{i}"), format!("r{i}")))
        .collect();
    bus.publish(&topic, &records).await.expect("publish");

    let mut first = bus.subscribe(&group, &[&topic]).await.expect("subscribe");
    let seen_first: HashSet<String> = drain(first.as_mut(), 12, h.patience())
        .await
        .iter()
        .map(text)
        .collect();
    drop(first); // no commit

    let mut second = bus
        .subscribe(&group, &[&topic])
        .await
        .expect("subscribe again");
    let got = drain(second.as_mut(), 12, h.patience()).await;
    let seen_second: HashSet<String> = got.iter().map(text).collect();
    assert_eq!(seen_first.len(), 12);
    assert_eq!(
        seen_second, seen_first,
        "uncommitted records must all be redelivered"
    );

    // Once committed they are gone for the group: a marker is all a new member sees.
    second.commit(&got).await.expect("commit");
    drop(second);
    bus.publish(&topic, &[record("m", "marker")])
        .await
        .expect("publish marker");
    let mut third = bus
        .subscribe(&group, &[&topic])
        .await
        .expect("subscribe third");
    assert_eq!(
        until_marker(third.as_mut(), "marker", h.patience()).await,
        vec!["marker"]
    );
}

pub async fn resume_from_committed_offset_after_restart(h: &impl Harness) {
    let topic = unique("resume");
    let group = unique("g");
    let rest: HashSet<String> = {
        let bus = h.open().await;
        bus.ensure_topics(&[&topic]).await.expect("ensure");
        let records: Vec<Record> = (0..10)
            .map(|i| record(&format!("k{i}"), format!("r{i}")))
            .collect();
        bus.publish(&topic, &records).await.expect("publish");
        let mut c = bus.subscribe(&group, &[&topic]).await.expect("subscribe");
        let got = drain(c.as_mut(), 10, h.patience()).await;
        // Committing a prefix of the delivery order commits, per partition, a
        // prefix of that partition: exactly `got[6..]` stays uncommitted.
        c.commit(&got[..6]).await.expect("commit");
        got[6..].iter().map(text).collect()
        // Consumer and bus are dropped here: the "restart".
    };
    {
        let bus = h.open().await;
        let mut c = bus
            .subscribe(&group, &[&topic])
            .await
            .expect("subscribe after restart");
        let got = drain(c.as_mut(), rest.len(), h.patience()).await;
        let seen: HashSet<String> = got.iter().map(text).collect();
        assert_eq!(
            seen, rest,
            "after restart the group resumes right after its committed offsets"
        );
        c.commit(&got).await.expect("commit rest");
    }
    let bus = h.open().await;
    bus.publish(&topic, &[record("m", "marker")])
        .await
        .expect("publish marker");
    let mut c = bus
        .subscribe(&group, &[&topic])
        .await
        .expect("subscribe after second restart");
    assert_eq!(
        until_marker(c.as_mut(), "marker", h.patience()).await,
        vec!["marker"],
        "committed records must not be redelivered"
    );
}

pub async fn independent_consumer_groups(h: &impl Harness) {
    let bus = h.open().await;
    let topic = unique("groups");
    bus.ensure_topics(&[&topic]).await.expect("ensure");
    let records: Vec<Record> = (0..20)
        .map(|i| record(&format!("k{}", i % 5), format!("r{i}")))
        .collect();
    bus.publish(&topic, &records).await.expect("publish");
    let all: HashSet<String> = records
        .iter()
        .map(|r| String::from_utf8(r.payload.to_vec()).unwrap())
        .collect();

    let (ga, gb) = (unique("enrich"), unique("search"));
    let mut a = bus.subscribe(&ga, &[&topic]).await.expect("subscribe a");
    let got_a = drain(a.as_mut(), 20, h.patience()).await;
    a.commit(&got_a).await.expect("commit a");
    assert_eq!(got_a.iter().map(text).collect::<HashSet<_>>(), all);

    // Group A's commit must not move group B.
    let mut b = bus.subscribe(&gb, &[&topic]).await.expect("subscribe b");
    let got_b = drain(b.as_mut(), 20, h.patience()).await;
    assert_eq!(
        got_b.iter().map(text).collect::<HashSet<_>>(),
        all,
        "group b reads everything"
    );
    drop(b); // b commits nothing

    drop(a);
    bus.publish(&topic, &[record("m", "marker")])
        .await
        .expect("publish marker");
    let mut a = bus.subscribe(&ga, &[&topic]).await.expect("resubscribe a");
    assert_eq!(
        until_marker(a.as_mut(), "marker", h.patience()).await,
        vec!["marker"]
    );
    let mut b = bus.subscribe(&gb, &[&topic]).await.expect("resubscribe b");
    let again_b = drain(b.as_mut(), 21, h.patience()).await;
    assert_eq!(
        again_b.len(),
        21,
        "group b never committed, so it gets everything again"
    );
}

/// A deterministic ~3 KB payload that embeds its id, so corruption is caught.
fn big_payload(i: usize) -> Vec<u8> {
    let mut p = format!("id={i:05};").into_bytes();
    p.extend((0..3_000).map(|j| b'a' + u8::try_from((i * 7 + j) % 26).unwrap()));
    p
}

pub async fn batch_publish(h: &impl Harness) {
    let bus = h.open().await;
    let topic = unique("batch");
    bus.ensure_topics(&[&topic]).await.expect("ensure");
    bus.publish(&topic, &[])
        .await
        .expect("empty batch is a no-op");
    let records: Vec<Record> = (0..500)
        .map(|i| record(&format!("km:{}", i % 10), big_payload(i)))
        .collect();
    bus.publish(&topic, &records).await.expect("publish 500");

    let mut c = bus
        .subscribe(&unique("g"), &[&topic])
        .await
        .expect("subscribe");
    // `max` is honoured even when far more is available.
    let first = loop {
        let b = c.poll(7, h.patience()).await.expect("poll");
        if !b.is_empty() {
            break b;
        }
    };
    assert!(first.len() <= 7);
    let mut got = first.clone();
    got.extend(drain(c.as_mut(), 500 - first.len(), h.patience()).await);
    assert_offsets_increase(&got);
    let mut last_per_key: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = HashSet::new();
    for d in &got {
        let id: usize = std::str::from_utf8(&d.payload[3..8])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            d.payload.as_ref(),
            big_payload(id).as_slice(),
            "payload {id} corrupted"
        );
        assert_eq!(d.key, format!("km:{}", id % 10));
        if let Some(prev) = last_per_key.insert(d.key.clone(), id) {
            assert!(id > prev, "key {} out of order: {prev} then {id}", d.key);
        }
        ids.insert(id);
    }
    assert_eq!(
        ids.len(),
        500,
        "every record exactly once in one consumer session"
    );
}

pub async fn empty_poll_returns_within_timeout(h: &impl Harness) {
    let bus = h.open().await;
    let topic = unique("empty");
    bus.ensure_topics(&[&topic]).await.expect("ensure");
    let mut c = bus
        .subscribe(&unique("g"), &[&topic])
        .await
        .expect("subscribe");
    for _ in 0..3 {
        // The outer bound is only a hang detector, 100x the poll timeout.
        let got = tokio::time::timeout(
            Duration::from_secs(30),
            c.poll(10, Duration::from_millis(300)),
        )
        .await
        .expect("poll must return once its timeout passes")
        .expect("poll");
        assert!(got.is_empty(), "nothing was published: {got:?}");
    }
    let got = tokio::time::timeout(
        Duration::from_secs(30),
        c.poll(0, Duration::from_millis(300)),
    )
    .await
    .expect("poll(max = 0) returns")
    .expect("poll");
    assert!(got.is_empty());
}

pub async fn one_consumer_on_several_topics(h: &impl Harness) {
    let (t1, t2) = (unique("multi-a"), unique("multi-b"));
    let group = unique("g");
    let bus = h.open().await;
    bus.ensure_topics(&[&t1, &t2]).await.expect("ensure");
    let on = |t: &str, n: usize| -> Vec<Record> {
        (0..n)
            .map(|i| record(&format!("k{i}"), format!("{t}/{i}")))
            .collect()
    };
    bus.publish(&t1, &on(&t1, 6)).await.expect("publish a");
    bus.publish(&t2, &on(&t2, 4)).await.expect("publish b");
    let mut c = bus.subscribe(&group, &[&t1, &t2]).await.expect("subscribe");
    let got = drain(c.as_mut(), 10, h.patience()).await;
    for d in &got {
        assert!(
            text(d).starts_with(&format!("{}/", d.topic)),
            "{d:?} carries the wrong topic"
        );
    }
    assert_eq!(got.iter().filter(|d| d.topic == t1).count(), 6);
    // One commit call covering both topics.
    c.commit(&got).await.expect("commit");
    drop(c);
    bus.publish(&t2, &[record("m", "marker")])
        .await
        .expect("publish marker");
    let mut c = bus
        .subscribe(&group, &[&t1, &t2])
        .await
        .expect("resubscribe");
    assert_eq!(
        until_marker(c.as_mut(), "marker", h.patience()).await,
        vec!["marker"]
    );
}

pub async fn kill9_at_least_once(h: &impl Harness) {
    crate::kill9::run(h).await;
}
