//! `FakeZkb`: a local zKillboard (R2Z2 + history + RedisQ) and EVE Ref that
//! serves real killmails with the documented quirks (eve-platform.md §1.4).
//!
//! The killmails (EVE Ref records from the repository's `data/killmails`) are
//! laid out on a *timeline* of R2Z2 sequences starting at
//! [`FakeZkbOptions::first_sequence`]:
//!
//! * every `hole_every`-th slot is a hole: `{n}.json` is 404 forever;
//! * every `duplicate_every`-th slot re-serves an earlier killmail (same id
//!   under a second sequence);
//! * every `republish_every`-th slot carries `sequence_updated: M` for an
//!   earlier slot M, whose content (its `zkb` values) changes at the moment
//!   the carrying slot is published;
//! * the head (first unpublished slot) starts at `initially_published` and
//!   advances by one every `advance_every`, or when the test calls
//!   [`FakeZkb::advance`]; above it `{n}.json` is 404;
//! * with `retention`, slots more than `retention` below the head are 404 (expired);
//! * `sequence.json` trails the last published sequence by a random 0–`sequence_lag`.
//!
//! Faults: more than `rate_limit` requests in one second get 429 with
//! `Retry-After`; a request without `User-Agent` gets 403; every
//! `fault_every`-th request gets, in turn, an HTML 200, a 500 and a 503.
//!
//! History: `history/YYYYMMDD.json` and `history/totals.json` list every
//! published killmail by the UTC day of its kill time. EVE Ref:
//! `killmails/YYYY/killmails-YYYY-MM-DD.tar.bz2` and `killmails/totals.json`
//! hold every loaded killmail (EVE Ref is independent of R2Z2). RedisQ:
//! `listen.php?queueID=` hands each queue the published killmails in order.
//!
//! [`FakeZkb::expected`] is what an ingester must end with: every published
//! killmail, once, with its latest content. The server stops on drop.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One real killmail the fake serves.
#[derive(Clone, Debug)]
pub struct FakeKillmail {
    pub killmail_id: i64,
    pub hash: String,
    pub killmail_time: DateTime<Utc>,
    /// The ESI body (EVE Ref's extra keys removed).
    pub esi: Value,
    /// The EVE Ref record as it was in the file.
    pub record: Vec<u8>,
}

impl FakeKillmail {
    pub fn day(&self) -> NaiveDate {
        self.killmail_time.date_naive()
    }
}

/// The repository's real killmail files (`data/killmails/*.jsonl.gz`).
pub fn repo_killmail_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/killmails");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".jsonl.gz"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Loads EVE Ref JSONL(.gz) files, sorted by killmail id, distinct.
pub fn load_killmails(paths: &[PathBuf]) -> std::io::Result<Vec<FakeKillmail>> {
    let mut out: BTreeMap<i64, FakeKillmail> = BTreeMap::new();
    for path in paths {
        let file = std::fs::File::open(path)?;
        let reader: Box<dyn std::io::Read> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        for line in BufReader::new(reader).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let mut v: Value = serde_json::from_str(&line).map_err(std::io::Error::other)?;
            let Some(obj) = v.as_object_mut() else {
                continue;
            };
            let hash = obj
                .remove("killmail_hash")
                .and_then(|h| h.as_str().map(str::to_owned))
                .unwrap_or_default();
            obj.remove("http_last_modified");
            let id = obj.get("killmail_id").and_then(Value::as_i64).unwrap_or(0);
            let time = obj
                .get("killmail_time")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                .unwrap_or_default();
            out.insert(
                id,
                FakeKillmail {
                    killmail_id: id,
                    hash,
                    killmail_time: time,
                    esi: v,
                    record: line.into_bytes(),
                },
            );
        }
    }
    Ok(out.into_values().collect())
}

/// How the fake behaves. `Default` is a faithful, fault-free R2Z2 with every slot published.
#[derive(Clone, Debug)]
pub struct FakeZkbOptions {
    pub first_sequence: i64,
    pub hole_every: usize,
    pub duplicate_every: usize,
    pub republish_every: usize,
    /// Slots published at start (`usize::MAX`: all).
    pub initially_published: usize,
    pub advance_every: Option<Duration>,
    pub retention: Option<usize>,
    pub sequence_lag: u64,
    /// Requests per rolling second before 429 (R2Z2: 20).
    pub rate_limit: usize,
    pub fault_every: u64,
    pub require_user_agent: bool,
    /// RedisQ packages carry the killmail body (pre-2025-12 format).
    pub redisq_with_body: bool,
    pub seed: u64,
}

