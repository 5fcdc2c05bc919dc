//! The search service (work in progress).
