//! `battlescope bench --json` on one real fight: every figure is present with
//! its type. Values are not checked — timing assertions do not belong in tests.

use std::process::Command;

use serde_json::Value;

const FIGHT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/killmails/fight-lxq2-t-2021-11-27.jsonl.gz"
);

fn number(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {v:#}"))
}

fn latency(v: &Value, pointer: &str) {
    number(v, &format!("{pointer}/latency_ms/p50"));
    number(v, &format!("{pointer}/latency_ms/p99"));
}

#[test]
fn bench_json_has_every_figure() {
    let dir = bs_testkit::temp_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_battlescope"))
        .args(["bench", "--json", "--dataset", FIGHT])
        .env("BATTLESCOPE_DATA_DIR", dir.path())
        .output()
        .expect("run battlescope bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("bench --json prints JSON");

    assert_eq!(r["backend"], "embedded");
    assert!(r["build"].is_string() && r["search_backend"].is_string());
    let killmails = number(&r, "/dataset/killmails");
    assert!(killmails > 0.0, "the fight has killmails");
    number(&r, "/dataset/bytes");

    for floor in ["/floor/parse", "/floor/parse_and_write"] {
        for k in ["killmails", "seconds", "killmails_per_second"] {
            number(&r, &format!("{floor}/{k}"));
        }
    }
    number(&r, "/floor/parse_and_write/bytes_written");
    // Both floor passes read the same rows.
    assert_eq!(r["floor"]["parse"]["killmails"], r["dataset"]["killmails"]);
    assert_eq!(
        r["floor"]["parse_and_write"]["killmails"],
        r["dataset"]["killmails"]
    );

    for k in [
        "read",
        "new",
        "duplicate",
        "rejected",
        "seconds",
        "killmails_per_second",
    ] {
        number(&r, &format!("/pipeline/import/{k}"));
    }
    for stage in ["ingested", "enriched", "in_battle", "indexed"] {
        let p = format!("/pipeline/stages/{stage}");
        for k in [
            "killmails",
            "seconds",
            "killmails_per_second",
            "ratio_to_parse_floor",
            "ratio_to_write_floor",
        ] {
            number(&r, &format!("{p}/{k}"));
        }
        // Ingestion has no upstream counter: its latency is null, the others are numbers.
        if stage == "ingested" {
            assert!(r.pointer(&format!("{p}/latency_ms/p50")).is_some());
        } else {
            latency(&r, &p);
        }
    }
    for k in [
        "killmails",
        "seconds",
        "killmails_per_second",
        "ratio_to_parse_floor",
        "ratio_to_write_floor",
    ] {
        number(&r, &format!("/pipeline/end_to_end/{k}"));
    }
    latency(&r, "/pipeline/end_to_end");
    assert!(r["pipeline"]["complete"].is_boolean());
    for k in [
        "peak_rss_bytes",
        "steady_rss_bytes",
        "memory/peak_anon_bytes",
        "memory/peak_file_bytes",
        "memory/phases/services_started/anon_bytes",
        "memory/phases/pipeline_done/file_bytes",
        "rss_budget_bytes",
        "bytes_written",
        "bytes_written_ratio_to_floor",
        "battles/battles_total",
        "battles/killmails_in_battles",
    ] {
        number(&r, &format!("/pipeline/{k}"));
    }
    // The whole fight went through: every killmail was ingested and indexed.
    assert_eq!(r["pipeline"]["complete"], true, "{r:#}");
    assert_eq!(number(&r, "/pipeline/stages/indexed/killmails"), killmails);

    for scenario in ["battle_list", "largest_battle_report", "autocomplete"] {
        let runs = r
            .pointer(&format!("/query/tantivy/{scenario}"))
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("no {scenario} runs in {r:#}"));
        let clients: Vec<u64> = runs.iter().filter_map(|x| x["clients"].as_u64()).collect();
        assert_eq!(clients, [1, 16], "{scenario}");
        for run in runs {
            for k in ["requests", "errors", "seconds", "requests_per_second"] {
                number(run, &format!("/{k}"));
            }
            latency(run, "");
            assert_eq!(run["errors"], 0, "{scenario}: {run}");
        }
    }
    number(&r, "/query/largest_battle_id");
}

/// `bench --soak` on the bundled sample for 24 s: the live path (a local R2Z2 fake) really
/// carries killmails through every stage, every figure is in the JSON, and the exit code
/// is the verdict's. The verdict itself (memory and lag trends) is not asserted: that would
/// be a timing assertion; its rules have unit tests in `src/bench/soak.rs`.
#[test]
fn soak_json_has_every_figure_and_the_exit_code_is_the_verdict() {
    let dir = bs_testkit::temp_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_battlescope"))
        .args([
            "bench",
            "--soak",
            "24s",
            "--soak-rate",
            "12",
            "--soak-interval",
            "2",
            "--json",
        ])
        .env("BATTLESCOPE_DATA_DIR", dir.path())
        .output()
        .expect("run battlescope bench --soak");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bench --soak --json prints JSON ({e}): {stderr}"));
    let passed = r["passed"].as_bool().expect("passed is a boolean");
    assert_eq!(out.status.success(), passed, "exit code = verdict: {r:#}");
    if !passed {
        assert!(stderr.contains("soak failed"), "{stderr}");
    }
    assert!(r["reasons"].is_array());
    assert_eq!(r["backend"], "embedded");
    for k in [
        "duration_seconds",
        "elapsed_seconds",
        "rate",
        "interval_seconds",
        "timeline_killmails",
        "ingested_per_second",
        "rss/first_bytes",
        "rss/last_bytes",
        "rss/peak_bytes",
        "rss/fake_feed_bytes",
        "rss/trend/rise",
        "rss/trend/per_minute",
        "rss/trend/r2",
        "rss/trend/allowance",
    ] {
        number(&r, &format!("/{k}"));
    }
    // The live path worked: the fake's head moved and killmails went through every stage.
    for stage in ["served", "ingested", "enriched", "in_battle", "indexed"] {
        assert!(number(&r, &format!("/{stage}")) > 0.0, "{stage}: {r:#}");
    }
    let samples = r["samples"].as_array().expect("samples");
    assert!(
        samples.len() >= 8,
        "a sample every 2 s for 24 s: {}",
        samples.len()
    );
    for s in samples {
        for k in ["t", "rss_bytes", "served", "ingested", "feed_lag"] {
            number(s, &format!("/{k}"));
        }
        number(s, "/outbox/ingestion");
        number(s, "/outbox/enrichment");
        assert!(s["bus_lag"].is_object());
    }
    // Every consumer group of the pipeline reports its lag, judged like the feed's.
    let lags = r["lags"].as_object().expect("lags");
    for name in [
        "feed",
        "outbox:ingestion",
        "outbox:enrichment",
        "bus:enrichment",
        "bus:battle",
        "bus:search",
        "bus:notification",
    ] {
        let l = &lags
            .get(name)
            .unwrap_or_else(|| panic!("no {name} lag in {:?}", lags.keys()));
        for k in ["max", "last", "rise", "per_minute", "r2", "allowance"] {
            number(l, &format!("/{k}"));
        }
        assert!(l["rising"].is_boolean());
    }
}

#[test]
fn soak_arguments_are_checked_with_clear_errors() {
    for (args, needle) in [
        (&["bench", "--soak", "soon"][..], "--soak"),
        (
            &["bench", "--soak", "5s", "--soak-rate", "50"][..],
            "soak-rate",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_battlescope"))
            .args(args)
            .output()
            .expect("run battlescope bench");
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle) && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn the_binary_runs_with_the_tuned_allocator_unless_the_operator_chose() {
    let run = |envs: &[(&str, &str)]| -> Value {
        let dir = bs_testkit::temp_dir();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_battlescope"));
        cmd.args(["bench", "--json", "--dataset", FIGHT])
            .env("BATTLESCOPE_DATA_DIR", dir.path())
            .env_remove("GLIBC_TUNABLES")
            .env_remove("MALLOC_ARENA_MAX")
            .env_remove("BATTLESCOPE_MALLOC_TUNING");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run battlescope bench");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&out.stdout).expect("bench --json prints JSON");
        r["allocator"].clone()
    };
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        let tuned = run(&[]);
        let tunables = tuned["glibc_tunables"].as_str().unwrap_or_default();
        assert!(
            tunables.contains("glibc.malloc.arena_max=2")
                && tunables.contains("glibc.malloc.mmap_threshold="),
            "re-executed with the tunables: {tuned}"
        );
    }
    let chosen = run(&[("MALLOC_ARENA_MAX", "4")]);
    assert_eq!(chosen["glibc_tunables"], Value::Null, "{chosen}");
    assert_eq!(chosen["malloc_arena_max"], "4");
    let off = run(&[("BATTLESCOPE_MALLOC_TUNING", "off")]);
    assert_eq!(off["glibc_tunables"], Value::Null, "{off}");
}
