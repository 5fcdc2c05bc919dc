//! The clusterer settings API: the configuration when nothing is stored, validation with a
//! reason per field, persistence across a restart, the live effect on new killmails (a smaller
//! gap splits a fight the default joins) and the "built with older settings" count until a
//! recluster.

use std::sync::Arc;

use axum::http::StatusCode;
use bs_battle::domain::EngineSettings;
use bs_battle::settings::{self, SettingsInput, SettingsState};
use bs_battle::store::BattleRow;
use bs_config::{BattleConfig, Config};
use bs_events::KillmailEnriched;
use serde_json::{Value, json};

use crate::core::{all_rows, settle};
use crate::helpers::*;
use crate::service::{call, context, stop};

fn settings_body(gap: &str, kills: Value, pilots: Value, window: &str) -> Value {
    json!({"gap": gap, "min_kills": kills, "min_pilots": pilots, "reopen_window": window, "changed_by": "Ada Admin"})
}

#[tokio::test]
async fn the_configuration_applies_until_settings_are_stored_and_stored_ones_survive_a_restart() {
    let dir = bs_testkit::temp_dir();
    let bus = bs_bus::connect(&bs_bus::BusConfig::embedded(dir.path().join("bus")))
        .await
        .unwrap();
    let data = dir.path().join("data");
    let with_config = |ctx: bs_runtime::ServiceContext| bs_runtime::ServiceContext {
        config: Arc::new(Config {
            battle: BattleConfig {
                gap: "25m".into(),
                ..BattleConfig::default()
            },
            ..(*ctx.config).clone()
        }),
        ..ctx
    };
    let ctx = with_config(context(&data, Arc::clone(&bus)));
    let handle = bs_battle::start(&ctx).await.unwrap();
    let router = handle.router.clone();
    let (status, _, doc) = call(&router, "GET", "/settings", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["source"], "config");
    assert_eq!(doc["effective"]["gap"], "25m");
    assert_eq!(doc["effective"]["gap_ms"], 25 * 60_000);
    assert_eq!(doc["effective"]["min_kills"], 5);
    assert_eq!(doc["config"]["reopen_window"], "3days");
    assert_eq!(doc["changed_by"], Value::Null);
    assert_eq!(doc["running"], true);
    assert_eq!(doc["battles_with_older_settings"], 0);

    let body = settings_body("10m", json!("4"), json!(7), "48h");
    let (status, _, doc) = call(&router, "PUT", "/settings", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["source"], "stored");
    assert_eq!(doc["effective"]["gap"], "10m");
    assert_eq!(doc["effective"]["min_kills"], 4);
    assert_eq!(doc["effective"]["min_pilots"], 7);
    assert_eq!(doc["effective"]["reopen_window"], "2days");
    assert_eq!(doc["changed_by"], "Ada Admin");
    assert!(doc["changed_at"].is_string());
    assert_eq!(
        doc["config"]["gap"], "25m",
        "the configuration is still shown"
    );
    assert_eq!(doc["running"], true, "applied without a restart");
    stop(&ctx, handle).await;

    // A restart on the same database keeps the stored settings and runs with them.
    let ctx = with_config(context(&data, Arc::clone(&bus)));
    let handle = bs_battle::start(&ctx).await.unwrap();
    let router = handle.router.clone();
    let (_, _, doc) = call(&router, "GET", "/settings", None).await;
    assert_eq!(doc["source"], "stored");
    assert_eq!(doc["effective"]["gap"], "10m");
    assert_eq!(doc["running"], true);

    // DELETE forgets them: the configuration applies again.
    let (status, _, doc) = call(&router, "DELETE", "/settings", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["source"], "config");
    assert_eq!(doc["effective"]["gap"], "25m");
    assert_eq!(doc["running"], true);
    stop(&ctx, handle).await;
    let ctx = with_config(context(&data, Arc::clone(&bus)));
    let handle = bs_battle::start(&ctx).await.unwrap();
    let (_, _, doc) = call(&handle.router, "GET", "/settings", None).await;
    assert_eq!(doc["source"], "config");
    stop(&ctx, handle).await;
}

