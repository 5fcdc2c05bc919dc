//! Enriched-killmail retention: only rows past the cutoff go, in batches, each with its
//! `killmail.deleted` (scope `enriched`) in the outbox.

use bs_enrichment::retention;
use bs_runtime::Clock;
use bs_store::{Database, StoreTarget, sqlx};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn insert(db: &Database, id: i64, at: DateTime<Utc>) {
    sqlx::query(
        "INSERT INTO enriched_killmails (killmail_id, killmail_time, hash, source, ship_type_id, system_id, \
         attacker_count, pilot_count, isk_destroyed, isk_dropped, isk_total, value_source, names_pending, version, sde_version, \
         revision, input_hash, payload, source_event, enriched_at, updated_at) \
         VALUES ($1, $2, 'h', 'file', 587, 30000142, 1, 2, 0.0, 0.0, 0.0, 'none', 0, 1, 'v', 1, 'x', '{}', '{}', 0, 0)",
    )
    .bind(id)
    .bind(at.timestamp_millis())
    .execute(db.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn enriched_killmails_past_the_cutoff_are_deleted_in_batches_and_announced() {
    let dir = bs_testkit::temp_dir();
    let db = Database::open(&StoreTarget::Sqlite(dir.path().join("e.db")), 2)
        .await
        .unwrap();
    db.migrate(bs_enrichment::MIGRATIONS).await.unwrap();
    for id in 1..=5 {
        insert(&db, id, t("2021-11-28T12:00:00Z")).await;
    }
    for id in 6..=8 {
        insert(&db, id, t("2021-11-30T12:00:00Z")).await;
    }
    // 60 months before 2026-11-29: 2021-11-29.
    let clock = FixedClock(t("2026-11-29T00:00:00Z"));
    let mut cfg = bs_config::LifecycleConfig {
        retention_batch: 2,
        ..Default::default()
    };
    let run = retention::run(&db, &clock, &cfg, &CancellationToken::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (run.deleted, run.batches, run.status.as_str()),
        (5, 3, "completed")
    );
    let left: Vec<(i64,)> =
        sqlx::query_as("SELECT killmail_id FROM enriched_killmails ORDER BY killmail_id")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(left, vec![(6,), (7,), (8,)]);
    let events = bs_store::outbox::peek(&db, 100).await.unwrap();
    let deleted: Vec<&str> = events
        .iter()
        .filter(|(topic, _, _)| topic == "killmail.deleted")
        .map(|(_, key, _)| key.as_str())
        .collect();
    assert_eq!(deleted, vec!["1", "2", "3", "4", "5"]);
    assert!(
        events[0].2.contains("\"scope\":\"enriched\""),
        "{}",
        events[0].2
    );
    cfg.enriched_killmails_months = 0;
    assert!(
        retention::run(&db, &clock, &cfg, &CancellationToken::new())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(retention::runs(&db, 5).await.unwrap().len(), 1);
}
