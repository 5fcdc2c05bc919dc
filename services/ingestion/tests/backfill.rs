//! Backfill jobs through the API: EVE Ref archives, zKillboard history with
//! ESI bodies, idempotent re-runs, cancellation and the CLI entry point.

use std::collections::BTreeSet;

use bs_ingestion::store::IngestionStore;
use bs_zkb::fake::{FakeZkb, FakeZkbOptions};
use serde_json::json;

use crate::helpers::{call, config, eventually, start};

async fn wait_job(router: &axum::Router, id: &str) -> serde_json::Value {
    let uri = format!("/backfill/jobs/{id}");
    eventually(120, "the job to finish", || {
        let router = router.clone();
        let uri = uri.clone();
        async move {
            let (_, j) = call(&router, "GET", &uri, None).await;
            matches!(
                j["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
            .then_some(j)
        }
    })
    .await
}

#[tokio::test]
async fn everef_and_history_jobs_are_idempotent() {
    let fake = FakeZkb::start(FakeZkbOptions::default()).await.unwrap();
    let esi = bs_esi::fake::FakeEsi::start().await.unwrap();
    let dir = bs_testkit::temp_dir();
    let mut cfg = config(dir.path(), fake.url(), esi.url());
    cfg.ingestion.live = false;
    let running = start(cfg.clone(), &dir.path().join("bus")).await;
    let r = running.handle.router.clone();
    let day = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let on = |d: chrono::NaiveDate| fake.killmails().iter().filter(|k| k.day() == d).count() as i64;

    let (status, job) = call(
        &r,
        "POST",
        "/backfill/jobs",
        Some(json!({"from": "2021-11-27", "to": "2021-11-28", "source": "everef"})),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let done = wait_job(&r, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let want = on(day("2021-11-27")) + on(day("2021-11-28"));
    assert_eq!(done["killmails_new"].as_i64(), Some(want));
    assert_eq!(done["percent"].as_f64(), Some(100.0));
    let (_, stats) = call(&r, "GET", "/stats", None).await;
    assert_eq!(stats["killmails_total"].as_i64(), Some(want));

    // The same range again adds nothing.
    let (_, again) = call(
        &r,
        "POST",
        "/backfill/jobs",
        Some(json!({"from": "2021-11-27", "to": "2021-11-28", "source": "everef"})),
    )
    .await;
    let again = wait_job(&r, again["id"].as_str().unwrap()).await;
    assert_eq!(
        (
            again["killmails_new"].as_i64(),
            again["killmails_seen"].as_i64()
        ),
        (Some(0), Some(want))
    );

    // zKillboard history for 2021-11-30: ids from history, bodies from ESI.
    let (_, h) = call(
        &r,
        "POST",
        "/backfill/jobs",
        Some(json!({"from": "2021-11-30", "to": "2021-11-30", "source": "zkb_history"})),
    )
    .await;
    let h = wait_job(&r, h["id"].as_str().unwrap()).await;
    assert_eq!(h["status"], "completed", "{h}");
    assert_eq!(h["killmails_new"].as_i64(), Some(on(day("2021-11-30"))));
    let (_, stats) = call(&r, "GET", "/stats", None).await;
    assert_eq!(
        stats["by_source"]["zkb_history"].as_i64(),
        Some(on(day("2021-11-30")))
    );
    // History again: totals match local counts, so the day is not even fetched.
    let before = esi.stats().requests("killmail");
    let (_, h2) = call(
        &r,
        "POST",
        "/backfill/jobs",
        Some(json!({"from": "2021-11-30", "to": "2021-11-30", "source": "zkb_history"})),
    )
    .await;
    let h2 = wait_job(&r, h2["id"].as_str().unwrap()).await;
    assert_eq!(h2["killmails_new"].as_i64(), Some(0));
    assert_eq!(
        esi.stats().requests("killmail"),
        before,
        "no ESI call for a complete day"
    );

    // Bad requests.
    let (status, _) = call(
        &r,
        "POST",
        "/backfill/jobs",
        Some(json!({"from": "2021-11-30", "to": "2021-11-01"})),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = call(
        &r,
        "POST",
        "/backfill/jobs",
        Some(json!({"from": "2021-11-30", "to": "2021-11-30", "source": "ftp"})),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = call(&r, "GET", "/backfill/jobs/nope", None).await;
    assert_eq!(status, 404);
    running.stop().await;
}

#[tokio::test]
async fn jobs_can_be_cancelled_and_resume_per_day() {
    let fake = FakeZkb::start(FakeZkbOptions::default()).await.unwrap();
    let dir = bs_testkit::temp_dir();
    let mut cfg = config(dir.path(), fake.url(), "http://127.0.0.1:9");
    cfg.ingestion.live = false;
    // A pending job cancelled before any runner exists never runs.
    let ctx = bs_ingestion::open(&cfg, std::sync::Arc::new(bs_runtime::SystemClock))
        .await
        .unwrap();
    let day = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let job = bs_ingestion::sources::backfill::create_job(
        &ctx,
        "everef",
        day("2021-11-27"),
        day("2021-12-02"),
        "test",
    )
    .await
    .unwrap();
    let running = start(cfg.clone(), &dir.path().join("bus")).await;
    let r = running.handle.router.clone();
    let (status, cancelled) = call(&r, "DELETE", &format!("/backfill/jobs/{}", job.id), None).await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["status"], "cancelled");
    let (_, again) = call(&r, "DELETE", &format!("/backfill/jobs/{}", job.id), None).await;
    assert_eq!(again["status"], "cancelled", "cancel is idempotent");
    running.stop().await;

    // The CLI path: days already done by an earlier job are not refetched by the same job on resume.
    let done = bs_ingestion::backfill(&cfg, day("2021-11-29"), day("2021-11-30"), "everef", false)
        .await
        .unwrap();
    assert_eq!(done.status, "completed");
    assert_eq!(done.days_done, 2);
    let everef_requests = fake.stats().by_route.get("everef").copied().unwrap_or(0);
    assert!(everef_requests >= 2);
    let ctx = bs_ingestion::open(&cfg, std::sync::Arc::new(bs_runtime::SystemClock))
        .await
        .unwrap();
    ctx.store
        .transition_job(
            &done.id,
            &["completed"],
            "running",
            chrono::Utc::now(),
            None,
        )
        .await
        .unwrap();
    let resumed = bs_ingestion::sources::backfill::run_job(
        &ctx,
        &bs_ingestion::sources::backfill::Upstreams::from_config(&cfg).unwrap(),
        &Default::default(),
        &done.id,
        &tokio_util::sync::CancellationToken::new(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(resumed.status, "completed");
    assert_eq!(
        fake.stats().by_route.get("everef").copied().unwrap_or(0),
        everef_requests,
        "finished days are skipped"
    );
    let ids: BTreeSet<i64> = ctx
        .store
        .recent(500)
        .await
        .unwrap()
        .iter()
        .map(|k| k.killmail_id)
        .collect();
    assert_eq!(
        ids.len(),
        fake.killmails()
            .iter()
            .filter(|k| k.day() == day("2021-11-29") || k.day() == day("2021-11-30"))
            .count()
            .min(500)
    );
}
