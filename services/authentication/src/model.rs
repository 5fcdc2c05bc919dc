//! The records the store keeps (storage-neutral; the SQL lives in `store`).

use chrono::{DateTime, Utc};
use serde::Serialize;

/// An account: one person, several characters, one primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub display_name: String,
    pub primary_character_id: Option<i64>,
    pub blocked: bool,
    pub block_reason: Option<String>,
    pub super_admin: bool,
    /// Bumped on every change that can alter authorization (roles, gate, owner, block).
    pub authz_version: i64,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// A character on an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Character {
    pub character_id: i64,
    pub account_id: String,
    pub name: String,
    pub owner_hash: String,
    pub corporation_id: Option<i64>,
    pub alliance_id: Option<i64>,
    pub scopes: Vec<String>,
    pub affiliation_checked_at: Option<DateTime<Utc>>,
    pub linked_at: DateTime<Utc>,
}

/// The state of a character's ESI grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    Valid,
    /// SSO answered `invalid_grant`: the user must log in with the character again.
    Dead,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Self {
        if s == "valid" {
            Self::Valid
        } else {
            Self::Dead
        }
    }
}

/// A character's encrypted ESI grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    pub character_id: i64,
    pub account_id: String,
    /// `TokenCipher` ciphertext bound to (account, character).
    pub refresh_token_enc: String,
    pub access_token_enc: Option<String>,
    pub key_id: String,
    pub access_expires_at: DateTime<Utc>,
    pub next_refresh_at: DateTime<Utc>,
    pub status: TokenStatus,
    /// Compare-and-swap version: a refresh only stores its rotated token if nobody
    /// else stored one since it read the row.
    pub rt_version: i64,
    pub failures: i64,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A server-side session (the id itself is never stored, only its hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub id_hash: String,
    /// The handle users and admins see and revoke by.
    pub public_id: String,
    pub account_id: String,
    pub via_character_id: i64,
    /// `sso` or `dev`.
    pub method: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ip: String,
    pub user_agent: String,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

/// A pending SSO login, awaiting its callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginState {
    pub state_hash: String,
    /// SHA-256 of the pre-auth cookie value it is bound to.
    pub binding_hash: String,
    /// `login` or `link`.
    pub purpose: String,
    /// The linking account, for `link`.
    pub account_id: Option<String>,
    /// The PKCE verifier, encrypted (bound to the state hash).
    pub pkce_verifier_enc: String,
    pub return_to: String,
    pub created_at: DateTime<Utc>,
}

/// An audit entry to append.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAudit {
    pub actor_account_id: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub ip: String,
    pub metadata: serde_json::Value,
}

/// A stored audit entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor_account_id: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub ip: String,
    pub metadata: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Audit log filters; newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub actor_account_id: Option<String>,
    pub target_id: Option<String>,
    /// Entries with `seq` below this (paging backwards).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

/// Account directory filters.
#[derive(Clone, Debug, Default)]
pub struct AccountQuery {
    /// Substring of the display name or of any character name (case-insensitive).
    pub query: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// What detaching a character did (owner change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetachReport {
    pub account_id: String,
    pub was_primary: bool,
    pub new_primary: Option<i64>,
    pub sessions_revoked: u64,
}
