//! The service's storage: the [`AuthStore`] trait and its SQL implementation
//! ([`SqlAuthStore`]), one query text for SQLite and PostgreSQL (see `bs_store`'s SQL
//! rules). The conformance suite in `tests/store_suite.rs` runs against both.
//!
//! Multi-row changes that must not be seen half-done (a new account with its first
//! character and grant, an owner-change detach, a primary switch) run in one
//! transaction. The audit log is append-only (the schema rejects UPDATE/DELETE) and
//! hash-chained; concurrent appends race on the unique `prev_hash` and retry.
//! Retention ([`AuthStore::prune_audit_batch`]) removes only a prefix of the chain, after
//! recording an anchor (seq and hash of the last removed row) the schema requires before
//! it lets a row go; verification then starts from the newest anchor.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bs_store::sqlx::any::AnyRow;
use bs_store::sqlx::{self, Row as _};
use bs_store::{Database, StoreError, StoreResult, from_millis, to_millis};
use chrono::{DateTime, Utc};

use crate::domain::audit::{EntryFields, GENESIS, entry_hash};
use crate::domain::gating::GatingConfig;
use crate::domain::rbac::{Feature, Role};
use crate::model::{
    Account, AccountQuery, AuditEntry, AuditQuery, Character, DetachReport, LoginState, NewAudit,
    SessionRow, TokenRow, TokenStatus,
};

