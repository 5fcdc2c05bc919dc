//! The crate's one integration-test binary: real bundled data, real killmails, import fixtures.

mod common;
mod import;
mod security;
mod static_data;
mod valuation;
