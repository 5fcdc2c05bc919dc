-- The battle service schema (SQLite). Timestamps are unix milliseconds (kill time).
-- Tables keyed by a composite primary key are WITHOUT ROWID: one b-tree per table instead of
-- two, which halves the writes of the hot pilot_ship_history/battle_participants inserts.

-- Every accepted killmail, compact: enough to rebuild the clusterer and build reports.
CREATE TABLE IF NOT EXISTS killmails (
    killmail_id BIGINT PRIMARY KEY,
    revision BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    system_id BIGINT NOT NULL,
    region_id BIGINT,
    security_type TEXT,
    security_status DOUBLE PRECISION,
    isk_value DOUBLE PRECISION NOT NULL,
    isk_dropped DOUBLE PRECISION NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS killmails_time ON killmails (time_ms);

-- Character, corporation, alliance, faction, type, system and region names (upserted as they arrive).
CREATE TABLE IF NOT EXISTS names (
    kind TEXT NOT NULL,
    id BIGINT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS battles (
    battle_id BIGINT PRIMARY KEY,
    -- Kill time of the founding killmail (the id): "older" in merges.
    founding_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    merged_into BIGINT,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    total_kills BIGINT NOT NULL,
    total_isk DOUBLE PRECISION NOT NULL,
    total_dropped DOUBLE PRECISION NOT NULL,
    pilots BIGINT NOT NULL,
    multi_party BIGINT NOT NULL DEFAULT 0,
    one_sided BIGINT NOT NULL DEFAULT 0,
    -- Bumped on every change; the sides refresher compares it with sides_revision.
    revision BIGINT NOT NULL,
    sides_revision BIGINT NOT NULL DEFAULT -1,
    -- The status last published (NULL: never announced); the refresher publishes the difference.
    published_status TEXT,
    -- 1 while sides/events lag behind the rows; cleared by the refresher.
    dirty BIGINT NOT NULL DEFAULT 1,
    updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS battles_start ON battles (start_ms);
CREATE INDEX IF NOT EXISTS battles_kills ON battles (total_kills);
CREATE INDEX IF NOT EXISTS battles_isk ON battles (total_isk);
CREATE INDEX IF NOT EXISTS battles_pilots ON battles (pilots);
CREATE INDEX IF NOT EXISTS battles_duration ON battles (duration_ms);
CREATE INDEX IF NOT EXISTS battles_end ON battles (end_ms);
CREATE INDEX IF NOT EXISTS battles_dirty ON battles (dirty);

-- A killmail belongs to at most one battle.
CREATE TABLE IF NOT EXISTS battle_killmails (
    killmail_id BIGINT PRIMARY KEY,
    battle_id BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    system_id BIGINT NOT NULL,
    isk_value DOUBLE PRECISION NOT NULL,
    isk_dropped DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS battle_killmails_battle ON battle_killmails (battle_id, time_ms);

-- Multi-system battles: one row per (battle, system), derived from battle_killmails.
CREATE TABLE IF NOT EXISTS battle_systems (
    battle_id BIGINT NOT NULL,
    system_id BIGINT NOT NULL,
    region_id BIGINT,
    security_type TEXT,
    PRIMARY KEY (battle_id, system_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS battle_systems_system ON battle_systems (system_id);
CREATE INDEX IF NOT EXISTS battle_systems_region ON battle_systems (region_id);

-- Who took part (victims and player attackers), for "involved" filters and pilot counts.
CREATE TABLE IF NOT EXISTS battle_participants (
    battle_id BIGINT NOT NULL,
    character_id BIGINT NOT NULL,
    corporation_id BIGINT,
    alliance_id BIGINT,
    PRIMARY KEY (battle_id, character_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS battle_participants_character ON battle_participants (character_id);
CREATE INDEX IF NOT EXISTS battle_participants_corporation ON battle_participants (corporation_id);
CREATE INDEX IF NOT EXISTS battle_participants_alliance ON battle_participants (alliance_id);

-- The sides as last computed (summary only; the report recomputes them from the killmails).
CREATE TABLE IF NOT EXISTS battle_sides (
    battle_id BIGINT NOT NULL,
    side_index BIGINT NOT NULL,
    pilots BIGINT NOT NULL,
    kills BIGINT NOT NULL,
    losses BIGINT NOT NULL,
    isk_destroyed DOUBLE PRECISION NOT NULL,
    isk_lost DOUBLE PRECISION NOT NULL,
    alliance_ids TEXT NOT NULL,
    corporation_ids TEXT NOT NULL,
    PRIMARY KEY (battle_id, side_index)
) WITHOUT ROWID;

-- Merge redirects: an absorbed id answers with its survivor.
CREATE TABLE IF NOT EXISTS battle_aliases (
    alias_id BIGINT PRIMARY KEY,
    battle_id BIGINT NOT NULL
) WITHOUT ROWID;

-- Manual side overrides, per battle; they survive re-clustering and merges.
CREATE TABLE IF NOT EXISTS battle_side_overrides (
    battle_id BIGINT NOT NULL,
    entity_kind TEXT NOT NULL,
    entity_id BIGINT NOT NULL,
    target TEXT NOT NULL,
    actor TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (battle_id, entity_kind, entity_id)
) WITHOUT ROWID;

-- Every ship a pilot flew or lost, per killmail (independent of battles).
CREATE TABLE IF NOT EXISTS pilot_ship_history (
    character_id BIGINT NOT NULL,
    killmail_id BIGINT NOT NULL,
    ship_type_id BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    system_id BIGINT NOT NULL,
    lost BIGINT NOT NULL,
    corporation_id BIGINT,
    alliance_id BIGINT,
    PRIMARY KEY (character_id, killmail_id, ship_type_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pilot_ship_history_killmail ON pilot_ship_history (killmail_id);
