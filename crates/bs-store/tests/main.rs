//! The store conformance suite: the same cases on SQLite (always) and on
//! PostgreSQL (when `BATTLESCOPE_TEST_POSTGRES` names a server; mandatory in CI).

use std::sync::Arc;

use async_trait::async_trait;
use bs_bus::{BusResult, Consumer, EventBus, Record};
use bs_store::{Backend, Database, Migration, MigrationSet, StoreError, StoreTarget, outbox};
use parking_lot::Mutex;

const V1: &[Migration] = &[Migration {
    version: 1,
    name: "t",
    sql: "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL)",
}];
const V2: &[Migration] = &[
    Migration {
        version: 1,
        name: "t",
        sql: "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL)",
    },
    Migration {
        version: 2,
        name: "t_score",
        sql: "ALTER TABLE t ADD COLUMN score DOUBLE PRECISION; CREATE INDEX t_score_idx ON t (score);",
    },
];
const EDITED: &[Migration] = &[Migration {
    version: 1,
    name: "t",
    sql: "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT)",
}];

fn set(list: &'static [Migration]) -> MigrationSet {
    MigrationSet {
        component: "test",
        sqlite: list,
        postgres: list,
    }
}

/// A fresh database on each backend available.
async fn databases() -> Vec<(Database, Option<tempfile::TempDir>)> {
    let dir = bs_testkit::temp_dir();
    let sqlite = Database::open(&StoreTarget::Sqlite(dir.path().join("test.db")), 0)
        .await
        .unwrap();
    let mut out = vec![(sqlite, Some(dir))];
    if let Some(url) = bs_testkit::engine(bs_testkit::POSTGRES) {
        let target = StoreTarget::Postgres {
            server_url: url,
            database: bs_testkit::unique_name("bs_test"),
        };
        out.push((
            Database::open(&target, 0)
                .await
                .expect("postgres reachable"),
            None,
        ));
    }
    out
}

#[tokio::test]
async fn migrations_apply_once_and_in_order() {
    for (db, _dir) in databases().await {
        let first = db.migrate(&[set(V1)]).await.unwrap();
        assert_eq!(
            first.applied,
            vec![("test".to_string(), 1)],
            "{:?}",
            db.backend()
        );
        let again = db.migrate(&[set(V1)]).await.unwrap();
        assert!(again.applied.is_empty());
        assert_eq!(again.already_applied, 1);
        let upgrade = db.migrate(&[set(V2)]).await.unwrap();
        assert_eq!(upgrade.applied, vec![("test".to_string(), 2)]);
        // The second migration's multi-statement SQL really ran.
        sqlx::query("INSERT INTO t (id, name, score) VALUES ($1, $2, $3)")
            .bind(1_i64)
            .bind("Jorund")
            .bind(1.5_f64)
            .execute(db.pool())
            .await
            .unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
}

#[tokio::test]
async fn edited_or_unknown_migrations_are_refused() {
    for (db, _dir) in databases().await {
        db.migrate(&[set(V2)]).await.unwrap();
        let err = db.migrate(&[set(EDITED)]).await.unwrap_err();
        // EDITED lacks version 2, which the database has: an older build must not run.
        assert!(
            matches!(err, StoreError::UnknownMigration { version: 2, .. }),
            "{err}"
        );
        let edited_v2: &'static [Migration] = Box::leak(Box::new([
            V2[0],
            Migration {
                version: 2,
                name: "t_score",
                sql: "ALTER TABLE t ADD COLUMN score BIGINT",
            },
        ]));
        let err = db.migrate(&[set(edited_v2)]).await.unwrap_err();
        assert!(
            matches!(err, StoreError::MigrationChanged { version: 2, .. }),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_half_applied() {
    for (db, _dir) in databases().await {
        let broken: &'static [Migration] = &[Migration {
            version: 1,
            name: "broken",
            sql: "CREATE TABLE ok_table (id BIGINT); THIS IS NOT SQL;",
        }];
        assert!(db.migrate(&[set(broken)]).await.is_err());
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM schema_migrations")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(n, 0);
        // Fixed, the same version applies cleanly.
        db.migrate(&[set(V1)]).await.unwrap();
    }
}

#[tokio::test]
async fn postgres_database_is_created_if_missing_and_reopened() {
    let Some(url) = bs_testkit::engine(bs_testkit::POSTGRES) else {
        return;
    };
    let name = bs_testkit::unique_name("bs_create");
    let target = StoreTarget::Postgres {
        server_url: url,
        database: name,
    };
    let db = Database::open(&target, 0).await.unwrap();
    assert_eq!(db.backend(), Backend::Postgres);
    db.migrate(&[set(V1)]).await.unwrap();
    db.close().await;
    let again = Database::open(&target, 0).await.unwrap();
    assert_eq!(again.migrate(&[set(V1)]).await.unwrap().already_applied, 1);
}

