//! Deleted killmails and battles leave the history (the deletion consumer), and history
//! retention deletes only rows past the cutoff, in batches.

use std::sync::atomic::{AtomicU64, Ordering};

use bs_bus::Delivery;
use bs_events::{BattleDeleted, DeletionReason, Envelope, KillmailDeleted};
use bs_notification::lifecycle;
use bs_runtime::Clock;
use bs_store::{Database, sqlx};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::helpers::sqlite;

struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// One subscription with history rows (kind, subject, created) and a pending delivery each.
async fn seed(db: &Database, rows: &[(&str, i64, DateTime<Utc>)]) {
    sqlx::query(
        "INSERT INTO subscriptions (account_id, name, filter, websocket, enabled, created_ms, updated_ms) VALUES ('a', 's', '{}', 1, 1, 0, 0)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query("INSERT INTO webhooks (subscription_id, url, kind, enabled) VALUES (1, 'https://example.com/h', 'json', 1)")
        .execute(db.pool())
        .await
        .unwrap();
    for (kind, subject, at) in rows {
        sqlx::query(
            "INSERT INTO notifications (account_id, subscription_id, kind, subject_id, summary, created_ms) VALUES ('a', 1, $1, $2, '{}', $3)",
        )
        .bind(*kind)
        .bind(*subject)
        .bind(at.timestamp_millis())
        .execute(db.pool())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO deliveries (webhook_id, kind, subject_id, body, state, attempts, rate_limited, next_ms, created_ms) \
             VALUES (1, $1, $2, '{}', 'pending', 0, 0, 0, $3)",
        )
        .bind(*kind)
        .bind(*subject)
        .bind(at.timestamp_millis())
        .execute(db.pool())
        .await
        .unwrap();
    }
}

async fn subjects(db: &Database, table: &str) -> Vec<(String, i64)> {
    sqlx::query_as(bs_store::dynamic_sql(format!(
        "SELECT kind, subject_id FROM {table} ORDER BY kind, subject_id"
    )))
    .fetch_all(db.pool())
    .await
    .unwrap()
}

fn delivery<E: bs_events::Event>(e: &E) -> Delivery {
    let env = Envelope::wrap(e, t("2026-12-01T00:00:00Z")).unwrap();
    Delivery {
        topic: env.event_type.clone(),
        partition: 0,
        offset: 0,
        key: env.key.clone(),
        payload: env.to_bytes(),
    }
}

#[tokio::test]
async fn deleted_killmails_and_battles_leave_the_history() {
    let dir = bs_testkit::temp_dir();
    let db = sqlite(dir.path()).await;
    let at = t("2026-11-30T12:00:00Z");
    seed(
        &db,
        &[
            ("killmail", 10, at),
            ("killmail", 11, at),
            ("battle", 10, at),
            ("battle", 12, at),
        ],
    )
    .await;
    let batch = vec![
        delivery(&KillmailDeleted {
            killmail_id: 10,
            killmail_time: at,
            scope: "raw".into(),
            reason: DeletionReason::Retention,
        }),
        delivery(&BattleDeleted {
            battle_id: 12,
            end_time: at,
            reason: DeletionReason::Recluster,
        }),
        Delivery {
            topic: "battle.deleted".into(),
            partition: 0,
            offset: 0,
            key: "not-a-number".into(),
            payload: b"{}".to_vec().into(),
        },
    ];
    let rejected = AtomicU64::new(0);
    let removed = lifecycle::forget(&db, &batch, &rejected).await.unwrap();
    assert_eq!(removed, 2);
    assert_eq!(
        rejected.load(Ordering::Relaxed),
        1,
        "a bad record is counted, not fatal"
    );
    let want = vec![("battle".to_owned(), 10), ("killmail".to_owned(), 11)];
    assert_eq!(subjects(&db, "notifications").await, want);
    assert_eq!(subjects(&db, "deliveries").await, want);
    // Redelivered: nothing more to do.
    assert_eq!(
        lifecycle::forget(&db, &batch[..2], &rejected)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn history_retention_deletes_only_rows_past_the_cutoff_in_batches() {
    let dir = bs_testkit::temp_dir();
    let db = sqlite(dir.path()).await;
    let old = t("2025-11-01T00:00:00Z");
    let new = t("2026-11-01T00:00:00Z");
    let rows: Vec<(&str, i64, DateTime<Utc>)> = (1..=7)
        .map(|i| ("killmail", i, if i <= 5 { old } else { new }))
        .collect();
    seed(&db, &rows).await;
    let clock = FixedClock(t("2026-12-01T00:00:00Z"));
    let mut cfg = bs_config::LifecycleConfig {
        retention_batch: 2,
        ..Default::default()
    };
    let run = lifecycle::run_retention(&db, &clock, &cfg, &CancellationToken::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (run.deleted, run.batches, run.status.as_str()),
        (5, 3, "completed")
    );
    assert_eq!(
        subjects(&db, "notifications").await,
        vec![("killmail".to_owned(), 6), ("killmail".to_owned(), 7)]
    );
    // Webhook deliveries are not history: no rule names them.
    assert_eq!(subjects(&db, "deliveries").await.len(), 7);
    cfg.notification_history_months = 0;
    assert!(
        lifecycle::run_retention(&db, &clock, &cfg, &CancellationToken::new())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(lifecycle::runs(&db, 10).await.unwrap().len(), 1);
}
