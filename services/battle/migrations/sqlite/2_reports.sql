-- Battle reports as the sides refresher last computed them, keyed by the battle revision they
-- were computed from. Names are not in them (they are attached on read, so a late-resolved
-- name shows at once); reading a report is one row instead of a recomputation from every
-- killmail of the battle.
CREATE TABLE IF NOT EXISTS battle_reports (
    battle_id BIGINT PRIMARY KEY,
    revision BIGINT NOT NULL,
    report TEXT NOT NULL
);

-- Names are looked up by id alone (a report's ids are of several kinds); the primary key
-- (kind, id) cannot serve that.
CREATE INDEX IF NOT EXISTS names_id ON names (id);

-- A battle's aggregates (count, ISK, time span) are recomputed on every change: read them
-- from the index alone.
DROP INDEX IF EXISTS battle_killmails_battle;
CREATE INDEX IF NOT EXISTS battle_killmails_battle_cover ON battle_killmails (battle_id, time_ms, isk_value, isk_dropped);
