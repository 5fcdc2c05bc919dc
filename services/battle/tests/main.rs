//! The battle service's integration tests (one binary).
//!
//! * `core`: the service core on real fights (battles, sides, report, redelivery, restart, merge).
//! * `store`: the store conformance suite on SQLite and PostgreSQL.
//! * `service`: `start()` on the embedded bus, the API, a restart and the merge redirect.

mod core;
mod helpers;
mod service;
mod store;
