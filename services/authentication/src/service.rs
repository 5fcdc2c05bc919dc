//! The service's behaviour: SSO login and linking, sessions, owner changes, gating,
//! roles, admin operations, and the two background jobs (token refresh, affiliation
//! re-check). HTTP lives in `api`; pure rules in `domain`; storage in `store`.
//!
//! Secrets discipline: refresh/access tokens and PKCE verifiers exist in plain text
//! only inside `bs_sso::Secret` values in memory; they are encrypted before they reach
//! the store and never formatted into logs, errors or audit metadata.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::Context as _;
use bs_cache::Cache;
use bs_runtime::Clock;
use bs_sso::cipher::aad;
use bs_sso::{
    CsrfKey, JwtValidator, Secret, SsoClient, SsoError, TokenCipher, VerifiedCharacter, token_aad,
};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::affiliation::AffiliationSource;
use crate::domain::characters::{self, Existing, Intent, Then};
use crate::domain::gating::{Affiliation, GateDecision, GatingConfig};
use crate::domain::rbac::{self, AdminOp, Decision, Feature, Role, Subject};
use crate::domain::session::SessionState;
use crate::model::{
    Account, AccountQuery, AuditEntry, AuditQuery, Character, LoginState, NewAudit, SessionRow,
    TokenRow, TokenStatus,
};
use crate::settings::Settings;
use crate::store::AuthStore;

/// Metric names (counters unless noted).
pub mod metric {
    /// Label `result`: `ok`, or the failure code.
    pub const LOGINS: &str = "auth_logins_total";
    /// Label `reason`.
    pub const SESSIONS_REVOKED: &str = "auth_sessions_revoked_total";
    /// Label `result`: `ok`, `dead`, `transient`, `owner_changed`, `error`.
    pub const TOKEN_REFRESHES: &str = "auth_token_refreshes_total";
    /// Label `reason`: rejected requests (csrf, rate_limit, state, jwt, …).
    pub const REJECTIONS: &str = "auth_rejections_total";
    /// Label `allow`.
    pub const AUTHORIZATIONS: &str = "auth_authorize_decisions_total";
}

/// The SSO side: the OAuth client, the JWT validator, and the token cipher.
pub struct Sso {
    pub client: SsoClient,
    pub validator: JwtValidator,
    pub cipher: Arc<TokenCipher>,
}

/// Where a request came from (for the audit log and rate limits).
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub ip: String,
    pub user_agent: String,
}

/// Why a login or link callback failed; `code` is what the browser is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginFailure {
    #[error("the login request is unknown, expired, already used or from another browser")]
    InvalidState,
    #[error("eve sso did not confirm the login")]
    AuthFailed,
    #[error("eve sso is unavailable, try again")]
    SsoUnavailable,
    #[error("your corporation or alliance is not allowed here ({0})")]
    OrgNotAllowed(&'static str),
    #[error("that character is already linked to another account; unlink it there first")]
    CharacterExists,
    #[error("this account is blocked")]
    AccountBlocked,
    #[error("your session ended before the character could be linked; log in again")]
    SessionLost,
}

impl LoginFailure {
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidState => "invalid_state",
            Self::AuthFailed => "auth_failed",
            Self::SsoUnavailable => "sso_unavailable",
            Self::OrgNotAllowed(_) => "org_not_allowed",
            Self::CharacterExists => "character_exists",
            Self::AccountBlocked => "account_blocked",
            Self::SessionLost => "session_lost",
        }
    }
}

/// The service's errors; `api` maps them to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("not logged in")]
    NotAuthenticated,
    #[error("this account is blocked")]
    Blocked,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("eve sso is not configured on this server")]
    SsoNotConfigured,
    #[error("too many requests, slow down")]
    RateLimited,
    #[error("too many logins in progress, try again shortly")]
    Busy,
    #[error("{0}")]
    Login(LoginFailure),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<bs_store::StoreError> for AuthError {
    fn from(e: bs_store::StoreError) -> Self {
        Self::Internal(e.into())
    }
}

pub type AuthResult<T> = Result<T, AuthError>;

fn internal(e: impl Into<anyhow::Error>) -> AuthError {
    AuthError::Internal(e.into())
}

/// A validated session and its account.
#[derive(Clone, Debug)]
pub struct Authed {
    pub session: SessionRow,
    pub account: Account,
    /// The raw session id from the cookie (CSRF tokens are bound to it).
    pub session_id: String,
}

/// A session just issued (the id goes into the cookie, nowhere else).
#[derive(Debug)]
pub struct NewSession {
    pub session_id: Secret<String>,
    pub csrf_token: String,
    pub account_id: String,
}

/// Where `/auth/login` sends the browser, and the pre-auth cookie to set.
#[derive(Debug)]
pub struct LoginStart {
    pub authorize_url: String,
    pub preauth_cookie: Secret<String>,
}

/// What a successful callback did.
#[derive(Debug)]
pub enum CallbackOutcome {
    /// A login: set this new session (any older session cookie is replaced).
    LoggedIn {
        session: NewSession,
        return_to: String,
    },
    /// A character was linked to the current session's account.
    Linked {
        character_id: i64,
        return_to: String,
    },
}

/// Changes an admin may make to an account (`PUT /admin/accounts/{id}`).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    pub display_name: Option<String>,
    pub blocked: Option<bool>,
    pub block_reason: Option<String>,
    pub super_admin: Option<bool>,
    pub primary_character_id: Option<i64>,
}

/// What a background refresh pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefreshReport {
    pub refreshed: u64,
    pub dead: u64,
    pub transient: u64,
    pub owner_changed: u64,
    /// Someone else stored a newer grant first (the compare-and-swap lost).
    pub lost_race: u64,
}

/// What a background affiliation pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffiliationReport {
    pub checked: u64,
    pub unresolved: u64,
    pub accounts_locked_out: u64,
}

/// The shared state of the service.
pub struct AuthService {
    pub(crate) store: Arc<dyn AuthStore>,
    pub(crate) sso: Option<Sso>,
    pub(crate) csrf: CsrfKey,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) cache: Arc<dyn Cache>,
    pub(crate) affiliations: Arc<dyn AffiliationSource>,
    pub(crate) settings: Settings,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn pkce_aad(state_hash: &str) -> Vec<u8> {
    aad(&[b"pkce-verifier", state_hash.as_bytes()])
}

fn access_aad(account_id: &str, character_id: i64) -> Vec<u8> {
    aad(&[
        b"esi-access-token",
        account_id.as_bytes(),
        character_id.to_string().as_bytes(),
    ])
}

fn scopes_of(v: &VerifiedCharacter) -> Vec<String> {
    v.scopes.iter().cloned().collect()
}

impl AuthService {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn AuthStore> {
        &self.store
    }

    pub fn sso(&self) -> Option<&Sso> {
        self.sso.as_ref()
    }

    fn sso_required(&self) -> AuthResult<&Sso> {
        self.sso.as_ref().ok_or(AuthError::SsoNotConfigured)
    }

    pub async fn audit(
        &self,
        actor: Option<&str>,
        action: &str,
        target: (&str, &str),
        meta: &RequestMeta,
        metadata: serde_json::Value,
    ) -> AuthResult<AuditEntry> {
        let entry = NewAudit {
            actor_account_id: actor.map(str::to_owned),
            action: action.to_owned(),
            target_type: target.0.to_owned(),
            target_id: target.1.to_owned(),
            ip: meta.ip.clone(),
            metadata,
        };
        Ok(self.store.append_audit(&entry, self.now()).await?)
    }

    /// Fixed-window rate limit per client address; a broken cache lets requests through
    /// (the limit is abuse protection, not a security boundary).
    pub async fn rate_limit(&self, bucket: &str, ip: &str, limit: i64) -> AuthResult<()> {
        let key = format!("auth:rl:{bucket}:{ip}");
        match self
            .cache
            .incr(&key, 1, self.settings.rate_limits.window)
            .await
        {
            Ok(n) if n > limit => {
                metrics::counter!(metric::REJECTIONS, "reason" => "rate_limit").increment(1);
                Err(AuthError::RateLimited)
            }
            Ok(_) => Ok(()),
            Err(err) => {
                tracing::warn!(error = %err, "rate limit cache unavailable");
                Ok(())
            }
        }
    }

