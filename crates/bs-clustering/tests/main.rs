//! The one integration-test binary of bs-clustering: real fights from the 2021-11-27..12-02
//! week, order independence, engine events and side assignment.

mod support;

mod engine;
mod fights;
mod order;
mod sides;