impl Default for FakeZkbOptions {
    fn default() -> Self {
        Self {
            first_sequence: 99_718_545,
            hole_every: 0,
            duplicate_every: 0,
            republish_every: 0,
            initially_published: usize::MAX,
            advance_every: None,
            retention: None,
            sequence_lag: 51,
            rate_limit: 20,
            fault_every: 0,
            require_user_agent: true,
            redisq_with_body: false,
            seed: 7,
        }
    }
}

#[derive(Clone, Debug)]
enum Slot {
    Hole,
    /// Index into `killmails`; `updates`: the slot whose content this slot's publication changes.
    Entry {
        km: usize,
        updates: Option<usize>,
    },
}

/// Counters a test asserts on.
#[derive(Clone, Debug, Default)]
pub struct FakeZkbStats {
    pub requests: u64,
    pub rate_limited: u64,
    pub forbidden: u64,
    pub faults: u64,
    /// Requests per route kind (`sequence`, `entry`, `history`, `everef`, `redisq`).
    pub by_route: BTreeMap<String, u64>,
    /// Distinct entry sequences fetched more than once (refetches, retries).
    pub entry_fetches: BTreeMap<i64, u64>,
}

struct Mutable {
    published: usize,
    recent: VecDeque<Instant>,
    rng: rand::rngs::StdRng,
    stats: FakeZkbStats,
    queues: HashMap<String, usize>,
}

struct Shared {
    options: FakeZkbOptions,
    killmails: Vec<FakeKillmail>,
    slots: Vec<Slot>,
    /// slot → the slot whose publication rewrote it.
    rewritten_by: HashMap<usize, usize>,
    start_unix: i64,
    state: Mutex<Mutable>,
}

/// The latest content of a killmail as published.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    pub hash: String,
    /// The `zkb.totalValue` of its latest version.
    pub total_value: f64,
    pub day: NaiveDate,
}

/// A running fake; dropping it stops the server.
pub struct FakeZkb {
    url: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    ticker: Option<JoinHandle<()>>,
}

impl FakeZkb {
    /// Serves the repository's killmail files with `options`.
    pub async fn start(options: FakeZkbOptions) -> std::io::Result<Self> {
        let killmails = load_killmails(&repo_killmail_files())?;
        Self::start_with(options, killmails).await
    }

