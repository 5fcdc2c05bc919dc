//! The clusterer settings the operator can change at run time (`battle.gap`, `min_kills`,
//! `min_pilots`, `reopen_window`), stored in the battle database with the `[battle]`
//! configuration as the default.
//!
//! * `GET /settings`: the effective settings, where they come from (`config` or `stored`, with
//!   who changed them and when), the configuration's values, the accepted bounds, and how
//!   many stored battles were built with other settings (`battles_with_older_settings`).
//! * `PUT /settings {"gap": "20m", "min_kills": 5, "min_pilots": 6, "reopen_window": "72h",
//!   "changed_by": "…"}`: validated ([`validate`]: 400 `invalid_settings` with one message per
//!   field), stored, then applied to the running clusterer.
//! * `DELETE /settings`: forgets the stored settings; the configuration applies again.
//!
//! Applying new settings rebuilds the in-memory clusterer from the stored working set (the
//! last reopen window by kill time) under them — exactly what a restart with those settings
//! does — so new killmails are clustered with them at once. Battles older than the working set
//! keep the membership they were built with until `battlescope battles recluster` (or
//! `POST /admin/recluster`) rebuilds them; [`SettingsStatus::battles_with_older_settings`]
//! counts them so the UI can say so. A clusterer running with two settings at once would not
//! be order-independent, which is why the working set is rebuilt rather than only the future
//! kills being clustered differently.
//!
//! How "built with older settings" is known: `clusterer_applied` records the canonical JSON of
//! the settings last applied and the kill time from which stored battles were (re)built with
//! them (the working set's start when they were applied). A live battle that started before
//! that time is counted unless a completed, non-dry recluster run with the same settings,
//! started after the change, covered its whole span. A change back to earlier settings still
//! counts the battles in between (which settings built them is not kept per battle).
//!
//! Like the rest of the service's API, these routes trust their caller: the BFF's admin pages
//! check the role and CSRF token, and pass the actor in `changed_by`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bs_clustering::{ClusterSettings, TimeMs};
use bs_config::BattleConfig;
use bs_store::Database;
use bs_store::sqlx::{self, Row};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::consumer::Battles;
use crate::domain::EngineSettings;
use crate::store::ms_to_time;

const MINUTE_MS: TimeMs = 60_000;
const HOUR_MS: TimeMs = 60 * MINUTE_MS;

/// Accepted bounds (inclusive). The gap is the quiet time that ends a battle: under a minute
/// every burst is its own battle, over six hours a day of grinding becomes one. The reopen
/// window is held in memory, so it is capped at two weeks.
pub const GAP_MS: (TimeMs, TimeMs) = (MINUTE_MS, 6 * HOUR_MS);
pub const REOPEN_WINDOW_MS: (TimeMs, TimeMs) = (MINUTE_MS, 14 * 24 * HOUR_MS);
pub const MIN_KILLS: (u32, u32) = (1, 1_000);
pub const MIN_PILOTS: (u32, u32) = (1, 10_000);

/// The four operator-facing settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClustererSettings {
    pub gap_ms: TimeMs,
    pub min_kills: u32,
    pub min_pilots: u32,
    pub reopen_window_ms: TimeMs,
}

impl ClustererSettings {
    /// The `[battle]` section, parsed (not bounded: the configuration is the operator's word).
    pub fn from_config(config: &BattleConfig) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let gap = humantime::parse_duration(&config.gap)
            .with_context(|| format!("battle.gap `{}`", config.gap))?;
        let window = humantime::parse_duration(&config.reopen_window)
            .with_context(|| format!("battle.reopen_window `{}`", config.reopen_window))?;
        Ok(Self {
            gap_ms: millis(gap),
            min_kills: config.min_kills,
            min_pilots: config.min_pilots,
            reopen_window_ms: millis(window),
        })
    }

    /// The engine's settings: these four over the defaults of the design doc.
    pub fn engine(&self) -> EngineSettings {
        EngineSettings {
            cluster: ClusterSettings {
                link_gap_ms: self.gap_ms,
                min_battle_kills: self.min_kills,
                min_battle_pilots: self.min_pilots,
                ..ClusterSettings::default()
            },
            reopen_window_ms: self.reopen_window_ms,
        }
    }

    /// As shown and as the PUT body takes them.
    pub fn to_json(&self) -> Value {
        json!({
            "gap": duration_text(self.gap_ms),
            "gap_ms": self.gap_ms,
            "min_kills": self.min_kills,
            "min_pilots": self.min_pilots,
            "reopen_window": duration_text(self.reopen_window_ms),
            "reopen_window_ms": self.reopen_window_ms,
        })
    }
}

