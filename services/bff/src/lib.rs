//! The BFF and the server-rendered web UI (work in progress).
