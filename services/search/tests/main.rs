//! The search service's integration tests (one binary).
//!
//! * `scenario`: the service core on real fights, run against tantivy and Typesense: awkward
//!   names, typos, facets, sorting, late names, merges, redelivery, entity pages, reindex.
//! * `service`: `start()` on the embedded bus, and search going down and coming back.

mod helpers;
mod scenario;
mod service;
