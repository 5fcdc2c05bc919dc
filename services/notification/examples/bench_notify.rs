//! Benchmarks of the notification service (numbers printed, nothing asserted):
//!
//! * `match [subs]`: matching throughput of `subs` (default 10,000) generated subscriptions
//!   against the 79k-killmail week in /work/shared/data/killmails (enriched first, untimed).
//! * `fanout [clients]`: one killmail fanned out to `clients` (default 10,000) WebSocket
//!   clients of `/ws/public` on loopback; the clients run in a child process (the per-process
//!   file limit is 20,000 here) and report publish→receive latency (p50/p99/max) from wall-clock
//!   stamps; the server reports its RSS growth per connection.
//!
//! `cargo run --release -p bs-notification --example bench_notify -- match`

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bs_domain::{Killmail, KillmailSource};
use bs_enrichment::domain::{Catalog, Input, enrich};
use bs_events::KillmailEnriched;
use bs_notification::domain::filter::{self, Filter, Role};
use bs_notification::domain::{Entry, Matcher, Scratch};
use bs_notification::{Access, Accounts, BundledGeo, Hub, Notifier, NotifierSettings};
use bs_sde::{MarketPrices, StaticData};
use futures::StreamExt as _;

fn load_week() -> Vec<KillmailEnriched> {
    let dir = Path::new("/work/shared/data/killmails");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("everef-killmails-"))
        .collect();
    files.sort();
    let names: HashMap<i64, Option<String>> = HashMap::new();
    let (et, es) = (HashMap::new(), HashMap::new());
    let catalog = Catalog {
        sde: StaticData::bundled(),
        extra_types: &et,
        extra_systems: &es,
        names: &names,
        prices: MarketPrices::bundled(),
    };
    let mut out = Vec::new();
    for f in files {
        let r = BufReader::new(flate2::read::MultiGzDecoder::new(
            std::fs::File::open(&f).unwrap(),
        ));
        for line in r.lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let hash = v["killmail_hash"].as_str().unwrap_or("0").to_owned();
            let Ok(km) = serde_json::from_value::<Killmail>(v) else {
                continue;
            };
            out.push(
                enrich(
                    Input {
                        killmail: &km,
                        hash: &hash,
                        zkb: None,
                        source: KillmailSource::Everef,
                    },
                    &catalog,
                )
                .event,
            );
        }
    }
    out
}

/// Deterministic xorshift.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A realistic mix: mostly entity and area watches, some with value/size conditions, a few
/// with no indexable key at all (checked against every killmail).
fn subscriptions(kms: &[KillmailEnriched], n: usize) -> Vec<Entry> {
    let mut rng = Rng(0x2545f4914f6cdd1d);
    let lists = HashMap::new();
    (0..n)
        .map(|i| {
            let k = &kms[rng.next(kms.len())];
            let f = match rng.next(20) {
                0..=4 => Filter::Alliance {
                    ids: k.victim.who.alliance_id.into_iter().collect(),
                    role: Role::Either,
                },
                5..=7 => Filter::Corporation {
                    ids: k.victim.who.corporation_id.into_iter().collect(),
                    role: Role::Victim,
                },
                8 => Filter::Character {
                    ids: k.victim.who.character_id.into_iter().collect(),
                    role: Role::Either,
                },
                9..=10 => Filter::And {
                    of: vec![
                        Filter::Region {
                            ids: k.system.region_id.into_iter().collect(),
                        },
                        Filter::MinIsk { isk: 1e9 },
                    ],
                },
                11..=12 => Filter::WithinJumps {
                    system_id: k.system.id,
                    jumps: 3,
                },
                13 => Filter::System {
                    ids: vec![k.system.id],
                },
                14 => Filter::And {
                    of: vec![
                        Filter::ShipType {
                            ids: vec![k.victim.ship.type_id],
                            role: Role::Victim,
                        },
                        Filter::NoneOf {
                            of: vec![Filter::Npc],
                        },
                    ],
                },
                15..=16 => Filter::Or {
                    of: vec![
                        Filter::Alliance {
                            ids: k.victim.who.alliance_id.into_iter().collect(),
                            role: Role::Attacker,
                        },
                        Filter::System {
                            ids: vec![k.system.id],
                        },
                    ],
                },
                17..=18 => Filter::And {
                    of: vec![
                        Filter::SecurityType {
                            types: vec!["nullsec".into()],
                        },
                        Filter::MinPilots { pilots: 50 },
                    ],
                },
                _ => Filter::And {
                    of: vec![
                        Filter::MinIsk { isk: 1e10 },
                        Filter::NoneOf {
                            of: vec![Filter::Npc],
                        },
                    ],
                },
            };
            Entry {
                subscription_id: i as i64,
                filter: filter::compile(&f, &BundledGeo, &lists)
                    .unwrap_or(filter::Compiled::Or(vec![])),
                battle: false,
            }
        })
        .collect()
}

