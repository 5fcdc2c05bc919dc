-- Ship history off the live path: a killmail's pilot_ship_history lines are queued here, one
-- row per killmail, in the transaction that stores the killmail, and moved into
-- pilot_ship_history in bulk later (see store.rs, "Ship history"). Anything that reads
-- pilot_ship_history by killmail moves the queue first; GET /characters/{id}/ships reads both.
CREATE TABLE IF NOT EXISTS ship_history_queue (
    killmail_id BIGINT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    system_id BIGINT NOT NULL,
    -- One line per pilot and ship: character, ship type, lost, corporation, alliance as five
    -- little-endian i64 (0 for none).
    lines BYTEA NOT NULL
);
