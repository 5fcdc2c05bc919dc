//! Live-feed latency: a killmail's time from its `killmail.enriched` publish on the bus to its
//! arrival on a browser-facing WebSocket, p50/p99/max, at 100 and 1,000 connected clients.
//!
//! Three paths, one process (embedded bus, SQLite in a temp dir, loopback sockets):
//! * `notification /ws/public`: the notification service's own socket (the baseline);
//! * `bff /api/ws/public, all-in-one`: the BFF's socket fed by the long-poll relay over the
//!   in-process service client (router call, no HTTP);
//! * `bff /api/ws/public, split`: the same BFF code with the notification service reached over
//!   HTTP on loopback (`ServiceClient::http`), as in split mode.
//!
//! The clients are tokio-tungstenite sockets on their own two-thread runtime in the same
//! process (so publish and receive share one monotonic clock); each finds the killmail id in
//! the text without parsing the JSON and stores its receive time in a preallocated slot.
//! Rounds are 300 ms apart, one killmail each. Run in release:
//!
//! ```text
//! cargo run --release -p bs-bff --example bench_live [-- ROUNDS]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bs_bus::{BusConfig, Record};
use bs_config::{Config, ServiceName};
use bs_events::{Envelope, KillmailEnriched};
use bs_runtime::{ServiceClient, ServiceContext, ServiceDirectory, SystemClock};
use futures::StreamExt as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Killmail ids of the bench start here; round `r` is `BASE + r` (per run, offset).
const BASE: i64 = 990_000_000;

/// A fresh killmail (now) in Jita with a victim and one player attacker.
fn killmail(id: i64) -> KillmailEnriched {
    let system = 30_000_142;
    let sys = bs_sde::StaticData::bundled().system(system).unwrap();
    serde_json::from_value(json!({
        "killmail_id": id,
        "killmail_time": chrono::Utc::now(),
        "hash": "abc",
        "source": "r2z2",
        "system": {
            "id": system, "name": sys.name, "constellation_id": null, "constellation_name": null,
            "region_id": sys.region_id, "region_name": sys.region_name,
            "security_status": sys.rounded_security, "security_type": sys.security_type.as_str(),
        },
        "victim": {
            "character_id": 95_000_001, "character_name": "Victim Pilot", "corporation_id": 98_000_001,
            "ship": { "type_id": 587, "type_name": "Rifter", "group_id": 25, "group_name": "Frigate", "category_id": 6, "class": "frigate" },
            "damage_taken": 1000,
        },
        "attackers": [{
            "character_id": 95_000_002, "character_name": "Attacker Pilot", "corporation_id": 98_000_002,
            "ship": { "type_id": 24690, "type_name": "Hurricane", "group_id": 419, "group_name": "Combat Battlecruiser", "category_id": 6, "class": "battlecruiser" },
            "weapon_type_id": null, "weapon_type_name": null, "damage_done": 1000, "final_blow": true,
            "security_status": 0.0, "is_npc": false,
        }],
        "isk": { "destroyed": 1.0e8, "dropped": 0.0, "total": 1.0e8, "value_source": "computed" },
        "attacker_count": 1,
        "pilot_count": 2,
        "names_pending": false,
        "enrichment_version": 1,
    }))
    .unwrap()
}

/// The integer after `"killmail_id":` in a feed message.
fn killmail_id(text: &str) -> Option<i64> {
    let key = "\"killmail_id\":";
    let at = text.find(key)? + key.len();
    let digits = text[at..].bytes().take_while(u8::is_ascii_digit).count();
    text[at..at + digits].parse().ok()
}

async fn serve(router: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    addr.to_string()
}

fn quantiles(v: &mut [u64]) -> (f64, f64, f64) {
    v.sort_unstable();
    let q = |p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    (q(0.5), q(0.99), q(1.0))
}

