//! Integration tests: `EsiClient` against `FakeEsi` on real data.
//!
//! Each test starts its own fake on `127.0.0.1:0` (data is loaded once per process)
//! and asserts on the fake's counters, so "never exceeds the rate limit" and "never
//! exhausts the error budget" are checked where ESI would check them: at the server.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bs_esi::fake::{FakeData, FakeEsi, FakeSettings};
use bs_esi::{Clock, EsiClient, EsiConfig, EsiError, NameCategory, RetryConfig};
use chrono::{DateTime, TimeZone, Utc};

fn test_config(url: &str) -> EsiConfig {
    EsiConfig {
        user_agent: "BattleScope-tests/0.1 (tests@battlescope.invalid)".into(),
        retry: RetryConfig {
            max_retries: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        },
        // The suite may run at 11:05 UTC; downtime is tested with an injected clock.
        downtime: None,
        max_wait: Duration::from_secs(5),
        ..EsiConfig::for_url(url)
    }
}

fn client(fake: &FakeEsi) -> EsiClient {
    EsiClient::new(test_config(fake.url())).unwrap_or_else(|e| panic!("client: {e}"))
}

async fn fake_with(settings: FakeSettings) -> FakeEsi {
    let data = FakeData::shared().unwrap_or_else(|e| panic!("fake data: {e}"));
    FakeEsi::start_with(settings, data)
        .await
        .unwrap_or_else(|e| panic!("fake: {e}"))
}

async fn fake() -> FakeEsi {
    fake_with(FakeSettings::default()).await
}

/// The first line of a repository fixture, read independently of the fake's loader.
fn first_fixture_killmail() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/killmails/fight-uw9b-f-2021-11-30.jsonl.gz"
    );
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(
        std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}")),
    )
    .read_to_string(&mut text)
    .unwrap_or_else(|e| panic!("{path}: {e}"));
    let line = text.lines().next().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("fixture: {e}"))
}

fn unknown_ids(data: &FakeData, n: usize) -> Vec<i64> {
    (2_190_000_000_i64..)
        .filter(|id| data.name(*id).is_none())
        .take(n)
        .collect()
}

#[derive(Debug)]
struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now_utc(&self) -> DateTime<Utc> {
        self.0
    }
}

#[tokio::test]
async fn killmail_fetch_by_id_and_hash_returns_the_real_body() {
    let fake = fake().await;
    let esi = client(&fake);
    let mut expected = first_fixture_killmail();
    let id = expected["killmail_id"].as_i64().unwrap_or_default();
    let hash = expected["killmail_hash"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // ESI's body has no EVE Ref extras.
    if let Some(map) = expected.as_object_mut() {
        map.remove("killmail_hash");
        map.remove("http_last_modified");
    }
    let body = esi
        .killmail_raw(id, &hash)
        .await
        .unwrap_or_else(|e| panic!("fetch: {e}"));
    let got: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!(got, expected);
    assert!(!String::from_utf8_lossy(&body).contains("killmail_hash"));

    // A wrong (well-formed) hash is a permanent not-found; a malformed one is never sent.
    let wrong = "0".repeat(40);
    assert_eq!(esi.killmail_raw(id, &wrong).await, Err(EsiError::NotFound));
    assert_eq!(
        esi.killmail_raw(id, "../status").await,
        Err(EsiError::NotFound)
    );
    let stats = fake.stats();
    assert_eq!(stats.requests("killmail"), 2);
    assert_eq!(stats.responses("killmail", 422), 1);
    assert_eq!(stats.missing_headers, 0);
}

#[tokio::test]
async fn expires_is_honoured_and_etag_revalidates_with_304() {
    let fresh = fake().await;
    let esi = client(&fresh);
    let corp = 98_309_716; // "PILS. Holding" [DURST] in the ESI corporation list.
    let a = esi
        .corporation(corp)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = esi
        .corporation(corp)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (a.name.as_str(), a.ticker.as_str()),
        ("PILS. Holding", "DURST")
    );
    assert_eq!(a, b);
    assert_eq!(
        fresh.stats().requests("corporation"),
        1,
        "second call served from cache until Expires"
    );

    let stale = fake_with(FakeSettings {
        cache_ttl: Some(Duration::ZERO),
        ..FakeSettings::default()
    })
    .await;
    let esi = client(&stale);
    let a = esi
        .corporation(corp)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = esi
        .corporation(corp)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a, b);
    let stats = stale.stats();
    assert_eq!(stats.requests("corporation"), 2);
    assert_eq!(stats.responses("corporation", 200), 1);
    assert_eq!(stats.responses("corporation", 304), 1);
}

