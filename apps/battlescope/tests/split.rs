//! The pipeline end to end, with the deployment shape as a test parameter.
//!
//! One scenario ([`run_scenario`]) and one set of checks ([`converge`]) run against
//! every shape:
//!
//! * **split**: every service as its own `battlescope serve <service>` process on
//!   PostgreSQL (a database per service), Redis, Typesense and a Tansu broker of the
//!   test's own (a spare port, durable storage when an S3 endpoint can be had: see
//!   `bs_testkit::broker`); needs `--features kafka` and the engines;
//! * **all-in-one**: `battlescope run` on embedded storage, no engines needed.
//!
//! The scenario logs in (development login as the configured SuperAdmin), creates a
//! subscription whose webhook points at a receiver inside the test (its
//! `127.0.0.1:<port>` is put in `BATTLESCOPE_WEBHOOK_ALLOWED_HOSTS`, the configured
//! exemption from the SSRF guard; the default stays closed), then replays two real fights
//! in chunks with one restart between chunks: every unit once gracefully (stopped, the
//! chunk imported while it is down, started again) and once with `kill -9` (the chunk
//! imported first, the process killed while the chunk is in flight), then the broker.
//! After each step every figure must reach exactly what the data says: killmails at the
//! BFF, at the battle service and in the search index; enriched names; battles with
//! distinct ids; one webhook delivery per matching killmail — nothing lost, nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bs_testkit::broker::free_port;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_battlescope");
const FIGHTS: [&str; 2] = [
    "fight-lxq2-t-2021-11-27.jsonl.gz",
    "fight-uw9b-f-2021-11-30.jsonl.gz",
];
/// The subscription's filter: victim ship type 644 (19 of the two fights' 468 losses), so the
/// webhook sees a handful of deliveries per chunk at the sender's 2 requests/s pacing.
const WATCHED_SHIP_TYPE: i64 = 644;
/// The development login's character, made SuperAdmin by configuration (so the account has
/// the `notifications` role without touching the authentication database).
const PILOT: i64 = 2_112_000_001;
/// Generous: Tansu takes seconds per consumer-group member to (re)join, and CI is slow.
const DEADLINE: Duration = Duration::from_secs(240);

fn tail(path: &Path) -> String {
    bs_testkit::broker::tail(path, 30)
}

/// Sends a signal with `kill`; `-9` gives the process no chance to clean up.
fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig}");
}

/// Stops a child: SIGTERM and a wait for a clean exit, or SIGKILL.
fn stop_child(child: &mut Child, how: Stop, what: &str) {
    match how {
        Stop::Graceful => {
            signal(child, "-TERM");
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(
                        status.success(),
                        "{what}: graceful stop exits 0, got {status}"
                    );
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what} did not stop within 40s of SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Stop::Kill9 => {
            signal(child, "-9");
            let _ = child.wait();
        }
    }
}

/// How a unit is stopped before it is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Graceful,
    Kill9,
}

/// One deployment shape under test.
pub trait Deployment {
    /// URL of `path` on `service` (`bff`, `authentication`, `notification`, `battle`, `search`, …).
    fn url(&self, service: &str, path: &str) -> String;
    /// Runs `battlescope import` on `file` with the deployment's configuration; returns stdout.
    fn import(&self, file: &Path) -> String;
    /// The units that can be restarted, in the order the scenario restarts them.
    fn units(&self) -> Vec<&'static str>;
    fn stop(&mut self, unit: &str, how: Stop);
    fn start(&mut self, unit: &str);
    /// The tail of every running unit's log, for failure messages.
    fn logs(&self) -> String;
}

