-- Data lifecycle: daily verification against zKillboard history and retention runs.

-- One row per verified UTC day (kill time): the latest verification of that day.
CREATE TABLE verification_days (
    day TEXT PRIMARY KEY,
    -- zKillboard's totals.json count for the day (NULL: not listed).
    zkb_total BIGINT,
    -- Ids in history/YYYYMMDD.json.
    listed BIGINT NOT NULL,
    -- Listed ids the active ruleset filters out, or that are invalid killmails.
    filtered BIGINT NOT NULL,
    -- listed - filtered: what should be stored.
    expected BIGINT NOT NULL,
    -- Expected ids stored before the repair.
    stored BIGINT NOT NULL,
    -- Fetched from ESI (or re-admitted) and stored by this verification.
    repaired BIGINT NOT NULL,
    still_missing BIGINT NOT NULL,
    -- JSON array of the still missing ids (at most 1000).
    missing_ids TEXT NOT NULL,
    -- complete | incomplete | failed
    status TEXT NOT NULL,
    error TEXT,
    reason TEXT NOT NULL,
    verified_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL
);

-- Days waiting for verification (gap detection at start, manual requests).
CREATE TABLE verification_queue (
    day TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    queued_at BIGINT NOT NULL
);

-- Retention runs, one row per (run, kind of data).
CREATE TABLE retention_runs (
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    cutoff_ms BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    deleted BIGINT NOT NULL,
    batches BIGINT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (id, kind)
);
CREATE INDEX idx_retention_runs_started ON retention_runs (started_at);
