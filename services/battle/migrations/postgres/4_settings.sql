-- Clusterer settings (issue #10): the operator's override of `[battle]`, and which settings
-- the stored battles were built with.

-- The stored override (at most one row, id = 1); no row: the configuration applies.
CREATE TABLE IF NOT EXISTS clusterer_settings (
    id BIGINT PRIMARY KEY,
    gap_ms BIGINT NOT NULL,
    min_kills BIGINT NOT NULL,
    min_pilots BIGINT NOT NULL,
    reopen_window_ms BIGINT NOT NULL,
    changed_by TEXT,
    changed_at BIGINT NOT NULL
);

-- The settings the clusterer last ran with (one row, id = 1): `settings` is their canonical
-- JSON; `since_ms` the kill time from which the stored battles were (re)built with them
-- (battles that ended before it were built with older settings, unless a later recluster run
-- with these settings covered them); `applied_at` the wall-clock time of the change.
CREATE TABLE IF NOT EXISTS clusterer_applied (
    id BIGINT PRIMARY KEY,
    settings TEXT NOT NULL,
    since_ms BIGINT NOT NULL,
    applied_at BIGINT NOT NULL
);

-- The settings (canonical JSON) and the widened kill-time window each recluster run used.
ALTER TABLE recluster_runs ADD COLUMN settings TEXT;
ALTER TABLE recluster_runs ADD COLUMN window_from_ms BIGINT;
ALTER TABLE recluster_runs ADD COLUMN window_to_ms BIGINT;
