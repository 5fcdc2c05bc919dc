-- The enrichment service's own state: enriched killmails, resolved names and an ESI cache.
-- Timestamps are unix milliseconds; booleans are 0/1 BIGINTs (one SQL text for both backends).

CREATE TABLE enriched_killmails (
    killmail_id BIGINT PRIMARY KEY,
    killmail_time BIGINT NOT NULL,
    hash TEXT NOT NULL,
    source TEXT NOT NULL,
    ship_type_id BIGINT NOT NULL,
    ship_type_name TEXT,
    ship_group_id BIGINT,
    ship_group_name TEXT,
    ship_class TEXT,
    system_id BIGINT NOT NULL,
    system_name TEXT,
    constellation_id BIGINT,
    constellation_name TEXT,
    region_id BIGINT,
    region_name TEXT,
    security_status DOUBLE PRECISION,
    security_type TEXT,
    victim_character_id BIGINT,
    victim_character_name TEXT,
    victim_corporation_id BIGINT,
    victim_corporation_name TEXT,
    victim_alliance_id BIGINT,
    victim_alliance_name TEXT,
    victim_faction_id BIGINT,
    victim_faction_name TEXT,
    -- JSON array of the enriched attackers (names, ship, weapon, damage, final blow).
    attacker_data TEXT NOT NULL,
    attacker_count BIGINT NOT NULL,
    pilot_count BIGINT NOT NULL,
    isk_destroyed DOUBLE PRECISION NOT NULL,
    isk_dropped DOUBLE PRECISION NOT NULL,
    isk_total DOUBLE PRECISION NOT NULL,
    value_source TEXT NOT NULL,
    names_pending BIGINT NOT NULL,
    -- Rules version and static-data version that produced the row; a change re-enriches.
    version BIGINT NOT NULL,
    sde_version TEXT NOT NULL,
    revision BIGINT NOT NULL,
    -- Fingerprint of the ingested input: a redelivery with the same input changes nothing.
    input_hash TEXT NOT NULL,
    -- The published payload (KillmailEnriched JSON) and the ingested event it came from.
    payload TEXT NOT NULL,
    source_event TEXT NOT NULL,
    enriched_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX enriched_killmails_pending ON enriched_killmails (names_pending, killmail_id);
CREATE INDEX enriched_killmails_time ON enriched_killmails (killmail_time);
CREATE INDEX enriched_killmails_version ON enriched_killmails (version, sde_version);

-- Character, corporation and alliance names from POST /universe/names. A NULL name means
-- ESI said the id does not exist (a negative entry, so it is not asked again soon).
CREATE TABLE esi_names (
    id BIGINT PRIMARY KEY,
    name TEXT,
    category TEXT,
    fetched_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Other ESI answers worth keeping across restarts: unknown types and systems, prices.
-- body is the JSON the service needs ('null' for "does not exist").
CREATE TABLE esi_cache (
    kind TEXT NOT NULL,
    id BIGINT NOT NULL,
    body TEXT NOT NULL,
    fetched_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
