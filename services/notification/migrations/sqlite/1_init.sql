-- The notification service schema (SQLite). Timestamps are unix milliseconds.

CREATE TABLE IF NOT EXISTS subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    name TEXT NOT NULL,
    filter TEXT NOT NULL,
    websocket BIGINT NOT NULL,
    enabled BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_account ON subscriptions (account_id);

CREATE TABLE IF NOT EXISTS webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    kind TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    disabled_reason TEXT,
    UNIQUE (subscription_id, url)
);

CREATE TABLE IF NOT EXISTS watchlists (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    name TEXT NOT NULL,
    members TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS watchlists_account ON watchlists (account_id);

-- History; the unique key is the idempotency key of a match.
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    subject_id BIGINT NOT NULL,
    summary TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    read_ms BIGINT,
    UNIQUE (subscription_id, kind, subject_id)
);
CREATE INDEX IF NOT EXISTS notifications_account ON notifications (account_id, read_ms, id);

-- The webhook outbox: one row per (webhook, subject), processed by the sender task.
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    subject_id BIGINT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    rate_limited BIGINT NOT NULL,
    next_ms BIGINT NOT NULL,
    last_error TEXT,
    created_ms BIGINT NOT NULL,
    done_ms BIGINT,
    UNIQUE (webhook_id, kind, subject_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_ms);
