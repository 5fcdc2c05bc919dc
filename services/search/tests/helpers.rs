//! Shared fixtures: real fights converted into `killmail.enriched` through the enrichment
//! service's pure function (bundled SDE and prices, real ESI names from ../shared/data), battle
//! snapshots summarised from them, both backends, and a backend that can be switched off.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bs_bus::Delivery;
use bs_domain::{Killmail, KillmailSource};
use bs_enrichment::domain::{Catalog, Input, enrich};
use bs_events::{
    BattleSideSnapshot, BattleSnapshot, BattleStatus, Envelope, Event, KillmailEnriched,
};
use bs_sde::{MarketPrices, StaticData};
use bs_search_index::{
    Collection, Document, Filter, Hit, Result as SResult, SearchIndex, SearchQuery, SearchResults,
    TantivyConfig, TantivyIndex, TypesenseConfig, TypesenseIndex, UpsertReport,
};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn shared(rel: &str) -> PathBuf {
    repo("../shared/data").join(rel)
}

/// A fight fixture of the repository (`data/killmails/fight-<name>-….jsonl.gz`) or of
/// bs-clustering's test data.
pub fn fixture(name: &str) -> PathBuf {
    let dir = repo("data/killmails");
    for dir in [dir, repo("crates/bs-clustering/testdata")] {
        if let Some(p) = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("fight-{name}-"))
            })
        {
            return p;
        }
    }
    panic!("no fixture {name}")
}

#[derive(Deserialize)]
struct IdName {
    id: i64,
    name: String,
}

#[derive(Deserialize)]
struct CharName {
    character_id: i64,
    name: String,
}

fn gz_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let r = flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap());
    serde_json::from_reader(BufReader::new(r)).unwrap()
}

/// Real ESI names of alliances, corporations and characters (shared data).
pub fn names() -> &'static HashMap<i64, Option<String>> {
    static NAMES: OnceLock<HashMap<i64, Option<String>>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut m = HashMap::new();
        for f in [
            "esi/entities/alliances-id-name-ticker.json.gz",
            "esi/entities/corporations-id-name-ticker.json.gz",
        ] {
            for r in gz_json::<Vec<IdName>>(&shared(f)) {
                m.insert(r.id, Some(r.name));
            }
        }
        for r in gz_json::<Vec<CharName>>(&shared("esi/characters-id-name.json.gz")) {
            m.insert(r.character_id, Some(r.name));
        }
        m
    })
}

/// ESI killmails of a fixture, enriched as the enrichment service would; `named` = with the
/// real names (else every player name is pending, as when ESI is slow).
pub fn enriched(name: &str, named: bool) -> Vec<KillmailEnriched> {
    let reader = BufReader::new(flate2::read::MultiGzDecoder::new(
        std::fs::File::open(fixture(name)).unwrap(),
    ));
    let none: HashMap<i64, Option<String>> = HashMap::new();
    let extra_types = HashMap::new();
    let extra_systems = HashMap::new();
    let catalog = Catalog {
        sde: StaticData::bundled(),
        extra_types: &extra_types,
        extra_systems: &extra_systems,
        names: if named { names() } else { &none },
        prices: MarketPrices::bundled(),
    };
    reader
        .lines()
        .map(Result::unwrap)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(&l).unwrap();
            let hash = v["killmail_hash"].as_str().unwrap_or("0000").to_owned();
            let km: Killmail = serde_json::from_value(v).unwrap();
            let mut ev = enrich(
                Input {
                    killmail: &km,
                    hash: &hash,
                    zkb: None,
                    source: KillmailSource::Everef,
                },
                &catalog,
            )
            .event;
            ev.revision = u32::from(named);
            ev
        })
        .collect()
}

/// The `n` ids with the most appearances, by count.
fn top(counts: HashMap<i64, u32>, n: usize) -> Vec<i64> {
    let mut v: Vec<(i64, u32)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().take(n).map(|(id, _)| id).collect()
}

/// A battle snapshot summarising `kms` (attackers on side 0, victims on side 1), founded by
/// the first kill, as the battle service would publish it.
pub fn battle_of(kms: &[KillmailEnriched], revision: u64) -> BattleSnapshot {
    let mut systems: Vec<i64> = kms.iter().map(|k| k.system.id).collect();
    systems.sort_unstable();
    systems.dedup();
    let mut regions: Vec<i64> = kms.iter().filter_map(|k| k.system.region_id).collect();
    regions.sort_unstable();
    regions.dedup();
    let mut sec: Vec<String> = kms
        .iter()
        .filter_map(|k| k.system.security_type.clone())
        .collect();
    sec.sort();
    sec.dedup();
    let (mut aa, mut ac, mut va, mut vc) = (
        HashMap::new(),
        HashMap::new(),
        HashMap::new(),
        HashMap::new(),
    );
    let mut pilots = std::collections::HashSet::new();
    for k in kms {
        if let Some(a) = k.victim.who.alliance_id {
            *va.entry(a).or_insert(0) += 1;
        }
        if let Some(c) = k.victim.who.corporation_id {
            *vc.entry(c).or_insert(0) += 1;
        }
        pilots.extend(k.victim.who.character_id);
        for a in &k.attackers {
            if let Some(x) = a.who.alliance_id {
                *aa.entry(x).or_insert(0) += 1;
            }
            if let Some(x) = a.who.corporation_id {
                *ac.entry(x).or_insert(0) += 1;
            }
            pilots.extend(a.who.character_id);
        }
    }
    let side = |index: u32, a: HashMap<i64, u32>, c: HashMap<i64, u32>| BattleSideSnapshot {
        index,
        pilots: 0,
        kills: 0,
        losses: 0,
        isk_destroyed: 0.0,
        isk_lost: 0.0,
        alliance_ids: top(a, 5),
        corporation_ids: top(c, 5),
    };
    BattleSnapshot {
        battle_id: kms[0].killmail_id,
        status: BattleStatus::Active,
        merged_into: None,
        system_ids: systems,
        region_ids: regions,
        security_types: sec,
        start_time: kms.iter().map(|k| k.killmail_time).min().unwrap(),
        end_time: kms.iter().map(|k| k.killmail_time).max().unwrap(),
        total_kills: kms.len() as u32,
        total_isk_destroyed: kms.iter().map(|k| k.isk.total).sum(),
        pilots: pilots.len() as u32,
        multi_party: false,
        one_sided: false,
        sides: vec![side(0, aa, ac), side(1, va, vc)],
        revision,
    }
}