#[tokio::test]
async fn bulk_names_chunk_by_1000_and_bisect_unknown_ids() {
    let fake = fake().await;
    let esi = client(&fake);
    let data = fake.data();
    let mut ids: Vec<i64> = data.affiliated_characters().collect();
    ids.sort_unstable();
    assert!(ids.len() > 2000, "fixtures hold {} characters", ids.len());
    let bad = unknown_ids(data, 2);
    ids.insert(ids.len() / 3, bad[0]);
    ids.push(bad[1]);
    ids.push(ids[0]); // a duplicate must not reach ESI (uniqueItems)
    ids.push(0); // cannot exist; must not cost a request

    let out = esi.names(&ids).await;
    let known = ids.len() - 4;
    assert_eq!(out.found.len(), known);
    assert_eq!(out.unknown, vec![0, bad[0], bad[1]]);
    assert!(
        out.deferred.is_empty() && out.error.is_none(),
        "{:?}",
        out.error
    );
    for n in &out.found {
        let truth = data
            .name(n.id)
            .unwrap_or_else(|| panic!("{} unknown to fake", n.id));
        assert_eq!(n.name, truth.name);
        assert_eq!(n.category, NameCategory::Character);
        assert_eq!(
            truth.generated,
            n.name.starts_with("Generated Pilot "),
            "{}",
            n.name
        );
    }
    // Real names are real: an NPC character from the ESI name list.
    let real = esi.names(&[3_019_582]).await;
    assert_eq!(real.found[0].name, "Apollo Tyrannos");

    let stats = fake.stats();
    assert_eq!(
        stats.responses("universe_names", 400),
        0,
        "no oversized or duplicate batch"
    );
    let chunks = (known + 2).div_ceil(1000) as u64;
    // Isolating one bad id in 1000 takes one failing call per 4-way split level
    // (1000, 250, 63, 16, 4, 1): at most 6 of the scarce errors per bad id.
    let failed = stats.responses("universe_names", 404);
    assert!((2..=2 * 6).contains(&failed), "{failed} failing calls");
    assert!(
        stats.responses("universe_names", 200) > chunks,
        "chunks plus split parts"
    );
    assert!(
        stats.requests("universe_names") < chunks + 2 * 6 * 4,
        "splitting is bounded"
    );
}

#[tokio::test]
async fn affiliations_resolve_in_bulk_from_killmail_sightings() {
    let fake = fake().await;
    let esi = client(&fake);
    let ids: Vec<i64> = fake.data().affiliated_characters().take(1500).collect();
    let out = esi.affiliations(&ids).await;
    assert_eq!(out.found.len(), ids.len());
    assert!(out.unknown.is_empty() && out.deferred.is_empty());
    assert_eq!(fake.stats().requests("character_affiliation"), 2);
    assert!(out.found.iter().all(|a| a.corporation_id > 0));
}

#[tokio::test]
async fn static_and_market_endpoints_serve_real_data() {
    let fake = fake().await;
    let esi = client(&fake);
    let system = esi
        .system(30_001_046)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(system.name, "Jorund");
    let rifter = esi.type_info(587).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rifter.name, "Rifter");
    assert_eq!(esi.type_info(-5).await, Err(EsiError::NotFound));
    let prices = esi.market_prices().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(prices.len(), 15_134);
    let tritanium = prices.iter().find(|p| p.type_id == 34);
    assert_eq!(tritanium.and_then(|p| p.average_price), Some(4.09));
    let status = esi.status().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.server_version, "fake-esi");
}

