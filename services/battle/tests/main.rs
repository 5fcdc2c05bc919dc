//! The battle service's integration tests (one binary).
//!
//! * `core`: the service core on real fights (battles, sides, report, redelivery, restart, merge).
//! * `store`: the store conformance suite on SQLite and PostgreSQL.
//! * `lifecycle`: re-clustering (ids kept, dry run, merges) and retention on real fights.
//! * `service`: `start()` on the embedded bus, the API, a restart and the merge redirect.
//! * `settings`: the clusterer settings API (config default, validation, persistence, live
//!   effect on new killmails, "built with older settings" until a recluster).

mod core;
mod helpers;
mod lifecycle;
mod service;
mod settings;
mod store;
