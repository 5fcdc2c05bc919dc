//! The authentication service's integration tests (one binary).
//!
//! * `flows`: full user and admin flows over HTTP against the fake EVE SSO.
//! * `attacks`: the attack table at the HTTP level.
//! * `audit_retention`: anchored audit-log prunes, on SQLite and PostgreSQL.
//! * `jwt`: the JWT attack cases through the service's validator.
//! * `secrets`: refresh tokens never in plain text on disk or in logs.
//! * `store_suite`: the `AuthStore` conformance suite on SQLite and PostgreSQL.
//! * `store_backends`: the two backends those store-level tests run on.
//! * `wiring`: `start_with_client` from configuration, shutdown, key rotation.

mod attacks;
mod audit_retention;
mod flows;
mod jwt;
mod secrets;
mod store_backends;
mod store_suite;
mod support;
mod wiring;
