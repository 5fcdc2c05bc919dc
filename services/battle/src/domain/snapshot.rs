//! One battle's sides and report from its killmails, and the event summary of its sides.
//! Pure: the same killmails and overrides give the same result in any order.

use bs_clustering::{
    BattleReport, ClusterKill, SideOverride, SideSettings, assign_sides, build_report,
};
use bs_events::BattleSideSnapshot;

use super::adapter::StoredKill;
use super::geo::Geo;

/// Main alliances/corporations listed per side in events.
pub const MAIN_ENTITIES: usize = 5;

/// Sides + report, with regions and security types filled from `geo`.
pub fn report(kills: &[StoredKill], overrides: &[SideOverride], geo: &Geo) -> BattleReport {
    for k in kills {
        geo.learn(k.kill.system_id, k.region_id, k.security_status);
    }
    let refs: Vec<&ClusterKill> = kills.iter().map(|k| &k.kill).collect();
    let sides = assign_sides(&refs, overrides, &SideSettings::default());
    let mut report = build_report(&refs, &sides);
    report.annotate_systems(geo);
    report
}

fn id(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// The per-side summary events carry.
pub fn side_snapshots(report: &BattleReport) -> Vec<BattleSideSnapshot> {
    report
        .sides
        .iter()
        .map(|s| BattleSideSnapshot {
            index: u32::try_from(s.index).unwrap_or(u32::MAX),
            pilots: s.pilots,
            kills: s.kills,
            losses: s.losses,
            isk_destroyed: s.isk_destroyed,
            isk_lost: s.isk_lost,
            alliance_ids: s
                .alliance_ids
                .iter()
                .take(MAIN_ENTITIES)
                .map(|&x| id(x))
                .collect(),
            corporation_ids: s
                .corporation_ids
                .iter()
                .take(MAIN_ENTITIES)
                .map(|&x| id(x))
                .collect(),
        })
        .collect()
}
