//! The WebSocket fan-out and the long-poll relay, on real sockets and real hub queues: a
//! reader that stops reading is dropped while a fast one still gets every message in order,
//! one shared message reaches every kind of public connection, relay polls keep queue order
//! across batches, and a new poll supersedes a waiting one without losing a message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bs_notification::delivery::relay::{BATCH, Relays};
use bs_notification::delivery::ws::Message;
use bs_notification::domain::filter::{self, Filter};
use bs_notification::{BundledGeo, Hub, Notifier, NotifierSettings};
use futures::StreamExt as _;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::*;

/// The service's router on loopback; answers its address and hub.
async fn serve() -> (String, Arc<Hub>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(bs_notification::SqlNotificationStore::new(
        sqlite(dir.path()).await,
    ));
    let hub = Hub::new();
    let notifier = Notifier::open(
        store,
        Arc::new(bs_runtime::SystemClock),
        Arc::clone(&hub),
        Arc::new(BundledGeo),
        NotifierSettings {
            max_age: Duration::from_secs(3600),
            public_url: "http://battlescope.test".into(),
            public_feed: true,
        },
    )
    .await
    .unwrap();
    let router = bs_notification::api::router(bs_notification::api::ApiState {
        relays: Relays::new(Arc::clone(&hub)),
        notifier,
        accounts: Arc::new(TestAccounts),
        allow: Default::default(),
        public_url: "http://battlescope.test".into(),
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    (addr.to_string(), hub, dir)
}

/// Message `i`, padded so a reader that stops fills the kernel's socket buffers quickly.
fn numbered(i: usize) -> String {
    format!("m{i:06} {}", "x".repeat(32 * 1024))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_is_dropped_while_a_fast_one_gets_every_message() {
    let (addr, hub, _dir) = serve().await;
    let url = format!("ws://{addr}/ws/public");
    let (mut fast, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    eventually(|| {
        let n = hub.connections();
        async move { n == 2 }
    })
    .await;
    // Lockstep with the fast reader, so only the slow one can ever fall behind. The slow one
    // reads nothing: its socket buffers fill, then its queue of 64, then the hub drops it.
    let mut published = 0;
    let mut after_drop = 0;
    while after_drop < 10 {
        assert!(
            published < 5_000,
            "a reader that never reads was not dropped after {published} messages of 32 KiB"
        );
        let text = numbered(published);
        hub.publish_public(&Message::from(text.clone()), |_| true);
        published += 1;
        let got = guard(fast.next()).await.unwrap().unwrap();
        assert_eq!(
            got.to_text().unwrap(),
            text,
            "the fast reader gets every message, in order"
        );
        if hub.dropped() > 0 {
            after_drop += 1;
        }
    }
    assert_eq!(hub.dropped(), 1, "only the reader that stopped is dropped");
    assert_eq!(hub.connections(), 1);
    assert!(
        hub.written() >= published as u64,
        "every write to the fast socket counted"
    );
    // What the slow reader finds when it reads again: an in-order prefix, then 1013.
    let mut expect = 0;
    let close = loop {
        match guard(slow.next()).await {
            Some(Ok(WsMessage::Text(t))) => {
                assert_eq!(t.as_str(), numbered(expect), "in order, nothing skipped");
                expect += 1;
            }
            Some(Ok(WsMessage::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("the slow socket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(close, Some(1013), "told it was too slow");
    assert!(
        expect > 0 && expect < published,
        "got {expect} of {published}"
    );
}

#[tokio::test]
async fn one_shared_message_reaches_unfiltered_and_matching_filtered_connections_only() {
    let hub = Hub::new();
    let kms = fight("uw9b");
    let km = &kms[0];
    let compile = |f: &Filter| Arc::new(filter::compile(f, &BundledGeo, &HashMap::new()).unwrap());
    let (_, mut all) = hub.join_public(None, 4);
    let (_, mut here) = hub.join_public(
        Some(compile(&Filter::System {
            ids: vec![km.system.id],
        })),
        4,
    );
    let (_, mut elsewhere) = hub.join_public(Some(compile(&Filter::System { ids: vec![1] })), 4);
    let msg = Message::from("k".to_owned());
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let sent = hub.publish_public(&msg, |f| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f.matches(filter::Subject::Killmail(km))
    });
    assert_eq!(sent, 2);
    assert_eq!(
        calls.into_inner(),
        2,
        "the matcher runs for filtered connections only"
    );
    let (a, h) = (all.recv().await.unwrap(), here.recv().await.unwrap());
    assert_eq!((&*a, &*h), ("k", "k"));
    assert_eq!(
        a.as_ptr(),
        h.as_ptr(),
        "both queues hold the same bytes, not copies"
    );
    assert_eq!(
        a.text().as_str().as_ptr(),
        a.as_ptr(),
        "the socket text is not a copy either"
    );
    assert!(elsewhere.try_recv().is_err());
    // Leaving is by id from either list.
    hub.leave_public(0);
    hub.leave_public(1);
    assert_eq!(hub.connections(), 1);
}

#[tokio::test]
async fn relay_polls_keep_queue_order_across_batches() {
    let hub = Hub::new();
    let relays = Relays::new(Arc::clone(&hub));
    let token = relays.open_public(None, 1_000);
    let n = BATCH + 44;
    for i in 0..n {
        assert_eq!(
            hub.publish_public(&Message::from(format!("{i}")), |_| true),
            1
        );
    }
    let first = relays.poll(&token, Duration::from_millis(10)).await;
    assert_eq!(first.messages.len(), BATCH, "one poll answers one batch");
    let second = relays.poll(&token, Duration::from_millis(10)).await;
    let got: Vec<String> = first
        .messages
        .iter()
        .chain(&second.messages)
        .map(|m| m.to_string())
        .collect();
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
    assert!(!first.closed && !second.closed);
}

/// A poll nobody will read (its caller gave up) must not take the next message: the next
/// poll supersedes it.
#[tokio::test]
async fn a_new_relay_poll_supersedes_a_waiting_one_without_losing_a_message() {
    let hub = Hub::new();
    let relays = Relays::new(Arc::clone(&hub));
    let token = relays.open_public(None, 16);
    let abandoned = tokio::spawn({
        let (relays, token) = (Arc::clone(&relays), token.clone());
        async move { relays.poll(&token, Duration::from_secs(8)).await }
    });
    // One thread: the spawned poll runs up to its wait before the next one starts.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let next = tokio::spawn({
        let (relays, token) = (Arc::clone(&relays), token.clone());
        async move { relays.poll(&token, Duration::from_secs(8)).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    hub.publish_public(&Message::from("x"), |_| true);
    let old = guard(abandoned).await.unwrap();
    assert!(
        old.messages.is_empty() && !old.closed,
        "the superseded poll answers empty, not closed, and takes nothing"
    );
    let new = guard(next).await.unwrap();
    let got: Vec<&str> = new.messages.iter().map(|m| &**m).collect();
    assert_eq!(got, ["x"]);
    assert_eq!(relays.len(), 1);
}
