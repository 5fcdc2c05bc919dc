//! Benchmarks of the notification service (numbers printed, nothing asserted):
//!
//! * `match [subs]`: matching throughput of `subs` (default 10,000) generated subscriptions
//!   against the 79k-killmail week in /work/shared/data/killmails (enriched first, untimed).
//! * `fanout [clients]`: one killmail fanned out to `clients` (default 10,000) WebSocket
//!   clients of `/ws/public` on loopback, five rounds a second apart. The clients run in a
//!   child process (the per-process file limit is 20,000 here) on two threads, each a minimal
//!   WebSocket reader (no JSON parsing), and report publish→receive latency (p50/p99/max)
//!   from wall-clock stamps. The server reports when its socket writes completed (50%, 99%,
//!   all, from the hub's counter sampled every ms) and its RSS growth per connection.
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

fn micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

const ROUNDS: usize = 5;

/// `(p50, p99, max)` of microsecond samples, in ms.
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
        "{n} connections: server RSS {} → {} KiB, {:.1} KiB per connection (before any message)",
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
        bs_notification::domain::payload::killmail_summary(&e).to_string()
    };
    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // A killmail-sized message; the round and the send stamp first, so the clients read
        // them without parsing the JSON.
        let written0 = hub.written();
        let stamp = micros();
        let msg: bs_notification::delivery::ws::Message = format!(
            r#"{{"round":{round},"sent_us":{stamp},"type":"killmail","killmail":{summary}}}"#
        )
        .into();
        let t = Instant::now();
        // From a worker thread, as the consumer task publishes: the wake-ups of the socket
        // tasks then go to the worker's own run queue, not one by one to the global one.
        let (sent, handed) = tokio::spawn({
            let (hub, msg) = (Arc::clone(&hub), msg.clone());
            async move {
                let sent = hub.publish_public(&msg, |_| true);
                (sent, t.elapsed())
            }
        })
        .await
        .unwrap();
        // Server-side send completion: when the socket writes of this message completed,
        // sampled every millisecond from the hub's counter.
        let (mut p50, mut p99, mut all) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while all.is_none() && Instant::now() < deadline {
            let done = hub.written() - written0;
            let at = t.elapsed();
            if p50.is_none() && done * 2 >= sent as u64 {
                p50 = Some(at);
            }
            if p99.is_none() && done * 100 >= sent as u64 * 99 {
                p99 = Some(at);
            }
            if done >= sent as u64 {
                all = Some(at);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let ms = |d: Option<Duration>| {
            d.map_or("—".to_owned(), |d| {
                format!("{:.1} ms", d.as_secs_f64() * 1000.0)
            })
        };
        println!(
            "server round {round}: {} bytes handed to {sent} queues in {:.2} ms; socket writes done: 50% {}, 99% {}, all {} (dropped so far {})",
            msg.len(),
            handed.as_secs_f64() * 1000.0,
            ms(p50),
            ms(p99),
            ms(all),
            hub.dropped()
        );
    }
    let after_msgs = rss_kib();
    println!(
        "after {ROUNDS} rounds: server RSS {after_msgs} KiB, {:.1} KiB per connection",
        (after_msgs.saturating_sub(before)) as f64 / n as f64
    );
    while let Some(line) = lines.next_line().await.unwrap() {
        println!("{line}");
    }
    let _ = child.wait().await;
}

/// Reads one server frame (unmasked) into `buf`; answers its opcode, or `None` at EOF.
async fn read_frame(
    s: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut h = [0u8; 2];
    if s.read_exact(&mut h).await.is_err() {
        return Ok(None);
    }
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).await?;
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).await?;
            u64::from_be_bytes(l) as usize
        }
        l => l as usize,
    };
    buf.resize(len, 0);
    s.read_exact(buf).await?;
    Ok(Some(h[0] & 0x0f))
}

/// The integer after `key` in `text` (`"round":3`).
fn field(text: &[u8], key: &[u8]) -> Option<u64> {
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// The clients: a minimal WebSocket client per connection (handshake, then frame headers
/// read and the two stamps found in the first bytes of the text), on two worker threads,
/// each receive time stored in a preallocated slot — so the figure is the server's, not
/// the cost of parsing 10k JSON documents in the client.
fn clients(addr: &str, n: usize) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = addr.to_owned();
    // Latency per (round, client), µs; 0 = not received.
    let slots: Arc<Vec<AtomicU64>> = Arc::new((0..n * ROUNDS).map(|_| AtomicU64::new(0)).collect());
    rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(256));
        let mut tasks = Vec::with_capacity(n);
        let (conn_tx, mut conn_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        for i in 0..n {
            let permit = Arc::clone(&sem).acquire_owned().await.unwrap();
            let (addr, slots, conn_tx) = (addr.clone(), Arc::clone(&slots), conn_tx.clone());
            tasks.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let req = format!(
                    "GET /ws/public HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                );
                s.write_all(req.as_bytes()).await.unwrap();
                // The 101 answer, byte by byte up to the blank line (so no frame is eaten).
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).await.unwrap();
                    head.push(b[0]);
                }
                assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
                drop(permit);
                let _ = conn_tx.send(());
                // Buffered: one read system call per message, not one per header field.
                let mut s = tokio::io::BufReader::with_capacity(4096, s);
                let mut buf = Vec::with_capacity(4096);
                let mut got = 0;
                while got < ROUNDS {
                    match read_frame(&mut s, &mut buf).await {
                        Ok(Some(1)) => {
                            let now = micros();
                            let head = &buf[..buf.len().min(64)];
                            if let (Some(r), Some(sent)) =
                                (field(head, b"\"round\":"), field(head, b"\"sent_us\":"))
                                && (r as usize) < ROUNDS
                            {
                                slots[r as usize * n + i]
                                    .store(now.saturating_sub(sent).max(1), Ordering::Relaxed);
                                got += 1;
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
                // Stay connected a while: 10k sockets closing at once would compete with the
                // last round's writes to the others, and measure teardown, not fan-out.
                tokio::time::sleep(Duration::from_secs(3)).await;
                drop(s);
            }));
        }
        drop(conn_tx);
        for _ in 0..n {
            conn_rx.recv().await;
        }
        println!("ready");
        for t in tasks {
            let _ = t.await;
        }
    });
    for r in 0..ROUNDS {
        let mut v: Vec<u64> = slots[r * n..(r + 1) * n]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .filter(|&us| us > 0)
            .collect();
        let got = v.len();
        let (p50, p99, max) = quantiles(&mut v);
        println!(
            "client round {r}: {got} of {n} clients received; publish→receive p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("fanout") => tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(bench_fanout(
                args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000),
            )),
        Some("clients") => clients(&args[2], args[3].parse().unwrap()),
        _ => bench_match(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000)),
    }
}
