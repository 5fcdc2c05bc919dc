//! The migration runner.
//!
//! Migrations are SQL files compiled into the binary, one ordered list per
//! backend, grouped by component (a service's own schema, the shared outbox).
//! Applied migrations are recorded in `schema_migrations` with a checksum; a
//! migration runs at most once, in its own transaction, and an applied
//! migration whose text changed is an error rather than silently skipped. On
//! PostgreSQL an advisory lock serialises concurrent runners (several replicas
//! starting at once); on SQLite the write lock does.

use sqlx::{Acquire, Executor};

use crate::{Backend, Database, StoreError, StoreResult};

/// One migration: a version, a name and the SQL to run.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// A component's migrations for both backends.
#[derive(Clone, Copy, Debug)]
pub struct MigrationSet {
    /// Unique per database: `ingestion`, `outbox`, …
    pub component: &'static str,
    pub sqlite: &'static [Migration],
    pub postgres: &'static [Migration],
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<(String, i64)>,
    pub already_applied: usize,
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version BIGINT NOT NULL,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    PRIMARY KEY (component, version)
)";

/// Any fixed 64-bit number; identifies BattleScope's migration lock.
const PG_LOCK_KEY: i64 = 0x4261_7474_6c65_5363;

/// FNV-1a: stable across builds and platforms, enough to detect edits.
fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Database {
    /// Applies every pending migration of `sets`, in order.
    pub async fn migrate(&self, sets: &[MigrationSet]) -> StoreResult<MigrationReport> {
        let mut conn = self.pool().acquire().await?;
        conn.execute(CREATE_TABLE).await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(PG_LOCK_KEY)
                .execute(&mut *conn)
                .await?;
        }
        let result = self.migrate_locked(&mut conn, sets).await;
        if self.backend() == Backend::Postgres {
            // Release even after a failure, so a fixed build can retry.
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(PG_LOCK_KEY)
                .execute(&mut *conn)
                .await?;
        }
        result
    }

    async fn migrate_locked(
        &self,
        conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
        sets: &[MigrationSet],
    ) -> StoreResult<MigrationReport> {
        let mut report = MigrationReport::default();
        for set in sets {
            let list = match self.backend() {
                Backend::Sqlite => set.sqlite,
                Backend::Postgres => set.postgres,
            };
            let applied: Vec<(i64, String, String)> =
                sqlx::query_as("SELECT version, name, checksum FROM schema_migrations WHERE component = $1 ORDER BY version")
                    .bind(set.component)
                    .fetch_all(&mut **conn)
                    .await?;
            for (version, _, _) in &applied {
                if !list.iter().any(|m| m.version == *version) {
                    return Err(StoreError::UnknownMigration {
                        component: set.component.into(),
                        version: *version,
                    });
                }
            }
            let mut sorted: Vec<&Migration> = list.iter().collect();
            sorted.sort_by_key(|m| m.version);
            for m in sorted {
                if let Some((_, _, sum)) = applied.iter().find(|(v, _, _)| *v == m.version) {
                    if *sum != checksum(m.sql) {
                        return Err(StoreError::MigrationChanged {
                            component: set.component.into(),
                            version: m.version,
                            name: m.name.into(),
                        });
                    }
                    report.already_applied += 1;
                    continue;
                }
                let mut tx = conn.begin().await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(m.sql))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO schema_migrations (component, version, name, checksum, applied_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(set.component)
                .bind(m.version)
                .bind(m.name)
                .bind(checksum(m.sql))
                .bind(chrono::Utc::now().timestamp_millis())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                tracing::info!(
                    database = self.label(),
                    component = set.component,
                    version = m.version,
                    name = m.name,
                    "applied migration"
                );
                report.applied.push((set.component.to_owned(), m.version));
            }
        }
        Ok(report)
    }
}

/// Declares a [`MigrationSet`] from files `migrations/{sqlite,postgres}/NNNN_name.sql`
/// relative to the calling crate's manifest:
///
/// ```text
/// pub const MIGRATIONS: MigrationSet = bs_store::migrations!("ingestion", [(1, "init")]);
/// ```
#[macro_export]
macro_rules! migrations {
    ($component:literal, [$(($version:literal, $name:literal)),* $(,)?]) => {
        $crate::MigrationSet {
            component: $component,
            sqlite: &[$($crate::Migration {
                version: $version,
                name: $name,
                sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite/", stringify!($version), "_", $name, ".sql")),
            }),*],
            postgres: &[$($crate::Migration {
                version: $version,
                name: $name,
                sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/", stringify!($version), "_", $name, ".sql")),
            }),*],
        }
    };
}

#[cfg(test)]
mod tests {
    use super::checksum;

    #[test]
    fn checksum_is_stable_and_sensitive() {
        assert_eq!(
            checksum("CREATE TABLE a (x BIGINT)"),
            checksum("CREATE TABLE a (x BIGINT)")
        );
        assert_ne!(
            checksum("CREATE TABLE a (x BIGINT)"),
            checksum("CREATE TABLE a (x TEXT)")
        );
    }
}
