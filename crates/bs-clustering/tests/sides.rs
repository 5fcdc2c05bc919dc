//! Side assignment.
