-- Data lifecycle: re-clustering runs and retention runs.

-- One row per re-clustering of a time range (dry runs included).
CREATE TABLE IF NOT EXISTS recluster_runs (
    id TEXT PRIMARY KEY,
    from_ms BIGINT NOT NULL,
    to_ms BIGINT NOT NULL,
    dry_run BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    kept BIGINT NOT NULL,
    changed BIGINT NOT NULL,
    created BIGINT NOT NULL,
    merged BIGINT NOT NULL,
    deleted BIGINT NOT NULL,
    status TEXT NOT NULL,
    error TEXT
);

-- Retention runs, one row per (run, kind of data).
CREATE TABLE IF NOT EXISTS retention_runs (
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
CREATE INDEX IF NOT EXISTS retention_runs_started ON retention_runs (started_at);