    /// Serves `killmails` (in the given order) with `options`.
    pub async fn start_with(
        options: FakeZkbOptions,
        killmails: Vec<FakeKillmail>,
    ) -> std::io::Result<Self> {
        let (slots, rewritten_by) = timeline(&options, killmails.len());
        let published = options.initially_published.min(slots.len());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(Mutable {
                published,
                recent: VecDeque::new(),
                rng: rand::rngs::StdRng::seed_from_u64(options.seed),
                stats: FakeZkbStats::default(),
                queues: HashMap::new(),
            }),
            options,
            killmails,
            slots,
            rewritten_by,
            start_unix: Utc::now().timestamp(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "fake zkb stopped");
            }
        });
        let ticker = shared.options.advance_every.map(|every| {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let mut st = shared.state.lock();
                    st.published = (st.published + 1).min(shared.slots.len());
                }
            })
        });
        Ok(Self {
            url: format!("http://{addr}"),
            shared,
            stop: Some(stop),
            task,
            ticker,
        })
    }

    /// The base URL (R2Z2, history, RedisQ at `/listen.php` and EVE Ref all live here).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The RedisQ listen URL.
    pub fn redisq_url(&self) -> String {
        format!("{}/listen.php", self.url)
    }

    /// Publishes `n` more slots.
    pub fn advance(&self, n: usize) {
        let mut st = self.shared.state.lock();
        st.published = (st.published + n).min(self.shared.slots.len());
    }

    /// Publishes every slot.
    pub fn publish_all(&self) {
        self.advance(usize::MAX / 2);
    }

    /// The first unpublished sequence (the next 404 at the head).
    pub fn head(&self) -> i64 {
        self.shared.options.first_sequence + self.shared.state.lock().published as i64
    }

    /// The sequence after the last slot of the timeline.
    pub fn end(&self) -> i64 {
        self.shared.options.first_sequence + self.shared.slots.len() as i64
    }

    pub fn first_sequence(&self) -> i64 {
        self.shared.options.first_sequence
    }

    /// Sequences of the holes below the head.
    pub fn holes(&self) -> Vec<i64> {
        let published = self.shared.state.lock().published;
        self.shared.slots[..published]
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Slot::Hole))
            .map(|(i, _)| self.shared.options.first_sequence + i as i64)
            .collect()
    }

    /// Sequences that carried `sequence_updated`, and the sequence each one updated, below the head.
    pub fn republications(&self) -> Vec<(i64, i64)> {
        let published = self.shared.state.lock().published;
        let first = self.shared.options.first_sequence;
        self.shared.slots[..published]
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Entry {
                    updates: Some(m), ..
                } => Some((first + i as i64, first + *m as i64)),
                _ => None,
            })
            .collect()
    }

    /// Every published killmail with its latest content.
    pub fn expected(&self) -> BTreeMap<i64, Expected> {
        let published = self.shared.state.lock().published;
        let mut out = BTreeMap::new();
        for (i, slot) in self.shared.slots[..published].iter().enumerate() {
            if let Slot::Entry { km, .. } = slot {
                let k = &self.shared.killmails[*km];
                let version = self.version(i, published);
                let value = zkb_for(k, version);
                out.insert(
                    k.killmail_id,
                    Expected {
                        hash: k.hash.clone(),
                        total_value: value["totalValue"].as_f64().unwrap_or(0.0),
                        day: k.day(),
                    },
                );
            }
        }
        out
    }

    /// Every loaded killmail (what EVE Ref serves).
    pub fn killmails(&self) -> &[FakeKillmail] {
        &self.shared.killmails
    }

    pub fn stats(&self) -> FakeZkbStats {
        self.shared.state.lock().stats.clone()
    }

    fn version(&self, slot: usize, published: usize) -> u32 {
        version_of(&self.shared, slot, published)
    }
}

impl Drop for FakeZkb {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        self.task.abort();
    }
}

fn version_of(shared: &Shared, slot: usize, published: usize) -> u32 {
    match shared.rewritten_by.get(&slot) {
        Some(by) if *by < published => 1,
        _ => 0,
    }
}

/// Lays the killmails out on sequences.
fn timeline(o: &FakeZkbOptions, n: usize) -> (Vec<Slot>, HashMap<usize, usize>) {
    let mut slots: Vec<Slot> = Vec::new();
    let mut rewritten_by = HashMap::new();
    // Killmails served twice are never rewritten, and rewritten ones never served twice,
    // so "the latest content" of every killmail is unambiguous.
    let mut duplicated = std::collections::HashSet::new();
    let mut rewritten_kms = std::collections::HashSet::new();
    let mut next_km = 0;
    let every = |k: usize, i: usize| k > 0 && i % k == k - 1;
    while next_km < n {
        let i = slots.len();
        if every(o.hole_every, i) {
            slots.push(Slot::Hole);
            continue;
        }
        if every(o.duplicate_every, i) && next_km > 3 && !rewritten_kms.contains(&(next_km - 3)) {
            // Re-serve a killmail three back, unchanged: the same id under a second sequence.
            duplicated.insert(next_km - 3);
            slots.push(Slot::Entry {
                km: next_km - 3,
                updates: None,
            });
            continue;
        }
        let mut updates = None;
        if every(o.republish_every, i) {
            // Re-publish the nearest plain entry at least ten slots back.
            updates = (0..i.saturating_sub(10))
                .rev()
                .take(50)
                .find(|&j| match slots[j] {
                    Slot::Entry { km, updates: None } => {
                        !rewritten_by.contains_key(&j)
                            && !duplicated.contains(&km)
                            && km + 4 < next_km
                    }
                    _ => false,
                });
            if let Some(m) = updates {
                rewritten_by.insert(m, i);
                if let Slot::Entry { km, .. } = slots[m] {
                    rewritten_kms.insert(km);
                }
            }
        }
        slots.push(Slot::Entry {
            km: next_km,
            updates,
        });
        next_km += 1;
    }
    (slots, rewritten_by)
}

