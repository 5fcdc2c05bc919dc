//! The one integration-test binary of `bs-bus`.
//!
//! `conformance` holds the behaviour every bus must have, written once as
//! generic async functions; `conformance_suite!` stamps a `#[tokio::test]` per
//! case for each implementation (`embedded_suite`, and `kafka_suite` behind the
//! `kafka` feature, which runs against `BATTLESCOPE_TEST_KAFKA`). `kill9` also
//! holds the child-process side of the crash test, started by re-executing this
//! binary. `broker_restart` kills the Kafka broker itself (Tansu on S3 storage)
//! under a running publisher.

#[cfg(feature = "kafka")]
mod broker_restart;
mod conformance;
mod embedded;
mod harness;
mod kill9;

mod embedded_suite {
    crate::conformance_suite!(crate::harness::embedded_harness);
}

#[cfg(feature = "kafka")]
mod kafka_suite {
    crate::conformance_suite!(crate::harness::kafka_harness);
}