fn millis(d: Duration) -> TimeMs {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `30m`, `1h 30m`, `3days`: humantime's spelling, which [`validate`] parses back.
pub fn duration_text(ms: TimeMs) -> String {
    humantime::format_duration(Duration::from_millis(u64::try_from(ms).unwrap_or(0))).to_string()
}

/// The canonical form of everything the engine clusters with (the fixed thresholds included,
/// so a change of code defaults also counts as "other settings").
pub fn fingerprint(settings: &EngineSettings) -> String {
    json!({
        "cluster": settings.cluster,
        "reopen_window_ms": settings.reopen_window_ms,
    })
    .to_string()
}

/// A `PUT /settings` body. Counts may be JSON numbers or strings (a form's text).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SettingsInput {
    #[serde(default)]
    pub gap: Option<Value>,
    #[serde(default)]
    pub min_kills: Option<Value>,
    #[serde(default)]
    pub min_pilots: Option<Value>,
    #[serde(default)]
    pub reopen_window: Option<Value>,
    #[serde(default)]
    pub changed_by: Option<String>,
}

/// One refused field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

fn duration_field(
    field: &'static str,
    v: Option<&Value>,
    (lo, hi): (TimeMs, TimeMs),
    errors: &mut Vec<FieldError>,
) -> Option<TimeMs> {
    let mut fail = |message: String| {
        errors.push(FieldError { field, message });
        None
    };
    let Some(text) = text_of(v) else {
        return fail(format!("{field} is required (a duration such as `30m`)"));
    };
    let ms = match humantime::parse_duration(&text) {
        Ok(d) => millis(d),
        Err(e) => {
            return fail(format!(
                "{field}: `{text}` is not a duration ({e}); write e.g. `30m`, `1h 30m`, `72h`"
            ));
        }
    };
    if ms < lo || ms > hi {
        return fail(format!(
            "{field}: {} is out of bounds ({} to {})",
            duration_text(ms),
            duration_text(lo),
            duration_text(hi)
        ));
    }
    Some(ms)
}

fn count_field(
    field: &'static str,
    v: Option<&Value>,
    (lo, hi): (u32, u32),
    errors: &mut Vec<FieldError>,
) -> Option<u32> {
    let mut fail = |message: String| {
        errors.push(FieldError { field, message });
        None
    };
    let Some(text) = text_of(v) else {
        return fail(format!("{field} is required (a whole number)"));
    };
    match text.parse::<u32>() {
        Ok(n) if (lo..=hi).contains(&n) => Some(n),
        Ok(n) => fail(format!("{field}: {n} is out of bounds ({lo} to {hi})")),
        Err(_) => fail(format!("{field}: `{text}` is not a whole number")),
    }
}

/// Pure: the settings of a PUT body, or every reason it is refused.
pub fn validate(input: &SettingsInput) -> Result<ClustererSettings, Vec<FieldError>> {
    let mut errors = Vec::new();
    let gap = duration_field("gap", input.gap.as_ref(), GAP_MS, &mut errors);
    let min_kills = count_field(
        "min_kills",
        input.min_kills.as_ref(),
        MIN_KILLS,
        &mut errors,
    );
    let min_pilots = count_field(
        "min_pilots",
        input.min_pilots.as_ref(),
        MIN_PILOTS,
        &mut errors,
    );
    let window = duration_field(
        "reopen_window",
        input.reopen_window.as_ref(),
        REOPEN_WINDOW_MS,
        &mut errors,
    );
    if let (Some(g), Some(w)) = (gap, window)
        && w < g
    {
        errors.push(FieldError {
            field: "reopen_window",
            message: format!(
                "reopen_window ({}) must be at least the gap ({}): a late kill could not reach a battle that has not ended yet",
                duration_text(w),
                duration_text(g)
            ),
        });
    }
    match (gap, min_kills, min_pilots, window) {
        (Some(gap_ms), Some(min_kills), Some(min_pilots), Some(reopen_window_ms))
            if errors.is_empty() =>
        {
            Ok(ClustererSettings {
                gap_ms,
                min_kills,
                min_pilots,
                reopen_window_ms,
            })
        }
        _ => Err(errors),
    }
}

/// The operator's stored settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub settings: ClustererSettings,
    pub changed_by: Option<String>,
    pub changed_at_ms: i64,
}

