//! Audit-log retention on SQLite and PostgreSQL: anchored prunes delete only what is due,
//! in batches; the chain still verifies afterwards; the schema still refuses deleting an
//! unanchored row and editing any row; edits, removals and a forged anchor are detected.

use bs_authentication::lifecycle::{self, AUDIT_LOG};
use bs_authentication::model::{AuditQuery, NewAudit};
use bs_authentication::{AuthStore, SqlAuthStore};
use bs_config::LifecycleConfig;
use bs_store::Backend;
use bs_store::sqlx;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct FixedClock(DateTime<Utc>);

impl bs_runtime::Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

crate::store_backends::on_both_backends!(
    "auth_audit";
    audit_prune_removes_only_due_entries_in_batches_and_verifies,
    audit_prune_keeps_deletes_of_unanchored_rows_refused,
    audit_prune_still_detects_edits_removals_and_forged_anchors,
);

fn t0() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap()
}

/// `old` entries a day apart starting at t0, then `recent` entries 200 days later.
async fn fill(s: &SqlAuthStore, old: i64, recent: i64) {
    for i in 0..old + recent {
        let at = if i < old {
            t0() + TimeDelta::days(i)
        } else {
            t0() + TimeDelta::days(200 + i)
        };
        s.append_audit(
            &NewAudit {
                actor_account_id: Some("admin".into()),
                action: "account.login".into(),
                target_type: "account".into(),
                target_id: format!("acc-{i}"),
                ip: "127.0.0.1".into(),
                metadata: json!({"i": i}),
            },
            at,
        )
        .await
        .unwrap();
    }
}

fn config(batch: u32) -> LifecycleConfig {
    LifecycleConfig {
        retention_batch: batch,
        ..LifecycleConfig::default()
    }
}

/// "Now" such that the 90-day cutoff falls between the old and the recent entries.
fn now() -> DateTime<Utc> {
    t0() + TimeDelta::days(200)
}

