//! Reports numbers for the ESI client against the fake (not a test: no assertions).
//!
//! `cargo run -p bs-esi --example esi_bench` prints: fake data load time, bulk name
//! resolution (ids/s, calls), the bisection cost of unknown ids, killmail fetch rate
//! with production limits, and the achieved rate against a tight floating window
//! compared with the window's theoretical maximum.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bs_esi::fake::{FakeData, FakeEsi, FakeSettings};
use bs_esi::{EsiClient, EsiConfig};

fn config(url: &str) -> EsiConfig {
    EsiConfig {
        user_agent: bs_esi::user_agent_with_contact("bench@battlescope.invalid"),
        downtime: None,
        max_wait: Duration::from_secs(30),
        ..EsiConfig::for_url(url)
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let t = Instant::now();
    let data = FakeData::shared()?;
    println!(
        "fake data load: {:.2} s ({} killmails)",
        t.elapsed().as_secs_f64(),
        data.killmail_ids().count()
    );

    if std::env::var_os("ESI_BENCH_WEEK").is_some() {
        // The whole EVE Ref week from the shared data, as enrichment benchmarks need.
        let mut paths = bs_esi::fake::DataPaths::default();
        let dir = paths.esi_dir.join("../killmails");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains("everef-killmails-"))
            .collect();
        files.sort();
        paths.killmail_files = files;
        let t = Instant::now();
        let week = FakeData::load(&paths)?;
        println!(
            "fake data load with the week: {:.2} s ({} killmails, {} characters)",
            t.elapsed().as_secs_f64(),
            week.killmail_ids().count(),
            week.affiliated_characters().count()
        );
    }

    let fake = FakeEsi::start_with(FakeSettings::default(), data.clone()).await?;
    let esi = EsiClient::new(config(fake.url())).map_err(|e| e.to_string())?;
    let ids: Vec<i64> = data.affiliated_characters().collect();
    let t = Instant::now();
    let out = esi.names(&ids).await;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "names: {} ids in {:.3} s = {:.0} ids/s, {} calls, {} found",
        ids.len(),
        secs,
        ids.len() as f64 / secs,
        fake.stats().requests("universe_names"),
        out.found.len()
    );

    for bad in [1usize, 5, 20] {
        let before = fake.stats().requests("universe_names");
        let before_404 = fake.stats().responses("universe_names", 404);
        let mut batch: Vec<i64> = ids.iter().copied().take(1000).collect();
        batch.sort_unstable();
        // Spread the unknown ids evenly: every (1000/bad)-th known id is replaced by the
        // next id the fake does not know.
        let mut replaced = 0;
        for i in (0..1000).step_by(1000 / bad) {
            if let Some(id) = (batch[i] + 1..).find(|c| data.name(*c).is_none()) {
                batch[i] = id;
                replaced += 1;
            }
        }
        let out = esi.names(&batch).await;
        let stats = fake.stats();
        let calls = stats.requests("universe_names") - before;
        let errors = stats.responses("universe_names", 404) - before_404;
        println!(
            "split: 1000 ids, {replaced} unknown spread out -> {calls} calls, {errors} of them 404 (error budget), {} isolated",
            out.unknown.len()
        );
    }

    let mut kms: Vec<(i64, String)> = data
        .killmail_ids()
        .filter_map(|id| data.killmail(id).map(|k| (id, k.hash.clone())))
        .collect();
    kms.sort();
    // A fresh fake and client: the splits above spent most of this window's error budget.
    let fake = FakeEsi::start_with(FakeSettings::default(), data.clone()).await?;
    let esi = EsiClient::new(config(fake.url())).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let fetches = kms.iter().take(1000).map(|(id, hash)| {
        let esi = esi.clone();
        async move { esi.killmail_raw(*id, hash).await.is_ok() }
    });
    let ok = futures::future::join_all(fetches)
        .await
        .iter()
        .filter(|b| **b)
        .count();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "killmails (production limits, concurrency 8): {ok} in {secs:.3} s = {:.0}/s",
        ok as f64 / secs
    );

    // Tight window: 200 tokens / 5 s = at most 100 successes per 5 s.
    let tight = FakeSettings {
        group_limits: BTreeMap::from([("killmail".to_owned(), 200)]),
        rate_window: Duration::from_secs(5),
        ..FakeSettings::default()
    };
    let fake = FakeEsi::start_with(tight, data.clone()).await?;
    let esi = EsiClient::new(config(fake.url())).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let fetches = kms.iter().take(300).map(|(id, hash)| {
        let esi = esi.clone();
        async move { esi.killmail_raw(*id, hash).await.is_ok() }
    });
    let ok = futures::future::join_all(fetches)
        .await
        .iter()
        .filter(|b| **b)
        .count();
    let secs = t.elapsed().as_secs_f64();
    let stats = fake.stats();
    println!(
        "killmails (200 tokens/5 s): {ok} in {secs:.1} s = {:.1}/s (window maximum 20/s); 429s {}, max tokens used {:?}",
        ok as f64 / secs,
        stats.rate_limited,
        stats.max_tokens_used.get("killmail")
    );
    Ok(())
}
