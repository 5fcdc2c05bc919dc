//! The search service integration tests (one binary).
