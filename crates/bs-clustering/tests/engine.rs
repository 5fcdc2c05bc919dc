//! Engine behaviour on small hand-made kills.
