//! The enrichment service's one integration-test binary.
//!
//! * `real_data`: every killmail of the repository's fights enriches with ship, group,
//!   system and region names; security types are right.
//! * `faults`: ESI down, 5xx, 429, slow, low error budget (FakeEsi): the pipeline never
//!   stalls, names fill in later through the update path.
//! * `idempotency`: redeliveries change nothing; updates bump the revision.
//! * `prices`: the live-mode price refresh and its stored copy.
//! * `store_suite`: the store on SQLite and (when configured) PostgreSQL.
//! * `tickers`: corporation and alliance tickers from ESI, stored, and late tickers.
//! * `api` and `service`: the HTTP API and `start()` end to end on the embedded bus.

mod helpers;

mod api;
mod faults;
mod idempotency;
mod prices;
mod real_data;
mod retention;
mod service;
mod store_suite;
mod tickers;
