//! Ship history off the write path.
//!
//! Every killmail adds one `pilot_ship_history` line per pilot and ship (the victim's marked
//! lost). That table is keyed by character, so inserts land all over its b-tree: a batch of
//! killmails dirties a page per pilot, and every transaction writes each page it dirtied to the
//! WAL again. Inserting line by line with each batch rewrote most of the table's pages on
//! every batch of a backlog (≈ 10–15 µs a line here; 400 k WAL frames for the 79 k week).
//! So every batch *queues* each killmail's lines as one row of `ship_history_queue`, keyed by
//! killmail (appends), in the killmail's transaction, and the lines are *moved* into
//! `pilot_ship_history` in bulk, sorted by the table's key so each page is written once per
//! move:
//!
//! * by the service's background task while the consumer is idle ([`move_queued`] in short
//!   transactions, so a live update never waits long for the write lock);
//! * by a batch that finds the queue at [`QUEUE_CAP`] (a backlog, which is never idle), in
//!   one transaction after its own.
//!
//! Nothing reads `pilot_ship_history` to cluster: a battle's participants come from each
//! killmail's own lines, stored with it (`killmails.pilots`, the same encoding). Nothing is
//! lost on a crash: the queue row commits with the killmail, and a move deletes queue rows in
//! the transaction that inserts their lines (both idempotent). The ships endpoint reads the
//! queue as well as the table, so it never misses a killmail.

use std::collections::BTreeMap;

use bs_clustering::ClusterKill;
use bs_store::sqlx::{self, AnyConnection, Row};
use bs_store::{Backend, StoreResult, dynamic_sql};

use super::{Ph, StoredKill, chunked, i, insert_values};

/// Queued killmails (≈ 6 lines each) at which a batch moves the whole queue. The larger, the
/// fewer times a move rewrites the table's pages during a backlog; it bounds the memory of a
/// move (≈ 100 bytes a line) and the queue the ships endpoint scans.
pub(super) const QUEUE_CAP: usize = 20_000;
/// Queue rows read per statement while moving.
const MOVE_CHUNK: usize = 1024;

/// One line: a pilot on a killmail in one ship.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Line {
    pub character_id: i64,
    pub ship_type_id: i64,
    pub lost: bool,
    pub corporation_id: Option<i64>,
    pub alliance_id: Option<i64>,
}

/// A killmail's lines, one per (character, ship): the victim (lost) first, then each
/// attacker's first line (NPCs and lines without a character have none).
pub(super) fn lines(kill: &ClusterKill) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::with_capacity(kill.attackers.len() + 1);
    let mut seen = std::collections::HashSet::with_capacity(kill.attackers.len() + 1);
    if let Some(ch) = kill.victim.character_id {
        let ship = i64::from(kill.victim.ship.type_id);
        seen.insert((i(ch), ship));
        out.push(Line {
            character_id: i(ch),
            ship_type_id: ship,
            lost: true,
            corporation_id: kill.victim.corporation_id.map(i),
            alliance_id: kill.victim.alliance_id.map(i),
        });
    }
    for a in kill.attackers.iter().filter(|a| !a.is_npc) {
        let Some(ch) = a.character_id else { continue };
        let ship = a.ship.map_or(0, |s| i64::from(s.type_id));
        if seen.insert((i(ch), ship)) {
            out.push(Line {
                character_id: i(ch),
                ship_type_id: ship,
                lost: false,
                corporation_id: a.corporation_id.map(i),
                alliance_id: a.alliance_id.map(i),
            });
        }
    }
    out
}

const LINE_BYTES: usize = 5 * 8;

/// Five little-endian i64 per line; 0 stands for "none" (no EVE id is 0).
pub(super) fn encode(lines: &[Line]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() * LINE_BYTES);
    for l in lines {
        for v in [
            l.character_id,
            l.ship_type_id,
            i64::from(l.lost),
            l.corporation_id.unwrap_or(0),
            l.alliance_id.unwrap_or(0),
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

pub(super) fn decode(bytes: &[u8]) -> Vec<Line> {
    let field = |c: &[u8], n: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&c[n * 8..n * 8 + 8]);
        i64::from_le_bytes(b)
    };
    let some = |v: i64| (v != 0).then_some(v);
    bytes
        .chunks_exact(LINE_BYTES)
        .map(|c| Line {
            character_id: field(c, 0),
            ship_type_id: field(c, 1),
            lost: field(c, 2) != 0,
            corporation_id: some(field(c, 3)),
            alliance_id: some(field(c, 4)),
        })
        .collect()
}

/// The lines of some killmails, ready to insert: keyed (character, killmail, ship) as the
/// table is, with (time, system) of their killmail.
#[derive(Default)]
pub(super) struct Rows(BTreeMap<(i64, i64, i64), (i64, i64, Line)>);

