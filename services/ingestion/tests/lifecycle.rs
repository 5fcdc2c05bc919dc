//! Daily verification, gap detection and retention on two real days of the shared week
//! (2021-11-29 and 2021-11-30, ~22k killmails): `FakeZkb` serves every killmail in its
//! history (`totals.json`, `YYYYMMDD.json`), the "live feed" (rows stored directly) withheld
//! some, and `FakeEsi` serves the bodies by hash.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use bs_ingestion::sources::backfill::Upstreams;
use bs_ingestion::store::{Batch, IngestionStore};
use bs_ingestion::{retention, verification};
use bs_runtime::Clock;
use bs_zkb::fake::{FakeKillmail, FakeZkb, FakeZkbOptions, load_killmails};
use chrono::{DateTime, NaiveDate, Utc};
use tokio_util::sync::CancellationToken;

use crate::helpers::{call, config, rows};

struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

fn week_file(day: &str) -> PathBuf {
    let shared = std::env::var_os("BATTLESCOPE_SHARED_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    shared.join(format!("killmails/everef-killmails-{day}.jsonl.gz"))
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// The two days' killmails, and the ids withheld from the live feed (every 250th).
fn two_days() -> (Vec<FakeKillmail>, BTreeSet<i64>) {
    let kms = load_killmails(&[week_file("2021-11-29"), week_file("2021-11-30")]).unwrap();
    let kms: Vec<FakeKillmail> = kms
        .into_iter()
        .filter(|k| k.day() == day("2021-11-29") || k.day() == day("2021-11-30"))
        .collect();
    let withheld = kms
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 250 == 17)
        .map(|(_, k)| k.killmail_id)
        .collect();
    (kms, withheld)
}

async fn fake_esi(files: Vec<PathBuf>) -> bs_esi::fake::FakeEsi {
    let paths = bs_esi::fake::DataPaths {
        killmail_files: files,
        ..bs_esi::fake::DataPaths::default()
    };
    let data = Arc::new(bs_esi::fake::FakeData::load(&paths).unwrap());
    bs_esi::fake::FakeEsi::start_with(bs_esi::fake::FakeSettings::default(), data)
        .await
        .unwrap()
}

/// Stores `kms` as the live feed would have (source r2z2 rows through the store).
async fn store_live(ctx: &bs_ingestion::sources::IngestCtx, kms: &[FakeKillmail]) {
    for chunk in kms.chunks(2000) {
        let batch = Batch {
            killmails: rows(chunk),
            ..Batch::default()
        };
        ctx.store.apply(batch, Utc::now()).await.unwrap();
    }
}

async fn stored_ids(ctx: &bs_ingestion::sources::IngestCtx) -> BTreeSet<i64> {
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT killmail_id FROM killmail_events")
        .fetch_all(ctx.store.database().pool())
        .await
        .unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

fn pilots(k: &FakeKillmail) -> usize {
    let km: bs_domain::Killmail = serde_json::from_value(k.esi.clone()).unwrap();
    km.pilot_count()
}

#[tokio::test]
async fn verification_finds_exactly_the_withheld_killmails_and_repairs_them() {
    let (kms, withheld) = two_days();
    assert!(withheld.len() > 50, "{} withheld", withheld.len());
    let fake = FakeZkb::start_with(FakeZkbOptions::default(), kms.clone())
        .await
        .unwrap();
    let esi = fake_esi(vec![week_file("2021-11-29"), week_file("2021-11-30")]).await;
    let dir = bs_testkit::temp_dir();
    let mut cfg = config(dir.path(), fake.url(), esi.url());
    cfg.ingestion.live = false;
    let clock = Arc::new(FixedClock("2021-12-02T04:00:00Z".parse().unwrap()));
    let ctx = bs_ingestion::open(&cfg, clock).await.unwrap();
    let live: Vec<FakeKillmail> = kms
        .iter()
        .filter(|k| !withheld.contains(&k.killmail_id))
        .cloned()
        .collect();
    store_live(&ctx, &live).await;
    let up = Upstreams::from_config(&cfg).unwrap();
    let never = CancellationToken::new();
    let on = |d: NaiveDate| kms.iter().filter(|k| k.day() == d).count() as i64;
    let withheld_on = |d: NaiveDate| {
        kms.iter()
            .filter(|k| k.day() == d && withheld.contains(&k.killmail_id))
            .collect::<Vec<_>>()
    };

    // Day one, default ruleset: every withheld killmail is found and repaired.
    let d1 = day("2021-11-29");
    let r = verification::verify_day(&ctx, &up, d1, "daily", &never)
        .await
        .unwrap();
    let w1 = withheld_on(d1).len() as i64;
    assert_eq!(
        (
            r.zkb_total,
            r.listed,
            r.filtered,
            r.expected,
            r.stored,
            r.repaired,
            r.still_missing
        ),
        (Some(on(d1)), on(d1), 0, on(d1), on(d1) - w1, w1, 0),
        "{r:?}"
    );
    assert_eq!(r.status, "complete");
    assert_eq!(
        esi.stats().requests("killmail") as i64,
        w1,
        "only the missing bodies are fetched"
    );

    // Day two under a ruleset (at least 3 pilots): withheld kills it filters are not missing.
    let mut ruleset = ctx.pipeline.ruleset().as_ref().clone();
    ruleset.min_pilots = 3;
    ctx.pipeline.set_ruleset(ruleset);
    let d2 = day("2021-11-30");
    let w2 = withheld_on(d2);
    let small = w2.iter().filter(|k| pilots(k) < 3).count() as i64;
    assert!(small > 0, "the sample has small kills");
    let r2 = verification::verify_day(&ctx, &up, d2, "daily", &never)
        .await
        .unwrap();
    assert_eq!(
        (
            r2.filtered,
            r2.expected,
            r2.repaired,
            r2.still_missing,
            r2.status.as_str()
        ),
        (
            small,
            on(d2) - small,
            w2.len() as i64 - small,
            0,
            "complete"
        ),
        "{r2:?}"
    );

    // Exactly the withheld killmails (that pass the ruleset) were added.
    let stored = stored_ids(&ctx).await;
    let live_ids: BTreeSet<i64> = live.iter().map(|k| k.killmail_id).collect();
    let added: BTreeSet<i64> = stored.difference(&live_ids).copied().collect();
    let want: BTreeSet<i64> = kms
        .iter()
        .filter(|k| withheld.contains(&k.killmail_id))
        .filter(|k| k.day() == d1 || pilots(k) >= 3)
        .map(|k| k.killmail_id)
        .collect();
    assert_eq!(added, want);
    let stats = ctx.store.stats().await.unwrap();
    assert_eq!(
        stats.by_source.get("zkb_history").copied(),
        Some(want.len() as i64)
    );

    // Again: nothing to repair, no ESI request; filtered ids are judged from the rejects table.
    let before = esi.stats().requests("killmail");
    let again = verification::verify_day(&ctx, &up, d2, "daily", &never)
        .await
        .unwrap();
    assert_eq!(
        (again.repaired, again.still_missing, again.filtered),
        (0, 0, small)
    );
    assert_eq!(esi.stats().requests("killmail"), before);
    // Back to accept-everything: the filtered kills are re-admitted from their kept input.
    ctx.pipeline.set_ruleset(Default::default());
    let readmit = verification::verify_day(&ctx, &up, d2, "manual", &never)
        .await
        .unwrap();
    assert_eq!(
        (readmit.filtered, readmit.repaired),
        (0, small),
        "{readmit:?}"
    );
    assert_eq!(esi.stats().requests("killmail"), before);

    // The history and the status document.
    let hist = verification::history(&ctx, 10).await.unwrap();
    assert_eq!(hist.iter().map(|d| d.day).collect::<Vec<_>>(), vec![d2, d1]);
    assert_eq!(verification::last_verified(&ctx).await.unwrap(), Some(d2));
}

#[tokio::test]
async fn startup_gap_detection_queues_days_without_data_since_the_last_verified_day() {
    let (kms, _) = two_days();
    let fake = FakeZkb::start_with(FakeZkbOptions::default(), kms.clone())
        .await
        .unwrap();
    let dir = bs_testkit::temp_dir();
    let mut cfg = config(dir.path(), fake.url(), "http://127.0.0.1:9");
    cfg.ingestion.live = false;
    let clock = Arc::new(FixedClock("2021-12-03T04:00:00Z".parse().unwrap()));
    let ctx = bs_ingestion::open(&cfg, clock).await.unwrap();
    let up = Upstreams::from_config(&cfg).unwrap();
    // Only 2021-11-29 arrived; it was verified (nothing missing: everything of it is stored).
    let first: Vec<FakeKillmail> = kms
        .iter()
        .filter(|k| k.day() == day("2021-11-29"))
        .cloned()
        .collect();
    store_live(&ctx, &first).await;
    let never = CancellationToken::new();
    let r = verification::verify_day(&ctx, &up, day("2021-11-29"), "daily", &never)
        .await
        .unwrap();
    assert_eq!((r.status.as_str(), r.repaired), ("complete", 0));
    // 11-30 has no data but zKillboard has kills: a gap. 12-01 and 12-02 are empty on both.
    let gaps = verification::detect_gaps(&ctx, Some(&up), 30)
        .await
        .unwrap();
    assert_eq!(gaps, vec![day("2021-11-30")]);
    let queued = verification::queued(&ctx).await.unwrap();
    assert_eq!(
        queued
            .iter()
            .map(|q| (q.day, q.reason.as_str()))
            .collect::<Vec<_>>(),
        vec![(day("2021-11-30"), "gap")]
    );
    // Idempotent.
    verification::detect_gaps(&ctx, Some(&up), 30)
        .await
        .unwrap();
    assert_eq!(verification::queued(&ctx).await.unwrap().len(), 1);
}

#[tokio::test]
async fn retention_deletes_only_what_is_due_in_batches_and_announces_it() {
    let (kms, _) = two_days();
    let dir = bs_testkit::temp_dir();
    let mut cfg = config(dir.path(), "http://127.0.0.1:9", "http://127.0.0.1:9");
    cfg.ingestion.live = false;
    // The rule under test at its default (the shared test config keeps everything).
    cfg.lifecycle.raw_killmails_months = bs_config::LifecycleConfig::default().raw_killmails_months;
    // 60 months after 2021-11-30T00:00: the cutoff falls between the two days.
    let clock = Arc::new(FixedClock("2026-11-30T00:00:00Z".parse().unwrap()));
    let ctx = bs_ingestion::open(&cfg, clock).await.unwrap();
    store_live(&ctx, &kms).await;
    let old: BTreeSet<i64> = kms
        .iter()
        .filter(|k| k.day() == day("2021-11-29"))
        .map(|k| k.killmail_id)
        .collect();
    let pending_before = ctx.store.database().outbox_pending().await.unwrap();
    let mut lc = cfg.lifecycle.clone();
    lc.retention_batch = 4000;
    let never = CancellationToken::new();
    let run = retention::run(&ctx, &lc, &never).await.unwrap().unwrap();
    assert_eq!(run.deleted, old.len() as i64);
    assert_eq!(run.batches, (old.len() as i64 + 3999) / 4000);
    assert_eq!(run.status, "completed");
    let left = stored_ids(&ctx).await;
    assert!(left.is_disjoint(&old));
    assert_eq!(left.len(), kms.len() - old.len());
    // One killmail.deleted per deleted row, in the outbox with them.
    let pending = ctx.store.database().outbox_pending().await.unwrap();
    assert_eq!(pending - pending_before, old.len() as i64);
    // A rule of 0 months deletes nothing.
    lc.raw_killmails_months = 0;
    assert!(retention::run(&ctx, &lc, &never).await.unwrap().is_none());
    let runs = retention::runs(ctx.store.database(), 5).await.unwrap();
    assert_eq!(runs.len(), 1);
    // The status document through the API.
    let state = bs_ingestion::lifecycle::LifecycleState {
        ctx: Arc::clone(&ctx),
        upstreams: Upstreams::from_config(&cfg).unwrap(),
        config: cfg.lifecycle.clone(),
        shutdown: never.clone(),
    };
    let router = bs_ingestion::lifecycle::router(state);
    let (status, body) = call(&router, "GET", "/lifecycle", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["retention"]["runs"][0]["deleted"], old.len() as i64);
    assert_eq!(body["retention"]["rules"]["raw_killmails"], 60);
    let mut by_day: BTreeMap<String, i64> = BTreeMap::new();
    for k in &kms {
        *by_day.entry(k.day().to_string()).or_default() += 1;
    }
    assert_eq!(by_day.len(), 2);
}
