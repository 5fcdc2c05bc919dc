-- pilot_ship_history loses its index by killmail: only retention used it, and it now deletes a
-- killmail's lines by the table's key, taken from the killmail's own pilot lines. The index
-- cost every history insert a second b-tree insert (≈ 8 % of clustering a backlog).
DROP INDEX IF EXISTS pilot_ship_history_killmail;