/// A bus that records what it was given (the real ones have their own suite).
#[derive(Default)]
struct RecordingBus {
    published: Mutex<Vec<(String, Record)>>,
    fail: Mutex<bool>,
}

#[async_trait]
impl EventBus for RecordingBus {
    fn kind(&self) -> &'static str {
        "recording"
    }
    async fn ensure_topics(&self, _: &[&str]) -> BusResult<()> {
        Ok(())
    }
    async fn publish(&self, topic: &str, records: &[Record]) -> BusResult<()> {
        if *self.fail.lock() {
            return Err(bs_bus::BusError::Backend("down".into()));
        }
        self.published
            .lock()
            .extend(records.iter().map(|r| (topic.to_owned(), r.clone())));
        Ok(())
    }
    async fn subscribe(&self, _: &str, _: &[&str]) -> BusResult<Box<dyn Consumer>> {
        Err(bs_bus::BusError::Closed)
    }
    async fn ping(&self) -> BusResult<()> {
        Ok(())
    }
}

fn envelope(topic: &str, key: i64) -> bs_events::Envelope {
    bs_events::Envelope {
        id: uuid_like(key),
        event_type: topic.into(),
        version: 1,
        time: chrono::DateTime::from_timestamp(1_638_000_000 + key, 0).unwrap(),
        key: key.to_string(),
        payload: serde_json::json!({ "n": key }),
    }
}

fn uuid_like(n: i64) -> uuid::Uuid {
    uuid::Uuid::from_u128(n as u128)
}