/// One run: `n` clients on `url`, `rounds` killmails; prints a table row.
#[allow(clippy::too_many_arguments)]
async fn run(
    label: &str,
    url: &str,
    n: usize,
    rounds: usize,
    first_id: i64,
    bus: &Arc<dyn bs_bus::EventBus>,
    clients_rt: &tokio::runtime::Handle,
    epoch: Instant,
) {
    // Receive time per (round, client), µs since `epoch`; 0 = not received.
    let slots: Arc<Vec<AtomicU64>> = Arc::new((0..n * rounds).map(|_| AtomicU64::new(0)).collect());
    let mut sockets = Vec::with_capacity(n);
    let t = Instant::now();
    // Connect 64 at a time, on the clients' runtime.
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let conns: Vec<_> = chunk
            .iter()
            .map(|_| {
                let url = url.to_owned();
                clients_rt.spawn(async move { tokio_tungstenite::connect_async(url).await })
            })
            .collect();
        for c in conns {
            sockets.push(c.await.unwrap().unwrap().0);
        }
    }
    let connect = t.elapsed();
    let readers: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            let slots = Arc::clone(&slots);
            clients_rt.spawn(async move {
                let mut got = 0;
                while got < rounds {
                    let Some(Ok(m)) = ws.next().await else { break };
                    let Ok(text) = m.to_text() else { continue };
                    let now = epoch.elapsed().as_micros() as u64;
                    let Some(id) = killmail_id(text) else {
                        continue;
                    };
                    let r = id - first_id;
                    if (0..rounds as i64).contains(&r) {
                        slots[r as usize * n + i].store(now.max(1), Ordering::Relaxed);
                        got += 1;
                    }
                }
                let _ = ws.close(None).await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sent_at = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let km = killmail(first_id + r as i64);
        let record = Record {
            key: km.killmail_id.to_string(),
            payload: Envelope::wrap(&km, chrono::Utc::now()).unwrap().to_bytes(),
        };
        sent_at.push(epoch.elapsed().as_micros() as u64);
        bus.publish(bs_events::topics::KILLMAIL_ENRICHED, &[record])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Give the last round time to land, then stop the readers that are still waiting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for r in &readers {
        r.abort();
    }
    let mut lat = Vec::with_capacity(n * rounds);
    for r in 0..rounds {
        for i in 0..n {
            let at = slots[r * n + i].load(Ordering::Relaxed);
            if at > 0 {
                lat.push(at.saturating_sub(sent_at[r]));
            }
        }
    }
    let received = lat.len();
    let (p50, p99, max) = quantiles(&mut lat);
    println!(
        "| {label} | {n} | {rounds} | {received} of {} | {p50:.1} | {p99:.1} | {max:.1} | {:.1} s |",
        n * rounds,
        connect.as_secs_f64()
    );
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let clients_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("clients")
        .enable_all()
        .build()?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let handle = clients_rt.handle().clone();
    server_rt.block_on(async move {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let config = Config {
            data_dir: data.clone(),
            ..Config::default()
        };
        let bus = bs_bus::connect(&BusConfig::embedded(data.join("bus"))).await?;
        bus.ensure_topics(bs_events::topics::ALL).await?;
        let ctx = ServiceContext {
            config: Arc::new(config),
            bus: Arc::clone(&bus),
            cache: Arc::new(bs_cache::MemoryCache::new(1000)),
            clock: Arc::new(SystemClock),
            shutdown: CancellationToken::new(),
            offline: true,
            services: ServiceDirectory::default(),
        };
        let notification = bs_notification::start(&ctx).await?;
        ctx.services.register(ServiceClient::in_process(
            ServiceName::Notification,
            notification.router.clone(),
        ));
        let bff = bs_bff::start(&ctx).await?;
        let notify_addr = serve(notification.router.clone()).await;
        let bff_addr = serve(bff.router.clone()).await;
        let split_services = ServiceDirectory::default();
        split_services.register(ServiceClient::http(
            ServiceName::Notification,
            &format!("http://{notify_addr}"),
        ));
        let split_ctx = ServiceContext {
            services: split_services,
            ..ctx.clone()
        };
        let split_bff = bs_bff::start(&split_ctx).await?;
        let split_addr = serve(split_bff.router.clone()).await;
        println!("| path | clients | rounds | received | p50 ms | p99 ms | max ms | connect |");
        println!("|---|---|---|---|---|---|---|---|");
        let epoch = Instant::now();
        let mut first_id = BASE;
        for n in [100, 1000] {
            for (label, url) in [
                (
                    "notification /ws/public",
                    format!("ws://{notify_addr}/ws/public"),
                ),
                (
                    "bff /api/ws/public, all-in-one",
                    format!("ws://{bff_addr}/api/ws/public"),
                ),
                (
                    "bff /api/ws/public, split",
                    format!("ws://{split_addr}/api/ws/public"),
                ),
            ] {
                run(label, &url, n, rounds, first_id, &bus, &handle, epoch).await;
                first_id += rounds as i64;
                // Let the closed sockets' relays be deleted before the next run.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        ctx.shutdown.cancel();
        drop((notification, bff, split_bff));
        anyhow::Ok(())
    })?;
    drop(clients_rt);
    Ok(())
}
