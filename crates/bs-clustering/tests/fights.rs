//! Snapshot tests on real fights: what BattleScope detects (boundaries, systems, kill counts,
//! sides with their main alliances). The same results are documented in
//! docs/design/battle-clustering.md; update both together.

use bs_clustering::model::to_datetime;
use bs_clustering::{
    AdjacencyMap, BattleEvent, BattleId, BattleReport, ClusterKill, ClusterSettings, Clusterer,
    SideSettings, assign_sides, build_report,
};

use crate::support::{Systems, Types, load_jumps, load_kills, repo_killmails, testdata};

pub fn types() -> Types {
    Types::from_subset(&testdata("types.csv")).with_price_csv(&testdata("prices.csv.gz"))
}

pub fn graph() -> AdjacencyMap {
    load_jumps(&testdata("jumps.csv"))
}

/// Loads fixture files: names with a `fight-`/`grind-`/`neighbours-` prefix from this crate's
/// testdata, `repo:` ones from the repository's data/killmails.
pub fn load(files: &[&str]) -> Vec<ClusterKill> {
    let types = types();
    let mut out = Vec::new();
    for f in files {
        let path = match f.strip_prefix("repo:") {
            Some(name) => repo_killmails(name),
            None => testdata(f),
        };
        let (mut k, bad) = load_kills(&path, &types);
        assert_eq!(bad, 0, "{f}: unparsable lines");
        out.append(&mut k);
    }
    out
}

pub fn cluster(kills: &[ClusterKill]) -> Clusterer<AdjacencyMap> {
    let mut c = Clusterer::new(ClusterSettings::default(), graph());
    let _ = c.insert_batch(kills.iter());
    c
}

pub fn report_of(
    c: &Clusterer<AdjacencyMap>,
    kills: &[ClusterKill],
    id: bs_clustering::BattleId,
) -> BattleReport {
    let ids: std::collections::HashSet<u64> = c.killmail_ids(id).into_iter().collect();
    let bk: Vec<&ClusterKill> = kills
        .iter()
        .filter(|k| ids.contains(&k.killmail_id))
        .collect();
    let sides = assign_sides(&bk, &[], &SideSettings::default());
    let mut r = build_report(&bk, &sides);
    r.annotate_systems(&Systems::load(&testdata("systems.csv")));
    r
}

/// One line per battle (≥ `min_kills`), then one indented line per side with its three biggest
/// alliances (by pilots).
pub fn snapshot(kills: &[ClusterKill], min_kills: u32, system: u32) -> String {
    let c = cluster(kills);
    let mut out = String::new();
    for b in c.battles() {
        if b.kills < min_kills || !b.system_ids.contains(&system) {
            continue;
        }
        let r = report_of(&c, kills, b.id);
        out.push_str(&format!(
            "{} {}..{} kills={} systems={:?} pilots={} sides={} multi_party={} one_sided={}\n",
            b.id,
            to_datetime(b.start_ms).format("%m-%d %H:%M:%S"),
            to_datetime(b.end_ms).format("%H:%M:%S"),
            b.kills,
            b.system_ids,
            r.pilots,
            r.sides.len(),
            r.multi_party,
            r.one_sided
        ));
        for s in r
            .sides
            .iter()
            .filter(|s| s.pilots > 0 || s.losses > 0)
            .take(3)
        {
            let top: Vec<String> = s
                .alliances
                .iter()
                .take(3)
                .map(|a| format!("{}:{}", a.id, a.pilots))
                .collect();
            out.push_str(&format!(
                "  side{} pilots={} kills={} losses={} eff={:.2} alliances=[{}]\n",
                s.index,
                s.pilots,
                s.kills,
                s.losses,
                s.efficiency,
                top.join(" ")
            ));
        }
    }
    out
}

