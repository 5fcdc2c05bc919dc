//! `GET /api/lifecycle`: the data lifecycle at a glance, aggregated from the services' own
//! `/lifecycle` documents through the BFF clients (in-process or HTTP alike):
//!
//! * ingestion: the last verified day, the latest verification of recent days (expected,
//!   stored, repaired, still missing), queued days and gaps; its retention runs;
//! * battle: retention runs and re-clustering runs;
//! * enrichment: retention runs of the enriched killmails;
//! * notification: retention runs of the history;
//! * authentication: retention runs of the audit log (rule `audit_log_days`, in days).
//!
//! A service that is down or not deployed is listed in `unavailable` and the rest is still
//! answered (the dashboard panel degrades, it never fails). The dashboard shows a
//! [`Panel`] built from the same document.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use bs_config::ServiceName;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AppState;
use crate::clients::Upstreams;

/// One retention run, from any service.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RetentionRun {
    pub service: String,
    pub kind: String,
    pub cutoff: String,
    pub started_at: String,
    pub deleted: i64,
    pub batches: i64,
    pub status: String,
}

/// One day's latest verification.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DayVerification {
    pub day: String,
    pub zkb_total: Option<i64>,
    pub expected: i64,
    pub stored: i64,
    pub repaired: i64,
    pub still_missing: i64,
    pub filtered: i64,
    pub status: String,
    pub verified_at: String,
}

/// `GET /api/lifecycle`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Lifecycle {
    pub last_verified_day: Option<String>,
    /// Newest first.
    pub verification: Vec<DayVerification>,
    /// Days still missing killmails, failed, or queued as gaps.
    pub gaps: Vec<String>,
    pub queued_days: Vec<String>,
    /// Newest first, all services.
    pub retention_runs: Vec<RetentionRun>,
    /// The retention rules, `service.kind` → months, or days where the kind ends in `_days`
    /// (0: kept forever).
    pub retention_rules: std::collections::BTreeMap<String, u64>,
    pub recluster_runs: Vec<Value>,
    /// Services whose document could not be read, with the reason.
    pub unavailable: Vec<String>,
}

fn runs_of(service: &str, v: Option<&Value>) -> Vec<RetentionRun> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| serde_json::from_value::<RetentionRun>(r.clone()).ok())
                .map(|mut r| {
                    r.service = service.to_owned();
                    r
                })
                .collect()
        })
        .unwrap_or_default()
}

fn rules_of(service: &str, v: Option<&Value>, out: &mut std::collections::BTreeMap<String, u64>) {
    if let Some(m) = v.and_then(Value::as_object) {
        for (k, n) in m {
            if let Some(n) = n.as_u64() {
                out.insert(format!("{service}.{k}"), n);
            }
        }
    }
}

/// Pure: the document from the services' answers (`Err`: unavailable, with the reason).
pub fn combine(
    ingestion: Result<Value, String>,
    enrichment: Result<Value, String>,
    battle: Result<Value, String>,
    notification: Result<Value, String>,
    authentication: Result<Value, String>,
) -> Lifecycle {
    let mut out = Lifecycle::default();
    match ingestion {
        Ok(v) => {
            let ver = &v["verification"];
            out.last_verified_day = ver["last_verified_day"].as_str().map(str::to_owned);
            out.verification = ver["days"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| serde_json::from_value(d.clone()).ok())
                        .collect()
                })
                .unwrap_or_default();
            out.gaps = ver["gaps"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            out.queued_days = ver["queued"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|q| q["day"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            out.retention_runs
                .extend(runs_of("ingestion", v["retention"].get("runs")));
            rules_of(
                "ingestion",
                v["retention"].get("rules"),
                &mut out.retention_rules,
            );
        }
        Err(e) => out.unavailable.push(format!("ingestion: {e}")),
    }
    match enrichment {
        Ok(v) => {
            out.retention_runs
                .extend(runs_of("enrichment", v.get("retention_runs")));
            rules_of("enrichment", v.get("rules"), &mut out.retention_rules);
        }
        Err(e) => out.unavailable.push(format!("enrichment: {e}")),
    }
    match battle {
        Ok(v) => {
            out.retention_runs
                .extend(runs_of("battle", v.get("retention_runs")));
            rules_of("battle", v.get("rules"), &mut out.retention_rules);
            out.recluster_runs = v["recluster_runs"].as_array().cloned().unwrap_or_default();
        }
        Err(e) => out.unavailable.push(format!("battle: {e}")),
    }
    match notification {
        Ok(v) => {
            out.retention_runs
                .extend(runs_of("notification", v.get("retention_runs")));
            rules_of("notification", v.get("rules"), &mut out.retention_rules);
        }
        Err(e) => out.unavailable.push(format!("notification: {e}")),
    }
    match authentication {
        Ok(v) => {
            out.retention_runs
                .extend(runs_of("authentication", v.get("retention_runs")));
            rules_of("authentication", v.get("rules"), &mut out.retention_rules);
        }
        Err(e) => out.unavailable.push(format!("authentication: {e}")),
    }
    out.retention_runs
        .sort_by(|a, b| b.started_at.cmp(&a.started_at).then(a.kind.cmp(&b.kind)));
    out
}

/// Reads the services (concurrently) and combines their documents.
pub async fn gather(upstreams: &Upstreams) -> Lifecycle {
    let get = |s: ServiceName| async move {
        upstreams
            .json::<Value>(s, "/lifecycle", false)
            .await
            .map_err(|e| e.to_string())
    };
    let (i, e, b, n, a) = tokio::join!(
        get(ServiceName::Ingestion),
        get(ServiceName::Enrichment),
        get(ServiceName::Battle),
        get(ServiceName::Notification),
        get(ServiceName::Authentication)
    );
    combine(i, e, b, n, a)
}

async fn lifecycle(State(state): State<AppState>) -> Json<Lifecycle> {
    Json(gather(&state.upstreams).await)
}

/// `GET /api/lifecycle`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/lifecycle", get(lifecycle))
}