fn bench_match(n: usize) {
    let t = Instant::now();
    let kms = load_week();
    println!(
        "loaded and enriched {} killmails in {:?} (untimed below)",
        kms.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let entries = subscriptions(&kms, n);
    let unanchored = entries
        .iter()
        .filter(|e| e.filter.anchors().is_none())
        .count();
    let matcher = Matcher::new(entries);
    println!(
        "compiled and indexed {n} subscriptions in {:?} ({unanchored} without an index key)",
        t.elapsed()
    );
    let mut scratch = Scratch::default();
    for _ in 0..2 {
        let t = Instant::now();
        let mut matches = 0usize;
        for k in &kms {
            matches += matcher.match_killmail(k, &mut scratch).len();
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "matched {} killmails × {n} subscriptions in {:.3} s: {:.0} killmails/s (one core), {matches} matches ({:.1}/killmail)",
            kms.len(),
            s,
            kms.len() as f64 / s,
            matches as f64 / kms.len() as f64
        );
    }
}

struct Anyone;
#[async_trait]
impl Accounts for Anyone {
    async fn resolve(&self, _: Option<&str>) -> Result<Access, String> {
        Ok(Access::Allowed("bench".into()))
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

async fn bench_fanout(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let db = bs_store::Database::open(&bs_store::StoreTarget::Sqlite(dir.path().join("n.db")), 2)
        .await
        .unwrap();
    db.migrate(bs_notification::MIGRATIONS).await.unwrap();
    let store = Arc::new(bs_notification::SqlNotificationStore::new(db));
    let hub = Hub::new();
    let notifier = Notifier::open(
        store,
        Arc::new(bs_runtime::SystemClock),
        Arc::clone(&hub),
        Arc::new(BundledGeo),
        NotifierSettings {
            max_age: Duration::from_secs(3600),
            public_url: "http://127.0.0.1".into(),
            public_feed: true,
        },
    )
    .await
    .unwrap();
    let router = bs_notification::api::router(bs_notification::api::ApiState {
        relays: bs_notification::delivery::relay::Relays::new(Arc::clone(&notifier.hub)),
        notifier,
        accounts: Arc::new(Anyone),
        allow: Default::default(),
        public_url: "http://127.0.0.1".into(),
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    let before = rss_kib();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["clients", &addr.to_string(), &n.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    while let Some(line) = lines.next_line().await.unwrap() {
        if line == "ready" {
            break;
        }
        println!("{line}");
    }
    // Wait until the server has registered every connection.
    while hub.connections() < n {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = rss_kib();
    println!(
        "{n} connections: server RSS {} → {} KiB, {:.1} KiB per connection",
        before,
        after,
        (after.saturating_sub(before)) as f64 / n as f64
    );
    // The public feed's real message: the killmail summary (as the consumer sends it).
    let summary = {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/killmails/fight-uw9b-f-2021-11-30.jsonl.gz");
        let r = BufReader::new(flate2::read::MultiGzDecoder::new(
            std::fs::File::open(p).unwrap(),
        ));
        let line = r.lines().map_while(Result::ok).next().unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let km: Killmail = serde_json::from_value(v).unwrap();
        let (names, et, es) = (
            HashMap::<i64, Option<String>>::new(),
            HashMap::new(),
            HashMap::new(),
        );
        let catalog = Catalog {
            sde: StaticData::bundled(),
            extra_types: &et,
            extra_systems: &es,
            names: &names,
            prices: MarketPrices::bundled(),
        };
        let e = enrich(
            Input {
                killmail: &km,
                hash: "0",
                zkb: None,
                source: KillmailSource::Everef,
            },
            &catalog,
        )
        .event;
        bs_notification::domain::payload::killmail_summary(&e)
    };
    let rounds = 5;
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // A killmail-sized message with the send stamp.
        let msg: bs_notification::delivery::ws::Message =
            serde_json::json!({ "type": "killmail", "round": round, "sent_us": micros().to_string(), "killmail": summary })
                .to_string()
                .into();
        let t = Instant::now();
        let sent = hub.publish_public(&msg, |_| true);
        println!(
            "round {round}: handed to {sent} connections in {:?} (dropped so far {})",
            t.elapsed(),
            hub.dropped()
        );
    }
    while let Some(line) = lines.next_line().await.unwrap() {
        println!("{line}");
    }
    let _ = child.wait().await;
}

async fn clients(addr: &str, n: usize, rounds: usize) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, u128)>();
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let permit = Arc::clone(&sem).acquire_owned().await.unwrap();
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/public"))
            .await
            .unwrap();
        drop(permit);
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut ws = ws;
            let mut got = 0;
            while let Some(Ok(m)) = ws.next().await {
                if let Ok(t) = m.to_text() {
                    let now = micros();
                    let v: serde_json::Value = serde_json::from_str(t).unwrap_or_default();
                    let sent: u128 = v["sent_us"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(now);
                    let _ = tx.send((
                        v["round"].as_u64().unwrap_or(0) as usize,
                        now.saturating_sub(sent),
                    ));
                    got += 1;
                    if got == rounds {
                        break;
                    }
                }
            }
        }));
    }
    drop(tx);
    println!("ready");
    let mut per_round: Vec<Vec<u128>> = vec![Vec::new(); rounds];
    while let Some((r, us)) = rx.recv().await {
        if let Some(v) = per_round.get_mut(r) {
            v.push(us);
        }
    }
    for (r, mut v) in per_round.into_iter().enumerate() {
        v.sort_unstable();
        let q = |p: f64| {
            v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        println!(
            "round {r}: {} of {n} clients received; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            v.len(),
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("fanout") => {
            bench_fanout(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000)).await
        }
        Some("clients") => clients(&args[2], args[3].parse().unwrap(), 5).await,
        _ => bench_match(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000)),
    }
}
