//! The search service's own database: the indexer's mirror (see `crate::indexer`), so the
//! activity counters that rank autocomplete survive a restart.
//!
//! Embedded: `<data_dir>/search.db` (SQLite); split: the PostgreSQL database
//! `<prefix>_search` (created if missing). One dialect-neutral SQL text serves both (see
//! `bs_store`). Each batch's [`StateDelta`] is written in one transaction *before* the batch's
//! documents go to the backend, and the consumer commits its offset only after both: a crash
//! in between redelivers a batch whose killmails are already recorded, so nothing is counted
//! twice, and its documents are simply written again.

use bs_config::{Config, ServiceName};
use bs_store::sqlx;
use bs_store::{Database, StoreResult, StoreTarget, dynamic_sql};

use crate::indexer::{BattleState, Entity, EntityKey, EntityKind, StateDelta};

/// Rows per multi-row statement (3 binds each: well below both engines' limits).
const CHUNK: usize = 300;

/// Where the search state lives under `config`: the service's SQLite file, or its own
/// PostgreSQL database next to the other services'.
pub fn target(config: &Config) -> anyhow::Result<StoreTarget> {
    bs_runtime::store_target(config, ServiceName::Search)
}

/// Opens and migrates the search state database.
pub async fn open(config: &Config) -> anyhow::Result<StateStore> {
    let db = Database::open(&target(config)?, config.store.max_connections).await?;
    db.migrate(crate::MIGRATIONS).await?;
    Ok(StateStore { db })
}

/// Everything [`StateStore::load`] read.
#[derive(Debug, Default)]
pub struct Loaded {
    pub entities: Vec<(EntityKey, Entity)>,
    pub killmails: Vec<(i64, u32)>,
    pub battles: Vec<BattleState>,
    /// Rows that could not be decoded (skipped and counted, never fatal).
    pub skipped: usize,
}

/// The mirror's tables over a [`Database`].
#[derive(Clone, Debug)]
pub struct StateStore {
    db: Database,
}

fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl StateStore {
    pub fn new(db: Database) -> StateStore {
        StateStore { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Writes one batch's mirror rows in one transaction.
    pub async fn save(&self, delta: &StateDelta) -> StoreResult<()> {
        if delta.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        for chunk in delta.entities.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO search_entities (kind, id, body) VALUES {} \
                 ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
                placeholders(chunk.len(), 3)
            );
            let mut q = sqlx::query(dynamic_sql(sql));
            for ((kind, id), e) in chunk {
                let body = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
                q = q.bind(kind.code()).bind(*id).bind(body);
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in delta.killmails.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO search_killmails (killmail_id, revision) VALUES {} \
                 ON CONFLICT (killmail_id) DO UPDATE SET revision = excluded.revision",
                placeholders(chunk.len(), 2)
            );
            let mut q = sqlx::query(dynamic_sql(sql));
            for (id, rev) in chunk {
                q = q.bind(*id).bind(i64::from(*rev));
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in delta.battles.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO search_battles (battle_id, revision, state) VALUES {} \
                 ON CONFLICT (battle_id) DO UPDATE SET revision = excluded.revision, \
                 state = excluded.state",
                placeholders(chunk.len(), 3)
            );
            let mut q = sqlx::query(dynamic_sql(sql));
            for b in chunk {
                let state = b
                    .live
                    .as_ref()
                    .and_then(|live| serde_json::to_string(live).ok());
                q = q
                    .bind(b.battle_id)
                    .bind(i64::try_from(b.revision).unwrap_or(i64::MAX))
                    .bind(state);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reads the whole mirror.
    pub async fn load(&self) -> StoreResult<Loaded> {
        let pool = self.db.pool();
        let mut out = Loaded::default();
        let rows: Vec<(i64, i64, String)> =
            sqlx::query_as("SELECT kind, id, body FROM search_entities")
                .fetch_all(pool)
                .await?;
        for (kind, id, body) in rows {
            match (EntityKind::from_code(kind), serde_json::from_str(&body)) {
                (Some(kind), Ok(e)) => out.entities.push(((kind, id), e)),
                _ => out.skipped += 1,
            }
        }
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT killmail_id, revision FROM search_killmails")
                .fetch_all(pool)
                .await?;
        out.killmails = rows
            .into_iter()
            .map(|(id, rev)| (id, u32::try_from(rev).unwrap_or(u32::MAX)))
            .collect();
        let rows: Vec<(i64, i64, Option<String>)> =
            sqlx::query_as("SELECT battle_id, revision, state FROM search_battles")
                .fetch_all(pool)
                .await?;
        for (battle_id, revision, state) in rows {
            let live = match state.map(|s| serde_json::from_str(&s)) {
                None => None,
                Some(Ok(live)) => Some(live),
                Some(Err(_)) => {
                    out.skipped += 1;
                    continue;
                }
            };
            out.battles.push(BattleState {
                battle_id,
                revision: u64::try_from(revision).unwrap_or(0),
                live,
            });
        }
        Ok(out)
    }

    /// Forgets everything (`search reindex` rebuilds the mirror from the bus).
    pub async fn clear(&self) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        for table in ["search_entities", "search_killmails", "search_battles"] {
            sqlx::query(dynamic_sql(format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