/// zKillboard's block for a killmail; version 1 is the re-published content.
fn zkb_for(k: &FakeKillmail, version: u32) -> Value {
    let base = (k.killmail_id % 100_000) as f64 * 1_000.0 + 10_000.0;
    let total = if version == 0 { base } else { base * 1.5 + 1.0 };
    let attackers = k
        .esi
        .get("attackers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    json!({
        "locationID": 40_000_000 + (k.killmail_id % 1000),
        "hash": k.hash,
        "fittedValue": total * 0.8,
        "droppedValue": total * 0.25,
        "destroyedValue": total * 0.75,
        "totalValue": total,
        "points": 1 + version,
        "npc": false,
        "solo": attackers == 1,
        "awox": false,
        "labels": ["pvp", format!("#:{attackers}")],
        "attackerCount": attackers,
        "href": format!("https://esi.evetech.net/killmails/{}/{}/", k.killmail_id, k.hash),
    })
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Body>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn json_response(v: &Value) -> Response {
    respond(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn not_found() -> Response {
    respond(
        StatusCode::NOT_FOUND,
        "application/json",
        r#"{"error":"not found"}"#,
    )
}

async fn handle(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/').to_owned();
    let route = if path == "ephemeral/sequence.json" {
        "sequence"
    } else if path.starts_with("ephemeral/") {
        "entry"
    } else if path.starts_with("history/") {
        "history"
    } else if path.starts_with("killmails/") {
        "everef"
    } else if path.starts_with("listen.php") {
        "redisq"
    } else {
        "unknown"
    };
    // Admission: User-Agent, rate limit, injected faults, in Cloudflare's order.
    {
        let mut st = shared.state.lock();
        st.stats.requests += 1;
        *st.stats.by_route.entry(route.to_owned()).or_default() += 1;
        let ua = headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if shared.options.require_user_agent && ua.trim().is_empty() {
            st.stats.forbidden += 1;
            return respond(
                StatusCode::FORBIDDEN,
                "text/plain",
                "access denied: identify yourself with a User-Agent",
            );
        }
        let now = Instant::now();
        while st
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
        {
            st.recent.pop_front();
        }
        if st.recent.len() >= shared.options.rate_limit {
            st.stats.rate_limited += 1;
            return Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header("retry-after", "1")
                .body(Body::from("rate limited"))
                .unwrap_or_else(|_| Response::new(Body::empty()));
        }
        st.recent.push_back(now);
        let n = st.stats.requests;
        if shared.options.fault_every > 0
            && n % shared.options.fault_every == 0
            && route != "everef"
        {
            st.stats.faults += 1;
            return match (n / shared.options.fault_every) % 3 {
                0 => respond(
                    StatusCode::OK,
                    "text/html",
                    "<!DOCTYPE html><html><body>Cloudflare: please wait</body></html>",
                ),
                1 => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "internal error",
                ),
                _ => respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "unavailable"),
            };
        }
    }
    match route {
        "sequence" => sequence(&shared),
        "entry" => entry(&shared, &path),
        "history" => history(&shared, &path),
        "everef" => everef(&shared, &path),
        "redisq" => redisq(&shared, uri.query().unwrap_or("")),
        _ => not_found(),
    }
}

fn sequence(shared: &Shared) -> Response {
    let mut st = shared.state.lock();
    let lag = if shared.options.sequence_lag == 0 {
        0
    } else {
        st.rng.random_range(0..=shared.options.sequence_lag)
    };
    let last = shared.options.first_sequence + st.published as i64 - 1;
    let value = (last - lag as i64).max(shared.options.first_sequence);
    json_response(&json!({ "sequence": value }))
}

