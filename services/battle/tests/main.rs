//! The battle service's integration tests (one binary).
//!
//! * `core`: the service core on real fights (battles, sides, report, redelivery, restart, merge).

mod core;
mod helpers;