#[tokio::test]
async fn retries_5xx_with_backoff_then_succeeds_and_gives_up_when_told() {
    let fake = fake().await;
    let esi = client(&fake);
    let alliance = 99_000_008; // "People in Lousy Ships" [PILS.]
    fake.fail_next(2, 503);
    let a = esi
        .alliance(alliance)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.ticker, "PILS.");
    let stats = fake.stats();
    assert_eq!(stats.responses("alliance", 503), 2);
    assert_eq!(stats.responses("alliance", 200), 1);

    fake.fail_next(10, 502);
    let err = esi.corporation(98_340_314).await;
    assert!(
        matches!(err, Err(EsiError::Upstream { status: 502, .. })),
        "{err:?}"
    );
    // One try plus three retries, then the remaining faults are left unused.
    assert_eq!(fake.stats().responses("corporation", 502), 4);
}

#[tokio::test]
async fn a_429_without_headers_is_waited_out_and_retried() {
    let fake = fake().await;
    let esi = client(&fake);
    fake.throttle_next(1);
    let status = esi.status().await;
    assert!(status.is_ok(), "{status:?}");
    let stats = fake.stats();
    assert_eq!(stats.responses("status", 429), 1);
    assert_eq!(stats.responses("status", 200), 1);
}

#[tokio::test]
async fn error_limit_420_stops_all_sending_until_the_window_resets() {
    let fake = fake().await;
    let esi = EsiClient::new(EsiConfig {
        max_wait: Duration::from_millis(200),
        ..test_config(fake.url())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // Other software on our IP burned the whole budget.
    fake.spend_errors(100);
    let first = esi.alliance(99_000_006).await;
    assert!(
        matches!(first, Err(EsiError::ErrorBudgetLow { .. })),
        "{first:?}"
    );
    assert_eq!(esi.error_budget_remaining(), Some(0));
    let second = esi.corporation(98_309_716).await;
    assert!(
        matches!(second, Err(EsiError::ErrorBudgetLow { .. })),
        "{second:?}"
    );
    let stats = fake.stats();
    assert_eq!(stats.error_limited, 1, "only the first call reached ESI");
    assert_eq!(stats.requests("corporation"), 0);
}

#[tokio::test]
async fn downtime_pause_sends_nothing() {
    let fake = fake().await;
    let at = Utc
        .with_ymd_and_hms(2026, 12, 1, 11, 5, 0)
        .single()
        .unwrap_or_default();
    let esi = EsiClient::new(EsiConfig {
        clock: Arc::new(FixedClock(at)),
        downtime: Some(bs_esi::DowntimeWindow::default()),
        ..test_config(fake.url())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let until = Utc
        .with_ymd_and_hms(2026, 12, 1, 11, 15, 0)
        .single()
        .unwrap_or_default();
    assert_eq!(esi.status().await, Err(EsiError::Downtime { until }));
    let names = esi.names(&[3_019_582]).await;
    assert_eq!(names.deferred, vec![3_019_582]);
    assert_eq!(fake.stats().requests.values().sum::<u64>(), 0);
}

#[tokio::test]
async fn the_fake_rejects_requests_without_required_headers() {
    let fake = fake().await;
    let bare = reqwest::Client::new();
    let response = bare
        .get(format!("{}/status", fake.url()))
        .header("User-Agent", "x")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 400);
    let future = bare
        .get(format!("{}/status", fake.url()))
        .header("User-Agent", "x")
        .header("X-Compatibility-Date", "2999-01-01")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(future.status().as_u16(), 400);
    assert_eq!(fake.stats().missing_headers, 2);
}

/// Small limits so a few hundred requests hit both regimes within seconds.
fn tight_settings() -> FakeSettings {
    FakeSettings {
        error_limit: 30,
        error_window: Duration::from_secs(2),
        group_limits: BTreeMap::from([("killmail".to_owned(), 60), ("status".to_owned(), 60)]),
        rate_window: Duration::from_secs(2),
        ..FakeSettings::default()
    }
}

fn tight_client(fake: &FakeEsi) -> EsiClient {
    EsiClient::new(EsiConfig {
        max_concurrency: 8,
        error_budget_margin: 10,
        rate_limit_margin: 6,
        max_wait: Duration::from_secs(6),
        ..test_config(fake.url())
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_with_faults_the_budget_is_never_exhausted_nor_the_rate_limit_exceeded() {
    let fake = fake_with(tight_settings()).await;
    let esi = tight_client(&fake);
    let data = fake.data();
    let mut killmails: Vec<(i64, String)> = data
        .killmail_ids()
        .filter_map(|id| data.killmail(id).map(|k| (id, k.hash.clone())))
        .collect();
    killmails.sort();
    killmails.truncate(80);
    let characters: Vec<i64> = data.affiliated_characters().take(600).collect();
    let bad = unknown_ids(data, 6 + 20);
    let alliances = [99_000_006_i64, 99_000_008, 99_000_026, 99_000_036];

    fake.set_latency(Duration::from_millis(3));
    // 4 + 2 faults stay below the 7 attempts one call has, so every good killmail
    // must arrive whichever calls draw them.
    fake.fail_next(3, 503);
    fake.fail_next(1, 504);
    fake.throttle_next(2);
    fake.spend_tokens("killmail", 20);
    fake.spend_errors(5);

    let mut tasks = tokio::task::JoinSet::new();
    for (i, (id, hash)) in killmails.iter().cloned().enumerate() {
        let esi = esi.clone();
        // Every tenth killmail asks with a wrong hash (4xx: 5 tokens each).
        let hash = if i % 10 == 9 { "f".repeat(40) } else { hash };
        tasks.spawn(async move { ("killmail", esi.killmail_raw(id, &hash).await.map(|_| ())) });
    }
    for (i, chunk) in characters.chunks(100).enumerate() {
        let esi = esi.clone();
        let mut ids = chunk.to_vec();
        ids.push(bad[i]); // every batch needs bisecting: a stream of 404s
        tasks.spawn(async move {
            let out = esi.names(&ids).await;
            ("names", out.error.map_or(Ok(()), Err))
        });
    }
    for i in 0..40 {
        let esi = esi.clone();
        // Half of them distinct unknown ids: 20 errors that coalescing cannot absorb.
        let id = if i % 2 == 0 {
            bad[6 + i / 2]
        } else {
            alliances[i % 4]
        };
        tasks.spawn(async move { ("alliance", esi.alliance(id).await.map(|_| ())) });
    }
    let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (what, result) = joined.unwrap_or_else(|e| panic!("task: {e}"));
        let label = match result {
            Ok(()) => format!("{what} ok"),
            Err(e) => format!(
                "{what} {}",
                e.to_string().split(':').nth(1).unwrap_or("").trim()
            ),
        };
        *outcomes.entry(label).or_default() += 1;
    }
    let stats = fake.stats();
    eprintln!("outcomes {outcomes:?}\nstats {stats:?}");
    assert_eq!(stats.rate_limited, 0, "the floating window was exceeded");
    assert_eq!(stats.error_limited, 0, "the error budget was exhausted");
    assert!(stats.min_error_remain > 0);
    // More errors were served than one window allows: the client paced them across
    // windows instead of running into 420.
    let errors = stats.responses("universe_names", 404) + stats.responses("alliance", 404);
    assert!(errors > 30, "{errors} errors");
    assert!(stats.max_tokens_used.get("killmail").copied().unwrap_or(0) <= 60);
    assert_eq!(stats.missing_headers, 0);
    // The good killmails all arrived; wrong hashes are permanent not-founds.
    assert_eq!(outcomes.get("killmail ok").copied(), Some(72));
    assert_eq!(outcomes.get("killmail not found").copied(), Some(8));
}

#[tokio::test]
async fn a_remaining_header_larger_than_reality_is_not_trusted() {
    let fake = fake_with(FakeSettings {
        overstate_remaining: true,
        ..tight_settings()
    })
    .await;
    let esi = tight_client(&fake);
    let data = fake.data();
    let mut ids: Vec<i64> = data.killmail_ids().collect();
    ids.sort_unstable();
    let futures = ids.iter().take(45).map(|&id| {
        let esi = esi.clone();
        let hash = data
            .killmail(id)
            .map(|k| k.hash.clone())
            .unwrap_or_default();
        async move { esi.killmail_raw(id, &hash).await }
    });
    let results = futures::future::join_all(futures).await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    assert_eq!(fake.stats().rate_limited, 0);
}

#[tokio::test]
async fn lookups_recover_after_the_fake_comes_back_up() {
    let fake = fake_with(tight_settings()).await;
    let esi = tight_client(&fake);
    let ids: Vec<i64> = fake.data().affiliated_characters().take(50).collect();
    fake.set_down(true);
    for _ in 0..6 {
        let out = esi.names(&ids).await;
        assert_eq!(out.deferred.len(), ids.len(), "nothing resolves while down");
        assert!(out.error.as_ref().is_some_and(EsiError::is_transient));
    }
    let during = fake.stats();
    assert_eq!(
        during.error_limited, 0,
        "stopped before the error limit while down"
    );
    fake.set_down(false);
    let out = esi.names(&ids).await;
    assert_eq!(out.found.len(), ids.len(), "{:?}", out.error);
    assert_eq!(fake.stats().error_limited, 0);
}

#[tokio::test]
async fn slow_responses_time_out_are_retried_and_then_recover() {
    let fake = fake().await;
    let esi = EsiClient::new(EsiConfig {
        request_timeout: Duration::from_millis(150),
        retry: RetryConfig {
            max_retries: 1,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        },
        ..test_config(fake.url())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    fake.set_latency(Duration::from_millis(600));
    let slow = esi.alliance(99_000_026).await;
    assert!(matches!(slow, Err(EsiError::Transport(_))), "{slow:?}");
    assert_eq!(
        fake.stats().requests("alliance"),
        2,
        "one try and one retry"
    );
    fake.set_latency(Duration::ZERO);
    let a = esi
        .alliance(99_000_026)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.name, "Hell's Echo");
}

#[tokio::test]
async fn concurrent_identical_lookups_share_one_request() {
    let fake = fake().await;
    let esi = client(&fake);
    fake.set_latency(Duration::from_millis(50));
    let calls = (0..20).map(|_| esi.corporation(98_045_696)); // "Pandorum Inc."
    let results = futures::future::join_all(calls).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|c| c.name == "Pandorum Inc."))
    );
    // Errors are shared too: 20 asks for a missing alliance cost one error, not 20.
    let misses = (0..20).map(|_| esi.alliance(1));
    let results = futures::future::join_all(misses).await;
    assert!(results.iter().all(|r| *r == Err(EsiError::NotFound)));
    let stats = fake.stats();
    assert_eq!(stats.requests("corporation"), 1);
    assert_eq!(stats.requests("alliance"), 1);
}

#[tokio::test]
async fn abandoned_calls_do_not_leak_budget_or_concurrency() {
    let fake = fake().await;
    let esi = EsiClient::new(EsiConfig {
        max_concurrency: 2,
        ..test_config(fake.url())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    fake.set_latency(Duration::from_millis(300));
    // Callers that give up early (a timeout around the call) on GETs and bulk POSTs.
    for id in [99_000_006_i64, 99_000_008, 99_000_026, 99_000_036] {
        let _ = tokio::time::timeout(Duration::from_millis(20), esi.alliance(id)).await;
        let _ = tokio::time::timeout(Duration::from_millis(20), esi.names(&[id])).await;
    }
    fake.set_latency(Duration::ZERO);
    // With only two permits, a leak would make these wait until max_wait and fail.
    for id in [98_309_716_i64, 98_340_314, 98_045_696] {
        let c = esi.corporation(id).await;
        assert!(c.is_ok(), "{c:?}");
    }
    let names = esi.names(&[3_019_582]).await;
    assert_eq!(names.found.len(), 1, "{:?}", names.error);
}

#[tokio::test]
async fn a_test_can_add_its_own_entities_to_the_fake() {
    let mut data = FakeData::default();
    data.insert_name(2_112_000_001, "Test Pilot", NameCategory::Character);
    data.insert_affiliation(2_112_000_001, 98_000_001, Some(99_000_001));
    let fake = FakeEsi::start_with(FakeSettings::default(), Arc::new(data))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let esi = client(&fake);
    let names = esi.names(&[2_112_000_001, 2_112_000_002]).await;
    assert_eq!(names.found[0].name, "Test Pilot");
    assert_eq!(names.unknown, vec![2_112_000_002]);
    let aff = esi.affiliations(&[2_112_000_001]).await;
    assert_eq!(aff.found[0].alliance_id, Some(99_000_001));
}

/// A recorder that sums counters and keeps the last gauge value, keyed `name{labels}`.
#[derive(Default)]
struct TestRecorder {
    values: Arc<parking_lot::Mutex<BTreeMap<String, f64>>>,
}

struct Slot {
    key: String,
    values: Arc<parking_lot::Mutex<BTreeMap<String, f64>>>,
}

impl metrics::CounterFn for Slot {
    fn increment(&self, value: u64) {
        *self.values.lock().entry(self.key.clone()).or_default() += value as f64;
    }
    fn absolute(&self, value: u64) {
        self.values.lock().insert(self.key.clone(), value as f64);
    }
}

impl metrics::GaugeFn for Slot {
    fn increment(&self, value: f64) {
        *self.values.lock().entry(self.key.clone()).or_default() += value;
    }
    fn decrement(&self, value: f64) {
        *self.values.lock().entry(self.key.clone()).or_default() -= value;
    }
    fn set(&self, value: f64) {
        self.values.lock().insert(self.key.clone(), value);
    }
}

impl TestRecorder {
    fn slot(&self, key: &metrics::Key) -> Arc<Slot> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        Arc::new(Slot {
            key: format!("{}{{{}}}", key.name(), labels.join(",")),
            values: Arc::clone(&self.values),
        })
    }

    fn get(&self, key: &str) -> f64 {
        self.values.lock().get(key).copied().unwrap_or(0.0)
    }
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.slot(key))
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.slot(key))
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[tokio::test]
async fn metrics_count_requests_retries_cache_hits_and_the_error_budget() {
    let recorder = TestRecorder::default();
    // Current-thread runtime: every task of this test runs under this local recorder.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let fake = fake().await;
    let esi = client(&fake);
    fake.fail_next(1, 503);
    let alliance = 99_000_008;
    assert!(esi.alliance(alliance).await.is_ok());
    assert!(esi.alliance(alliance).await.is_ok());
    assert_eq!(
        recorder.get("esi_requests_total{endpoint=alliance,status=503}"),
        1.0
    );
    assert_eq!(
        recorder.get("esi_requests_total{endpoint=alliance,status=200}"),
        1.0
    );
    assert_eq!(recorder.get("esi_retries_total{endpoint=alliance}"), 1.0);
    assert_eq!(
        recorder.get("esi_cache_hits_total{endpoint=alliance,kind=fresh}"),
        1.0
    );
    // The fake's limit is 100 and one 503 was served.
    assert_eq!(recorder.get("esi_error_limit_remaining{}"), 99.0);
}