    pub async fn gating_config(&self) -> AuthResult<GatingConfig> {
        Ok(self.store.gating_config().await?.unwrap_or_default())
    }

    pub async fn subject(&self, account: &Account) -> AuthResult<Subject> {
        Ok(Subject {
            super_admin: account.super_admin,
            blocked: account.blocked,
            roles: self.store.roles_of(&account.id).await?,
        })
    }

    // ---------------------------------------------------------------- sessions

    /// Validates a session cookie value: known, not revoked, not idle/absolute-expired,
    /// and its account not blocked (a blocked account's sessions are revoked on sight).
    pub async fn authenticate(&self, session_id: &str) -> AuthResult<Authed> {
        let now = self.now();
        let id_hash = bs_sso::hash_session_id(session_id);
        let Some(session) = self.store.session(&id_hash).await? else {
            return Err(AuthError::NotAuthenticated);
        };
        let times = crate::domain::session::SessionTimes {
            created_at: session.created_at,
            last_seen_at: session.last_seen_at,
            revoked: session.revoked_at.is_some(),
        };
        match self.settings.session.state(times, now) {
            SessionState::Revoked => return Err(AuthError::NotAuthenticated),
            SessionState::IdleExpired => {
                self.revoke_hash(&id_hash, "idle_timeout").await?;
                return Err(AuthError::NotAuthenticated);
            }
            SessionState::AbsoluteExpired => {
                self.revoke_hash(&id_hash, "absolute_timeout").await?;
                return Err(AuthError::NotAuthenticated);
            }
            SessionState::Active { touch } => {
                if touch {
                    self.store.touch_session(&id_hash, now).await?;
                }
            }
        }
        let Some(account) = self.store.account(&session.account_id).await? else {
            self.revoke_hash(&id_hash, "account_missing").await?;
            return Err(AuthError::NotAuthenticated);
        };
        if account.blocked {
            self.revoke_hash(&id_hash, "account_blocked").await?;
            return Err(AuthError::Blocked);
        }
        Ok(Authed {
            session,
            account,
            session_id: session_id.to_owned(),
        })
    }

    async fn revoke_hash(&self, id_hash: &str, reason: &'static str) -> AuthResult<()> {
        if self
            .store
            .revoke_session(id_hash, reason, self.now())
            .await?
        {
            metrics::counter!(metric::SESSIONS_REVOKED, "reason" => reason).increment(1);
        }
        Ok(())
    }

    async fn issue_session(
        &self,
        account_id: &str,
        via_character_id: i64,
        method: &str,
        meta: &RequestMeta,
    ) -> AuthResult<NewSession> {
        let now = self.now();
        let session_id = bs_sso::generate_session_id().map_err(internal)?;
        let row = SessionRow {
            id_hash: bs_sso::hash_session_id(&session_id),
            public_id: uuid::Uuid::new_v4().simple().to_string(),
            account_id: account_id.to_owned(),
            via_character_id,
            method: method.to_owned(),
            created_at: now,
            last_seen_at: now,
            expires_at: self.settings.session.absolute_expiry(now),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.chars().take(256).collect(),
            revoked_at: None,
            revoked_reason: None,
        };
        self.store.insert_session(&row).await?;
        self.store.record_login(account_id, now).await?;
        let csrf_token = self.csrf.issue(&session_id).map_err(internal)?;
        Ok(NewSession {
            session_id: Secret::new(session_id),
            csrf_token,
            account_id: account_id.to_owned(),
        })
    }

    /// A fresh CSRF token for a session.
    pub fn csrf_token(&self, session_id: &str) -> AuthResult<String> {
        self.csrf.issue(session_id).map_err(internal)
    }

    pub fn csrf_valid(&self, session_id: &str, token: &str) -> bool {
        self.csrf.verify(session_id, token)
    }

    /// Logout: revokes the session server-side (idempotent).
    pub async fn logout(&self, session_id: &str, meta: &RequestMeta) -> AuthResult<()> {
        let id_hash = bs_sso::hash_session_id(session_id);
        if let Some(s) = self.store.session(&id_hash).await?
            && self
                .store
                .revoke_session(&id_hash, "logout", self.now())
                .await?
        {
            metrics::counter!(metric::SESSIONS_REVOKED, "reason" => "logout").increment(1);
            self.audit(
                Some(&s.account_id),
                "account.logout",
                ("session", &s.public_id),
                meta,
                json!({}),
            )
            .await?;
        }
        Ok(())
    }

    pub async fn sessions_of(&self, account_id: &str) -> AuthResult<Vec<SessionRow>> {
        Ok(self.store.sessions_of(account_id, self.now()).await?)
    }

    /// Ends one session by its public id; `owner` limits it to that account's sessions.
    pub async fn end_session(
        &self,
        actor: &Authed,
        public_id: &str,
        owner: Option<&str>,
        meta: &RequestMeta,
    ) -> AuthResult<()> {
        let reason = if owner.is_some() {
            "user_revoked"
        } else {
            "admin_revoked"
        };
        let Some(s) = self
            .store
            .revoke_session_by_public_id(public_id, owner, reason, self.now())
            .await?
        else {
            return Err(AuthError::NotFound);
        };
        metrics::counter!(metric::SESSIONS_REVOKED, "reason" => reason).increment(1);
        self.audit(
            Some(&actor.account.id),
            "session.revoked",
            ("session", &s.public_id),
            meta,
            json!({"account_id": s.account_id, "reason": reason}),
        )
        .await?;
        Ok(())
    }

    // ---------------------------------------------------------------- login

    /// Starts an SSO login (or, with `link_to`, the linking of another character).
    pub async fn begin_login(
        &self,
        return_to: Option<&str>,
        link_to: Option<&Authed>,
    ) -> AuthResult<LoginStart> {
        let sso = self.sso_required()?;
        let now = self.now();
        self.store
            .purge_login_states(now - self.settings.login_state_ttl)
            .await?;
        if self.store.count_login_states().await? >= self.settings.max_pending_logins {
            return Err(AuthError::Busy);
        }
        let request = sso.client.authorize_url().map_err(internal)?;
        let binding = bs_sso::random::random_token::<32>().map_err(internal)?;
        let state_hash = sha256_hex(&request.state);
        let verifier_enc = sso
            .cipher
            .encrypt(request.pkce_verifier.expose(), &pkce_aad(&state_hash))
            .map_err(internal)?;
        let return_to = return_to
            .and_then(bs_sso::safe_return_to)
            .unwrap_or_else(|| "/".to_owned());
        let state = LoginState {
            state_hash,
            binding_hash: sha256_hex(&binding),
            purpose: if link_to.is_some() { "link" } else { "login" }.to_owned(),
            account_id: link_to.map(|a| a.account.id.clone()),
            pkce_verifier_enc: verifier_enc,
            return_to,
            created_at: now,
        };
        self.store.insert_login_state(&state).await?;
        Ok(LoginStart {
            authorize_url: request.url.to_string(),
            preauth_cookie: Secret::new(binding),
        })
    }

    /// Finishes an SSO login or link. `state` is consumed whatever happens.
    pub async fn complete_callback(
        &self,
        code: &str,
        state: &str,
        preauth_cookie: Option<&str>,
        current: Option<&Authed>,
        meta: &RequestMeta,
    ) -> AuthResult<CallbackOutcome> {
        let result = self
            .callback_inner(code, state, preauth_cookie, current, meta)
            .await;
        let label = match &result {
            Ok(_) => "ok",
            Err(AuthError::Login(f)) => f.code(),
            Err(_) => "error",
        };
        metrics::counter!(metric::LOGINS, "result" => label).increment(1);
        result
    }

