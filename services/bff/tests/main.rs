//! Integration tests of the BFF (work in progress).
