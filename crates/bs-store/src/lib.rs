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
//! conformance suites check them): `$1`-style placeholders (statements with many
//! of them go through [`positional`], which SQLite binds much faster); `BIGINT` for every
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

pub use database::{
    Backend, DEFAULT_SQLITE_CACHE_KIB, Database, StoreTarget, set_sqlite_cache_kib,
};
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

/// The statement text to run on `backend`: on SQLite, a statement whose placeholders are
/// `$1, $2, …, $n` — each once, in ascending order — gets anonymous `?` placeholders
/// instead; anything else (PostgreSQL, reused or reordered numbers) is returned as is.
///
/// Why: SQLite treats `$N` as a *named* parameter, and sqlx binds a named parameter by
/// asking SQLite for its name, which walks the statement's list of names. Binding a
/// statement with n `$N` parameters therefore costs O(n²): a 500-row insert ran 4× slower
/// per row than a 16-row one. Anonymous `?` parameters bind by position in O(n), so with
/// this rewrite large multi-row statements are the cheap way to write on SQLite too.
/// Statements with a few parameters do not need it.
pub fn positional(backend: Backend, sql: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if backend != Backend::Sqlite {
        return Cow::Borrowed(sql);
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut next = 1u64;
    let mut quote: Option<u8> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == q {
                    quote = None;
                }
                i += 1;
            }
            None if b == b'\'' || b == b'"' => {
                quote = Some(b);
                i += 1;
            }
            None if b == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                let n: u64 = sql[start..end].parse().unwrap_or(0);
                if n != next {
                    // Reused or out of order: positional binding would change the meaning.
                    return Cow::Borrowed(sql);
                }
                next += 1;
                out.push_str(&sql[copied..i]);
                out.push('?');
                copied = end;
                i = end;
            }
            None => i += 1,
        }
    }
    if next == 1 {
        return Cow::Borrowed(sql);
    }
    out.push_str(&sql[copied..]);
    Cow::Owned(out)
}

/// [`positional`] as an owned statement for `sqlx::query` (see [`dynamic_sql`]).
pub fn backend_sql(backend: Backend, sql: String) -> sqlx::AssertSqlSafe<String> {
    match positional(backend, &sql) {
        std::borrow::Cow::Borrowed(_) => sqlx::AssertSqlSafe(sql),
        std::borrow::Cow::Owned(s) => sqlx::AssertSqlSafe(s),
    }
}

#[cfg(test)]
mod tests {
    use super::{Backend, positional};

    #[test]
    fn positional_rewrites_only_ascending_single_use_numbers_on_sqlite() {
        let sql = "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING";
        assert_eq!(
            positional(Backend::Sqlite, sql),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING"
        );
        assert_eq!(positional(Backend::Postgres, sql), sql);
        // Reused or reordered numbers keep their names (binding by position would differ).
        let reused = "UPDATE t SET a = $1 WHERE a = $1 OR b = $2";
        assert_eq!(positional(Backend::Sqlite, reused), reused);
        let reordered = "SELECT $2, $1";
        assert_eq!(positional(Backend::Sqlite, reordered), reordered);
        // Quoted text is not a placeholder; numbers above 9 are whole numbers.
        let quoted = "SELECT '$1', \"$x\", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10";
        assert_eq!(
            positional(Backend::Sqlite, quoted),
            "SELECT '$1', \"$x\", ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
        );
        assert_eq!(positional(Backend::Sqlite, "SELECT 1"), "SELECT 1");
    }
}
