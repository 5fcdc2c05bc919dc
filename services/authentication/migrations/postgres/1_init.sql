-- The authentication service schema (PostgreSQL). Integers are BIGINT, times unix ms,
-- flags 0/1, lists JSON text. Kept in step with ../sqlite/1_init.sql.

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    primary_character_id BIGINT,
    is_blocked BIGINT NOT NULL DEFAULT 0,
    block_reason TEXT,
    is_super_admin BIGINT NOT NULL DEFAULT 0,
    authz_version BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    last_login_at BIGINT
);

CREATE TABLE characters (
    character_id BIGINT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    owner_hash TEXT NOT NULL,
    corporation_id BIGINT,
    alliance_id BIGINT,
    scopes TEXT NOT NULL DEFAULT '',
    affiliation_checked_at BIGINT,
    linked_at BIGINT NOT NULL
);
CREATE INDEX characters_account ON characters(account_id);

-- One grant per character. Both tokens are TokenCipher ciphertexts whose associated
-- data names the account and the character, so a row cannot be copied to another.
CREATE TABLE esi_tokens (
    character_id BIGINT PRIMARY KEY REFERENCES characters(character_id),
    account_id TEXT NOT NULL,
    refresh_token_enc TEXT NOT NULL,
    access_token_enc TEXT,
    key_id TEXT NOT NULL,
    access_expires_at BIGINT NOT NULL,
    next_refresh_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    rt_version BIGINT NOT NULL DEFAULT 1,
    failures BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX esi_tokens_due ON esi_tokens(status, next_refresh_at);

-- Sessions are keyed by SHA-256(session id); the id itself is never stored.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    public_id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    via_character_id BIGINT NOT NULL,
    method TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    revoked_at BIGINT,
    revoked_reason TEXT
);
CREATE INDEX sessions_account ON sessions(account_id);

-- Pending logins: single use (DELETE … RETURNING), bound to the pre-auth cookie.
CREATE TABLE login_states (
    state_hash TEXT PRIMARY KEY,
    binding_hash TEXT NOT NULL,
    purpose TEXT NOT NULL,
    account_id TEXT,
    pkce_verifier_enc TEXT NOT NULL,
    return_to TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE features (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL
);

CREATE TABLE roles (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    rank BIGINT NOT NULL CHECK (rank > 0)
);

CREATE TABLE account_feature_roles (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    feature_key TEXT NOT NULL REFERENCES features(key),
    role_key TEXT NOT NULL REFERENCES roles(key),
    granted_by TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, feature_key)
);

CREATE TABLE feature_settings (
    feature_key TEXT NOT NULL REFERENCES features(key),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_by TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (feature_key, key)
);

CREATE TABLE auth_config (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    document TEXT NOT NULL,
    updated_by TEXT,
    updated_at BIGINT NOT NULL
);

-- Service secrets generated at first start (the CSRF key), shared by replicas.
CREATE TABLE service_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Append-only, hash-chained audit log.
CREATE TABLE audit_log (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_account_id TEXT,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    metadata TEXT NOT NULL,
    prev_hash TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_action ON audit_log(action);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit_log is append-only'; END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

INSERT INTO features (key, name, description) VALUES
    ('battle-reports', 'Battle reports', 'Battles clustered from killmails'),
    ('battle-intel', 'Battle intel', 'Activity and fleet intelligence'),
    ('search', 'Search', 'Search over battles, killmails and entities'),
    ('notifications', 'Notifications', 'Subscriptions, webhooks and live alerts'),
    ('admin', 'Administration', 'Accounts, roles, gating and audit');

INSERT INTO roles (key, name, rank) VALUES
    ('user', 'User', 10),
    ('fc', 'FC', 20),
    ('director', 'Director', 30),
    ('admin', 'Admin', 40);