/// The stored settings, if any.
pub async fn load_stored(db: &Database) -> anyhow::Result<Option<Stored>> {
    let row = sqlx::query(
        "SELECT gap_ms, min_kills, min_pilots, reopen_window_ms, changed_by, changed_at FROM clusterer_settings WHERE id = 1",
    )
    .fetch_optional(db.pool())
    .await?;
    let Some(r) = row else { return Ok(None) };
    let count = |i: usize| -> anyhow::Result<u32> {
        Ok(u32::try_from(r.try_get::<i64, _>(i)?).unwrap_or(u32::MAX))
    };
    Ok(Some(Stored {
        settings: ClustererSettings {
            gap_ms: r.try_get(0)?,
            min_kills: count(1)?,
            min_pilots: count(2)?,
            reopen_window_ms: r.try_get(3)?,
        },
        changed_by: r.try_get(4)?,
        changed_at_ms: r.try_get(5)?,
    }))
}

async fn save_stored(db: &Database, s: &Stored) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO clusterer_settings (id, gap_ms, min_kills, min_pilots, reopen_window_ms, changed_by, changed_at) \
         VALUES (1, $1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO UPDATE SET gap_ms = excluded.gap_ms, min_kills = excluded.min_kills, \
         min_pilots = excluded.min_pilots, reopen_window_ms = excluded.reopen_window_ms, \
         changed_by = excluded.changed_by, changed_at = excluded.changed_at",
    )
    .bind(s.settings.gap_ms)
    .bind(i64::from(s.settings.min_kills))
    .bind(i64::from(s.settings.min_pilots))
    .bind(s.settings.reopen_window_ms)
    .bind(s.changed_by.clone())
    .bind(s.changed_at_ms)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The settings in force: the stored ones, else the configuration's.
pub async fn effective(
    db: &Database,
    config: &BattleConfig,
) -> anyhow::Result<(ClustererSettings, Option<Stored>)> {
    let stored = load_stored(db).await?;
    let settings = match &stored {
        Some(s) => s.settings,
        None => ClustererSettings::from_config(config)?,
    };
    Ok((settings, stored))
}

/// The `clusterer_applied` row: which settings the clusterer last ran with, since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub fingerprint: String,
    /// Kill time from which stored battles were (re)built with them.
    pub since_ms: i64,
    /// Wall-clock time they were applied.
    pub applied_at_ms: i64,
}

async fn load_applied(db: &Database) -> anyhow::Result<Option<Applied>> {
    let row =
        sqlx::query("SELECT settings, since_ms, applied_at FROM clusterer_applied WHERE id = 1")
            .fetch_optional(db.pool())
            .await?;
    row.map(|r| {
        Ok(Applied {
            fingerprint: r.try_get(0)?,
            since_ms: r.try_get(1)?,
            applied_at_ms: r.try_get(2)?,
        })
    })
    .transpose()
}

/// Records that the clusterer now runs with `settings`, rebuilt from kill time `since_ms`
/// (`None`: nothing stored yet). Idempotent: the same settings again change nothing. The
/// first record of a database (before this table existed) assumes its battles were built
/// with the settings it starts with.
pub async fn record_applied(
    db: &Database,
    settings: &EngineSettings,
    since_ms: Option<i64>,
    now_ms: i64,
) -> anyhow::Result<()> {
    let fp = fingerprint(settings);
    let since = match load_applied(db).await? {
        Some(a) if a.fingerprint == fp => return Ok(()),
        Some(_) => since_ms.unwrap_or(i64::MIN),
        None => i64::MIN,
    };
    sqlx::query(
        "INSERT INTO clusterer_applied (id, settings, since_ms, applied_at) VALUES (1, $1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, since_ms = excluded.since_ms, applied_at = excluded.applied_at",
    )
    .bind(fp)
    .bind(since)
    .bind(now_ms)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Whether the stored battles match the settings in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SettingsStatus {
    /// Live battles that started before `applied_since` and no recluster with the current
    /// settings covered since.
    pub battles_with_older_settings: i64,
    /// The kill time from which battles were (re)built with the current settings (`None`:
    /// every stored battle was).
    pub applied_since: Option<chrono::DateTime<chrono::Utc>>,
    pub applied_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// [`SettingsStatus`] for the settings in force.
pub async fn status(db: &Database, current: &EngineSettings) -> anyhow::Result<SettingsStatus> {
    let fp = fingerprint(current);
    let Some(a) = load_applied(db).await?.filter(|a| a.fingerprint == fp) else {
        // Not recorded yet (the service records on start): nothing is known to be older.
        return Ok(SettingsStatus {
            battles_with_older_settings: 0,
            applied_since: None,
            applied_at: None,
        });
    };
    let (n,): (i64,) = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM battles b WHERE b.status <> 'merged' AND b.start_ms < $1 \
         AND NOT EXISTS (SELECT 1 FROM recluster_runs r WHERE r.status = 'completed' AND r.dry_run = 0 \
           AND r.settings = $2 AND r.started_at >= $3 \
           AND r.window_from_ms <= b.start_ms AND r.window_to_ms >= b.end_ms)",
    )
    .bind(a.since_ms)
    .bind(fp)
    .bind(a.applied_at_ms)
    .fetch_one(db.pool())
    .await?;
    Ok(SettingsStatus {
        battles_with_older_settings: n,
        applied_since: (a.since_ms != i64::MIN).then(|| ms_to_time(a.since_ms)),
        applied_at: Some(ms_to_time(a.applied_at_ms)),
    })
}

/// What the settings routes share.
#[derive(Clone)]
pub struct SettingsState {
    pub battles: Arc<Battles>,
    pub db: Database,
    pub config: BattleConfig,
    /// One change at a time (store, apply, record).
    pub changing: Arc<tokio::sync::Mutex<()>>,
}

pub fn router(state: SettingsState) -> Router {
    Router::new()
        .route(
            "/settings",
            get(get_settings).put(put_settings).delete(delete_settings),
        )
        .with_state(state)
}

fn internal(e: anyhow::Error) -> Response {
    tracing::error!(error = %e, "battle settings api error");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": "internal error"})),
    )
        .into_response()
}

