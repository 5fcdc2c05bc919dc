//! Order independence.