#[tokio::test]
async fn outbox_publishes_committed_events_in_order_and_only_those() {
    for (db, _dir) in databases().await {
        db.migrate(&[outbox::MIGRATIONS, set(V1)]).await.unwrap();
        let bus = Arc::new(RecordingBus::default());
        let relay = outbox::OutboxRelay::new(db.clone(), bus.clone());

        // A committed transaction: its row and its events.
        let mut tx = db.pool().begin().await.unwrap();
        sqlx::query("INSERT INTO t (id, name) VALUES (1, 'a')")
            .execute(&mut *tx)
            .await
            .unwrap();
        for (i, topic) in [
            "killmail.ingested",
            "killmail.ingested",
            "battle.created",
            "killmail.ingested",
        ]
        .iter()
        .enumerate()
        {
            outbox::enqueue(&mut tx, &envelope(topic, i as i64))
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        // A rolled-back one publishes nothing.
        let mut tx = db.pool().begin().await.unwrap();
        outbox::enqueue(&mut tx, &envelope("killmail.ingested", 99))
            .await
            .unwrap();
        tx.rollback().await.unwrap();

        // The bus is down: nothing is lost, the rows wait.
        *bus.fail.lock() = true;
        assert!(relay.relay_once().await.is_err());
        assert_eq!(db.outbox_pending().await.unwrap(), 4);

        *bus.fail.lock() = false;
        assert_eq!(relay.relay_once().await.unwrap(), 4);
        assert_eq!(db.outbox_pending().await.unwrap(), 0);
        let published = bus.published.lock().clone();
        let keys: Vec<_> = published
            .iter()
            .map(|(t, r)| format!("{t}:{}", r.key))
            .collect();
        assert_eq!(
            keys,
            [
                "killmail.ingested:0",
                "killmail.ingested:1",
                "battle.created:2",
                "killmail.ingested:3"
            ]
        );
        let env = bs_events::Envelope::from_bytes(&published[2].1.payload).unwrap();
        assert_eq!(env, envelope("battle.created", 2));
        assert_eq!(relay.relay_once().await.unwrap(), 0);
    }
}

/// Large payloads are stored compressed and published byte for byte as enqueued; many
/// rows at once keep their order; `envelope_json` writes what `Envelope` would.
#[tokio::test]
async fn outbox_compresses_large_payloads_and_publishes_them_unchanged() {
    for (db, _dir) in databases().await {
        db.migrate(&[outbox::MIGRATIONS]).await.unwrap();
        let bus = Arc::new(RecordingBus::default());
        let relay = outbox::OutboxRelay::new(db.clone(), bus.clone());
        let time = chrono::DateTime::from_timestamp(1_638_000_000, 0).unwrap();
        let big = serde_json::json!({
            "attackers": (0..200).map(|i| serde_json::json!({"character_id": 90_000_000 + i, "damage_done": i}))
                .collect::<Vec<_>>(),
            "name": "quote \" and unicode ✓",
        });
        let big_json = serde_json::to_string(&big).unwrap();
        let jsons: Vec<String> = (0..250)
            .map(|i| {
                let payload = if i % 2 == 0 {
                    big_json.clone()
                } else {
                    format!("{{\"n\":{i}}}")
                };
                outbox::envelope_json("killmail.enriched", 1, time, &i.to_string(), &payload)
            })
            .collect();
        let rows: Vec<outbox::OutboxRow> = jsons
            .iter()
            .enumerate()
            .map(|(i, j)| outbox::OutboxRow {
                topic: "killmail.enriched".into(),
                key: i.to_string(),
                created_at: time.timestamp_millis(),
                payload: outbox::Payload::encode(j.clone()),
            })
            .collect();
        assert!(matches!(rows[0].payload, outbox::Payload::Zstd(_)));
        assert!(rows[0].payload.stored_len() * 3 < jsons[0].len());
        assert!(matches!(rows[1].payload, outbox::Payload::Text(_)));
        assert_eq!(rows[0].payload.decode().unwrap(), jsons[0]);

        let mut tx = db.begin().await.unwrap();
        outbox::enqueue_rows(&mut tx, &rows).await.unwrap();
        tx.commit().await.unwrap();
        let (compressed,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE payload_zstd IS NOT NULL")
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(compressed, 125);
        let peeked = outbox::peek(&db, 1000).await.unwrap();
        assert_eq!(
            peeked.iter().map(|p| p.2.clone()).collect::<Vec<_>>(),
            jsons
        );

        assert_eq!(relay.relay_once().await.unwrap(), 250);
        let published = bus.published.lock().clone();
        for (i, (topic, record)) in published.iter().enumerate() {
            assert_eq!(topic, "killmail.enriched");
            assert_eq!(record.key, i.to_string());
            assert_eq!(record.payload.as_ref(), jsons[i].as_bytes());
            let env = bs_events::Envelope::from_bytes(&record.payload).unwrap();
            assert_eq!(
                (env.time, env.key.as_str(), env.version),
                (time, record.key.as_str(), 1)
            );
        }
        let env = bs_events::Envelope::from_bytes(&published[0].1.payload).unwrap();
        assert_eq!(env.payload, big);
    }
}

/// Reads `t.name` as the payload `{"name": …}` of events enqueued by reference to `t.id`.
struct NameExpander;

#[async_trait]
impl outbox::OutboxExpander for NameExpander {
    async fn expand(
        &self,
        conn: &mut sqlx::AnyConnection,
        references: &[i64],
    ) -> bs_store::StoreResult<std::collections::HashMap<i64, outbox::Expanded>> {
        let mut out = std::collections::HashMap::new();
        for id in references {
            let row: Option<(String,)> = sqlx::query_as("SELECT name FROM t WHERE id = $1")
                .bind(*id)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some((name,)) = row {
                let payload_json = serde_json::json!({ "name": name }).to_string();
                out.insert(
                    *id,
                    outbox::Expanded {
                        version: 3,
                        payload_json,
                    },
                );
            }
        }
        Ok(out)
    }
}

/// Events enqueued by reference are published as full envelopes built from the row the
/// relay reads in its transaction, in id order among inline events; the event id and
/// time are the enqueued ones (a republish repeats them); a row deleted before the relay
/// ran is skipped, not a failure; without an expander nothing is published or lost.
#[tokio::test]
async fn outbox_expands_events_enqueued_by_reference() {
    for (db, _dir) in databases().await {
        db.migrate(&[outbox::MIGRATIONS, set(V1)]).await.unwrap();
        let bus = Arc::new(RecordingBus::default());
        let relay = outbox::OutboxRelay::new(db.clone(), bus.clone());
        let time = chrono::DateTime::from_timestamp_millis(1_638_000_000_123).unwrap();
        let mut tx = db.begin().await.unwrap();
        for (id, name) in [(1, "Jorund"), (2, "O-IVNH"), (3, "gone")] {
            sqlx::query("INSERT INTO t (id, name) VALUES ($1, $2)")
                .bind(id)
                .bind(name)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let by_ref = |id: i64| outbox::OutboxRow {
            topic: "thing.named".into(),
            key: id.to_string(),
            created_at: time.timestamp_millis(),
            payload: outbox::Payload::reference(id),
        };
        let inline = outbox::OutboxRow {
            topic: "thing.named".into(),
            key: "9".into(),
            created_at: time.timestamp_millis(),
            payload: outbox::Payload::Text(outbox::envelope_json(
                "thing.named",
                3,
                time,
                "9",
                r#"{"name":"inline"}"#,
            )),
        };
        let rows = vec![by_ref(1), inline, by_ref(3), by_ref(2)];
        let ids: Vec<uuid::Uuid> = rows
            .iter()
            .filter_map(|r| match r.payload {
                outbox::Payload::Reference { event_id, .. } => Some(event_id),
                _ => None,
            })
            .collect();
        assert!(
            rows[0].payload.decode().is_err(),
            "a reference has no text of its own"
        );
        outbox::enqueue_rows(&mut tx, &rows).await.unwrap();
        sqlx::query("DELETE FROM t WHERE id = 3")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // No expander yet: the relay fails and keeps every row.
        assert!(relay.relay_once().await.is_err());
        assert!(outbox::peek(&db, 10).await.is_err());
        assert_eq!(db.outbox_pending().await.unwrap(), 4);
        assert!(bus.published.lock().is_empty());

        db.register_outbox_expander("thing.named", Arc::new(NameExpander));
        let peeked = outbox::peek(&db, 10).await.unwrap();
        assert_eq!(peeked.len(), 3);
        assert_eq!(relay.relay_once().await.unwrap(), 4);
        assert_eq!(db.outbox_pending().await.unwrap(), 0);
        let published = bus.published.lock().clone();
        let envelopes: Vec<bs_events::Envelope> = published
            .iter()
            .map(|(_, r)| bs_events::Envelope::from_bytes(&r.payload).unwrap())
            .collect();
        let names: Vec<(String, String)> = envelopes
            .iter()
            .map(|e| {
                (
                    e.key.clone(),
                    e.payload["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("1".to_owned(), "Jorund".to_owned()),
                ("9".to_owned(), "inline".to_owned()),
                ("2".to_owned(), "O-IVNH".to_owned())
            ]
        );
        assert_eq!((envelopes[0].id, envelopes[2].id), (ids[0], ids[2]));
        for e in &envelopes {
            assert_eq!(
                (e.event_type.as_str(), e.version, e.time),
                ("thing.named", 3, time)
            );
        }
        assert_eq!(
            peeked.iter().map(|p| p.2.clone()).collect::<Vec<_>>(),
            published
                .iter()
                .map(|(_, r)| String::from_utf8(r.payload.to_vec()).unwrap())
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn sqlite_connections_get_the_embedded_page_cache_size() {
    // Nothing in this test binary calls `set_sqlite_cache_kib`, so every connection has the
    // embedded default, in KiB (a negative `cache_size`), not SQLite's 2000 KiB.
    let dir = bs_testkit::temp_dir();
    let db = Database::open(&StoreTarget::Sqlite(dir.path().join("cache.db")), 2)
        .await
        .unwrap();
    for _ in 0..2 {
        let mut conn = db.pool().acquire().await.unwrap();
        let (size,): (i64,) = sqlx::query_as("PRAGMA cache_size")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(size, -i64::from(bs_store::DEFAULT_SQLITE_CACHE_KIB));
    }
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_checkpointer_runs_while_the_writer_holds_every_pool_connection() {
    // A lone writer holding the pool's only connection (a live battle's stream of
    // single-killmail transactions keeps it busy). The checkpointer must still copy the
    // WAL into the database file, on a connection of its own, long before the writer's
    // own auto-checkpoint (at 16384 pages) would do it inside a commit.
    let dir = bs_testkit::temp_dir();
    let path = dir.path().join("wal.db");
    let db = Database::open(&StoreTarget::Sqlite(path.clone()), 1)
        .await
        .unwrap();
    let mut conn = db.pool().acquire().await.unwrap();
    sqlx::query("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        .execute(&mut *conn)
        .await
        .unwrap();
    // ≈ 5 pages a commit, 400 commits: ≈ 2,000 WAL pages, far below the auto-checkpoint.
    let body = vec![7u8; 16 * 1024];
    for id in 0..400i64 {
        sqlx::query("INSERT INTO blobs (id, body) VALUES (?, ?)")
            .bind(id)
            .bind(&body)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    // A few checkpointer ticks, the connection still held.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let copied = std::fs::metadata(&path).unwrap().len();
    assert!(
        copied > 4 << 20,
        "the database file holds {copied} bytes of the ≈ 6.5 MB committed: no background checkpoint ran"
    );
    drop(conn);
    db.close().await;
}
