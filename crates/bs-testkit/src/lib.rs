//! Test support shared by every crate.
//!
//! [`engine`] decides whether a conformance suite runs against a real engine
//! (PostgreSQL, Redis, Kafka/Tansu, Typesense). Locally a missing engine skips
//! with a printed notice; under `CI=true` it fails the test, so CI can never
//! pass by silently skipping an engine. [`broker`] runs a Kafka-protocol broker a
//! test can `kill -9` and restart.

pub mod broker;

/// Environment variables naming the engines tests may use.
pub const POSTGRES: &str = "BATTLESCOPE_TEST_POSTGRES";
pub const REDIS: &str = "BATTLESCOPE_TEST_REDIS";
pub const KAFKA: &str = "BATTLESCOPE_TEST_KAFKA";
pub const TYPESENSE: &str = "BATTLESCOPE_TEST_TYPESENSE";

/// True when running in CI, where every engine is mandatory.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The engine address from `var`, or `None` (with a notice) when it is unset
/// outside CI. Panics under `CI=true` when unset: engines are mandatory there.
pub fn engine(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if in_ci() => {
            panic!("{var} is not set but CI=true: the engine-backed suite must run in CI")
        }
        _ => {
            eprintln!("skipped: {var} not set (set it to run this suite against the real engine)");
            None
        }
    }
}

/// A unique lowercase name for databases, topics, groups and collections.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple()).to_lowercase()
}

/// A fresh temporary directory, deleted on drop.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("battlescope-test-")
        .tempdir()
        .expect("create temp dir")
}
