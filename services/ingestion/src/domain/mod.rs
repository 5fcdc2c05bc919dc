//! Pure ingestion rules: validation with reject reasons, and rulesets.
//!
//! **Architecture invariant:** nothing here does IO or reads the clock; "now"
//! is a parameter, and the system's security class is looked up by the caller.

pub mod ruleset;
pub mod validate;

pub use ruleset::{Ruleset, RulesetError};
pub use validate::{RejectReason, Rejection, validate};
