//! The data lifecycle end to end in the demo (one process, embedded everything): retention
//! deletes propagate as events, so afterwards the battle service and the search index agree,
//! and `/api/lifecycle` reports the runs. The demo's fights (2021-11-27..30) are all older than
//! the default 60 months, so a run deletes every battle and killmail — which is what makes the
//! "agree" check exact (scheduled retention never runs offline; these runs are the API's).

use std::time::{Duration, Instant};

use serde_json::Value;

fn get(base: &str, path: &str) -> Value {
    reqwest::blocking::get(format!("{base}{path}"))
        .and_then(|r| r.json())
        .unwrap_or(Value::Null)
}

fn post(base: &str, path: &str) -> Value {
    let r = reqwest::blocking::Client::new()
        .post(format!("{base}{path}"))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().unwrap()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out waiting for {what}");
}

fn search_total(base: &str, types: &str) -> i64 {
    get(
        base,
        &format!("/services/search/search?types={types}&per_page=1"),
    )["total"]
        .as_i64()
        .unwrap_or(-1)
}

#[test]
fn retention_deletes_reach_search_and_the_lifecycle_status() {
    let dir = bs_testkit::temp_dir();
    let app = crate::start(&["demo"], dir.path());
    let base = app.base.clone();
    // The demo imports its sample in the background: wait until the pipeline is quiet (the same
    // killmail and battle counts for several consecutive reads) and search indexed every battle,
    // so the counts below are final rather than a snapshot of an import in progress.
    let mut battles = 0;
    let mut last = (-1, -1);
    let mut steady = 0;
    wait_for("the demo import to settle and battles indexed", 300, || {
        let stats = get(&base, "/api/stats");
        let now = (
            stats["killmails_total"].as_i64().unwrap_or(0),
            stats["battles_total"].as_i64().unwrap_or(0),
        );
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
        battles = now.1;
        // 250 ms apart: forty equal reads are ten seconds without a change (enrichment
        // re-publishes revisions after the import itself, and each may touch a battle).
        steady >= 40 && battles > 0 && search_total(&base, "battles") == battles
    });
    wait_for("killmails indexed", 240, || {
        search_total(&base, "killmails") > 0
    });

    // Re-clustering the demo's week with the settings that built it changes nothing.
    let out = std::process::Command::new(crate::BIN)
        .args([
            "battles",
            "recluster",
            "--from",
            "2021-11-26",
            "--to",
            "2021-12-01",
            "--dry-run",
        ])
        .env("BATTLESCOPE_DATA_DIR", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("would change: 0 changed, 0 created, 0 merged, 0 deleted"),
        "{text}"
    );
    // Through a reverse proxy (a forwarding header) the trusting service APIs refuse, and a
    // battle-service admin action changes nothing; the public API stays open.
    for path in [
        "/services/battle/admin/recluster",
        "/services/battle/settings",
        "/services/notification/admin/retention/run",
    ] {
        let r = reqwest::blocking::Client::new()
            .post(format!("{base}{path}"))
            .header("X-Forwarded-For", "203.0.113.9")
            .json(&serde_json::json!({"from": "2021-11-26", "to": "2021-12-01"}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{path}");
    }
    let public = reqwest::blocking::Client::new()
        .get(format!("{base}/api/openapi.json"))
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .unwrap();
    assert!(public.status().is_success(), "{}", public.status());
    let via_api = reqwest::blocking::Client::new()
        .post(format!("{base}/services/battle/admin/recluster"))
        .json(&serde_json::json!({"from": "2021-11-26", "to": "2021-12-01", "dry_run": true}))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(
        via_api["kept"].as_array().map(Vec::len),
        Some(battles as usize),
        "{via_api}"
    );

    let runs = post(&base, "/services/battle/admin/retention/run");
    let by_kind = |kind: &str| {
        runs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_kind("battles")["status"], "completed", "{runs}");
    assert!(
        by_kind("battles")["deleted"].as_i64().unwrap() >= battles,
        "{runs}"
    );
    wait_for("search to drop the deleted battles", 60, || {
        search_total(&base, "battles") == 0
            && get(&base, "/api/stats")["battles_total"].as_i64() == Some(0)
    });

    // Raw and enriched killmails: search drops them on killmail.deleted.
    let raw = post(&base, "/services/ingestion/retention/run");
    assert!(raw["deleted"].as_i64().unwrap() > 0, "{raw}");
    let enriched = post(&base, "/services/enrichment/admin/retention/run");
    assert!(enriched["deleted"].as_i64().unwrap() > 0, "{enriched}");
    wait_for("search to drop the deleted killmails", 60, || {
        search_total(&base, "killmails") == 0
    });

    let lc = get(&base, "/api/lifecycle");
    let kinds: Vec<String> = lc["retention_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}.{}",
                r["service"].as_str().unwrap(),
                r["kind"].as_str().unwrap()
            )
        })
        .collect();
    for k in [
        "battle.battles",
        "battle.enriched_killmails",
        "ingestion.raw_killmails",
        "enrichment.enriched_killmails",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing in {lc}");
    }
    assert_eq!(lc["unavailable"], serde_json::json!([]), "{lc}");
    assert_eq!(
        lc["retention_rules"]["notification.notification_history"],
        12
    );
    // The dashboard shows the panel.
    let page = reqwest::blocking::get(format!("{base}/dashboard"))
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("Data lifecycle"), "{page}");
}