fn entry(shared: &Shared, path: &str) -> Response {
    let Some(n) = path
        .strip_prefix("ephemeral/")
        .and_then(|s| s.strip_suffix(".json"))
        .and_then(|s| s.parse::<i64>().ok())
    else {
        return not_found();
    };
    let published = {
        let mut st = shared.state.lock();
        *st.stats.entry_fetches.entry(n).or_default() += 1;
        st.published
    };
    let first = shared.options.first_sequence;
    if n < first || n >= first + published as i64 {
        return not_found();
    }
    let slot = (n - first) as usize;
    if shared
        .options
        .retention
        .is_some_and(|r| slot + r < published)
    {
        return not_found();
    }
    match &shared.slots[slot] {
        Slot::Hole => not_found(),
        Slot::Entry { km, updates } => {
            let k = &shared.killmails[*km];
            let version = version_of(shared, slot, published);
            let mut v = json!({
                "killmail_id": k.killmail_id,
                "hash": k.hash,
                "esi": k.esi,
                "zkb": zkb_for(k, version),
                "uploaded_at": shared.start_unix + slot as i64,
                "sequence_id": n,
            });
            if let Some(m) = updates {
                v["sequence_updated"] = json!(first + *m as i64);
            }
            json_response(&v)
        }
    }
}

/// Distinct published killmails, by id.
fn published_killmails(shared: &Shared) -> BTreeMap<i64, &FakeKillmail> {
    let published = shared.state.lock().published;
    shared.slots[..published]
        .iter()
        .filter_map(|s| match s {
            Slot::Entry { km, .. } => Some(&shared.killmails[*km]),
            Slot::Hole => None,
        })
        .map(|k| (k.killmail_id, k))
        .collect()
}

fn history(shared: &Shared, path: &str) -> Response {
    let name = path.trim_start_matches("history/");
    let kms = published_killmails(shared);
    if name == "totals.json" {
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for k in kms.values() {
            *totals
                .entry(k.day().format("%Y%m%d").to_string())
                .or_default() += 1;
        }
        return json_response(&json!(totals));
    }
    let Some(day) = name
        .strip_suffix(".json")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
    else {
        return not_found();
    };
    let map: serde_json::Map<String, Value> = kms
        .values()
        .filter(|k| k.day() == day)
        .map(|k| (k.killmail_id.to_string(), json!(k.hash)))
        .collect();
    if map.is_empty() {
        return not_found();
    }
    json_response(&Value::Object(map))
}

fn everef(shared: &Shared, path: &str) -> Response {
    if path == "killmails/totals.json" {
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for k in &shared.killmails {
            *totals
                .entry(k.day().format("%Y-%m-%d").to_string())
                .or_default() += 1;
        }
        return json_response(&json!(totals));
    }
    let day = path
        .rsplit('/')
        .next()
        .and_then(|f| f.strip_prefix("killmails-"))
        .and_then(|f| f.strip_suffix(".tar.bz2"))
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let Some(day) = day else { return not_found() };
    let members: Vec<(String, Vec<u8>)> = shared
        .killmails
        .iter()
        .filter(|k| k.day() == day)
        .map(|k| {
            (
                format!("killmails/{}.json", k.killmail_id),
                k.record.clone(),
            )
        })
        .collect();
    if members.is_empty() {
        return not_found();
    }
    match crate::everef::build_archive(&members) {
        Ok(bytes) => respond(StatusCode::OK, "application/x-bzip2", bytes),
        Err(_) => respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "archive"),
    }
}

fn redisq(shared: &Shared, query: &str) -> Response {
    let queue = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("queueID="))
        .unwrap_or("")
        .to_owned();
    if queue.is_empty() {
        return respond(
            StatusCode::TOO_MANY_REQUESTS,
            "text/plain",
            "queueID required",
        );
    }
    let mut st = shared.state.lock();
    let published = st.published;
    let pos = st.queues.entry(queue.clone()).or_insert(0);
    while *pos < published && matches!(shared.slots[*pos], Slot::Hole) {
        *pos += 1;
    }
    if *pos >= published {
        return json_response(&json!({ "package": null }));
    }
    let slot = *pos;
    *pos += 1;
    drop(st);
    let Slot::Entry { km, .. } = &shared.slots[slot] else {
        return json_response(&json!({ "package": null }));
    };
    let k = &shared.killmails[*km];
    let zkb = zkb_for(k, version_of(shared, slot, published));
    let package = if shared.options.redisq_with_body {
        json!({ "killID": k.killmail_id, "killmail": k.esi, "zkb": zkb })
    } else {
        json!({ "killID": k.killmail_id, "zkb": zkb })
    };
    json_response(&json!({ "package": package }))
}