#[tokio::test]
async fn bad_settings_are_refused_with_a_reason_per_field_and_change_nothing() {
    let dir = bs_testkit::temp_dir();
    let bus = bs_bus::connect(&bs_bus::BusConfig::embedded(dir.path().join("bus")))
        .await
        .unwrap();
    let ctx = context(&dir.path().join("data"), Arc::clone(&bus));
    let handle = bs_battle::start(&ctx).await.unwrap();
    let router = handle.router.clone();
    let cases: [(Value, &[&str], &str); 6] = [
        (
            settings_body("soon", json!(5), json!(6), "72h"),
            &["gap"],
            "`soon` is not a duration",
        ),
        (
            settings_body("30s", json!(5), json!(6), "72h"),
            &["gap"],
            "out of bounds (1m to 6h)",
        ),
        (
            settings_body("7h", json!(5), json!(6), "72h"),
            &["gap"],
            "out of bounds",
        ),
        (
            settings_body("2h", json!(0), json!("many"), "1h"),
            &["min_kills", "min_pilots", "reopen_window"],
            "must be at least the gap",
        ),
        (
            settings_body("30m", json!(5), json!(6), "30days"),
            &["reopen_window"],
            "out of bounds",
        ),
        (
            json!({"gap": "30m"}),
            &["min_kills", "min_pilots", "reopen_window"],
            "min_kills is required",
        ),
    ];
    for (body, fields, text) in cases {
        let (status, _, answer) = call(&router, "PUT", "/settings", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert_eq!(answer["error"], "invalid_settings");
        let got: Vec<&str> = answer["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(got, fields, "{body} -> {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(text), "{body}: {message}");
    }
    let (status, _, answer) = call(&router, "PUT", "/settings", Some(json!("gap=5m"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("not a settings object")
    );
    let (_, _, doc) = call(&router, "GET", "/settings", None).await;
    assert_eq!(doc["source"], "config", "nothing was stored");
    assert_eq!(doc["effective"]["gap"], "30m");
    // The same rules as a pure function (what the BFF form relies on).
    let input: SettingsInput =
        serde_json::from_value(settings_body("1h 30m", json!(" 3 "), json!("6"), "90m")).unwrap();
    let ok = settings::validate(&input).unwrap();
    assert_eq!(
        (ok.gap_ms, ok.min_kills, ok.reopen_window_ms),
        (5_400_000, 3, 5_400_000)
    );
    stop(&ctx, handle).await;
}

/// A battle running through the whole hole `[from, to)`.
fn spans(rows: &[BattleRow], from: i64, to: i64) -> bool {
    rows.iter().any(|r| r.start_ms < from && r.end_ms >= to)
}

#[tokio::test]
async fn a_smaller_gap_splits_new_kills_the_default_joins_and_older_battles_are_reported() {
    let mut events: Vec<KillmailEnriched> = enriched(&fixture("lxq2-t"));
    events.sort_by_key(|e| (e.killmail_time, e.killmail_id));
    // The fight's second half moved 20 minutes later: a hole inside the default 30-minute
    // gap, far outside a 5-minute one. (The fight itself lasts about 20 minutes, so a hole
    // cut out of it would leave too little on one side.)
    let t0 = events[events.len() / 2].killmail_time;
    let t1 = t0 + chrono::Duration::minutes(20);
    let (early, mut late): (Vec<_>, Vec<_>) =
        events.into_iter().partition(|e| e.killmail_time < t0);
    for e in &mut late {
        e.killmail_time += chrono::Duration::minutes(20);
    }
    assert!(early.len() > 20 && late.len() > 20);
    let (from, to) = (t0.timestamp_millis(), t1.timestamp_millis());

    // The default joins the two halves.
    let control_dir = bs_testkit::temp_dir();
    let control = battles_in(control_dir.path(), EngineSettings::default()).await;
    control.ingest(&early).await.unwrap();
    control.ingest(&late).await.unwrap();
    settle(&control).await;
    assert!(
        spans(&all_rows(&control).await, from, to),
        "the default joins across the hole"
    );

    // The same kills, with a 5-minute gap stored between the halves.
    let dir = bs_testkit::temp_dir();
    let db = sqlite(dir.path()).await;
    let battles = battles_on(db.clone(), EngineSettings::default()).await;
    let now = || chrono::Utc::now().timestamp_millis();
    settings::record_applied(&db, &battles.settings(), None, now())
        .await
        .unwrap();
    let router = settings::router(SettingsState {
        battles: Arc::clone(&battles),
        db: db.clone(),
        config: BattleConfig::default(),
        changing: Arc::default(),
    });
    battles.ingest(&early).await.unwrap();
    settle(&battles).await;
    let before = all_rows(&battles).await;
    assert!(!before.is_empty());
    let body = settings_body("5m", json!(5), json!(6), "5m");
    let (status, _, doc) = call(&router, "PUT", "/settings", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(battles.settings().cluster.link_gap_ms, 300_000);
    battles.ingest(&late).await.unwrap();
    settle(&battles).await;
    let after = all_rows(&battles).await;
    assert!(
        !spans(&after, from, to),
        "the new gap splits at the hole: {:?}",
        after
            .iter()
            .map(|r| (r.start_ms, r.end_ms, r.total_kills))
            .collect::<Vec<_>>()
    );
    assert!(
        after.iter().any(|r| r.start_ms >= to),
        "the late half is a battle of its own"
    );
    // Both halves were (re)built under the new settings: the early one sat in the working set
    // the change rebuilt.
    let (_, _, doc) = call(&router, "GET", "/settings", None).await;
    assert_eq!(doc["battles_with_older_settings"], 0, "{doc}");
    assert!(doc["applied_since"].is_string(), "{doc}");

    // Three days later another fight; then a change leaves the 2021-11-27 battles outside the
    // rebuilt working set: they were built with older settings.
    battles.ingest(&enriched(&fixture("uw9b-f"))).await.unwrap();
    settle(&battles).await;
    let body = settings_body("6m", json!(5), json!(6), "6m");
    let (status, _, doc) = call(&router, "PUT", "/settings", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let older = doc["battles_with_older_settings"].as_i64().unwrap();
    let split: Vec<&BattleRow> = after
        .iter()
        .filter(|r| r.status != bs_events::BattleStatus::Merged)
        .collect();
    // (A battle of the new fight that started before its own rebuilt window counts too.)
    assert!(older >= split.len() as i64, "{doc}");

    // A recluster of the whole range with the current settings clears the notice.
    let live: Vec<BattleRow> = all_rows(&battles)
        .await
        .into_iter()
        .filter(|r| r.status != bs_events::BattleStatus::Merged)
        .collect();
    let first = live.iter().map(|r| r.start_ms).min().unwrap();
    let last = live.iter().map(|r| r.end_ms).max().unwrap();
    let report = bs_battle::recluster::recluster(
        &battles,
        &db,
        bs_store::from_millis(first),
        bs_store::from_millis(last),
        false,
    )
    .await
    .unwrap();
    assert!(report.plan.window_from_ms <= first && report.plan.window_to_ms >= last);
    let (_, _, doc) = call(&router, "GET", "/settings", None).await;
    assert_eq!(doc["battles_with_older_settings"], 0, "{doc}");
    assert!(!spans(&all_rows(&battles).await, from, to));
    // A dry run does not count as rebuilt: after the next change they are older again.
    let body = settings_body("5m", json!(5), json!(6), "5m");
    call(&router, "PUT", "/settings", Some(body)).await;
    bs_battle::recluster::recluster(
        &battles,
        &db,
        bs_store::from_millis(first),
        bs_store::from_millis(last),
        true,
    )
    .await
    .unwrap();
    let (_, _, doc) = call(&router, "GET", "/settings", None).await;
    assert!(
        doc["battles_with_older_settings"].as_i64().unwrap() >= 1,
        "{doc}"
    );

    // Reverting to the configuration: the configuration's settings run again.
    let (status, _, doc) = call(&router, "DELETE", "/settings", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["source"], "config");
    assert_eq!(doc["running"], true);
    assert_eq!(battles.settings(), EngineSettings::default());
}

/// Stored settings are read back by a new service core on the same database, on SQLite and
/// (when configured) PostgreSQL.
#[tokio::test]
async fn stored_settings_survive_a_reopen_on_both_backends() {
    let dir = bs_testkit::temp_dir();
    let mut backends = vec![("sqlite", sqlite(dir.path()).await)];
    if let Some(pg) = postgres().await {
        backends.push(("postgres", pg));
    }
    for (name, db) in backends {
        let open = |db: bs_store::Database| async move {
            let battles = battles_on(db.clone(), EngineSettings::default()).await;
            settings::router(SettingsState {
                battles,
                db,
                config: BattleConfig::default(),
                changing: Arc::default(),
            })
        };
        let router = open(db.clone()).await;
        let (_, _, doc) = call(&router, "GET", "/settings", None).await;
        assert_eq!(doc["source"], "config", "{name}");
        let body = settings_body("45m", json!(8), json!(10), "96h");
        let (status, _, doc) = call(&router, "PUT", "/settings", Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{name}: {doc}");
        let (status, _, _) = call(&router, "PUT", "/settings", Some(json!({"gap": "1s"}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
        let router = open(db.clone()).await;
        let (_, _, doc) = call(&router, "GET", "/settings", None).await;
        assert_eq!(doc["source"], "stored", "{name}");
        assert_eq!(doc["effective"]["gap"], "45m", "{name}");
        assert_eq!(doc["effective"]["min_kills"], 8, "{name}");
        assert_eq!(doc["effective"]["min_pilots"], 10, "{name}");
        assert_eq!(
            doc["effective"]["reopen_window_ms"],
            96 * 3_600_000,
            "{name}"
        );
        assert_eq!(doc["changed_by"], "Ada Admin", "{name}");
        let effective = settings::effective(&db, &BattleConfig::default())
            .await
            .unwrap()
            .0;
        assert_eq!(effective.gap_ms, 45 * 60_000, "{name}");
        let (status, _, doc) = call(&router, "DELETE", "/settings", None).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(doc["source"], "config", "{name}");
        db.close().await;
    }
}