/// Compares with `testdata/snapshots/{name}.txt`; `UPDATE_SNAPSHOTS=1` rewrites the file.
fn check(name: &str, files: &[&str], system: u32, min_kills: u32) {
    let kills = load(files);
    let got = snapshot(&kills, min_kills, system);
    let path = testdata(&format!("snapshots/{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &got).expect("write snapshot");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if got != expected {
        println!("--- snapshot {name}:\n{got}---");
    }
    assert_eq!(
        got, expected,
        "snapshot {name} changed (UPDATE_SNAPSHOTS=1 to accept)"
    );
}

#[test]
fn jorund_2021_11_28() {
    check(
        "jorund_2021_11_28",
        &[
            "repo:fight-jorund-2021-11-28.jsonl.gz",
            "neighbours-jorund-o-ivnh-2021-11-28.jsonl.gz",
        ],
        30001046,
        20,
    );
}

#[test]
fn o_ivnh_2021_11_28() {
    check(
        "o_ivnh_2021_11_28",
        &[
            "repo:fight-o-ivnh-2021-11-28.jsonl.gz",
            "neighbours-jorund-o-ivnh-2021-11-28.jsonl.gz",
        ],
        30004049,
        20,
    );
}

#[test]
fn lxq2_t_2021_11_27() {
    check(
        "lxq2_t_2021_11_27",
        &[
            "repo:fight-lxq2-t-2021-11-27.jsonl.gz",
            "neighbours-lxq2-t-2021-11-27.jsonl.gz",
        ],
        30002355,
        20,
    );
}

#[test]
fn uw9b_f_2021_11_30() {
    check(
        "uw9b_f_2021_11_30",
        &["repo:fight-uw9b-f-2021-11-30.jsonl.gz"],
        30001003,
        20,
    );
}

#[test]
fn ec_p8r_2021_11_28() {
    check(
        "ec_p8r_2021_11_28",
        &["fight-ec-p8r-2021-11-28.jsonl.gz"],
        30001984,
        5,
    );
}

#[test]
fn x47l_q_2021_11_30() {
    check(
        "x47l_q_2021_11_30",
        &["fight-x47l-q-2021-11-30.jsonl.gz"],
        30001967,
        5,
    );
}

#[test]
fn m_oee8_2021_11_29() {
    check(
        "m_oee8_2021_11_29",
        &["fight-m-oee8-2021-11-29.jsonl.gz"],
        30000848,
        5,
    );
}

#[test]
fn j105951_shuttle_massacre_is_one_sided() {
    check(
        "j105951_shuttle_massacre_is_one_sided",
        &["fight-massacre-j105951-2021-11-30.jsonl.gz"],
        31000368,
        5,
    );
}

#[test]
fn tama_fw_grind_is_not_one_battle() {
    check(
        "tama_fw_grind_is_not_one_battle",
        &["grind-tama-2021-11-27.jsonl.gz"],
        30002813,
        5,
    );
}

#[test]
fn kourmonen_fw_grind_is_not_one_battle() {
    check(
        "kourmonen_fw_grind_is_not_one_battle",
        &["grind-kourmonen-2021-11-27.jsonl.gz"],
        30003068,
        5,
    );
}

/// The side index of an alliance in a battle's report.
fn side_of_alliance(r: &BattleReport, alliance: u64) -> Option<usize> {
    r.sides
        .iter()
        .find(|s| s.alliance_ids.contains(&alliance))
        .map(|s| s.index)
}

/// The single battle with the most kills in `system`.
fn biggest(
    kills: &[ClusterKill],
    system: u32,
) -> (Clusterer<AdjacencyMap>, bs_clustering::BattleSummary) {
    let c = cluster(kills);
    let b = c
        .battles()
        .into_iter()
        .filter(|b| b.system_ids.contains(&system))
        .max_by_key(|b| b.kills)
        .cloned()
        .expect("a battle");
    (c, b)
}

#[test]
fn jorund_is_one_two_system_battle_with_horde_against_goons() {
    let kills = load(&[
        "repo:fight-jorund-2021-11-28.jsonl.gz",
        "neighbours-jorund-o-ivnh-2021-11-28.jsonl.gz",
    ]);
    let (c, b) = biggest(&kills, 30001046);
    // Jorund and its neighbour Hemin (30001044): the fight spilled through the gate.
    assert_eq!(b.system_ids, vec![30001044, 30001046]);
    assert!(b.kills > 1000, "{}", b.kills);
    let r = report_of(&c, &kills, b.id);
    let horde = side_of_alliance(&r, 99005338).expect("Pandemic Horde");
    let goons = side_of_alliance(&r, 1354830081).expect("Goonswarm");
    assert_ne!(horde, goons);
    assert!(!r.one_sided);
    assert_eq!(r.region_ids, vec![10000012], "Curse");
    assert_eq!(r.security_types, vec![bs_clustering::SecurityType::Nullsec]);
    assert!(
        r.related_links
            .contains(&"https://zkillboard.com/related/30001046/202111281200/".to_owned())
    );
    // Aggregates add up from the rows.
    let kills_sum: u32 = r.sides.iter().map(|s| s.losses).sum::<u32>() + r.unassigned_losses;
    assert_eq!(kills_sum, r.total_kills);
    let isk: f64 = r.sides.iter().map(|s| s.isk_lost).sum();
    assert!((isk - r.total_isk_destroyed).abs() < 1.0 || r.unassigned_losses > 0);
    let timeline_kills: u32 = r.timeline.iter().flat_map(|t| t.losses.iter()).sum();
    assert_eq!(timeline_kills + r.unassigned_losses, r.total_kills);
}

#[test]
fn massacre_is_reported_one_sided() {
    let kills = load(&["fight-massacre-j105951-2021-11-30.jsonl.gz"]);
    let (c, b) = biggest(&kills, 31000368);
    let r = report_of(&c, &kills, b.id);
    assert!(r.one_sided, "one-sided massacre reported as a fight");
    assert_eq!(
        r.security_types,
        vec![bs_clustering::SecurityType::Wormhole]
    );
    let scoring: Vec<_> = r.sides.iter().filter(|s| s.kills > 0).collect();
    assert_eq!(scoring.len(), 1, "only the shooters score");
    // The victims are pilot-less ships of one corporation: no pilots on the losing side.
    assert!(r.sides.iter().any(|s| s.pilots == 0 && s.losses >= 250));
}

#[test]
fn fw_grinds_are_many_short_battles_not_one_day_long_battle() {
    for (file, system) in [
        ("grind-tama-2021-11-27.jsonl.gz", 30002813),
        ("grind-kourmonen-2021-11-27.jsonl.gz", 30003068),
    ] {
        let kills = load(&[file]);
        let c = cluster(&kills);
        let day: Vec<_> = c
            .battles()
            .into_iter()
            .filter(|b| b.system_ids.contains(&system))
            .collect();
        let longest = day.iter().map(|b| b.end_ms - b.start_ms).max().unwrap_or(0);
        let biggest = day.iter().map(|b| b.kills).max().unwrap_or(0);
        assert!(longest < 3 * 3_600_000, "{file}: a {longest} ms battle");
        // The biggest burst is a real evening fight, but well under half of the day.
        assert!(
            (biggest as usize) * 2 < kills.len(),
            "{file}: one battle holds {biggest} of {} kills",
            kills.len()
        );
        // The quiet hours stay out of battles: well under all kills are clustered.
        let clustered: u32 = day.iter().map(|b| b.kills).sum();
        assert!((clustered as usize) < kills.len(), "{file}");
    }
}

#[test]
fn ec_p8r_is_two_battles_with_the_same_enemies() {
    let kills = load(&["fight-ec-p8r-2021-11-28.jsonl.gz"]);
    let c = cluster(&kills);
    let big: Vec<_> = c
        .battles()
        .into_iter()
        .filter(|b| b.kills > 100)
        .cloned()
        .collect();
    assert_eq!(
        big.len(),
        2,
        "the 03:19 and 04:46 engagements are separate battles"
    );
    for b in &big {
        let r = report_of(&c, &kills, b.id);
        assert_ne!(
            side_of_alliance(&r, 1354830081),
            side_of_alliance(&r, 99003214)
        );
    }
    // The first one also spread into G-M4I8 (30001987), one jump away.
    assert_eq!(big[0].system_ids, vec![30001984, 30001987]);
}

#[test]
fn reclustering_with_the_same_settings_changes_nothing_and_keeps_ids() {
    let kills = load(&[
        "fight-ec-p8r-2021-11-28.jsonl.gz",
        "repo:fight-uw9b-f-2021-11-30.jsonl.gz",
    ]);
    // Reverse arrival founds battles on later kills first and renames them as earlier kills
    // arrive: the ids end up those of a one-batch run.
    let mut c = Clusterer::new(ClusterSettings::default(), graph());
    let mut renames = 0;
    for k in kills.iter().rev() {
        renames += c
            .insert(k)
            .iter()
            .filter(|e| matches!(e, BattleEvent::Renamed { .. }))
            .count();
    }
    let before: Vec<_> = c.battles().into_iter().cloned().collect();
    let canonical: Vec<_> = cluster(&kills)
        .battles()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert!(renames > 0, "reverse arrival renames battles");
    assert_eq!(
        before.iter().map(|b| b.id).collect::<Vec<_>>(),
        canonical,
        "ids do not depend on arrival order"
    );
    let partition = c.partition();
    let events = c.recluster(ClusterSettings::default());
    assert!(events.is_empty(), "{events:?}");
    let after: Vec<_> = c.battles().into_iter().cloned().collect();
    assert_eq!(before, after, "same ids, same summaries");
    assert_eq!(c.partition(), partition);
}

#[test]
fn a_rebuild_adopts_the_persisted_ids() {
    let kills = load(&[
        "fight-ec-p8r-2021-11-28.jsonl.gz",
        "repo:fight-uw9b-f-2021-11-30.jsonl.gz",
    ]);
    // A history whose ids are not the earliest kills (ids persisted before ids followed the
    // earliest core kill, or kept by a recluster): each battle named after its second kill.
    let mut live = cluster(&kills);
    let named: Vec<_> = live
        .battles()
        .into_iter()
        .map(|b| (b.id, BattleId(live.killmail_ids(b.id)[1])))
        .collect();
    for &(_, second) in &named {
        assert!(live.adopt_ids([second]).is_empty());
    }
    let persisted: Vec<_> = live.battles().into_iter().map(|b| b.id).collect();
    assert_eq!(persisted, named.iter().map(|&(_, s)| s).collect::<Vec<_>>());
    // A restart rebuilds from the store in one batch, then takes the persisted ids back.
    let mut rebuilt = cluster(&kills);
    assert_ne!(
        rebuilt
            .battles()
            .into_iter()
            .map(|b| b.id)
            .collect::<Vec<_>>(),
        persisted
    );
    let events = rebuilt.adopt_ids(persisted.iter().copied());
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(
        rebuilt
            .battles()
            .into_iter()
            .map(|b| b.id)
            .collect::<Vec<_>>(),
        persisted
    );
    assert_eq!(rebuilt.partition(), live.partition());
    for &id in &persisted {
        assert_eq!(rebuilt.killmail_ids(id), live.killmail_ids(id));
    }
}
