-- Audit-log retention (#12). A prune first records an anchor (the seq and hash of the
-- last row it removes), then deletes that prefix; the chain is verified from the newest
-- anchor's hash. Anchors are append-only like the log itself.
CREATE TABLE audit_log_anchor (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    last_seq BIGINT NOT NULL,
    last_hash TEXT NOT NULL,
    last_at BIGINT NOT NULL,
    pruned_at BIGINT NOT NULL,
    cutoff BIGINT NOT NULL,
    pruned BIGINT NOT NULL
);
CREATE TRIGGER audit_log_anchor_no_update BEFORE UPDATE ON audit_log_anchor
BEGIN SELECT RAISE(ABORT, 'audit_log_anchor is append-only'); END;
CREATE TRIGGER audit_log_anchor_no_delete BEFORE DELETE ON audit_log_anchor
BEGIN SELECT RAISE(ABORT, 'audit_log_anchor is append-only'); END;
-- A DELETE is allowed only for rows an anchor already covers; UPDATE stays forbidden.
DROP TRIGGER audit_log_no_delete;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN OLD.seq > COALESCE((SELECT MAX(last_seq) FROM audit_log_anchor), 0)
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- Retention runs, one row per (run, kind of data), the same shape as the other services'.
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
