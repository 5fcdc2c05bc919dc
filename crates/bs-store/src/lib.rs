//! Relational storage for the services that own state.
//!
//! Each service owns one database: an embedded SQLite file
//! (`<data_dir>/<service>.db`) or a PostgreSQL database
//! (`battlescope_<service>`, created if missing). [`Database`] opens either
//! behind one type; each service writes its store trait against it with
//! dialect-neutral SQL, and keeps one migration list per backend
//! ([`MigrationSet`]) applied by [`Database::migrate`] at start-up and by
//! `battlescope migrate`.
//!
//! SQL rules that keep one query text valid on both backends (the store
//! conformance suites check them): `$1`-style placeholders; `BIGINT` for every
//! integer (timestamps are unix milliseconds), `DOUBLE PRECISION`/`REAL` for
//! floats, `TEXT` for strings and JSON; `INSERT … ON CONFLICT … DO …`;
//! `RETURNING`; cast aggregates whose PostgreSQL type would be `NUMERIC`
//! (`CAST(SUM(x) AS BIGINT)`).
//!
//! The [`outbox`] makes publishing part of the state change: a service writes
//! its rows and the events they imply in one transaction, and a relay moves the
//! events to the bus afterwards.

mod database;
mod migrate;
pub mod outbox;

pub use database::{Backend, Database, StoreTarget};
pub use migrate::{Migration, MigrationReport, MigrationSet};
pub use sqlx;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(
        "migration {component}/{version} ({name}) was changed after it was applied (checksum mismatch)"
    )]
    MigrationChanged {
        component: String,
        version: i64,
        name: String,
    },
    #[error(
        "database has migration {component}/{version} that this build does not know; refusing to run an older build"
    )]
    UnknownMigration { component: String, version: i64 },
    #[error("invalid store configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Milliseconds since the epoch, the storage form of every timestamp.
pub fn to_millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`to_millis`]; out-of-range values clamp to the epoch.
pub fn from_millis(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Macro-free helper for SQL built at run time (table names from constants,
/// generated placeholder lists). Never pass user input here.
pub fn dynamic_sql(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}
