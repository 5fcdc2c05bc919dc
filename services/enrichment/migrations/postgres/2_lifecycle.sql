-- Data lifecycle: retention runs, one row per (run, kind of data).
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

