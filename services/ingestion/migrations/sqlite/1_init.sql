-- The ingestion service's schema (SQLite). Timestamps are unix milliseconds.

-- Every stored killmail, once (the primary key is the dedupe constraint).
CREATE TABLE killmail_events (
    killmail_id BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    system_id BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    victim_alliance_id BIGINT,
    attacker_alliance_ids TEXT NOT NULL,
    isk_value DOUBLE PRECISION,
    zkb_url TEXT NOT NULL,
    raw_data TEXT NOT NULL,
    zkb TEXT,
    source TEXT NOT NULL,
    r2z2_sequence BIGINT,
    backfill_job_id TEXT,
    content_hash TEXT NOT NULL,
    fetched_at BIGINT NOT NULL,
    processed_at BIGINT NOT NULL,
    updated_at BIGINT
);
CREATE INDEX idx_killmail_events_occurred_at ON killmail_events (occurred_at DESC);
CREATE INDEX idx_killmail_events_system_id ON killmail_events (system_id);
CREATE INDEX idx_killmail_events_processed_at ON killmail_events (processed_at DESC);
CREATE INDEX idx_killmail_events_source ON killmail_events (source);

-- Rejected input, kept for inspection; the fingerprint makes a re-import add nothing.
CREATE TABLE ingest_rejects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL UNIQUE,
    killmail_id BIGINT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    source TEXT NOT NULL,
    raw TEXT NOT NULL,
    rejected_at BIGINT NOT NULL
);
CREATE INDEX idx_ingest_rejects_reason ON ingest_rejects (reason);
CREATE INDEX idx_ingest_rejects_killmail_id ON ingest_rejects (killmail_id);

-- Source positions (the R2Z2 cursor is the next sequence to fetch), written with the rows they cover.
CREATE TABLE ingest_cursors (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- R2Z2 sequences that were skipped: holes (404 below a newer head) and expired ranges.
CREATE TABLE r2z2_gaps (
    first_sequence BIGINT PRIMARY KEY,
    last_sequence BIGINT NOT NULL,
    kind TEXT NOT NULL,
    detected_at BIGINT NOT NULL,
    repair_job_id TEXT
);

-- Monotonic counters (duplicates, updates, anomalies).
CREATE TABLE ingest_counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

-- The active ruleset (one row, id 1).
CREATE TABLE rulesets (
    id BIGINT PRIMARY KEY,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE backfill_jobs (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    from_day TEXT NOT NULL,
    to_day TEXT NOT NULL,
    status TEXT NOT NULL,
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    days_total BIGINT NOT NULL,
    days_done BIGINT NOT NULL,
    killmails_seen BIGINT NOT NULL,
    killmails_new BIGINT NOT NULL,
    error TEXT
);
CREATE INDEX idx_backfill_jobs_status ON backfill_jobs (status);

-- Per-day progress: a finished day is never fetched again by the same job.
CREATE TABLE backfill_days (
    job_id TEXT NOT NULL,
    day TEXT NOT NULL,
    status TEXT NOT NULL,
    killmails_seen BIGINT NOT NULL,
    killmails_new BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (job_id, day)
);
