//! Re-clustering a time range: rebuild the battles of `[from, to]` from the stored killmails
//! with the current settings (`battlescope battles recluster`, `POST /admin/recluster`).
//!
//! The range is widened to the clustering reach on both sides and to the full span of every
//! stored battle it touches, the kills of that window are clustered from nothing
//! ([`bs_clustering::Clusterer`], the same core as live clustering), and [`plan`] (pure)
//! matches the new battles to the stored ones:
//!
//! * each new battle takes the id of the oldest stored battle (founding kill time, then id)
//!   among those holding its killmails that no earlier new battle took — an unchanged battle
//!   therefore keeps its id and produces no operation at all;
//! * the other stored battles whose killmails went into a new battle are merged into it
//!   (`battle_aliases`, `battle.merged`; manual side overrides follow, as in live merges);
//! * a new battle with no stored counterpart gets its founding killmail's id (or its smallest
//!   killmail id not already used as a battle id or alias);
//! * a stored battle none of whose killmails forms a battle any more is deleted
//!   (`battle.deleted`, reason `recluster`); its side overrides are kept, so they apply again
//!   if the battle re-forms under the same id.
//!
//! The plan is applied as ordinary store operations ([`BattleOp`]) in one transaction, while the
//! consumer is paused; the in-memory clusterer is then rebuilt from the store. Sides and
//! `battle.updated`/`battle.merged` events follow from the dirty flags through the refresher.
//! A dry run computes and records the same plan and changes nothing.
//!
//! Limits: the window is widened once (a battle reaching past the widened window is not
//! followed further); battles are never split by id — a stored battle that now falls apart
//! keeps its id on its oldest part and the other parts get new ids.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bs_clustering::{BattleId, ClusterKill, Clusterer, TimeMs};
use bs_events::{BattleDeleted, BattleStatus, DeletionReason, Envelope};
use bs_store::sqlx::{self, Row};
use bs_store::{Database, dynamic_sql};
use serde::Serialize;

use crate::consumer::Battles;
use crate::domain::geo::SharedGeo;
use crate::domain::{BattleOp, EngineSettings, Geo};
use crate::store::ChangeSet;

/// Metric names.
pub mod metric {
    /// Counter, label `outcome` (`kept`, `changed`, `created`, `merged`, `deleted`).
    pub const BATTLES: &str = "battlescope_reclustering_battles_total";
    /// Counter, label `mode` (`dry_run`, `apply`).
    pub const RUNS: &str = "battlescope_reclustering_runs_total";
}

/// A stored battle as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBattle {
    pub founding_ms: TimeMs,
    pub status: BattleStatus,
}

/// Everything the planner needs, loaded from the store.
#[derive(Clone, Debug, Default)]
pub struct Input {
    pub kills: Vec<ClusterKill>,
    /// killmail id → stored (live) battle.
    pub battle_of: HashMap<u64, u64>,
    /// The stored live battles touching the window.
    pub battles: HashMap<u64, StoredBattle>,
    /// Every battle id and alias id in use (never reused for a new battle).
    pub used_ids: HashSet<u64>,
    /// The widened window the kills were loaded from (ms, kill time).
    pub window_from_ms: TimeMs,
    pub window_to_ms: TimeMs,
}

/// How one battle changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BattleChange {
    pub battle_id: u64,
    pub kills_before: usize,
    pub kills_after: usize,
    pub added: usize,
    pub removed: usize,
}

/// What a re-clustering does (or would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The window actually clustered (ms, kill time).
    pub window_from_ms: TimeMs,
    pub window_to_ms: TimeMs,
    pub kills: usize,
    /// Battles that stay exactly as stored.
    pub kept: Vec<u64>,
    /// Battles that keep their id with other killmails.
    pub changed: Vec<BattleChange>,
    /// New battles.
    pub created: Vec<BattleChange>,
    /// (absorbed, survivor).
    pub merged: Vec<(u64, u64)>,
    /// Stored battles that no longer exist.
    pub deleted: Vec<u64>,
    #[serde(skip)]
    pub ops: Vec<BattleOp>,
}

