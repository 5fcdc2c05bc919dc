//! glibc's allocator settings for a long-running all-in-one process, applied by re-executing
//! the binary once with `GLIBC_TUNABLES` set.
//!
//! Why: glibc's malloc keeps memory a process freed. Two of its defaults cost the all-in-one
//! process most of its resident set after a bulk import (measured on the week's `bench`,
//! release: RSS after the run 401 MB with `MALLOC_ARENA_MAX=2`, of which ~140 MB were live
//! allocations): up to 8 arenas per core, each growing its own heap for the threads that hit
//! it (tokio workers, blocking pool, SQLite), and a *dynamic* mmap threshold, which rises to
//! the size of every large block freed, so later large buffers (read buffers, SQLite
//! statements, search arenas) come from the arenas and fragment them instead of being
//! returned to the OS on free. A fixed threshold keeps large blocks in their own mappings,
//! a low trim threshold returns the top of a heap as soon as it is free, and two arenas bound
//! how many heaps fragment. The tunables can only be set before the process starts, hence the
//! re-exec (the same pid: `exec` replaces the image), and `unsafe` (`mallopt`,
//! `malloc_trim`) is not allowed in this workspace.
//!
//! An operator's own choice wins: nothing is done when `GLIBC_TUNABLES` or `MALLOC_ARENA_MAX`
//! is set, or with `BATTLESCOPE_MALLOC_TUNING=off`. Other platforms and allocators: nothing.

/// Set in the re-executed process so it never loops.
const MARKER: &str = "BATTLESCOPE_MALLOC_TUNED";

/// The settings (see the module doc): arenas, fixed mmap threshold, trim threshold (bytes).
pub const TUNABLES: &str =
    "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=65536";

/// Whether the process should re-execute itself with [`TUNABLES`], given its environment.
pub fn wanted(var: impl Fn(&str) -> Option<String>) -> bool {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return false;
    }
    let off = var("BATTLESCOPE_MALLOC_TUNING")
        .is_some_and(|v| matches!(v.as_str(), "off" | "0" | "false"));
    !off && var(MARKER).is_none()
        && var("GLIBC_TUNABLES").is_none()
        && var("MALLOC_ARENA_MAX").is_none()
}

/// Re-executes the binary with [`TUNABLES`] when [`wanted`]; returns only when it did not
/// (not wanted, or `exec` failed: then the process simply runs with glibc's defaults).
pub fn tune() {
    if !wanted(|k| std::env::var(k).ok()) {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("GLIBC_TUNABLES", TUNABLES)
            .env(MARKER, "1")
            .exec();
        // Only reached when exec failed; run untuned rather than not at all.
        eprintln!("note: running with glibc's default allocator settings ({err})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn an_operators_settings_and_the_re_executed_process_are_left_alone() {
        let linux_gnu = cfg!(all(target_os = "linux", target_env = "gnu"));
        assert_eq!(wanted(env(&[])), linux_gnu);
        assert!(!wanted(env(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.arena_max=4"
        )])));
        assert!(!wanted(env(&[("MALLOC_ARENA_MAX", "2")])));
        assert!(!wanted(env(&[(MARKER, "1")])));
        assert!(!wanted(env(&[("BATTLESCOPE_MALLOC_TUNING", "off")])));
        assert_eq!(
            wanted(env(&[("BATTLESCOPE_MALLOC_TUNING", "on")])),
            linux_gnu
        );
    }
}