impl Rows {
    pub fn add(&mut self, killmail_id: i64, time_ms: i64, system_id: i64, lines: &[Line]) {
        for l in lines {
            self.0
                .entry((l.character_id, killmail_id, l.ship_type_id))
                .or_insert((time_ms, system_id, *l));
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Inserts the rows (sorted by the table's key, so neighbouring inserts share pages).
    pub async fn write(self, conn: &mut AnyConnection, backend: Backend) -> StoreResult<()> {
        let rows: Vec<_> = self.0.into_iter().collect();
        insert_values(
            conn,
            backend,
            (
                "INSERT INTO pilot_ship_history (character_id, killmail_id, ship_type_id, time_ms, system_id, lost, corporation_id, alliance_id)",
                "ON CONFLICT (character_id, killmail_id, ship_type_id) DO NOTHING",
            ),
            8,
            &rows,
            |q, ((ch, km, ship), (t, sys, l))| {
                q.bind(*ch)
                    .bind(*km)
                    .bind(*ship)
                    .bind(*t)
                    .bind(*sys)
                    .bind(i64::from(l.lost))
                    .bind(l.corporation_id)
                    .bind(l.alliance_id)
            },
        )
        .await
    }
}

/// Queues the lines of these killmails (a killmail queued twice keeps its first row: its
/// lines never change across revisions).
pub(super) async fn queue(
    conn: &mut AnyConnection,
    backend: Backend,
    kills: &[&StoredKill],
) -> StoreResult<()> {
    insert_values(
        conn,
        backend,
        (
            "INSERT INTO ship_history_queue (killmail_id, time_ms, system_id, lines)",
            "ON CONFLICT (killmail_id) DO NOTHING",
        ),
        4,
        kills,
        |q, k| {
            q.bind(i(k.kill.killmail_id))
                .bind(k.kill.time_ms)
                .bind(i64::from(k.kill.system_id))
                .bind(encode(&lines(&k.kill)))
        },
    )
    .await
}

/// A queued killmail as read back.
pub(super) struct Queued {
    pub killmail_id: i64,
    pub time_ms: i64,
    pub system_id: i64,
    pub lines: Vec<Line>,
}

fn queued(row: &sqlx::any::AnyRow) -> StoreResult<Queued> {
    let bytes: Vec<u8> = row.try_get(3)?;
    Ok(Queued {
        killmail_id: row.try_get(0)?,
        time_ms: row.try_get(1)?,
        system_id: row.try_get(2)?,
        lines: decode(&bytes),
    })
}

/// Moves queued killmails into `pilot_ship_history`, oldest ids first, until the queue is
/// empty or at least `max_lines` lines are read; returns (killmails, lines) moved. The lines
/// are inserted in one pass sorted by the table's key, whatever their killmails.
pub(super) async fn move_queued(
    conn: &mut AnyConnection,
    backend: Backend,
    max_lines: usize,
) -> StoreResult<(usize, usize)> {
    let mut batch = Rows::default();
    let mut ids: Vec<i64> = Vec::new();
    let mut after = i64::MIN;
    while batch.len() < max_lines {
        let rows = sqlx::query(
            "SELECT killmail_id, time_ms, system_id, lines FROM ship_history_queue WHERE killmail_id > $1 \
             ORDER BY killmail_id LIMIT $2",
        )
        .bind(after)
        // Lines per killmail average ~6: a small budget reads few rows at a time.
        .bind((max_lines / 6).clamp(1, MOVE_CHUNK) as i64)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0)?;
        for r in &rows {
            let q = queued(r)?;
            batch.add(q.killmail_id, q.time_ms, q.system_id, &q.lines);
            ids.push(q.killmail_id);
        }
    }
    let lines = batch.len();
    batch.write(conn, backend).await?;
    for chunk in chunked(&ids, super::IN_LIST) {
        let mut ph = Ph::new(backend);
        let sql = format!(
            "DELETE FROM ship_history_queue WHERE killmail_id IN ({})",
            ph.list(chunk.len())
        );
        let mut q = sqlx::query(dynamic_sql(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await?;
    }
    Ok((ids.len(), lines))
}

/// The queued killmails that may hold lines of `character_id`: those whose lines contain its
/// 8-byte encoding anywhere (a byte search in the database; the caller filters the lines).
pub(super) async fn queued_with(
    conn: &mut AnyConnection,
    backend: Backend,
    character_id: i64,
) -> StoreResult<Vec<Queued>> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT killmail_id, time_ms, system_id, lines FROM ship_history_queue WHERE instr(lines, $1) > 0"
        }
        Backend::Postgres => {
            "SELECT killmail_id, time_ms, system_id, lines FROM ship_history_queue WHERE position($1 in lines) > 0"
        }
    };
    let rows = sqlx::query(sql)
        .bind(character_id.to_le_bytes().to_vec())
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(queued).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bs_clustering::{ClusterAttacker, ClusterVictim, Ship};

    fn ship(type_id: u32) -> Ship {
        Ship {
            type_id,
            ..Ship::default()
        }
    }

    #[test]
    fn lines_keep_the_victim_and_one_line_per_pilot_and_ship() {
        let attacker = |ch: Option<u64>, t: u32, npc: bool| ClusterAttacker {
            character_id: ch,
            corporation_id: Some(98_000_001),
            alliance_id: None,
            ship: Some(ship(t)),
            is_npc: npc,
            ..ClusterAttacker::default()
        };
        let kill = ClusterKill {
            killmail_id: 7,
            victim: ClusterVictim {
                character_id: Some(90_000_001),
                corporation_id: Some(98_000_002),
                alliance_id: Some(99_000_003),
                ship: ship(587),
                damage_taken: 10,
            },
            attackers: vec![
                attacker(Some(90_000_002), 11_198, false),
                attacker(Some(90_000_002), 11_198, false),
                attacker(Some(90_000_002), 22_456, false),
                attacker(None, 11_198, false),
                attacker(Some(90_000_003), 11_198, true),
            ],
            ..ClusterKill::default()
        };
        let got = lines(&kill);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].lost && got[0].character_id == 90_000_001);
        assert_eq!(got[0].alliance_id, Some(99_000_003));
        assert!(
            got[1..]
                .iter()
                .all(|l| !l.lost && l.character_id == 90_000_002)
        );
        assert_eq!(decode(&encode(&got)), got);
        assert_eq!(got[1].alliance_id, None, "none survives the round trip");
    }
}