/// One bus record of `event`, as the consumer would receive it.
pub fn delivery<E: Event>(event: &E, offset: i64) -> Delivery {
    let env = Envelope::wrap(event, chrono::Utc::now()).unwrap();
    Delivery {
        topic: E::TOPIC.to_owned(),
        partition: 0,
        offset,
        key: env.key.clone(),
        payload: env.to_bytes(),
    }
}

/// The backends of the suite.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Tantivy,
    Typesense,
}

/// A fresh, empty index on `backend`, or `None` when Typesense is not configured (skipped
/// locally, a failure under CI=true).
pub struct Engine {
    pub index: Arc<dyn SearchIndex>,
    typesense: Option<TypesenseIndex>,
}

impl Engine {
    pub fn open(backend: Backend) -> Option<Engine> {
        match backend {
            Backend::Tantivy => Some(Engine {
                index: Arc::new(TantivyIndex::open(TantivyConfig::default()).unwrap()),
                typesense: None,
            }),
            Backend::Typesense => {
                let url = bs_testkit::engine(bs_testkit::TYPESENSE)?;
                let key = std::env::var("BATTLESCOPE_TEST_TYPESENSE_KEY")
                    .unwrap_or_else(|_| "battlescope-test-key".into());
                let mut cfg = TypesenseConfig::new(url, key);
                cfg.collection_prefix = format!("{}_", bs_testkit::unique_name("bss"));
                let ts = TypesenseIndex::new(cfg).unwrap();
                Some(Engine {
                    index: Arc::new(ts.clone()),
                    typesense: Some(ts),
                })
            }
        }
    }

    /// Drops this run's Typesense collections.
    pub async fn cleanup(&self) {
        if let Some(ts) = &self.typesense {
            ts.drop_collections().await.unwrap();
        }
    }
}

/// A backend that can be switched off: while down, every call goes to a Typesense client
/// pointed at a closed port, so the service sees the real "unreachable" errors.
pub struct Switchable {
    inner: Arc<dyn SearchIndex>,
    dead: TypesenseIndex,
    down: AtomicBool,
    /// Calls that failed because the backend was down.
    pub failed: AtomicU64,
}

impl Switchable {
    pub fn new(inner: Arc<dyn SearchIndex>) -> Switchable {
        // Port 9 (discard) is closed on loopback: connections are refused at once.
        let mut cfg = TypesenseConfig::new("http://127.0.0.1:9", "none");
        cfg.timeout = Duration::from_secs(2);
        Switchable {
            inner,
            dead: TypesenseIndex::new(cfg).unwrap(),
            down: AtomicBool::new(false),
            failed: AtomicU64::new(0),
        }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn pick(&self) -> &dyn SearchIndex {
        if self.down.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            &self.dead
        } else {
            self.inner.as_ref()
        }
    }
}

#[async_trait]
impl SearchIndex for Switchable {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ensure_collections(&self) -> SResult<()> {
        self.pick().ensure_collections().await
    }
    async fn upsert(&self, docs: &[Document]) -> SResult<UpsertReport> {
        self.pick().upsert(docs).await
    }
    async fn delete(&self, c: Collection, ids: &[String]) -> SResult<()> {
        self.pick().delete(c, ids).await
    }
    async fn delete_by_filter(&self, c: Collection, f: &[Filter]) -> SResult<()> {
        self.pick().delete_by_filter(c, f).await
    }
    async fn clear(&self, c: Collection) -> SResult<()> {
        self.pick().clear(c).await
    }
    async fn autocomplete(&self, q: &str, t: &[Collection], limit: usize) -> SResult<Vec<Hit>> {
        self.pick().autocomplete(q, t, limit).await
    }
    async fn search(&self, q: &SearchQuery) -> SResult<SearchResults> {
        self.pick().search(q).await
    }
    async fn refresh(&self) -> SResult<()> {
        self.pick().refresh().await
    }
    async fn ping(&self) -> SResult<()> {
        self.pick().ping().await
    }
    async fn count(&self, c: Collection) -> SResult<u64> {
        self.pick().count(c).await
    }
}

/// `GET uri` on a router: status and JSON body.
pub async fn get(router: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let resp = tower::ServiceExt::oneshot(router.clone(), req)
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `(type, id)` of each hit of a `/search` or `/search/autocomplete` answer.
pub fn hit_keys(body: &Value) -> Vec<(String, String)> {
    body["hits"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|h| {
            (
                h["type"].as_str().unwrap_or("").to_owned(),
                h["id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Per-collection document counts after a refresh.
pub async fn counts(index: &dyn SearchIndex) -> BTreeMap<Collection, u64> {
    index.refresh().await.unwrap();
    let mut m = BTreeMap::new();
    for c in Collection::ALL {
        m.insert(c, index.count(c).await.unwrap());
    }
    m
}

/// Fails the test instead of hanging forever.
pub async fn guard<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(180), f)
        .await
        .expect("timed out")
}

/// Polls `cond` until it holds (the consumer runs in the background).
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    guard(async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let _ = what;
}
