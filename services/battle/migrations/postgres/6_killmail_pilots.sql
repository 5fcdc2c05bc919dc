-- Each killmail's pilot lines (the ship_history_queue encoding: character, ship type, lost,
-- corporation, alliance as five little-endian i64, 0 for none), so a battle's participants
-- come from its killmails' own rows and never from pilot_ship_history, which is filled in
-- bulk later. NULL on rows stored before: read from their data instead.
ALTER TABLE killmails ADD COLUMN pilots BYTEA;