impl Plan {
    /// True when applying it changes nothing.
    pub fn is_noop(&self) -> bool {
        self.changed.is_empty()
            && self.created.is_empty()
            && self.merged.is_empty()
            && self.deleted.is_empty()
    }
}

/// Pure: matches the battles the current settings make of `input.kills` to the stored ones and
/// returns the operations that make the store agree (see the module doc).
pub fn plan(settings: &EngineSettings, geo: Arc<Geo>, input: &Input, now_ms: TimeMs) -> Plan {
    let mut clusterer = Clusterer::new(settings.cluster.clone(), SharedGeo(geo));
    let _ = clusterer.insert_batch(input.kills.iter());
    let _ = clusterer.tick(now_ms);
    let mut clusters: Vec<(BattleId, Vec<u64>, TimeMs)> = clusterer
        .battles()
        .iter()
        .map(|b| (b.id, clusterer.killmail_ids(b.id), b.end_ms))
        .collect();
    // Oldest first: an older battle has first claim on its stored id.
    let time_of: HashMap<u64, TimeMs> = input
        .kills
        .iter()
        .map(|k| (k.killmail_id, k.time_ms))
        .collect();
    clusters.sort_by_key(|(id, members, _)| {
        let first = members
            .iter()
            .filter_map(|k| time_of.get(k))
            .min()
            .copied()
            .unwrap_or(TimeMs::MAX);
        (first, id.0)
    });
    let founding = |b: &u64| {
        input
            .battles
            .get(b)
            .map_or((TimeMs::MAX, *b), |s| (s.founding_ms, *b))
    };
    let mut stored_members: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (&k, &b) in &input.battle_of {
        if input.battles.contains_key(&b) {
            stored_members.entry(b).or_default().insert(k);
        }
    }
    let mut taken: HashSet<u64> = HashSet::new();
    let mut used = input.used_ids.clone();
    // (public id, members, end) per new battle.
    let mut assigned: Vec<(u64, BTreeSet<u64>, TimeMs)> = Vec::new();
    for (id, members, end) in &clusters {
        let mut candidates: Vec<u64> = members
            .iter()
            .filter_map(|k| input.battle_of.get(k))
            .copied()
            .filter(|b| input.battles.contains_key(b))
            .collect();
        candidates.sort_by_key(founding);
        candidates.dedup();
        let public = match candidates.iter().find(|c| !taken.contains(c)) {
            Some(&c) => c,
            None => {
                let fresh = std::iter::once(id.0)
                    .chain(members.iter().copied())
                    .find(|k| !used.contains(k))
                    .unwrap_or(id.0);
                used.insert(fresh);
                fresh
            }
        };
        taken.insert(public);
        assigned.push((public, members.iter().copied().collect(), *end));
    }
    let mut out = Plan {
        kills: input.kills.len(),
        window_from_ms: input.window_from_ms,
        window_to_ms: input.window_to_ms,
        ..Plan::default()
    };
    // Stored battles not taken: merged into the new battle holding most of their kills, or gone.
    let mut redirect: HashMap<u64, u64> = HashMap::new();
    for (&b, kills) in &stored_members {
        if taken.contains(&b) {
            continue;
        }
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for (public, members, _) in &assigned {
            let n = members.intersection(kills).count();
            if n > 0 {
                *votes.entry(*public).or_default() += n;
            }
        }
        match votes
            .into_iter()
            .max_by_key(|(p, n)| (*n, std::cmp::Reverse(*p)))
        {
            Some((survivor, _)) => {
                out.merged.push((b, survivor));
                redirect.insert(b, survivor);
            }
            None => out.deleted.push(b),
        }
    }
    for &(absorbed, survivor) in &out.merged {
        out.ops.push(BattleOp::Merge { survivor, absorbed });
    }
    // Membership after the merges, as the store will hold it.
    let mut current: HashMap<u64, u64> = HashMap::new();
    for (&k, &b) in &input.battle_of {
        if input.battles.contains_key(&b) {
            current.insert(k, redirect.get(&b).copied().unwrap_or(b));
        }
    }
    let mut now_members: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (&k, &b) in &current {
        now_members.entry(b).or_default().insert(k);
    }
    let in_new: HashSet<u64> = assigned
        .iter()
        .flat_map(|(_, m, _)| m.iter().copied())
        .collect();
    for (public, members, end) in &assigned {
        let exists = input.battles.contains_key(public);
        let before = now_members.get(public).cloned().unwrap_or_default();
        let added: Vec<u64> = members.difference(&before).copied().collect();
        // Kills leaving: those going to another new battle are moved by its AddKills; the
        // rest (no battle any more) are removed here.
        let removed: Vec<u64> = before
            .difference(members)
            .copied()
            .filter(|k| !in_new.contains(k))
            .collect();
        let leaving = before.difference(members).count();
        let change = BattleChange {
            battle_id: *public,
            kills_before: stored_members.get(public).map_or(0, BTreeSet::len),
            kills_after: members.len(),
            added: added.len(),
            removed: leaving,
        };
        if !exists {
            out.ops.push(BattleOp::Create { battle_id: *public });
            out.created.push(change);
        } else if added.is_empty() && leaving == 0 && !redirect.values().any(|s| s == public) {
            out.kept.push(*public);
            continue;
        } else {
            out.changed.push(change);
        }
        if !removed.is_empty() {
            out.ops.push(BattleOp::RemoveKills {
                battle_id: *public,
                killmail_ids: removed,
            });
        }
        if !added.is_empty() {
            out.ops.push(BattleOp::AddKills {
                battle_id: *public,
                killmail_ids: added,
            });
        }
        if end.saturating_add(settings.cluster.link_gap_ms) < now_ms {
            out.ops.push(BattleOp::SetStatus {
                battle_id: *public,
                status: BattleStatus::Ended,
            });
        }
    }
    out.kept.sort_unstable();
    out.deleted.sort_unstable();
    out
}

