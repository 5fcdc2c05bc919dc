//! The search service's integration tests (one binary).
//!
//! * `scenario`: the service core on real fights, run against tantivy and Typesense: awkward
//!   names, typos, facets, sorting, late names, merges, redelivery, entity pages, reindex.
//! * `persistence`: the mirror kept across restarts; tickers; a player alliance found by its
//!   ticker after enrichment.
//! * `service`: `start()` on the embedded bus, and search going down and coming back.

mod helpers;
mod persistence;
mod scenario;
mod service;