/// Configuration every shape shares: offline (no live feed, no price refresh, ESI on a
/// closed port — names stay pending, system names come from the bundled SDE), the
/// development login with a SuperAdmin, the receiver exempt from the SSRF guard, and no
/// age limit on notifications (the fights are from 2021).
pub fn common_env(receiver_port: u16) -> Vec<(String, String)> {
    [
        ("BATTLESCOPE_INGESTION__LIVE", "false".to_owned()),
        ("BATTLESCOPE_ENRICHMENT__REFRESH_PRICES", "false".to_owned()),
        (
            "BATTLESCOPE_ESI_URL",
            format!("http://127.0.0.1:{}", free_port()),
        ),
        ("BATTLESCOPE_LOG_FORMAT", "json".to_owned()),
        ("BATTLESCOPE_DEV_LOGIN", "true".to_owned()),
        ("BATTLESCOPE_SUPERADMIN_CHARACTER_ID", PILOT.to_string()),
        (
            "BATTLESCOPE_WEBHOOK_ALLOWED_HOSTS",
            format!("127.0.0.1:{receiver_port}"),
        ),
        ("BATTLESCOPE_NOTIFY_MAX_AGE", "100000days".to_owned()),
        // The 2021 data is past the default retention; the daily run (02:00–04:00 UTC) would
        // delete it mid-test.
        (
            "BATTLESCOPE_LIFECYCLE__RAW_KILLMAILS_MONTHS",
            "0".to_owned(),
        ),
        (
            "BATTLESCOPE_LIFECYCLE__ENRICHED_KILLMAILS_MONTHS",
            "0".to_owned(),
        ),
        ("BATTLESCOPE_LIFECYCLE__BATTLES_MONTHS", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

// ------------------------------------------------------------------ data

/// The two fights, distinct by killmail id, cut into contiguous chunks (one per step).
pub struct Dataset {
    pub chunks: Vec<PathBuf>,
    pub ids: Vec<BTreeSet<i64>>,
    /// Killmails the subscription matches (victim ship type), read independently of the service.
    pub matching: BTreeSet<i64>,
    /// The solar system of each killmail.
    pub systems: BTreeMap<i64, i64>,
}

fn data_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/killmails")
        .join(name)
}

impl Dataset {
    pub fn new(dir: &Path, chunks: usize) -> Self {
        let mut lines: Vec<(i64, String)> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut matching = BTreeSet::new();
        let mut systems = BTreeMap::new();
        for fight in FIGHTS {
            let out = Command::new("gzip")
                .arg("-dc")
                .arg(data_file(fight))
                .output()
                .expect("gzip");
            assert!(out.status.success());
            for line in String::from_utf8(out.stdout).unwrap().lines() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(line).expect("fixture line is JSON");
                let id = v["killmail_id"].as_i64().expect("killmail_id");
                if !seen.insert(id) {
                    continue;
                }
                if v["victim"]["ship_type_id"].as_i64() == Some(WATCHED_SHIP_TYPE) {
                    matching.insert(id);
                }
                systems.insert(id, v["solar_system_id"].as_i64().unwrap_or(0));
                lines.push((id, line.to_owned()));
            }
        }
        let per = lines.len().div_ceil(chunks);
        let mut files = Vec::new();
        let mut ids = Vec::new();
        for (n, part) in lines.chunks(per).enumerate() {
            let path = dir.join(format!("chunk-{n:02}.jsonl"));
            let mut f = std::fs::File::create(&path).unwrap();
            for (_, l) in part {
                writeln!(f, "{l}").unwrap();
            }
            files.push(path);
            ids.push(part.iter().map(|(id, _)| *id).collect());
        }
        assert_eq!(files.len(), chunks, "the data fills every chunk");
        Dataset {
            chunks: files,
            ids,
            matching,
            systems,
        }
    }
}

// ------------------------------------------------------------------ webhook receiver

/// A local webhook target: records every request's `X-BattleScope-Delivery` and body.
pub struct Receiver {
    pub port: u16,
    hits: Arc<Mutex<Vec<(String, Value)>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let hits: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let recorded = Arc::clone(&hits);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let recorded = Arc::clone(&recorded);
                    async move {
                        let delivery = headers
                            .get("x-battlescope-delivery")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        recorded.lock().unwrap().push((delivery, body));
                        axum::http::StatusCode::NO_CONTENT
                    }
                },
            ),
        );
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            port,
            hits,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Killmail id → the distinct delivery ids it arrived under, and the number of requests
    /// that repeated a delivery id already seen (the documented at-least-once window).
    fn deliveries(&self) -> (BTreeMap<i64, BTreeSet<String>>, usize) {
        let hits = self.hits.lock().unwrap();
        let mut by_km: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        let mut repeats = 0;
        for (delivery, body) in hits.iter() {
            let km = body
                .pointer("/notification/killmail_id")
                .and_then(Value::as_i64)
                .unwrap_or(-1);
            if !by_km.entry(km).or_default().insert(delivery.clone()) {
                repeats += 1;
            }
        }
        (by_km, repeats)
    }
}