/// What the dashboard panel shows.
#[derive(Clone, Debug, Default)]
pub struct Panel {
    pub last_verified_day: String,
    /// (day, expected, stored, repaired, still missing, status), newest first, at most 7.
    pub days: Vec<(String, i64, i64, i64, i64, String)>,
    pub gaps: Vec<String>,
    /// (service, kind, started, deleted, status), at most 6.
    pub runs: Vec<(String, String, String, i64, String)>,
    pub unavailable: Vec<String>,
}

impl From<&Lifecycle> for Panel {
    fn from(l: &Lifecycle) -> Self {
        Self {
            last_verified_day: l
                .last_verified_day
                .clone()
                .unwrap_or_else(|| "never".into()),
            days: l
                .verification
                .iter()
                .take(7)
                .map(|d| {
                    (
                        d.day.clone(),
                        d.expected,
                        d.stored,
                        d.repaired,
                        d.still_missing,
                        d.status.clone(),
                    )
                })
                .collect(),
            gaps: l.gaps.clone(),
            runs: l
                .retention_runs
                .iter()
                .take(6)
                .map(|r| {
                    (
                        r.service.clone(),
                        r.kind.clone(),
                        r.started_at.chars().take(16).collect(),
                        r.deleted,
                        r.status.clone(),
                    )
                })
                .collect(),
            unavailable: l.unavailable.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_combine_and_a_missing_service_degrades() {
        let ing = json!({
            "verification": {"last_verified_day": "2021-11-30", "gaps": ["2021-11-29"],
                "queued": [{"day": "2021-11-29", "reason": "gap"}],
                "days": [{"day": "2021-11-30", "expected": 10, "stored": 8, "repaired": 2, "still_missing": 0, "status": "complete"}]},
            "retention": {"rules": {"raw_killmails": 60}, "runs": [{"kind": "raw_killmails", "started_at": "2026-12-01T02:00:00Z", "deleted": 5, "status": "completed"}]}
        });
        let bat = json!({"rules": {"battles": 60}, "retention_runs": [{"kind": "battles", "started_at": "2026-12-01T02:00:01Z", "deleted": 1, "status": "completed"}], "recluster_runs": []});
        let enr = json!({"rules": {"enriched_killmails": 60}, "retention_runs": []});
        let auth = json!({"rules": {"audit_log_days": 90}, "retention_runs": [{"kind": "audit_log", "started_at": "2026-12-01T02:00:02Z", "deleted": 3, "status": "completed"}]});
        let l = combine(
            Ok(ing),
            Ok(enr),
            Ok(bat),
            Err("not deployed".into()),
            Ok(auth),
        );
        assert_eq!(l.last_verified_day.as_deref(), Some("2021-11-30"));
        assert_eq!(l.verification[0].repaired, 2);
        assert_eq!(l.gaps, vec!["2021-11-29"]);
        assert_eq!(l.queued_days, vec!["2021-11-29"]);
        assert_eq!(
            l.retention_runs
                .iter()
                .map(|r| (r.service.as_str(), r.deleted))
                .collect::<Vec<_>>(),
            vec![("authentication", 3), ("battle", 1), ("ingestion", 5)]
        );
        assert_eq!(l.retention_rules["authentication.audit_log_days"], 90);
        assert_eq!(l.retention_rules["ingestion.raw_killmails"], 60);
        assert_eq!(l.retention_rules["enrichment.enriched_killmails"], 60);
        assert_eq!(l.unavailable, vec!["notification: not deployed"]);
        let p = Panel::from(&l);
        assert_eq!(p.days.len(), 1);
        assert_eq!(p.runs.len(), 3);
    }
}
