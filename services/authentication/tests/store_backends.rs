//! The two store backends every store-level test runs on: a fresh SQLite file, and a fresh
//! PostgreSQL database when `BATTLESCOPE_TEST_POSTGRES` is set (skipped locally when unset,
//! mandatory under CI=true). [`on_both_backends!`] turns `async fn name(&SqlAuthStore)`
//! bodies into one test per backend.

use bs_authentication::SqlAuthStore;
use bs_store::{Database, StoreTarget};

/// A migrated store on a fresh SQLite file (keep the directory alive).
pub async fn sqlite() -> (SqlAuthStore, tempfile::TempDir) {
    let dir = bs_testkit::temp_dir();
    let db = Database::open(&StoreTarget::Sqlite(dir.path().join("auth.db")), 4)
        .await
        .unwrap();
    db.migrate(&[bs_authentication::MIGRATIONS]).await.unwrap();
    (SqlAuthStore::new(db), dir)
}

/// A migrated store on a fresh PostgreSQL database named after `prefix`; `None` when no
/// server is configured (a failure under CI, see `bs_testkit::engine`).
pub async fn postgres(prefix: &str) -> Option<SqlAuthStore> {
    let url = bs_testkit::engine(bs_testkit::POSTGRES)?;
    let target = StoreTarget::Postgres {
        server_url: url,
        database: bs_testkit::unique_name(prefix),
    };
    let db = Database::open(&target, 8).await.unwrap();
    db.migrate(&[bs_authentication::MIGRATIONS]).await.unwrap();
    // Migrating twice is a no-op.
    assert!(
        db.migrate(&[bs_authentication::MIGRATIONS])
            .await
            .unwrap()
            .applied
            .is_empty()
    );
    Some(SqlAuthStore::new(db))
}

/// `on_both_backends!(prefix; a, b)`: tests `sqlite::a`, `postgres::a`, … calling the
/// calling module's `async fn a(&SqlAuthStore)`.
macro_rules! on_both_backends {
    ($prefix:literal; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let (store, _dir) = crate::store_backends::sqlite().await;
                super::$name(&store).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let Some(store) = crate::store_backends::postgres($prefix).await else { return };
                super::$name(&store).await;
            })*
        }
    };
}
pub(crate) use on_both_backends;