/// The `GET /settings` document.
pub async fn document(s: &SettingsState) -> anyhow::Result<Value> {
    let (settings, stored) = effective(&s.db, &s.config).await?;
    let config = ClustererSettings::from_config(&s.config)?;
    let status = status(&s.db, &s.battles.settings()).await?;
    Ok(json!({
        "effective": settings.to_json(),
        "source": if stored.is_some() { "stored" } else { "config" },
        "changed_by": stored.as_ref().and_then(|s| s.changed_by.clone()),
        "changed_at": stored.as_ref().map(|s| ms_to_time(s.changed_at_ms)),
        "config": config.to_json(),
        "running": s.battles.settings() == settings.engine(),
        "bounds": {
            "gap": [duration_text(GAP_MS.0), duration_text(GAP_MS.1)],
            "reopen_window": [duration_text(REOPEN_WINDOW_MS.0), duration_text(REOPEN_WINDOW_MS.1)],
            "min_kills": [MIN_KILLS.0, MIN_KILLS.1],
            "min_pilots": [MIN_PILOTS.0, MIN_PILOTS.1],
        },
        "battles_with_older_settings": status.battles_with_older_settings,
        "applied_since": status.applied_since,
        "applied_at": status.applied_at,
    }))
}

async fn get_settings(State(s): State<SettingsState>) -> Response {
    match document(&s).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => internal(e),
    }
}

/// Applies `settings` to the running clusterer and records it.
async fn apply(s: &SettingsState, settings: &ClustererSettings) -> anyhow::Result<()> {
    let engine = settings.engine();
    let since = s.battles.apply_settings(engine.clone()).await?;
    let now = s.battles.clock().now().timestamp_millis();
    record_applied(&s.db, &engine, since, now).await
}

async fn put_settings(State(s): State<SettingsState>, body: axum::body::Bytes) -> Response {
    let input: SettingsInput = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_settings", "message": format!("the body is not a settings object: {e}")})),
            )
                .into_response();
        }
    };
    let settings = match validate(&input) {
        Ok(v) => v,
        Err(errors) => {
            let message = errors
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_settings", "message": message, "errors": errors})),
            )
                .into_response();
        }
    };
    let _one = s.changing.lock().await;
    let stored = Stored {
        settings,
        changed_by: input.changed_by.filter(|a| !a.trim().is_empty()),
        changed_at_ms: s.battles.clock().now().timestamp_millis(),
    };
    let work = async {
        save_stored(&s.db, &stored).await?;
        apply(&s, &settings).await?;
        document(&s).await
    };
    match work.await {
        Ok(v) => {
            tracing::info!(settings = %settings.to_json(), by = ?stored.changed_by, "clusterer settings changed");
            Json(v).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn delete_settings(State(s): State<SettingsState>) -> Response {
    let _one = s.changing.lock().await;
    let work = async {
        sqlx::query("DELETE FROM clusterer_settings WHERE id = 1")
            .execute(s.db.pool())
            .await?;
        let config = ClustererSettings::from_config(&s.config)?;
        apply(&s, &config).await?;
        document(&s).await
    };
    match work.await {
        Ok(v) => {
            tracing::info!("clusterer settings reverted to the configuration");
            Json(v).into_response()
        }
        Err(e) => internal(e),
    }
}