// ------------------------------------------------------------------ the checks

/// One client for the whole test binary (each blocking client owns a thread).
fn http() -> &'static reqwest::blocking::Client {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    })
}

fn get_json(url: &str) -> Option<Value> {
    let r = http().get(url).send().ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().ok()
}

/// Polls `f` until it yields `Ok(Some)`; `Err` fails at once (a count went past its
/// target: a duplicate). Times out with every unit's log tail.
fn wait_for<T>(
    d: &dyn Deployment,
    what: &str,
    mut f: impl FnMut() -> Result<Option<T>, String>,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    LAST_SEEN.with(|l| l.borrow_mut().clear());
    loop {
        match f() {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(e) => panic!("{what}: {e}\n{}", d.logs()),
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} (last seen: {})\n{}",
            LAST_SEEN.with(|l| l.borrow().clone()),
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

thread_local! {
    /// What the last check of the current `wait_for` observed, for its timeout message.
    static LAST_SEEN: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// A counter must reach `want` exactly; above it is a duplicate.
fn exactly(v: Option<i64>, want: usize) -> Result<Option<()>, String> {
    LAST_SEEN.with(|l| *l.borrow_mut() = format!("{v:?} of {want}"));
    match v {
        Some(n) if n == want as i64 => Ok(Some(())),
        Some(n) if n > want as i64 => Err(format!("{n} > {want}: counted twice")),
        _ => Ok(None),
    }
}

/// The logged-in browser: its cookie and its subscription.
pub struct Session {
    cookie: String,
    subscription: i64,
}

/// Development login, then a subscription with the receiver's webhook, through the APIs.
pub fn subscribe(d: &dyn Deployment, receiver: &Receiver) -> Session {
    let r = http()
        .post(d.url("authentication", "/auth/dev-login"))
        .form(&[
            ("character_id", PILOT.to_string()),
            ("name", "Split Test".into()),
        ])
        .send()
        .expect("dev login");
    assert_eq!(r.status(), 303, "dev login redirects: {:?}", r.text());
    let cookie = r
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("; ");
    assert!(!cookie.is_empty(), "dev login sets a session cookie");
    let body = serde_json::json!({
        "name": "watched ship losses",
        "filter": { "type": "ship_type", "ids": [WATCHED_SHIP_TYPE] },
        "websocket": false,
        "webhooks": [{ "url": receiver.url(), "kind": "json" }],
    });
    let r = http()
        .post(d.url("notification", "/subscriptions"))
        .header("cookie", &cookie)
        .json(&body)
        .send()
        .expect("create subscription");
    let status = r.status();
    let created: Value = r.json().unwrap_or_default();
    assert_eq!(status, 201, "subscription created: {created}");
    Session {
        cookie,
        subscription: created["id"].as_i64().expect("subscription id"),
    }
}

/// What the data says must be there after a step.
pub struct Expect<'a> {
    pub ids: BTreeSet<i64>,
    pub data: &'a Dataset,
    /// A `kill -9` of the notification sender can repeat a delivery it had sent but not
    /// yet recorded (same delivery id: receivers dedupe on it); allowed only after one.
    pub allow_repeats: bool,
}

/// Waits until every figure matches `e` exactly, through each service's API.
pub fn converge(d: &dyn Deployment, e: &Expect, session: &Session, receiver: &Receiver) {
    let n = e.ids.len();
    wait_for(d, "killmails_total at the BFF", || {
        let s = get_json(&d.url("bff", "/api/stats"));
        exactly(s.and_then(|s| s["killmails_total"].as_i64()), n)
    });
    wait_for(d, "every killmail at the battle service, once", || {
        let s = get_json(&d.url("battle", "/stats"));
        exactly(s.and_then(|s| s["killmails"].as_i64()), n)
    });
    wait_for(d, "every killmail in the search index, once", || {
        let s = get_json(&d.url("search", "/search?types=killmails&per_page=1"));
        exactly(s.and_then(|s| s["total"].as_i64()), n)
    });
    let newest = *e.ids.iter().max().unwrap();
    let system = e.data.systems[&newest];
    wait_for(d, "the newest killmail enriched with its system", || {
        let k = get_json(&d.url("bff", &format!("/api/killmails/{newest}")));
        Ok(k.filter(|k| {
            k["system_name"].as_str().is_some_and(|s| !s.is_empty())
                && k["solar_system_id"].as_i64().is_none_or(|s| s == system)
        }))
    });
    let want: BTreeSet<i64> = e.ids.intersection(&e.data.matching).copied().collect();
    wait_for(d, "one webhook delivery per matching killmail", || {
        let (by_km, repeats) = receiver.deliveries();
        if let Some((km, ids)) = by_km.iter().find(|(_, ids)| ids.len() > 1) {
            return Err(format!("killmail {km} notified under {ids:?}"));
        }
        if let Some(km) = by_km.keys().find(|k| !want.contains(k)) {
            return Err(format!("killmail {km} notified but does not match"));
        }
        if repeats > 0 && !e.allow_repeats {
            return Err(format!("{repeats} repeated deliveries"));
        }
        Ok((by_km.len() == want.len()).then_some(()))
    });
    let page = wait_for(d, "the battle list", || {
        Ok(get_json(&d.url("battle", "/battles?limit=500")))
    });
    let battles = page["battles"].as_array().cloned().unwrap_or_default();
    let ids: BTreeSet<i64> = battles
        .iter()
        .filter_map(|b| b["battle_id"].as_i64())
        .collect();
    assert_eq!(ids.len(), battles.len(), "battle ids are distinct: {page}");
    assert!(!battles.is_empty(), "the fights make battles");
    // The session (in the authentication database) and the subscription survive restarts.
    let r = http()
        .get(d.url(
            "notification",
            &format!("/subscriptions/{}", session.subscription),
        ))
        .header("cookie", &session.cookie)
        .send()
        .expect("get subscription");
    assert_eq!(r.status(), 200, "the session still works: {:?}", r.text());
}

/// The checks that only need doing once, on the full data: sides and search hits.
pub fn final_checks(d: &dyn Deployment) {
    let battle = wait_for(d, "a battle with sides at the BFF", || {
        let page = get_json(&d.url("bff", "/api/battles"));
        Ok(page.and_then(|p| {
            let first = p["battles"].as_array()?.first()?.clone();
            first["sides"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
                .then_some(first)
        }))
    });
    let id = battle["battle_id"].as_i64().expect("battle_id");
    let report = get_json(&d.url("bff", &format!("/api/battles/{id}"))).expect("report");
    assert!(
        report["sides"].as_array().is_some_and(|s| s.len() >= 2),
        "a real fight has at least two sides: {report}"
    );
    for q in ["lxq", "uw9"] {
        wait_for(d, &format!("a search hit for {q}"), || {
            let r = get_json(&d.url("bff", &format!("/api/search/autocomplete?q={q}")));
            Ok(r.filter(|r| r.to_string().to_lowercase().contains(q))
                .map(|_| ()))
        });
    }
}

/// The whole scenario: a first chunk, then one restart per step with the next chunk:
/// every unit gracefully, then every unit with `kill -9`.
pub fn run_scenario(d: &mut dyn Deployment, receiver: &Receiver, dir: &Path) {
    let mut plan: Vec<(&'static str, Stop)> = Vec::new();
    for how in [Stop::Graceful, Stop::Kill9] {
        for u in d.units() {
            plan.push((u, how));
        }
    }
    let data = Dataset::new(dir, plan.len() + 1);
    let session = subscribe(&*d, receiver);
    let mut e = Expect {
        ids: BTreeSet::new(),
        data: &data,
        allow_repeats: false,
    };
    let import = |d: &dyn Deployment, n: usize| {
        let summary = d.import(&data.chunks[n]);
        assert!(
            summary.contains(&format!("{} new", data.ids[n].len())),
            "chunk {n}: {summary}"
        );
    };
    import(&*d, 0);
    e.ids.extend(&data.ids[0]);
    converge(&*d, &e, &session, receiver);
    for (step, (unit, how)) in plan.iter().enumerate() {
        let n = step + 1;
        let started = Instant::now();
        match how {
            // Down while its input piles up.
            Stop::Graceful => {
                d.stop(unit, *how);
                import(&*d, n);
                d.start(unit);
            }
            // Killed with the chunk in flight.
            Stop::Kill9 => {
                import(&*d, n);
                std::thread::sleep(Duration::from_millis(300));
                d.stop(unit, *how);
                if ["notification", "battlescope", "broker"].contains(unit) {
                    e.allow_repeats = true;
                }
                d.start(unit);
            }
        }
        e.ids.extend(&data.ids[n]);
        converge(&*d, &e, &session, receiver);
        eprintln!(
            "step {n}: {unit} {how:?}: converged in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    final_checks(&*d);
    // Settled: a few more seconds must not add duplicates anywhere.
    std::thread::sleep(Duration::from_secs(5));
    converge(&*d, &e, &session, receiver);
    let (by_km, repeats) = receiver.deliveries();
    eprintln!(
        "scenario done: {} killmails, {} webhook deliveries ({} repeated on the wire)",
        e.ids.len(),
        by_km.len(),
        repeats
    );
}

// ------------------------------------------------------------------ all in one

/// `battlescope run`: every service in one process on embedded storage.
struct AllInOne {
    env: Vec<(String, String)>,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    starts: usize,
}

impl AllInOne {
    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("BATTLESCOPE_DATA_DIR", &self.dir)
            .env("BATTLESCOPE_LISTEN", format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null());
        c
    }
}

impl Drop for AllInOne {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Deployment for AllInOne {
    fn url(&self, service: &str, path: &str) -> String {
        match service {
            "bff" | "web" | "authentication" => format!("http://127.0.0.1:{}{path}", self.port),
            s => format!("http://127.0.0.1:{}/services/{s}{path}", self.port),
        }
    }

    fn import(&self, file: &Path) -> String {
        let out = self
            .command()
            .args(["import", "--quiet"])
            .arg(file)
            .output()
            .expect("run import");
        assert!(
            out.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn units(&self) -> Vec<&'static str> {
        vec!["battlescope"]
    }

    fn stop(&mut self, _unit: &str, how: Stop) {
        let mut child = self.child.take().expect("running");
        stop_child(&mut child, how, "battlescope run");
    }

    fn start(&mut self, _unit: &str) {
        self.log = self.dir.join(format!("run-{}.log", self.starts));
        self.starts += 1;
        let file = std::fs::File::create(&self.log).unwrap();
        let mut child = self
            .command()
            .arg("run")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn battlescope run");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if http()
                .get(self.url("bff", "/health"))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("battlescope run exited with {status}:\n{}", tail(&self.log));
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", tail(&self.log));
            std::thread::sleep(Duration::from_millis(200));
        }
        self.child = Some(child);
    }

    fn logs(&self) -> String {
        format!("--- battlescope run ---\n{}", tail(&self.log))
    }
}

#[test]
fn all_in_one_delivers_everything_once_across_restarts() {
    let dir = bs_testkit::temp_dir();
    let receiver = Receiver::start();
    let mut d = AllInOne {
        env: common_env(receiver.port),
        dir: dir.path().join("data"),
        port: free_port(),
        child: None,
        log: dir.path().join("none.log"),
        starts: 0,
    };
    std::fs::create_dir_all(&d.dir).unwrap();
    d.start("battlescope");
    run_scenario(&mut d, &receiver, dir.path());
}

#[cfg(not(feature = "kafka"))]
#[test]
fn split_mode_needs_the_kafka_feature() {
    eprintln!("skipped: split-mode test needs `cargo test -p battlescope --features kafka`");
}

#[cfg(feature = "kafka")]
pub mod with_kafka {
    use super::*;
    use bs_testkit::broker::{BrokerStop, RestartableBroker};

    /// Services started as separate processes, in start order (producers first,
    /// the BFF that reads the others last).
    const SERVICES: &[&str] = &[
        "authentication",
        "ingestion",
        "enrichment",
        "battle",
        "search",
        "notification",
        "bff",
    ];

    struct Proc {
        name: String,
        child: Child,
        log: PathBuf,
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    struct Cluster {
        env: Vec<(String, String)>,
        ports: BTreeMap<&'static str, u16>,
        dir: PathBuf,
        procs: BTreeMap<&'static str, Proc>,
        starts: usize,
        broker: RestartableBroker,
    }

    impl Cluster {
        fn command(&self, data_dir: &Path) -> Command {
            let mut c = Command::new(BIN);
            c.envs(self.env.iter().map(|(k, v)| (k, v)))
                .env("BATTLESCOPE_DATA_DIR", data_dir)
                .stdin(Stdio::null());
            c
        }
    }

    impl Deployment for Cluster {
        fn url(&self, service: &str, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.ports[service])
        }

        /// `battlescope import` as its own process with the cluster's env.
        fn import(&self, file: &Path) -> String {
            let data = self.dir.join("import");
            std::fs::create_dir_all(&data).unwrap();
            let out = self
                .command(&data)
                .args(["import", "--quiet"])
                .arg(file)
                .output()
                .expect("run import");
            assert!(
                out.status.success(),
                "import failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }

        fn units(&self) -> Vec<&'static str> {
            // Producers first, so each restart has a backlog downstream of it.
            let mut units = vec![
                "ingestion",
                "enrichment",
                "battle",
                "search",
                "notification",
                "authentication",
                "bff",
            ];
            // The broker too, when its storage outlives it.
            if self.broker.durable() {
                units.push("broker");
            }
            units
        }

        fn stop(&mut self, unit: &str, how: Stop) {
            if unit == "broker" {
                return self.broker.down(match how {
                    Stop::Graceful => BrokerStop::Graceful,
                    Stop::Kill9 => BrokerStop::Kill9,
                });
            }
            let mut p = self.procs.remove(unit).expect("running");
            stop_child(&mut p.child, how, unit);
        }

        /// Starts `serve <name>` and waits for its `/health`; logs go to a file
        /// (a pipe nobody reads would fill and stall the service).
        fn start(&mut self, unit: &str) {
            if unit == "broker" {
                return self.broker.up();
            }
            let name = *SERVICES.iter().find(|s| **s == unit).expect("a service");
            let data = self.dir.join(name);
            std::fs::create_dir_all(&data).unwrap();
            self.starts += 1;
            let log = self.dir.join(format!("{name}-{}.log", self.starts));
            let file = std::fs::File::create(&log).unwrap();
            let err = file.try_clone().unwrap();
            let child = self
                .command(&data)
                .args(["serve", name])
                .stdout(file)
                .stderr(err)
                .spawn()
                .expect("spawn battlescope serve");
            let mut proc = Proc {
                name: name.to_owned(),
                child,
                log,
            };
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                if http()
                    .get(self.url(name, "/health"))
                    .send()
                    .is_ok_and(|r| r.status().is_success())
                {
                    break;
                }
                if let Some(status) = proc.child.try_wait().unwrap() {
                    panic!(
                        "{name} exited with {status} before becoming healthy:\n{}",
                        tail(&proc.log)
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} not healthy within 120s:\n{}",
                    tail(&proc.log)
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            self.procs.insert(name, proc);
        }

        fn logs(&self) -> String {
            let mut logs: Vec<String> = self
                .procs
                .values()
                .map(|p| format!("--- {} ---\n{}", p.name, tail(&p.log)))
                .collect();
            logs.push(self.broker.logs());
            logs.join("\n")
        }
    }

    #[test]
    fn split_services_on_real_engines_deliver_everything_once_across_restarts() {
        let (Some(pg), Some(_kafka), Some(redis), Some(ts)) = (
            bs_testkit::engine(bs_testkit::POSTGRES),
            bs_testkit::engine(bs_testkit::KAFKA),
            bs_testkit::engine(bs_testkit::REDIS),
            bs_testkit::engine(bs_testkit::TYPESENSE),
        ) else {
            return;
        };
        let ts_key = std::env::var("BATTLESCOPE_TEST_TYPESENSE_KEY")
            .unwrap_or_else(|_| "battlescope-test-key".into());
        // There is no collection-prefix setting for the service yet, so this test owns the
        // unprefixed collections of the test server (other suites and the bench use
        // prefixes): start from empty ones, so the index count is exactly this run's.
        for c in [
            "battles",
            "killmails",
            "characters",
            "corporations",
            "alliances",
            "systems",
            "ship_types",
        ] {
            let _ = http()
                .delete(format!("{ts}/collections/{c}"))
                .header("x-typesense-api-key", &ts_key)
                .send();
        }
        let guard = bs_testkit::temp_dir();
        let dir = guard.path().to_path_buf();
        let receiver = Receiver::start();
        let Some(broker) = RestartableBroker::start(&dir) else {
            assert!(!bs_testkit::in_ci(), "the tansu binary is required in CI");
            eprintln!("skipped: no tansu binary (scripts/engines.sh installs it)");
            return;
        };
        eprintln!(
            "broker: tansu on {} with {} storage",
            broker.address(),
            broker.engine()
        );
        let ports: BTreeMap<&'static str, u16> =
            SERVICES.iter().map(|&s| (s, free_port())).collect();
        let mut env = common_env(receiver.port);
        env.extend(
            [
                ("BATTLESCOPE_DATABASE_URL", pg),
                (
                    "BATTLESCOPE_STORE__DATABASE_PREFIX",
                    bs_testkit::unique_name("bssplit"),
                ),
                ("BATTLESCOPE_BUS", "kafka".into()),
                ("BATTLESCOPE_KAFKA_BROKERS", broker.address()),
                // Tansu 0.6 advances an idempotent producer's sequence before it writes the
                // batch: a batch in flight at its `kill -9` is acknowledged on the retry and
                // never written (bs-bus's broker_restart test). Duplicates are absorbed.
                ("BATTLESCOPE_BUS__IDEMPOTENT_PRODUCER", "false".into()),
                ("BATTLESCOPE_CACHE", "redis".into()),
                ("BATTLESCOPE_REDIS_URL", redis),
                ("BATTLESCOPE_SEARCH", "typesense".into()),
                ("BATTLESCOPE_TYPESENSE_URL", ts),
                ("BATTLESCOPE_TYPESENSE_API_KEY", ts_key),
                ("BATTLESCOPE_PORTS__HOST", "127.0.0.1".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
        );
        for (&name, &port) in &ports {
            let upper = name.to_uppercase();
            env.push((format!("BATTLESCOPE_PORTS__{upper}"), port.to_string()));
            if name != "bff" {
                env.push((
                    format!("BATTLESCOPE_SERVICES__{upper}"),
                    format!("http://127.0.0.1:{port}"),
                ));
            }
        }
        let mut c = Cluster {
            env,
            ports,
            dir: dir.clone(),
            procs: BTreeMap::new(),
            starts: 0,
            broker,
        };
        // Each service runs its own migrations on its own database, as the init
        // containers do.
        for &name in SERVICES {
            let out = c.command(&dir).args(["migrate", name]).output().unwrap();
            assert!(
                out.status.success(),
                "migrate {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for &name in SERVICES {
            c.start(name);
        }
        let durable = c.broker.durable();
        run_scenario(&mut c, &receiver, &dir);
        assert!(
            durable || !bs_testkit::in_ci(),
            "CI=true but moto_server is missing: the broker restart steps cannot run \
             (scripts/engines.sh installs it)"
        );
        if !durable {
            eprintln!(
                "broker restart not tested: no moto_server for durable tansu storage \
                 (tansu's memory:// engine loses every topic, record and group offset on restart)"
            );
        }
    }
}
