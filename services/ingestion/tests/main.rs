//! The ingestion service's one integration-test binary.
//!
//! * `store_suite`: the store conformance suite, on SQLite always and on
//!   PostgreSQL when `BATTLESCOPE_TEST_POSTGRES` is set (mandatory under CI).
//! * `rejects`: every reject reason with a real killmail made bad.
//! * `import`: every file format; importing twice adds nothing.
//! * `live`: the R2Z2 feed against `FakeZkb` end to end (gaps, re-publication,
//!   faults, expiry repair), through `start` and the outbox to the bus.
//! * `backfill` and `api`: jobs and the HTTP API.
//! * `lifecycle`: daily verification, gap detection and retention on real days.
//! * `kill9`: SIGKILL at random points during live ingestion and an import.

mod api;
mod backfill;
mod helpers;
mod import;
mod kill9;
mod lifecycle;
mod live;
mod rejects;
mod store_suite;
