-- A killmail's data zstd-compressed when that pays (data is then ''): the killmails table is
-- most of the service's bytes and most of what a backlog writes (the 79 k week: 97 MB of JSON).
-- Rows written before keep their text; a new revision rewrites both columns.
ALTER TABLE killmails ADD COLUMN IF NOT EXISTS data_zstd BYTEA;
