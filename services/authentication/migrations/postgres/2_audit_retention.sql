-- Audit-log retention (#12). A prune first records an anchor (the seq and hash of the
-- last row it removes), then deletes that prefix; the chain is verified from the newest
-- anchor's hash. Anchors are append-only like the log itself.
CREATE TABLE audit_log_anchor (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    last_hash TEXT NOT NULL,
    last_at BIGINT NOT NULL,
    pruned_at BIGINT NOT NULL,
    cutoff BIGINT NOT NULL,
    pruned BIGINT NOT NULL
);
CREATE FUNCTION audit_log_anchor_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit_log_anchor is append-only'; END;
$$;
CREATE TRIGGER audit_log_anchor_no_change BEFORE UPDATE OR DELETE ON audit_log_anchor
FOR EACH ROW EXECUTE FUNCTION audit_log_anchor_append_only();
-- A DELETE is allowed only for rows an anchor already covers; UPDATE stays forbidden.
-- The trigger `audit_log_no_change` (1_init) keeps calling this function.
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.seq <= COALESCE((SELECT MAX(last_seq) FROM audit_log_anchor), 0) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

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
