-- The stored ESI body, zstd-compressed when that pays (raw_data is then ''): the body is most
-- of a row, and on SQLite every byte is written twice (WAL, then checkpoint). Rows written
-- before keep their text. See bs_ingestion::store::NewKillmail::raw_stored.
ALTER TABLE killmail_events ADD COLUMN raw_zstd BLOB;