async fn all(s: &SqlAuthStore) -> Vec<bs_authentication::model::AuditEntry> {
    s.audit(&AuditQuery {
        limit: 1000,
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn audit_prune_removes_only_due_entries_in_batches_and_verifies(s: &SqlAuthStore) {
    fill(s, 25, 5).await;
    let before = all(s).await;
    let clock = FixedClock(now());
    let run = lifecycle::run_retention(
        s,
        s.database(),
        &clock,
        &config(10),
        &CancellationToken::new(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(run.kind, AUDIT_LOG);
    assert_eq!(run.status, "completed");
    assert_eq!(run.deleted, 25);
    assert_eq!(run.batches, 3, "10 + 10 + 5");
    let after = all(s).await;
    // The 5 recent entries and one `audit.pruned` entry per batch remain.
    assert_eq!(after.len(), 8);
    let cutoff = now() - TimeDelta::days(90);
    assert!(after.iter().all(|e| e.at >= cutoff));
    let pruned: Vec<_> = after
        .iter()
        .filter(|e| e.action == "audit.pruned")
        .collect();
    assert_eq!(
        pruned
            .iter()
            .map(|e| e.metadata["pruned"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![5, 10, 10],
        "newest first"
    );
    // The recent entries are untouched (same seq and hash as before the run).
    assert_eq!(
        after
            .iter()
            .filter(|e| e.action != "audit.pruned")
            .map(|e| (e.seq, e.hash.clone()))
            .collect::<Vec<_>>(),
        before[..5]
            .iter()
            .map(|e| (e.seq, e.hash.clone()))
            .collect::<Vec<_>>()
    );
    let anchor = s.audit_anchor().await.unwrap().unwrap();
    let last_old = &before[before.len() - 25];
    assert_eq!(anchor.last_seq, last_old.seq);
    assert_eq!(anchor.last_hash, last_old.hash);
    assert_eq!(anchor.pruned, 5);
    assert_eq!(pruned[0].metadata["last_hash"], json!(anchor.last_hash));
    assert_eq!(s.verify_audit_chain().await.unwrap(), Ok(8));
    // The run is recorded; a second run finds nothing and appends nothing.
    let runs = lifecycle::runs(s.database(), 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].deleted, 25);
    let again = lifecycle::run_retention(
        s,
        s.database(),
        &FixedClock(now() + TimeDelta::seconds(1)),
        &config(10),
        &CancellationToken::new(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(again.deleted, 0);
    assert_eq!(again.batches, 0);
    assert_eq!(all(s).await.len(), 8);
    // New appends continue the chain.
    fill(s, 0, 1).await;
    assert_eq!(s.verify_audit_chain().await.unwrap(), Ok(9));
    // 0 days: kept forever.
    let keep = LifecycleConfig {
        audit_log_days: 0,
        ..config(10)
    };
    let none = lifecycle::run_retention(
        s,
        s.database(),
        &FixedClock(now() + TimeDelta::days(10_000)),
        &keep,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(none.is_none());
}

async fn audit_prune_keeps_deletes_of_unanchored_rows_refused(s: &SqlAuthStore) {
    fill(s, 4, 3).await;
    let pool = s.database().pool();
    // Nothing pruned yet: every delete is refused.
    assert!(
        sqlx::query("DELETE FROM audit_log")
            .execute(pool)
            .await
            .is_err()
    );
    let anchor = s
        .prune_audit_batch(now() - TimeDelta::days(90), 100, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(anchor.pruned, 4);
    let rest = all(s).await;
    assert_eq!(rest.len(), 4, "3 recent + the attesting entry");
    // Rows after the anchor stay undeletable, and nothing can be edited.
    let newest_unanchored = rest.last().unwrap().seq;
    assert!(
        sqlx::query("DELETE FROM audit_log WHERE seq = $1")
            .bind(newest_unanchored)
            .execute(pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("UPDATE audit_log SET action = 'x'")
            .execute(pool)
            .await
            .is_err()
    );
    // Anchors are append-only too.
    assert!(
        sqlx::query("DELETE FROM audit_log_anchor")
            .execute(pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("UPDATE audit_log_anchor SET last_hash = 'x'")
            .execute(pool)
            .await
            .is_err()
    );
    assert_eq!(all(s).await.len(), 4);
    // The newest entry is never pruned, even if it is due (the chain keeps its tail), and
    // pruning everything converges: each batch's own entry is stamped `now`.
    let far = now() + TimeDelta::days(10_000);
    let a = s.prune_audit_batch(far, 100, far).await.unwrap().unwrap();
    assert_eq!(
        a.pruned, 3,
        "the recent entries; the attesting entry is the tail"
    );
    let b = s.prune_audit_batch(far, 100, far).await.unwrap().unwrap();
    assert_eq!(b.pruned, 1, "the first attesting entry");
    // Left: the two entries stamped `far` (not older than the cutoff).
    assert!(s.prune_audit_batch(far, 100, far).await.unwrap().is_none());
    assert_eq!(all(s).await.len(), 2);
    assert_eq!(s.verify_audit_chain().await.unwrap(), Ok(2));
}

async fn audit_prune_still_detects_edits_removals_and_forged_anchors(s: &SqlAuthStore) {
    fill(s, 6, 6).await;
    s.prune_audit_batch(now() - TimeDelta::days(90), 100, now())
        .await
        .unwrap()
        .unwrap();
    // Newest first: [0] the attesting entry, [1..=6] the recent entries.
    let rest = all(s).await;
    assert_eq!(rest.len(), 7);
    assert_eq!(rest[0].action, "audit.pruned");
    assert_eq!(s.verify_audit_chain().await.unwrap(), Ok(7));
    let pool = s.database().pool();
    let (drop_update, drop_delete, restore) = match s.database().backend() {
        Backend::Sqlite => (
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
            None,
        ),
        Backend::Postgres => (
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change",
            "SELECT 1",
            Some("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change"),
        ),
    };
    sqlx::query(drop_update).execute(pool).await.unwrap();
    sqlx::query(drop_delete).execute(pool).await.unwrap();

    // Editing a remaining row is detected at that row.
    let victim = rest[2].seq;
    sqlx::query("UPDATE audit_log SET metadata = '{\"i\":99}' WHERE seq = $1")
        .bind(victim)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(s.verify_audit_chain().await.unwrap(), Err(victim));
    let original = rest[2].metadata.to_string();
    sqlx::query("UPDATE audit_log SET metadata = $1 WHERE seq = $2")
        .bind(&original)
        .bind(victim)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(s.verify_audit_chain().await.unwrap(), Ok(7));

    // A forged anchor that does not match the first remaining row is detected there.
    let real = s.audit_anchor().await.unwrap().unwrap();
    let insert_anchor = "INSERT INTO audit_log_anchor (last_seq, last_hash, last_at, pruned_at, cutoff, pruned) VALUES ($1, $2, 0, 0, 0, 1)";
    sqlx::query(insert_anchor)
        .bind(real.last_seq)
        .bind("f".repeat(64))
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(s.verify_audit_chain().await.unwrap(), Err(rest[6].seq));
    // (Repeating the true anchor is indistinguishable from it.)
    sqlx::query(insert_anchor)
        .bind(real.last_seq)
        .bind(&real.last_hash)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(s.verify_audit_chain().await.unwrap(), Ok(7));

    // Removing the oldest remaining row without an anchor is detected at the next row ...
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(rest[6].seq)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(s.verify_audit_chain().await.unwrap(), Err(rest[5].seq));
    // ... and so it is with an anchor that links but that no `audit.pruned` entry attests.
    sqlx::query(insert_anchor)
        .bind(rest[6].seq)
        .bind(&rest[6].hash)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(s.verify_audit_chain().await.unwrap(), Err(rest[5].seq));

    // Removing a row in the middle is detected at the row after it.
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(rest[2].seq)
        .execute(pool)
        .await
        .unwrap();
    if let Some(restore) = restore {
        sqlx::query(restore).execute(pool).await.unwrap();
    }
    assert_eq!(s.verify_audit_chain().await.unwrap(), Err(rest[1].seq));
}
