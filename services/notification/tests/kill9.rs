//! Delivery through a `kill -9`: the service runs in a child process (this test binary
//! re-executed on the ignored `child_process` test, pointed at a data directory), a local
//! receiver holds one webhook request open, the parent SIGKILLs the child mid-delivery and
//! starts it again on the same data directory with the same events published again.
//!
//! What must hold: every match is delivered (at least once on the wire), the only repeat is
//! the request that was in flight at the kill, it carries the same `X-BattleScope-Delivery`
//! as its first try (so a receiver that dedupes on it sees each match exactly once), and the
//! history holds each match once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bs_bus::{BusConfig, Record};
use bs_config::Config;
use bs_events::Envelope;
use bs_runtime::{ServiceContext, ServiceDirectory};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;
use crate::webhook::fast_sender;

/// The env var that turns the ignored test into the child service.
const CHILD_DIR: &str = "BS_NOTIFY_KILL9_DIR";
const CHILD_ALLOW: &str = "BS_NOTIFY_KILL9_ALLOW";
/// Killmails of the fight published (and matched: the filter takes every killmail).
const KILLS: usize = 12;
/// The request the receiver holds open (1-based), when the parent kills the child.
const HOLD: usize = 4;

/// The child: the service on the given data directory, its API on a loopback port (printed as
/// `READY <port>`), and on each `go` line from stdin the first [`KILLS`] killmails of a real
/// fight published on the embedded bus. Runs until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by kill9_mid_delivery as a child process"]
async fn child_process() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let kms: Vec<_> = fight("uw9b-f").into_iter().take(KILLS).collect();
    let at = kms.iter().map(|k| k.killmail_time).max().unwrap();
    let bus = bs_bus::connect(&BusConfig::embedded(dir.join("bus")))
        .await
        .unwrap();
    let mut config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    config.public_url = "http://battlescope.test".into();
    config.notification.webhook_allowed_hosts = std::env::var(CHILD_ALLOW).unwrap();
    // The fight is hours long; none of it is too old to notify.
    config.notification.max_age = "90d".into();
    let ctx = ServiceContext {
        config: Arc::new(config),
        bus: Arc::clone(&bus),
        cache: Arc::new(bs_cache::MemoryCache::new(100)),
        clock: ShiftedClock::at(at),
        shutdown: CancellationToken::new(),
        offline: true,
        services: ServiceDirectory::default(),
    };
    let handle = bs_notification::start_with(&ctx, Arc::new(TestAccounts), fast_sender())
        .await
        .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let router = handle.router.clone();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    println!("READY {port}");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.is_ok_and(|l| l.trim() == "go") {
                let _ = tx.send(());
            }
        }
    });
    while rx.recv().await.is_some() {
        let records: Vec<Record> = kms
            .iter()
            .map(|k| Record {
                key: k.killmail_id.to_string(),
                payload: Envelope::wrap(k, chrono::Utc::now()).unwrap().to_bytes(),
            })
            .collect();
        bus.publish(bs_events::topics::KILLMAIL_ENRICHED, &records)
            .await
            .unwrap();
        println!("PUBLISHED");
    }
}

struct ChildProc {
    child: Child,
    port: u16,
}

impl ChildProc {
    fn start(dir: &std::path::Path, allow: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "kill9::child_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir)
            .env(CHILD_ALLOW, allow)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let port = loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
            // libtest may have printed `test kill9::child_process ... ` on the same line.
            if let Some(p) = line.trim().split("READY ").nth(1) {
                break p.parse().unwrap();
            }
        };
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in out.lines() {});
        Self { child, port }
    }

    fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "go").unwrap();
        stdin.flush().unwrap();
    }

    /// SIGKILL: no shutdown code runs.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(
                method.parse().unwrap(),
                format!("http://127.0.0.1:{}{path}", self.port),
            )
            .header("cookie", "session=alice");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_delivery_then_restart_delivers_every_match_once_per_delivery_id() {
    // The receiver: logs every request; holds the HOLD-th open (the service dies meanwhile).
    let log: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let seen = Arc::new(AtomicUsize::new(0));
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let app = {
        let log = Arc::clone(&log);
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |h: axum::http::HeaderMap, body: axum::body::Bytes| {
                let log = Arc::clone(&log);
                let seen = Arc::clone(&seen);
                let held_tx = held_tx.clone();
                async move {
                    let delivery = h
                        .get("x-battlescope-delivery")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let key = v["delivery"].as_str().unwrap_or("").to_owned();
                    log.lock().push((delivery.clone(), key));
                    if seen.fetch_add(1, Ordering::SeqCst) + 1 == HOLD {
                        let _ = held_tx.send(delivery);
                        tokio::time::sleep(Duration::from_secs(120)).await;
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let allow = addr.to_string();

    let dir = bs_testkit::temp_dir();
    let mut child = ChildProc::start(dir.path(), &allow);
    let (s, sub) = child
        .call(
            "POST",
            "/subscriptions",
            Some(json!({
                "name": "everything", "filter": { "type": "min_isk", "isk": 0.0 },
                "webhooks": [{ "url": format!("http://{addr}/hook"), "kind": "json" }],
            })),
        )
        .await;
    assert_eq!(s, 201, "{sub}");
    child.go();
    let held = guard(held_rx.recv()).await.unwrap();
    // The HOLD-th request is on the wire, unanswered: kill -9.
    child.kill9();
    let before: Vec<(String, String)> = log.lock().clone();
    assert_eq!(before.len(), HOLD, "{before:?}");

    // Restart on the same data directory; the same killmails are published again.
    let mut child = ChildProc::start(dir.path(), &allow);
    child.go();
    eventually(|| {
        let log = Arc::clone(&log);
        async move {
            let ids: BTreeSet<String> = log.lock().iter().map(|(d, _)| d.clone()).collect();
            ids.len() >= KILLS
        }
    })
    .await;
    // Let any stray resend show up before counting.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let all: Vec<(String, String)> = log.lock().clone();
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (d, key) in &all {
        by_id.entry(d.clone()).or_default().push(key.clone());
    }
    assert_eq!(by_id.len(), KILLS, "one delivery id per match: {all:?}");
    // The same delivery id always carries the same match.
    for (d, keys) in &by_id {
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "{d}: {keys:?}");
    }
    let keys: BTreeSet<&String> = by_id.values().map(|k| &k[0]).collect();
    assert_eq!(keys.len(), KILLS, "every match has its own key");
    // The only repeat on the wire is the request in flight at the kill.
    let repeats: Vec<(&String, usize)> = by_id
        .iter()
        .filter(|(_, k)| k.len() > 1)
        .map(|(d, k)| (d, k.len()))
        .collect();
    assert_eq!(repeats, vec![(&held, 2)], "{all:?}");
    // The history holds each match once.
    let (s, notes) = child.call("GET", "/notifications?limit=500", None).await;
    assert_eq!(s, 200);
    assert_eq!(notes.as_array().unwrap().len(), KILLS, "{notes}");
    println!(
        "kill -9 mid-delivery: {} requests for {KILLS} matches, 1 resent ({held})",
        all.len()
    );
}
