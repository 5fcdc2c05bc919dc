//! Ship history off the live path.
//!
//! Every killmail adds one `pilot_ship_history` line per pilot and ship (the victim's marked
//! lost). That table is keyed by character, so its inserts land all over its two b-trees:
//! 10–15 µs a line on SQLite here, ≈ 9 ms for a 600-pilot killmail — most of a live update.
//! So a small batch (a live killmail) *queues* each killmail's lines as one row of
//! `ship_history_queue`, keyed by killmail and written in the killmail's transaction, and the
//! lines are *moved* into `pilot_ship_history` in bulk later:
//!
//! * by the service's background task while the consumer is idle ([`move_queued`] in short
//!   transactions, so a live update never waits long for the write lock);
//! * inline by a batch that is big anyway (a backlog: [`INLINE_MIN_KILLS`]) or that finds the
//!   queue over [`QUEUE_CAP`];
//! * inline by anything that reads `pilot_ship_history` by killmail inside a transaction
//!   (participants of kills from outside the batch, member rebuilds): [`Moved::ensure`].
//!
//! Nothing is lost on a crash: the queue row commits with the killmail, and a move deletes
//! queue rows in the transaction that inserts their lines (both idempotent). The ships endpoint
//! reads the queue as well as the table, so it never misses a killmail.

use std::collections::BTreeMap;

use bs_clustering::ClusterKill;
use bs_store::sqlx::{self, AnyConnection, Row};
use bs_store::{Backend, StoreResult, dynamic_sql};

use super::{Ph, StoredKill, chunked, i, insert_values};

/// Batches of at least this many killmails write their history inline (and move the queue).
pub(super) const INLINE_MIN_KILLS: usize = 64;
/// Queued killmails (an estimate) past which even a small batch moves the queue inline.
pub(super) const QUEUE_CAP: usize = 5_000;
/// Queue rows read per statement while moving.
const MOVE_CHUNK: usize = 256;

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
fn encode(lines: &[Line]) -> Vec<u8> {
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

fn decode(bytes: &[u8]) -> Vec<Line> {
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

    pub fn add_kill(&mut self, k: &StoredKill) {
        let km = &k.kill;
        self.add(
            i(km.killmail_id),
            km.time_ms,
            i64::from(km.system_id),
            &lines(km),
        );
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
/// empty or at least `max_lines` lines moved; returns (killmails, lines) moved.
pub(super) async fn move_queued(
    conn: &mut AnyConnection,
    backend: Backend,
    max_lines: usize,
) -> StoreResult<(usize, usize)> {
    let (mut killmails, mut moved) = (0, 0);
    while moved < max_lines {
        let rows = sqlx::query(
            "SELECT killmail_id, time_ms, system_id, lines FROM ship_history_queue ORDER BY killmail_id LIMIT $1",
        )
        // Lines per killmail average ~6: a small budget reads few rows at a time.
        .bind((max_lines / 64).clamp(1, MOVE_CHUNK) as i64)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            break;
        }
        let mut batch = Rows::default();
        let mut ids = Vec::with_capacity(rows.len());
        for r in &rows {
            let q = queued(r)?;
            batch.add(q.killmail_id, q.time_ms, q.system_id, &q.lines);
            ids.push(q.killmail_id);
        }
        moved += batch.len();
        killmails += ids.len();
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
    }
    Ok((killmails, moved))
}

/// Every queued killmail (the ships endpoint filters them; the queue is short).
pub(super) async fn all_queued(conn: &mut AnyConnection) -> StoreResult<Vec<Queued>> {
    let rows = sqlx::query("SELECT killmail_id, time_ms, system_id, lines FROM ship_history_queue")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(queued).collect()
}

/// Whether this transaction has moved the whole queue: from then on `pilot_ship_history` is
/// complete for the rest of it, and its own killmails' lines are written directly.
#[derive(Debug, Default)]
pub(super) struct Moved {
    done: bool,
    /// Killmails this transaction queued while the queue was not moved.
    pub queued: usize,
}

impl Moved {
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Moves the whole queue once, so `pilot_ship_history` is complete for what follows in
    /// this transaction.
    pub async fn ensure(&mut self, conn: &mut AnyConnection, backend: Backend) -> StoreResult<()> {
        if !self.done {
            move_queued(conn, backend, usize::MAX).await?;
            self.done = true;
            self.queued = 0;
        }
        Ok(())
    }
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
