//! The store conformance suite: the same bodies on SQLite and PostgreSQL.

use bs_ingestion::domain::Ruleset;
use bs_ingestion::store::{
    Batch, GapRecord, IngestionStore, JobRecord, RejectRecord, SqlIngestionStore,
};
use bs_store::Database;
use chrono::{NaiveDate, Utc};

use crate::helpers::{killmails, rows};

macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = bs_testkit::temp_dir();
                    let db = crate::helpers::sqlite_db(dir.path()).await;
                    super::$name(db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = crate::helpers::postgres_db().await else { return };
                    super::$name(db).await;
                }
            )*
        }
    };
}

store_suite!(
    dedupes_by_constraint_and_publishes_only_new,
    upserts_changed_content_and_refuses_new_hashes,
    cursor_gaps_and_rejects_are_atomic_and_idempotent,
    rulesets_and_jobs,
    queries
);

async fn dedupes_by_constraint_and_publishes_only_new(db: Database) {
    let store = SqlIngestionStore::new(db.clone());
    let kms = killmails();
    let all = rows(&kms[..300]);
    let now = Utc::now();
    // 0..200 first, then 100..300 plus an in-batch duplicate.
    let first = store
        .apply(
            Batch {
                killmails: all[..200].to_vec(),
                ..Batch::default()
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(first.inserted.len(), 200);
    let mut second_rows = all[100..300].to_vec();
    second_rows.push(all[250].clone());
    let second = store
        .apply(
            Batch {
                killmails: second_rows,
                ..Batch::default()
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(second.inserted.len(), 100);
    assert_eq!(second.duplicates, 101);
    assert!(
        second
            .inserted
            .iter()
            .all(|id| kms[200..300].iter().any(|k| k.killmail_id == *id))
    );
    assert_eq!(
        db.outbox_pending().await.unwrap(),
        300,
        "one outbox row per killmail really inserted"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.killmails_total, 300);
    assert_eq!(stats.duplicates, 101);
    assert_eq!(stats.by_source.get("file"), Some(&300));
}

async fn upserts_changed_content_and_refuses_new_hashes(db: Database) {
    let store = SqlIngestionStore::new(db.clone());
    let kms = killmails();
    let base = rows(&kms[..3]);
    let now = Utc::now();
    store
        .apply(
            Batch {
                killmails: base.clone(),
                upsert: true,
                ..Batch::default()
            },
            now,
        )
        .await
        .unwrap();
    // Same content again: duplicates, no events.
    let same = store
        .apply(
            Batch {
                killmails: base.clone(),
                upsert: true,
                ..Batch::default()
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!((same.updated.len(), same.duplicates), (0, 3));
    // Changed zkb on #0: an update; a different hash on #1: a conflict, never overwritten.
    let mut changed = base[0].clone();
    changed.zkb = Some(bs_domain::Zkb {
        hash: changed.hash.clone(),
        total_value: Some(123.0),
        ..Default::default()
    });
    changed.zkb_json = Some(serde_json::to_string(&changed.zkb).unwrap());
    changed.content_hash = "changed".into();
    let mut forged = base[1].clone();
    forged.hash = "0".repeat(40);
    forged.content_hash = "forged".into();
    let o = store
        .apply(
            Batch {
                killmails: vec![changed, forged],
                upsert: true,
                ..Batch::default()
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(o.updated, vec![kms[0].killmail_id]);
    assert_eq!(o.conflicts, 1);
    let stored = store.killmail(kms[0].killmail_id).await.unwrap().unwrap();
    assert_eq!(stored.isk_value, Some(123.0));
    assert!(stored.updated_at.is_some());
    assert_eq!(
        store
            .killmail(kms[1].killmail_id)
            .await
            .unwrap()
            .unwrap()
            .hash,
        kms[1].hash
    );
    assert_eq!(db.outbox_pending().await.unwrap(), 4, "3 new + 1 update");
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.updates, stats.conflicts), (1, 1));
    assert_eq!(stats.rejects_by_reason.get("hash_conflict"), Some(&1));
    // Without upsert (files) changed content is only a duplicate.
    let mut again = base[2].clone();
    again.content_hash = "other".into();
    let o = store
        .apply(
            Batch {
                killmails: vec![again],
                ..Batch::default()
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!((o.updated.len(), o.duplicates), (0, 1));
}

async fn cursor_gaps_and_rejects_are_atomic_and_idempotent(db: Database) {
    let store = SqlIngestionStore::new(db.clone());
    assert_eq!(store.cursor("r2z2").await.unwrap(), None);
    let reject = RejectRecord {
        fingerprint: "malformed_json:abc".into(),
        killmail_id: None,
        reason: "malformed_json".into(),
        detail: "eof".into(),
        source: "r2z2".into(),
        raw: "{".into(),
    };
    let gap = GapRecord {
        first_sequence: 10,
        last_sequence: 10,
        kind: "missing".into(),
        repair_job_id: None,
    };
    let batch = Batch {
        rejects: vec![reject.clone()],
        gaps: vec![gap.clone()],
        cursor: Some(("r2z2".into(), 11)),
        ..Batch::default()
    };
    let o = store.apply(batch.clone(), Utc::now()).await.unwrap();
    assert_eq!(o.rejects_new, 1);
    let o = store.apply(batch, Utc::now()).await.unwrap();
    assert_eq!(o.rejects_new, 0, "a replayed step adds no reject");
    assert_eq!(store.cursor("r2z2").await.unwrap(), Some(11));
    assert_eq!(store.gaps(10).await.unwrap(), vec![gap]);
    store.set_gap_repair(10, "job").await.unwrap();
    assert_eq!(
        store.gaps(10).await.unwrap()[0].repair_job_id.as_deref(),
        Some("job")
    );
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.gaps, stats.gap_sequences), (1, 1));
    assert_eq!(stats.rejects_by_reason.get("malformed_json"), Some(&1));
    // A step with only a cursor moves it.
    store
        .apply(
            Batch {
                cursor: Some(("r2z2".into(), 12)),
                ..Batch::default()
            },
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(store.cursor("r2z2").await.unwrap(), Some(12));
}

async fn rulesets_and_jobs(db: Database) {
    let store = SqlIngestionStore::new(db);
    assert_eq!(store.ruleset().await.unwrap(), Ruleset::default());
    let r = Ruleset {
        min_pilots: 5,
        tracked_system_ids: vec![30_001_046],
        ..Ruleset::default()
    };
    let saved = store.put_ruleset(&r, Utc::now()).await.unwrap();
    let loaded = store.ruleset().await.unwrap();
    assert_eq!(loaded, saved);
    assert_eq!(loaded.min_pilots, 5);

    let day = |d| NaiveDate::from_ymd_opt(2021, 11, d).unwrap();
    let job = JobRecord {
        id: "j1".into(),
        source: "everef".into(),
        from_day: day(27),
        to_day: day(29),
        status: "pending".into(),
        note: "test".into(),
        created_at: Utc::now(),
        started_at: None,
        finished_at: None,
        days_total: 3,
        days_done: 0,
        killmails_seen: 0,
        killmails_new: 0,
        error: None,
    };
    store.create_job(&job).await.unwrap();
    assert!(
        store
            .transition_job("j1", &["pending"], "running", Utc::now(), None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .transition_job("j1", &["pending"], "running", Utc::now(), None)
            .await
            .unwrap()
    );
    store
        .finish_day("j1", day(27), 10, 7, Utc::now())
        .await
        .unwrap();
    store
        .finish_day("j1", day(27), 10, 7, Utc::now())
        .await
        .unwrap();
    let j = store.job("j1").await.unwrap().unwrap();
    assert_eq!(
        (j.days_done, j.killmails_seen, j.killmails_new),
        (1, 10, 7),
        "a day counts once"
    );
    assert!(j.started_at.is_some());
    assert_eq!(
        store
            .done_days("j1")
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![day(27)]
    );
    assert!(
        store
            .transition_job("j1", &["running"], "cancelled", Utc::now(), None)
            .await
            .unwrap()
    );
    let j = store.job("j1").await.unwrap().unwrap();
    assert_eq!(j.status, "cancelled");
    assert!(j.finished_at.is_some());
    assert_eq!(store.jobs(10).await.unwrap().len(), 1);
}

async fn queries(db: Database) {
    let store = SqlIngestionStore::new(db);
    let kms = killmails();
    let some: Vec<_> = kms.iter().take(50).cloned().collect();
    store
        .apply(
            Batch {
                killmails: rows(&some),
                ..Batch::default()
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let recent = store.recent(5).await.unwrap();
    assert_eq!(recent.len(), 5);
    let newest = some.iter().map(|k| k.killmail_time).max().unwrap();
    assert_eq!(recent[0].occurred_at, newest);
    let got = store.killmail(some[0].killmail_id).await.unwrap().unwrap();
    assert_eq!(got.hash, some[0].hash);
    assert_eq!(got.killmail["killmail_id"], some[0].killmail_id);
    assert!(store.killmail(1).await.unwrap().is_none());
    let ids: Vec<i64> = vec![some[0].killmail_id, some[1].killmail_id, 5];
    assert_eq!(store.known_ids(&ids).await.unwrap().len(), 2);
    let days = store
        .day_counts(
            NaiveDate::from_ymd_opt(2021, 11, 1).unwrap(),
            NaiveDate::from_ymd_opt(2021, 12, 31).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(days.values().sum::<i64>(), 50);
    for k in &some {
        assert!(days.contains_key(&k.day()));
    }
}