fn list(n: usize, start: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Loads the planner's input for `[from_ms, to_ms]` widened by `reach` (see the module doc).
pub async fn load(
    db: &Database,
    from_ms: TimeMs,
    to_ms: TimeMs,
    reach: TimeMs,
) -> anyhow::Result<Input> {
    let pool = db.pool();
    let lo = from_ms.saturating_sub(reach);
    let hi = to_ms.saturating_add(reach);
    let (start, end): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT MIN(start_ms), MAX(end_ms) FROM battles WHERE status <> 'merged' AND end_ms >= $1 AND start_ms <= $2",
    )
    .bind(lo)
    .bind(hi)
    .fetch_one(pool)
    .await?;
    let lo = start.map_or(lo, |s| s.min(lo));
    let hi = end.map_or(hi, |e| e.max(hi));
    let mut input = Input {
        window_from_ms: lo,
        window_to_ms: hi,
        ..Input::default()
    };
    let rows = sqlx::query(
        "SELECT m.data, m.data_zstd, k.battle_id FROM killmails m LEFT JOIN battle_killmails k ON k.killmail_id = m.killmail_id \
         WHERE m.time_ms >= $1 AND m.time_ms <= $2 ORDER BY m.time_ms, m.killmail_id",
    )
    .bind(lo)
    .bind(hi)
    .fetch_all(pool)
    .await?;
    for r in rows {
        let kill = crate::store::stored_kill(&r, 0)?;
        if let Some(b) = r.try_get::<Option<i64>, _>(2)? {
            input.battle_of.insert(kill.killmail_id, b as u64);
        }
        input.kills.push(kill);
    }
    let rows = sqlx::query(
        "SELECT battle_id, founding_ms, status FROM battles WHERE status <> 'merged' AND end_ms >= $1 AND start_ms <= $2",
    )
    .bind(lo)
    .bind(hi)
    .fetch_all(pool)
    .await?;
    for r in rows {
        let status: String = r.try_get(2)?;
        input.battles.insert(
            r.try_get::<i64, _>(0)? as u64,
            StoredBattle {
                founding_ms: r.try_get(1)?,
                status: BattleStatus::parse(&status).unwrap_or(BattleStatus::Active),
            },
        );
    }
    // Ids in use: every battle and alias (a new battle never takes an old id's place).
    let ids: Vec<(i64,)> =
        sqlx::query_as("SELECT battle_id FROM battles UNION SELECT alias_id FROM battle_aliases")
            .fetch_all(pool)
            .await?;
    input.used_ids = ids.into_iter().map(|r| r.0 as u64).collect();
    Ok(input)
}

