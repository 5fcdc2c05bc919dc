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

#[test]
fn soak_without_support_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_battlescope"))
        .args(["bench", "--soak", "10s"])
        .output()
        .expect("run battlescope bench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("soak") && !err.contains("panicked"), "{err}");
}