/// Everything the authentication service stores.
#[async_trait]
pub trait AuthStore: Send + Sync + 'static {
    // Accounts.
    /// Creates an account with its first (primary) character, its grant (if any) and
    /// its initial roles, atomically.
    async fn create_account(
        &self,
        account: &Account,
        character: &Character,
        token: Option<&TokenRow>,
        roles: &[(Feature, Role)],
    ) -> StoreResult<()>;
    async fn account(&self, id: &str) -> StoreResult<Option<Account>>;
    async fn list_accounts(&self, q: &AccountQuery) -> StoreResult<(Vec<Account>, i64)>;
    async fn all_account_ids(&self) -> StoreResult<Vec<String>>;
    async fn set_display_name(&self, id: &str, name: &str) -> StoreResult<bool>;
    async fn set_blocked(&self, id: &str, blocked: bool, reason: Option<&str>)
    -> StoreResult<bool>;
    async fn set_super_admin(&self, id: &str, super_admin: bool) -> StoreResult<bool>;
    async fn count_super_admins(&self) -> StoreResult<i64>;
    /// Makes `character_id` (which must be on the account) the primary.
    async fn set_primary(&self, id: &str, character_id: i64) -> StoreResult<bool>;
    async fn record_login(&self, id: &str, at: DateTime<Utc>) -> StoreResult<()>;
    async fn bump_authz(&self, id: &str) -> StoreResult<()>;

    // Characters.
    async fn character(&self, character_id: i64) -> StoreResult<Option<Character>>;
    async fn characters_of(&self, account_id: &str) -> StoreResult<Vec<Character>>;
    /// Adds a character (with its grant) to an existing account.
    async fn attach_character(
        &self,
        character: &Character,
        token: Option<&TokenRow>,
    ) -> StoreResult<()>;
    async fn update_character_identity(
        &self,
        character_id: i64,
        name: &str,
        scopes: &[String],
    ) -> StoreResult<()>;
    async fn update_affiliation(
        &self,
        character_id: i64,
        corporation_id: i64,
        alliance_id: Option<i64>,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Characters whose affiliation was last checked before `before` (never first).
    async fn characters_due_affiliation(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Character>>;
    /// Removes a character and its grant (unlink); the caller checked the rules.
    async fn delete_character(&self, character_id: i64) -> StoreResult<bool>;
    /// Owner change: removes the character and its grant, re-picks the primary if it
    /// was the primary, revokes the sessions through it (all of the account's when it
    /// was the primary, since the gate changed) and bumps the account's authz version.
    async fn detach_character(
        &self,
        character_id: i64,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<DetachReport>>;

    // Tokens.
    async fn upsert_token(&self, token: &TokenRow) -> StoreResult<()>;
    async fn token(&self, character_id: i64) -> StoreResult<Option<TokenRow>>;
    async fn tokens_due(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<Vec<TokenRow>>;
    /// Stores a refreshed grant if the row is still at `expected_version`; returns
    /// whether it did (false: someone else refreshed or the row is gone).
    async fn swap_token(&self, expected_version: i64, token: &TokenRow) -> StoreResult<bool>;
    /// Tombstones a grant; with `expected_version`, only if nobody stored a newer one
    /// since (a replica that lost a refresh race must not kill the winner's grant).
    /// Returns whether it did.
    async fn mark_token_dead(
        &self,
        character_id: i64,
        expected_version: Option<i64>,
        error: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool>;
    async fn record_token_failure(
        &self,
        character_id: i64,
        error: &str,
        retry_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Grants whose ciphertext is not under `active_key_id` (for key rotation).
    async fn tokens_not_under_key(
        &self,
        active_key_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<TokenRow>>;

    // Sessions.
    async fn insert_session(&self, session: &SessionRow) -> StoreResult<()>;
    async fn session(&self, id_hash: &str) -> StoreResult<Option<SessionRow>>;
    async fn touch_session(&self, id_hash: &str, at: DateTime<Utc>) -> StoreResult<()>;
    async fn revoke_session(
        &self,
        id_hash: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Revokes by public id, limited to `account_id` when given (a user's own sessions).
    async fn revoke_session_by_public_id(
        &self,
        public_id: &str,
        account_id: Option<&str>,
        reason: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<SessionRow>>;
    async fn revoke_account_sessions(
        &self,
        account_id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Active (not revoked, not expired at `now`) sessions of an account, newest first.
    async fn sessions_of(
        &self,
        account_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<SessionRow>>;
    /// Deletes sessions that expired or were revoked before `before`.
    async fn purge_sessions(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    // Pending logins.
    async fn insert_login_state(&self, state: &LoginState) -> StoreResult<()>;
    /// Removes and returns the pending login (single use, whatever happens next).
    async fn take_login_state(&self, state_hash: &str) -> StoreResult<Option<LoginState>>;
    async fn purge_login_states(&self, before: DateTime<Utc>) -> StoreResult<u64>;
    async fn count_login_states(&self) -> StoreResult<i64>;

    // Roles.
    async fn roles_of(&self, account_id: &str) -> StoreResult<BTreeMap<Feature, Role>>;
    /// Sets (`Some`) or removes (`None`) an account's role in a feature.
    async fn set_role(
        &self,
        account_id: &str,
        feature: Feature,
        role: Option<Role>,
        granted_by: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;

    // Gating configuration.
    async fn gating_config(&self) -> StoreResult<Option<GatingConfig>>;
    async fn put_gating_config(
        &self,
        config: &GatingConfig,
        by: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;

    // Service secrets.
    /// The stored secret `name`, storing `candidate` first if there is none (the first
    /// replica to start wins; everyone reads the winner).
    async fn secret_or_insert(
        &self,
        name: &str,
        candidate: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<String>;

    // Audit.
    async fn append_audit(&self, entry: &NewAudit, at: DateTime<Utc>) -> StoreResult<AuditEntry>;
    async fn audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEntry>>;
    /// Walks the whole chain; `Ok(n)` when all `n` entries link up, else the first bad `seq`.
    /// After a prune the walk starts from the newest anchor's hash: the first remaining
    /// entry must link to it, and an `audit.pruned` entry naming that anchor must follow
    /// (a forged, mismatched or unattested anchor is reported at the first remaining entry).
    async fn verify_audit_chain(&self) -> StoreResult<Result<u64, i64>>;
    /// One retention batch in one transaction: the longest prefix of the chain (at most
    /// `limit` rows) older than `cutoff` (at most `now`), never the newest entry (the
    /// chain's tail stays); records the anchor, deletes, and appends the `audit.pruned`
    /// entry that attests the anchor. `None` when nothing is due.
    async fn prune_audit_batch(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<AuditAnchor>>;
    /// The newest anchor (`None`: nothing was ever pruned).
    async fn audit_anchor(&self) -> StoreResult<Option<AuditAnchor>>;
}

/// What a prune leaves behind: the last removed entry's seq and hash.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditAnchor {
    pub last_seq: i64,
    pub last_hash: String,
    pub last_at: DateTime<Utc>,
    pub pruned_at: DateTime<Utc>,
    pub cutoff: DateTime<Utc>,
    /// Rows removed by this batch.
    pub pruned: i64,
}

/// The action of the entry each prune batch appends (it attests the batch's anchor).
pub const PRUNED: &str = "audit.pruned";

const ANCHOR_SELECT: &str = "SELECT last_seq, last_hash, last_at, pruned_at, cutoff, pruned FROM audit_log_anchor ORDER BY id DESC LIMIT 1";

fn anchor_row(r: &AnyRow) -> StoreResult<AuditAnchor> {
    Ok(AuditAnchor {
        last_seq: r.try_get("last_seq")?,
        last_hash: r.try_get("last_hash")?,
        last_at: from_millis(r.try_get("last_at")?),
        pruned_at: from_millis(r.try_get("pruned_at")?),
        cutoff: from_millis(r.try_get("cutoff")?),
        pruned: r.try_get("pruned")?,
    })
}

/// [`AuthStore`] over a `bs_store::Database` (SQLite or PostgreSQL).
#[derive(Clone, Debug)]
pub struct SqlAuthStore {
    db: Database,
    /// Serialises audit appends in this process: the chain needs one writer at a time,
    /// and SQLite would otherwise answer "database is locked" to racing upgrades.
    /// Other processes (PostgreSQL replicas) are caught by the unique `prev_hash`.
    audit_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl SqlAuthStore {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            audit_lock: std::sync::Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

fn opt_ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(to_millis)
}

fn opt_time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(from_millis)
}

const ACCOUNT_COLS: &str = "id, display_name, primary_character_id, is_blocked, block_reason, is_super_admin, authz_version, created_at, last_login_at";

fn account_row(r: &AnyRow) -> StoreResult<Account> {
    Ok(Account {
        id: r.try_get("id")?,
        display_name: r.try_get("display_name")?,
        primary_character_id: r.try_get("primary_character_id")?,
        blocked: r.try_get::<i64, _>("is_blocked")? != 0,
        block_reason: r.try_get("block_reason")?,
        super_admin: r.try_get::<i64, _>("is_super_admin")? != 0,
        authz_version: r.try_get("authz_version")?,
        created_at: from_millis(r.try_get("created_at")?),
        last_login_at: opt_time(r.try_get("last_login_at")?),
    })
}

const CHARACTER_COLS: &str = "character_id, account_id, name, owner_hash, corporation_id, alliance_id, scopes, affiliation_checked_at, linked_at";

fn character_row(r: &AnyRow) -> StoreResult<Character> {
    let scopes: String = r.try_get("scopes")?;
    Ok(Character {
        character_id: r.try_get("character_id")?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("name")?,
        owner_hash: r.try_get("owner_hash")?,
        corporation_id: r.try_get("corporation_id")?,
        alliance_id: r.try_get("alliance_id")?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        affiliation_checked_at: opt_time(r.try_get("affiliation_checked_at")?),
        linked_at: from_millis(r.try_get("linked_at")?),
    })
}

const TOKEN_COLS: &str = "character_id, account_id, refresh_token_enc, access_token_enc, key_id, access_expires_at, next_refresh_at, status, rt_version, failures, last_error, updated_at";

fn token_row(r: &AnyRow) -> StoreResult<TokenRow> {
    Ok(TokenRow {
        character_id: r.try_get("character_id")?,
        account_id: r.try_get("account_id")?,
        refresh_token_enc: r.try_get("refresh_token_enc")?,
        access_token_enc: r.try_get("access_token_enc")?,
        key_id: r.try_get("key_id")?,
        access_expires_at: from_millis(r.try_get("access_expires_at")?),
        next_refresh_at: from_millis(r.try_get("next_refresh_at")?),
        status: TokenStatus::parse(&r.try_get::<String, _>("status")?),
        rt_version: r.try_get("rt_version")?,
        failures: r.try_get("failures")?,
        last_error: r.try_get("last_error")?,
        updated_at: from_millis(r.try_get("updated_at")?),
    })
}

const SESSION_COLS: &str = "id_hash, public_id, account_id, via_character_id, method, created_at, last_seen_at, expires_at, ip, user_agent, revoked_at, revoked_reason";

fn session_row(r: &AnyRow) -> StoreResult<SessionRow> {
    Ok(SessionRow {
        id_hash: r.try_get("id_hash")?,
        public_id: r.try_get("public_id")?,
        account_id: r.try_get("account_id")?,
        via_character_id: r.try_get("via_character_id")?,
        method: r.try_get("method")?,
        created_at: from_millis(r.try_get("created_at")?),
        last_seen_at: from_millis(r.try_get("last_seen_at")?),
        expires_at: from_millis(r.try_get("expires_at")?),
        ip: r.try_get("ip")?,
        user_agent: r.try_get("user_agent")?,
        revoked_at: opt_time(r.try_get("revoked_at")?),
        revoked_reason: r.try_get("revoked_reason")?,
    })
}

const AUDIT_COLS: &str =
    "seq, at, actor_account_id, action, target_type, target_id, ip, metadata, prev_hash, hash";

fn audit_row(r: &AnyRow) -> StoreResult<AuditEntry> {
    let metadata: String = r.try_get("metadata")?;
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        at: from_millis(r.try_get("at")?),
        actor_account_id: r.try_get("actor_account_id")?,
        action: r.try_get("action")?,
        target_type: r.try_get("target_type")?,
        target_id: r.try_get("target_id")?,
        ip: r.try_get("ip")?,
        metadata: serde_json::from_str(&metadata).unwrap_or(serde_json::Value::String(metadata)),
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

fn sql(s: String) -> sqlx::AssertSqlSafe<String> {
    bs_store::dynamic_sql(s)
}

type Conn = sqlx::AnyConnection;

async fn insert_account(c: &mut Conn, a: &Account) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO accounts (id, display_name, primary_character_id, is_blocked, block_reason, is_super_admin, authz_version, created_at, last_login_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&a.id)
    .bind(&a.display_name)
    .bind(a.primary_character_id)
    .bind(flag(a.blocked))
    .bind(a.block_reason.as_deref())
    .bind(flag(a.super_admin))
    .bind(a.authz_version)
    .bind(to_millis(a.created_at))
    .bind(opt_ms(a.last_login_at))
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn insert_character(c: &mut Conn, ch: &Character) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO characters (character_id, account_id, name, owner_hash, corporation_id, alliance_id, scopes, affiliation_checked_at, linked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(ch.character_id)
    .bind(&ch.account_id)
    .bind(&ch.name)
    .bind(&ch.owner_hash)
    .bind(ch.corporation_id)
    .bind(ch.alliance_id)
    .bind(ch.scopes.join(" "))
    .bind(opt_ms(ch.affiliation_checked_at))
    .bind(to_millis(ch.linked_at))
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn upsert_token_on(c: &mut Conn, t: &TokenRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO esi_tokens (character_id, account_id, refresh_token_enc, access_token_enc, key_id, access_expires_at, next_refresh_at, status, rt_version, failures, last_error, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (character_id) DO UPDATE SET account_id = excluded.account_id, refresh_token_enc = excluded.refresh_token_enc,
           access_token_enc = excluded.access_token_enc, key_id = excluded.key_id, access_expires_at = excluded.access_expires_at,
           next_refresh_at = excluded.next_refresh_at, status = excluded.status, rt_version = esi_tokens.rt_version + 1,
           failures = excluded.failures, last_error = excluded.last_error, updated_at = excluded.updated_at",
    )
    .bind(t.character_id)
    .bind(&t.account_id)
    .bind(&t.refresh_token_enc)
    .bind(t.access_token_enc.as_deref())
    .bind(&t.key_id)
    .bind(to_millis(t.access_expires_at))
    .bind(to_millis(t.next_refresh_at))
    .bind(t.status.as_str())
    .bind(t.rt_version)
    .bind(t.failures)
    .bind(t.last_error.as_deref())
    .bind(to_millis(t.updated_at))
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn set_role_on(
    c: &mut Conn,
    account_id: &str,
    feature: Feature,
    role: Option<Role>,
    granted_by: Option<&str>,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    match role {
        None => {
            sqlx::query(
                "DELETE FROM account_feature_roles WHERE account_id = $1 AND feature_key = $2",
            )
            .bind(account_id)
            .bind(feature.key())
            .execute(&mut *c)
            .await?;
        }
        Some(role) => {
            sqlx::query(
                "INSERT INTO account_feature_roles (account_id, feature_key, role_key, granted_by, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (account_id, feature_key) DO UPDATE SET role_key = excluded.role_key, granted_by = excluded.granted_by, created_at = excluded.created_at",
            )
            .bind(account_id)
            .bind(feature.key())
            .bind(role.key())
            .bind(granted_by)
            .bind(to_millis(at))
            .execute(&mut *c)
            .await?;
        }
    }
    Ok(())
}

fn is_retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::Sql(sqlx::Error::Database(_)))
}

#[async_trait]
impl AuthStore for SqlAuthStore {
    async fn create_account(
        &self,
        account: &Account,
        character: &Character,
        token: Option<&TokenRow>,
        roles: &[(Feature, Role)],
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        insert_account(&mut tx, account).await?;
        insert_character(&mut tx, character).await?;
        if let Some(t) = token {
            upsert_token_on(&mut tx, t).await?;
        }
        for (feature, role) in roles {
            set_role_on(
                &mut tx,
                &account.id,
                *feature,
                Some(*role),
                None,
                account.created_at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn account(&self, id: &str) -> StoreResult<Option<Account>> {
        let row = sqlx::query(sql(format!(
            "SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(account_row).transpose()
    }

    async fn list_accounts(&self, q: &AccountQuery) -> StoreResult<(Vec<Account>, i64)> {
        let pattern = q
            .query
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| format!("%{}%", s.to_lowercase().replace(['%', '_'], "")));
        let filter = "($1 = '' OR LOWER(a.display_name) LIKE $1 OR EXISTS (SELECT 1 FROM characters c WHERE c.account_id = a.id AND LOWER(c.name) LIKE $1))";
        let pattern = pattern.unwrap_or_default();
        let total: i64 = sqlx::query_scalar(sql(format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM accounts a WHERE {filter}"
        )))
        .bind(&pattern)
        .fetch_one(self.db.pool())
        .await?;
        let cols = ACCOUNT_COLS
            .split(", ")
            .map(|c| format!("a.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(sql(format!(
            "SELECT {cols} FROM accounts a WHERE {filter} ORDER BY a.created_at, a.id LIMIT $2 OFFSET $3"
        )))
        .bind(&pattern)
        .bind(q.limit.clamp(1, 500))
        .bind(q.offset.max(0))
        .fetch_all(self.db.pool())
        .await?;
        let accounts = rows
            .iter()
            .map(account_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((accounts, total))
    }

    async fn all_account_ids(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM accounts ORDER BY id")
            .fetch_all(self.db.pool())
            .await?)
    }

    async fn set_display_name(&self, id: &str, name: &str) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE accounts SET display_name = $2 WHERE id = $1")
            .bind(id)
            .bind(name)
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn set_blocked(
        &self,
        id: &str,
        blocked: bool,
        reason: Option<&str>,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE accounts SET is_blocked = $2, block_reason = $3, authz_version = authz_version + 1 WHERE id = $1",
        )
        .bind(id)
        .bind(flag(blocked))
        .bind(reason)
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn set_super_admin(&self, id: &str, super_admin: bool) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE accounts SET is_super_admin = $2, authz_version = authz_version + 1 WHERE id = $1")
            .bind(id)
            .bind(flag(super_admin))
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn count_super_admins(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM accounts WHERE is_super_admin = 1 AND is_blocked = 0")
            .fetch_one(self.db.pool())
            .await?)
    }

    async fn set_primary(&self, id: &str, character_id: i64) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE accounts SET primary_character_id = $2, authz_version = authz_version + 1
             WHERE id = $1 AND EXISTS (SELECT 1 FROM characters WHERE character_id = $2 AND account_id = $1)",
        )
        .bind(id)
        .bind(character_id)
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn record_login(&self, id: &str, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE accounts SET last_login_at = $2 WHERE id = $1")
            .bind(id)
            .bind(to_millis(at))
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    async fn bump_authz(&self, id: &str) -> StoreResult<()> {
        sqlx::query("UPDATE accounts SET authz_version = authz_version + 1 WHERE id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    async fn character(&self, character_id: i64) -> StoreResult<Option<Character>> {
        let row = sqlx::query(sql(format!(
            "SELECT {CHARACTER_COLS} FROM characters WHERE character_id = $1"
        )))
        .bind(character_id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(character_row).transpose()
    }

    async fn characters_of(&self, account_id: &str) -> StoreResult<Vec<Character>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {CHARACTER_COLS} FROM characters WHERE account_id = $1 ORDER BY linked_at, character_id"
        )))
        .bind(account_id)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(character_row).collect()
    }

    async fn attach_character(
        &self,
        character: &Character,
        token: Option<&TokenRow>,
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        insert_character(&mut tx, character).await?;
        if let Some(t) = token {
            upsert_token_on(&mut tx, t).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn update_character_identity(
        &self,
        character_id: i64,
        name: &str,
        scopes: &[String],
    ) -> StoreResult<()> {
        sqlx::query("UPDATE characters SET name = $2, scopes = $3 WHERE character_id = $1")
            .bind(character_id)
            .bind(name)
            .bind(scopes.join(" "))
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    async fn update_affiliation(
        &self,
        character_id: i64,
        corporation_id: i64,
        alliance_id: Option<i64>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE characters SET corporation_id = $2, alliance_id = $3, affiliation_checked_at = $4 WHERE character_id = $1",
        )
        .bind(character_id)
        .bind(corporation_id)
        .bind(alliance_id)
        .bind(to_millis(at))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn characters_due_affiliation(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Character>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {CHARACTER_COLS} FROM characters WHERE affiliation_checked_at IS NULL OR affiliation_checked_at < $1
             ORDER BY COALESCE(affiliation_checked_at, 0), character_id LIMIT $2"
        )))
        .bind(to_millis(before))
        .bind(limit.max(1))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(character_row).collect()
    }

    async fn delete_character(&self, character_id: i64) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM esi_tokens WHERE character_id = $1")
            .bind(character_id)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM characters WHERE character_id = $1")
            .bind(character_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    async fn detach_character(
        &self,
        character_id: i64,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<DetachReport>> {
        let mut tx = self.db.begin().await?;
        let account_id: Option<String> =
            sqlx::query_scalar("SELECT account_id FROM characters WHERE character_id = $1")
                .bind(character_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(account_id) = account_id else {
            return Ok(None);
        };
        let primary: Option<i64> =
            sqlx::query_scalar("SELECT primary_character_id FROM accounts WHERE id = $1")
                .bind(&account_id)
                .fetch_optional(&mut *tx)
                .await?
                .flatten();
        let was_primary = primary == Some(character_id);
        sqlx::query("DELETE FROM esi_tokens WHERE character_id = $1")
            .bind(character_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM characters WHERE character_id = $1")
            .bind(character_id)
            .execute(&mut *tx)
            .await?;
        let mut new_primary = primary;
        if was_primary {
            new_primary = sqlx::query_scalar(
                "SELECT character_id FROM characters WHERE account_id = $1 ORDER BY linked_at, character_id LIMIT 1",
            )
            .bind(&account_id)
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query("UPDATE accounts SET primary_character_id = $2 WHERE id = $1")
                .bind(&account_id)
                .bind(new_primary)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE accounts SET authz_version = authz_version + 1 WHERE id = $1")
            .bind(&account_id)
            .execute(&mut *tx)
            .await?;
        let revoked = sqlx::query(
            "UPDATE sessions SET revoked_at = $3, revoked_reason = 'owner_changed'
             WHERE account_id = $1 AND revoked_at IS NULL AND ($4 = 1 OR via_character_id = $2)",
        )
        .bind(&account_id)
        .bind(character_id)
        .bind(to_millis(at))
        .bind(flag(was_primary))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Some(DetachReport {
            account_id,
            was_primary,
            new_primary,
            sessions_revoked: revoked,
        }))
    }

    async fn upsert_token(&self, token: &TokenRow) -> StoreResult<()> {
        let mut conn = self.db.pool().acquire().await?;
        upsert_token_on(&mut conn, token).await
    }

    async fn token(&self, character_id: i64) -> StoreResult<Option<TokenRow>> {
        let row = sqlx::query(sql(format!(
            "SELECT {TOKEN_COLS} FROM esi_tokens WHERE character_id = $1"
        )))
        .bind(character_id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(token_row).transpose()
    }

    async fn tokens_due(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<Vec<TokenRow>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {TOKEN_COLS} FROM esi_tokens WHERE status = 'valid' AND next_refresh_at <= $1 ORDER BY next_refresh_at LIMIT $2"
        )))
        .bind(to_millis(now))
        .bind(limit.max(1))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(token_row).collect()
    }

    async fn swap_token(&self, expected_version: i64, t: &TokenRow) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE esi_tokens SET refresh_token_enc = $3, access_token_enc = $4, key_id = $5, access_expires_at = $6,
               next_refresh_at = $7, status = $8, rt_version = rt_version + 1, failures = 0, last_error = NULL, updated_at = $9
             WHERE character_id = $1 AND rt_version = $2",
        )
        .bind(t.character_id)
        .bind(expected_version)
        .bind(&t.refresh_token_enc)
        .bind(t.access_token_enc.as_deref())
        .bind(&t.key_id)
        .bind(to_millis(t.access_expires_at))
        .bind(to_millis(t.next_refresh_at))
        .bind(t.status.as_str())
        .bind(to_millis(t.updated_at))
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn mark_token_dead(
        &self,
        character_id: i64,
        expected_version: Option<i64>,
        error: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE esi_tokens SET status = 'dead', access_token_enc = NULL, last_error = $2, updated_at = $3, rt_version = rt_version + 1
             WHERE character_id = $1 AND ($4 < 0 OR rt_version = $4)",
        )
        .bind(character_id)
        .bind(error)
        .bind(to_millis(at))
        .bind(expected_version.unwrap_or(-1))
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn record_token_failure(
        &self,
        character_id: i64,
        error: &str,
        retry_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE esi_tokens SET failures = failures + 1, last_error = $2, next_refresh_at = $3, updated_at = $4 WHERE character_id = $1",
        )
        .bind(character_id)
        .bind(error)
        .bind(to_millis(retry_at))
        .bind(to_millis(at))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn tokens_not_under_key(
        &self,
        active_key_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<TokenRow>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {TOKEN_COLS} FROM esi_tokens WHERE key_id <> $1 ORDER BY character_id LIMIT $2"
        )))
        .bind(active_key_id)
        .bind(limit.max(1))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(token_row).collect()
    }

    async fn insert_session(&self, s: &SessionRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, public_id, account_id, via_character_id, method, created_at, last_seen_at, expires_at, ip, user_agent, revoked_at, revoked_reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&s.id_hash)
        .bind(&s.public_id)
        .bind(&s.account_id)
        .bind(s.via_character_id)
        .bind(&s.method)
        .bind(to_millis(s.created_at))
        .bind(to_millis(s.last_seen_at))
        .bind(to_millis(s.expires_at))
        .bind(&s.ip)
        .bind(&s.user_agent)
        .bind(opt_ms(s.revoked_at))
        .bind(s.revoked_reason.as_deref())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str) -> StoreResult<Option<SessionRow>> {
        let row = sqlx::query(sql(format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE id_hash = $1"
        )))
        .bind(id_hash)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(session_row).transpose()
    }

    async fn touch_session(&self, id_hash: &str, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1 AND last_seen_at < $2",
        )
        .bind(id_hash)
        .bind(to_millis(at))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn revoke_session(
        &self,
        id_hash: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE sessions SET revoked_at = $3, revoked_reason = $2 WHERE id_hash = $1 AND revoked_at IS NULL",
        )
        .bind(id_hash)
        .bind(reason)
        .bind(to_millis(at))
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn revoke_session_by_public_id(
        &self,
        public_id: &str,
        account_id: Option<&str>,
        reason: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<SessionRow>> {
        let row = sqlx::query(sql(format!(
            "UPDATE sessions SET revoked_at = $4, revoked_reason = $3
             WHERE public_id = $1 AND ($2 = '' OR account_id = $2) AND revoked_at IS NULL RETURNING {SESSION_COLS}"
        )))
        .bind(public_id)
        .bind(account_id.unwrap_or(""))
        .bind(reason)
        .bind(to_millis(at))
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(session_row).transpose()
    }

    async fn revoke_account_sessions(
        &self,
        account_id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let r = sqlx::query(
            "UPDATE sessions SET revoked_at = $3, revoked_reason = $2 WHERE account_id = $1 AND revoked_at IS NULL",
        )
        .bind(account_id)
        .bind(reason)
        .bind(to_millis(at))
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected())
    }

    async fn sessions_of(
        &self,
        account_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<SessionRow>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > $2
             ORDER BY created_at DESC, public_id"
        )))
        .bind(account_id)
        .bind(to_millis(now))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(session_row).collect()
    }

    async fn purge_sessions(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1")
            .bind(to_millis(before))
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected())
    }

    async fn insert_login_state(&self, s: &LoginState) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO login_states (state_hash, binding_hash, purpose, account_id, pkce_verifier_enc, return_to, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.state_hash)
        .bind(&s.binding_hash)
        .bind(&s.purpose)
        .bind(s.account_id.as_deref())
        .bind(&s.pkce_verifier_enc)
        .bind(&s.return_to)
        .bind(to_millis(s.created_at))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn take_login_state(&self, state_hash: &str) -> StoreResult<Option<LoginState>> {
        let row = sqlx::query(
            "DELETE FROM login_states WHERE state_hash = $1
             RETURNING state_hash, binding_hash, purpose, account_id, pkce_verifier_enc, return_to, created_at",
        )
        .bind(state_hash)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(LoginState {
            state_hash: r.try_get("state_hash")?,
            binding_hash: r.try_get("binding_hash")?,
            purpose: r.try_get("purpose")?,
            account_id: r.try_get("account_id")?,
            pkce_verifier_enc: r.try_get("pkce_verifier_enc")?,
            return_to: r.try_get("return_to")?,
            created_at: from_millis(r.try_get("created_at")?),
        }))
    }

    async fn purge_login_states(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM login_states WHERE created_at < $1")
            .bind(to_millis(before))
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected())
    }

    async fn count_login_states(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM login_states")
                .fetch_one(self.db.pool())
                .await?,
        )
    }

    async fn roles_of(&self, account_id: &str) -> StoreResult<BTreeMap<Feature, Role>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT feature_key, role_key FROM account_feature_roles WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_all(self.db.pool())
        .await?;
        // Rows naming a feature or role this build does not know grant nothing.
        Ok(rows
            .into_iter()
            .filter_map(|(f, r)| Some((f.parse::<Feature>().ok()?, r.parse::<Role>().ok()?)))
            .collect())
    }

    async fn set_role(
        &self,
        account_id: &str,
        feature: Feature,
        role: Option<Role>,
        granted_by: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        set_role_on(&mut tx, account_id, feature, role, granted_by, at).await?;
        sqlx::query("UPDATE accounts SET authz_version = authz_version + 1 WHERE id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn gating_config(&self) -> StoreResult<Option<GatingConfig>> {
        let doc: Option<String> =
            sqlx::query_scalar("SELECT document FROM auth_config WHERE id = 1")
                .fetch_optional(self.db.pool())
                .await?;
        doc.map(|d| {
            serde_json::from_str(&d)
                .map_err(|e| StoreError::Other(format!("auth_config document: {e}")))
        })
        .transpose()
    }

    async fn put_gating_config(
        &self,
        config: &GatingConfig,
        by: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let doc = serde_json::to_string(config).map_err(|e| StoreError::Other(e.to_string()))?;
        sqlx::query(
            "INSERT INTO auth_config (id, document, updated_by, updated_at) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET document = excluded.document, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        )
        .bind(doc)
        .bind(by)
        .bind(to_millis(at))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn secret_or_insert(
        &self,
        name: &str,
        candidate: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<String> {
        sqlx::query("INSERT INTO service_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(candidate)
            .bind(to_millis(at))
            .execute(self.db.pool())
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM service_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(self.db.pool())
                .await?,
        )
    }

    async fn append_audit(&self, e: &NewAudit, at: DateTime<Utc>) -> StoreResult<AuditEntry> {
        let metadata = e.metadata.to_string();
        let at_ms = to_millis(at);
        let fields = EntryFields {
            at_ms,
            actor_account_id: e.actor_account_id.as_deref(),
            action: &e.action,
            target_type: &e.target_type,
            target_id: &e.target_id,
            ip: &e.ip,
            metadata: &metadata,
        };
        let _serialised = self.audit_lock.lock().await;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result: StoreResult<AuditEntry> = async {
                let mut tx = self.db.begin().await?;
                let prev: Option<String> = sqlx::query_scalar("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await?;
                // An empty log after a prune continues from the anchor (prunes keep the
                // tail, so this is only a fallback).
                let prev = match prev {
                    Some(p) => p,
                    None => sqlx::query_scalar(
                        "SELECT last_hash FROM audit_log_anchor ORDER BY id DESC LIMIT 1",
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or_else(|| GENESIS.to_owned()),
                };
                let hash = entry_hash(&prev, &fields);
                let seq: i64 = sqlx::query_scalar(
                    "INSERT INTO audit_log (at, actor_account_id, action, target_type, target_id, ip, metadata, prev_hash, hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
                )
                .bind(at_ms)
                .bind(e.actor_account_id.as_deref())
                .bind(&e.action)
                .bind(&e.target_type)
                .bind(&e.target_id)
                .bind(&e.ip)
                .bind(&metadata)
                .bind(&prev)
                .bind(&hash)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(AuditEntry {
                    seq,
                    at: from_millis(at_ms),
                    actor_account_id: e.actor_account_id.clone(),
                    action: e.action.clone(),
                    target_type: e.target_type.clone(),
                    target_id: e.target_id.clone(),
                    ip: e.ip.clone(),
                    metadata: e.metadata.clone(),
                    prev_hash: prev,
                    hash,
                })
            }
            .await;
            match result {
                Err(err) if attempt < 10 && is_retryable(&err) => {
                    // Another writer took the same predecessor; yield and re-read the tail.
                    tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt) * 5))
                        .await;
                }
                other => return other,
            }
        }
    }

    async fn audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {AUDIT_COLS} FROM audit_log
             WHERE ($1 = '' OR action = $1) AND ($2 = '' OR actor_account_id = $2) AND ($3 = '' OR target_id = $3) AND seq < $4
             ORDER BY seq DESC LIMIT $5"
        )))
        .bind(q.action.as_deref().unwrap_or(""))
        .bind(q.actor_account_id.as_deref().unwrap_or(""))
        .bind(q.target_id.as_deref().unwrap_or(""))
        .bind(q.before_seq.unwrap_or(i64::MAX))
        .bind(q.limit.clamp(1, 1000))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(audit_row).collect()
    }

    async fn verify_audit_chain(&self) -> StoreResult<Result<u64, i64>> {
        let anchor = self.audit_anchor().await?;
        let (mut prev, mut after) = match &anchor {
            Some(a) => (a.last_hash.clone(), a.last_seq),
            None => (GENESIS.to_owned(), 0i64),
        };
        // The first remaining entry, and whether the anchor is attested in the chain.
        let mut first: Option<i64> = None;
        let mut attested = anchor.is_none();
        let mut count = 0u64;
        loop {
            let rows = sqlx::query(sql(format!(
                "SELECT {AUDIT_COLS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 500"
            )))
            .bind(after)
            .fetch_all(self.db.pool())
            .await?;
            if rows.is_empty() {
                return Ok(match first {
                    Some(f) if !attested => Err(f),
                    _ => Ok(count),
                });
            }
            for r in &rows {
                let seq: i64 = r.try_get("seq")?;
                let stored_prev: String = r.try_get("prev_hash")?;
                let hash: String = r.try_get("hash")?;
                let actor: Option<String> = r.try_get("actor_account_id")?;
                let fields = EntryFields {
                    at_ms: r.try_get("at")?,
                    actor_account_id: actor.as_deref(),
                    action: &r.try_get::<String, _>("action")?,
                    target_type: &r.try_get::<String, _>("target_type")?,
                    target_id: &r.try_get::<String, _>("target_id")?,
                    ip: &r.try_get::<String, _>("ip")?,
                    metadata: &r.try_get::<String, _>("metadata")?,
                };
                if stored_prev != prev || entry_hash(&prev, &fields) != hash {
                    return Ok(Err(seq));
                }
                first.get_or_insert(seq);
                if let Some(a) = &anchor
                    && !attested
                    && fields.action == PRUNED
                {
                    let m: serde_json::Value =
                        serde_json::from_str(fields.metadata).unwrap_or_default();
                    attested = m.get("last_seq").and_then(serde_json::Value::as_i64)
                        == Some(a.last_seq)
                        && m.get("last_hash").and_then(serde_json::Value::as_str)
                            == Some(a.last_hash.as_str());
                }
                prev = hash;
                after = seq;
                count += 1;
            }
        }
    }

    async fn prune_audit_batch(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<AuditAnchor>> {
        // Appends hold this lock too, so the tail read here is the tail.
        let _serialised = self.audit_lock.lock().await;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.prune_audit_batch_once(cutoff, limit, now).await {
                // A replica's append took the same predecessor, or SQLite refused the
                // upgrade to a write; the batch was rolled back as a whole, so retry.
                Err(err) if attempt < 5 && is_retryable(&err) => {
                    tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt) * 20))
                        .await;
                }
                other => return other,
            }
        }
    }

    async fn audit_anchor(&self) -> StoreResult<Option<AuditAnchor>> {
        let row = sqlx::query(ANCHOR_SELECT)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(anchor_row).transpose()
    }
}