/// Deletes battles and everything keyed by them (not their killmails), with one
/// `battle.deleted` each through the outbox, in the caller's transaction. Side overrides are
/// kept unless `drop_overrides`.
pub async fn delete_battles(
    conn: &mut sqlx::AnyConnection,
    ids: &[u64],
    reason: DeletionReason,
    drop_overrides: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<usize> {
    let mut deleted = 0;
    for chunk in ids.chunks(16) {
        let l = list(chunk.len(), 1);
        let mut q = sqlx::query(dynamic_sql(format!(
            "SELECT battle_id, end_ms FROM battles WHERE battle_id IN ({l})"
        )));
        for id in chunk {
            q = q.bind(*id as i64);
        }
        let found: Vec<(i64, i64)> = q
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, _>>()?;
        let mut tables = vec![
            "DELETE FROM battle_killmails WHERE battle_id IN ({l})",
            "DELETE FROM battle_systems WHERE battle_id IN ({l})",
            "DELETE FROM battle_participants WHERE battle_id IN ({l})",
            "DELETE FROM battle_sides WHERE battle_id IN ({l})",
            "DELETE FROM battle_aliases WHERE battle_id IN ({l}) OR alias_id IN ({l})",
            "DELETE FROM battles WHERE battle_id IN ({l})",
        ];
        if drop_overrides {
            tables.push("DELETE FROM battle_side_overrides WHERE battle_id IN ({l})");
        }
        for t in tables {
            let mut q = sqlx::query(dynamic_sql(t.replace("{l}", &l)));
            for id in chunk {
                q = q.bind(*id as i64);
            }
            q.execute(&mut *conn).await?;
        }
        for (id, end) in found {
            let event = BattleDeleted {
                battle_id: id,
                end_time: crate::store::ms_to_time(end),
                reason,
            };
            bs_store::outbox::enqueue(conn, &Envelope::wrap(&event, now)?).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// A re-clustering request's result.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub id: String,
    pub dry_run: bool,
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    pub plan: Plan,
}

/// Re-clusters `[from, to]` (kill time); with `dry_run` only reports.
pub async fn recluster(
    battles: &Battles,
    db: &Database,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    dry_run: bool,
) -> anyhow::Result<Report> {
    anyhow::ensure!(from <= to, "from {from} is after to {to}");
    let settings = battles.settings();
    let geo = Arc::clone(battles.geo());
    let clock = Arc::clone(battles.clock());
    let started = clock.now();
    let id = crate::retention::run_id(started);
    let work = async {
        let input = load(
            db,
            from.timestamp_millis(),
            to.timestamp_millis(),
            settings.reach_ms(),
        )
        .await?;
        let now_ms = clock.now().timestamp_millis();
        let geo2 = Arc::clone(&geo);
        let settings2 = settings.clone();
        let mut p =
            tokio::task::spawn_blocking(move || plan(&settings2, geo2, &input, now_ms)).await?;
        if !dry_run && !p.is_noop() {
            battles
                .store()
                .apply(&ChangeSet {
                    ops: std::mem::take(&mut p.ops),
                    now_ms,
                    ..ChangeSet::default()
                })
                .await?;
            if !p.deleted.is_empty() {
                let mut tx = db.begin().await?;
                delete_battles(
                    &mut tx,
                    &p.deleted,
                    DeletionReason::Recluster,
                    false,
                    clock.now(),
                )
                .await?;
                tx.commit().await?;
                db.outbox_notify();
            }
        }
        anyhow::Ok(p)
    };
    let result = if dry_run {
        work.await
    } else {
        battles.exclusive(work).await
    };
    let (status, error, p) = match result {
        Ok(p) => ("completed", None, p),
        Err(e) => ("failed", Some(e.to_string()), Plan::default()),
    };
    sqlx::query(
        "INSERT INTO recluster_runs (id, from_ms, to_ms, dry_run, started_at, finished_at, kept, changed, created, merged, deleted, status, error, settings, window_from_ms, window_to_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(id.clone())
    .bind(from.timestamp_millis())
    .bind(to.timestamp_millis())
    .bind(i64::from(dry_run))
    .bind(started.timestamp_millis())
    .bind(clock.now().timestamp_millis())
    .bind(p.kept.len() as i64)
    .bind(p.changed.len() as i64)
    .bind(p.created.len() as i64)
    .bind(p.merged.len() as i64)
    .bind(p.deleted.len() as i64)
    .bind(status)
    .bind(error.clone())
    // What "built with the current settings" is checked against (crate::settings::status).
    .bind(crate::settings::fingerprint(&settings))
    .bind(p.window_from_ms)
    .bind(p.window_to_ms)
    .execute(db.pool())
    .await?;
    if let Some(e) = error {
        anyhow::bail!(e);
    }
    let mode = if dry_run { "dry_run" } else { "apply" };
    metrics::counter!(metric::RUNS, "mode" => mode).increment(1);
    if !dry_run {
        for (outcome, n) in [
            ("kept", p.kept.len()),
            ("changed", p.changed.len()),
            ("created", p.created.len()),
            ("merged", p.merged.len()),
            ("deleted", p.deleted.len()),
        ] {
            metrics::counter!(metric::BATTLES, "outcome" => outcome).increment(n as u64);
        }
    }
    Ok(Report {
        id,
        dry_run,
        from,
        to,
        plan: p,
    })
}

/// A recorded run, for the lifecycle status.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
    pub dry_run: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub kept: i64,
    pub changed: i64,
    pub created: i64,
    pub merged: i64,
    pub deleted: i64,
    pub status: String,
    pub error: Option<String>,
}

/// The newest runs first.
pub async fn runs(db: &Database, limit: i64) -> anyhow::Result<Vec<RunRecord>> {
    let rows = sqlx::query(
        "SELECT id, from_ms, to_ms, dry_run, started_at, kept, changed, created, merged, deleted, status, error \
         FROM recluster_runs ORDER BY started_at DESC LIMIT $1",
    )
    .bind(limit.clamp(1, 200))
    .fetch_all(db.pool())
    .await?;
    let t = crate::store::ms_to_time;
    rows.iter()
        .map(|r| {
            Ok(RunRecord {
                id: r.try_get(0)?,
                from: t(r.try_get(1)?),
                to: t(r.try_get(2)?),
                dry_run: r.try_get::<i64, _>(3)? != 0,
                started_at: t(r.try_get(4)?),
                kept: r.try_get(5)?,
                changed: r.try_get(6)?,
                created: r.try_get(7)?,
                merged: r.try_get(8)?,
                deleted: r.try_get(9)?,
                status: r.try_get(10)?,
                error: r.try_get(11)?,
            })
        })
        .collect()
}