    async fn callback_inner(
        &self,
        code: &str,
        state: &str,
        preauth_cookie: Option<&str>,
        current: Option<&Authed>,
        meta: &RequestMeta,
    ) -> AuthResult<CallbackOutcome> {
        let sso = self.sso_required()?;
        let now = self.now();
        let reject = |reason: &'static str, failure: LoginFailure| {
            metrics::counter!(metric::REJECTIONS, "reason" => reason).increment(1);
            AuthError::Login(failure)
        };
        let state_hash = sha256_hex(state);
        let Some(pending) = self.store.take_login_state(&state_hash).await? else {
            return Err(reject("state_unknown", LoginFailure::InvalidState));
        };
        if now - pending.created_at > self.settings.login_state_ttl {
            return Err(reject("state_expired", LoginFailure::InvalidState));
        }
        // The state is bound to the browser that started the login (login CSRF).
        let binding_ok = preauth_cookie.is_some_and(|c| sha256_hex(c) == pending.binding_hash);
        if !binding_ok {
            return Err(reject("state_mismatch", LoginFailure::InvalidState));
        }
        let verifier = sso
            .cipher
            .decrypt(&pending.pkce_verifier_enc, &pkce_aad(&state_hash))
            .map_err(|_| reject("state_undecryptable", LoginFailure::InvalidState))?;
        let tokens = match sso.client.exchange_code(code, &verifier).await {
            Ok(t) => t,
            Err(e) if e.is_transient() => {
                return Err(reject("sso_unavailable", LoginFailure::SsoUnavailable));
            }
            Err(e) => {
                tracing::info!(error = %e, "code exchange refused");
                return Err(reject("code_rejected", LoginFailure::AuthFailed));
            }
        };
        let verified = match sso
            .validator
            .validate(tokens.access_token.expose(), now)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "sso access token rejected");
                return Err(reject("jwt_rejected", LoginFailure::AuthFailed));
            }
        };
        let intent = match (pending.purpose.as_str(), pending.account_id) {
            ("link", Some(account_id)) => {
                // Linking needs the same logged-in account that started it.
                if current.is_none_or(|c| c.account.id != account_id) {
                    self.revoke_quietly(sso, &tokens.refresh_token).await;
                    return Err(reject("link_session_lost", LoginFailure::SessionLost));
                }
                Intent::Link { account_id }
            }
            _ => Intent::Login,
        };
        let grant = Grant {
            refresh_token: tokens.refresh_token,
            access_token: tokens.access_token,
            expires_in: tokens.expires_in,
        };
        let return_to = pending.return_to;
        match self
            .apply_identity(&verified, Some(grant), &intent, "sso", meta)
            .await?
        {
            Applied::LoggedIn(session) => Ok(CallbackOutcome::LoggedIn { session, return_to }),
            Applied::Linked(character_id) => Ok(CallbackOutcome::Linked {
                character_id,
                return_to,
            }),
        }
    }

    async fn revoke_quietly(&self, sso: &Sso, refresh_token: &Secret<String>) {
        if let Err(e) = sso.client.revoke(refresh_token).await {
            tracing::warn!(error = %e, "revoking an unused grant failed");
        }
    }

    /// Development login: no SSO, loopback only, clearly labelled (`method = dev`).
    pub async fn dev_login(
        &self,
        character_id: i64,
        name: &str,
        meta: &RequestMeta,
    ) -> AuthResult<NewSession> {
        if !self.settings.dev_login {
            return Err(AuthError::NotFound);
        }
        if character_id <= 0 {
            return Err(AuthError::BadRequest(
                "character_id must be a positive EVE character id".into(),
            ));
        }
        if let Some(existing) = self.store.character(character_id).await?
            && existing.owner_hash != DEV_OWNER
        {
            return Err(AuthError::Forbidden(
                "that character was linked through eve sso; log in with sso",
            ));
        }
        let verified = VerifiedCharacter {
            character_id,
            name: if name.trim().is_empty() {
                format!("Character {character_id}")
            } else {
                name.trim().to_owned()
            },
            owner_hash: DEV_OWNER.to_owned(),
            scopes: BTreeSet::new(),
            expires_at: self.now(),
        };
        match self
            .apply_identity(&verified, None, &Intent::Login, "dev", meta)
            .await?
        {
            Applied::LoggedIn(s) => Ok(s),
            Applied::Linked(_) => Err(internal(anyhow::anyhow!(
                "dev login linked instead of logging in"
            ))),
        }
    }

    /// The shared tail of SSO and dev logins: owner-change handling, account creation
    /// or linking, gating, SuperAdmin bootstrap, session, audit.
    async fn apply_identity(
        &self,
        v: &VerifiedCharacter,
        grant: Option<Grant>,
        intent: &Intent,
        method: &str,
        meta: &RequestMeta,
    ) -> AuthResult<Applied> {
        let now = self.now();
        let existing = self.store.character(v.character_id).await?;
        let plan = characters::plan(
            existing
                .as_ref()
                .map(|c| Existing {
                    account_id: c.account_id.clone(),
                    owner_hash: c.owner_hash.clone(),
                })
                .as_ref(),
            &v.owner_hash,
            intent,
        );
        if plan.detach_from.is_some() {
            self.owner_changed(v.character_id, "login", meta).await?;
        }
        match plan.then {
            Then::RefuseOtherAccount => {
                if let (Some(sso), Some(g)) = (self.sso.as_ref(), grant.as_ref()) {
                    self.revoke_quietly(sso, &g.refresh_token).await;
                }
                metrics::counter!(metric::REJECTIONS, "reason" => "character_exists").increment(1);
                Err(AuthError::Login(LoginFailure::CharacterExists))
            }
            Then::CreateAccount => {
                let affiliation = self.fresh_affiliation(v.character_id, None).await;
                let gating = self.gating_config().await?;
                let bootstrap = self.is_bootstrap_superadmin(v.character_id).await?;
                let decision = if bootstrap {
                    GateDecision::Allowed("superadmin")
                } else {
                    gating.check(affiliation)
                };
                if !decision.is_allowed() {
                    return self
                        .gate_refusal(None, v, decision, affiliation, grant, meta)
                        .await;
                }
                let account_id = uuid::Uuid::new_v4().to_string();
                let account = Account {
                    id: account_id.clone(),
                    display_name: v.name.clone(),
                    primary_character_id: Some(v.character_id),
                    blocked: false,
                    block_reason: None,
                    super_admin: bootstrap,
                    authz_version: 1,
                    created_at: now,
                    last_login_at: None,
                };
                let character = self.character_record(v, &account_id, affiliation, now);
                let token = self.token_row(&account_id, v.character_id, grant.as_ref(), now)?;
                let roles: Vec<(Feature, Role)> = gating
                    .default_role
                    .map(|r| {
                        Feature::ALL
                            .into_iter()
                            .filter(|f| *f != Feature::Admin)
                            .map(|f| (f, r))
                            .collect()
                    })
                    .unwrap_or_default();
                if let Err(e) = self
                    .store
                    .create_account(&account, &character, token.as_ref(), &roles)
                    .await
                {
                    // Two first logins of one character at once: the other created the account
                    // (the character's unique key refused ours). Log in to that one instead.
                    if existing.is_none() && self.store.character(v.character_id).await?.is_some() {
                        return Box::pin(self.apply_identity(v, grant, intent, method, meta)).await;
                    }
                    return Err(e.into());
                }
                self.audit(
                    Some(&account_id),
                    "account.created",
                    ("account", &account_id),
                    meta,
                    json!({"character_id": v.character_id, "method": method}),
                )
                .await?;
                if bootstrap {
                    self.audit(
                        None,
                        "account.superadmin.promoted",
                        ("account", &account_id),
                        meta,
                        json!({"source": "config", "character_id": v.character_id}),
                    )
                    .await?;
                }
                self.finish_login(&account_id, v.character_id, method, decision, meta)
                    .await
            }
            Then::LoginTo(account_id) => {
                let Some(account) = self.store.account(&account_id).await? else {
                    return Err(internal(anyhow::anyhow!(
                        "character {} points at a missing account",
                        v.character_id
                    )));
                };
                if account.blocked {
                    metrics::counter!(metric::REJECTIONS, "reason" => "account_blocked")
                        .increment(1);
                    self.audit(
                        Some(&account_id),
                        "account.login_refused",
                        ("account", &account_id),
                        meta,
                        json!({"reason": "account_blocked", "character_id": v.character_id}),
                    )
                    .await?;
                    return Err(AuthError::Login(LoginFailure::AccountBlocked));
                }
                self.store
                    .update_character_identity(v.character_id, &v.name, &scopes_of(v))
                    .await?;
                if let Some(token) =
                    self.token_row(&account_id, v.character_id, grant.as_ref(), now)?
                {
                    self.store.upsert_token(&token).await?;
                }
                let mut account = account;
                if !account.super_admin && self.is_bootstrap_superadmin(v.character_id).await? {
                    self.store.set_super_admin(&account_id, true).await?;
                    account.super_admin = true;
                    self.audit(
                        None,
                        "account.superadmin.promoted",
                        ("account", &account_id),
                        meta,
                        json!({"source": "config", "character_id": v.character_id}),
                    )
                    .await?;
                }
                let decision = self.gate_account(&account).await?;
                if !decision.is_allowed() {
                    let primary = account.primary_character_id.unwrap_or(v.character_id);
                    let aff = self
                        .store
                        .character(primary)
                        .await?
                        .and_then(|c| stored_affiliation(&c));
                    return self
                        .gate_refusal(Some(&account_id), v, decision, aff, None, meta)
                        .await;
                }
                self.finish_login(&account_id, v.character_id, method, decision, meta)
                    .await
            }
            Then::AttachTo(account_id) => {
                let affiliation = self.fresh_affiliation(v.character_id, None).await;
                let character = self.character_record(v, &account_id, affiliation, now);
                let token = self.token_row(&account_id, v.character_id, grant.as_ref(), now)?;
                self.store
                    .attach_character(&character, token.as_ref())
                    .await?;
                self.audit(
                    Some(&account_id),
                    "character.linked",
                    ("character", &v.character_id.to_string()),
                    meta,
                    json!({"account_id": account_id}),
                )
                .await?;
                Ok(Applied::Linked(v.character_id))
            }
            Then::AlreadyLinked(account_id) => {
                self.store
                    .update_character_identity(v.character_id, &v.name, &scopes_of(v))
                    .await?;
                if let Some(token) =
                    self.token_row(&account_id, v.character_id, grant.as_ref(), now)?
                {
                    self.store.upsert_token(&token).await?;
                }
                self.audit(
                    Some(&account_id),
                    "character.relinked",
                    ("character", &v.character_id.to_string()),
                    meta,
                    json!({"account_id": account_id}),
                )
                .await?;
                Ok(Applied::Linked(v.character_id))
            }
        }
    }

    async fn gate_refusal(
        &self,
        account_id: Option<&str>,
        v: &VerifiedCharacter,
        decision: GateDecision,
        affiliation: Option<Affiliation>,
        grant: Option<Grant>,
        meta: &RequestMeta,
    ) -> AuthResult<Applied> {
        if let (Some(sso), Some(g)) = (self.sso.as_ref(), grant.as_ref()) {
            self.revoke_quietly(sso, &g.refresh_token).await;
        }
        metrics::counter!(metric::REJECTIONS, "reason" => "gated").increment(1);
        self.audit(
            account_id,
            "account.login_refused",
            ("character", &v.character_id.to_string()),
            meta,
            json!({
                "reason": decision.reason(),
                "corporation_id": affiliation.map(|a| a.corporation_id),
                "alliance_id": affiliation.and_then(|a| a.alliance_id),
            }),
        )
        .await?;
        Err(AuthError::Login(LoginFailure::OrgNotAllowed(
            decision.reason(),
        )))
    }

    async fn finish_login(
        &self,
        account_id: &str,
        character_id: i64,
        method: &str,
        decision: GateDecision,
        meta: &RequestMeta,
    ) -> AuthResult<Applied> {
        let session = self
            .issue_session(account_id, character_id, method, meta)
            .await?;
        self.audit(
            Some(account_id),
            "account.login",
            ("account", account_id),
            meta,
            json!({"character_id": character_id, "method": method, "gate": decision.reason(), "user_agent": meta.user_agent.chars().take(128).collect::<String>()}),
        )
        .await?;
        Ok(Applied::LoggedIn(session))
    }

    async fn is_bootstrap_superadmin(&self, character_id: i64) -> AuthResult<bool> {
        Ok(self.settings.superadmin_character_id == Some(character_id)
            && self.store.count_super_admins().await? == 0)
    }

    fn character_record(
        &self,
        v: &VerifiedCharacter,
        account_id: &str,
        affiliation: Option<Affiliation>,
        now: DateTime<Utc>,
    ) -> Character {
        Character {
            character_id: v.character_id,
            account_id: account_id.to_owned(),
            name: v.name.clone(),
            owner_hash: v.owner_hash.clone(),
            corporation_id: affiliation.map(|a| a.corporation_id),
            alliance_id: affiliation.and_then(|a| a.alliance_id),
            scopes: scopes_of(v),
            affiliation_checked_at: affiliation.map(|_| now),
            linked_at: now,
        }
    }

    fn token_row(
        &self,
        account_id: &str,
        character_id: i64,
        grant: Option<&Grant>,
        now: DateTime<Utc>,
    ) -> AuthResult<Option<TokenRow>> {
        let (Some(grant), Some(sso)) = (grant, self.sso.as_ref()) else {
            return Ok(None);
        };
        let refresh_token_enc = sso
            .cipher
            .encrypt(
                grant.refresh_token.expose(),
                &token_aad(account_id, character_id),
            )
            .map_err(internal)?;
        let access_token_enc = sso
            .cipher
            .encrypt(
                grant.access_token.expose(),
                &access_aad(account_id, character_id),
            )
            .map_err(internal)?;
        let expires_in = TimeDelta::seconds(
            i64::try_from(grant.expires_in)
                .unwrap_or(1200)
                .clamp(60, 86_400),
        );
        Ok(Some(TokenRow {
            character_id,
            account_id: account_id.to_owned(),
            refresh_token_enc,
            access_token_enc: Some(access_token_enc),
            key_id: sso.cipher.active_key_id().to_string(),
            access_expires_at: now + expires_in,
            next_refresh_at: now
                + (expires_in - self.settings.refresh_ahead).max(TimeDelta::seconds(30)),
            status: TokenStatus::Valid,
            rt_version: 1,
            failures: 0,
            last_error: None,
            updated_at: now,
        }))
    }

    /// The affiliation now (ESI), falling back to `known` when ESI does not answer.
    async fn fresh_affiliation(
        &self,
        character_id: i64,
        known: Option<Affiliation>,
    ) -> Option<Affiliation> {
        self.affiliations
            .affiliations(&[character_id])
            .await
            .get(&character_id)
            .copied()
            .or(known)
    }

    /// The gate for an account: its primary's affiliation (refreshed from ESI when it
    /// answers), SuperAdmins always pass.
    pub async fn gate_account(&self, account: &Account) -> AuthResult<GateDecision> {
        if account.super_admin {
            return Ok(GateDecision::Allowed("superadmin"));
        }
        let gating = self.gating_config().await?;
        let Some(primary) = account.primary_character_id else {
            return Ok(GateDecision::Denied("no_primary_character"));
        };
        let stored = self.store.character(primary).await?;
        let known = stored.as_ref().and_then(stored_affiliation);
        let fresh = if gating.needs_affiliation() {
            self.fresh_affiliation(primary, None).await
        } else {
            None
        };
        if let Some(a) = fresh
            && Some(a) != known
        {
            self.store
                .update_affiliation(primary, a.corporation_id, a.alliance_id, self.now())
                .await?;
        }
        Ok(gating.check(fresh.or(known)))
    }

    // ---------------------------------------------------------------- owner change

    /// A character's owner hash changed: revoke its grant at SSO (best effort), detach
    /// it (tokens deleted, sessions through it revoked, primary re-picked), audit.
    pub async fn owner_changed(
        &self,
        character_id: i64,
        seen_at: &str,
        meta: &RequestMeta,
    ) -> AuthResult<()> {
        if let (Some(sso), Some(token)) = (self.sso.as_ref(), self.store.token(character_id).await?)
            && let Ok(rt) = sso.cipher.decrypt(
                &token.refresh_token_enc,
                &token_aad(&token.account_id, character_id),
            )
        {
            self.revoke_quietly(sso, &rt).await;
        }
        let Some(report) = self
            .store
            .detach_character(character_id, self.now())
            .await?
        else {
            return Ok(());
        };
        metrics::counter!(metric::SESSIONS_REVOKED, "reason" => "owner_changed")
            .increment(report.sessions_revoked);
        tracing::info!(character_id, account_id = %report.account_id, "character owner changed; detached");
        self.audit(
            None,
            "character.owner_changed",
            ("character", &character_id.to_string()),
            meta,
            json!({
                "account_id": report.account_id,
                "was_primary": report.was_primary,
                "new_primary": report.new_primary,
                "sessions_revoked": report.sessions_revoked,
                "seen_at": seen_at,
            }),
        )
        .await?;
        Ok(())
    }

    // ---------------------------------------------------------------- characters

    /// Makes one of the account's characters primary; refused if it would not pass the gate.
    pub async fn set_primary(
        &self,
        actor: &Authed,
        character_id: i64,
        meta: &RequestMeta,
    ) -> AuthResult<()> {
        let account = &actor.account;
        let Some(character) = self
            .store
            .character(character_id)
            .await?
            .filter(|c| c.account_id == account.id)
        else {
            return Err(AuthError::NotFound);
        };
        if account.primary_character_id == Some(character_id) {
            return Ok(());
        }
        if !account.super_admin {
            let gating = self.gating_config().await?;
            let aff = self
                .fresh_affiliation(character_id, stored_affiliation(&character))
                .await;
            let decision = gating.check(aff);
            if !decision.is_allowed() {
                return Err(AuthError::Conflict {
                    code: "primary_not_allowed",
                    message: format!(
                        "that character cannot be your primary: its corporation or alliance is not allowed ({})",
                        decision.reason()
                    ),
                });
            }
        }
        if !self.store.set_primary(&account.id, character_id).await? {
            return Err(AuthError::NotFound);
        }
        self.audit(
            Some(&account.id),
            "account.primary_character_changed",
            ("account", &account.id),
            meta,
            json!({"from": account.primary_character_id, "to": character_id}),
        )
        .await?;
        Ok(())
    }

    /// Unlinks one of the account's characters (never the last one, nor the primary),
    /// revoking its grant at SSO first.
    pub async fn unlink(
        &self,
        actor: &Authed,
        character_id: i64,
        meta: &RequestMeta,
    ) -> AuthResult<()> {
        let account = &actor.account;
        let chars: Vec<i64> = self
            .store
            .characters_of(&account.id)
            .await?
            .iter()
            .map(|c| c.character_id)
            .collect();
        if let Err(e) = characters::can_unlink(&chars, account.primary_character_id, character_id) {
            return Err(match e {
                characters::UnlinkError::NotYours => AuthError::NotFound,
                characters::UnlinkError::LastCharacter => AuthError::Conflict {
                    code: "last_character",
                    message: e.to_string(),
                },
                characters::UnlinkError::Primary => AuthError::Conflict {
                    code: "primary_character",
                    message: e.to_string(),
                },
            });
        }
        if let (Some(sso), Some(token)) = (self.sso.as_ref(), self.store.token(character_id).await?)
            && let Ok(rt) = sso.cipher.decrypt(
                &token.refresh_token_enc,
                &token_aad(&token.account_id, character_id),
            )
        {
            self.revoke_quietly(sso, &rt).await;
        }
        self.store.delete_character(character_id).await?;
        // Sessions that came in through the unlinked character end with it.
        let mut revoked = 0u64;
        for s in self.store.sessions_of(&account.id, self.now()).await? {
            if s.via_character_id == character_id
                && self
                    .store
                    .revoke_session(&s.id_hash, "character_unlinked", self.now())
                    .await?
            {
                revoked += 1;
            }
        }
        self.store.bump_authz(&account.id).await?;
        self.audit(
            Some(&account.id),
            "character.unlinked",
            ("character", &character_id.to_string()),
            meta,
            json!({"account_id": account.id, "sessions_revoked": revoked}),
        )
        .await?;
        Ok(())
    }

    // ---------------------------------------------------------------- authorization

    /// `POST /authorize` and `AuthClient`: the decision for an account.
    pub async fn authorize_account(
        &self,
        account_id: &str,
        feature: &str,
        action: &str,
    ) -> AuthResult<Decision> {
        let decision = match self.store.account(account_id).await? {
            None => Decision::deny(rbac::Reason::NotAuthenticated),
            Some(account) => rbac::decide_raw(&self.subject(&account).await?, feature, action),
        };
        metrics::counter!(metric::AUTHORIZATIONS, "allow" => if decision.allow { "true" } else { "false" }).increment(1);
        Ok(decision)
    }

    /// The decision for a session id (unknown/expired: denied, not an error).
    pub async fn authorize_session(
        &self,
        session_id: &str,
        feature: &str,
        action: &str,
    ) -> AuthResult<(Option<String>, Decision)> {
        match self.authenticate(session_id).await {
            Ok(a) => Ok((
                Some(a.account.id.clone()),
                self.authorize_account(&a.account.id, feature, action)
                    .await?,
            )),
            Err(AuthError::NotAuthenticated) => {
                Ok((None, Decision::deny(rbac::Reason::NotAuthenticated)))
            }
            Err(AuthError::Blocked) => Ok((None, Decision::deny(rbac::Reason::AccountBlocked))),
            Err(e) => Err(e),
        }
    }

    /// Checks an admin operation for the caller.
    pub async fn require_admin(
        &self,
        actor: &Authed,
        op: AdminOp,
        meta: &RequestMeta,
    ) -> AuthResult<()> {
        let decision = rbac::decide_admin(&self.subject(&actor.account).await?, op);
        if decision.allow {
            return Ok(());
        }
        self.audit(
            Some(&actor.account.id),
            "authorization.denied",
            ("admin", &format!("{op:?}")),
            meta,
            json!({"reason": decision.reason.as_str()}),
        )
        .await?;
        Err(AuthError::Forbidden(decision.reason.as_str()))
    }

    // ---------------------------------------------------------------- admin

    /// Appends an admin change made in another service (which has no sessions of its own)
    /// to this audit log, on the hash chain like every other entry. The actor is always the
    /// caller's account, and only other services' namespaces may be written, so an Admin
    /// session cannot forge this service's own entries (role grants, logins, denials).
    pub async fn record_admin_action(
        &self,
        actor: &Authed,
        action: &str,
        target: (&str, &str),
        meta: &RequestMeta,
        metadata: serde_json::Value,
    ) -> AuthResult<AuditEntry> {
        self.require_admin(actor, AdminOp::RecordAction, meta)
            .await?;
        validate_recorded_action(action, target, &metadata)?;
        self.audit(Some(&actor.account.id), action, target, meta, metadata)
            .await
    }

    pub async fn list_accounts(&self, q: &AccountQuery) -> AuthResult<(Vec<Account>, i64)> {
        Ok(self.store.list_accounts(q).await?)
    }

    pub async fn update_account(
        &self,
        actor: &Authed,
        id: &str,
        patch: &AccountPatch,
        meta: &RequestMeta,
    ) -> AuthResult<Account> {
        let Some(account) = self.store.account(id).await? else {
            return Err(AuthError::NotFound);
        };
        let actor_id = actor.account.id.as_str();
        if patch.super_admin.is_some() {
            self.require_admin(actor, AdminOp::ManageSuperAdmins, meta)
                .await?;
        }
        if patch.display_name.is_some()
            || patch.blocked.is_some()
            || patch.primary_character_id.is_some()
        {
            self.require_admin(actor, AdminOp::ManageAccounts, meta)
                .await?;
        }
        // Validate everything first, so a refused patch changes nothing.
        self.check_patch(actor_id, &account, patch).await?;
        if let Some(name) = &patch.display_name {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 64 {
                return Err(AuthError::BadRequest(
                    "display_name must be 1-64 characters".into(),
                ));
            }
            self.store.set_display_name(id, name).await?;
            self.audit(
                Some(actor_id),
                "account.updated",
                ("account", id),
                meta,
                json!({"display_name": name}),
            )
            .await?;
        }
        if let Some(blocked) = patch.blocked
            && blocked != account.blocked
        {
            if blocked && id == actor_id {
                return Err(AuthError::Conflict {
                    code: "self_block",
                    message: "you cannot block yourself".into(),
                });
            }
            if blocked && account.super_admin && self.store.count_super_admins().await? <= 1 {
                return Err(AuthError::Conflict {
                    code: "last_superadmin",
                    message: "the last SuperAdmin cannot be blocked".into(),
                });
            }
            let reason = patch
                .block_reason
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty());
            if blocked && reason.is_none() {
                return Err(AuthError::BadRequest(
                    "blocking needs a block_reason".into(),
                ));
            }
            self.store
                .set_blocked(id, blocked, if blocked { reason } else { None })
                .await?;
            let mut revoked = 0;
            if blocked {
                revoked = self
                    .store
                    .revoke_account_sessions(id, "account_blocked", self.now())
                    .await?;
                metrics::counter!(metric::SESSIONS_REVOKED, "reason" => "account_blocked")
                    .increment(revoked);
            }
            let action = if blocked {
                "account.blocked"
            } else {
                "account.unblocked"
            };
            self.audit(
                Some(actor_id),
                action,
                ("account", id),
                meta,
                json!({"reason": reason, "sessions_revoked": revoked}),
            )
            .await?;
        }
        if let Some(super_admin) = patch.super_admin
            && super_admin != account.super_admin
        {
            if !super_admin {
                if id == actor_id {
                    return Err(AuthError::Conflict {
                        code: "self_demotion",
                        message: "you cannot demote yourself".into(),
                    });
                }
                if self.store.count_super_admins().await? <= 1 {
                    return Err(AuthError::Conflict {
                        code: "last_superadmin",
                        message: "the last SuperAdmin cannot be demoted".into(),
                    });
                }
            }
            self.store.set_super_admin(id, super_admin).await?;
            let action = if super_admin {
                "account.superadmin.promoted"
            } else {
                "account.superadmin.demoted"
            };
            self.audit(Some(actor_id), action, ("account", id), meta, json!({}))
                .await?;
        }
        if let Some(primary) = patch.primary_character_id
            && account.primary_character_id != Some(primary)
        {
            if !self.store.set_primary(id, primary).await? {
                return Err(AuthError::BadRequest(
                    "primary_character_id is not a character of this account".into(),
                ));
            }
            self.audit(
                Some(actor_id),
                "account.primary_character_changed_by_admin",
                ("account", id),
                meta,
                json!({"from": account.primary_character_id, "to": primary}),
            )
            .await?;
        }
        self.store.account(id).await?.ok_or(AuthError::NotFound)
    }

    async fn check_patch(
        &self,
        actor_id: &str,
        account: &Account,
        patch: &AccountPatch,
    ) -> AuthResult<()> {
        let conflict = |code: &'static str, message: &str| AuthError::Conflict {
            code,
            message: message.to_owned(),
        };
        if let Some(name) = &patch.display_name
            && (name.trim().is_empty() || name.trim().chars().count() > 64)
        {
            return Err(AuthError::BadRequest(
                "display_name must be 1-64 characters".into(),
            ));
        }
        let last_superadmin = account.super_admin && self.store.count_super_admins().await? <= 1;
        if patch.blocked == Some(true) && !account.blocked {
            if account.id == actor_id {
                return Err(conflict("self_block", "you cannot block yourself"));
            }
            if last_superadmin {
                return Err(conflict(
                    "last_superadmin",
                    "the last SuperAdmin cannot be blocked",
                ));
            }
            if patch
                .block_reason
                .as_deref()
                .is_none_or(|r| r.trim().is_empty())
            {
                return Err(AuthError::BadRequest(
                    "blocking needs a block_reason".into(),
                ));
            }
        }
        if patch.super_admin == Some(false) && account.super_admin {
            if account.id == actor_id {
                return Err(conflict("self_demotion", "you cannot demote yourself"));
            }
            if last_superadmin {
                return Err(conflict(
                    "last_superadmin",
                    "the last SuperAdmin cannot be demoted",
                ));
            }
        }
        if let Some(primary) = patch.primary_character_id
            && !self
                .store
                .characters_of(&account.id)
                .await?
                .iter()
                .any(|c| c.character_id == primary)
        {
            return Err(AuthError::BadRequest(
                "primary_character_id is not a character of this account".into(),
            ));
        }
        Ok(())
    }

    pub async fn grant_role(
        &self,
        actor: &Authed,
        account_id: &str,
        feature: Feature,
        role: Option<Role>,
        meta: &RequestMeta,
    ) -> AuthResult<()> {
        self.require_admin(actor, AdminOp::GrantRole(feature), meta)
            .await?;
        if self.store.account(account_id).await?.is_none() {
            return Err(AuthError::NotFound);
        }
        let before = self
            .store
            .roles_of(account_id)
            .await?
            .get(&feature)
            .copied();
        self.store
            .set_role(
                account_id,
                feature,
                role,
                Some(&actor.account.id),
                self.now(),
            )
            .await?;
        let action = match (before, role) {
            (_, None) => "role.revoked",
            (None, Some(_)) => "role.granted",
            (Some(_), Some(_)) => "role.changed",
        };
        self.audit(
            Some(&actor.account.id),
            action,
            ("account", account_id),
            meta,
            json!({"feature": feature.key(), "from": before.map(Role::key), "to": role.map(Role::key)}),
        )
        .await?;
        Ok(())
    }

    /// Replaces the gating configuration, then applies it at once: accounts whose
    /// primary no longer passes (by its last known affiliation) lose their sessions.
    pub async fn put_config(
        &self,
        actor: &Authed,
        config: &GatingConfig,
        meta: &RequestMeta,
    ) -> AuthResult<u64> {
        self.require_admin(actor, AdminOp::ManageConfig, meta)
            .await?;
        let before = self.gating_config().await?;
        self.store
            .put_gating_config(config, Some(&actor.account.id), self.now())
            .await?;
        self.audit(
            Some(&actor.account.id),
            "auth_config.updated",
            ("auth_config", "1"),
            meta,
            json!({"before": before, "after": config}),
        )
        .await?;
        let mut locked_out = 0;
        for id in self.store.all_account_ids().await? {
            let Some(account) = self.store.account(&id).await? else {
                continue;
            };
            if account.super_admin || account.blocked {
                continue;
            }
            let aff = match account.primary_character_id {
                Some(p) => self
                    .store
                    .character(p)
                    .await?
                    .and_then(|c| stored_affiliation(&c)),
                None => None,
            };
            let decision = config.check(aff);
            if !decision.is_allowed()
                && self
                    .lock_out(&account, decision, "auth_config_changed", aff)
                    .await?
                    > 0
            {
                locked_out += 1;
            }
        }
        Ok(locked_out)
    }

    /// Revokes an account's sessions because its gate failed; returns how many.
    async fn lock_out(
        &self,
        account: &Account,
        decision: GateDecision,
        cause: &str,
        aff: Option<Affiliation>,
    ) -> AuthResult<u64> {
        let revoked = self
            .store
            .revoke_account_sessions(&account.id, "organization_changed", self.now())
            .await?;
        self.store.bump_authz(&account.id).await?;
        if revoked > 0 {
            metrics::counter!(metric::SESSIONS_REVOKED, "reason" => "organization_changed")
                .increment(revoked);
            self.audit(
                None,
                "session.invalidated",
                ("account", &account.id),
                &RequestMeta {
                    ip: "system".into(),
                    user_agent: String::new(),
                },
                json!({
                    "reason": "organization_changed",
                    "gate": decision.reason(),
                    "cause": cause,
                    "corporation_id": aff.map(|a| a.corporation_id),
                    "alliance_id": aff.and_then(|a| a.alliance_id),
                    "sessions_revoked": revoked,
                }),
            )
            .await?;
        }
        Ok(revoked)
    }

    pub async fn kill_account_sessions(
        &self,
        actor: &Authed,
        account_id: &str,
        meta: &RequestMeta,
    ) -> AuthResult<u64> {
        self.require_admin(actor, AdminOp::ManageAccounts, meta)
            .await?;
        let revoked = self
            .store
            .revoke_account_sessions(account_id, "admin_revoked", self.now())
            .await?;
        metrics::counter!(metric::SESSIONS_REVOKED, "reason" => "admin_revoked").increment(revoked);
        self.audit(
            Some(&actor.account.id),
            "session.revoked",
            ("account", account_id),
            meta,
            json!({"sessions_revoked": revoked, "reason": "admin_revoked"}),
        )
        .await?;
        Ok(revoked)
    }

    pub async fn audit_log(&self, q: &AuditQuery) -> AuthResult<Vec<AuditEntry>> {
        Ok(self.store.audit(q).await?)
    }

    // ---------------------------------------------------------------- background jobs

    /// Refreshes every grant that is due: stores the rotated refresh token (compare-and-
    /// swap on the row version), marks dead grants, detaches characters whose owner
    /// changed. Transient failures back off and never delete anything.
    pub async fn refresh_due_tokens(&self) -> AuthResult<RefreshReport> {
        let mut report = RefreshReport::default();
        let Some(sso) = self.sso.as_ref() else {
            return Ok(report);
        };
        let now = self.now();
        let system = RequestMeta {
            ip: "system".into(),
            user_agent: String::new(),
        };
        // Several batches per pass, so a large backlog drains; a row seen twice in one
        // pass (a store error left it due) ends the pass instead of looping on it.
        let mut seen = BTreeSet::new();
        for _ in 0..MAX_BATCHES_PER_PASS {
            let batch = self
                .store
                .tokens_due(now, self.settings.refresh_batch)
                .await?;
            let full =
                i64::try_from(batch.len()).unwrap_or(i64::MAX) >= self.settings.refresh_batch;
            let fresh: Vec<TokenRow> = batch
                .into_iter()
                .filter(|t| seen.insert(t.character_id))
                .collect();
            if fresh.is_empty() {
                break;
            }
            self.refresh_batch(sso, fresh, &system, &mut report).await;
            if !full {
                break;
            }
        }
        Ok(report)
    }

    async fn refresh_batch(
        &self,
        sso: &Sso,
        batch: Vec<TokenRow>,
        system: &RequestMeta,
        report: &mut RefreshReport,
    ) {
        for token in batch {
            let outcome = self.refresh_one(sso, &token, system).await;
            let label = match outcome {
                Ok(RefreshOutcome::Refreshed) => {
                    report.refreshed += 1;
                    "ok"
                }
                Ok(RefreshOutcome::LostRace) => {
                    report.lost_race += 1;
                    "lost_race"
                }
                Ok(RefreshOutcome::Dead) => {
                    report.dead += 1;
                    "dead"
                }
                Ok(RefreshOutcome::OwnerChanged) => {
                    report.owner_changed += 1;
                    "owner_changed"
                }
                Ok(RefreshOutcome::Transient) => {
                    report.transient += 1;
                    "transient"
                }
                Err(e) => {
                    tracing::warn!(character_id = token.character_id, error = %e, "token refresh failed");
                    "error"
                }
            };
            metrics::counter!(metric::TOKEN_REFRESHES, "result" => label).increment(1);
        }
    }

    async fn refresh_one(
        &self,
        sso: &Sso,
        token: &TokenRow,
        system: &RequestMeta,
    ) -> AuthResult<RefreshOutcome> {
        let now = self.now();
        let character_id = token.character_id;
        let row_aad = token_aad(&token.account_id, character_id);
        let Ok(refresh_token) = sso.cipher.decrypt(&token.refresh_token_enc, &row_aad) else {
            // Tampered, moved between rows, or under a key that is gone: unusable.
            self.store
                .mark_token_dead(character_id, None, "undecryptable", now)
                .await?;
            self.audit(
                None,
                "token.dead",
                ("character", &character_id.to_string()),
                system,
                json!({"reason": "undecryptable", "account_id": token.account_id}),
            )
            .await?;
            return Ok(RefreshOutcome::Dead);
        };
        let response = match sso.client.refresh(&refresh_token).await {
            Ok(r) => r,
            Err(SsoError::InvalidGrant { description }) => {
                let marked = self
                    .store
                    .mark_token_dead(character_id, Some(token.rt_version), "invalid_grant", now)
                    .await?;
                if !marked {
                    // Someone stored a newer grant since we read the row: ours was the
                    // stale one (it rotated away), theirs is fine.
                    return Ok(RefreshOutcome::LostRace);
                }
                self.audit(
                    None,
                    "token.dead",
                    ("character", &character_id.to_string()),
                    system,
                    json!({"reason": "invalid_grant", "description": description, "account_id": token.account_id}),
                )
                .await?;
                return Ok(RefreshOutcome::Dead);
            }
            Err(e) => {
                let backoff =
                    TimeDelta::seconds(30_i64.saturating_mul(1_i64 << token.failures.clamp(0, 7)));
                let label = if e.is_transient() {
                    "transient"
                } else {
                    "rejected"
                };
                self.store
                    .record_token_failure(
                        character_id,
                        label,
                        now + backoff.min(TimeDelta::hours(1)),
                        now,
                    )
                    .await?;
                return Ok(RefreshOutcome::Transient);
            }
        };
        let verified = match sso
            .validator
            .validate(response.access_token.expose(), now)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(character_id, error = %e, "refreshed access token rejected");
                self.store
                    .record_token_failure(
                        character_id,
                        "jwt_rejected",
                        now + TimeDelta::minutes(10),
                        now,
                    )
                    .await?;
                return Ok(RefreshOutcome::Transient);
            }
        };
        let stored = self.store.character(character_id).await?;
        if verified.character_id != character_id {
            self.store
                .mark_token_dead(character_id, None, "subject_mismatch", now)
                .await?;
            return Ok(RefreshOutcome::Dead);
        }
        if stored
            .as_ref()
            .is_some_and(|c| c.owner_hash != verified.owner_hash)
        {
            // Sold: the new grant belongs to the new owner, not to this account.
            self.revoke_quietly(sso, &response.refresh_token).await;
            self.owner_changed(character_id, "refresh", system).await?;
            return Ok(RefreshOutcome::OwnerChanged);
        }
        let grant = Grant {
            refresh_token: response.refresh_token,
            access_token: response.access_token,
            expires_in: response.expires_in,
        };
        let Some(new_row) = self.token_row(&token.account_id, character_id, Some(&grant), now)?
        else {
            return Ok(RefreshOutcome::Transient);
        };
        if self.store.swap_token(token.rt_version, &new_row).await? {
            Ok(RefreshOutcome::Refreshed)
        } else {
            // A login stored a new grant meanwhile: ours would be an orphan, revoke it.
            self.revoke_quietly(sso, &grant.refresh_token).await;
            Ok(RefreshOutcome::LostRace)
        }
    }

    /// Re-checks characters' corporation/alliance through the affiliation source and
    /// locks out accounts whose primary no longer passes the gate. Characters the
    /// source cannot resolve keep their last known affiliation (fail open on ESI
    /// trouble: an outage must not log everyone out).
    pub async fn check_affiliations(&self) -> AuthResult<AffiliationReport> {
        let mut report = AffiliationReport::default();
        let now = self.now();
        let due = self
            .store
            .characters_due_affiliation(
                now - self.settings.affiliation_every,
                self.settings.affiliation_batch,
            )
            .await?;
        if due.is_empty() {
            return Ok(report);
        }
        let ids: Vec<i64> = due.iter().map(|c| c.character_id).collect();
        let found = self.affiliations.affiliations(&ids).await;
        let gating = self.gating_config().await?;
        let mut accounts: BTreeMap<String, ()> = BTreeMap::new();
        for c in &due {
            match found.get(&c.character_id) {
                Some(a) => {
                    report.checked += 1;
                    self.store
                        .update_affiliation(c.character_id, a.corporation_id, a.alliance_id, now)
                        .await?;
                    accounts.insert(c.account_id.clone(), ());
                }
                None => report.unresolved += 1,
            }
        }
        for account_id in accounts.keys() {
            let Some(account) = self.store.account(account_id).await? else {
                continue;
            };
            if account.super_admin || account.blocked {
                continue;
            }
            let aff = match account.primary_character_id {
                Some(p) => self
                    .store
                    .character(p)
                    .await?
                    .and_then(|c| stored_affiliation(&c)),
                None => None,
            };
            let decision = gating.check(aff);
            if !decision.is_allowed()
                && self
                    .lock_out(&account, decision, "affiliation_check", aff)
                    .await?
                    > 0
            {
                report.accounts_locked_out += 1;
            }
        }
        Ok(report)
    }

    /// Re-encrypts grants that are not under the active key (`battlescope auth
    /// rotate-key`): after it reports 0 remaining, old keys can leave the keyring.
    pub async fn reencrypt_tokens(&self) -> AuthResult<(u64, u64)> {
        let sso = self.sso_required()?;
        let active = sso.cipher.active_key_id().to_string();
        let (mut moved, mut failed) = (0u64, 0u64);
        loop {
            let batch = self.store.tokens_not_under_key(&active, 200).await?;
            if batch.is_empty() {
                break;
            }
            let mut progressed = false;
            for t in batch {
                let row_aad = token_aad(&t.account_id, t.character_id);
                let access = t
                    .access_token_enc
                    .as_deref()
                    .map(|a| {
                        sso.cipher
                            .reencrypt(a, &access_aad(&t.account_id, t.character_id))
                    })
                    .transpose();
                match (sso.cipher.reencrypt(&t.refresh_token_enc, &row_aad), access) {
                    (Ok(refresh_token_enc), Ok(access_token_enc)) => {
                        let row = TokenRow {
                            refresh_token_enc,
                            access_token_enc,
                            key_id: active.clone(),
                            ..t.clone()
                        };
                        if self.store.swap_token(t.rt_version, &row).await? {
                            moved += 1;
                            progressed = true;
                        }
                    }
                    _ => {
                        failed += 1;
                        self.store
                            .mark_token_dead(t.character_id, None, "undecryptable", self.now())
                            .await?;
                        let row = TokenRow {
                            key_id: active.clone(),
                            ..t.clone()
                        };
                        // Keep the dead row out of the next batch.
                        self.store
                            .upsert_token(&TokenRow {
                                status: TokenStatus::Dead,
                                ..row
                            })
                            .await?;
                        progressed = true;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        Ok((moved, failed))
    }

    /// Deletes long-dead sessions and stale pending logins.
    pub async fn purge(&self) -> AuthResult<()> {
        let now = self.now();
        self.store.purge_sessions(now - TimeDelta::days(30)).await?;
        self.store
            .purge_login_states(now - self.settings.login_state_ttl)
            .await?;
        Ok(())
    }
}

/// Batches one refresh pass may take (bounds a pass when the backlog is large).
const MAX_BATCHES_PER_PASS: usize = 20;

/// The owner hash given to development-login characters (never a real SSO hash).
pub const DEV_OWNER: &str = "dev-login";

struct Grant {
    refresh_token: Secret<String>,
    access_token: Secret<String>,
    expires_in: u64,
}

enum Applied {
    LoggedIn(NewSession),
    Linked(i64),
}

enum RefreshOutcome {
    Refreshed,
    LostRace,
    Dead,
    OwnerChanged,
    Transient,
}

/// A stored character's affiliation, if it was ever resolved.
pub fn stored_affiliation(c: &Character) -> Option<Affiliation> {
    c.corporation_id.map(|corporation_id| Affiliation {
        corporation_id,
        alliance_id: c.alliance_id,
    })
}

/// Builds the SSO side from configuration (`None` when no client id is configured).
pub fn sso_from_config(
    config: &bs_config::Config,
    http: reqwest::Client,
) -> anyhow::Result<Option<Sso>> {
    if config.sso.client_id.trim().is_empty() {
        return Ok(None);
    }
    if config.sso.client_secret.is_empty() {
        anyhow::bail!(
            "sso.client_secret (BATTLESCOPE_SSO_CLIENT_SECRET) is required when sso.client_id is set"
        );
    }
    if config.auth.token_keys.is_empty() {
        anyhow::bail!(
            "auth.token_keys (BATTLESCOPE_TOKEN_KEYS) is required when sso is configured: refresh tokens are stored encrypted"
        );
    }
    let cipher = TokenCipher::from_spec(&Secret::new(config.auth.token_keys.expose().to_owned()))
        .context("auth.token_keys (BATTLESCOPE_TOKEN_KEYS)")?;
    let base_url = url::Url::parse(&config.sso.url)
        .with_context(|| format!("sso.url `{}`", config.sso.url))?;
    let public = url::Url::parse(&config.public_url)
        .with_context(|| format!("public_url `{}`", config.public_url))?;
    let sso_config = bs_sso::SsoConfig {
        base_url,
        client_id: config.sso.client_id.trim().to_owned(),
        client_secret: Secret::new(config.sso.client_secret.expose().to_owned()),
        callback_url: bs_sso::config::callback_url(&public).context("callback url")?,
        scopes: config
            .sso
            .scopes
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    };
    let client = SsoClient::new(sso_config, http.clone());
    let validator = JwtValidator::new(
        bs_sso::ValidatorConfig::new(config.sso.client_id.trim(), client.endpoints().jwks.clone()),
        http,
    );
    Ok(Some(Sso {
        client,
        validator,
        cipher: Arc::new(cipher),
    }))
}

/// Namespaces of the admin changes other services make (see
/// [`AuthService::record_admin_action`]).
pub const RECORDED_ACTION_NAMESPACES: &[&str] = &[
    "ingestion.",
    "enrichment.",
    "battle.",
    "search.",
    "notification.",
];

/// Largest `metadata` of a recorded action, serialised.
const MAX_RECORDED_METADATA: usize = 8 * 1024;

fn validate_recorded_action(
    action: &str,
    target: (&str, &str),
    metadata: &serde_json::Value,
) -> AuthResult<()> {
    let bad = |m: String| Err(AuthError::BadRequest(m));
    if !RECORDED_ACTION_NAMESPACES
        .iter()
        .any(|ns| action.starts_with(ns) && action.len() > ns.len())
    {
        return bad(format!(
            "action must start with one of {RECORDED_ACTION_NAMESPACES:?}"
        ));
    }
    if action.len() > 64
        || !action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
    {
        return bad("action: at most 64 characters of a-z, `.` and `_`".into());
    }
    for (name, v) in [("target_type", target.0), ("target_id", target.1)] {
        if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
            return bad(format!("{name}: 1–128 printable characters"));
        }
    }
    if !metadata.is_object() || metadata.to_string().len() > MAX_RECORDED_METADATA {
        return bad(format!(
            "metadata: a JSON object of at most {MAX_RECORDED_METADATA} bytes"
        ));
    }
    Ok(())
}