impl SqlAuthStore {
    /// One attempt of [`AuthStore::prune_audit_batch`] (the caller holds the audit lock).
    async fn prune_audit_batch_once(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<AuditAnchor>> {
        let mut tx = self.db.begin().await?;
        let rows = sqlx::query(
            "SELECT seq, at, hash FROM audit_log WHERE seq < (SELECT MAX(seq) FROM audit_log) ORDER BY seq LIMIT $1",
        )
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&mut *tx)
        .await?;
        // Never past `now`: the attesting entries are stamped `now`, so a run converges.
        let cut = to_millis(cutoff.min(now));
        let mut last: Option<(i64, i64, String)> = None;
        let mut count = 0i64;
        for r in &rows {
            let at: i64 = r.try_get("at")?;
            // A strict prefix: the first entry not yet due ends the batch, even if a
            // later one (clock skew) is older.
            if at >= cut {
                break;
            }
            last = Some((r.try_get("seq")?, at, r.try_get("hash")?));
            count += 1;
        }
        let Some((last_seq, last_at, last_hash)) = last else {
            return Ok(None);
        };
        let anchor = AuditAnchor {
            last_seq,
            last_hash,
            last_at: from_millis(last_at),
            pruned_at: now,
            cutoff: from_millis(cut),
            pruned: count,
        };
        sqlx::query(
            "INSERT INTO audit_log_anchor (last_seq, last_hash, last_at, pruned_at, cutoff, pruned) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(anchor.last_seq)
        .bind(&anchor.last_hash)
        .bind(last_at)
        .bind(to_millis(now))
        .bind(cut)
        .bind(count)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
            .bind(last_seq)
            .execute(&mut *tx)
            .await?;
        // The attestation, in the same transaction: an anchor without it is not ours. The
        // tail was kept, so it is the predecessor (and appends are held by the lock).
        let tail: String =
            sqlx::query_scalar("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_one(&mut *tx)
                .await?;
        let metadata = serde_json::json!({
            "pruned": count,
            "cutoff": cutoff,
            "last_seq": anchor.last_seq,
            "last_hash": anchor.last_hash,
        })
        .to_string();
        let seq_text = anchor.last_seq.to_string();
        let fields = EntryFields {
            at_ms: to_millis(now),
            actor_account_id: None,
            action: PRUNED,
            target_type: "audit_log",
            target_id: &seq_text,
            ip: "",
            metadata: &metadata,
        };
        let hash = entry_hash(&tail, &fields);
        sqlx::query(
            "INSERT INTO audit_log (at, actor_account_id, action, target_type, target_id, ip, metadata, prev_hash, hash)
             VALUES ($1, NULL, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(fields.at_ms)
        .bind(fields.action)
        .bind(fields.target_type)
        .bind(fields.target_id)
        .bind(fields.ip)
        .bind(fields.metadata)
        .bind(&tail)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(anchor))
    }
}
