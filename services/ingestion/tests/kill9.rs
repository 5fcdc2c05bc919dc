//! `kill -9` at random points: the test binary re-executes itself as a child
//! running ingestion (the live feed from a fake R2Z2 that outlives the
//! children, or an import), SIGKILLs it, restarts it, and finally checks that
//! nothing was lost, nothing was stored or announced twice, and the cursor is
//! right. The seed is printed so a failure can be replayed (`BS_KILL9_SEED`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bs_ingestion::store::IngestionStore;
use bs_zkb::fake::{FakeZkb, FakeZkbOptions, repo_killmail_files};
use rand::{Rng, SeedableRng};

use crate::helpers::{config, eventually, ingested_events, killmails};

const MODE: &str = "BS_KILL9_MODE";
const DIR: &str = "BS_KILL9_DIR";
const ZKB: &str = "BS_KILL9_ZKB";

/// The child side. Without `BS_KILL9_MODE` (a normal test run) it has nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let dir = std::path::PathBuf::from(std::env::var(DIR).unwrap());
    let zkb = std::env::var(ZKB).unwrap_or_else(|_| "http://127.0.0.1:9".into());
    let cfg = config(&dir, &zkb, "http://127.0.0.1:9");
    match mode.as_str() {
        "live" => {
            let _running = crate::helpers::start(cfg, &dir.join("bus")).await;
            // Runs until the parent kills it.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        "import" => {
            bs_ingestion::import_paths(&cfg, &repo_killmail_files(), false)
                .await
                .unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
}

fn spawn(mode: &str, dir: &std::path::Path, zkb: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["kill9::child", "--exact", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
        .env(DIR, dir)
        .env(ZKB, zkb)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn rng() -> rand::rngs::StdRng {
    let seed = std::env::var("BS_KILL9_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    eprintln!("kill9 seed: {seed} (replay with BS_KILL9_SEED={seed})");
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn sigkill(mut child: Child) {
    // `Child::kill` is SIGKILL on Unix: no destructor, no graceful shutdown.
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_ingestion_survives_sigkill() {
    let mut rng = rng();
    let kms: Vec<_> = killmails().into_iter().step_by(13).take(140).collect();
    let fake = FakeZkb::start_with(
        FakeZkbOptions {
            hole_every: 11,
            duplicate_every: 19,
            republish_every: 7,
            fault_every: 29,
            ..FakeZkbOptions::default()
        },
        kms,
    )
    .await
    .unwrap();
    let dir = bs_testkit::temp_dir();
    let cfg = config(dir.path(), fake.url(), "http://127.0.0.1:9");
    let ctx = bs_ingestion::open(&cfg, Arc::new(bs_runtime::SystemClock))
        .await
        .unwrap();
    ctx.store
        .apply(
            bs_ingestion::store::Batch {
                cursor: Some(("r2z2".into(), fake.first_sequence())),
                ..Default::default()
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let mut cursors = Vec::new();
    for _ in 0..6 {
        let child = spawn("live", dir.path(), fake.url());
        tokio::time::sleep(Duration::from_millis(rng.random_range(400..2500))).await;
        sigkill(child);
        let c = ctx.store.cursor("r2z2").await.unwrap().unwrap();
        cursors.push(c);
    }
    assert!(
        cursors.windows(2).all(|w| w[0] <= w[1]),
        "the cursor never moves back: {cursors:?}"
    );
    // A last run to the end of the feed.
    let child = spawn("live", dir.path(), fake.url());
    let end = fake.end();
    let store = ctx.store.clone();
    eventually(180, "the restarted ingester to reach the end", || {
        let store = store.clone();
        async move {
            let cursor = store.cursor("r2z2").await.ok().flatten();
            let pending = store.stats().await.ok().map(|s| s.outbox_pending);
            (cursor == Some(end) && pending == Some(0)).then_some(())
        }
    })
    .await;
    sigkill(child);
    eprintln!("cursors after each kill: {cursors:?}");

    let expected = fake.expected();
    let stats = ctx.store.stats().await.unwrap();
    assert_eq!(
        stats.killmails_total as usize,
        expected.len(),
        "nothing lost, nothing stored twice"
    );
    for (id, e) in &expected {
        let got = ctx
            .store
            .killmail(*id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("killmail {id} lost"));
        assert_eq!(
            got.isk_value,
            Some(e.total_value),
            "killmail {id} has its latest content"
        );
    }
    let gaps: BTreeSet<i64> = ctx
        .store
        .gaps(1000)
        .await
        .unwrap()
        .iter()
        .map(|g| g.first_sequence)
        .collect();
    assert_eq!(gaps, fake.holes().into_iter().collect());
    let bus: Arc<dyn bs_bus::EventBus> = Arc::new(
        bs_bus::EmbeddedBus::open(bs_bus::EmbeddedConfig::new(dir.path().join("bus")))
            .await
            .unwrap(),
    );
    let events = ingested_events(&bus, "kill9-check").await;
    let mut new_events: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for (env_id, km, is_update, _) in &events {
        if !is_update {
            new_events.entry(*km).or_default().insert(env_id.clone());
        }
    }
    assert_eq!(new_events.len(), expected.len(), "every killmail announced");
    let twice: Vec<_> = new_events.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "announced twice as new: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_survives_sigkill() {
    let mut rng = rng();
    let dir = bs_testkit::temp_dir();
    let cfg = config(dir.path(), "http://127.0.0.1:9", "http://127.0.0.1:9");
    let ctx = bs_ingestion::open(&cfg, Arc::new(bs_runtime::SystemClock))
        .await
        .unwrap();
    let mut counts = Vec::new();
    for _ in 0..5 {
        let before = ctx.store.stats().await.unwrap().killmails_total;
        let child = spawn("import", dir.path(), "");
        // Kill at a random time, or soon after a chunk committed (the next one is then in
        // flight), whichever comes first, so kills land inside the import however fast it is.
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(rng.random_range(500..6000));
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if ctx.store.stats().await.unwrap().killmails_total > before {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
                break;
            }
        }
        sigkill(child);
        counts.push(ctx.store.stats().await.unwrap().killmails_total);
    }
    eprintln!("killmails after each kill: {counts:?}");
    let summary = bs_ingestion::import_paths(&cfg, &repo_killmail_files(), false)
        .await
        .unwrap();
    let distinct: BTreeSet<i64> = killmails().iter().map(|k| k.killmail_id).collect();
    let stats = ctx.store.stats().await.unwrap();
    assert_eq!(
        stats.killmails_total as usize,
        distinct.len(),
        "nothing lost: {summary}"
    );
    assert_eq!(
        summary.new as i64 + counts.last().copied().unwrap_or(0),
        stats.killmails_total
    );
    // No relay ran, so the outbox is the whole published stream: one event per killmail.
    let dupes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_key, COUNT(*) FROM outbox GROUP BY event_key HAVING COUNT(*) > 1",
    )
    .fetch_all(ctx.store.database().pool())
    .await
    .unwrap();
    assert!(dupes.is_empty(), "announced twice: {dupes:?}");
    assert_eq!(stats.outbox_pending, stats.killmails_total);
}
